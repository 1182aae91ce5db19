"""Chapter 02's guarantees for the extended tokenizer, as properties and on every line of real corpora.

For any text ``x``: ``decode(encode(x)) == NFC(x)``; text without Hangul gets exactly the base
tokenizer's ids for ``NFC(x)`` (no new merge fires on it); every kept new token is produced from
its own text; and building twice gives the same ``tokenizer.json``, byte for byte. Hypothesis draws
``x`` from strategies that mix arbitrary Unicode with what breaks tokenizers: NFD Hangul, jamo,
scripts whose UTF-8 starts like Hangul's (Yi, Latin Extended-D, Bopomofo), emoji with modifiers
and joiners, zero-width and control characters, whitespace runs, code, special tokens and
Latin-prefixed Korean words ("UAE와"). The corpus tests check every document of the English
corpora of the tiny and small profiles, both English sides of the parallel news, and every line
of a code sample (eeve_lib, the tests, and the ``tokenizers`` package's Python sources).

The extended tokenizer is built once per session, like chapter 02 builds it, from a small
English base and candidates of an intermediate tokenizer trained on Korean text that contains
Latin-prefixed words, so mixed-script candidates (the cause of issue 11) are among them.
``EEVE_HYPOTHESIS_EXAMPLES`` sets the number of examples per property (default 300).
"""

from __future__ import annotations

import itertools
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eeve_lib.method.candidates import contains_hangul, extract_candidates
from eeve_lib.method.families.byte_level import ByteLevelBPE, to_byte_level, token_text, train_byte_level_bpe
from eeve_lib.method.frequency_loop import refine_vocabulary
from eeve_lib.method.intermediate_tokenizer import train_intermediate_tokenizer
from eeve_lib.method.target_tokenizer import build_target_tokenizer
from eeve_lib.method.token_frequency import count_words
from eeve_lib.pipeline.corpora import iter_documents, load_manifest
from tests.conftest import assert_words_cut_by_hand

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("EEVE_HYPOTHESIS_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Latin-prefixed Korean words as news and reviews write them; several start with " U", like the
# English words the old merges " U", " UA", " UAE" broke.
MIXED_WORDS = ["UAE와", "UAE는", "UN은", "UN의", "US가", "Uber는", "USB로", "IBM은", "IBM의", "CEO가", "CEO는",
               "TV에서", "TV로", "OST가", "OST도", "EBS에서", "SF영화", "CG가", "DVD로", "Unicode는", "Update를"]
MIXED_LINES = [f"{w} {tail}" for w in MIXED_WORDS
               for tail in ("관련 소식이 전해졌다.", "오늘 발표했다.", "정말 좋았다.", "다시 보고 싶다.")] * 8


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def documents(entry_name: str, limit: int | None = None, manifest: str = "small") -> list[str]:
    return list(itertools.islice(iter_documents(load_manifest(manifest)[entry_name]), limit))


def build_extended():
    """The session's base and extended tokenizers, made the way chapters 00-02 make them, at a small size."""
    english = documents("shakespeare-plays")
    base = train_byte_level_bpe(english, 2000, added_tokens=12)  # phi-2-style whitespace tokens
    korean = documents("konlpy-kolaw") + documents("nsmc-reviews", 4000) + MIXED_LINES
    intermediate = train_intermediate_tokenizer(korean, base, 1500)
    candidates = extract_candidates(intermediate, base)
    result = refine_vocabulary(base, candidates, count_words(korean, base, workers=1, progress=False), threshold=3)
    return base, result.target, candidates


@pytest.fixture(scope="session")
def extended():
    base, target, candidates = build_extended()
    return {"base": base.backend_tokenizer, "target": target.tokenizer.backend_tokenizer, "built": target,
            "base_hf": base, "candidates": candidates}


def code_lines() -> list[str]:
    import tokenizers

    files = sorted(ROOT.glob("eeve_lib/**/*.py")) + sorted(ROOT.glob("tests/*.py")) \
        + sorted(p for p in Path(tokenizers.__file__).parent.rglob("*") if p.suffix in (".py", ".pyi"))
    return [line for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def corpora():
    """Every English document of the tiny and small profiles and of the parallel news, and a code sample."""
    out = {name: documents(name) for name in ("shakespeare-plays", "ko-en-news-dev-en", "ko-en-news-test-en")}
    out["code"] = code_lines()
    return out


def encode(tokenizer, texts):
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


# ---------------------------------------------------------------------------------------------
# Strategies

def chars(lo: int, hi: int):
    return st.characters(min_codepoint=lo, max_codepoint=hi, exclude_categories=["Cs"])


SYLLABLES = st.text(chars(0xAC00, 0xD7A3), min_size=1, max_size=6)
NFD_HANGUL = SYLLABLES.map(lambda s: unicodedata.normalize("NFD", s))
JAMO = st.text(st.one_of(chars(0x1100, 0x11FF), chars(0x3131, 0x318E), chars(0xA960, 0xA97C), chars(0xD7B0, 0xD7FB)),
               min_size=1, max_size=4)
# Scripts whose UTF-8 shares first bytes with Hangul's: Yi, Vai, Cyrillic Extended-B, Latin
# Extended-D/E (EA ..), Bopomofo and Kanbun (E3 84, E3 86), Myanmar, Ethiopic (E1 ..), CJK,
# halfwidth Hangul (not Hangul here: U+FFA0-FFDC are compatibility forms).
NEIGHBOURS = st.text(st.one_of(chars(0xA000, 0xABFF), chars(0x3100, 0x312F), chars(0x3190, 0x31BF),
                               chars(0x1000, 0x10FF), chars(0x1200, 0x137F), chars(0x4E00, 0x4E80),
                               chars(0xFFA0, 0xFFDC)), min_size=1, max_size=4).map(lambda s: " " + s)
EMOJI = st.one_of(st.sampled_from(["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇰🇷", "❤️", "🏳️‍🌈", "✌🏿", "🧑🏻‍💻", "1️⃣"]),
                  chars(0x1F300, 0x1FAFF))
INVISIBLE = st.one_of(st.sampled_from(["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad", "\u034f",
                                       "\u2028", "\u2029", "\x85"]), chars(0x00, 0x1F), chars(0x7F, 0x9F))
WHITESPACE = st.text(st.sampled_from(" \t\n\r\u00a0\u3000"), min_size=1, max_size=12)
CODE = st.sampled_from(["def f(x):\n    return {'a': [1, 2]}  # ok\n", "\tif (a != b) { x++; }", "<|endoftext|>",
                        'print(f"{x!r:>10}")', "SELECT * FROM t WHERE id = 3;", "$ ls -la | grep '^d'",
                        "    ", "\t\t", "0x1F600 == 128512", "a_b_c = __init__.__doc__"])
ENGLISH = st.lists(st.sampled_from(["The", " the", " Uganda", " UAE", " United", " Up", " CEO", " IBM", " TV",
                                    " Unicode", " US", " UN", " Uber", " OST", " E", "U", " U", "AE", "'s", " don't",
                                    ",", ".", " 2024", " phi-2"]), min_size=1, max_size=8).map("".join)
MIXED = st.builds(lambda latin, korean: latin + korean,
                  st.sampled_from(["UAE", " UAE", " IBM", "CEO", " U", "TV", "phi"]), SYLLABLES)
COMBINING = st.builds(lambda c, marks: c + marks, st.sampled_from("aeoAEOU"), st.text(chars(0x300, 0x36F), max_size=3))
HANGUL_COMBINING = st.builds(lambda c, marks: c + marks, st.sampled_from("가ᄀ각ᆨ"),
                             st.text(chars(0x300, 0x36F), max_size=2))


def texts(*parts):
    return st.lists(st.one_of(*parts), max_size=10).map("".join)


NON_HANGUL_PARTS = (st.text(), NEIGHBOURS, EMOJI, INVISIBLE, WHITESPACE, CODE, ENGLISH, COMBINING)
ANY_TEXT = texts(*NON_HANGUL_PARTS, SYLLABLES, NFD_HANGUL, JAMO, MIXED, HANGUL_COMBINING)
WITHOUT_HANGUL = texts(*NON_HANGUL_PARTS).filter(lambda t: not contains_hangul(nfc(t)))


# ---------------------------------------------------------------------------------------------
# Properties

def test_chapter_00s_hand_rule_cuts_every_word_as_the_tokenizer_does(extended, corpora):
    korean = documents("konlpy-kolaw") + documents("nsmc-reviews", 4000)
    checked = assert_words_cut_by_hand(extended["base_hf"], korean + corpora["shakespeare-plays"])
    assert checked == 3000


def test_the_session_tokenizer_has_mixed_script_tokens(extended):
    """The fixture exercises issue 11: some kept new tokens join Latin letters and Hangul."""
    texts_ = [token_text(t) for t in extended["built"].new_tokens]
    mixed = [t for t in texts_ if contains_hangul(t) and any(c.isascii() and c.isalpha() for c in t)]
    assert len(mixed) >= 5, mixed


@SETTINGS
@given(text=ANY_TEXT)
def test_round_trip_is_nfc(extended, text):
    target = extended["target"]
    assert target.decode(target.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == nfc(text)


@SETTINGS
@given(text=st.text(chars(0xAC00, 0xD7A3)))
def test_round_trip_of_hangul_syllables(extended, text):
    target = extended["target"]
    assert target.decode(target.encode(text, add_special_tokens=False).ids) == text


@SETTINGS
@given(text=WITHOUT_HANGUL)
def test_text_without_hangul_gets_the_base_ids(extended, text):
    assert extended["target"].encode(text, add_special_tokens=False).ids == \
        extended["base"].encode(nfc(text), add_special_tokens=False).ids


def test_every_kept_new_token_is_produced_from_its_own_text(extended):
    built = extended["built"]
    assert built.new_tokens
    texts_ = [token_text(t) for t in built.new_tokens]
    assert encode(extended["target"], texts_) == [[i] for i in built.new_ids()]


def test_base_ids_keep_their_tokens_and_new_ids_follow(extended):
    base_vocab = extended["base"].get_vocab(with_added_tokens=True)
    target_vocab = extended["target"].get_vocab(with_added_tokens=True)
    assert all(target_vocab[t] == i for t, i in base_vocab.items())
    assert sorted(set(target_vocab.values()) - set(base_vocab.values())) == \
        list(range(len(base_vocab), len(target_vocab)))


def test_building_twice_gives_the_same_tokenizer_json(extended, tmp_path):
    for name in ("first", "second"):
        build_target_tokenizer(extended["base_hf"], extended["candidates"]).tokenizer.save_pretrained(tmp_path / name)
    assert (tmp_path / "first" / "tokenizer.json").read_bytes() == (tmp_path / "second" / "tokenizer.json").read_bytes()


# ---------------------------------------------------------------------------------------------
# Every line of real corpora

CORPORA = ["shakespeare-plays", "ko-en-news-dev-en", "ko-en-news-test-en", "code"]


@pytest.mark.parametrize("name", CORPORA)
def test_every_line_without_hangul_gets_the_base_ids(extended, corpora, name):
    lines = [line for line in corpora[name] if not contains_hangul(line)]
    assert len(lines) >= 0.99 * len(corpora[name]) > 500
    base_ids, target_ids = encode(extended["base"], map(nfc, lines)), encode(extended["target"], lines)
    differing = [line for line, a, b in zip(lines, base_ids, target_ids) if a != b]
    assert not differing, f"{len(differing)} of {len(lines)} lines get other ids than the base's: {differing[:3]!r}"


@pytest.mark.parametrize("name", CORPORA)
def test_every_line_round_trips(extended, corpora, name):
    lines = corpora[name]
    decoded = extended["target"].decode_batch(encode(extended["target"], lines), skip_special_tokens=False)
    wrong = [line for line, back in zip(lines, decoded) if back != nfc(line)]
    assert not wrong, f"{len(wrong)} of {len(lines)} lines do not round-trip: {wrong[:3]!r}"


def test_korean_corpora_round_trip(extended):
    lines = documents("nsmc-reviews", 20000) + documents("ko-en-news-test-ko") \
        + documents("konlpy-kobill", manifest="tiny")
    target = extended["target"]
    decoded = target.decode_batch(encode(target, lines), skip_special_tokens=False)
    assert sum(back != line for line, back in zip(lines, decoded)) == 0


# ---------------------------------------------------------------------------------------------
# The check in build_target_tokenizer (new functions: imported inside the tests)

@pytest.mark.parametrize("data, expected", [
    (" 대".encode(), True), (b" \xeb", True),          # EB always starts a Hangul syllable (U+B000-BFFF)
    (b" \xea", False), (b"\xea\xb0", True),            # EA also starts Yi, Latin Extended-D; EA B0 is U+AC00-AC3F
    (b"\xed", True),                                   # ED: U+D000-D7FF (the rest would be surrogates)
    (b"\xe3\x84", False), (b"\xe3\x85", True),         # E3 84: Bopomofo too; E3 85: compatibility jamo only
    (b"\xe3\x84\xb1", True), (b"\xe3\x84\x85", False),  # ㄱ, ㄅ
    (b"\xe1\x84", True),                               # U+1100-113F, conjoining jamo
    (b"\xb0\x80", False), (b"\xb0\x80" + "대".encode(), True),  # tails prove nothing; a whole syllable does
    (b" UAE", False), (b"AE\xec", True), ("UAE와".encode(), True), ("ꀀ".encode(), False),
])
def test_only_in_hangul_text(data, expected):
    from eeve_lib.method.families.byte_level import only_in_hangul_text

    assert only_in_hangul_text(data) is expected


def test_check_refuses_merges_that_could_fire_without_hangul():
    from eeve_lib.errors import TokenizerError
    from eeve_lib.method.target_tokenizer import check_new_merges_need_hangul

    family = ByteLevelBPE()
    check_new_merges_need_hangul([("Ġ", "ë"), ("ê", "°"), ("Ġê°", "Ģ"), ("ĠU", "AEêµ°")], family)  # all need Hangul
    with pytest.raises(TokenizerError, match=r"'ĠU' \+ 'AE'.*' UAE'.*without Hangul"):
        check_new_merges_need_hangul([("Ġ", "ë"), ("ĠU", "AE"), ("ĠUAE", "ì")], family)
    with pytest.raises(TokenizerError, match=r"'Ġ' \+ 'ê' \(bytes 20 ea"):  # " " + EA also begins " ꀀ" (Yi)
        check_new_merges_need_hangul([("Ġ", "ê")], family)


def test_build_refuses_a_latin_chain_forced_through(extended):
    """With the left-to-right chains of before, a Latin-prefixed candidate fails the build, naming the merge."""
    from eeve_lib.errors import TokenizerError
    from eeve_lib.method.target_tokenizer import left_to_right_merges

    named = r"The new merge .* \(bytes 20 55 .*, text ' U.*'\) could fire on text without Hangul"
    with pytest.raises(TokenizerError, match=named):
        build_target_tokenizer(extended["base_hf"], [to_byte_level(" Unicode와")], merge_chain=left_to_right_merges)


def test_mixed_candidates_start_at_their_hangul_bytes_and_jamo_alone_is_left_out(extended):
    from eeve_lib.method.target_tokenizer import hangul_anchored_merges

    needs_hangul = ByteLevelBPE().piece_needs_hangul
    wa = list(to_byte_level("와"))  # EC 99 80
    plan = hangul_anchored_merges(["ĠU", "AE", *wa], needs_hangul)  # " UAE와" as the base cuts it
    assert plan == [("AE", wa[0]), ("ĠU", "AE" + wa[0]), ("ĠUAE" + wa[0], wa[1]), ("ĠUAE" + wa[0] + wa[1], wa[2])]
    assert all(needs_hangul(a + b) for a, b in plan)
    assert hangul_anchored_merges(list(to_byte_level("ㄷㄷ")), needs_hangul) is None  # E3 84 also begins Bopomofo
    built = build_target_tokenizer(extended["base_hf"], [to_byte_level("ㄷㄷ"), to_byte_level(" 가")])
    assert built.unbuildable == [to_byte_level("ㄷㄷ")] and built.new_tokens == [to_byte_level(" 가")]
