"""Step 1: an intermediate tokenizer trained on Korean text.

It uses the *same* normaliser and pre-tokeniser as the base tokenizer (for phi-2's byte-level
BPE: the GPT-2 pre-tokeniser, so a Korean word carries its leading space), plus Unicode NFC, so
that its tokens are strings the base tokenizer could actually produce. Its size is the profile's
``vocabulary.intermediate_vocab_size`` (see ``eeve_lib.book.external`` for the model card's).
How a family trains it lives
behind the tokenizer-family seam (:mod:`eeve_lib.method.families`). Shown in chapter 01.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from .families import family_of


def train_intermediate_tokenizer(korean_texts: Sequence[str] | Iterable[str], base_tokenizer, vocab_size: int,
                                 min_frequency: int = 2):
    """Train a tokenizer of the base's family on Korean text with the base's pre-tokeniser (chapter 01).

    Returns a ``tokenizers.Tokenizer``. Deterministic for the same texts.
    """
    return family_of(base_tokenizer).train_intermediate(list(korean_texts), base_tokenizer, vocab_size,
                                                        min_frequency)


__all__ = ["train_intermediate_tokenizer"]
