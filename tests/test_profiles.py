"""Profiles as data: every profile validates; bad names, keys and values are clear errors."""

import pytest

from eeve_lib.errors import ProfileError
from eeve_lib.pipeline.profiles import available_profiles, load_profile


def test_every_profile_file_loads():
    names = available_profiles()
    assert {"tiny", "small", "full", "full-dry"} <= set(names)
    for name in names:
        p = load_profile(name)
        assert p.name == name and p.training.schedule and p.vocabulary.threshold_rationale


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ProfileError) as e:
        load_profile("huge")
    assert "huge" in str(e.value) and "tiny" in str(e.value) and "full" in str(e.value)


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ProfileError) as e:
        load_profile("tiny", {"training.batchsize": 4})
    message = str(e.value)
    assert "batchsize" in message and "batch_size" in message and "seq_len" in message


def test_bad_values_are_named():
    with pytest.raises(ProfileError, match="on_decode_error"):
        load_profile("tiny", {"data.on_decode_error": "ignore"})
    with pytest.raises(ProfileError, match="unknown stage 9"):
        load_profile("tiny", {"training.schedule": [{"stage": 9, "steps": 1, "learning_rate": 0.1}]})
    with pytest.raises(ProfileError, match="exactly one of 'steps' or 'tokens'"):
        load_profile("tiny", {"training.schedule": [{"stage": 1, "learning_rate": 0.1}]})
    with pytest.raises(ProfileError, match="not a section"):
        load_profile("tiny", {"seed.value": 1})


def test_overrides_apply_and_change_the_hash():
    base = load_profile("tiny")
    changed = load_profile("tiny", {"training.batch_size": 3})
    assert changed.training.batch_size == 3
    assert changed.hash() != base.hash() and load_profile("tiny").hash() == base.hash()
