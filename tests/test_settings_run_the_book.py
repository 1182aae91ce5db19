"""Every setting the book accepts runs its chapters to the end, or is refused before chapter 00 with
one line; and nothing that writes a run's model leaves results computed from another model behind.

* The README's student example (``eeve run --overrides '{"embedding_init": "random"}'``) runs every
  chapter: the claims that belong to the paper's initialisation are asserted only for it.
* A frequency loop stopped by ``vocabulary.max_iterations`` before it converged runs chapter 02,
  which says so instead of failing.
* A base that is a stand-in with random weights (solar-dry's, full-dry's) is marked as one; that such
  a base runs every chapter when training raises its Korean loss is tests/test_solar_dry.py's.
* A wrong name in ``ablations.inits``, ``ablations.schedules`` or ``base_model.tokenizer_family``
  is refused with one line naming the known values, before chapter 00.
* ``eeve train`` with other settings than the profile's writes to ``runs/<profile>-student`` as
  ``eeve run`` does, takes the run's lock, and a model it replaces makes ``eeve run --resume`` run
  again the chapters computed from the old one.

The chapters run at ``MICRO`` (tests/conftest.py), started from the ``micro_run`` fixture's run
(hard links) where a step's key allows reuse.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from eeve_lib.pipeline import rundir
from tests.conftest import MICRO, glued

# Two short stages: enough to replace a run's stages and model in seconds.
SHORT = [{"stage": 1, "steps": 2, "learning_rate": 3e-3}, {"stage": 2, "steps": 1, "learning_rate": 3e-3}]


def statuses(run_dir: Path) -> dict[str, str]:
    return {c: r["status"] for c, r in json.loads((run_dir / "report.json").read_text())["chapters"].items()}


def started_from(book_run: Path, run_dir: Path) -> Path:
    """A run directory holding the step folders of ``book_run`` (hard links): steps whose key
    matches are reused, the others recomputed and replaced (never changed in place)."""
    rundir.branch(book_run, run_dir, "tiny")
    return run_dir


@pytest.mark.slow
def test_the_readme_student_example_runs_every_chapter(micro_run, tmp_path, capsys):
    from eeve_lib.cli import main
    from eeve_lib.pipeline.runner import chapters_in_order

    run_dir = started_from(micro_run["run_dir"], tmp_path / "student")
    # one seed: a new init retrains every arm, and the second seed adds time, not a code path
    rc = main(["run", "--profile", "tiny", "--run-dir", str(run_dir),
               "--overrides", json.dumps({**MICRO, "embedding_init": "random", "ablations.seeds": 1})])
    assert rc == 0, capsys.readouterr().err[-4000:]
    assert statuses(run_dir) == {c: "completed" for c in chapters_in_order()}
    chapter_03 = run_dir / "executed" / "03_embedding_init.ipynb"
    assert "random" in glued(chapter_03, "rule_checked")  # the prose says whose rule the cells check
    assert "checks nothing" in glued(chapter_03, "similarity_reading")


@pytest.mark.slow
def test_a_loop_stopped_by_max_iterations_runs_chapter_02_and_says_so(micro_run, tmp_path):
    from eeve_lib.pipeline.runner import run_book

    run_dir = started_from(micro_run["run_dir"], tmp_path / "early-stop")
    run_book("tiny", chapters=["00", "01", "02"], run_dir=run_dir,
             overrides={**MICRO, "vocabulary.max_iterations": 2}, progress=False)
    assert set(statuses(run_dir).values()) == {"completed"}
    summary = json.loads((run_dir / "tokenizer" / "expansion.json").read_text())
    assert not summary["converged"] and summary["iterations"] == 2, "MICRO's loop needs more than 2 iterations"
    assert "did not converge" in glued(run_dir / "executed" / "02_frequency_loop.ipynb", "stop_text")


def test_the_dry_profiles_bases_are_random_stand_ins():
    from eeve_lib.pipeline.profiles import available_profiles, load_profile

    stand_ins = {n for n in available_profiles() if load_profile(n).base_model.random_stand_in}
    assert {"full-dry", "solar-dry"} <= stand_ins
    assert not stand_ins & {"tiny", "tiny-llama", "small", "smol", "full", "full-solar"}


@pytest.mark.parametrize("key, value, known", [
    ("ablations.inits", ["subword_men"], "'mean_resizing'"),
    ("ablations.schedules", ["full_finetuning"], "'full_finetune'"),
    ("base_model.tokenizer_family", "byte-level", "'SentencePiece BPE'"),
    ("embedding_init", "subword-mean", "'subword_mean'"),
    ("ablations.extra_arms", ["lr:twice"], "a multiple must be a number"),
    ("ablations.extra_arms", ["dropout:0.1"], "baseline_lr:<a multiple>"),
    ("ablations.one_seed", ["init:subword_mean"], "its arms: seven_stages"),
])
def test_a_wrong_name_is_refused_before_chapter_00_in_one_line(key, value, known, tmp_path, capsys):
    from eeve_lib.cli import main

    run_dir = tmp_path / "run"
    rc = main(["run", "--profile", "tiny", "--run-dir", str(run_dir), "--chapters", "00",
               "--overrides", json.dumps({**MICRO, key: value})])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err[-3000:]
    assert key in err and known in err
    assert not run_dir.exists(), "refused after the run had started"


def _book_run(micro_run, tmp_path, monkeypatch) -> Path:
    """``runs/tiny`` of a private ``EEVE_RUNS_DIR``: the micro run's step folders."""
    monkeypatch.setenv("EEVE_RUNS_DIR", str(tmp_path / "runs"))
    return started_from(micro_run["run_dir"], tmp_path / "runs" / "tiny")


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and p.name != ".eeve-lock"}


@pytest.mark.slow
def test_train_with_other_settings_writes_the_students_run(micro_run, tmp_path, monkeypatch, capsys):
    from eeve_lib.cli import main

    book = _book_run(micro_run, tmp_path, monkeypatch)
    before = _files(book)
    rc = main(["train", "--profile", "tiny", "--overrides", json.dumps({**MICRO, "training.schedule": SHORT})])
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    student = tmp_path / "runs" / "tiny-student"
    assert str(student) in out and "trained stages 1, 2" in out
    assert json.loads((student / "model" / "eeve_stage.json").read_text())["stages"] == [1, 2]
    assert rundir.is_run_dir(student)
    assert _files(book) == before, "the book's run changed"


def test_train_is_refused_while_a_run_holds_the_lock(micro_run, tmp_path, monkeypatch, capsys):
    from eeve_lib.cli import main

    book = _book_run(micro_run, tmp_path, monkeypatch)
    before = _files(book)
    with rundir.claim(book, "tiny"):  # `eeve run` holds the run
        rc = main(["train", "--profile", "tiny", "--run-dir", str(book),
                   "--overrides", json.dumps({**MICRO, "training.schedule": SHORT})])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "in use by another eeve run" in err and len(err.splitlines()) == 1, err[-3000:]
    assert _files(book) == before


# What each chapter writes, for a stand-in of the runner's chapters: the micro run's folders.
WRITES = {"00_base_model": ["base"], "01_intermediate_tokenizer": ["intermediate"],
          "02_frequency_loop": ["tokenizer"], "04_seven_stages": ["stages", "model", "train"],
          "05_evaluation": ["ablations", "eval"]}


def test_a_model_replaced_by_train_runs_its_chapters_again_on_resume(micro_run, tmp_path, monkeypatch, capsys):
    """``eeve run``, then ``eeve train`` into the same run with another schedule, then ``eeve run
    --resume``: the chapters that read or wrote the old model run again, the earlier ones do not.
    The chapters' kernels are replaced by a stand-in that writes what each chapter writes."""
    import eeve_lib.pipeline.execution as execution
    from eeve_lib.cli import main
    from eeve_lib.pipeline.runner import run_book

    source, run_dir, ran = micro_run["run_dir"], tmp_path / "run", []

    def chapter(notebook, output, parameters, **kwargs):
        name = Path(notebook).stem
        ran.append(name)
        for folder in WRITES.get(name, []):
            if not (run_dir / folder).exists():
                shutil.copytree(source / folder, run_dir / folder, copy_function=os.link)
        Path(output).write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))

    monkeypatch.setattr(execution, "execute_chapter", chapter)
    run_book("tiny", run_dir=run_dir, overrides=MICRO, progress=False)
    assert set(statuses(run_dir).values()) == {"completed"}
    old_key = json.loads((run_dir / "model" / "eeve_stage.json").read_text())["key"]
    rc = main(["train", "--profile", "tiny", "--run-dir", str(run_dir),
               "--overrides", json.dumps({**MICRO, "training.schedule": SHORT})])
    assert rc == 0, capsys.readouterr().err[-3000:]
    assert json.loads((run_dir / "model" / "eeve_stage.json").read_text())["key"] != old_key
    ran.clear()
    run_book("tiny", run_dir=run_dir, overrides=MICRO, resume=True, progress=False)
    assert ran[:2] == ["04_seven_stages", "05_evaluation"], ran
    assert not {"00_base_model", "01_intermediate_tokenizer", "02_frequency_loop", "03_embedding_init"} & set(ran)
    ran.clear()
    run_book("tiny", run_dir=run_dir, overrides=MICRO, resume=True, progress=False)
    assert ran == [], "a second resume ran chapters again"
