"""Steps 1-4, per tokenizer family: the one seam for everything that differs between families.

EEVE's steps are the same for every base tokenizer, but how a piece is spelled, how an
intermediate tokenizer is trained with the base's own normalisation and pre-tokenisation, how a
new token's merges are derived and how words are counted fast and exactly differ between
tokenizer families. Each family implements :class:`TokenizerFamily`; :func:`family_of` picks the
one that matches a base tokenizer. The method modules call only this interface, so adding a
family is one new module here, registered in :func:`_families`, and nothing else. The
interface and the helpers families share live in :mod:`.base`.

Implemented: :mod:`.byte_level` (GPT-2/phi-2: pieces are bytes) and :mod:`.sentencepiece_bpe`
(Llama-2/SOLAR-10.7B: pieces are characters with "▁" for the space, and byte fallback). Shown in
chapters 01 and 02.
"""

from __future__ import annotations

from typing import Iterable

from ...errors import TokenizerError
from .base import (SplitterSettings, TokenizerFamily, bpe_segment, contains_type, hangul_anchored_merges,
                   left_to_right_merges, merge_pairs, tokenizer_json, with_nfc)
from .byte_level import ByteLevelBPE
from .sentencepiece_bpe import SentencePieceBPE


def _families() -> list[type[TokenizerFamily]]:
    return [ByteLevelBPE, SentencePieceBPE]


def family_of(tokenizer) -> TokenizerFamily:
    """The family of ``tokenizer`` (a Hugging Face or ``tokenizers`` tokenizer); a clear error if none."""
    spec = tokenizer_json(tokenizer)
    for cls in _families():
        if cls.matches(spec):
            family = cls()
            family.check(spec)
            return family
    model = spec.get("model") or {}
    found = f"model {model.get('type')!r}, pre-tokenizer {(spec.get('pre_tokenizer') or {}).get('type')!r}"
    supported = "; ".join(cls.description for cls in _families())
    raise TokenizerError(f"The base tokenizer is not supported ({found}). Supported kinds: {supported}.")


def supported_families() -> Iterable[str]:
    return [cls.name for cls in _families()]


def family_named(name: str) -> TokenizerFamily:
    """The family called ``name`` (a profile's ``base_model.tokenizer_family``)."""
    for cls in _families():
        if cls.name == name:
            return cls()
    raise TokenizerError(f"Unknown tokenizer family {name!r}. Known: {', '.join(supported_families())}.")


def family_modules() -> list:
    """The modules of every family (their source is part of the cache key of the steps using them)."""
    import sys

    return [sys.modules[__name__], sys.modules[TokenizerFamily.__module__]] + [
        sys.modules[cls.__module__] for cls in _families()]


__all__ = [
    "hangul_anchored_merges",
    "left_to_right_merges",
    "TokenizerFamily",
    "SplitterSettings",
    "family_of",
    "family_named",
    "family_modules",
    "tokenizer_json",
    "bpe_segment",
    "merge_pairs",
    "left_to_right_merges",
    "with_nfc",
    "contains_type",
    "supported_families",
]
