"""Chapters 01-02: the extended tokenizer and its guarantees."""

import unicodedata

import numpy as np
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from eeve_lib.method.families.byte_level import train_byte_level_bpe
from eeve_lib.pipeline.base import load_base
from eeve_lib.method.candidates import extract_candidates
from eeve_lib.method.families.byte_level import to_byte_level, token_text
from eeve_lib.pipeline.corpora import load_corpus
from eeve_lib.errors import TokenizerError, VocabularyError
from eeve_lib.method.intermediate_tokenizer import train_intermediate_tokenizer
from eeve_lib.pipeline.profiles import load_profile
from eeve_lib.method.target_tokenizer import build_target_tokenizer, unreachable_in_isolation
from benchmarks.counting_baselines import batch_token_counts, naive_token_counts
from eeve_lib.method.token_frequency import count_token_frequencies
from eeve_lib.pipeline.vocabulary import expand_vocabulary, load_expansion_summary, load_target_tokenizer
from tests.conftest import MICRO

SAMPLES = {
    "korean": "대한민국은 민주공화국이다. 모든 국민은 법 앞에 평등하다.",
    "english": "The quick brown fox jumps over the lazy dog, doesn't it?",
    "code": "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\tpass",
    "emoji": "좋아요 😀👍🏽 great!!",
    "mixed": "EEVE는 phi-2를 한국어 모델로 바꾼다 (2024년).",
    "nfd": unicodedata.normalize("NFD", "한국어 문장과 café"),
}


@pytest.fixture(scope="module")
def tokenizers(micro_expanded):
    _, base = load_base("tiny", micro_expanded)
    return base, load_target_tokenizer("tiny", micro_expanded)


@pytest.mark.parametrize("kind", SAMPLES)
def test_round_trip_is_nfc(tokenizers, kind):
    _, target = tokenizers
    text = SAMPLES[kind]
    ids = target(text, add_special_tokens=False).input_ids
    assert target.decode(ids) == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize("kind", ["english", "code"])
def test_english_and_code_get_the_base_ids(tokenizers, kind):
    base, target = tokenizers
    assert target(SAMPLES[kind]).input_ids == base(SAMPLES[kind]).input_ids


def test_base_ids_unchanged_and_new_ids_appended(tokenizers):
    base, target = tokenizers
    base_vocab, target_vocab = base.get_vocab(), target.get_vocab()
    assert all(target_vocab[t] == i for t, i in base_vocab.items())
    new_ids = sorted(set(target_vocab.values()) - set(base_vocab.values()))
    assert new_ids == list(range(len(base), len(target)))
    assert target.all_special_tokens == base.all_special_tokens


def test_korean_gets_shorter(tokenizers):
    base, target = tokenizers
    assert len(target(SAMPLES["korean"]).input_ids) < len(base(SAMPLES["korean"]).input_ids) / 2


def test_every_kept_token_is_produced_on_the_corpus(micro_expanded):
    profile = load_profile("tiny", MICRO)
    summary = load_expansion_summary(profile, micro_expanded)
    target = load_target_tokenizer(profile, micro_expanded)
    counts = naive_token_counts(target, load_corpus(profile, "korean").train)
    vocab = target.get_vocab()
    new_tokens = [to_byte_level(t) for t in summary["new_token_texts"]]
    assert new_tokens and all(counts[vocab[t]] >= summary["threshold"] for t in new_tokens)
    assert summary["min_count_of_new_tokens"] >= summary["threshold"]


def test_saved_tokenizer_loads_both_ways(micro_expanded):
    folder = micro_expanded / "tokenizer"
    auto = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert auto(SAMPLES["korean"], add_special_tokens=False).input_ids == raw.encode(SAMPLES["korean"]).ids


def test_same_corpus_and_seed_give_the_same_tokens_byte_for_byte(micro_expanded, tmp_path):
    import shutil

    profile = load_profile("tiny", MICRO)
    shutil.copytree(micro_expanded / "base", tmp_path / "base")
    expand_vocabulary(profile, tmp_path, progress=False)
    assert (tmp_path / "tokenizer" / "tokenizer.json").read_bytes() == \
        (micro_expanded / "tokenizer" / "tokenizer.json").read_bytes()


def test_counting_methods_agree_also_with_added_tokens():
    profile = load_profile("tiny")
    korean = load_corpus(profile, "korean").train[:800]
    english = load_corpus(profile, "english").train[:3000]
    base = train_byte_level_bpe(english, 1200, added_tokens=12)  # phi-2-style whitespace tokens
    candidates = extract_candidates(train_intermediate_tokenizer(korean, base, 600), base)
    target = build_target_tokenizer(base, candidates).tokenizer
    # the added tokens keep their ids, and new ids come after them
    assert all(target.get_vocab()[t] == i for t, i in base.get_vocab().items())
    assert min(set(target.get_vocab().values()) - set(base.get_vocab().values())) == len(base)
    texts = korean + english[:300] + ["    indented    code\t\t\tx", "끝  "]
    reference = naive_token_counts(target, texts)
    assert np.array_equal(reference, batch_token_counts(target, texts))
    assert np.array_equal(reference, batch_token_counts(target, texts, fast=True))
    assert np.array_equal(reference, count_token_frequencies(target, texts, progress=False, workers=1))
    assert np.array_equal(reference, count_token_frequencies(target, texts, progress=False, workers=2, batch_size=64))


def test_new_tokens_are_reachable_from_their_own_bytes(micro_expanded):
    profile = load_profile("tiny", MICRO)
    _, base = load_base(profile, micro_expanded)
    intermediate = Tokenizer.from_file(str(micro_expanded / "intermediate" / "intermediate_tokenizer.json"))
    target = build_target_tokenizer(base, extract_candidates(intermediate, base))
    assert target.new_tokens and not unreachable_in_isolation(target)
    assert all(token_text(t) for t in target.new_tokens)


def test_unsupported_base_tokenizer_names_the_supported_kinds():
    from tokenizers import models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(TokenizerError, match="Supported kinds: byte-level BPE"):
        build_target_tokenizer(PreTrainedTokenizerFast(tokenizer_object=wordpiece), ["ĠëĮĢ"])


def test_non_korean_corpus_has_no_candidates(micro_base, tmp_path):
    import shutil

    shutil.copytree(micro_base / "base", tmp_path / "base")
    profile = load_profile("tiny", {**MICRO, "data.korean": ["shakespeare-plays"], "data.max_korean_documents": 500})
    with pytest.raises(VocabularyError, match="No candidates were found.*Hangul"):
        expand_vocabulary(profile, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_threshold_that_removes_everything(micro_base, tmp_path):
    import shutil

    shutil.copytree(micro_base / "base", tmp_path / "base")
    profile = load_profile("tiny", {**MICRO, "vocabulary.min_frequency": 10**9})
    with pytest.raises(VocabularyError, match="removes every candidate.*Lower vocabulary.min_frequency"):
        expand_vocabulary(profile, tmp_path, progress=False)
    assert not (tmp_path / "tokenizer").exists()
