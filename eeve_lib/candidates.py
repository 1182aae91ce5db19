"""Step 2: the Korean tokens of the intermediate tokenizer that the base tokenizer lacks.

Byte-level BPE vocabularies store tokens as strings over a 256-character alphabet, one character
per byte (GPT-2's ``bytes_to_unicode``). A candidate is a token whose bytes decode as UTF-8 text
containing Hangul (syllables or jamo) and that the base vocabulary does not have. Tokens that end
inside a multi-byte character decode to no text and are not candidates. Shown in chapter 01.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable


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


# The Unicode blocks of Hangul, as closed code point ranges: Jamo, Compatibility Jamo (the ㅋㅋ of
# informal text), Jamo Extended-A, and Syllables (AC00-D7AF) followed by Jamo Extended-B (D7B0-D7FF).
HANGUL_RANGES = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF))


def is_hangul(char: str) -> bool:
    """A character of one of the Hangul blocks (syllables, jamo, compatibility jamo)."""
    o = ord(char)
    return any(lo <= o <= hi for lo, hi in HANGUL_RANGES)


def contains_hangul(text: str) -> bool:
    return any(is_hangul(c) for c in text)


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
    byte-level token strings (chapter 01 shows them decoded).
    """
    intermediate = getattr(intermediate, "backend_tokenizer", intermediate)
    base = getattr(base, "backend_tokenizer", base)
    base_vocab = base.get_vocab(with_added_tokens=True)
    special = {t.content for t in intermediate.get_added_tokens_decoder().values()}
    out = []
    for token, _ in sorted(intermediate.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1]):
        if token in base_vocab or token in special:
            continue
        text = token_text(token)
        if text is not None and contains_hangul(text):
            out.append(token)
    return out


INTERMEDIATE_DIR = "intermediate"


def prepare_candidates(profile, run_dir=None):
    """Steps 1 and 2 for a profile: train (or reuse) the intermediate tokenizer, extract candidates.

    Saves ``runs/<profile>/intermediate/`` (the tokenizer and ``candidates.json``); chapter 01
    shows the result and chapter 02 reuses it. Returns ``(intermediate_tokenizer, candidates)``.
    """
    import json

    from tokenizers import Tokenizer

    from . import atomic
    from .base_model import base_info, load_base
    from .corpora import load_corpus
    from .errors import VocabularyError
    from .intermediate_tokenizer import train_intermediate_tokenizer
    from .paths import run_paths

    paths = run_paths(profile, run_dir)
    folder = paths.root / INTERMEDIATE_DIR
    key = {"profile": profile.hash("vocabulary", "data", "seed"),
           "base": base_info(profile, run_dir)["config_hash"]}
    record = folder / "candidates.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("key") == key:
            return Tokenizer.from_file(str(folder / "intermediate_tokenizer.json")), saved["candidates"]
    _, base_tok = load_base(profile, run_dir)
    korean = load_corpus(profile, "korean")
    intermediate = train_intermediate_tokenizer(korean.train, base_tok, profile.vocabulary.intermediate_vocab_size)
    candidates = extract_candidates(intermediate, base_tok)
    if not candidates:
        raise VocabularyError(
            f"No candidates were found: none of the {intermediate.get_vocab_size()} tokens of the intermediate "
            f"tokenizer contains Hangul and is missing from the base vocabulary. Only "
            f"{hangul_share(korean.train[:2000]):.1%} of the corpus' non-space characters are Hangul; "
            f"data.korean must name Korean text."
        )
    with atomic.directory(folder) as tmp:
        intermediate.save(str(tmp / "intermediate_tokenizer.json"))
        atomic.write_json(tmp / "candidates.json", {"key": key, "candidates": candidates,
                                                   "texts": [token_text(c) for c in candidates]})
    return intermediate, candidates
