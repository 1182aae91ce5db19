"""Step 2: the Korean tokens of the intermediate tokenizer that the base tokenizer lacks.

A candidate is a token whose text (the family decides how a piece spells text: for byte-level
BPE, one character per byte) is whole UTF-8 text containing Hangul (syllables or jamo) and that
the base vocabulary does not have. Tokens that end inside a multi-byte character decode to no
text and are not candidates. Shown in chapter 01.
"""

from __future__ import annotations

from typing import Iterable

from .families import family_of


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


def extract_candidates(intermediate, base) -> list[str]:
    """Korean tokens of ``intermediate`` absent from ``base``, in the intermediate's id order.

    Both arguments are ``tokenizers.Tokenizer`` objects or Hugging Face tokenizers. Returns
    tokens in the family's spelling (chapter 01 shows them decoded).
    """
    family = family_of(base)
    intermediate = getattr(intermediate, "backend_tokenizer", intermediate)
    base = getattr(base, "backend_tokenizer", base)
    base_vocab = base.get_vocab(with_added_tokens=True)
    special = {t.content for t in intermediate.get_added_tokens_decoder().values()}
    out = []
    for token, _ in sorted(intermediate.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1]):
        if token in base_vocab or token in special:
            continue
        text = family.token_text(token)
        if text is not None and contains_hangul(text):
            out.append(token)
    return out


__all__ = ["extract_candidates", "is_hangul", "contains_hangul", "hangul_share", "HANGUL_RANGES"]
