"""Stage 6 as LoRA (training.stage6: lora): adapters merged into an ordinary model, the rest exact."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from eeve_lib.errors import TrainingError
from eeve_lib.pipeline.evaluation import evaluate_run
from eeve_lib.pipeline.profiles import load_profile
from eeve_lib.pipeline.training import run_ablation, run_schedule
from tests.conftest import MICRO
from tests.test_training import copy_inputs, initialised_copy, weights

FAST = {**MICRO, "training.validation_points_per_stage": 1, "training.validation_windows": 4}
LORA = {**FAST, "training.stage6": "lora", "training.lora_rank": 4,
        "training.schedule": [{"stage": 6, "steps": 4, "learning_rate": 3e-3}]}
EMB, HEAD, BIAS = "model.embed_tokens.weight", "lm_head.weight", "lm_head.bias"
LINEARS = ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")


@pytest.fixture(scope="module")
def lora_run(micro_expanded, tmp_path_factory):
    """A LoRA stage 6 on one process, and the model it started from."""
    profile, run_dir, before, ext = initialised_copy(micro_expanded, tmp_path_factory.mktemp("lora"), LORA)
    log = run_schedule(profile, run_dir, progress=False).logs[0]
    return {"run_dir": run_dir, "before": before, "log": log, "n": ext.base_size, "end": ext.target_size}


def assert_only_trained_tensors_changed(before: dict, after: dict, n: int, end: int) -> None:
    assert set(after) == set(before), "the saved model has the original tensors only (no adapter)"
    for key in before:
        changed = not torch.equal(before[key], after[key])
        if key in (EMB, HEAD, BIAS):  # every real row trains, as in the full stage 6; padding rows never
            assert not torch.equal(before[key][:n], after[key][:n]) and not torch.equal(before[key][n:end],
                                                                                         after[key][n:end]), key
            assert torch.equal(before[key][end:], after[key][end:]), key
        elif key.endswith(".weight") and key.split(".")[-2] in LINEARS:
            assert changed, f"{key}: the merged adapter should have moved it"
        else:  # layer norms and the linear layers' biases do not train in a LoRA stage 6
            assert not changed, key


def test_lora_stage6_changes_only_what_it_trains_and_saves_an_ordinary_model(lora_run):
    before, log, run_dir = lora_run["before"], lora_run["log"], lora_run["run_dir"]
    n, end = lora_run["n"], lora_run["end"]
    assert_only_trained_tensors_changed(before, weights(run_dir / "model"), n, end)
    hidden, inter = before[EMB].shape[1], MICRO["base_model.architecture.intermediate_size"]
    layers = MICRO["base_model.architecture.num_hidden_layers"]
    per_layer = 4 * 4 * (hidden + hidden) + 4 * (hidden + inter) + 4 * (inter + hidden)  # rank 4: r (in + out)
    assert log.trainable["transformer"] == layers * per_layer
    rows = end * hidden + end * (hidden + 1)
    assert log.trainable["total"] == rows + layers * per_layer
    assert log.optimizer_state_bytes == 8 * log.trainable["total"]  # Adam: two float32 moments, nothing else

    script = textwrap.dedent(f"""
        import importlib.abc, importlib.util, sys

        class NoPeft(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "peft":
                    return importlib.util.spec_from_loader(name, self)
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                raise ImportError("importing peft is forbidden here")

        sys.meta_path.insert(0, NoPeft())
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(run_dir / "model")!r}, trust_remote_code=False)
        print(type(model).__name__, sorted(k for k in sys.modules if k.split(".")[0] == "peft"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["PhiForCausalLM", "[]"]


@pytest.mark.slow
def test_lora_stage6_sharded_on_two_processes_matches_one(lora_run, micro_expanded, tmp_path):
    from tests.test_distributed import ATOL, RTOL, finish, launch

    run_dir = copy_inputs(micro_expanded, tmp_path / "fsdp")
    finish(launch("fsdp_1node.yaml", run_dir, LORA))
    after, expected = weights(run_dir / "model"), weights(lora_run["run_dir"] / "model")
    assert_only_trained_tensors_changed(lora_run["before"], after, lora_run["n"], lora_run["end"])
    for key in expected:
        assert torch.allclose(after[key], expected[key], rtol=RTOL, atol=ATOL), key
    sharded = json.loads((run_dir / "train" / "stage6.json").read_text())
    assert sharded["optimizer_state_bytes"] * 2 == pytest.approx(lora_run["log"].optimizer_state_bytes, rel=0.01)


def test_qlora_on_the_cpu_is_a_clear_error(micro_expanded, tmp_path):
    profile = load_profile("tiny", {**LORA, "training.stage6": "qlora"})
    run_dir = copy_inputs(micro_expanded, tmp_path / "run")
    with pytest.raises(TrainingError, match="needs a CUDA GPU.*Use training.stage6: lora"):
        run_schedule(profile, run_dir, progress=False)
    assert not (run_dir / "model").exists()


def test_the_lora_arm_reuses_the_first_stages_and_is_scored(micro_expanded, tmp_path):
    schedule = [{"stage": 1, "steps": 2, "learning_rate": 3e-3}, {"stage": 6, "steps": 3, "learning_rate": 3e-3},
                {"stage": 7, "steps": 2, "learning_rate": 3e-3}]
    profile = load_profile("tiny", {**FAST, "training.schedule": schedule, "training.lora_rank": 4,
                                    "ablations.stage6": ["lora"]})
    run_dir = copy_inputs(micro_expanded, tmp_path / "run")
    run_schedule(profile, run_dir, progress=False)
    run_ablation(profile, "stage6:lora", run_dir, progress=False)
    arm = run_dir / "ablations" / "stage6-lora"
    assert not (arm / "train" / "stage1.json").exists(), "stage 1 is the main run's, not retrained"
    assert json.loads((arm / "train" / "stage6.json").read_text())["trainable"]["transformer"] > 0
    main, lora = weights(run_dir / "model"), weights(arm / "model")
    assert not torch.equal(main["model.layers.0.mlp.fc1.weight"], lora["model.layers.0.mlp.fc1.weight"])
    metrics = evaluate_run(profile, run_dir, progress=False)
    assert metrics["models"]["ablation:stage6-lora"]["korean"]["bits_per_character"] > 0
    assert json.loads((run_dir / "eval" / "metrics.json").read_text())["models"].keys() >= {"final",
                                                                                           "ablation:stage6-lora"}
