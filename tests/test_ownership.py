"""Nothing a user owns is ever lost (issue 23): every command that writes is held to ``eeve run``'s rule.

Each command writes only into a folder it created, an empty one, or one carrying its own marker
(run, record, built book, stand-in model), and never adopts a folder by the names of what it holds;
a bad argument or a bad run is one line before any work; a record is swapped in whole and tells the
truth about the run it holds; outputs get the permissions of a plain write. Every test here is fast:
fake runs and fake builds, a stand-in a few kilobytes large.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from eeve_lib.cli import main
from eeve_lib.pipeline import atomic, rundir
from eeve_lib.pipeline.paths import run_paths
from eeve_lib.pipeline.profiles import load_profile


def one_line_error(capsys, code: int) -> str:
    """Exit status 2 and a single 'eeve: error:' line on stderr, no traceback; return it."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eeve: error: "), err
    return lines[0]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): what a refused command must leave as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------------------------
# Item 1 and the arguments of item 10: eeve prepare-full-dry


ENGLISH = ["The quick brown fox jumps over the lazy dog, and the dog sleeps on.",
           "To be, or not to be, that is the question: whether 'tis nobler in the mind.",
           "Of man's first disobedience, and the fruit of that forbidden tree."] * 40
SMALL_STANDIN = {"base_model.tokenizer_vocab_size": 400, "base_model.pad_vocab_to_multiple_of": 64,
                 "base_model.architecture.hidden_size": 16, "base_model.architecture.intermediate_size": 32,
                 "base_model.architecture.num_hidden_layers": 1, "base_model.architecture.num_attention_heads": 2,
                 "base_model.architecture.max_position_embeddings": 64}


@pytest.fixture
def small_standin(monkeypatch, tmp_path):
    """full-dry's stand-in at a few kilobytes (tiny shapes, a short English text), and the project
    root moved into ``tmp_path/project`` so that nothing here can touch the checkout."""
    from eeve_lib.pipeline import full_dry

    real = full_dry.load_profile

    def small(name, overrides=None):
        return real(name, {**SMALL_STANDIN, **(overrides or {})}) if name == "full-dry" else real(name, overrides)

    monkeypatch.setattr(full_dry, "load_profile", small)
    monkeypatch.setattr(full_dry, "load_corpus", lambda profile, language: SimpleNamespace(train=ENGLISH))
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.md").write_text("uncommitted notes")
    monkeypatch.setattr(full_dry, "PROJECT_ROOT", project)
    return project


def test_prepare_full_dry_never_replaces_a_folder_of_the_users(small_standin, tmp_path, capsys):
    victim = tmp_path / "d"
    victim.mkdir()
    (victim / "thesis.txt").write_text("years of work")
    line = one_line_error(capsys, main(["prepare-full-dry", "--output", str(victim)]))
    assert tree(victim) == {"thesis.txt": b"years of work"}
    assert str(victim) in line and ".eeve-standin" in line and "--output" in line
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "a temporary left behind"


def test_prepare_full_dry_output_is_relative_to_where_it_runs_not_the_project(small_standin, tmp_path, monkeypatch,
                                                                              capsys):
    here = tmp_path / "here"
    here.mkdir()
    (here / "thesis.txt").write_text("years of work")
    monkeypatch.chdir(here)
    line = one_line_error(capsys, main(["prepare-full-dry", "--output", "."]))
    assert tree(here) == {"thesis.txt": b"years of work"}
    assert tree(small_standin) == {"notes.md": b"uncommitted notes"}, "--output . replaced the project"
    assert str(here) in line
    assert main(["prepare-full-dry", "--output", "standin"]) == 0
    assert (here / "standin" / "config.json").is_file()
    assert tree(small_standin) == {"notes.md": b"uncommitted notes"}


def test_prepare_full_dry_replaces_only_its_own_standin_and_weights_are_readable(small_standin, tmp_path):
    from eeve_lib.pipeline.full_dry import prepare_full_dry_base
    from eeve_lib.pipeline.paths import STANDIN_MARKER

    out = tmp_path / "standin"
    assert main(["prepare-full-dry", "--output", str(out)]) == 0
    assert (out / STANDIN_MARKER).is_file() and (out / "model.safetensors").is_file()
    mask = os.umask(0o022)
    os.umask(mask)
    assert mode(out / "model.safetensors") == 0o666 & ~mask, "weights must be as readable as every other output"
    first = (out / "config.json").read_bytes()
    assert prepare_full_dry_base(out, layers=2) == out  # an earlier stand-in (its marker) is replaced whole
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2 and first != (out / "config.json"
                                                                                                 ).read_bytes()


def test_prepare_full_dry_of_a_profile_without_a_standin_is_one_line(small_standin, tmp_path, capsys):
    line = one_line_error(capsys, main(["prepare-full-dry", "--profile", "tiny", "--output", str(tmp_path / "o")]))
    assert "'tiny'" in line and "full-dry" in line and "solar-dry" in line and "--profile" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("layers", ["0", "-1"])
def test_prepare_full_dry_with_no_layers_is_one_line(layers, small_standin, tmp_path, capsys):
    line = one_line_error(capsys, main(["prepare-full-dry", "--layers", layers, "--output", str(tmp_path / "o")]))
    assert "--layers" in line and layers in line
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# Items 2 and 4: eeve record tells the truth and is swapped in whole


CHAPTERS = ("00_base_model", "02_frequency_loop", "05_evaluation")


def fake_run(root: Path, profile_name: str = "tiny", overrides: dict | None = None, *, device: str | None = None,
             tag: str = "A", expansion: bool = True) -> Path:
    """A completed run as the runner leaves it (marker, report, metrics, summaries), with no model."""
    with rundir.claim(root, profile_name):
        pass
    effective = {**(overrides or {}), **({"device": device} if device else {})}
    profile = load_profile(profile_name, effective or None)
    paths = run_paths(profile, root)
    chapters = {c: {"status": "completed", "wall_seconds": 2.0, "peak_memory_mb": 10.0, "device": "cpu",
                    "commit": "0" * 40, "inputs": {"profile": profile.hash()}} for c in CHAPTERS}
    report = {"version": 1, "profile": profile.name, "run_dir": str(root), "git": {"commit": "0" * 40, "dirty": False},
              "hardware": {"cpu_count": 2}, "packages": {}, "data": [], "chapters": chapters,
              "parameters": {"profile": profile_name, "run_dir": str(root), "device": device, "seed": None,
                             "overrides": json.dumps(effective, sort_keys=True)}}
    atomic.write_json(paths.report, report)
    atomic.write_json(paths.metrics, {"run": tag})
    if expansion:
        atomic.write_json(paths.expansion_summary, {"run": tag})
    atomic.write_json(paths.base_marker, {"run": tag})
    atomic.write_json(paths.model_marker, {"run": tag, "logs": [{"stage": 1}]})
    return root


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "results"
    monkeypatch.setenv("EEVE_RESULTS_DIR", str(folder))
    return folder


def test_record_refuses_a_run_of_another_profile(tmp_path, results, capsys):
    run = fake_run(tmp_path / "run", "tiny")
    line = one_line_error(capsys, main(["record", "--profile", "small", "--run-dir", str(run)]))
    assert "'tiny'" in line and "'small'" in line and "eeve record --profile tiny" in line
    assert not results.exists() or not any(results.iterdir())


def test_record_refuses_a_run_with_other_settings(tmp_path, results, capsys):
    run = fake_run(tmp_path / "run", "tiny", {"embedding_init": "random"})  # a student's run
    line = one_line_error(capsys, main(["record", "--profile", "tiny", "--run-dir", str(run)]))
    assert "other settings" in line and "embedding_init" in line and "eeve run --profile tiny," in line
    assert not results.exists() or not any(results.iterdir())


def test_record_refuses_a_run_of_the_profile_before_its_settings_changed(tmp_path, results, capsys):
    run = fake_run(tmp_path / "run", "tiny")
    report = json.loads(run_paths("tiny", run).report.read_text())
    report["chapters"]["05_evaluation"]["inputs"]["profile"] = "0123456789abcdef"  # tiny.yaml edited since
    atomic.write_json(run_paths("tiny", run).report, report)
    line = one_line_error(capsys, main(["record", "--profile", "tiny", "--run-dir", str(run)]))
    assert "05_evaluation" in line and f"eeve run --profile tiny --run-dir {run} --resume" in line
    assert not results.exists() or not any(results.iterdir())


def test_record_of_the_profiles_own_run_is_recorded_with_its_command(tmp_path, results, capsys):
    from eeve_lib.pipeline.record import recorded_runs

    run = fake_run(tmp_path / "run", "tiny", device="cpu")  # another --device: still tiny's run
    assert main(["record", "--profile", "tiny", "--run-dir", str(run)]) == 0
    recorded = recorded_runs(results)
    assert list(recorded) == ["tiny"] and recorded["tiny"]["metrics"] == {"run": "A"}
    assert recorded["tiny"]["record"]["command"].startswith("eeve run --profile tiny --device cpu")
    assert sorted(p.name for p in results.iterdir()) == ["tiny"], "a temporary left behind"


def test_record_of_a_corrupt_report_is_one_line(tmp_path, results, capsys):
    run = fake_run(tmp_path / "run")
    run_paths("tiny", run).report.write_text('{"chapters": {"00_base_model": ')
    line = one_line_error(capsys, main(["record", "--profile", "tiny", "--run-dir", str(run)]))
    assert "report.json" in line and "--resume" in line


def test_a_record_that_fails_leaves_the_previous_record_whole(tmp_path, results, capsys):
    from eeve_lib.pipeline.record import recorded_runs

    first = fake_run(tmp_path / "a", tag="A")
    assert main(["record", "--profile", "tiny", "--run-dir", str(first), "--note", "run A"]) == 0
    before = tree(results)
    second = fake_run(tmp_path / "b", tag="B", expansion=False)  # missing tokenizer/expansion.json
    line = one_line_error(capsys, main(["record", "--profile", "tiny", "--run-dir", str(second)]))
    assert "not a completed run" in line and "expansion.json" in line
    assert tree(results) == before
    assert recorded_runs(results)["tiny"]["record"]["note"] == "run A"


def test_a_record_interrupted_halfway_leaves_the_previous_record_whole(tmp_path, results, monkeypatch):
    from eeve_lib.pipeline.record import record_run, recorded_runs

    record_run("tiny", fake_run(tmp_path / "a", tag="A"), note="run A")
    before = tree(results)
    real = atomic.write_json

    def disk_full_at_the_fourth_file(path, obj):
        if Path(path).name == "base.json":
            raise OSError(28, "No space left on device")
        return real(path, obj)

    monkeypatch.setattr(atomic, "write_json", disk_full_at_the_fourth_file)
    with pytest.raises(OSError):
        record_run("tiny", fake_run(tmp_path / "b", tag="B"), note="run B")
    assert tree(results) == before, "a record mixing two runs"
    assert sorted(p.name for p in results.iterdir()) == ["tiny"], "a temporary left behind"
    assert recorded_runs(results)["tiny"]["metrics"] == {"run": "A"}


def test_record_never_writes_into_a_folder_of_the_users(tmp_path, results, capsys):
    (results / "tiny").mkdir(parents=True)
    (results / "tiny" / "notes.md").write_text("mine")
    run = fake_run(tmp_path / "run")
    line = one_line_error(capsys, main(["record", "--profile", "tiny", "--run-dir", str(run)]))
    assert "record.json" in line
    assert tree(results) == {"tiny/notes.md": b"mine"}


HOLD_LOCK = textwrap.dedent("""
    import fcntl, os, sys, time
    f = open(sys.argv[1], "a+")
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0); f.truncate(); f.write(f"{os.getpid()}\\n"); f.flush()
    print("locked", flush=True)
    time.sleep(60)
""")


def test_record_of_a_run_that_another_run_holds_is_refused(tmp_path, results, capsys):
    run = fake_run(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run / rundir.LOCK)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_line_error(capsys, main(["record", "--profile", "tiny", "--run-dir", str(run)]))
        assert f"PID {holder.pid}" in line
        assert not results.exists() or not any(results.iterdir())
    finally:
        holder.kill()
        holder.wait()


def test_recorded_runs_lists_only_complete_records(tmp_path, results):
    from eeve_lib.pipeline.record import record_run, recorded_runs

    record_run("tiny", fake_run(tmp_path / "a"))
    complete = tree(results / "tiny")
    for name, change in ((".tiny.x1.tmp", None), ("small", "metrics.json"), ("smol", None)):
        folder = results / name
        folder.mkdir()
        for file, data in complete.items():
            (folder / file).write_bytes(data)
        if change == "metrics.json":
            (folder / change).write_text('{"truncated": ')  # cut off in transit
        # smol/ holds a copy of tiny's record: another profile's numbers under smol's name
    assert list(recorded_runs(results)) == ["tiny"]


# ---------------------------------------------------------------------------------------------
# Item 5: a folder is a run only by its marker, never by the names of what it holds


def users_folder(tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    (mine / "model").mkdir(parents=True)
    (mine / "eval").mkdir()
    (mine / "model" / "weights.bin").write_bytes(b"my model")
    (mine / "eval" / "scores.csv").write_text("my scores")
    return mine


def test_a_folder_with_a_runs_names_is_not_adopted_and_fresh_removes_nothing(tmp_path, capsys):
    mine = users_folder(tmp_path)
    before = tree(mine)
    line = one_line_error(capsys, main(["run", "--profile", "tiny", "--run-dir", str(mine), "--chapters", "01"]))
    assert rundir.MARKER in line and not (mine / rundir.MARKER).exists()
    line = one_line_error(capsys, main(["run", "--profile", "tiny", "--run-dir", str(mine), "--fresh"]))
    assert "--fresh" in line
    assert tree(mine) == before


def test_claim_adopts_an_empty_folder_only(tmp_path):
    mine = users_folder(tmp_path)
    with pytest.raises(rundir.RunDirError):
        with rundir.claim(mine, "tiny"):
            pass
    assert not rundir.is_run_dir(mine)
    (tmp_path / "empty").mkdir()
    with rundir.claim(tmp_path / "empty", "tiny"):
        pass
    assert rundir.is_run_dir(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# Item 6: eeve build --output DIR replaces DIR/html only if it built it


@pytest.fixture
def fake_build(monkeypatch):
    """build_book with the staging and Jupyter Book replaced by stand-ins that take a moment;
    ``outcome["ok"] = False`` makes the next build fail."""
    from eeve_lib.book import build

    outcome = {"ok": True, "book": "new book"}

    def stage(profile, run_dir=None, stage_dir=None):
        (stage_dir / "book").mkdir(parents=True, exist_ok=True)
        return stage_dir

    def jupyter_book(cmd, **kwargs):
        if "--path-output" in cmd and outcome["ok"]:
            html = Path(cmd[cmd.index("--path-output") + 1]) / "_build" / "html"
            html.mkdir(parents=True)
            (html / "index.html").write_text(outcome["book"])
        return subprocess.CompletedProcess(cmd, 0 if outcome["ok"] else 1, "", "a broken page")

    monkeypatch.setattr(build, "stage_sources", stage)
    monkeypatch.setattr(build.subprocess, "run", jupyter_book)
    return outcome


def test_build_never_deletes_an_html_folder_it_did_not_build(fake_build, tmp_path, capsys):
    out = tmp_path / "site"
    (out / "html").mkdir(parents=True)
    (out / "html" / "index.html").write_text("my own site")
    (out / "html" / "notes.txt").write_text("mine")
    before = tree(out)
    line = one_line_error(capsys, main(["build", "--output", str(out)]))
    assert str(out / "html") in line and ".eeve-build" in line and "--output" in line
    assert tree(out) == before


def test_build_replaces_its_own_book_only_once_the_new_one_is_built(fake_build, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["build", "--output", str(out)]) == 0
    assert (out / "html" / "index.html").read_text() == "new book"
    fake_build["ok"] = False
    assert main(["build", "--output", str(out)]) == 2  # Jupyter Book's output follows the error line
    assert (out / "html" / "index.html").read_text() == "new book", "a failed build removed the last good book"
    fake_build.update(ok=True, book="newer book")
    assert main(["build", "--output", str(out)]) == 0
    assert (out / "html" / "index.html").read_text() == "newer book"
    assert sorted(p.name for p in out.iterdir()) == ["html"], "staging or temporaries left behind"


def test_a_failed_build_into_a_new_folder_leaves_no_folder(fake_build, tmp_path):
    fake_build["ok"] = False
    assert main(["build", "--output", str(tmp_path / "site")]) == 2
    assert not (tmp_path / "site").exists()


# ---------------------------------------------------------------------------------------------
# Item 11: weights get the permissions of a plain write


def test_checkpoint_weights_get_the_permissions_of_a_plain_write(tmp_path):
    import torch

    from eeve_lib.pipeline.checkpoints import save_checkpoint

    mask = os.umask(0o022)
    os.umask(mask)
    path = save_checkpoint(tmp_path / "train" / "checkpoint.safetensors", key="k", step=1,
                           trainable={"w": torch.zeros(2)}, optimizer={"state": {}, "param_groups": []}, log={},
                           rng={})
    assert mode(path) == 0o666 & ~mask


def test_a_writer_that_makes_private_files_and_folders_gets_plain_permissions(tmp_path):
    import torch
    from safetensors.torch import save_file

    mask = os.umask(0o022)
    os.umask(mask)
    with atomic.file(tmp_path / "model.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))
    with atomic.directory(tmp_path / "model") as folder:
        private = Path(tempfile.mkdtemp(dir=folder))
        (private / "weights").write_bytes(b"w")
    assert mode(tmp_path / "model.safetensors") == 0o666 & ~mask
    assert mode(tmp_path / "model" / private.name) == 0o777 & ~mask


def test_outputs_honour_the_umask_of_the_moment_like_a_plain_write(tmp_path):
    mask = os.umask(0o027)  # a group-shared machine: set after eeve_lib was imported
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        written = atomic.write_json(tmp_path / "metrics.json", {"a": 1})
        with atomic.directory(tmp_path / "model") as folder:
            (folder / "weights").write_bytes(b"w")
    finally:
        os.umask(mask)
    assert mode(written) == mode(plain) == 0o640
    assert mode(tmp_path / "model") == 0o750 and mode(tmp_path / "model" / "weights") == 0o640
