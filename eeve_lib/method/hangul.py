"""Steps 1-2 and 6: what counts as Hangul, for the candidates (step 2), the tokenizer families'
spelling of pieces (steps 1-4) and the single characters of step 6.

In a module of its own, below both ``candidates`` and ``families``, so that neither imports the
other for it.
"""

from __future__ import annotations

from typing import Iterable

# The Unicode blocks of Hangul, as closed code point ranges: Jamo, Compatibility Jamo (the ㅋㅋ of
# informal text), Jamo Extended-A, and Syllables (AC00-D7AF) followed by Jamo Extended-B (D7B0-D7FF).
HANGUL_RANGES = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF))


def is_hangul(char: str) -> bool:
    """A character of one of the Hangul blocks (syllables, jamo, compatibility jamo)."""
    o = ord(char)
    return any(lo <= o <= hi for lo, hi in HANGUL_RANGES)


def contains_hangul(text: str) -> bool:
    return any(is_hangul(c) for c in text)


def hangul_share(texts: Iterable[str]) -> float:
    """Share of non-space characters that are Hangul (to explain an empty candidate list)."""
    total = hangul = 0
    for t in texts:
        for c in t:
            if not c.isspace():
                total += 1
                hangul += is_hangul(c)
    return hangul / total if total else 0.0


__all__ = ["HANGUL_RANGES", "is_hangul", "contains_hangul", "hangul_share"]
