"""Step 11: what the expansion bought and what it cost.

The headline is *bits per character* (and per UTF-8 byte) on held-out Korean and English text:
the total negative log-likelihood of a text in bits divided by its length. Unlike per-token
perplexity it does not depend on how the tokenizer cuts the text, so the base model and the
extended model can be compared on the same text. Long texts are scored with a sliding window
(every token is scored exactly once, with up to ``window`` tokens of context); each document is
preceded by the end-of-text token so that its first token is scored too. Only the real tokens'
logits enter the softmax (padding rows are not tokens). Also: fertility (tokens per character),
the cost of generating the same Korean sentence, and generation samples. Shown in chapter 05.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..runtime import seeded


@dataclass
class TextScore:
    """Total negative log-likelihood of some texts, and their size."""

    nats: float
    tokens: int
    characters: int
    utf8_bytes: int

    @property
    def bits_per_character(self) -> float:
        return self.nats / math.log(2) / self.characters

    @property
    def bits_per_byte(self) -> float:
        return self.nats / math.log(2) / self.utf8_bytes

    @property
    def tokens_per_character(self) -> float:
        return self.tokens / self.characters

    def as_dict(self) -> dict[str, float]:
        return {"bits_per_character": self.bits_per_character, "bits_per_byte": self.bits_per_byte,
                "tokens_per_character": self.tokens_per_character, "tokens": self.tokens,
                "characters": self.characters, "utf8_bytes": self.utf8_bytes, "nats": self.nats}


def uniform_bits_per_character(tokens_per_character: float, vocabulary_size: int) -> float:
    """Bits per character of a uniform guess over the vocabulary: every token costs log2(V) bits.

    A model scoring worse than this has learned something wrong about the text (say, that its
    bytes never occur), not merely too little.
    """
    return tokens_per_character * math.log2(vocabulary_size)


def mean_and_spread(values: Sequence[float]) -> dict[str, float | list[float]]:
    """Mean, sample standard deviation (0 for one value), min and max of per-seed results."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"values": list(values), "mean": mean, "std": std, "min": min(values), "max": max(values)}


def _window_plan(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of each window over positions 0..n-1 of [bos] + ids."""
    plan, scored_until, begin = [], 1, 0
    while True:
        end = min(begin + window, n)
        plan.append((begin, end, max(scored_until, begin + 1)))
        scored_until = end
        if end >= n:
            return plan
        begin += stride


@torch.no_grad()
def score_texts(model, tokenizer, texts: Sequence[str], *, window: int = 512, stride: int = 256,
                vocab_limit: int | None = None, batch_size: int = 16, dtype: torch.dtype | None = None) -> TextScore:
    """Negative log-likelihood (nats) of ``texts`` under ``model``, sliding-window for long texts.

    ``window`` must exceed ``stride``; each window scores only the tokens no earlier window scored.
    ``dtype`` bfloat16 runs the forward passes under autocast (the log-softmax stays float32).
    """
    if not 0 < stride < window:
        raise ValueError("score_texts needs 0 < stride < window")
    device = next(model.parameters()).device
    vocab_limit = vocab_limit or len(tokenizer)
    bos = tokenizer.eos_token_id
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    encoded = [[bos] + e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]
    pieces: list[tuple[list[int], int]] = []  # (window token ids, number of leading positions not scored)
    for ids in encoded:
        for begin, end, first in _window_plan(len(ids), window, stride):
            pieces.append((ids[begin:end], first - begin))
    pieces.sort(key=lambda p: len(p[0]))  # similar lengths together: less padding
    total = 0.0
    model.eval()
    for i in range(0, len(pieces), batch_size):
        chunk = pieces[i:i + batch_size]
        longest = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), longest), bos, dtype=torch.long)
        mask = torch.zeros((len(chunk), longest), dtype=torch.long)
        score = torch.zeros((len(chunk), longest), dtype=torch.bool)
        for row, (ids, skip) in enumerate(chunk):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            mask[row, :len(ids)] = 1
            score[row, max(skip, 1):len(ids)] = True
        with torch.autocast(device.type, dtype=dtype, enabled=dtype not in (None, torch.float32)):
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[..., :vocab_limit], dim=-1)
        target = input_ids[:, 1:].to(device)
        token_logp = logp[:, :-1].gather(-1, target.unsqueeze(-1)).squeeze(-1)
        total -= float(token_logp[score[:, 1:].to(device)].sum())
    return TextScore(total, sum(len(ids) - 1 for ids in encoded), sum(map(len, texts)),
                     sum(len(t.encode("utf-8")) for t in texts))


def cap_characters(texts: Sequence[str], limit: int | None) -> list[str]:
    """The leading documents of ``texts`` up to about ``limit`` characters (all when None)."""
    if limit is None:
        return list(texts)
    out, n = [], 0
    for t in texts:
        if n >= limit:
            break
        out.append(t)
        n += len(t)
    return out


@torch.no_grad()
def generation_cost(model, tokenizer, text: str, repeats: int = 3) -> dict[str, float]:
    """Tokens and wall time to generate ``text`` token by token with a KV cache (forced decoding)."""
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    device = next(model.parameters()).device
    ids = torch.cat([torch.tensor([[tokenizer.eos_token_id]]), ids], dim=1).to(device)
    best = float("inf")
    model.eval()
    for _ in range(repeats):
        start = time.perf_counter()
        past = None
        for t in range(ids.shape[1] - 1):
            # ``cache``: the KV cache's name in transformers 5 (``past_key_values`` is deprecated)
            out = model(input_ids=ids[:, t:t + 1], cache=past, use_cache=True)
            past = out.cache
        best = min(best, time.perf_counter() - start)
    return {"tokens": int(ids.shape[1] - 1), "seconds": best, "characters": len(text)}


@torch.no_grad()
def sample_continuations(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, *, seed: int,
                         greedy: bool) -> list[dict[str, Any]]:
    """Greedy or seeded-sampling continuations; the global RNG is restored afterwards."""
    out = []
    model.eval()
    device = next(model.parameters()).device
    for k, prompt in enumerate(prompts):
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids.to(device)
        with seeded(seed + k):
            gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=not greedy,
                                 top_k=None if greedy else 50, temperature=None if greedy else 0.8,
                                 top_p=None, pad_token_id=tokenizer.eos_token_id)
        new = gen[0, ids.shape[1]:]
        out.append({"prompt": prompt, "text": tokenizer.decode(new, skip_special_tokens=True),
                    "tokens": new.tolist(), "mode": "greedy" if greedy else f"sampled (seed {seed + k})"})
    return out
