"""Step 4: count how often every token of the target tokenizer occurs in the corpus, fast.

In the paper this ran over about 100 GB. BPE works on each pre-token (word) independently, so the
exact token counts follow from counting the distinct words once and encoding each distinct word
once, weighted by its count. Word counting is a C-level regex scan (the GPT-2 pattern that the
byte-level pre-tokeniser uses) streamed in batches, across processes for large corpora; encoding
the distinct words uses the tokenizer's own batch encoder; the counts are a vectorised
``numpy.bincount``. The word counts do not depend on the new merges, so the loop of chapter 02
counts words once and only re-encodes the distinct words in each iteration.

``benchmarks/token_counting.py`` checks that this gives exactly the counts of the naive loop and
of ``encode_batch``, and measures the throughput of each. Shown in chapter 02.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re as _stdlib_re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import regex
from tqdm import tqdm

from .intermediate_tokenizer import check_supported, tokenizer_json

# The pattern of the tokenizers library's ByteLevel pre-tokenizer (use_regex=True), i.e. GPT-2's.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@dataclass
class WordCounts:
    """Distinct pre-tokens with their counts, plus added-token counts and corpus size."""

    words: list[str]
    counts: np.ndarray  # int64, aligned with words
    added: dict[str, int]  # added/special tokens matched in the raw text
    documents: int
    characters: int
    utf8_bytes: int

    def char_counts(self) -> Counter:
        """How often each character occurs (from the word counts, without another pass)."""
        out: Counter = Counter()
        for word, n in zip(self.words, self.counts.tolist()):
            for ch, k in Counter(word).items():
                out[ch] += k * n
        return out


class _Splitter:
    """Splits raw text the way the tokenizer does before BPE: added tokens first, then the regex."""

    def __init__(self, added_tokens: Sequence[str], normalize_nfc: bool):
        self.pattern = regex.compile(GPT2_PATTERN)
        longest_first = sorted(set(added_tokens), key=len, reverse=True)
        self.added = (_stdlib_re.compile("|".join(map(_stdlib_re.escape, longest_first)))
                      if longest_first else None)
        self.nfc = normalize_nfc

    def count(self, docs: Sequence[str]) -> tuple[Counter, Counter, int, int]:
        words: Counter = Counter()
        added: Counter = Counter()
        chars = nbytes = 0
        findall = self.pattern.findall
        for doc in docs:
            if self.nfc and not unicodedata.is_normalized("NFC", doc):
                doc = unicodedata.normalize("NFC", doc)
            chars += len(doc)
            nbytes += len(doc.encode("utf-8"))
            if self.added is None:
                words.update(findall(doc))
                continue
            start = 0
            for m in self.added.finditer(doc):
                words.update(findall(doc[start:m.start()]))
                added[m.group()] += 1
                start = m.end()
            words.update(findall(doc[start:]))
        return words, added, chars, nbytes


_worker_splitter: _Splitter | None = None


def _init_worker(added_tokens: Sequence[str], normalize_nfc: bool) -> None:
    global _worker_splitter
    _worker_splitter = _Splitter(added_tokens, normalize_nfc)


def _count_in_worker(docs: Sequence[str]):
    return _worker_splitter.count(docs)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _fast_path_settings(tokenizer) -> tuple[list[str], bool]:
    """Added tokens and whether to apply NFC, for a tokenizer whose pipeline the splitter mirrors."""
    spec = check_supported(tokenizer)
    pre = spec.get("pre_tokenizer") or {}
    byte_levels = [pre] if pre.get("type") == "ByteLevel" else pre.get("pretokenizers", [])
    if len(byte_levels) != 1 or byte_levels[0].get("type") != "ByteLevel" or not byte_levels[0].get("use_regex", True) \
            or byte_levels[0].get("add_prefix_space"):
        raise NotImplementedError("the word counter mirrors only the plain GPT-2 ByteLevel pre-tokenizer")
    norm = spec.get("normalizer")
    if norm and norm.get("type") != "NFC" and not (norm.get("type") == "Sequence"
                                                 and all(n.get("type") == "NFC" for n in norm["normalizers"])):
        raise NotImplementedError("the word counter mirrors only no normaliser or NFC")
    added = [t["content"] for t in spec.get("added_tokens", [])]
    return added, bool(norm)


def count_words(texts: Iterable[str], tokenizer, *, workers: int = 0, batch_size: int = 4096,
                progress: bool = True, total_documents: int | None = None) -> WordCounts:
    """Count the distinct pre-tokens of a (possibly larger-than-memory) stream of documents.

    ``workers=0`` uses one process per core for streams of many batches, and this process for
    small corpora; ``workers=1`` never starts processes. Shown in chapter 02.
    """
    added_tokens, nfc = _fast_path_settings(tokenizer)
    words: Counter = Counter()
    added: Counter = Counter()
    docs = chars = nbytes = 0
    batches = _batches(texts, batch_size)
    first = list(itertools.islice(batches, 2))
    workers = workers or (os.cpu_count() or 1)
    bar = tqdm(total=total_documents, desc="counting words", unit="doc", disable=not progress)

    def absorb(result, n_docs):
        nonlocal docs, chars, nbytes
        w, a, c, b = result
        words.update(w)
        added.update(a)
        docs += n_docs
        chars += c
        nbytes += b
        bar.update(n_docs)

    if workers > 1 and len(first) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(added_tokens, nfc)) as pool:
            sized = ((b, len(b)) for b in itertools.chain(first, batches))
            pending = []
            for batch, n in sized:
                pending.append((pool.apply_async(_count_in_worker, (batch,)), n))
                # Keep a bounded number of batches in flight so memory stays flat on huge streams.
                while len(pending) >= 2 * workers:
                    res, k = pending.pop(0)
                    absorb(res.get(), k)
            for res, k in pending:
                absorb(res.get(), k)
    else:
        splitter = _Splitter(added_tokens, nfc)
        for batch in itertools.chain(first, batches):
            absorb(splitter.count(batch), len(batch))
    bar.close()
    items = sorted(words.items())  # sorted: the result never depends on arrival order
    return WordCounts([w for w, _ in items], np.fromiter((n for _, n in items), dtype=np.int64, count=len(items)),
                      dict(added), docs, chars, nbytes)


def token_counts(tokenizer, word_counts: WordCounts, *, batch_size: int = 16384, progress: bool = False) -> np.ndarray:
    """Exact frequency of every token id, from distinct-word counts (one encode per distinct word)."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    vocab_size = backend.get_vocab_size(with_added_tokens=True)
    totals = np.zeros(vocab_size, dtype=np.int64)
    words, counts = word_counts.words, word_counts.counts
    for start in tqdm(range(0, len(words), batch_size), desc="encoding distinct words", disable=not progress):
        encs = backend.encode_batch_fast(words[start:start + batch_size], add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), dtype=np.int64, count=int(lengths.sum()))
        totals += np.bincount(ids, weights=np.repeat(counts[start:start + len(encs)], lengths),
                              minlength=vocab_size).astype(np.int64)
    vocab = backend.get_vocab(with_added_tokens=True)
    for token, n in word_counts.added.items():
        totals[vocab[token]] += n
    return totals


def count_token_frequencies(tokenizer, texts: Iterable[str], **kwargs) -> np.ndarray:
    """Word counting and distinct-word encoding in one call (what the benchmark times)."""
    progress = kwargs.pop("progress", True)
    return token_counts(tokenizer, count_words(texts, tokenizer, progress=progress, **kwargs))


def naive_token_counts(tokenizer, texts: Iterable[str]) -> np.ndarray:
    """The baseline: encode line by line in Python and count (benchmark and tests only)."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    counts: Counter = Counter()
    for text in texts:
        counts.update(backend.encode(text, add_special_tokens=False).ids)
    totals = np.zeros(backend.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    for k, v in counts.items():
        totals[k] = v
    return totals


def batch_token_counts(tokenizer, texts: Iterable[str], *, fast: bool = False, batch_size: int = 4096) -> np.ndarray:
    """The raw alternative: ``encode_batch`` (or ``encode_batch_fast``) over every document."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    vocab_size = backend.get_vocab_size(with_added_tokens=True)
    totals = np.zeros(vocab_size, dtype=np.int64)
    encode = backend.encode_batch_fast if fast else backend.encode_batch
    for batch in _batches(texts, batch_size):
        encs = encode(batch, add_special_tokens=False)
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), dtype=np.int64)
        totals += np.bincount(ids, minlength=vocab_size)
    return totals


__all__ = ["WordCounts", "count_words", "token_counts", "count_token_frequencies", "naive_token_counts",
           "batch_token_counts", "tokenizer_json"]
