"""The English base model: a tiny phi pretrained here (tiny, small), or phi-2 itself (full).

For ``tiny`` and ``small`` this trains a byte-level BPE tokenizer of the GPT-2/phi-2 kind on the
English corpus and pretrains a small ``PhiForCausalLM`` on it, on the CPU. It is the same
architecture family and the same kind of tokenizer as phi-2, so Korean falls back to bytes
exactly as it does with phi-2, which is what EEVE sets out to fix. For ``full`` the same
function loads ``microsoft/phi-2`` at the revision pinned in the profile; for ``full-dry`` a
local phi-2-shaped stand-in. Either way the result is saved with ``save_pretrained`` to
``runs/<profile>/base/`` and reused while its configuration hash matches. Shown in chapter 00.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from . import atomic
from .corpora import Corpus, load_corpus
from .errors import EeveError, OfflineError
from .lm import cosine_lr, causal_lm_loss, mean_loss, pack_documents
from .paths import RunPaths, run_paths
from .profiles import PROJECT_ROOT, Profile
from .runtime import deterministic, generator, resolve_device, resolve_dtype, seeded

END_OF_TEXT = "<|endoftext|>"
# Bump when the pretraining algorithm changes, so cached base models are rebuilt.
ALGORITHM_VERSION = 1
MARKER = "eeve_base.json"


def phi2_style_added_tokens(n: int) -> list[str]:
    """Whitespace runs that phi-2's tokenizer adds after its BPE vocabulary (spaces, then tabs)."""
    tabs = min(8, n // 5)
    spaces = n - tabs
    return [" " * k for k in range(spaces + 1, 1, -1)] + ["\t" * k for k in range(tabs + 1, 1, -1)]


def train_byte_level_bpe(texts, vocab_size: int, added_tokens: int = 0, min_frequency: int = 2):
    """Train a byte-level BPE tokenizer of the GPT-2/phi-2 kind on ``texts`` (chapter 00).

    No normaliser, the GPT-2 byte-level pre-tokeniser (a word carries its leading space), the
    byte-level decoder, and ``<|endoftext|>`` as the only special token. ``added_tokens``
    appends phi-2-style whitespace tokens after the BPE vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - added_tokens,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if added_tokens:
        from tokenizers import AddedToken

        tok.add_tokens([AddedToken(t, normalized=False) for t in phi2_style_added_tokens(added_tokens)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                   unk_token=END_OF_TEXT)


def padded_rows(n_tokens: int, multiple: int) -> int:
    """Embedding rows for ``n_tokens``, rounded up to ``multiple`` (as phi-2 pads 50,295 to 51,200)."""
    multiple = max(1, multiple)
    return -(-n_tokens // multiple) * multiple


def build_phi_config(architecture: dict[str, Any], vocab_rows: int, eos_id: int):
    """A ``PhiConfig`` without dropout (so training draws nothing from the global RNG), untied head."""
    from transformers import PhiConfig

    settings = dict(architecture)
    settings.setdefault("resid_pdrop", 0.0)
    settings.setdefault("embd_pdrop", 0.0)
    settings.setdefault("attention_dropout", 0.0)
    settings.setdefault("tie_word_embeddings", False)
    return PhiConfig(vocab_size=vocab_rows, bos_token_id=eos_id, eos_token_id=eos_id, **settings)


@dataclass
class BaseModelResult:
    """What :func:`ensure_base_model` returns."""

    path: Path
    reused: bool
    info: dict[str, Any]


def _config_hash(profile: Profile, english: Corpus | None) -> str:
    import hashlib

    payload = {
        "algorithm": ALGORITHM_VERSION,
        "base_model": profile.to_dict()["base_model"],
        "seed": profile.seed,
        "english": [s.get("sha256_verified") for s in english.sources] if english else None,
        "validation_fraction": profile.data.validation_fraction,
        "max_english_documents": profile.data.max_english_documents,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _cached(paths: RunPaths, config_hash: str) -> dict[str, Any] | None:
    marker = paths.base / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("config_hash") == config_hash:
            return info
    return None


def pretrain(model, train_stream: torch.Tensor, validation_stream: torch.Tensor, settings, seed: int,
             device: torch.device, progress: bool = True) -> dict[str, list]:
    """Pretrain ``model`` on random windows of ``train_stream`` with AdamW and a cosine schedule.

    Deterministic: windows come from a private generator seeded with ``seed``, and the model has
    no dropout. Returns the loss log (chapter 00 plots it).
    """
    g = generator(seed)
    n_windows = len(train_stream) - settings.seq_len
    if n_windows <= 0:
        raise EeveError(f"The English training stream ({len(train_stream)} tokens) is shorter than one "
                        f"window of {settings.seq_len} tokens; lower base_model.pretrain.seq_len.")
    opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, betas=(0.9, 0.95),
                            weight_decay=settings.weight_decay)
    log: dict[str, list] = {"step": [], "train_loss": [], "validation_step": [], "validation_loss": []}
    model.train()
    bar = tqdm(range(settings.steps), desc="pretraining the English base model", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, settings.steps, settings.learning_rate, settings.warmup_steps)
        starts = torch.randint(0, n_windows, (settings.batch_size,), generator=g)
        batch = torch.stack([train_stream[s:s + settings.seq_len] for s in starts.tolist()]).to(device)
        loss = causal_lm_loss(model(input_ids=batch).logits, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log["step"].append(step)
        log["train_loss"].append(loss.item())
        if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % max(1, settings.steps // 10) == 0 or step + 1 == settings.steps:
            log["validation_step"].append(step + 1)
            log["validation_loss"].append(mean_loss(model, validation_stream, settings.seq_len, max_windows=32))
    model.eval()
    return log


def _save_base(paths: RunPaths, model, tokenizer, info: dict[str, Any]) -> None:
    with atomic.directory(paths.base) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic.write_json(tmp / MARKER, info)


def _pretrain_base(profile: Profile, paths: RunPaths, english: Corpus, config_hash: str,
                   progress: bool) -> dict[str, Any]:
    from transformers import PhiForCausalLM

    bm = profile.base_model
    device = resolve_device(profile.device)
    started = time.time()
    tokenizer = train_byte_level_bpe(english.train, bm.tokenizer_vocab_size, bm.tokenizer_added_tokens)
    rows = padded_rows(len(tokenizer), bm.pad_vocab_to_multiple_of)
    config = build_phi_config(bm.architecture, rows, tokenizer.eos_token_id)
    with seeded(profile.seed), deterministic():
        model = PhiForCausalLM(config)
    model.to(device)
    train_stream = pack_documents(tokenizer, english.train)
    validation_stream = pack_documents(tokenizer, english.validation)
    with deterministic():
        log = pretrain(model, train_stream, validation_stream, bm.pretrain, profile.seed, device, progress)
    model.to("cpu")
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    # Padding rows are never a real token: generation must never produce them.
    model.generation_config.suppress_tokens = list(range(len(tokenizer), rows)) or None
    info = {
        "config_hash": config_hash,
        "source": "pretrain",
        "tokenizer_size": len(tokenizer),
        "embedding_rows": rows,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens_seen": bm.pretrain.steps * bm.pretrain.batch_size * bm.pretrain.seq_len,
        "english_train_stream_tokens": len(train_stream),
        "wall_seconds": round(time.time() - started, 1),
        "device": str(device),
        "log": log,
        "english": english.summary(),
    }
    _save_base(paths, model, tokenizer, info)
    return info


def _copy_external_base(profile: Profile, paths: RunPaths, config_hash: str) -> dict[str, Any]:
    """Load phi-2 from the hub (``full``) or the local stand-in (``full-dry``) and save a copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bm = profile.base_model
    if bm.source == "hub":
        from .hub import resolve_snapshot

        where = resolve_snapshot(bm.hub_id, bm.revision, what=f"the base model of profile {profile.name!r}")
    else:
        where = Path(bm.local_path)
        where = where if where.is_absolute() else PROJECT_ROOT / where
        if not (where / "config.json").is_file():
            raise EeveError(f"The base model of profile {profile.name!r} is read from {where}, which does not "
                            f"hold a model yet. Create it with `eeve prepare-full-dry`.")
    dtype = resolve_dtype(bm.dtype, resolve_device(profile.device))
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
    rows = model.get_input_embeddings().weight.shape[0]
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.generation_config.suppress_tokens = list(range(len(tokenizer), rows)) or None
    info = {
        "config_hash": config_hash,
        "source": bm.source,
        "from": str(bm.hub_id if bm.source == "hub" else where),
        "revision": bm.revision,
        "tokenizer_size": len(tokenizer),
        "embedding_rows": rows,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    _save_base(paths, model, tokenizer, info)
    return info


def ensure_base_model(profile: Profile, run_dir=None, progress: bool = True) -> BaseModelResult:
    """Build (or reuse) ``runs/<profile>/base/``; shown in chapter 00.

    Reused when the stored configuration hash (base-model settings, seed and the English data's
    checksums) matches; rebuilt otherwise. Nothing is written unless the build succeeds.
    """
    paths = run_paths(profile, run_dir)
    english = load_corpus(profile, "english") if profile.base_model.source == "pretrain" else None
    config_hash = _config_hash(profile, english)
    cached = _cached(paths, config_hash)
    if cached is not None:
        return BaseModelResult(paths.base, True, cached)
    if profile.base_model.source == "pretrain":
        info = _pretrain_base(profile, paths, english, config_hash, progress)
    else:
        info = _copy_external_base(profile, paths, config_hash)
    return BaseModelResult(paths.base, False, info)


def load_base(profile: Profile | str, run_dir=None, dtype: torch.dtype | None = None):
    """The saved base model and tokenizer of a run, loaded with the ``Auto*`` classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = run_paths(profile, run_dir)
    if not (paths.base / MARKER).is_file():
        raise EeveError(f"No base model in {paths.base}. Run chapter 00 first "
                        f"(eeve run --profile {paths.root.name} --chapters 00).")
    model = AutoModelForCausalLM.from_pretrained(paths.base, dtype=dtype or torch.float32, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(paths.base, trust_remote_code=False)
    return model, tokenizer


def base_info(profile: Profile | str, run_dir=None) -> dict[str, Any]:
    """The ``eeve_base.json`` record of a run's base model."""
    paths = run_paths(profile, run_dir)
    return json.loads((paths.base / MARKER).read_text())


__all__ = ["ensure_base_model", "load_base", "base_info", "train_byte_level_bpe", "padded_rows",
           "build_phi_config", "pretrain", "OfflineError"]
