"""Step 2: the Korean tokens of the intermediate tokenizer that the base tokenizer lacks.

A candidate is a token whose text (the family decides how a piece spells text: for byte-level
BPE, one character per byte) is whole UTF-8 text containing Hangul (syllables or jamo) and that
the base vocabulary does not have. Tokens that end inside a multi-byte character decode to no
text and are not candidates. Shown in chapter 01.
"""

from __future__ import annotations

from .families import family_of
# Step 2's rule asks whether a token's text holds Hangul; what Hangul is lives below both this
# module and the families (which spell pieces with it), so that neither imports the other.
from .hangul import HANGUL_RANGES, contains_hangul, hangul_share, is_hangul


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
