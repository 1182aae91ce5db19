"""Chapter 04's step: the seven stages, exactness, resumption and determinism."""

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from eeve_lib.pipeline import rundir
from eeve_lib.pipeline.checkpoints import save_checkpoint
from eeve_lib.pipeline.paths import RUN_MARKER
from eeve_lib.pipeline.training import initialise_extended_model, stage_options
from eeve_lib.errors import ProfileError, TrainingError
from eeve_lib.pipeline.profiles import StageBudget, load_profile
from eeve_lib.method.stages import STAGES
from eeve_lib.method.sampling import build_training_data
from eeve_lib.method.stage_loop import train_stage
from eeve_lib.pipeline.training import run_schedule
from tests.conftest import MICRO, ROOT

RESUME = {**MICRO, "training.checkpoint_every": 5,
          "training.schedule": [{"stage": 1, "steps": 6, "learning_rate": 3e-3},
                                {"stage": 2, "steps": 6, "learning_rate": 3e-3},
                                {"stage": 6, "steps": 40, "learning_rate": 1e-3},
                                {"stage": 7, "steps": 6, "learning_rate": 1e-3}]}


def copy_inputs(source: Path, target: Path) -> Path:
    """A run folder (marked as one, so that commands may write into it) holding ``source``'s inputs."""
    for name in ("base", "tokenizer", "intermediate"):
        shutil.copytree(source / name, target / name)
    rundir.write_marker(target, RUN_MARKER, eeve_run_directory=1, profile="tiny")
    return target


def initialised_copy(source: Path, target: Path, overrides: dict):
    """A copy of ``source``'s inputs in ``target`` with the extended model initialised at tiny plus
    ``overrides``: (profile, run folder, the initial weights, the extension)."""
    profile = load_profile("tiny", overrides)
    run_dir = copy_inputs(source, target)
    model, _, _, ext = initialise_extended_model(profile, run_dir)
    return profile, run_dir, {k: v.clone() for k, v in model.state_dict().items()}, ext


def weights(path: Path) -> dict:
    return load_file(path / "model.safetensors")


def one_step(profile, run_dir, stage_number, tmp_path):
    model, tok, _, ext = initialise_extended_model(profile, run_dir)
    from eeve_lib.pipeline.corpora import load_corpus

    data = build_training_data(tok, load_corpus(profile, "korean").train, 32, ext.base_size, 1.0)
    calls = []
    model.model.layers[0].register_full_backward_hook(lambda *a: calls.append(1))
    log = train_stage(model, STAGES[stage_number], StageBudget(stage_number, 1e-3, steps=1), data, ext,
                      options=stage_options(profile.training), seed=1, device=torch.device("cpu"), dtype=torch.float32,
                      progress=False)
    return log, len(calls), ext, model


def test_output_only_stages_do_not_backpropagate_through_the_transformer(micro_expanded, tmp_path):
    profile = load_profile("tiny", MICRO)
    for number in (2, 4):
        _, calls, _, _ = one_step(profile, micro_expanded, number, tmp_path)
        assert calls == 0, f"stage {number} ran backward through a transformer layer"
    _, calls, _, _ = one_step(profile, micro_expanded, 1, tmp_path)
    assert calls > 0  # new input rows need the gradient to flow back through the body


def test_stage1_optimizer_holds_state_for_the_new_rows_only(micro_expanded, tmp_path):
    profile = load_profile("tiny", MICRO)
    log, _, ext, model = one_step(profile, micro_expanded, 1, tmp_path)
    hidden = model.get_input_embeddings().weight.shape[1]
    assert log.optimizer_state_bytes <= 1.1 * ext.n_new * hidden * 8
    assert log.trainable["total"] == ext.n_new * hidden


def test_frozen_rows_are_bit_identical_after_each_stage(micro_expanded, tmp_path):
    profile = load_profile("tiny", MICRO)
    base, _, _, ext = initialise_extended_model(profile, micro_expanded)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    n, end = ext.base_size, ext.target_size
    for number, stage in STAGES.items():
        _, _, _, model = one_step(profile, micro_expanded, number, tmp_path)
        after = model.state_dict()
        emb, head, bias = "model.embed_tokens.weight", "lm_head.weight", "lm_head.bias"
        for key in before:
            if key in (emb, head, bias):
                continue
            assert torch.equal(before[key], after[key]) != stage.transformer, (number, key)
        assert torch.equal(before[emb][:n], after[emb][:n]) == (stage.input_rows != "all")
        assert torch.equal(before[emb][n:end], after[emb][n:end]) == (stage.input_rows == "none")
        for k in (head, bias):
            assert torch.equal(before[k][:n], after[k][:n]) == (stage.output_rows != "all"), (number, k)
            assert torch.equal(before[k][n:end], after[k][n:end]) == (stage.output_rows == "none"), (number, k)
        # padding rows never train
        assert torch.equal(before[emb][end:], after[emb][end:]) and torch.equal(before[head][end:], after[head][end:])


def test_schedule_is_deterministic_even_with_the_global_rng_disturbed(micro_expanded, tmp_path):
    profile = load_profile("tiny", {**MICRO, "training.schedule": [{"stage": 3, "steps": 3, "learning_rate": 1e-3},
                                                                   {"stage": 6, "steps": 3, "learning_rate": 1e-3}]})
    a, b = copy_inputs(micro_expanded, tmp_path / "a"), copy_inputs(micro_expanded, tmp_path / "b")
    torch.manual_seed(0)
    run_schedule(profile, a, progress=False)
    torch.manual_seed(12345)
    torch.randn(77)
    state = torch.get_rng_state()
    run_schedule(profile, b, progress=False)
    assert torch.equal(state, torch.get_rng_state())
    wa, wb = weights(a / "model"), weights(b / "model")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_killed_run_resumes_bit_identical(micro_expanded, tmp_path):
    profile = load_profile("tiny", RESUME)
    reference = copy_inputs(micro_expanded, tmp_path / "reference")
    run_schedule(profile, reference, progress=False)

    killed = copy_inputs(micro_expanded, tmp_path / "killed")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.test_training import RESUME
        from eeve_lib.pipeline.profiles import load_profile
        from eeve_lib.pipeline.training import run_schedule
        run_schedule(load_profile("tiny", RESUME), {str(killed)!r}, progress=False)
    """)
    # Same thread count as this process: float sums in another order would differ in the last bit.
    proc = subprocess.Popen([sys.executable, "-c", script])
    checkpoint = killed / "train" / "stage6" / "checkpoint.safetensors"
    deadline = time.time() + 240
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert checkpoint.exists(), "the run ended before a stage-6 checkpoint was written"
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists() and not (killed / "stages" / "stage6").exists()
    assert checkpoint.exists()

    result = run_schedule(profile, killed, progress=False)
    resumed_from = {log.stage: log.resumed_from_step for log in result.logs}
    assert resumed_from[6] and resumed_from[6] > 0
    a, b = weights(reference / "model"), weights(killed / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not checkpoint.exists()


def test_a_stale_stage_is_retrained_and_a_foreign_checkpoint_is_an_error(micro_expanded, tmp_path):
    """The caching rule: outputs computed from other inputs are recomputed and replaced, never reused."""
    schedule = [{"stage": 1, "steps": 2, "learning_rate": 1e-3}]
    run_dir = copy_inputs(micro_expanded, tmp_path / "run")
    run_schedule(load_profile("tiny", {**MICRO, "training.schedule": schedule}), run_dir, progress=False)
    saved = (run_dir / "stages" / "stage1" / "model.safetensors").read_bytes()
    other = load_profile("tiny", {**MICRO, "training.schedule": [{**schedule[0], "learning_rate": 5e-3}]})
    run_schedule(other, run_dir, progress=False)
    replaced = (run_dir / "stages" / "stage1" / "model.safetensors").read_bytes()
    assert replaced != saved
    fresh = copy_inputs(micro_expanded, tmp_path / "fresh")
    run_schedule(other, fresh, progress=False)
    assert (fresh / "stages" / "stage1" / "model.safetensors").read_bytes() == replaced
    assert not list(run_dir.rglob(".*.tmp*")) and not list(run_dir.rglob(".*.old"))

    shutil.rmtree(run_dir / "stages")
    (run_dir / "train" / "stage1").mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir / "train" / "stage1" / "checkpoint.safetensors", key="someone-else", step=1,
                    trainable={}, optimizer={"state": {}, "param_groups": []}, log={}, rng={})
    with pytest.raises(TrainingError, match="belongs to another configuration"):
        run_schedule(other, run_dir, progress=False)
    assert not (run_dir / "stages").exists()


def test_unknown_stage_in_a_schedule():
    with pytest.raises(ProfileError, match="unknown stage 8"):
        load_profile("tiny", {"training.schedule": [{"stage": 8, "steps": 1, "learning_rate": 1e-3}]})
    from eeve_lib.pipeline.training import resolve_schedule

    with pytest.raises(TrainingError, match="Valid stages"):
        resolve_schedule(load_profile("tiny"), [1, 9])


def test_one_process_trains_in_float32_then_bfloat16_then_float32_again():
    """A notebook or test session may run a float32 profile and a bfloat16 one in turn; accelerate
    keeps one process-wide precision, which the stage loop must replace rather than trip over."""
    from eeve_lib.method.stage_loop import _accelerator

    cpu = torch.device("cpu")
    precisions = [_accelerator(dtype, cpu).mixed_precision
                  for dtype in (torch.float32, torch.bfloat16, torch.float32)]
    assert precisions == ["no", "bf16", "no"]


def test_a_process_packs_a_corpus_once_per_tokenizer(micro_profile, micro_expanded):
    import dataclasses

    from eeve_lib.pipeline import training
    from eeve_lib.pipeline.base import load_base_tokenizer
    from eeve_lib.pipeline.corpora import load_corpus
    from eeve_lib.pipeline.vocabulary import load_target_tokenizer

    korean, english = load_corpus(micro_profile, "korean"), load_corpus(micro_profile, "english")
    target = load_target_tokenizer(micro_profile, micro_expanded)
    t, base_size = micro_profile.training, len(load_base_tokenizer(micro_profile, micro_expanded))
    first = training._training_data(t, target, korean, english, base_size)
    assert training._training_data(t, target, korean, english, base_size) is first
    # a tokenizer loaded again from the same files is the same tokenizer
    assert training._training_data(t, load_target_tokenizer(micro_profile, micro_expanded), korean, english,
                                   base_size) is first
    # the base tokenizer, or a corpus read again (a new object), is packed anew, and packs the same
    base = training._training_data(t, load_base_tokenizer(micro_profile, micro_expanded), korean, english,
                                   base_size)
    assert base is not first and not torch.equal(base.windows[:1], first.windows[:1])
    reread = dataclasses.replace(korean, train=list(korean.train))
    again = training._training_data(t, target, reread, english, base_size)
    assert again is not first and torch.equal(again.windows, first.windows)
    assert torch.equal(again.weights, first.weights)
