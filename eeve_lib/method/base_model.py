"""Step 0: the English base model the method starts from, pretrained here at tiny and small scale.

For ``tiny`` and ``small`` a tokenizer of the base's family (byte-level BPE, as phi-2's) is
trained on the English corpus and a small ``PhiForCausalLM`` is pretrained on it, on the CPU. It
is the same architecture family and the same kind of tokenizer as phi-2, so Korean falls back to
bytes exactly as it does with phi-2, which is what EEVE sets out to fix. ``tiny-llama`` does the
same for the paper's other base, SOLAR-10.7B: a SentencePiece-style BPE with byte fallback and a
small ``LlamaForCausalLM`` (untied embeddings, no biases, grouped key-value heads), the
architecture SOLAR-10.7B shares with Llama-2. For ``full`` and ``full-solar`` the pipeline loads
``microsoft/phi-2`` or ``upstage/SOLAR-10.7B-v1.0`` instead (:mod:`eeve_lib.pipeline.base`); for
``smol`` it de-quantises SmolLM2-135M-Instruct from a GGUF file (:func:`dequantised`).
Shown in chapter 00.
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from ..errors import EeveError
from ..runtime import generator, seeded
from .lm import causal_lm_loss, cosine_lr, mean_loss


def padded_rows(n_tokens: int, multiple: int) -> int:
    """Embedding rows for ``n_tokens``, rounded up to ``multiple`` (as phi-2 pads its rows)."""
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


def build_llama_config(architecture: dict[str, Any], vocab_rows: int, bos_id: int, eos_id: int):
    """A ``LlamaConfig`` as SOLAR-10.7B's: untied head, no biases, no dropout (nothing drawn from the global RNG)."""
    from transformers import LlamaConfig

    settings = dict(architecture)
    settings.setdefault("attention_dropout", 0.0)
    settings.setdefault("attention_bias", False)
    settings.setdefault("mlp_bias", False)
    settings.setdefault("tie_word_embeddings", False)
    return LlamaConfig(vocab_size=vocab_rows, bos_token_id=bos_id, eos_token_id=eos_id, **settings)


def dequantise_q8_0(block: bytes) -> torch.Tensor:
    """The 32 weights of one GGUF ``Q8_0`` block (34 bytes): a float16 scale ``d``, then 32 signed
    8-bit integers ``q``; each weight is ``d * q``. SmolLM2's embedding matrix is stored this way."""
    d = torch.frombuffer(bytearray(block[:2]), dtype=torch.float16).float()
    q = torch.frombuffer(bytearray(block[2:34]), dtype=torch.int8).float()
    return d * q


def dequantise_q4_1(block: bytes) -> torch.Tensor:
    """The 32 weights of one GGUF ``Q4_1`` block (20 bytes): a float16 scale ``d`` and minimum
    ``m``, then 16 bytes of 4-bit integers ``q`` (0-15): the low halves of the bytes are weights
    0-15, the high halves weights 16-31; each weight is ``d * q + m``, one of only 16 values."""
    d, m = torch.frombuffer(bytearray(block[:4]), dtype=torch.float16).float()
    packed = torch.frombuffer(bytearray(block[4:20]), dtype=torch.uint8).long()
    q = torch.cat([packed & 0x0F, packed >> 4]).float()
    return d * q + m


def dequantised(model):
    """A plain float copy of a model that transformers de-quantised while loading a GGUF file.

    transformers turns each quantised GGUF tensor into floats when it loads the file (Q4_1: every
    block of 32 weights is a 4-bit integer times the block's scale plus its minimum), but keeps the
    model marked as quantised and refuses to save it. The copy has the same class, configuration
    (less that mark) and tensors, the same tying of input and output embeddings, and saves as an
    ordinary safetensors model. From then on it *is* the base: "original parameters preserved" is
    measured against these de-quantised values.
    """
    config = type(model.config).from_dict({k: v for k, v in model.config.to_dict().items()
                                           if k != "quantization_config"})
    # Built on the CPU, not the meta device: buffers outside the state dict (the rotary
    # frequencies) must be real for the copy to run before it is saved and loaded again.
    with seeded(0):
        plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.generation_config = model.generation_config
    return plain.eval()


ARCHITECTURES = ("phi", "llama")


def build_config(architecture_type: str, architecture: dict[str, Any], vocab_rows: int, bos_id: int, eos_id: int):
    """The configuration of a base model of ``architecture_type`` (``phi`` or ``llama``)."""
    if architecture_type == "phi":
        return build_phi_config(architecture, vocab_rows, eos_id)
    if architecture_type == "llama":
        return build_llama_config(architecture, vocab_rows, bos_id, eos_id)
    raise EeveError(f"Unknown architecture type {architecture_type!r}; known: {', '.join(ARCHITECTURES)}.")


def new_model(architecture_type: str, config):
    """A freshly initialised ``PhiForCausalLM`` or ``LlamaForCausalLM`` (seed the global RNG first)."""
    from transformers import LlamaForCausalLM, PhiForCausalLM

    return {"phi": PhiForCausalLM, "llama": LlamaForCausalLM}[architecture_type](config)


def pretrain(model, train_stream: torch.Tensor, validation_stream: torch.Tensor, *, steps: int, batch_size: int,
             seq_len: int, learning_rate: float, warmup_steps: int, weight_decay: float, log_every: int = 10,
             seed: int, device: torch.device, progress: bool = True, korean_stream: torch.Tensor | None = None,
             korean_share: float = 0.0, korean_validation: torch.Tensor | None = None) -> dict[str, list]:
    """Pretrain ``model`` for ``steps`` steps of ``batch_size`` random windows of ``seq_len`` tokens
    of ``train_stream``, with AdamW and a cosine schedule (warm-up of ``warmup_steps``).

    With ``korean_share`` > 0 each window is drawn from ``korean_stream`` with that probability
    (a few percent: the little Korean phi-2 saw), else from the English stream. Deterministic:
    windows come from a private generator seeded with ``seed``, and the model has no dropout.
    Returns the loss log (chapter 00 plots it), with the Korean validation loss when
    ``korean_validation`` is given.
    """
    g = generator(seed)
    n_windows = len(train_stream) - seq_len
    if n_windows <= 0:
        raise EeveError(f"The English training stream ({len(train_stream)} tokens) is shorter than one "
                        f"window of {seq_len} tokens; lower base_model.pretrain.seq_len.")
    n_korean = 0 if korean_stream is None else len(korean_stream) - seq_len
    if korean_share > 0 and n_korean <= 0:
        raise EeveError(f"base_model.korean_share is {korean_share}, but the Korean training stream is shorter "
                        f"than one window of {seq_len} tokens; set korean_share to 0 or add Korean text.")
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.95),
                            weight_decay=weight_decay)
    log: dict[str, list] = {"step": [], "train_loss": [], "validation_step": [], "validation_loss": [],
                            "korean_windows": 0}
    if korean_validation is not None:
        log["korean_validation_loss"] = []
    model.train()
    bar = tqdm(range(steps), desc="pretraining the base model", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, learning_rate, warmup_steps)
        starts = torch.randint(0, n_windows, (batch_size,), generator=g)
        # Drawn every step whatever the share, so the English windows do not depend on it.
        korean = torch.rand(batch_size, generator=g) < korean_share
        korean_starts = torch.randint(0, max(1, n_korean), (batch_size,), generator=g)
        windows = [korean_stream[k:k + seq_len] if is_ko else train_stream[s:s + seq_len]
                   for s, k, is_ko in zip(starts.tolist(), korean_starts.tolist(), korean.tolist())]
        log["korean_windows"] += int(korean.sum())
        batch = torch.stack(windows).to(device)
        loss = causal_lm_loss(model(input_ids=batch).logits, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log["step"].append(step)
        log["train_loss"].append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            log["validation_step"].append(step + 1)
            log["validation_loss"].append(mean_loss(model, validation_stream, seq_len, max_windows=32))
            if korean_validation is not None:
                log["korean_validation_loss"].append(mean_loss(model, korean_validation, seq_len,
                                                               max_windows=32))
    model.eval()
    return log


__all__ = ["dequantise_q8_0", "dequantise_q4_1", "dequantised",
           "padded_rows", "build_phi_config", "build_llama_config", "build_config", "new_model", "ARCHITECTURES",
           "pretrain"]
