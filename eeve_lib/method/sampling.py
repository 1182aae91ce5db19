"""Step 8: bias the training data toward texts that contain new tokens.

The Korean training split is packed into non-overlapping windows of ``training.seq_len`` tokens
under the extended tokenizer; each window is drawn with weight ``1 + new_token_bias * share``,
where ``share`` is the fraction of its tokens that are new. With English replay
(``training.english_replay`` = r > 0) windows of the English training split join them, weighted so
that a drawn window is English with probability r: the stages that train base parameters keep
seeing the language the base model must not forget. Batches for every step are drawn up front
from a private generator, so a resumed run draws the same batches. Shown in chapter 04.
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
    """Non-overlapping windows of the Korean (and replayed English) training streams, with weights."""

    windows: torch.Tensor  # [N, seq_len] token ids
    new_share: torch.Tensor  # [N] share of tokens in each window that are new tokens
    weights: torch.Tensor  # [N] sampling weights: 1 + new_token_bias * new_share (Korean windows)
    english: torch.Tensor | None = None  # [N] True for a replayed English window

    def english_share(self, weights: torch.Tensor | None = None) -> float:
        """Probability that a drawn window is English (the replay share)."""
        if self.english is None:
            return 0.0
        w = self.weights if weights is None else weights
        return float(w[self.english].sum() / w.sum())

    def expected_new_share(self, weights: torch.Tensor | None = None) -> float:
        """Expected share of new tokens per sampled Korean window under ``weights`` (default: these)."""
        w = self.weights if weights is None else weights
        if self.english is not None:
            w = w * ~self.english
        return float((w * self.new_share).sum() / w.sum())


def _windows(tokenizer, documents: Sequence[str], seq_len: int, what: str) -> torch.Tensor:
    stream = pack_documents(tokenizer, documents)
    starts = window_starts(len(stream), seq_len)
    if len(starts) == 0:
        raise TrainingError(f"The {what} training split gives {len(stream)} tokens, fewer than one window of "
                            f"{seq_len}; lower training.seq_len.")
    return torch.stack([stream[s:s + seq_len] for s in starts.tolist()])


def build_training_data(tokenizer, documents: Sequence[str], seq_len: int, base_size: int,
                        new_token_bias: float, english_documents: Sequence[str] = (),
                        english_replay: float = 0.0) -> TrainingData:
    """Pack documents into windows and weight each by how many new tokens it holds (step 8, chapter 04).

    With ``english_replay`` = r > 0, English windows are added with equal weights that sum to
    r / (1 - r) times the Korean windows' total, so a drawn window is English with probability r.
    """
    windows = _windows(tokenizer, documents, seq_len, "Korean")
    share = (windows >= base_size).float().mean(1)
    weights = 1.0 + new_token_bias * share
    if not english_replay:
        return TrainingData(windows, share, weights)
    if not 0 < english_replay < 1:
        raise TrainingError(f"training.english_replay is {english_replay}; give a share in [0, 1).")
    english = _windows(tokenizer, english_documents, seq_len, "English")
    english_weights = torch.full((len(english),), float(weights.sum()) * english_replay
                                 / (1 - english_replay) / len(english))
    is_english = torch.cat([torch.zeros(len(windows), dtype=torch.bool), torch.ones(len(english), dtype=torch.bool)])
    return TrainingData(torch.cat([windows, english]), torch.cat([share, (english >= base_size).float().mean(1)]),
                        torch.cat([weights, english_weights]), is_english)


def sample_batches(data: TrainingData, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """Window indices for every step, drawn up front from a private generator: [steps, batch_size]."""
    g = generator(seed)
    return torch.multinomial(data.weights, steps * batch_size, replacement=True, generator=g).view(steps, batch_size)


__all__ = ["TrainingData", "build_training_data", "sample_batches"]
