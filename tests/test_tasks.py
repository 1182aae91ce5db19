"""Step 11's local tasks: NSMC sentiment and Korean-English matching (eeve_lib.method.tasks).

Hand-built models whose right answers are known, the shared log-likelihood against a by-hand
computation on a small real model, invariants of the item selection on generated inputs, and the
selection on the real data when it is present.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eeve_lib.method.tasks import (MATCHING_PROMPT, PRIOR_PROMPT, MatchingItem, SentimentItem, accuracy_with_stderr,
                                   balanced_sentiment_items, continuation_logprobs, matching_items, rating_label,
                                   score_matching, score_sentiment, sentiment_prompt)
from eeve_lib.runtime import seeded


class CharTokenizer:
    """One token per character of ``alphabet``; id 0 is the end-of-text token. Takes a text or a list."""

    eos_token_id = 0

    def __init__(self, texts):
        self.alphabet = "#" + "".join(sorted(set("".join(texts)) - {"#"}))

    def __len__(self):
        return len(self.alphabet)

    def __call__(self, texts, add_special_tokens=False):
        ids = [[self.alphabet.index(c) for c in t] for t in ([texts] if isinstance(texts, str) else texts)]
        return SimpleNamespace(input_ids=ids[0] if isinstance(texts, str) else ids)


class FakeModel(torch.nn.Module):
    """Logits from a rule on the input ids, cut to the last ``logits_to_keep`` positions like a HF model's.

    ``padding_rows`` extra logits (not tokens) get a huge value: they must stay out of the softmax.
    """

    def __init__(self, vocab, padding_rows=3):
        super().__init__()
        self.vocab, self.padding_rows = vocab, padding_rows
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def rule(self, input_ids):
        return torch.zeros(*input_ids.shape, self.vocab)

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0):
        logits = torch.cat([self.rule(input_ids), torch.full((*input_ids.shape, self.padding_rows), 50.0)], dim=-1)
        return SimpleNamespace(logits=logits[:, -logits_to_keep:])


class PreferringModel(FakeModel):
    """Always puts extra weight on the token ids ``preferred``, whatever the context."""

    def __init__(self, vocab, preferred):
        super().__init__(vocab)
        self.preferred = list(preferred)

    def rule(self, input_ids):
        logits = super().rule(input_ids)
        logits[..., self.preferred] = 5.0
        return logits


class CopyingModel(FakeModel):
    """Expects tokens it has already seen in its context (causally): it 'understands' only repetition."""

    def rule(self, input_ids):
        seen = torch.nn.functional.one_hot(input_ids, self.vocab).cummax(dim=1).values
        return 5.0 * seen.float()


# --- the shared log-likelihood -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_llama():
    """A one-layer Llama with a 300-token byte-level BPE, and 20 padding rows beyond the tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from eeve_lib.method.families.byte_level import train_byte_level_bpe

    texts = ["이 영화 정말 최고의 영화입니다", "배우들의 연기가 너무 별로였다", "The government said on Monday that",
             "리뷰: 재미있어요\n감정: 긍정", "Korean: 정부는 월요일에\nEnglish: The government"] * 20
    tok = train_byte_level_bpe(texts, 300)
    config = LlamaConfig(vocab_size=len(tok) + 20, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    with seeded(0):
        model = LlamaForCausalLM(config).eval()
    return model, tok


PAIRS = [("리뷰: 정말 최고의 영화\n감정:", " 긍정"), ("리뷰: 별로\n감정:", " 부정"), ("English:", " The government said"),
         ("Korean: 정부는 월요일에\nEnglish:", " The government said on Monday that"), ("", " 영화"),
         ("이 영화 정말 최고의 영화입니다. " * 3, " 배우들의 연기가"), ("The", " government"), ("리뷰:", "")]


def by_hand(model, tok, prompt, continuation):
    """log P(continuation | prompt): one unpadded sequence, a log-softmax over the tokenizer's rows only."""
    context = [tok.eos_token_id] + tok(prompt, add_special_tokens=False).input_ids
    ids = context + tok(continuation, add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :, :len(tok)]
    logp = torch.log_softmax(logits.double(), dim=-1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(len(context), len(ids)))


def test_continuation_logprobs_match_a_by_hand_sum(small_llama):
    model, tok = small_llama
    expected = [by_hand(model, tok, p, c) for p, c in PAIRS]
    assert expected[-1] == 0.0 and all(e < 0 for e in expected[:-1])
    for batch_size in (1, 7):
        got = continuation_logprobs(model, tok, PAIRS, batch_size=batch_size)
        assert got == pytest.approx(expected, abs=1e-5), f"batch_size {batch_size}"


def test_continuation_logprobs_under_bfloat16_autocast_stay_close(small_llama):
    model, tok = small_llama
    exact = continuation_logprobs(model, tok, PAIRS[:4], batch_size=4)
    mixed = continuation_logprobs(model, tok, PAIRS[:4], batch_size=4, dtype=torch.bfloat16)
    assert mixed == pytest.approx(exact, rel=0.05)
    assert next(model.parameters()).dtype == torch.float32  # autocast, not a cast of the model


def test_padding_rows_of_the_vocabulary_are_not_tokens():
    tok = CharTokenizer(["ab"])
    got = continuation_logprobs(FakeModel(len(tok)), tok, [("a", "bab"), ("", "a")], batch_size=2)
    assert got == pytest.approx([3 * -math.log(len(tok)), -math.log(len(tok))])


# --- known answers -----------------------------------------------------------------------------------


SENTIMENT = [SentimentItem("재미있다", 1), SentimentItem("지루해", 0), SentimentItem("최고", 1), SentimentItem("별로", 0),
             SentimentItem("또 보고 싶다", 1), SentimentItem("돈 아까워", 0), SentimentItem("강추", 1)]


def sentiment_tokenizer(items, demonstrations=()):
    return CharTokenizer([sentiment_prompt(i.text, demonstrations) for i in items] + [" 긍정 부정"])


@pytest.mark.parametrize("preferred_character", ["긍", "부"])
def test_a_model_that_always_prefers_one_label_word_is_calibrated_away(preferred_character):
    """Its leaning is the same after an empty review: every answer is a tie, counted as negative."""
    tok = sentiment_tokenizer(SENTIMENT, SENTIMENT[:2])
    model = PreferringModel(len(tok), [tok.alphabet.index(preferred_character)])
    result = score_sentiment(model, tok, SENTIMENT, SENTIMENT[:2], batch_size=3)
    share = sum(i.label == 0 for i in SENTIMENT) / len(SENTIMENT)
    assert result["accuracy"] == pytest.approx(share) and result["n"] == len(SENTIMENT) and result["shots"] == 2
    assert result["stderr"] == pytest.approx(math.sqrt(share * (1 - share) / len(SENTIMENT)))
    said = result["labels"]["negative"]
    assert said["predicted"] == len(SENTIMENT) and said["correct"] == said["items"]


def test_a_model_that_reads_the_review_gets_every_label_right():
    """Reviews that contain the first syllable of their label: a copying model finds it zero-shot."""
    items = [SentimentItem("긍긍 좋다", 1), SentimentItem("부부 싫다", 0), SentimentItem("아주 긍", 1),
             SentimentItem("부", 0)]
    tok = sentiment_tokenizer(items)
    result = score_sentiment(CopyingModel(len(tok)), tok, items, [], batch_size=2)
    assert result["accuracy"] == 1.0 and result["stderr"] == 0.0 and result["chance"] == 0.5
    swapped = [SentimentItem(i.text, 1 - i.label) for i in items]
    assert score_sentiment(CopyingModel(len(tok)), tok, swapped, [])["accuracy"] == 0.0


def test_matching_by_mutual_information_finds_the_copied_translation():
    """A copying model prefers English it has seen in the prompt: the Korean line here contains it.

    The distractor "En" is always likelier than the long true sentence (its letters are in the prompt
    template, and it is short): by raw likelihood it would win every item; the prior term cancels it.
    """
    english = ["bdbdbdbd", "cfcfcfcf", "jmjmjmjm", "En"]
    items = [MatchingItem(f"정답 {en}", tuple(english), answer) for answer, en in enumerate(english[:3])]
    tok = CharTokenizer([MATCHING_PROMPT.format(korean=i.korean) for i in items] + [PRIOR_PROMPT] + english)
    model = CopyingModel(len(tok))
    assert score_matching(model, tok, items, batch_size=3) == {"accuracy": 1.0, "stderr": 0.0, "n": 3, "chance": 0.25}
    for item in items:
        raw = continuation_logprobs(model, tok, [(MATCHING_PROMPT.format(korean=item.korean), " " + en)
                                                 for en in english])
        assert max(range(4), key=raw.__getitem__) == 3


def test_accuracy_with_stderr():
    assert accuracy_with_stderr([True, False, True, True], 0.25) == {
        "accuracy": 0.75, "stderr": pytest.approx(math.sqrt(0.75 * 0.25 / 4)), "n": 4, "chance": 0.25}
    with pytest.raises(ValueError):
        accuracy_with_stderr([], 0.5)


def test_prompt_format():
    demos = [SentimentItem("별로", 0), SentimentItem("최고", 1)]
    assert sentiment_prompt("좋아요", demos) == "리뷰: 별로\n감정: 부정\n\n리뷰: 최고\n감정: 긍정\n\n리뷰: 좋아요\n감정:"
    assert sentiment_prompt("좋아요", []) == "리뷰: 좋아요\n감정:"
    assert [rating_label(r) for r in range(1, 11)] == [0, 0, 0, 0, None, None, None, None, 1, 1]


# --- invariants of the selection ---------------------------------------------------------------------


reviews = st.lists(st.tuples(st.text(alphabet="가나", max_size=3), st.integers(1, 10)), max_size=60)  # texts repeat


def eligible_counts(records, max_chars, exclude=frozenset()):
    """Distinct texts per label that the selection may use, computed independently of it."""
    labels = {}
    for text, rating in records:
        if rating_label(rating) is not None and 0 < len(text) <= max_chars and text not in exclude:
            labels.setdefault(text, set()).add(rating_label(rating))
    return [sum(found == {label} for found in labels.values()) for label in (0, 1)]


@settings(max_examples=60, deadline=None)
@given(records=reviews, extra=reviews, n_items=st.integers(0, 8), n_demos=st.integers(0, 6),
       max_chars=st.integers(1, 6), seed=st.integers(0, 2**16), separate=st.booleans())
def test_sentiment_selection_is_balanced_disjoint_short_and_seeded(records, extra, n_items, n_demos, max_chars,
                                                                   seed, separate):
    demo_records = extra if separate else None
    try:
        items, demos = balanced_sentiment_items(records, n_items, n_demos, seed, max_chars, demo_records)
    except ValueError:  # too few items, or too few demonstrations once the items' texts are excluded
        lost = n_items if separate else n_items // 2  # texts per label the items take from the demonstrations' pool
        assert (min(eligible_counts(records, max_chars)) < n_items // 2
                or min(eligible_counts(extra if separate else records, max_chars)) - lost < n_demos // 2)
        return
    assert (items, demos) == balanced_sentiment_items(records, n_items, n_demos, seed, max_chars, demo_records)
    for chosen, n, source in ((items, n_items, records), (demos, n_demos, extra if separate else records)):
        assert [i.label for i in chosen] == [0, 1] * (n // 2)  # balanced and alternating
        assert len({i.text for i in chosen}) == len(chosen)
        for item in chosen:
            assert 0 < len(item.text) <= max_chars
            ratings = [r for t, r in source if t == item.text]
            assert item.label in map(rating_label, ratings) and 1 - item.label not in map(rating_label, ratings)
    assert not {i.text for i in items} & {d.text for d in demos}


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(st.text(alphabet="가나다 ", max_size=4), st.text(alphabet="ab c", max_size=4)),
                      max_size=30),
       n_items=st.integers(2, 10), candidates=st.integers(2, 5), max_chars=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_matching_candidates_hold_the_translation_once_and_no_duplicates(pairs, n_items, candidates, max_chars, seed):
    korean, english = [k for k, _ in pairs], [e for _, e in pairs]
    try:
        items = matching_items(korean, english, n_items, candidates, seed, max_chars)
    except ValueError:
        distinct_ko, distinct_en, usable = set(), set(), 0
        for ko, en in pairs:
            if 0 < len(ko) <= max_chars and 0 < len(en) <= max_chars and ko not in distinct_ko \
                    and en not in distinct_en:
                distinct_ko.add(ko)
                distinct_en.add(en)
                usable += 1
        assert candidates > n_items or usable < n_items
        return
    assert items == matching_items(korean, english, n_items, candidates, seed, max_chars)
    assert len(items) == n_items and len({i.korean for i in items}) == n_items
    truths = {i.korean: i.candidates[i.answer] for i in items}
    for item in items:
        assert len(item.candidates) == candidates == len(set(item.candidates))
        assert (item.korean, item.candidates[item.answer]) in pairs
        assert sum(c == truths[item.korean] for c in item.candidates) == 1
        assert set(item.candidates) <= set(truths.values())  # distractors: other items' translations
        assert all(0 < len(t) <= max_chars for t in (item.korean, *item.candidates))


# --- the real data -----------------------------------------------------------------------------------


DATA = Path(os.environ.get("EEVE_DATA_DIR", "/nonexistent"))
REAL_FILES = [DATA / "nsmc" / "nsmc_reviews.tsv.gz", DATA / "ko-en-news" / "korean-english-park.test.ko",
              DATA / "ko-en-news" / "korean-english-park.test.en"]
needs_data = pytest.mark.skipif(not all(f.is_file() for f in REAL_FILES),
                                reason=f"the NSMC and Korean-English news files are not under EEVE_DATA_DIR ({DATA})")


@pytest.fixture(scope="module")
def real_tasks():
    from eeve_lib.pipeline.evaluation import load_sentiment_records, task_data
    from eeve_lib.pipeline.profiles import load_profile

    profile = load_profile("small", {
        "evaluation.sentiment": {"entry": "nsmc-reviews", "items": 200, "shots": [0, 2], "max_chars": 80},
        "evaluation.matching": {"items": 100, "candidates": 4, "max_chars": 120}})
    return profile, load_sentiment_records(profile), task_data(profile)


@needs_data
def test_real_sentiment_items_are_held_out_balanced_and_never_ambiguous(real_tasks):
    from eeve_lib.pipeline.corpora import is_validation

    profile, (held_out, trained), tasks = real_tasks
    items, demonstrations = tasks["sentiment"]
    fraction = profile.data.validation_fraction
    assert len(held_out) > 1000 and len(trained) > 100 * len(held_out) // 10
    assert all(is_validation(i.text, fraction) for i in items)
    assert not any(is_validation(d.text, fraction) for d in demonstrations)
    assert [i.label for i in items].count(1) == [i.label for i in items].count(0) == 100
    assert [d.label for d in demonstrations] == [0, 1]
    assert not {i.text for i in items} & {d.text for d in demonstrations}
    ratings: dict[str, set[int]] = {}
    for text, rating in held_out + trained:
        ratings.setdefault(text, set()).add(rating)
    for item in items + demonstrations:
        assert len(item.text) <= 80
        used = {rating_label(r) for r in ratings[item.text]} - {None}
        assert used == {item.label}  # from a 1-4 or 9-10 rating, never contradicted; 5-8 decide nothing


@needs_data
def test_real_matching_items_come_from_the_parallel_corpus(real_tasks):
    from eeve_lib.pipeline.corpora import load_parallel

    profile, _, tasks = real_tasks
    korean, english = load_parallel(profile)
    pairs = set(zip(korean, english))
    items = tasks["matching"]
    assert len(items) == 100 and len({i.korean for i in items}) == 100
    for item in items:
        assert (item.korean, item.candidates[item.answer]) in pairs and len(set(item.candidates)) == 4
        assert max(len(item.korean), *map(len, item.candidates)) <= 120


# --- the pipeline's wiring ---------------------------------------------------------------------------


def test_scores_and_arm_summary_carry_the_tasks(small_llama, tmp_path):
    from eeve_lib.pipeline.evaluation import _scores, summarise_arms
    from eeve_lib.pipeline.profiles import load_profile

    model, tok = small_llama
    profile = load_profile("tiny", {"evaluation.sentiment": {"entry": "x", "items": 4, "shots": [0, 2]},
                                    "evaluation.matching": {"items": 4, "candidates": 2}})
    items, demos = balanced_sentiment_items([("좋다", 10), ("최고", 9), ("별로", 1), ("싫다", 2), ("굿", 10), ("노잼", 3)],
                                            4, 2, 0, 10)
    tasks = {"sentiment": (items, demos),
             "matching": matching_items(["가", "나", "다", "라"], ["a", "b", "c", "d"], 4, 2, 0, 10)}
    scores = _scores(model, tok, ["이 영화"], ["The film"], profile.evaluation, tasks)
    assert set(scores["sentiment"]) == {"shots_0", "shots_2"} and scores["sentiment"]["shots_2"]["shots"] == 2
    assert scores["matching"]["n"] == 4 and scores["matching"]["chance"] == 0.5
    models = {name: {**scores, "path": name} for name in ("final", "ablation:seven_stages@seed1235")}
    models["ablation:seven_stages@seed1235"]["matching"] = {"accuracy": 0.0}
    row = summarise_arms(profile, models, tmp_path)["seven_stages"]
    assert set(row["sentiment_accuracy"]) == {"shots_0", "shots_2"}
    assert row["matching_accuracy"]["values"] == [scores["matching"]["accuracy"], 0.0]
