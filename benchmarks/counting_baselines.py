"""The baselines the token counter is measured against (benchmarks and tests only, not the method).

``naive_token_counts`` encodes line by line in Python; ``batch_token_counts`` calls
``encode_batch`` (or ``encode_batch_fast``) over every document. Both count every token of a
corpus exactly, as :func:`eeve_lib.method.token_frequency.count_token_frequencies` does faster.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Iterable, Iterator

import numpy as np


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(itertools.islice(it, size)):
        yield batch


def naive_token_counts(tokenizer, texts: Iterable[str]) -> np.ndarray:
    """Encode line by line in Python and count."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    counts: Counter = Counter()
    for text in texts:
        counts.update(backend.encode(text, add_special_tokens=False).ids)
    totals = np.zeros(backend.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    for k, v in counts.items():
        totals[k] = v
    return totals


def batch_token_counts(tokenizer, texts: Iterable[str], *, fast: bool = False, batch_size: int = 4096) -> np.ndarray:
    """``encode_batch`` (or ``encode_batch_fast``) over every document."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    vocab_size = backend.get_vocab_size(with_added_tokens=True)
    totals = np.zeros(vocab_size, dtype=np.int64)
    encode = backend.encode_batch_fast if fast else backend.encode_batch
    for batch in _batches(texts, batch_size):
        encs = encode(batch, add_special_tokens=False)
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), dtype=np.int64)
        totals += np.bincount(ids, minlength=vocab_size)
    return totals
