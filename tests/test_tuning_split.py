"""Settings are chosen on a tuning split; the book reports on a validation split that no choice saw.

The split is checked on every document of the real corpora of the profiles that tune, and on
generated text; the choice is checked to read the tuning scores only, never the reported ones.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eeve_lib.book import readings, results
from eeve_lib.errors import ProfileError
from eeve_lib.pipeline.arms import jobs
from eeve_lib.pipeline.corpora import iter_documents, load_corpus, split_of
from eeve_lib.pipeline.manifest import load_manifest
from eeve_lib.pipeline.profiles import load_profile
from eeve_lib.pipeline.arm import ablation_arms, learning_rate_arms

TUNING_PROFILES = ["tiny", "tiny-llama"]


@pytest.mark.parametrize("name", TUNING_PROFILES)
@pytest.mark.parametrize("language", ["korean", "english"])
def test_the_three_splits_of_a_real_corpus_are_disjoint_and_cover_it(name, language):
    profile = load_profile(name)
    corpus = load_corpus(profile, language)
    train, validation, tuning = set(corpus.train), set(corpus.validation), set(corpus.tuning)
    assert tuning and validation and train
    assert not tuning & validation, "a tuning document is also reported on"
    assert not tuning & train and not validation & train
    manifest = load_manifest(profile.data.manifest)
    every = {d for entry in getattr(profile.data, language)
             for d in iter_documents(manifest[entry], profile.data.on_decode_error)}
    assert train | validation | tuning == every
    # each share lands near its fraction of the documents
    n = len(corpus.train) + len(corpus.validation) + len(corpus.tuning)
    assert abs(len(corpus.tuning) / n - profile.data.tuning_fraction) < 0.03
    assert abs(len(corpus.validation) / n - profile.data.validation_fraction) < 0.03


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=200), st.floats(0.01, 0.5), st.floats(0.0, 0.45))
def test_a_text_falls_in_exactly_one_split_whatever_the_fractions(text, validation, tuning):
    where = split_of(text, validation, tuning)
    assert where in ("train", "validation", "tuning")
    assert split_of(text, validation, tuning) == where  # the same text, the same side
    # the validation split does not depend on the tuning fraction: the reported text stays put
    assert (split_of(text, validation, 0.0) == "validation") == (where == "validation")
    if not tuning:
        assert where != "tuning"


def test_scored_texts_come_from_the_matching_split():
    from eeve_lib.pipeline.evaluation import _tuning_texts, _validation_texts

    profile = load_profile("tiny")
    reported, tuning = _validation_texts(profile), _tuning_texts(profile)
    for language in (0, 1):
        assert not set(reported[language]) & set(tuning[language])
    assert _tuning_texts(load_profile("small")) is None  # no tuning split there: nothing scored on one


def test_the_learning_rate_grid_trains_at_the_profiles_seed_only():
    profile = load_profile("tiny")
    grid = learning_rate_arms(profile)
    scales = profile.ablations.learning_rate_scales
    own = profile.ablations.baseline_lr_scale
    assert grid == [f"lr:{x:g}" for x in scales] + [f"baseline_lr:{x:g}" for x in sorted({1.0, *scales} - {own})]
    assert set(grid) <= set(ablation_arms(profile))
    seeds_of = {}
    for seed, arms in jobs(profile):
        for arm in arms:
            seeds_of.setdefault(arm, []).append(seed)
    assert all(seeds_of[arm] == [profile.seed] for arm in grid)
    assert len(seeds_of["baseline:no_expansion"]) == profile.ablations.seeds


def test_a_grid_needs_a_tuning_split_and_the_fractions_leave_training_text():
    with pytest.raises(ProfileError, match="tuning_fraction"):
        load_profile("tiny", {"data.tuning_fraction": 0.0})
    with pytest.raises(ProfileError, match="stay below 1"):
        load_profile("tiny", {"data.tuning_fraction": 0.9})
    with pytest.raises(ProfileError, match="learning_rate_scales"):
        load_profile("tiny", {"ablations.learning_rate_scales": [1.0]})
    with pytest.raises(ProfileError, match="not on the grid"):
        load_profile("tiny", {"ablations.baseline_lr_scale": 3.0})


def _arm(korean, english, tuning_korean, tuning_english):
    from eeve_lib.method.evaluation import mean_and_spread

    return {"korean_bits_per_character": mean_and_spread(korean),
            "english_bits_per_character": mean_and_spread(english),
            "tuning": {"korean_bits_per_character": mean_and_spread(tuning_korean),
                       "english_bits_per_character": mean_and_spread(tuning_english)}}


def _metrics():
    base = {"korean": {"bits_per_character": 8.0}, "english": {"bits_per_character": 2.0},
            "tuning": {"korean": {"bits_per_character": 8.0}, "english": {"bits_per_character": 2.0}}}
    return {"models": {"base": base}, "arms": {
        # tuning split: share 0.5 keeps English (2.08 <= 2.1) with the best Korean among those that do
        "seven_stages": _arm([6.0, 6.1, 6.2], [2.3, 2.3, 2.3], [6.0, 6.1, 6.2], [2.05, 2.08, 2.06]),
        "replay:0": _arm([5.0, 5.0, 5.0], [2.0, 2.0, 2.0], [5.5, 5.5, 5.5], [2.5, 2.6, 2.4]),
        "replay:0.75": _arm([6.5, 6.5, 6.5], [2.0, 2.0, 2.0], [6.6, 6.6, 6.6], [2.0, 2.0, 2.0]),
        "lr:2": _arm([5.0], [2.0], [6.5], [2.05]),
        "baseline:no_expansion": _arm([7.0] * 3, [2.0] * 3, [7.2, 9.0, 9.0], [2.0] * 3),
        "baseline_lr:2": _arm([6.0], [2.0], [7.4], [2.0]),
    }}


def test_settings_are_picked_from_the_tuning_scores_never_the_reported_ones():
    metrics = _metrics()
    choices = results.tuning_choices(metrics, english_replay=0.5)
    assert choices["English-replay share"]["picked"] == 0.5
    assert choices["seven stages' learning-rate multiple"]["picked"] == 1.0
    # the baseline's grid compares the profile's seed: 7.2 against 7.4
    assert choices["no-expansion baseline's learning-rate multiple"]["picked"] == 1.0
    # the reported (validation) numbers favour replay 0 and lr x2, which must change nothing
    reported = copy.deepcopy(metrics)
    for arm in reported["arms"].values():
        for key in ("korean_bits_per_character", "english_bits_per_character"):
            arm[key]["values"] = [v * 100 for v in arm[key]["values"]]
    assert results.tuning_choices(reported, english_replay=0.5) == choices
    # and a change in the tuning numbers alone moves the pick
    metrics["arms"]["lr:2"]["tuning"]["korean_bits_per_character"]["values"] = [5.0]
    assert results.tuning_choices(metrics, 0.5)["seven stages' learning-rate multiple"]["picked"] == 2.0


def test_without_a_tuning_split_nothing_is_picked_and_the_page_says_so():
    metrics = _metrics()
    del metrics["models"]["base"]["tuning"]
    assert results.tuning_choices(metrics, 0.5) == {}
    assert "flatter" in readings.tuning_paragraph({}, 0.0)
    assert "sweeps no setting" in readings.tuning_paragraph({}, 0.1)


def test_the_paragraph_names_every_disagreement():
    metrics = _metrics()
    metrics["arms"]["seven_stages"]["tuning"]["english_bits_per_character"]["values"] = [2.2, 2.2, 2.2]
    choices = results.tuning_choices(metrics, english_replay=0.5)
    text = readings.tuning_paragraph(choices, 0.1)
    assert "for the English-replay share the tuning split picks 0.75 where the profile uses 0.5" in text
    assert "The profile uses the value the tuning split picks for the no-expansion baseline's" in text
    assert text[0].isupper() and "validation split, which no choice saw" in text


def test_grid_arms_are_chosen_from_never_compared():
    metrics = _metrics()
    assert not any(results.is_tuning_arm(p["arm"]) for p in results.headline_points(metrics))


def test_a_pick_at_the_edge_of_its_grid_is_said_to_be_one():
    metrics = _metrics()
    metrics["arms"]["lr:0.5"] = _arm([6.0], [2.0], [9.0], [2.0])  # three points: 0.5, 1, 2
    metrics["arms"]["lr:2"]["tuning"]["korean_bits_per_character"]["values"] = [5.0]
    choices = results.tuning_choices(metrics, 0.5)
    assert choices["seven stages' learning-rate multiple"]["picked"] == 2.0
    text = readings.tuning_paragraph(choices, 0.1)
    assert "the seven stages' learning-rate multiple lies at the edge of its grid" in text
