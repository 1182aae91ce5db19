"""Step 4: count how often every token of the target tokenizer occurs in the corpus, fast.

In the paper this ran over about 100 GB. BPE works on each pre-token (word) independently, so the
exact token counts follow from counting the distinct words once and encoding each distinct word
once, weighted by its count. Word counting is a C-level regex scan streamed in batches, shared
with helper processes for large corpora; what a word is comes from the tokenizer family
(:class:`~.families.SplitterSettings`): a match of the base's pre-tokeniser pattern for
byte-level BPE, a stretch of normalised text that no merge crosses for SentencePiece-style BPE.
The distinct words are encoded by a lean copy of the tokenizer's own encoder (the family's),
hundreds of words per call; the counts are a vectorised ``numpy.bincount``. The word counts do
not depend on the new merges, so the loop of chapter 02 counts words once and only re-encodes the
distinct words in each iteration.

``benchmarks/token_counting.py`` checks that this gives exactly the counts of the naive loop and
of ``encode_batch``, and measures the throughput of each. Shown in chapter 02.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import re as _stdlib_re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import regex
from tqdm import tqdm

from .families import family_of, tokenizer_json
# Distinct words per pre-tokenized sequence in token_counts: large enough that per-Encoding costs
# vanish, small enough that a batch still splits into many sequences for the encoder's threads.
_WORDS_PER_SEQUENCE = 256
# A helper process costs a spawn and an import (a few tenths of a second, the time to count a few
# MB): worth it only for streams of more batches than this.
_MIN_BATCHES_FOR_HELPERS = 8


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
    """Splits raw text the way the tokenizer does before BPE: added tokens first, then the family's
    per-stretch rules (a character map, a prefix) and its word pattern (see ``SplitterSettings``)."""

    def __init__(self, splitting):
        self.pattern = regex.compile(splitting.pattern)
        longest_first = sorted(set(splitting.added_tokens), key=len, reverse=True)
        self.added = (_stdlib_re.compile("|".join(map(_stdlib_re.escape, longest_first)))
                      if longest_first else None)
        self.nfc = splitting.nfc
        self.table = str.maketrans(dict(splitting.char_map)) if splitting.char_map else None
        self.prefix, self.prefix_where, self.prefix_if_absent = (splitting.prefix, splitting.prefix_where,
                                                                 splitting.prefix_if_absent)

    def _stretch(self, text: str, at_start: bool) -> str:
        """A stretch of text between added tokens as the tokenizer hands it on: mapped, maybe prefixed."""
        if self.table is not None:
            text = text.translate(self.table)
        if self.prefix and text and (at_start or self.prefix_where == "every") and not (
                self.prefix_if_absent and text.startswith(self.prefix)):
            text = self.prefix + text
        return text

    def count_into(self, docs: Sequence[str], words: Counter, added: Counter) -> tuple[int, int]:
        """Add the pre-tokens of ``docs`` to ``words``, added tokens to ``added``; return (characters, bytes)."""
        if self.nfc:
            docs = [doc if unicodedata.is_normalized("NFC", doc) else unicodedata.normalize("NFC", doc)
                    for doc in docs]
        chars = sum(map(len, docs))
        nbytes = sum(map(len, map(str.encode, docs)))
        findall = self.pattern.findall
        plain = self.table is None and not self.prefix
        if self.added is None or not any(map(self.added.search, docs)):
            # The common case: no added token in the batch. Counter.update on an iterator counts in C,
            # so the whole batch is scanned without a Python-level step per word.
            stretches = docs if plain else [self._stretch(doc, True) for doc in docs]
            words.update(itertools.chain.from_iterable(map(findall, stretches)))
            return chars, nbytes
        for doc in docs:
            start = 0
            for m in self.added.finditer(doc):
                words.update(findall(self._stretch(doc[start:m.start()], start == 0)))
                added[m.group()] += 1
                start = m.end()
            words.update(findall(self._stretch(doc[start:], start == 0)))
        return chars, nbytes


def _count_in_helper(inbox, outbox, splitting) -> None:
    """A helper process: count every batch it receives into one Counter, and send it back once.

    Sending one Counter per helper at the end, instead of one per batch, keeps the pickling and
    the merging in the parent proportional to the distinct words, not to the number of batches.
    """
    splitter = _Splitter(splitting)
    words: Counter = Counter()
    added: Counter = Counter()
    docs = chars = nbytes = 0
    for batch in iter(inbox.get, None):
        c, b = splitter.count_into(batch, words, added)
        docs, chars, nbytes = docs + len(batch), chars + c, nbytes + b
    outbox.put((words, added, docs, chars, nbytes))


def _check_alive(processes) -> None:
    failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
    if failed:
        raise RuntimeError(f"a word-counting process exited with code {failed[0]}; rerun with workers=1 to see "
                           f"the error in this process")


def _put(queue_, item, processes) -> None:
    """``queue_.put`` that raises instead of blocking forever if a helper died."""
    while True:
        try:
            return queue_.put(item, timeout=1.0)
        except queue.Full:
            _check_alive(processes)


def _get(queue_, processes):
    """``queue_.get`` that raises instead of blocking forever if a helper died."""
    while True:
        try:
            return queue_.get(timeout=1.0)
        except queue.Empty:
            _check_alive(processes)


def _count_with_helpers(batches: Iterable[list[str]], helpers: int, splitting, count_here) -> list[tuple]:
    """Count ``batches`` in ``helpers`` extra processes and, whenever they are all busy, here.

    Returns each helper's (words, added, docs, chars, bytes). A batch goes to the helpers only
    while their bounded queue has room, so this process never idles and memory stays flat on
    huge streams; on a busy machine it simply counts more batches itself.
    """
    ctx = multiprocessing.get_context("spawn")
    inbox = ctx.Queue(maxsize=2 * helpers)
    outbox = ctx.Queue()
    processes = [ctx.Process(target=_count_in_helper, args=(inbox, outbox, splitting), daemon=True)
                 for _ in range(helpers)]
    for p in processes:
        p.start()
    try:
        for batch in batches:
            try:
                inbox.put_nowait(batch)
            except queue.Full:
                count_here(batch)
        for _ in processes:
            _put(inbox, None, processes)
        # Read the results before joining: a process cannot exit while its result is unread.
        results = [_get(outbox, processes) for _ in processes]
    finally:
        for p in processes:
            p.terminate()  # no effect on a helper that has finished; stops the others if counting failed here
            p.join()
    return results


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _count_words(texts: Iterable[str], tokenizer, *, workers: int = 0, batch_size: int = 4096,
                 progress: bool = True, total_documents: int | None = None):
    """count_words without the sorting: (words Counter, added Counter, documents, characters, bytes)."""
    splitting = family_of(tokenizer).splitter_settings(tokenizer_json(tokenizer))
    batches = _batches(texts, batch_size)
    first = list(itertools.islice(batches, _MIN_BATCHES_FOR_HELPERS))
    workers = workers or (os.cpu_count() or 1)
    bar = tqdm(total=total_documents, desc="counting words", unit="doc", disable=not progress)
    splitter = _Splitter(splitting)
    words: Counter = Counter()
    added: Counter = Counter()
    docs = chars = nbytes = 0

    def count_here(batch: list[str]) -> None:
        nonlocal docs, chars, nbytes
        c, b = splitter.count_into(batch, words, added)
        docs, chars, nbytes = docs + len(batch), chars + c, nbytes + b
        bar.update(len(batch))  # batches handed to helpers show up when their results arrive

    if workers > 1 and len(first) == _MIN_BATCHES_FOR_HELPERS:
        for w, a, d, c, b in _count_with_helpers(itertools.chain(first, batches), workers - 1, splitting, count_here):
            words.update(w)
            added.update(a)
            docs, chars, nbytes = docs + d, chars + c, nbytes + b
            bar.update(d)
    else:
        for batch in itertools.chain(first, batches):
            count_here(batch)
    bar.close()
    return words, added, docs, chars, nbytes


def count_words(texts: Iterable[str], tokenizer, *, workers: int = 0, batch_size: int = 4096,
                progress: bool = True, total_documents: int | None = None) -> WordCounts:
    """Count the distinct pre-tokens of a (possibly larger-than-memory) stream of documents.

    ``workers`` counts this process: ``workers=0`` uses one process per core for streams of many
    batches, and this process alone for small corpora; ``workers=1`` never starts processes.
    Shown in chapter 02.
    """
    words, added, docs, chars, nbytes = _count_words(texts, tokenizer, workers=workers, batch_size=batch_size,
                                                     progress=progress, total_documents=total_documents)
    ordered = sorted(words)  # sorted: the result never depends on which process counted what
    return WordCounts(ordered, np.fromiter(map(words.__getitem__, ordered), dtype=np.int64, count=len(ordered)),
                      dict(added), docs, chars, nbytes)


def _encode_words_one_by_one(backend, words: Sequence[str], counts: np.ndarray, vocab_size: int) -> np.ndarray:
    """Token counts of ``words`` weighted by ``counts``, one Encoding per word (any tokenizer)."""
    encs = backend.encode_batch_fast(words, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), dtype=np.int64, count=int(lengths.sum()))
    return np.bincount(ids, weights=np.repeat(counts, lengths), minlength=vocab_size).astype(np.int64)


def _encode_words_in_runs(encoder, token_bytes: np.ndarray, words: Sequence[str], counts: np.ndarray,
                          vocab_size: int) -> np.ndarray | None:
    """_encode_words_one_by_one for the family's lean word encoder, about twice as fast; None if bytes do not add up.

    Each run of words goes in as one pre-tokenized sequence, so the encoder still encodes every
    word on its own but returns one Encoding per run instead of one per word (most of the cost).
    The words' bytes lie end to end, so a token belongs to the word whose bytes hold its first byte.
    """
    runs = [words[i:i + _WORDS_PER_SEQUENCE] for i in range(0, len(words), _WORDS_PER_SEQUENCE)]
    encodings = encoder.encode_batch_fast(runs, is_pretokenized=True, add_special_tokens=False)
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64)
    lengths = token_bytes[ids]
    word_ends = np.cumsum(np.fromiter(map(len, map(str.encode, words)), dtype=np.int64, count=len(words)))
    if len(words) and int(lengths.sum()) != int(word_ends[-1]):
        return None  # an assumption of the lean encoder does not hold for this tokenizer
    word_index = np.searchsorted(word_ends, np.cumsum(lengths) - lengths, side="right")
    return np.bincount(ids, weights=counts[word_index], minlength=vocab_size).astype(np.int64)


def token_counts(tokenizer, word_counts: WordCounts, *, batch_size: int = 16384, progress: bool = False) -> np.ndarray:
    """Exact frequency of every token id, from distinct-word counts (one encode per distinct word)."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    vocab_size = backend.get_vocab_size(with_added_tokens=True)
    totals = np.zeros(vocab_size, dtype=np.int64)
    words, counts = word_counts.words, word_counts.counts
    family = family_of(backend)
    lean = family.word_encoder(backend, words)
    word_backend = None
    for start in tqdm(range(0, len(words), batch_size), desc="encoding distinct words", disable=not progress):
        block, weights = words[start:start + batch_size], counts[start:start + batch_size]
        block_totals = _encode_words_in_runs(*lean, block, weights, vocab_size) if lean else None
        if block_totals is None:
            word_backend = word_backend or family.word_backend(backend)
            block_totals = _encode_words_one_by_one(word_backend, block, weights, vocab_size)
        totals += block_totals
    vocab = backend.get_vocab(with_added_tokens=True)
    for token, n in word_counts.added.items():
        totals[vocab[token]] += n
    return totals


def count_token_frequencies(tokenizer, texts: Iterable[str], **kwargs) -> np.ndarray:
    """Word counting and distinct-word encoding in one call (what the benchmark times)."""
    progress = kwargs.pop("progress", True)
    words, added, docs, chars, nbytes = _count_words(texts, tokenizer, progress=progress, **kwargs)
    # Token counts do not depend on the order of the words, so count_words' sorting is skipped.
    unsorted = WordCounts(list(words), np.fromiter(words.values(), dtype=np.int64, count=len(words)),
                          dict(added), docs, chars, nbytes)
    return token_counts(tokenizer, unsorted)


__all__ = ["WordCounts", "count_words", "token_counts", "count_token_frequencies"]
