"""Steps 1-4, per tokenizer family: the interface every family implements and the helpers they share.

Below both the registry (``families/__init__.py``, which imports every family) and the families
themselves, so that a family never imports the package that imports it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from ...errors import TokenizerError


def tokenizer_json(tokenizer) -> dict:
    """The ``tokenizer.json`` content of a Hugging Face or ``tokenizers`` tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    return json.loads(backend.to_str())


def contains_type(node: dict | None, type_name: str) -> bool:
    """Whether a normaliser/pre-tokeniser/decoder node (or a Sequence of them) has ``type_name``."""
    if not node:
        return False
    if node.get("type") == type_name:
        return True
    return any(contains_type(child, type_name) for child in node.get("pretokenizers", []) + node.get("decoders", [])
               + node.get("normalizers", []))


def merge_pairs(model: dict) -> list[tuple[str, str]]:
    """The merges of a BPE model as pairs, whichever of the two JSON spellings it uses."""
    pairs = []
    for m in model.get("merges", []):
        a, b = (m.split(" ", 1) if isinstance(m, str) else m)
        pairs.append((a, b))
    return pairs


def bpe_segment(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Segment a spelled ``word`` with BPE merges ``ranks`` (lowest rank first, leftmost on ties)."""
    parts = list(word)
    while len(parts) > 1:
        best, best_rank = -1, None
        for i in range(len(parts) - 1):
            r = ranks.get((parts[i], parts[i + 1]))
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best < 0:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts


def with_nfc(normalizer: dict | None) -> dict:
    """The base normaliser followed by NFC (NFD Hangul would otherwise explode into jamo)."""
    nfc = {"type": "NFC"}
    if not normalizer:
        return nfc
    if contains_type(normalizer, "NFC"):
        return normalizer
    return {"type": "Sequence", "normalizers": [normalizer, nfc]}


def hangul_anchored_merges(pieces: Sequence[str], needs_hangul) -> list[tuple[str, str]] | None:
    """Merges that join ``pieces`` into one token, each firing only on text with Hangul; None if impossible.

    ``needs_hangul(piece)`` says whether a piece occurs only in text with Hangul (the family's
    ``piece_needs_hangul``). The first merge is the leftmost pair whose result needs Hangul
    (byte-level: " 대" starts with "Ġ"+"ë", since every character beginning with byte EB is
    Hangul; " 가" with "ê"+"°", since EA alone also begins Yi and Latin Extended-D). The piece it
    makes holds Hangul, so it then absorbs its left neighbours one by one, then its right ones:
    for pure Hangul this is the left-to-right chain, and a Latin prefix (" UAE" of " UAE와",
    "▁(" of "▁(주)") is joined last, never merged on its own. None when no pair needs Hangul
    (e.g. "ㄷㄷ", whose bytes E3 84 also begin Bopomofo).
    """
    parts = list(pieces)
    start = next((i for i in range(len(parts) - 1) if needs_hangul(parts[i] + parts[i + 1])), None)
    if start is None:
        return None if len(parts) > 1 else []
    plan = [(parts[start], parts[start + 1])]
    anchor = parts[start] + parts[start + 1]
    for piece in reversed(parts[:start]):
        plan.append((piece, anchor))
        anchor = piece + anchor
    for piece in parts[start + 2:]:
        plan.append((anchor, piece))
        anchor += piece
    return plan


def left_to_right_merges(pieces: Sequence[str], needs_hangul=None) -> list[tuple[str, str]]:
    """The chain ((p1 p2) p3) ... that the build used before issue 11; chapter 02 compares it.

    Its first merges join a Latin prefix on its own (" U" + "AE" for " UAE와"), so they fire on
    English; the target tokenizer's build refuses it unless ``require_hangul=False``.
    """
    return [("".join(pieces[:i + 1]), pieces[i + 1]) for i in range(len(pieces) - 1)]


@dataclass(frozen=True)
class SplitterSettings:
    """How the word counter cuts raw text into the units BPE sees, as the tokenizer does.

    Added tokens are cut out of the raw text first; each stretch of text between them has
    ``char_map`` applied (single characters, e.g. a space to its piece spelling) and gets
    ``prefix`` prepended when it is not empty (on every stretch, or only on one that starts
    the text; with ``prefix_if_absent`` only when it does not already start with it); then
    ``pattern`` finds the units. NFC, when on, is applied to the whole text first. A plain,
    picklable record: helper processes of the counter rebuild the splitter from it.
    """

    pattern: str
    added_tokens: tuple[str, ...] = ()
    nfc: bool = False
    char_map: tuple[tuple[str, str], ...] = ()
    prefix: str = ""
    prefix_where: Literal["every", "start"] = "every"
    prefix_if_absent: bool = False


class TokenizerFamily(ABC):
    """What differs between tokenizer families; one subclass per family."""

    #: a short name, recorded in run summaries
    name: str
    #: what a user reads when their tokenizer is of no supported family
    description: str

    # -- recognising ---------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def matches(cls, spec: dict) -> bool:
        """Whether a ``tokenizer.json`` belongs to this family."""

    def check(self, spec: dict) -> dict:
        """Raise :class:`TokenizerError` for variants of the family the method cannot extend."""
        if (spec.get("model") or {}).get("dropout"):
            raise TokenizerError("The base tokenizer uses BPE dropout; vocabulary expansion needs a deterministic "
                                 "BPE.")
        return spec

    # -- spelling of pieces ---------------------------------------------------------------------
    @abstractmethod
    def spell(self, text: str) -> str:
        """The piece spelling of ``text`` in this family's vocabulary (e.g. ``" 대"`` -> ``"ĠëĮĢ"``)."""

    @abstractmethod
    def token_text(self, token: str) -> str | None:
        """The text a piece stands for, or None when it is not whole UTF-8 text."""

    @abstractmethod
    def piece_needs_hangul(self, piece: str) -> bool:
        """Whether ``piece`` can occur only in text that contains Hangul (then a merge making it
        never fires on text without Hangul)."""

    def describe_piece(self, piece: str) -> str:
        """How an error message shows a piece."""
        return repr(self.token_text(piece))

    def show_piece(self, piece: str) -> str:
        """How a table shows a piece to a reader: its text in quotes when it is whole text, else the
        piece as the vocabulary spells it (a byte-fallback piece such as ``<0xEB>``)."""
        text = self.token_text(piece)
        return repr(text) if text is not None else piece

    @abstractmethod
    def tokenize_word(self, word: str, ranks: dict[tuple[str, str], int], vocab: dict[str, int]) -> list[str]:
        """The pieces this family's BPE cuts ``word`` (a text of one word) into, by hand from the
        merges' ``ranks`` and the vocabulary: what ``tokenizer.tokenize(word)`` returns (chapter 00)."""

    # -- training (step 1, and the tiny profiles' own base tokenizer) ---------------------------
    @abstractmethod
    def train_base_tokenizer(self, texts: Sequence[str], vocab_size: int, added_tokens: int = 0,
                             min_frequency: int = 2):
        """A base tokenizer of this family trained on English ``texts`` (tiny and small profiles)."""

    @abstractmethod
    def train_intermediate(self, texts: Sequence[str], base_tokenizer, vocab_size: int, min_frequency: int = 2):
        """A ``tokenizers.Tokenizer`` trained on ``texts`` with the base's normalisation and pre-tokenisation."""

    # -- the target tokenizer (step 3) ----------------------------------------------------------
    def segment(self, token: str, ranks: dict[tuple[str, str], int]) -> list[str]:
        """How the merges built so far segment a spelled token (BPE: lowest rank first)."""
        return bpe_segment(token, ranks)

    def missing_pieces(self, token: str, vocab: dict[str, int]) -> list[str]:
        """Single pieces that must become vocabulary entries before merges can build ``token``.

        None for a byte-level BPE, whose alphabet holds every byte; a SentencePiece-style BPE
        lacks characters it never saw, which would fall back to bytes that no merge joins.
        """
        return []

    def merge_plan(self, pieces: Sequence[str]) -> list[tuple[str, str]] | None:
        """The merges that join ``pieces`` (the current segmentation of a candidate) into one token.

        Every merge's result needs Hangul (:func:`hangul_anchored_merges`); None when no such
        chain exists (the candidate is then left unbuilt).
        """
        return hangul_anchored_merges(pieces, self.piece_needs_hangul)

    @abstractmethod
    def extended_spec(self, spec: dict, vocab: dict[str, int], merges: list[tuple[str, str]]) -> dict:
        """The base's ``tokenizer.json`` with the extended vocabulary and merges."""

    # -- counting (step 4) ----------------------------------------------------------------------
    @abstractmethod
    def splitter_settings(self, spec: dict) -> SplitterSettings:
        """How to cut raw text into the words (units) BPE sees, so that counting them is exact."""

    def word_backend(self, backend):
        """A tokenizer that encodes one counted word exactly as ``backend`` encodes it inside a text."""
        return backend

    @abstractmethod
    def word_encoder(self, backend, words: Sequence[str]) -> tuple[Any, Any] | None:
        """A lean encoder for distinct words and each token's length in bytes, or None if not exact."""


__all__ = [
    "hangul_anchored_merges",
    "left_to_right_merges",
    "TokenizerFamily",
    "SplitterSettings",
    "tokenizer_json",
    "bpe_segment",
    "merge_pairs",
    "with_nfc",
    "contains_type",
]
