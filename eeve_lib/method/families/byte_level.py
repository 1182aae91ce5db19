"""Steps 1-4, byte-level BPE family (GPT-2, phi-2): pieces are bytes, spelled as printable characters.

A byte-level BPE vocabulary stores tokens as strings over a 256-character alphabet, one
character per byte (GPT-2's ``bytes_to_unicode``): ``" 대"`` is the three bytes of the space and
the syllable, spelled ``"ĠëĮĢ"``. Every byte is in the base alphabet, so Korean text never
becomes unknown; it falls apart into bytes, about three tokens per Hangul syllable. The
pre-tokeniser is GPT-2's regex (a word carries its leading space) and the tokenizer has no
normaliser. Shown in chapters 01 and 02.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from functools import lru_cache
from typing import Sequence

import numpy as np

from ...errors import TokenizerError
from ..hangul import HANGUL_RANGES, is_hangul
from .base import SplitterSettings, TokenizerFamily, bpe_segment, contains_type, tokenizer_json, with_nfc

END_OF_TEXT = "<|endoftext|>"
# The pattern of the tokenizers library's ByteLevel pre-tokenizer (use_regex=True), i.e. GPT-2's.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


@lru_cache(maxsize=1)
def char_to_byte() -> dict[str, int]:
    return {c: b for b, c in byte_to_char().items()}


def to_byte_level(text: str) -> str:
    """The byte-level spelling of ``text`` (e.g. ``" 대"`` -> ``"ĠëĮĢ"``)."""
    table = byte_to_char()
    return "".join(table[b] for b in text.encode("utf-8"))


def token_bytes(token: str) -> bytes:
    """The bytes a byte-level token stands for."""
    table = char_to_byte()
    return bytes(table[c] for c in token)


def token_text(token: str) -> str | None:
    """The text a byte-level token stands for, or None when it is not whole UTF-8."""
    try:
        return token_bytes(token).decode("utf-8")
    except (UnicodeDecodeError, KeyError):
        return None


def _utf8_length(first: int) -> int:
    """Bytes of the UTF-8 sequence that byte ``first`` starts; 0 for a continuation or invalid byte."""
    if first < 0x80:
        return 1
    if 0xC2 <= first <= 0xDF:
        return 2
    if 0xE0 <= first <= 0xEF:
        return 3
    if 0xF0 <= first <= 0xF4:
        return 4
    return 0


def _completes_only_to_hangul(prefix: bytes) -> bool:
    """Whether every valid character whose UTF-8 encoding starts with ``prefix`` is Hangul.

    ``prefix`` is a lead byte plus fewer continuation bytes than the character needs: EB alone
    (U+B000-BFFF) or EA B0 (U+AC00-AC3F) can only become Hangul syllables, EA alone (U+A000-AFFF,
    Yi and Latin Extended-D too) or E3 84 (U+3100-313F, Bopomofo too) cannot.
    """
    size = _utf8_length(prefix[0])
    if not all(0x80 <= b <= 0xBF for b in prefix[1:]):
        return False
    value = prefix[0] & (0x7F >> size)
    for b in prefix[1:]:
        value = value << 6 | (b & 0x3F)
    missing_bits = 6 * (size - len(prefix))
    lo, hi = value << missing_bits, (value << missing_bits) | ((1 << missing_bits) - 1)
    lo, hi = max(lo, {2: 0x80, 3: 0x800, 4: 0x10000}[size]), min(hi, 0x10FFFF)  # no overlong forms
    # Surrogates (U+D800-DFFF) are not characters: only what is left of [lo, hi] around them counts.
    parts = [(a, b) for a, b in ((lo, min(hi, 0xD7FF)), (max(lo, 0xE000), hi)) if a <= b]
    return bool(parts) and all(any(r_lo <= a and b <= r_hi for r_lo, r_hi in HANGUL_RANGES) for a, b in parts)


def only_in_hangul_text(data: bytes) -> bool:
    """Whether the bytes ``data`` can occur in UTF-8 text only where that text contains Hangul.

    True when ``data`` holds the whole encoding of a Hangul character, or ends with the start
    of a character that can only be Hangul (:func:`_completes_only_to_hangul`). Continuation
    bytes at the start (the tail of a character that began earlier) prove nothing and are
    skipped. A BPE merge fires only where its result's bytes occur in a pre-token, so a merge
    whose result passes this test never fires on text without Hangul (chapter 02).
    """
    i = 0
    while i < len(data) and 0x80 <= data[i] <= 0xBF:
        i += 1
    while i < len(data):
        size = _utf8_length(data[i])
        if size == 0:
            return False  # bytes that valid UTF-8 never contains
        chunk = data[i:i + size]
        if len(chunk) < size:
            return _completes_only_to_hangul(chunk)
        try:
            if is_hangul(chunk.decode("utf-8")):
                return True
        except UnicodeDecodeError:
            return False
        i += size
    return False


def phi2_style_added_tokens(n: int) -> list[str]:
    """Whitespace runs that phi-2's tokenizer adds after its BPE vocabulary (spaces, then tabs)."""
    tabs = min(8, n // 5)
    spaces = n - tabs
    return [" " * k for k in range(spaces + 1, 1, -1)] + ["\t" * k for k in range(tabs + 1, 1, -1)]


def train_byte_level_bpe(texts, vocab_size: int, added_tokens: int = 0, min_frequency: int = 2):
    """Train a byte-level BPE tokenizer of the GPT-2/phi-2 kind on ``texts`` (chapter 00).

    No normaliser, the GPT-2 byte-level pre-tokeniser (a word carries its leading space), the
    byte-level decoder, and ``<|endoftext|>`` as the only special token. ``added_tokens``
    appends phi-2-style whitespace tokens after the BPE vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - added_tokens,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if added_tokens:
        from tokenizers import AddedToken

        tok.add_tokens([AddedToken(t, normalized=False) for t in phi2_style_added_tokens(added_tokens)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                   unk_token=END_OF_TEXT)


def _nfc_only(norm: dict | None) -> bool:
    return norm is None or norm.get("type") == "NFC" or (
        norm.get("type") == "Sequence" and all(n.get("type") == "NFC" for n in norm["normalizers"]))


class ByteLevelBPE(TokenizerFamily):
    """GPT-2/phi-2: a BPE model with the ByteLevel pre-tokenizer and decoder."""

    name = "byte-level BPE"
    description = "byte-level BPE (GPT-2, phi-2 and similar: a BPE model with the ByteLevel pre-tokenizer and decoder)"

    @classmethod
    def matches(cls, spec: dict) -> bool:
        return ((spec.get("model") or {}).get("type") == "BPE"
                and contains_type(spec.get("pre_tokenizer"), "ByteLevel")
                and contains_type(spec.get("decoder"), "ByteLevel"))

    def spell(self, text: str) -> str:
        return to_byte_level(text)

    def token_text(self, token: str) -> str | None:
        return token_text(token)

    def tokenize_word(self, word: str, ranks: dict[tuple[str, str], int], vocab: dict[str, int]) -> list[str]:
        # Every byte has its character (GPT-2's map), so the merges alone decide: no piece is missing.
        return bpe_segment(to_byte_level(word), ranks)

    def piece_needs_hangul(self, piece: str) -> bool:
        return only_in_hangul_text(token_bytes(piece))

    def describe_piece(self, piece: str) -> str:
        return f"bytes {token_bytes(piece).hex(' ')}, text {token_text(piece)!r}"

    def show_piece(self, piece: str) -> str:
        # part of a character (a Hangul syllable's first two bytes, say): its bytes, not "\ufffd"
        text = token_text(piece)
        return repr(text) if text is not None else f"bytes {token_bytes(piece).hex(' ').upper()}"

    def train_base_tokenizer(self, texts, vocab_size: int, added_tokens: int = 0, min_frequency: int = 2):
        return train_byte_level_bpe(texts, vocab_size, added_tokens, min_frequency)

    def train_intermediate(self, texts: Sequence[str], base_tokenizer, vocab_size: int, min_frequency: int = 2):
        from tokenizers import Tokenizer, pre_tokenizers, trainers


        spec = self.check(tokenizer_json(base_tokenizer))
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
        texts = list(texts)
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return tok

    def extended_spec(self, spec: dict, vocab: dict[str, int], merges: list[tuple[str, str]]) -> dict:
        # Added tokens (phi-2's whitespace runs) keep their ids only if the model vocabulary lists
        # them: otherwise `tokenizers` renumbers them after the largest model id when loading. Their
        # raw spelling (real spaces, not the byte-level "Ġ") is never produced by BPE: inert.
        vocab = dict(vocab)
        for added in spec.get("added_tokens", []):
            if added["content"] not in vocab and not added.get("special"):
                vocab[added["content"]] = added["id"]
        extended = dict(spec)
        extended["normalizer"] = with_nfc(spec.get("normalizer"))
        extended["model"] = dict(spec["model"], vocab=vocab, merges=[list(p) for p in merges])
        return extended

    def splitter_settings(self, spec: dict) -> SplitterSettings:
        pre = spec.get("pre_tokenizer") or {}
        byte_levels = [pre] if pre.get("type") == "ByteLevel" else pre.get("pretokenizers", [])
        if len(byte_levels) != 1 or byte_levels[0].get("type") != "ByteLevel" \
                or not byte_levels[0].get("use_regex", True) or byte_levels[0].get("add_prefix_space"):
            raise TokenizerError("The word counter mirrors only the plain GPT-2 ByteLevel pre-tokenizer "
                                 "(use_regex on, no prefix space).")
        norm = spec.get("normalizer")
        if not _nfc_only(norm):
            raise TokenizerError("The word counter mirrors only tokenizers with no normaliser or NFC.")
        added = tuple(t["content"] for t in spec.get("added_tokens", []))
        return SplitterSettings(GPT2_PATTERN, added, bool(norm))

    def word_encoder(self, backend, words: Sequence[str]):
        """A leaner copy of ``backend`` for encoding distinct words, and each token's length in bytes.

        Returns ``(encoder, token_bytes)``, or None where the shortcut would not be exact. The
        words of a WordCounts are pre-tokens, each one match of the GPT-2 pattern, which that
        pattern returns whole, so the pre-tokenizer's regex split can be skipped; NFC leaves an
        NFC word unchanged, so the normaliser can be skipped. The encoder then sees exactly the
        word's UTF-8 bytes, and with every byte in the vocabulary (no unknown or dropped bytes)
        and no added token that strips spaces, each token covers exactly ``token_bytes[id]`` of
        them: that is what lets token_counts find each token's word without offset tracking.
        """
        from tokenizers import Tokenizer, pre_tokenizers


        spec = tokenizer_json(backend)
        pre, model, norm = spec.get("pre_tokenizer") or {}, spec.get("model") or {}, spec.get("normalizer")
        added = spec.get("added_tokens") or []
        plain_byte_level = (pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
                            and not pre.get("add_prefix_space"))
        plain_bpe = (model.get("type") == "BPE" and not model.get("dropout") and not model.get("byte_fallback")
                     and not model.get("continuing_subword_prefix") and not model.get("end_of_word_suffix")
                     and all(ch in model["vocab"] for ch in pre_tokenizers.ByteLevel.alphabet()))
        if not (plain_byte_level and plain_bpe and _nfc_only(norm)) or any(t.get("lstrip") or t.get("rstrip")
                                                                          for t in added):
            return None
        if norm is not None and not all(map(functools.partial(unicodedata.is_normalized, "NFC"), words)):
            return None
        lengths = np.zeros(max([*model["vocab"].values(), *(t["id"] for t in added)]) + 1, dtype=np.int64)
        for token, i in model["vocab"].items():
            lengths[i] = len(token)  # byte-level spelling: one character per byte
        for t in added:
            lengths[t["id"]] = len(t["content"].encode("utf-8"))  # matched literally, raw text
        spec.update(normalizer=None, post_processor=None, truncation=None, padding=None,
                    pre_tokenizer=dict(pre, use_regex=False))
        return Tokenizer.from_str(json.dumps(spec)), lengths


__all__ = ["ByteLevelBPE", "byte_to_char", "to_byte_level", "token_bytes", "token_text", "train_byte_level_bpe",
           "only_in_hangul_text",
           "phi2_style_added_tokens", "GPT2_PATTERN", "END_OF_TEXT"]
