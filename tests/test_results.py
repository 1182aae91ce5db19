"""The pieces behind chapter 05's claims: English replay, the base's Korean share, arms at several
seeds, the uniform guess, and recorded runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eeve_lib.errors import EeveError
from eeve_lib.method.evaluation import mean_and_spread, uniform_bits_per_character
from eeve_lib.method.sampling import build_training_data, sample_batches
from eeve_lib.pipeline.evaluation import arm_of
from eeve_lib.pipeline.paths import run_paths
from eeve_lib.pipeline.profiles import load_profile
from eeve_lib.pipeline.arm import MAIN_ARM, ablation_arms
from eeve_lib.pipeline.training import arm_paths, arm_seeds


class _Tok:
    """Characters as ids: Hangul syllables are 'new' tokens (ids >= 1000), everything else base."""

    eos_token_id = 0

    def encode_batch(self, texts, add_special_tokens=False):
        from types import SimpleNamespace

        return [SimpleNamespace(ids=[1000 + (ord(c) % 500) if "가" <= c <= "힣" else 1 + ord(c) % 900 for c in t])
                for t in texts]


def _data(replay: float):
    korean = ["한국어 문장입니다 " * 20] * 30
    english = ["an English line of text " * 20] * 30
    return build_training_data(_Tok(), korean, 16, 1000, 2.0, english, replay)


@pytest.mark.parametrize("replay", [0.1, 0.25, 0.5])
def test_english_replay_draws_its_share(replay):
    data = _data(replay)
    assert data.english is not None and data.english.any()
    assert data.english_share() == pytest.approx(replay)
    batches = sample_batches(data, 400, 8, seed=3)
    drawn = float(data.english[batches].float().mean())
    assert abs(drawn - replay) < 0.05, drawn
    # step 8's bias is about Korean windows: the expected new-token share ignores English ones
    assert data.expected_new_share() == pytest.approx(_data(0.0).expected_new_share())


def test_no_replay_has_no_english():
    data = _data(0.0)
    assert data.english is None and data.english_share() == 0.0


def test_replay_share_out_of_range_is_refused():
    from eeve_lib.errors import TrainingError

    with pytest.raises(TrainingError, match="english_replay"):
        _data(1.0)
    with pytest.raises(EeveError, match="english_replay"):
        load_profile("tiny", {"training.english_replay": 0.95})
    with pytest.raises(EeveError, match="english_replay"):
        load_profile("tiny", {"ablations.english_replay": [0.0, 1.5]})


@given(st.lists(st.floats(0.1, 100, allow_nan=False), min_size=1, max_size=8))
@settings(max_examples=50, deadline=None)
def test_mean_and_spread(values):
    s = mean_and_spread(values)
    assert s["min"] <= s["mean"] + 1e-9 and s["mean"] <= s["max"] + 1e-9
    assert s["std"] >= 0 and (len(values) > 1 or s["std"] == 0)
    assert s["values"] == values


@given(st.floats(0.01, 5), st.integers(2, 100_000))
def test_uniform_guess(tokens_per_character, vocabulary):
    assert uniform_bits_per_character(tokens_per_character, vocabulary) == pytest.approx(
        tokens_per_character * math.log2(vocabulary))


def test_arm_names_round_trip_through_their_folders(tmp_path):
    profile = load_profile("tiny", {"ablations.seeds": 3, "training.english_replay": 0.5,
                                    "ablations.english_replay": [0.0, 0.25, 0.5]})
    arms = ablation_arms(profile)
    assert arms[0] == MAIN_ARM and "baseline:no_expansion" in arms and "replay:0.25" in arms
    assert f"replay:{profile.training.english_replay:g}" not in arms  # the seven stages themselves
    paths = run_paths(profile, tmp_path)
    for arm in arms:
        for seed in arm_seeds(profile):
            where = arm_paths(profile, arm, seed, tmp_path)
            if arm == MAIN_ARM and seed == profile.seed:
                assert where.root == paths.root
                assert arm_of("final") == (MAIN_ARM, None)
                continue
            found = arm_of(f"ablation:{where.root.name}")
            assert found == (arm, None if seed == profile.seed else seed)


def test_base_korean_share_is_drawn_and_the_tokenizer_stays_english(micro_base, micro_profile):
    from eeve_lib.method.candidates import is_hangul
    from eeve_lib.pipeline.base import base_info, load_base_tokenizer

    info = base_info(micro_profile, micro_base)
    bm = micro_profile.base_model
    windows = bm.pretrain.steps * bm.pretrain.batch_size
    assert bm.korean_share > 0 and info["korean_tokens_seen"] > 0
    assert info["korean_tokens_seen"] <= windows * bm.pretrain.seq_len
    tok = load_base_tokenizer(micro_profile, micro_base)
    decoded = [tok.convert_tokens_to_string([t]) for t in tok.get_vocab()]
    assert not any(is_hangul(c) for d in decoded for c in d), "the base tokenizer must not learn Korean"


def test_pretraining_draws_korean_at_its_share():
    from eeve_lib.method.base_model import build_phi_config, new_model, pretrain

    config = build_phi_config({"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "max_position_embeddings": 64}, 64, 0)
    budget = dict(steps=50, batch_size=8, seq_len=8, learning_rate=1e-3, warmup_steps=1, weight_decay=0.0,
                  log_every=10, seed=5, device=torch.device("cpu"), progress=False)
    english, korean = torch.randint(0, 32, (500,)), torch.randint(32, 64, (500,))
    torch.manual_seed(0)
    log = pretrain(new_model("phi", config), english, english, **budget,
                   korean_stream=korean, korean_share=0.25, korean_validation=korean)
    assert abs(log["korean_windows"] / (50 * 8) - 0.25) < 0.07
    assert len(log["korean_validation_loss"]) == len(log["validation_loss"])
    with pytest.raises(EeveError, match="korean_share"):
        pretrain(new_model("phi", config), english, english, **budget, korean_stream=korean[:4], korean_share=0.25)


def test_record_refuses_an_incomplete_run_and_records_a_complete_one(micro_run, tmp_path):
    from eeve_lib.pipeline.record import record_run, recorded_runs
    from tests.conftest import MICRO

    profile = load_profile("tiny", MICRO)
    with pytest.raises(EeveError, match="not a completed run"):
        record_run(profile, tmp_path / "nothing", root=tmp_path / "results")
    where = record_run(profile, micro_run["run_dir"], root=tmp_path / "results")
    recorded = recorded_runs(tmp_path / "results")
    assert list(recorded) == ["tiny"] and where.name == "tiny"
    r = recorded["tiny"]
    assert r["metrics"] == json.loads((micro_run["run_dir"] / "eval" / "metrics.json").read_text())
    assert r["record"]["git"]["commit"] and r["record"]["hardware"]["cpu_count"] >= 1
    assert not list(where.rglob("*.safetensors")), "a record holds numbers, never weights"


def test_eeve_run_with_other_settings_never_writes_the_books_run(tmp_path, monkeypatch, capsys):
    from eeve_lib.cli import main

    monkeypatch.setenv("EEVE_RUNS_DIR", str(tmp_path / "runs"))
    code = main(["run", "--profile", "tiny", "--chapters", "03",
                 "--overrides", json.dumps({"embedding_init": "random"})])
    out = capsys.readouterr()
    assert code == 2 and "needs the earlier chapters" in out.err  # nothing ran: chapter 03 needs 00-02
    assert "tiny-student" in out.out
    assert (tmp_path / "runs" / "tiny-student").is_dir() and not (tmp_path / "runs" / "tiny").exists()
