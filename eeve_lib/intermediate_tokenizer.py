"""Step 1: an intermediate tokenizer trained on Korean text.

It uses the *same* normaliser and pre-tokeniser as the base tokenizer (for phi-2's byte-level
BPE: the GPT-2 pre-tokeniser, so a Korean word carries its leading space), plus Unicode NFC, so
that its tokens are strings the base tokenizer could actually produce. Its size is the profile's
``vocabulary.intermediate_vocab_size`` (40,000 in the model card). Shown in chapter 01.
"""

from __future__ import annotations

import json
from typing import Iterable, Sequence

from .errors import TokenizerError

SUPPORTED_KINDS = "byte-level BPE (GPT-2, phi-2 and similar: a BPE model with the ByteLevel pre-tokenizer and decoder)"


def tokenizer_json(tokenizer) -> dict:
    """The ``tokenizer.json`` content of a Hugging Face or ``tokenizers`` tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    return json.loads(backend.to_str())


def _contains_type(node: dict | None, type_name: str) -> bool:
    if not node:
        return False
    if node.get("type") == type_name:
        return True
    return any(_contains_type(child, type_name) for child in node.get("pretokenizers", []) + node.get("decoders", [])
               + node.get("normalizers", []))


def check_supported(tokenizer) -> dict:
    """Return the tokenizer's JSON if it is byte-level BPE; otherwise a clear error."""
    spec = tokenizer_json(tokenizer)
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not _contains_type(spec.get("pre_tokenizer"), "ByteLevel") \
            or not _contains_type(spec.get("decoder"), "ByteLevel"):
        found = f"model {model.get('type')!r}, pre-tokenizer {(spec.get('pre_tokenizer') or {}).get('type')!r}"
        raise TokenizerError(f"The base tokenizer is not supported ({found}). Supported kinds: {SUPPORTED_KINDS}.")
    if model.get("dropout"):
        raise TokenizerError("The base tokenizer uses BPE dropout; vocabulary expansion needs a deterministic BPE.")
    return spec


def with_nfc(normalizer: dict | None) -> dict:
    """The base normaliser followed by NFC (NFD Hangul would otherwise explode into jamo bytes)."""
    nfc = {"type": "NFC"}
    if not normalizer:
        return nfc
    if _contains_type(normalizer, "NFC"):
        return normalizer
    return {"type": "Sequence", "normalizers": [normalizer, nfc]}


def train_intermediate_tokenizer(korean_texts: Sequence[str] | Iterable[str], base_tokenizer, vocab_size: int,
                                 min_frequency: int = 2):
    """Train a byte-level BPE of ``vocab_size`` on Korean text with the base's pre-tokeniser (chapter 01).

    Returns a ``tokenizers.Tokenizer``. Deterministic for the same texts.
    """
    from tokenizers import Tokenizer, pre_tokenizers, trainers

    spec = check_supported(base_tokenizer)
    specials = [t["content"] for t in spec.get("added_tokens", []) if t.get("special")]
    blank = dict(spec)
    blank["added_tokens"] = []
    blank["normalizer"] = with_nfc(spec.get("normalizer"))
    blank["post_processor"] = None
    blank["model"] = dict(spec["model"], vocab={}, merges=[])
    tok = Tokenizer.from_str(json.dumps(blank))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    texts = list(korean_texts)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok
