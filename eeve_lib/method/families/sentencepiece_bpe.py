"""Steps 1-4, SentencePiece-style BPE family (Llama-2, SOLAR-10.7B): pieces are characters, "▁" is the space.

A SentencePiece BPE vocabulary stores pieces as Unicode text in which the space is spelled "▁"
(U+2581): ``" 대한"`` is ``"▁대한"``. Its alphabet is the characters the tokenizer was trained on;
a character outside it becomes *byte-fallback* pieces, one per UTF-8 byte (``"<0xEA>"``), which
no merge joins. So for an English SentencePiece vocabulary a Hangul syllable costs three tokens,
and a Korean candidate cannot be built by merges at all until each of its syllables is itself a
piece of the vocabulary: this is what the model card's step 6 ("add missing single characters")
does here. The build adds those characters when a candidate needs them (:meth:`missing_pieces`);
they are *support* tokens, like the partial syllables of the byte-level family, and each of them
occurs at least the threshold number of times in the corpus, since a kept candidate containing it
does.

Two spellings of the same tokenizer exist in ``tokenizer.json`` files, and both are handled:

* Llama-2/SOLAR (transformers' "legacy" conversion): normaliser ``Sequence[Prepend("▁"),
  Replace(" ", "▁")]``, no pre-tokeniser, decoder ``Sequence[Replace("▁", " "), ByteFallback,
  Fuse, Strip]``. The Prepend normaliser runs on every stretch of text between added tokens.
* newer conversions: no normaliser and a ``Metaspace`` pre-tokeniser (``prepend_scheme``
  ``first`` or ``always``, ``split`` on or off).

**What a word is.** With no pre-tokeniser, BPE runs over the whole normalised text, so merges
could in principle cross a "▁". They cannot where no piece of the vocabulary contains a character
other than "▁" followed by "▁": SentencePiece trains with ``split_by_whitespace``, so its pieces
carry "▁" only at their start (or are runs of "▁"), and no merge ever joins ``"x"`` to a following
``"▁..."``. The text therefore falls apart, exactly, into *units* that each start at a "▁" that
follows another character: ``"▁대한민국은▁▁민주"`` -> ``"▁대한민국은"``, ``"▁▁민주"``. BPE of the
text is the concatenation of BPE of its units (merge priorities never compare across a boundary
that no merge crosses), so counting distinct units and encoding each once is exact, as it is for
the words of the GPT-2 pre-tokeniser. The rule is checked on the base vocabulary (else a whole
stretch of text is one unit: exact, slower) and every new token must obey it (the intermediate
tokenizer is trained with SentencePiece's whitespace split, so its tokens do). A tokenizer whose
normalisation the counter cannot apply itself (added tokens matched after normalisation, say) is
counted by whole documents, each encoded by the tokenizer: exact, slowest.

**Korean only.** Every new merge's result and every new single character contains Hangul, so a
text without Hangul is segmented exactly as the base segments it (after NFC): a new merge can
fire only where its result's Hangul character is in the text, and a new character entry only
replaces that character's byte-fallback pieces. A candidate that would need a new character
without Hangul (a Chinese character missing from the base, say) is left unbuilt.

Byte-fallback pieces, ``<unk>``, ``<s>`` and ``</s>`` keep their ids; the normaliser (plus NFC),
pre-tokeniser, decoder and post-processor are the base's. Shown in chapters 00-02.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Sequence

import numpy as np

from ...errors import TokenizerError
from ..hangul import contains_hangul
from .base import SplitterSettings, TokenizerFamily, bpe_segment, contains_type, tokenizer_json, with_nfc

SPACE = "▁"
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")
# A character other than "▁" followed by "▁": a piece holding this could merge across a word start.
CROSSES_WORD_START = re.compile(f"[^{SPACE}]{SPACE}")
_TO_PIECES = str.maketrans({" ": SPACE})
_TO_TEXT = str.maketrans({SPACE: " "})
# Units of the normalised text: a run of "▁" with the characters up to the next "▁" (a text
# may also begin without one). With Metaspace(split=True) every "▁" starts a unit of its own.
UNIT_PATTERN = f"{SPACE}+[^{SPACE}]*|[^{SPACE}]+"
SPLIT_UNIT_PATTERN = f"{SPACE}[^{SPACE}]*|[^{SPACE}]+"
WHOLE_SEGMENT_PATTERN = r"(?s).+"
# Token length for the lean encoder's byte check: a piece that covers no fixed stretch of text.
_NOT_TEXT = 1 << 40


def byte_pieces() -> list[str]:
    """The 256 byte-fallback pieces, ``<0x00>`` ... ``<0xFF>``, in byte order."""
    return [f"<0x{b:02X}>" for b in range(256)]


def to_pieces(text: str) -> str:
    """The piece spelling of ``text``: spaces become "▁" (``" 대한"`` -> ``"▁대한"``)."""
    return text.translate(_TO_PIECES)


def token_text(token: str) -> str | None:
    """The text a piece stands for ("▁" -> space), or None for a byte-fallback piece."""
    if BYTE_PIECE.fullmatch(token):
        return None
    return token.translate(_TO_TEXT)


def _flatten(node: dict | None, key: str) -> list[dict]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [leaf for child in node.get(key, []) for leaf in _flatten(child, key)]
    return [node]


def _prepend_normaliser(spec: dict) -> bool:
    """Whether the normaliser is Llama-2's Prepend("▁") + Replace(" ", "▁") (with NFC or not)."""
    parts = _flatten(spec.get("normalizer"), "normalizers")
    prepend = any(p.get("type") == "Prepend" and p.get("prepend") == SPACE for p in parts)
    replace = any(p.get("type") == "Replace" and (p.get("pattern") or {}).get("String") == " "
                  and p.get("content") == SPACE for p in parts)
    return prepend and replace


def _metaspace(spec: dict) -> dict | None:
    parts = _flatten(spec.get("pre_tokenizer"), "pretokenizers")
    found = [p for p in parts if p.get("type") == "Metaspace"]
    return found[0] if found else None


def _prepend_scheme(metaspace: dict) -> str:
    if "prepend_scheme" in metaspace:
        return metaspace["prepend_scheme"]
    return "always" if metaspace.get("add_prefix_space", True) else "never"  # tokenizers < 0.14


def _mirrorable(spec: dict) -> bool:
    """Whether the word counter can apply this tokenizer's normalisation itself (see splitter_settings)."""
    norm_parts = _flatten(spec.get("normalizer"), "normalizers")
    pre_parts = _flatten(spec.get("pre_tokenizer"), "pretokenizers")
    metaspace = _metaspace(spec)
    if metaspace is None and not _prepend_normaliser(spec):
        return False
    known = [p for p in norm_parts if p.get("type") == "NFC"
             or (p.get("type") == "Prepend" and p.get("prepend") == SPACE)
             or (p.get("type") == "Replace" and (p.get("pattern") or {}).get("String") == " "
                 and p.get("content") == SPACE)]
    if len(known) != len(norm_parts):
        return False
    if len(pre_parts) != (metaspace is not None):
        return False
    return not any(t.get("normalized") or t.get("lstrip") or t.get("rstrip") for t in spec.get("added_tokens", []))


def llama_style_components() -> dict:
    """The normaliser, decoder and post-processor of Llama-2's and SOLAR-10.7B's ``tokenizer.json``."""
    return {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]},
        "pre_tokenizer": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    }


def train_sentencepiece_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int = 2):
    """A SentencePiece-style BPE of Llama-2's/SOLAR's kind, trained on ``texts`` with ``tokenizers``.

    Laid out as Llama-2's vocabulary: ``<unk>``, ``<s>``, ``</s>`` (ids 0-2), the 256 byte-fallback
    pieces (ids 3-258), then the alphabet and the merges, ``vocab_size`` pieces in all. Trained
    with SentencePiece's whitespace split (a piece carries "▁" only at its start) and saved in
    Llama-2's ``tokenizer.json`` form (Prepend/Replace normaliser, no pre-tokeniser, byte
    fallback, ``<s>`` prepended by the post-processor). No hub, no ``sentencepiece`` package.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never", split=True)
    specials = [UNK, BOS, EOS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=specials + byte_pieces())
    texts = list(texts)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    spec = json.loads(tok.to_str())
    spec.update(llama_style_components())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in specials]
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {BOS: {"id": BOS, "ids": [spec["model"]["vocab"][BOS]], "tokens": [BOS]}},
    }
    backend = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS, unk_token=UNK)


class SentencePieceBPE(TokenizerFamily):
    """Llama-2/SOLAR-10.7B: a BPE model with byte fallback whose pieces spell the space "▁"."""

    name = "SentencePiece BPE"
    description = ("SentencePiece-style BPE (Llama-2, SOLAR-10.7B, Mistral and similar: a BPE model with byte "
                   "fallback and a Prepend/Replace('▁') normaliser or a Metaspace pre-tokenizer)")

    @classmethod
    def matches(cls, spec: dict) -> bool:
        model = spec.get("model") or {}
        return (model.get("type") == "BPE" and bool(model.get("byte_fallback"))
                and (_metaspace(spec) is not None or _prepend_normaliser(spec)))

    def check(self, spec: dict) -> dict:
        super().check(spec)
        model = spec["model"]
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise TokenizerError("The base tokenizer marks word-internal or word-final pieces; a SentencePiece-style "
                                 "BPE has neither.")
        missing = [p for p in byte_pieces() if p not in model["vocab"]]
        if missing:
            raise TokenizerError(f"The base tokenizer has byte fallback but lacks {len(missing)} byte pieces "
                                 f"(e.g. {missing[0]}).")
        return spec

    # -- spelling --------------------------------------------------------------------------------
    def spell(self, text: str) -> str:
        """Spaces become "▁". No "▁" is prepended: that belongs to a whole text, not to a piece."""
        return to_pieces(text)

    def token_text(self, token: str) -> str | None:
        return token_text(token)

    def tokenize_word(self, word: str, ranks: dict[tuple[str, str], int], vocab: dict[str, int]) -> list[str]:
        # Characters, with "▁" before the text; a piece the vocabulary lacks falls back to its bytes.
        pieces = []
        for piece in bpe_segment("▁" + word, ranks):
            pieces += [piece] if piece in vocab else [f"<0x{b:02X}>" for b in piece.encode("utf-8")]
        return pieces

    # -- training --------------------------------------------------------------------------------
    def train_base_tokenizer(self, texts, vocab_size: int, added_tokens: int = 0, min_frequency: int = 2):
        if added_tokens:
            raise TokenizerError("A SentencePiece-style tokenizer has no added whitespace tokens; set "
                                 "base_model.tokenizer_added_tokens to 0.")
        return train_sentencepiece_bpe(texts, vocab_size, min_frequency)

    def train_intermediate(self, texts: Sequence[str], base_tokenizer, vocab_size: int, min_frequency: int = 2):
        """BPE on Korean with the base's normaliser (plus NFC) and SentencePiece's whitespace split.

        SentencePiece itself trains with ``split_by_whitespace``: its pieces never span a "▁" that
        follows another character, and neither do the intermediate tokenizer's, so every
        candidate is a string the base's pipeline can hand to BPE as (part of) one unit.
        """
        from tokenizers import Tokenizer, trainers

        spec = self.check(tokenizer_json(base_tokenizer))
        specials = [t["content"] for t in spec.get("added_tokens", []) if t.get("special")]
        metaspace = _metaspace(spec)
        split = (dict(metaspace, split=True) if metaspace is not None
                 else {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "never", "split": True})
        blank = dict(spec)
        blank["added_tokens"] = []
        blank["normalizer"] = with_nfc(spec.get("normalizer"))
        blank["pre_tokenizer"] = split
        blank["post_processor"] = None
        blank["model"] = dict(spec["model"], vocab={}, merges=[])
        tok = Tokenizer.from_str(json.dumps(blank))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                      special_tokens=specials)
        texts = list(texts)
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return tok

    # -- the target tokenizer --------------------------------------------------------------------
    def missing_pieces(self, token: str, vocab: dict[str, int]) -> list[str]:
        """Characters of ``token`` that the vocabulary lacks: they would fall back to bytes, which no merge joins."""
        return list(dict.fromkeys(c for c in token if c not in vocab))

    def piece_needs_hangul(self, piece: str) -> bool:
        # Pieces are characters (byte-fallback pieces never merge): a piece occurs only in text with
        # Hangul when its text holds a Hangul character.
        return contains_hangul(token_text(piece) or "")

    def extended_spec(self, spec: dict, vocab: dict[str, int], merges: list[tuple[str, str]]) -> dict:
        base_vocab = spec["model"]["vocab"]
        crossing = [t for t in vocab if t not in base_vocab and (CROSSES_WORD_START.search(t) or BYTE_PIECE.search(t))]
        if crossing:
            raise TokenizerError(f"New token {crossing[0]!r} holds a '▁' after another character or a byte piece: it "
                                 f"could merge across a word start, which SentencePiece-style vocabularies never do.")
        extended = dict(spec)
        extended["normalizer"] = with_nfc(spec.get("normalizer"))
        extended["model"] = dict(spec["model"], vocab=vocab, merges=[list(p) for p in merges])
        return extended

    # -- counting --------------------------------------------------------------------------------
    def splitter_settings(self, spec: dict) -> SplitterSettings:
        """Units of normalised text that no merge crosses (see the module docstring).

        A tokenizer whose pipeline the counter cannot mirror (another normaliser or
        pre-tokeniser, added tokens matched after normalisation or stripping spaces) is counted
        by whole documents, each encoded by the tokenizer itself: exact, and slower.
        """
        if not _mirrorable(spec):
            return SplitterSettings(WHOLE_SEGMENT_PATTERN)
        added = tuple(t["content"] for t in spec.get("added_tokens", []))
        nfc = contains_type(spec.get("normalizer"), "NFC")
        safe = not any(CROSSES_WORD_START.search(t) for t in spec["model"]["vocab"])
        metaspace = _metaspace(spec)
        if metaspace is not None:
            scheme = _prepend_scheme(metaspace)
            pattern = SPLIT_UNIT_PATTERN if metaspace.get("split", True) else UNIT_PATTERN
            return SplitterSettings(pattern if safe else WHOLE_SEGMENT_PATTERN, added, nfc, char_map=((" ", SPACE),),
                                    prefix="" if scheme == "never" else metaspace.get("replacement", SPACE),
                                    prefix_where="start" if scheme == "first" else "every", prefix_if_absent=True)
        return SplitterSettings(UNIT_PATTERN if safe else WHOLE_SEGMENT_PATTERN, added, nfc, char_map=((" ", SPACE),),
                                prefix=SPACE, prefix_where="every", prefix_if_absent=False)

    def word_backend(self, backend):
        """``backend`` for already normalised units: no Prepend/Replace, no pre-tokeniser (NFC kept)."""
        from tokenizers import Tokenizer

        spec = tokenizer_json(backend)
        if not _mirrorable(spec):
            return backend  # the units are whole documents
        spec.update(normalizer={"type": "NFC"} if contains_type(spec.get("normalizer"), "NFC") else None,
                    pre_tokenizer=None, post_processor=None, truncation=None, padding=None)
        return Tokenizer.from_str(json.dumps(spec))

    def word_encoder(self, backend, words: Sequence[str]):
        """A lean encoder for normalised units, and each token's length in UTF-8 bytes of the units.

        The units are already normalised (the counter applied Prepend/Replace or Metaspace's
        rules), so the encoder has no normaliser and no pre-tokeniser; NFC leaves NFC units alone.
        A piece covers its own UTF-8 bytes, a byte-fallback piece one byte; ``<unk>`` and the
        other added tokens cover no fixed stretch, so their length breaks the byte check and the
        caller falls back to :meth:`word_backend`.
        """
        from tokenizers import Tokenizer

        spec = tokenizer_json(backend)
        model = spec.get("model") or {}
        if model.get("type") != "BPE" or model.get("dropout") or not _mirrorable(spec):
            return None
        if contains_type(spec.get("normalizer"), "NFC") and not all(
                unicodedata.is_normalized("NFC", w) for w in words):
            return None
        added = spec.get("added_tokens") or []
        lengths = np.zeros(max([*model["vocab"].values(), *(t["id"] for t in added)]) + 1, dtype=np.int64)
        for token, i in model["vocab"].items():
            lengths[i] = 1 if BYTE_PIECE.fullmatch(token) else len(token.encode("utf-8"))
        for t in added:
            lengths[t["id"]] = _NOT_TEXT
        spec.update(normalizer=None, pre_tokenizer=None, post_processor=None, truncation=None, padding=None)
        return Tokenizer.from_str(json.dumps(spec)), lengths


__all__ = ["SentencePieceBPE", "train_sentencepiece_bpe", "to_pieces", "token_text", "byte_pieces",
           "llama_style_components", "SPACE", "UNIT_PATTERN"]
