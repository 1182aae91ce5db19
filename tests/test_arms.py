"""Chapter 05's arms as one type (pipeline/arm.py): one parser, one table of kinds, one trainer per kind."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eeve_lib.pipeline.arm import ARM_KINDS, MAIN_ARM, TIED_ARM, Arm, ArmError, ablation_arms, learning_rate_arms
from eeve_lib.pipeline.evaluation import arm_of
from eeve_lib.pipeline.profiles import load_profile
from eeve_lib.pipeline.training import ARM_TRAINERS

# What chapter 05 of the tiny profile trained before arms had a type: the same names in the same order.
TINY_ARMS = ["seven_stages", "schedule:full_finetune", "schedule:embeddings_only", "init:mean_resizing",
             "init:random", "stage6:lora", "baseline:no_expansion", "baseline:equal_text", "replay:0",
             "replay:0.75", "lr:0.5", "lr:2", "lr:4", "baseline_lr:0.5", "baseline_lr:1", "baseline_lr:4"]


def test_every_kind_has_one_trainer_and_every_trainer_a_kind():
    assert list(ARM_TRAINERS) == list(ARM_KINDS)


def test_the_tiny_profile_asks_for_the_arms_it_always_did():
    profile = load_profile("tiny")
    assert ablation_arms(profile) == TINY_ARMS
    assert learning_rate_arms(profile) == [a for a in TINY_ARMS if a.startswith(("lr:", "baseline_lr:"))]
    assert all(isinstance(a, Arm) for a in ablation_arms(profile))


def test_extra_arms_are_appended_once():
    profile = load_profile("tiny", {"ablations.extra_arms": ["init:random", "tied:seven_stages"]})
    assert ablation_arms(profile) == TINY_ARMS + [TIED_ARM]


@pytest.mark.parametrize("name, kind, value", [("seven_stages", "seven_stages", ""), ("lr:2", "lr", "2"),
                                               ("init:mean_resizing", "init", "mean_resizing"),
                                               ("tied:seven_stages", "tied", "seven_stages")])
def test_a_name_parses_into_its_kind_and_value(name, kind, value):
    arm = Arm(name)
    assert (arm.kind, arm.value, arm) == (kind, value, name)
    assert Arm(arm) is arm and pickle.loads(pickle.dumps(arm)).kind == kind
    assert Arm.from_folder(arm.folder) == arm


@pytest.mark.parametrize("name, says", [("seven_stages:2", "Unknown ablation arm"), ("lr", "Unknown ablation arm"),
                                        ("lr:", "Unknown ablation arm"), ("lr:0", "must be a number in"),
                                        ("replay:0.95", "must be a number in"), ("dropout:0.1", "use seven_stages")])
def test_a_wrong_name_is_one_line_naming_the_kinds(name, says):
    with pytest.raises(ArmError) as e:
        Arm(name)
    assert says in str(e.value) and "\n" not in str(e.value)


@given(kind=st.sampled_from([k for k, s in ARM_KINDS.items() if s.value]),
       value=st.from_regex(r"[a-z_]{1,12}|[0-9]\.[0-9]{1,3}", fullmatch=True),
       seed=st.one_of(st.none(), st.integers(0, 10**6)))
def test_every_arm_round_trips_through_its_folder_and_model_name(kind, value, seed):
    try:
        arm = Arm(f"{kind}:{value}")
    except ArmError:
        return  # a value out of its kind's range
    model = f"ablation:{arm.folder}" + ("" if seed is None else f"@seed{seed}")
    assert arm_of(model) == (arm, seed)
    assert arm_of("final") == (MAIN_ARM, None)


def test_a_new_init_method_is_one_entry_in_one_table(monkeypatch):
    """The profile check, the arms and extend_model all read INIT_METHODS: nothing else to edit."""
    import torch

    from eeve_lib.method import embedding_init

    zeros = embedding_init.InitRule(lambda real, ext, g, r: torch.zeros(ext.n_new, real.shape[1]),
                                    lambda real, ext, g, r: torch.zeros(ext.n_new, real.shape[1]),
                                    lambda bias, ext: torch.zeros(ext.n_new))
    with pytest.raises(Exception, match="embedding_init: unknown name 'zeros'"):
        load_profile("tiny", {"embedding_init": "zeros"})
    monkeypatch.setitem(embedding_init.INIT_METHODS, "zeros", zeros)
    profile = load_profile("tiny", {"embedding_init": "zeros", "ablations.inits": ["random", "zeros"]})
    assert "init:zeros" in ablation_arms(profile)


def test_a_new_arm_kind_is_one_entry_in_each_of_two_tables(monkeypatch):
    from eeve_lib.pipeline import arm as arm_module
    from eeve_lib.pipeline import training

    with pytest.raises(Exception, match="ablations.extra_arms: Unknown ablation arm 'half_steps:1'"):
        load_profile("tiny", {"ablations.extra_arms": ["half_steps:1"]})
    monkeypatch.setitem(arm_module.ARM_KINDS, "half_steps", arm_module.ArmKind("half the steps", "a stage"))
    trained = []
    monkeypatch.setitem(training.ARM_TRAINERS, "half_steps",
                        lambda p, arm, out, main, run_dir, **c: trained.append((str(arm), out.root.name)))
    profile = load_profile("tiny", {"ablations.extra_arms": ["half_steps:1"]})
    assert ablation_arms(profile)[-1] == "half_steps:1"
    training.run_ablation(profile, "half_steps:1", seed=profile.seed + 1)
    assert trained == [("half_steps:1", f"half_steps-1@seed{profile.seed + 1}")]


@given(steps=st.lists(st.integers(1, 200), min_size=1, max_size=7), ratio=st.floats(1.0, 6.0),
       replay=st.sampled_from([0.0, 0.25, 0.5, 0.75]))
def test_the_equal_text_baseline_reads_the_same_korean_and_english_text(steps, ratio, replay):
    from eeve_lib.method.stages import StageBudget
    from eeve_lib.pipeline.training import equal_text_budget

    schedule = [StageBudget(stage=6, steps=n, learning_rate=1e-3) for n in steps]
    longer, share = equal_text_budget(schedule, ratio, replay)
    for before, after in zip(schedule, longer):
        # its Korean windows hold as many characters (ratio times the tokens), its English as many windows
        assert after.steps * (1 - share) == pytest.approx(before.steps * (1 - replay) * ratio, abs=0.501)
        assert after.steps * share == pytest.approx(before.steps * replay, abs=0.501)
        assert after.learning_rate == before.learning_rate and after.stage == before.stage
    assert 0 <= share <= replay


def test_the_longest_jobs_are_handed_out_first():
    from eeve_lib.pipeline.arms import jobs, longest_first

    todo = jobs(load_profile("tiny"))
    ordered = longest_first(todo)
    assert sorted(ordered) == sorted(todo)
    kinds = [("equal" if "baseline:equal_text" in arms else "several" if len(arms) > 1 else "one")
             for _, arms in ordered]
    assert kinds == sorted(kinds, key=["equal", "several", "one"].index)
    # within a group, the order of jobs() is kept
    assert [job for job in ordered if len(job[1]) == 1 and "baseline:equal_text" not in job[1]] == [
        job for job in todo if len(job[1]) == 1 and "baseline:equal_text" not in job[1]]
