"""What a careless or hostile user does to a run: every case ends in one clear line, removes nothing
that is not the run's, and runs nothing it should not."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from eeve_lib.pipeline import corpora, manifest, profiles, rundir, sources
from eeve_lib.cli import main
from eeve_lib.errors import CorpusError, EeveError, ProfileError, TrainingError
from eeve_lib.pipeline.profiles import load_profile, parse_overrides
from tests.conftest import MICRO, ROOT

DATA = Path(os.environ["EEVE_DATA_DIR"])


def one_line_error(capsys_or_out, code: int) -> str:
    """Assert exit status 2 and a single 'eeve: error:' line on stderr; return it."""
    err = capsys_or_out.readouterr().err if hasattr(capsys_or_out, "readouterr") else capsys_or_out
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eeve: error: "), err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Impossible settings: one line naming the key, the value and the allowed range, before any work

IMPOSSIBLE = [
    ("training.batch_size", -4, ">= 1"),
    ("base_model.pretrain.batch_size", -1, ">= 1"),
    ("training.schedule", [{"stage": 1, "steps": 0, "learning_rate": 1e-3}], ">= 1"),
    ("training.schedule", [], "at least 1"),
    ("base_model.architecture.hidden_size", "abc", ">= 1"),
    ("base_model.architecture.num_hidden_layers", 0, ">= 1"),
    ("training.warmup_fraction", 5, "<= 1"),
    ("base_model.pretrain.steps", 0, ">= 1"),
    ("training.schedule", [{"stage": 1, "learning_rate": -1.0, "steps": 2}], "> 0"),
    ("evaluation.stride", 0, ">= 1"),
    ("seed", -1, ">= 0"),
    ("base_model.korean_share", 0.7, "<= 0.5"),
    ("training.english_replay", 0.95, "<= 0.9"),
    ("ablations.seeds", 0, ">= 1"),
    ("ablations.workers", -1, ">= 0"),
]


@pytest.mark.parametrize("key,value,allowed", IMPOSSIBLE, ids=[f"{k}={v!r}" for k, v, _ in IMPOSSIBLE])
def test_an_impossible_setting_is_one_line_naming_key_value_and_range(key, value, allowed):
    with pytest.raises(ProfileError) as e:
        load_profile("tiny", {key: value})
    message = str(e.value)
    assert "\n" not in message
    assert key.split(".")[-1] in message and allowed in message
    shown = value if not isinstance(value, list) or not value else value[0]
    if isinstance(shown, dict):
        shown = next(v for k, v in shown.items() if k in ("steps", "learning_rate") and v in (0, -1.0))
    assert repr(shown) in message


@pytest.mark.parametrize("key,value,allowed", IMPOSSIBLE[:8], ids=[f"{k}={v!r}" for k, v, _ in IMPOSSIBLE[:8]])
def test_an_impossible_setting_stops_eeve_run_before_any_chapter(key, value, allowed, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["run", "--profile", "tiny", "--run-dir", str(run), "--chapters", "01",
                 "--overrides", json.dumps({key: value})])
    line = one_line_error(capsys, code)
    assert key.split(".")[-1] in line and allowed in line
    assert not run.exists()


# ---------------------------------------------------------------------------------------------
# Malformed input: one line and exit status 2, never a traceback


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    """A profile folder with tiny plus two broken profiles."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    shutil.copy(ROOT / "profiles" / "tiny.yaml", folder / "tiny.yaml")
    (folder / "broken.yaml").write_text("name: broken\ntraining:\n  batch_size: [4\n  seq_len: 8\n")
    (folder / "listed.yaml").write_text("- name: listed\n- seed: 1\n")
    monkeypatch.setattr(profiles, "PROFILE_DIR", folder)
    return folder


@pytest.mark.parametrize("args,expected", [
    (["run", "--overrides", "{training.batch_size: 4}"], "not valid JSON"),
    (["run", "--overrides", "[1, 2]"], "got list"),
    (["run", "--overrides", '"training.batch_size=4"'], "got str"),
    (["train", "--profile", "tiny", "--overrides", "{bad"], "not valid JSON"),
])
def test_malformed_overrides_are_one_line(args, expected, capsys):
    line = one_line_error(capsys, main(args))
    assert "overrides" in line and expected in line and "training.batch_size" in line


def test_a_profile_with_a_yaml_syntax_error_names_the_file(profile_dir, capsys):
    line = one_line_error(capsys, main(["run", "--profile", "broken"]))
    assert str(profile_dir / "broken.yaml") in line and "line 4" in line and "<unicode string>" not in line


def test_a_profile_that_is_a_yaml_list_is_one_line(profile_dir, capsys):
    line = one_line_error(capsys, main(["run", "--profile", "listed"]))
    assert str(profile_dir / "listed.yaml") in line and "not a list" in line


def test_eeve_profiles_lists_a_broken_profile_with_its_error(profile_dir, capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    by_name = {line.split()[0]: line for line in out}
    assert "[broken]" in by_name["broken"] and "not valid YAML" in by_name["broken"]
    assert "[broken]" in by_name["listed"]
    assert "[broken]" not in by_name["tiny"] and "Offline, CPU" in by_name["tiny"]


def test_one_parser_of_overrides():
    assert parse_overrides(None) == {} and parse_overrides("  ") == {} and parse_overrides({"a.b": 1}) == {"a.b": 1}
    assert parse_overrides('{"training.batch_size": 4}') == {"training.batch_size": 4}
    for bad in ("{", "[]", "3", '"x"', ["a"]):
        with pytest.raises(ProfileError):
            parse_overrides(bad)
    from eeve_lib.book.notebook import setup

    with pytest.raises(ProfileError, match="not valid JSON"):
        setup("tiny", overrides="{oops")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile("tiny", "{oops")


# ---------------------------------------------------------------------------------------------
# A profile's name is a plain name: it names a folder


@pytest.mark.parametrize("arm,expected", [
    ("bogus:x", "Unknown ablation arm 'bogus:x'"),
    ("baseline:nope", "Ablation arm 'baseline:nope': use baseline:no_expansion or baseline:equal_text."),
    ("replay:abc", "Ablation arm 'replay:abc': a share must be a number in [0, 0.9], e.g. replay:0.45."),
    ("replay:0.3", "Run chapter 00 first (eeve run --profile tiny --run-dir "),
])
def test_an_ablation_arm_that_cannot_run_is_one_line_naming_the_fix(arm, expected, tmp_path):
    from eeve_lib.pipeline.training import run_ablation

    with pytest.raises(EeveError) as e:
        run_ablation(load_profile("tiny"), arm, tmp_path / "run", progress=False)
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run" / "ablations").exists()


def test_fresh_with_a_traversing_name_removes_nothing(tmp_path, monkeypatch, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    monkeypatch.setenv("EEVE_RUNS_DIR", str(tmp_path / "runs"))
    code = main(["run", "--profile", "tiny", "--overrides", json.dumps({"name": "../victim"}), "--fresh",
                 "--chapters", "01"])
    line = one_line_error(capsys, code)
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert "name" in line and "'../victim'" in line and "letters, digits" in line


# ---------------------------------------------------------------------------------------------
# Run directories: --fresh removes nothing that is not one, and one run at a time holds one


def test_fresh_on_a_folder_that_is_not_a_run_directory_removes_nothing(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    code = main(["run", "--profile", "tiny", "--run-dir", str(victim), "--fresh", "--chapters", "01"])
    line = one_line_error(capsys, code)
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert str(victim) in line and rundir.MARKER in line and "--fresh" in line


def test_fresh_empties_a_run_directory_without_following_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    run = tmp_path / "run"
    run.mkdir()  # an empty folder is adopted
    with rundir.claim(run, "tiny"):
        pass
    assert rundir.is_run_dir(run)
    (run / "base").mkdir()
    (run / "base" / "model.safetensors").write_text("x")
    (run / "link").symlink_to(outside, target_is_directory=True)
    (run / "base" / "link").symlink_to(outside, target_is_directory=True)
    with rundir.claim(run, "tiny", fresh=True):
        assert sorted(p.name for p in run.iterdir()) == sorted([rundir.MARKER, rundir.LOCK])
    assert (outside / "keep.txt").read_text() == "keep"


def test_stale_temporaries_are_removed_without_following_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".precious.tmp").write_text("not the run's")
    run = tmp_path / "run"
    with rundir.claim(run, "tiny"):  # a run directory (a folder is adopted by its marker, not by its names)
        pass
    (run / "train").mkdir(parents=True)
    (run / "train" / ".checkpoint.safetensors.abc.tmp").write_text("half-written")
    (run / "train" / "elsewhere").symlink_to(outside, target_is_directory=True)
    with rundir.claim(run, "tiny"):
        assert not (run / "train" / ".checkpoint.safetensors.abc.tmp").exists()
    assert (outside / ".precious.tmp").exists()


def test_run_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    line = one_line_error(capsys, main(["run", "--run-dir", str(target), "--chapters", "01"]))
    assert str(target) in line and "is a file" in line
    assert target.read_text() == "mine"


def test_run_dir_in_a_read_only_place_is_one_line(tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through permissions: use a place no one can create folders in
        target = Path("/sys/eeve-run-test")
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        target = tmp_path / "ro" / "run"
    try:
        line = one_line_error(capsys, main(["run", "--run-dir", str(target), "--chapters", "01"]))
    finally:
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o755)
    assert str(target) in line and "writable" in line


HOLD_LOCK = textwrap.dedent("""
    import fcntl, os, sys, time
    f = open(sys.argv[1], "a+")
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0); f.truncate(); f.write(f"{os.getpid()}\\n"); f.flush()
    print("locked", flush=True)
    time.sleep(120)
""")


def test_a_second_run_on_a_directory_is_refused_with_the_holders_pid(tmp_path):
    from eeve_lib.pipeline.runner import run_book

    run = tmp_path / "run"
    with rundir.claim(run, "tiny"):  # the holder's run directory, with its marker
        pass
    (run / ".report.json.x1.tmp").write_text("the holder's file in flight")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run / rundir.LOCK)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(EeveError) as e:
            run_book("tiny", chapters=["01"], run_dir=run, overrides=MICRO, progress=False)
        assert f"PID {holder.pid}" in str(e.value) and "in use by another eeve run" in str(e.value)
        assert (run / ".report.json.x1.tmp").exists(), "removed a temporary while another run holds the lock"
    finally:
        holder.kill()
        holder.wait()
    # The holder died: its lock went with it, and the next run takes it over.
    with rundir.claim(run, "tiny"):
        assert (run / rundir.LOCK).read_text().strip() == str(os.getpid())
        assert not (run / ".report.json.x1.tmp").exists()
    with pytest.raises(EeveError, match="needs the earlier chapters"):
        run_book("tiny", chapters=["01"], run_dir=run, overrides=MICRO, progress=False)


# ---------------------------------------------------------------------------------------------
# Corpora are verified before the first chapter


def truncated_corpus_profile(tmp_path, monkeypatch) -> dict:
    source = DATA / "ko-en-news" / "korean-english-park.dev.ko"
    small = yaml.safe_load((ROOT / "data_manifests" / "small.yaml").read_text())["entries"]
    data = tmp_path / "data"
    data.mkdir()
    text = source.read_bytes()
    (data / "dev.ko").write_bytes(text[: len(text) // 2])  # truncated in transit
    shutil.copy(DATA / "ko-en-news" / "korean-english-park.dev.en", data / "dev.en")
    entries = {
        "ko": {**small["ko-en-news-test-ko"], "path": "dev.ko", "sha256": sources._file_sha256(source)},
        "en": {**small["ko-en-news-dev-en"], "path": "dev.en"},
    }
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "t.yaml").write_text(yaml.safe_dump({"name": "t", "entries": entries}))
    monkeypatch.setattr(manifest, "MANIFEST_DIR", tmp_path / "manifests")
    monkeypatch.setenv("EEVE_MANIFEST_DIR", str(tmp_path / "manifests"))
    monkeypatch.setenv("EEVE_DATA_DIR", str(data))
    return {**MICRO, "data.manifest": "t", "data.korean": ["ko"], "data.english": ["en"]}


def test_a_truncated_corpus_fails_before_chapter_00_starts(tmp_path, monkeypatch):
    from eeve_lib.pipeline.runner import run_book

    overrides = truncated_corpus_profile(tmp_path, monkeypatch)
    run = tmp_path / "run"
    with pytest.raises(CorpusError) as e:
        run_book("tiny", run_dir=run, overrides=overrides, progress=False)
    assert "Checksum mismatch for corpus 'ko'" in str(e.value)
    assert not (run / "executed").exists() and not (run / "report.json").exists()


def test_sha256_verified_is_written_only_for_a_digest_that_matched(tmp_path, monkeypatch):
    overrides = truncated_corpus_profile(tmp_path, monkeypatch)
    profile = load_profile("tiny", overrides)
    with pytest.raises(CorpusError, match="Checksum mismatch"):
        corpora.manifest_records(profile)
    manifest = yaml.safe_load((tmp_path / "manifests" / "t.yaml").read_text())
    del manifest["entries"]["ko"]["sha256"]  # a manifest that records no checksum verifies nothing
    (tmp_path / "manifests" / "t.yaml").write_text(yaml.safe_dump(manifest))
    records = {r["name"]: r for r in corpora.manifest_records(profile)}
    assert "sha256_verified" not in records["ko"] and records["ko"]["sha256_unverified"]
    assert records["en"]["sha256_verified"] == records["en"]["sha256"]


def test_a_manifest_folder_outside_the_project_is_hashed_not_a_traceback(tmp_path, monkeypatch):
    from eeve_lib.pipeline.runner import input_hashes

    profile = load_profile("tiny", truncated_corpus_profile(tmp_path, monkeypatch))
    hashes = input_hashes(profile, "00_base_model", {})
    assert len(hashes["data"]) == 16


# ---------------------------------------------------------------------------------------------
# A checkpoint is data, never code


class _Payload:
    """Unpickling this creates the file at ``path``: the proof that a pickle ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("filename", ["checkpoint.pt", "checkpoint.safetensors"])
def test_a_malicious_checkpoint_is_refused_without_running(micro_expanded, tmp_path, filename):
    from eeve_lib.pipeline.training import run_schedule

    run_dir = tmp_path / "run"
    for name in ("base", "tokenizer", "intermediate"):
        shutil.copytree(micro_expanded / name, run_dir / name)
    proof = tmp_path / "payload-ran"
    checkpoint = run_dir / "train" / "stage1" / filename
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(pickle.dumps(_Payload(proof), protocol=2))
    profile = load_profile("tiny", {**MICRO, "training.schedule": [{"stage": 1, "steps": 2, "learning_rate": 1e-3}]})
    with pytest.raises(TrainingError) as e:
        run_schedule(profile, run_dir, progress=False)
    message = str(e.value)
    assert not proof.exists(), "the pickle's payload ran"
    assert str(checkpoint) in message and "pickle" in message and "Delete it" in message
    assert "\n" not in message
    assert not (run_dir / "stages").exists() and not (run_dir / "model").exists()


# ---------------------------------------------------------------------------------------------
# The console of a run: progress per cell, no kernel noise, a quiet Ctrl-C


def fake_chapter(folder: Path, name: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "tiny"\nrun_dir = None\ndevice = None\nseed = None\noverrides = "{}"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{name}.ipynb")
    return folder / f"{name}.ipynb"


def test_progress_inside_a_chapter_and_no_kernel_noise(fake_book, tmp_path, capfd):
    from eeve_lib.pipeline.runner import run_book

    fake_chapter(fake_book, "00_fake", "x = 1", "print('to the log')", "y = x + 1")
    report = run_book("tiny", run_dir=tmp_path / "run", overrides=MICRO, progress=True)
    err = capfd.readouterr().err
    progress = err.replace("\r", "\n")
    for i in range(1, 6):  # parameters, papermill's injected parameters and three cells
        assert f"00_fake: cell {i}/5" in progress, err
    assert "without encryption" not in err and "KeyboardInterrupt" not in err and "Traceback" not in err
    assert report["chapters"]["00_fake"]["status"] == "completed"
    assert "to the log" in (tmp_path / "run" / "executed" / "00_fake.log").read_text()


def test_what_the_kernel_process_prints_outside_a_cell_goes_to_the_log(fake_book, tmp_path, capfd):
    """A kernel stopped on a loaded machine may print a zmq callback's traceback to its own stderr
    after the last cell; that belongs in the chapter's log, not on the console."""
    from eeve_lib.pipeline.runner import run_book

    at_exit = ("import atexit, os\n"
               "atexit.register(os.write, 2, b'kernel noise after the last cell\\n')")
    fake_chapter(fake_book, "00_fake", at_exit, "y = 1")
    report = run_book("tiny", run_dir=tmp_path / "run", overrides=MICRO, progress=False)
    assert report["chapters"]["00_fake"]["status"] == "completed"
    assert "kernel noise" not in capfd.readouterr().err
    assert "kernel noise after the last cell" in (tmp_path / "run" / "executed" / "00_fake.log").read_text()


def test_a_failing_chapter_shows_its_traceback_and_an_existing_notebook(fake_book, tmp_path, capfd):
    from eeve_lib.pipeline.runner import ChapterFailed, run_book

    fake_chapter(fake_book, "00_fake", "def explode():\n    return 1 / 0", "explode()", "never = 1")
    with pytest.raises(ChapterFailed) as e:
        run_book("tiny", run_dir=tmp_path / "run", overrides=MICRO, progress=True)
    err = capfd.readouterr().err
    assert "ZeroDivisionError" in err and "explode()" in err and "\x1b[" not in err
    record = json.loads((tmp_path / "run" / "report.json").read_text())["chapters"]["00_fake"]
    assert record["status"] == "failed" and (tmp_path / "run" / record["executed"]).is_file()
    assert str(tmp_path / "run" / record["executed"]) in str(e.value)


CTRL_C = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from eeve_lib.pipeline import runner
    from eeve_lib.cli import main
    runner.BOOK_DIR = Path({book!r})
    runner.chapters_in_order = lambda: ["00_fake", "01_fake"]
    sys.exit(main(["run", "--profile", "tiny", "--run-dir", {run!r}, "--overrides", {overrides!r}]))
""")


def test_ctrl_c_is_one_line_exit_130_and_the_report_names_only_files_that_exist(tmp_path):
    book, run, flag = tmp_path / "book", tmp_path / "run", tmp_path / "kernel.pid"
    fake_chapter(book, "00_fake", "x = 1")
    fake_chapter(book, "01_fake", "import os, time",
                 f"open({str(flag)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)", "print('never')")
    script = CTRL_C.format(root=str(ROOT), book=str(book), run=str(run), overrides=json.dumps({"seed": 7}))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (flag.exists() and flag.read_text()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert flag.exists(), proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [l for l in err.replace("\r", "\n").splitlines() if l.strip() and ": cell " not in l]
    assert lines == [f"eeve: interrupted in chapter 01_fake; resume with eeve run --profile tiny --run-dir {run} "
                     f"--overrides '{{\"seed\": 7}}' --resume"], err
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(int(flag.read_text()), 0)  # the kernel is gone
    report = json.loads((run / "report.json").read_text())
    assert report["chapters"]["00_fake"]["status"] == "completed"
    record = report["chapters"]["01_fake"]
    assert record["status"] == "interrupted" and "--resume" in record["error"]
    for chapter in report["chapters"].values():
        for key in ("executed", "log"):
            if key in chapter:
                assert (run / chapter[key]).is_file(), chapter[key]
    assert (run / "executed" / "01_fake.failed.ipynb").is_file()
