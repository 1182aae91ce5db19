"""Step 8: bias the training data toward texts that contain new tokens.

The Korean training split is packed into non-overlapping windows of ``training.seq_len`` tokens
under the extended tokenizer; each window is drawn with weight ``1 + new_token_bias * share``,
where ``share`` is the fraction of its tokens that are new. Batches for every step are drawn up
front from a private generator, so a resumed run draws the same batches. Shown in chapter 04.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import TrainingError
from ..runtime import generator
from .lm import pack_documents, window_starts


@dataclass
class TrainingData:
    """Non-overlapping windows of the Korean training stream and their sampling weights."""

    windows: torch.Tensor  # [N, seq_len] token ids
    new_share: torch.Tensor  # [N] share of tokens in each window that are new tokens
    weights: torch.Tensor  # [N] sampling weights: 1 + new_token_bias * new_share

    def expected_new_share(self, weights: torch.Tensor | None = None) -> float:
        """Expected share of new tokens per sampled window under ``weights`` (default: these)."""
        w = self.weights if weights is None else weights
        return float((w * self.new_share).sum() / w.sum())


def build_training_data(tokenizer, documents: Sequence[str], seq_len: int, base_size: int,
                        new_token_bias: float) -> TrainingData:
    """Pack documents into windows and weight each by how many new tokens it holds (step 8, chapter 04)."""
    stream = pack_documents(tokenizer, documents)
    starts = window_starts(len(stream), seq_len)
    if len(starts) == 0:
        raise TrainingError(f"The Korean training split gives {len(stream)} tokens, fewer than one window of "
                            f"{seq_len}; lower training.seq_len.")
    windows = torch.stack([stream[s:s + seq_len] for s in starts.tolist()])
    share = (windows >= base_size).float().mean(1)
    return TrainingData(windows, share, 1.0 + new_token_bias * share)


def sample_batches(data: TrainingData, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """Window indices for every step, drawn up front from a private generator: [steps, batch_size]."""
    g = generator(seed)
    return torch.multinomial(data.weights, steps * batch_size, replacement=True, generator=g).view(steps, batch_size)


__all__ = ["TrainingData", "build_training_data", "sample_batches"]
