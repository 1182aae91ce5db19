"""Steps 5-7: refine the candidates by frequency, add frequent single Hangul characters, and repeat
until nothing changes.

Each iteration builds the target tokenizer from the current token set, counts every token over the
Korean training split (step 4), drops the candidates seen fewer than ``vocabulary.min_frequency``
times (step 5) and adds single Hangul characters that occur at least that often and are not yet in
the vocabulary (step 6). A dropped token is never re-added, so the loop ends; it stops when an
iteration changes nothing (step 7). The final tokenizer is the one whose counts were checked, so
every kept token is produced at least ``min_frequency`` times when encoding the corpus.
Shown in chapter 02.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import VocabularyError
from .candidates import is_hangul
from .families import family_of
from .target_tokenizer import TargetTokenizer, build_target_tokenizer, unreachable_in_isolation
from .token_frequency import WordCounts, token_counts


@dataclass
class Iteration:
    """What one pass of the loop (steps 3-6) did."""

    number: int
    candidates: int
    kept: int
    dropped: int
    singles_added: int
    vocabulary_size: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ExpansionResult:
    """The expanded tokenizer, its token counts and the history of the loop."""

    target: TargetTokenizer
    counts: np.ndarray  # token frequencies over the Korean training split, under target
    iterations: list[Iteration]
    threshold: int
    converged: bool
    initial_candidates: list[str]
    singles: list[str]  # single characters added in step 6 and kept
    word_counts: WordCounts
    first_frequencies: dict[str, int]  # each initial candidate's count in the first iteration

    def summary(self, base_size: int) -> dict[str, Any]:
        new_counts = self.counts[self.target.new_ids()]
        return {
            "base_size": base_size,
            "new_tokens": len(self.target.new_tokens),
            "support_tokens": len(self.target.support_tokens),
            "final_size": self.target.size,
            "iterations": len(self.iterations),
            "converged": self.converged,
            "threshold": self.threshold,
            "initial_candidates": len(self.initial_candidates),
            "single_characters_added": len(self.singles),
            "min_count_of_new_tokens": int(new_counts.min()) if len(new_counts) else 0,
            "history": [it.as_dict() for it in self.iterations],
            "corpus": {"documents": self.word_counts.documents, "characters": self.word_counts.characters,
                       "utf8_bytes": self.word_counts.utf8_bytes},
        }


def frequent_single_characters(word_counts: WordCounts, base_tokenizer, threshold: int) -> list[str]:
    """Step 6: single Hangul characters seen at least ``threshold`` times that the base lacks."""
    vocab = base_tokenizer.get_vocab()
    spell = family_of(base_tokenizer).spell
    chars = word_counts.char_counts()
    out = [c for c, n in chars.items() if n >= threshold and is_hangul(c) and spell(c) not in vocab]
    return sorted(out, key=lambda c: (-chars[c], c))


def refine_vocabulary(base_tokenizer, candidates: Sequence[str], word_counts: WordCounts, threshold: int,
                      max_iterations: int = 10) -> ExpansionResult:
    """Steps 3-7 on ``candidates`` (in the family's spelling): build, count, drop, add single characters, repeat."""
    if not candidates:
        raise VocabularyError("No Korean candidates: the intermediate tokenizer has no Hangul token that the base "
                              "tokenizer lacks. Check that the Korean corpus is Korean text.")
    spell = family_of(base_tokenizer).spell
    singles_all = [spell(c) for c in frequent_single_characters(word_counts, base_tokenizer, threshold)]
    current = list(dict.fromkeys(candidates))
    rejected: set[str] = set()
    added_singles: list[str] = []
    iterations: list[Iteration] = []
    converged = False
    best_seen = 0
    first_frequencies: dict[str, int] = {}
    for number in range(1, max_iterations + 1):
        target = build_target_tokenizer(base_tokenizer, current)
        counts = token_counts(target.tokenizer, word_counts)
        vocab = target.tokenizer.get_vocab()
        frequency = {t: int(counts[vocab[t]]) if t in vocab else 0 for t in current}  # unbuilt: never produced
        if number == 1:
            first_frequencies = dict(frequency)
        best_seen = max(best_seen, max(frequency.values(), default=0))
        kept = [t for t in current if frequency[t] >= threshold]
        dropped = [t for t in current if frequency[t] < threshold]
        rejected.update(dropped)
        present = set(kept)
        singles = [s for s in singles_all if s not in present and s not in rejected and s not in vocab]
        added_singles.extend(singles)
        iterations.append(Iteration(number, len(current), len(kept), len(dropped), len(singles), target.size))
        if not dropped and not singles:
            converged = True
            break
        current = kept + singles
        if not current:
            raise VocabularyError(
                f"vocabulary.min_frequency = {threshold} removes every candidate: the most frequent one occurs "
                f"{best_seen} times in the Korean training split. Lower vocabulary.min_frequency in the profile, "
                f"or use a larger Korean corpus."
            )
    if not converged:  # the last set was changed but not re-counted: count it once more
        target = build_target_tokenizer(base_tokenizer, current)
        counts = token_counts(target.tokenizer, word_counts)
    unreachable = unreachable_in_isolation(target)
    if unreachable:
        raise VocabularyError(f"Internal error: {len(unreachable)} new tokens are not produced from their own "
                              f"pieces (e.g. {unreachable[0]!r}).")
    kept_singles = [s for s in added_singles if s in set(target.new_tokens)]
    return ExpansionResult(target, counts, iterations, threshold, converged, list(candidates), kept_singles,
                           word_counts, first_frequencies)


def fertility(tokenizer, texts: Sequence[str]) -> float:
    """Tokens per character of ``texts`` (chapter 02 compares base and extended)."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    tokens = sum(len(e.ids) for e in backend.encode_batch(list(texts), add_special_tokens=False))
    chars = sum(map(len, texts))
    return tokens / chars if chars else float("nan")


__all__ = ["refine_vocabulary", "frequent_single_characters", "fertility", "ExpansionResult", "Iteration"]
