"""The SentencePiece-style BPE family (Llama-2, SOLAR-10.7B) and the tiny-llama profile.

The tokenizer guarantees are checked on the full tiny-llama tokenizer step (a SentencePiece-style
BPE of 4,000 pieces trained on the tiny English corpus, extended with the tiny Korean corpus at
tiny-llama's settings: seconds, no model): every line of the tiny English and Korean validation
text, both sides of the local Korean-English news, and adversarial strings. A cut-down tiny-llama
run of every chapter (MICRO settings) checks the model side: frozen rows per stage, the new rows'
initialisation and the row count, and the chapters' own assertions.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.counting_baselines import batch_token_counts, naive_token_counts
from eeve_lib.method.candidates import contains_hangul, extract_candidates
from eeve_lib.method.families import family_named, family_of, merge_pairs, tokenizer_json
from eeve_lib.method.families.sentencepiece_bpe import SPACE, UNIT_PATTERN, byte_pieces, to_pieces
from eeve_lib.method.frequency_loop import fertility, refine_vocabulary
from eeve_lib.method.intermediate_tokenizer import train_intermediate_tokenizer
from eeve_lib.method.target_tokenizer import build_target_tokenizer, unreachable_in_isolation
from eeve_lib.method.token_frequency import count_token_frequencies, count_words
from eeve_lib.pipeline.corpora import load_corpus
from eeve_lib.pipeline.profiles import load_profile
from tests.conftest import (
    MICRO,
    assert_every_chapter_printed,
    assert_stages_keep_frozen_blocks,
    assert_words_cut_by_hand,
    run_every_chapter,
)

FAMILY = "SentencePiece BPE"
NEWS = Path(os.environ["EEVE_DATA_DIR"]) / "ko-en-news"
ADVERSARIAL = [
    unicodedata.normalize("NFD", "한국어 문장과 café"),  # Hangul as conjoining jamo, and a combining accent
    "ㅋㅋㅋ ㅠㅠ 진짜?!",  # compatibility jamo
    "좋아요 😀👍🏽🇰🇷 great!! 👨‍👩‍👧",  # emoji, skin tone, flag, zero-width joiner
    "ctrl\x00chars\x01\x07\x1b[0m\x7f and\r\nnewlines\n\n\tend",
    "\u200bzero\u200dwidth\ufeffBOM\u00a0nbsp",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\tpass",
    "for (int i = 0; i < n; ++i) { s += a[i]; }",
    "  leading and trailing spaces  ",
    "a    b     c",
    " ",
    "",
    "a , b . c ' d",
    "EEVE는 phi-2를 한국어 모델로 바꾼다 (2024년).",
    "漢字かな交じり文 and العربية and Ελληνικά",
    "(주)대한 『민국』 「가」 ‘나’ “다” …",
    "1,234,567원 = $1,000",
    "https://example.com/path?q=검색&x=1",
]
# Where SentencePiece itself does not round-trip (a literal "▁" reads as a space, and text after a
# special token gets its own "▁"); the other guarantees still hold.
NOT_ROUND_TRIP = ["▁literal▁spaces▁", "a<s>b</s>c <unk>"]


def news(side: str) -> list[str]:
    return [line.rstrip("\n") for name in ("dev", "test")
            for line in (NEWS / f"korean-english-park.{name}.{side}").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def expansion():
    """tiny-llama's tokenizer step at the profile's own settings (a few seconds)."""
    profile = load_profile("tiny-llama")
    korean, english = load_corpus(profile, "korean"), load_corpus(profile, "english")
    family = family_named(profile.base_model.tokenizer_family)
    base = family.train_base_tokenizer(english.train, profile.base_model.tokenizer_vocab_size)
    intermediate = train_intermediate_tokenizer(korean.train, base, profile.vocabulary.intermediate_vocab_size)
    candidates = extract_candidates(intermediate, base)
    words = count_words(korean.train, base, workers=1, progress=False)
    result = refine_vocabulary(base, candidates, words, profile.vocabulary.min_frequency)
    return {"profile": profile, "korean": korean, "english": english, "base": base, "candidates": candidates,
            "result": result, "target": result.target.tokenizer}


def texts_for_checks(expansion) -> list[str]:
    return (expansion["korean"].validation + expansion["english"].validation + news("en") + news("ko")
            + ADVERSARIAL)


def test_the_base_is_a_llama_style_sentencepiece_bpe(expansion):
    base = expansion["base"]
    spec = tokenizer_json(base)
    assert family_of(base).name == FAMILY and len(base) == 4000
    assert [n["type"] for n in spec["normalizer"]["normalizers"]] == ["Prepend", "Replace"]
    assert spec["pre_tokenizer"] is None and spec["model"]["byte_fallback"]
    assert [d["type"] for d in spec["decoder"]["decoders"]] == ["Replace", "ByteFallback", "Fuse", "Strip"]
    vocab = spec["model"]["vocab"]
    assert [vocab[t] for t in ("<unk>", "<s>", "</s>")] == [0, 1, 2]
    assert [vocab[p] for p in byte_pieces()] == list(range(3, 259))
    assert [t["content"] for t in spec["added_tokens"]] == ["<unk>", "<s>", "</s>"]
    assert not any(contains_hangul(t) for t in vocab), "an English vocabulary: every Hangul syllable falls back to bytes"
    assert base("대").input_ids[1:] == [vocab[p] for p in ("▁", "<0xEB>", "<0x8C>", "<0x80>")]


def test_chapter_00s_hand_rule_cuts_every_word_as_the_tokenizer_does(expansion):
    lines = expansion["korean"].validation + expansion["english"].validation
    assert assert_words_cut_by_hand(expansion["base"], lines) == 3000


def test_the_target_keeps_the_base_pipeline_and_appends(expansion):
    base, target = tokenizer_json(expansion["base"]), tokenizer_json(expansion["target"])
    for part in ("pre_tokenizer", "decoder", "post_processor", "added_tokens"):
        assert target[part] == base[part], part
    assert target["normalizer"]["normalizers"][0] == base["normalizer"] and target["normalizer"]["normalizers"][1] == \
        {"type": "NFC"}
    assert all(target["model"]["vocab"][t] == i for t, i in base["model"]["vocab"].items())
    assert merge_pairs(target["model"])[:len(base["model"]["merges"])] == merge_pairs(base["model"])
    assert target["model"]["byte_fallback"] and target["model"]["type"] == "BPE"


def test_every_line_round_trips_after_nfc(expansion):
    target = expansion["target"]
    bad = [t for t in texts_for_checks(expansion)
           if target.decode(target(t, add_special_tokens=False).input_ids) != unicodedata.normalize("NFC", t)]
    assert not bad, bad[:3]


def test_text_without_hangul_gets_exactly_the_base_ids(expansion):
    base, target = expansion["base"], expansion["target"]
    texts = [t for t in texts_for_checks(expansion) + NOT_ROUND_TRIP
             if not contains_hangul(unicodedata.normalize("NFC", t))]
    assert len(texts) > 3000
    bad = [t for t in texts if target(t).input_ids != base(unicodedata.normalize("NFC", t)).input_ids]
    assert not bad, bad[:3]


def test_korean_costs_at_most_0_6_of_the_base_tokens_per_character(expansion):
    base, target, validation = expansion["base"], expansion["target"], expansion["korean"].validation
    assert fertility(target, validation) <= 0.6 * fertility(base, validation)
    assert fertility(target, news("ko")) < fertility(base, news("ko"))


def test_new_entries_and_merges_all_hold_hangul(expansion):
    base, target = tokenizer_json(expansion["base"]), tokenizer_json(expansion["target"])
    new_entries = set(target["model"]["vocab"]) - set(base["model"]["vocab"])
    new_merges = merge_pairs(target["model"])[len(base["model"]["merges"]):]
    assert new_entries and new_merges
    assert all(contains_hangul(t) for t in new_entries)
    assert all(contains_hangul(a + b) for a, b in new_merges)
    assert not any(SPACE in t[1:] for t in new_entries), "no new piece may hold a '▁' after its first character"


def test_every_kept_token_is_reachable_and_counted_enough(expansion):
    result = expansion["result"]
    assert result.target.new_tokens and not unreachable_in_isolation(result.target)
    vocab = expansion["target"].get_vocab()
    counts = naive_token_counts(expansion["target"], expansion["korean"].train)
    assert np.array_equal(counts, result.counts)
    assert all(counts[vocab[t]] >= result.threshold for t in result.target.new_tokens)


def test_step_6_characters_are_frequent_single_characters(expansion):
    """Missing syllables enter as single characters (support or new): each one seen at least the threshold."""
    result = expansion["result"]
    chars = result.word_counts.char_counts()
    singles = [t for t in result.target.new_tokens + result.target.support_tokens if len(t) == 1]
    assert singles and all(contains_hangul(t) for t in singles)
    assert all(chars[t] >= result.threshold for t in singles)
    # without its syllables, no candidate could be built: each one is a piece of the target
    assert all(c in expansion["target"].get_vocab() for t in result.target.new_tokens for c in t)


def test_builds_are_deterministic(expansion):
    base, candidates = expansion["base"], expansion["candidates"]
    first = build_target_tokenizer(base, candidates).tokenizer.backend_tokenizer.to_str()
    assert build_target_tokenizer(base, candidates).tokenizer.backend_tokenizer.to_str() == first
    profile = expansion["profile"]
    again = family_named(FAMILY).train_base_tokenizer(expansion["english"].train, 4000)
    assert again.backend_tokenizer.to_str() == base.backend_tokenizer.to_str()
    inter = train_intermediate_tokenizer(expansion["korean"].train, base, profile.vocabulary.intermediate_vocab_size)
    assert extract_candidates(inter, base) == candidates


def test_counting_is_exact(expansion):
    target = expansion["target"]
    texts = (expansion["korean"].train[:600] + expansion["english"].train[:300] + news("ko")[:200] + ADVERSARIAL
             + NOT_ROUND_TRIP + ["<s>대한민국</s> <s> 민국", "끝  ", "  시작", "▁▁가나"])
    reference = naive_token_counts(target, texts)
    assert np.array_equal(reference, batch_token_counts(target, texts))
    assert np.array_equal(reference, count_token_frequencies(target, texts, progress=False, workers=1))
    assert np.array_equal(reference, count_token_frequencies(target, texts, progress=False, workers=2, batch_size=16))


def test_the_units_are_cut_where_no_merge_crosses(expansion):
    settings = family_of(expansion["base"]).splitter_settings(tokenizer_json(expansion["base"]))
    assert settings.pattern == UNIT_PATTERN and settings.prefix == SPACE
    words = count_words(["대한민국은  민주공화국이다.", "<s>안녕 하세요"], expansion["base"], workers=1, progress=False)
    assert words.words == sorted(["▁대한민국은", "▁▁민주공화국이다.", "▁안녕", "▁하세요"]) and words.added == {"<s>": 1}


def test_a_vocabulary_with_pieces_across_word_starts_is_counted_whole(expansion):
    """If some piece holds "x▁", units could merge across; the counter then keeps every stretch whole."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = tokenizer_json(expansion["target"])
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    vocab["e▁"] = max(vocab.values()) + 1
    merges.insert(0, ["e", "▁"])
    odd = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)))
    assert family_of(odd).splitter_settings(tokenizer_json(odd)).pattern != UNIT_PATTERN
    texts = expansion["english"].validation[:200] + expansion["korean"].validation[:100]
    assert np.array_equal(naive_token_counts(odd, texts), count_token_frequencies(odd, texts, progress=False, workers=1))


def test_a_pipeline_the_counter_cannot_mirror_is_counted_by_whole_documents(expansion):
    """Added tokens matched after normalisation: the counter hands whole documents to the tokenizer."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = tokenizer_json(expansion["target"])
    for token in spec["added_tokens"]:
        token["normalized"] = True
    odd = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)))
    settings = family_of(odd).splitter_settings(tokenizer_json(odd))
    assert settings.added_tokens == () and not settings.prefix
    texts = expansion["korean"].validation[:100] + ADVERSARIAL + NOT_ROUND_TRIP + ["<s>대한 민국", "x</s>"]
    assert np.array_equal(naive_token_counts(odd, texts), count_token_frequencies(odd, texts, progress=False, workers=1))


def test_the_metaspace_spelling_of_the_same_tokenizer(expansion):
    """Newer conversions store Llama's tokenizer with a Metaspace pre-tokenizer and no normaliser."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = tokenizer_json(expansion["base"])
    spec["normalizer"] = None
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False}
    base = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")
    assert family_of(base).name == FAMILY
    target = build_target_tokenizer(base, expansion["candidates"]).tokenizer
    english = expansion["english"].validation[:500] + news("en")[:300] + [t for t in ADVERSARIAL if not contains_hangul(t)]
    assert all(target(t).input_ids == base(unicodedata.normalize("NFC", t)).input_ids for t in english)
    korean = expansion["korean"].validation
    assert all(target.decode(target(t, add_special_tokens=False).input_ids) == t for t in korean)
    assert fertility(target, korean) <= 0.6 * fertility(base, korean)
    texts = korean + english[:100] + ADVERSARIAL + NOT_ROUND_TRIP + ["<s>대한 민국", " 앞 공백"]
    assert np.array_equal(naive_token_counts(target, texts),
                          count_token_frequencies(target, texts, progress=False, workers=1))


def test_missing_syllables_become_single_character_pieces(expansion):
    base = expansion["base"]
    target = build_target_tokenizer(base, [to_pieces(" 대한")])
    assert target.new_tokens == ["▁대한"] and {"대", "한"} <= set(target.support_tokens)
    assert target.tokenizer.convert_ids_to_tokens(target.tokenizer("대한").input_ids) == ["<s>", "▁대한"]
    # a candidate needing a new piece without Hangul (a Chinese character) is left unbuilt
    odd = build_target_tokenizer(base, ["▁漢가"])
    assert odd.unbuildable == ["▁漢가"] and "漢" not in odd.tokenizer.get_vocab()


# -- a cut-down tiny-llama run: the model side -------------------------------------------------


# One seed, and only the arms whose tokenizer is the family's own (the two baselines without new
# tokens): micro_run runs every arm kind through the same chapter at tiny, and claims need 3 seeds.
LLAMA_MICRO = {**MICRO, "ablations.seeds": 1, "ablations.schedules": [], "ablations.inits": [],
               "ablations.english_replay": [], "ablations.learning_rate_scales": []}


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory):
    """tiny-llama at MICRO settings (one seed): chapters 00-05 through the runner with its assertions on (base
    model, extended tokenizer, the seven stages, chapter 05's arms), then the seven stages' result
    read back by its keys."""
    from eeve_lib.pipeline.training import run_schedule

    profile = load_profile("tiny-llama", LLAMA_MICRO)
    run = tmp_path_factory.mktemp("tiny-llama") / "run"
    report = run_every_chapter("tiny-llama", run, LLAMA_MICRO)
    result = run_schedule(profile, run, progress=False)
    return {"profile": profile, "run": run, "result": result, "report": report}


def test_the_base_is_an_untied_llama_without_biases(llama_run):
    from eeve_lib.pipeline.base import load_base

    model, tok = load_base(llama_run["profile"], llama_run["run"])
    assert type(model).__name__ == "LlamaForCausalLM" and not model.config.tie_word_embeddings
    assert model.lm_head.bias is None and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert not any(n.endswith(".bias") for n, _ in model.named_parameters())
    assert model.config.vocab_size == len(tok) == model.lm_head.weight.shape[0], "unpadded, like SOLAR-10.7B"


def test_new_rows_start_from_their_pieces(llama_run):
    from eeve_lib.pipeline.base import load_base
    from eeve_lib.pipeline.training import initialise_extended_model

    profile, run = llama_run["profile"], llama_run["run"]
    base, _ = load_base(profile, run)
    model, tok, _, ext = initialise_extended_model(profile, run)
    assert ext.base_rows == ext.base_size and ext.rows > ext.target_size - 1 and ext.rows % 64 == 0
    assert model.config.vocab_size == ext.rows == model.lm_head.weight.shape[0] == model.model.embed_tokens.weight.shape[0]
    assert model.lm_head.bias is None
    old_in, old_out = base.model.embed_tokens.weight, base.lm_head.weight
    for i, pieces in zip(ext.new_ids, ext.pieces):
        assert torch.equal(model.lm_head.weight[i], old_out[pieces[0]])
        assert torch.equal(model.model.embed_tokens.weight[i], old_in[pieces].float().mean(0))
    assert torch.equal(model.model.embed_tokens.weight[:ext.base_size], old_in)
    assert torch.equal(model.lm_head.weight[:ext.base_size], old_out)


def test_each_stage_keeps_its_frozen_blocks_bit_identical(llama_run):
    ext = llama_run["result"].extension
    trained = assert_stages_keep_frozen_blocks(llama_run["run"], llama_run["profile"].training.schedule,
                                               ext.base_size, ext.rows)
    assert trained == {"input", "output", "body"}


def test_the_final_model_generates_within_the_tokenizer(llama_run):
    from eeve_lib.pipeline.evaluation import load_model

    model, tok = load_model(llama_run["run"] / "model")
    rows = model.lm_head.weight.shape[0]
    assert model.generation_config.suppress_tokens == list(range(len(tok), rows))
    with torch.no_grad():
        model.lm_head.weight[len(tok):] = 1e3 * model.lm_head.weight[5]
    ids = tok("대한민국은", return_tensors="pt", add_special_tokens=False).input_ids
    torch.manual_seed(0)
    out = model.generate(ids, do_sample=True, max_new_tokens=8, pad_token_id=tok.eos_token_id)
    assert int(out.max()) < len(tok)


def test_every_chapter_runs_at_tiny_llama(llama_run):
    """The chapters' own checks ran on this family: chapter 04's frozen blocks, chapter 05's arms."""
    assert_every_chapter_printed(llama_run["run"])
    metrics = json.loads((llama_run["run"] / "eval" / "metrics.json").read_text())
    assert set(metrics["arms"]) == {"seven_stages", "baseline:no_expansion", "baseline:equal_text"}
