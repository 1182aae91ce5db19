"""Steps 0 and 8-11: the language-model basics that pretraining (chapter 00), stage training
(chapter 04) and evaluation (chapter 05) share: packing documents into a token stream, windows,
the learning-rate schedule and the loss.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def pack_documents(tokenizer, documents: Sequence[str], batch_size: int = 1024) -> torch.Tensor:
    """Encode ``documents`` and join them, each followed by the end-of-text token, into one 1-D stream."""
    eos = tokenizer.eos_token_id
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    ids: list[int] = []
    for start in range(0, len(documents), batch_size):
        for enc in backend.encode_batch(list(documents[start:start + batch_size]), add_special_tokens=False):
            ids.extend(enc.ids)
            ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def window_starts(stream_length: int, seq_len: int) -> torch.Tensor:
    """Start offsets of the non-overlapping windows of ``seq_len`` tokens that fit in the stream."""
    n = max(0, stream_length - seq_len) // seq_len + (1 if stream_length >= seq_len else 0)
    return torch.arange(n, dtype=torch.long) * seq_len


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warm-up to ``peak``, then cosine decay to ``floor * peak`` at ``total`` steps."""
    if total <= 0:
        return peak
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def causal_lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, vocab_limit: int | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy; logits beyond ``vocab_limit`` (padding rows) are ignored."""
    if vocab_limit is not None:
        logits = logits[..., :vocab_limit]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), input_ids[:, 1:].reshape(-1)
    )


@torch.no_grad()
def mean_loss(model, stream: torch.Tensor, seq_len: int, max_windows: int = 64, batch_size: int = 8,
              vocab_limit: int | None = None) -> float:
    """Mean next-token loss over the first ``max_windows`` windows of ``stream`` (validation)."""
    starts = window_starts(len(stream), seq_len)[:max_windows]
    if len(starts) == 0:
        return float("nan")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(starts), batch_size):
        batch = torch.stack([stream[s:s + seq_len] for s in starts[i:i + batch_size].tolist()]).to(device)
        logits = model(input_ids=batch).logits
        loss = causal_lm_loss(logits, batch, vocab_limit)
        total += loss.item() * len(batch)
        count += len(batch)
    model.train(was_training)
    return total / count
