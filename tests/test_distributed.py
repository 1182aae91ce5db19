"""Stage training on two processes (CPU, gloo) through ``accelerate launch`` and the shipped configs.

Data-parallel (``configs/accelerate/ddp.yaml``) and sharded (``configs/accelerate/fsdp_1node.yaml``:
PyTorch's FSDP2, which runs on CPUs too) runs of a cut-down schedule are compared with one process
training the same global batches:

* every tensor a stage must not change is bit-identical to what the stage started from;
* every tensor agrees with the one-process run within ``RTOL``/``ATOL`` (float sums in another
  order: measured at most 5e-6 after 14 steps);
* a stage checkpointed by two processes resumes on one, and one checkpointed by one resumes on two.

`accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.15 (its CPU
launcher needs MPI for more), so the runs use the configs' torchrun launcher with the profile's
``device: cpu``: accelerate then runs the processes on CPUs over gloo.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eeve_lib.method.stages import STAGES
from eeve_lib.pipeline.paths import run_paths
from eeve_lib.pipeline.profiles import load_profile
from eeve_lib.pipeline.training import run_schedule
from tests.conftest import MICRO, ROOT
from tests.test_training import copy_inputs, initialised_copy, weights

pytestmark = pytest.mark.slow

SCHEDULE = [{"stage": 1, "steps": 4, "learning_rate": 3e-3},   # new input rows: backward through the body
            {"stage": 2, "steps": 2, "learning_rate": 3e-3},   # new output rows: no backward through the body
            {"stage": 6, "steps": 8, "learning_rate": 3e-3}]   # everything
DIST = {**MICRO, "training.checkpoint_every": 2, "training.schedule": SCHEDULE,
        "training.validation_points_per_stage": 1, "training.validation_windows": 4}
RTOL, ATOL = 1e-4, 2e-5
CONFIGS = ROOT / "configs" / "accelerate"
EMB, HEAD, BIAS = "model.embed_tokens.weight", "lm_head.weight", "lm_head.bias"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(config: str, run_dir: Path, overrides: dict, processes: int = 2,
           kill_after: str | None = None) -> subprocess.Popen:
    """``accelerate launch --config_file configs/accelerate/<config> ... -m eeve_lib.cli train`` (its own session).

    ``kill_after="<stage>:<step>"``: the main process is killed with SIGKILL right after storing that
    checkpoint (tests/kill_after_checkpoint.py), and with it the run.
    """
    module = ["-m", "tests.kill_after_checkpoint"] if kill_after else ["-m", "eeve_lib.cli"]
    command = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(CONFIGS / config),
               "--num_processes", str(processes), "--main_process_port", str(free_port()),
               *module, "train", "--profile", "tiny", "--run-dir", str(run_dir), "--overrides", json.dumps(overrides)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EEVE_KILL_AFTER_CHECKPOINT": kill_after or ""}
    return subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def killed(proc: subprocess.Popen, timeout: float = 240) -> str:
    """Wait for a run launched with ``kill_after`` to die; then make sure none of its processes is left."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, "the run was not killed"
    return out


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a run that hangs leaves no process behind
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, out[-4000:]
    return out


def checkpoint(run_dir: Path, stage: int) -> Path:
    return run_paths(load_profile("tiny", DIST), run_dir).checkpoint(stage)


def stage_logs(run_dir: Path) -> dict[int, dict]:
    return {b["stage"]: json.loads((run_dir / "train" / f"stage{b['stage']}.json").read_text()) for b in SCHEDULE}


def assert_frozen_untouched(before: dict, after: dict, number: int, n_base: int, end: int) -> None:
    """What stage ``number`` must not change is bit-identical (the rules of eeve_lib.method.stages)."""
    stage = STAGES[number]
    for key in before:
        if key not in (EMB, HEAD, BIAS) and not stage.transformer:
            assert torch.equal(before[key], after[key]), (number, key)
    for key, rows in ((EMB, stage.input_rows), (HEAD, stage.output_rows), (BIAS, stage.output_rows)):
        assert torch.equal(before[key][end:], after[key][end:]), (number, key, "padding rows")
        if rows != "all":
            assert torch.equal(before[key][:n_base], after[key][:n_base]), (number, key, "base rows")
        if rows == "none":
            assert torch.equal(before[key][n_base:end], after[key][n_base:end]), (number, key, "new rows")


def assert_matches_reference(run_dir: Path, reference: dict, initial: dict, n_base: int, end: int) -> None:
    before = initial
    for b in SCHEDULE:
        number = b["stage"]
        after = weights(run_dir / "stages" / f"stage{number}")
        assert_frozen_untouched(before, after, number, n_base, end)
        expected = reference[number]
        for key in expected:
            assert torch.allclose(after[key], expected[key], rtol=RTOL, atol=ATOL), \
                (number, key, float((after[key] - expected[key]).abs().max()))
        before = after
    final = weights(run_dir / "model")
    assert all(torch.equal(final[k], before[k]) for k in final)


@pytest.fixture(scope="module")
def one_process(micro_expanded, tmp_path_factory):
    """The reference: one process, the same schedule and global batches."""
    profile, run_dir, initial, ext = initialised_copy(micro_expanded, tmp_path_factory.mktemp("one-process"), DIST)
    run_schedule(profile, run_dir, progress=False)
    return {"run_dir": run_dir, "initial": initial, "n_base": ext.base_size, "end": ext.target_size,
            "stages": {b["stage"]: weights(run_dir / "stages" / f"stage{b['stage']}") for b in SCHEDULE},
            "logs": stage_logs(run_dir)}


def test_data_parallel_killed_on_two_processes_resumes_on_one(micro_expanded, one_process, tmp_path):
    run_dir = copy_inputs(micro_expanded, tmp_path / "ddp")
    out = killed(launch("ddp.yaml", run_dir, DIST, kill_after="6:4"))
    assert checkpoint(run_dir, 6).exists(), f"no stage-6 checkpoint before the run ended:\n{out[-3000:]}"
    assert not (run_dir / "model").exists()
    logs = {n: json.loads((run_dir / "train" / f"stage{n}.json").read_text()) for n in (1, 2)}
    for n, log in logs.items():  # the logged loss is the whole global batch's
        assert log["losses"] == pytest.approx(one_process["logs"][n]["losses"], rel=1e-5), n
        assert log["optimizer_state_bytes"] == one_process["logs"][n]["optimizer_state_bytes"]  # replicated

    result = run_schedule(load_profile("tiny", DIST), run_dir, progress=False)  # one process
    assert {log.stage: log.resumed_from_step for log in result.logs}[6] == 4
    assert not checkpoint(run_dir, 6).exists()
    assert_matches_reference(run_dir, one_process["stages"], one_process["initial"], one_process["n_base"],
                             one_process["end"])


class _Stop(Exception):
    pass


def test_sharded_two_processes_resume_a_one_process_checkpoint(micro_expanded, one_process, tmp_path, monkeypatch):
    import eeve_lib.pipeline.training as training

    run_dir = copy_inputs(micro_expanded, tmp_path / "fsdp")
    save = training._save_checkpoint

    def save_then_stop(path, key, state):  # one process stops right after its first checkpoint (stage 1, step 2)
        save(path, key, state)
        raise _Stop

    monkeypatch.setattr(training, "_save_checkpoint", save_then_stop)
    with pytest.raises(_Stop):
        run_schedule(load_profile("tiny", DIST), run_dir, progress=False)
    monkeypatch.undo()
    assert checkpoint(run_dir, 1).exists() and not (run_dir / "stages").exists()

    finish(launch("fsdp_1node.yaml", run_dir, DIST))
    logs = stage_logs(run_dir)
    assert logs[1]["resumed_from_step"] == 2
    reference = one_process["logs"]
    for n in (2, 6):  # each process holds Adam state for half of what trains
        assert logs[n]["optimizer_state_bytes"] * 2 == pytest.approx(reference[n]["optimizer_state_bytes"], rel=0.01)
        assert logs[n]["losses"] == pytest.approx(reference[n]["losses"], rel=1e-5)
    assert not any(checkpoint(run_dir, b["stage"]).exists() for b in SCHEDULE)
    assert_matches_reference(run_dir, one_process["stages"], one_process["initial"], one_process["n_base"],
                             one_process["end"])


def test_sharded_killed_on_two_processes_resumes_on_one(micro_expanded, one_process, tmp_path):
    run_dir = copy_inputs(micro_expanded, tmp_path / "fsdp-killed")
    out = killed(launch("fsdp_1node.yaml", run_dir, DIST, kill_after="6:4"))
    assert checkpoint(run_dir, 6).exists(), f"no stage-6 checkpoint before the run ended:\n{out[-3000:]}"
    assert not (run_dir / "model").exists()
    result = run_schedule(load_profile("tiny", DIST), run_dir, progress=False)  # one process
    assert {log.stage: log.resumed_from_step for log in result.logs}[6] == 4
    assert_matches_reference(run_dir, one_process["stages"], one_process["initial"], one_process["n_base"],
                             one_process["end"])


def test_the_shipped_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    ddp = load_config_from_file(str(CONFIGS / "ddp.yaml"))
    assert ddp.distributed_type == "MULTI_GPU" and ddp.mixed_precision == "no"
    for name, machines in (("fsdp_1node.yaml", 1), ("fsdp_multinode.yaml", 2)):
        config = load_config_from_file(str(CONFIGS / name))
        assert config.distributed_type == "FSDP" and config.num_machines == machines, name
        assert config.fsdp_config["fsdp_version"] == 2 and config.mixed_precision == "no", name
