"""Hostile files and hostile moments (issue 23, items 8-10): an alias bomb among the profiles, a
corpus in UTF-16 or of one repeated line, SIGTERM, a full disk, a profile name that is a path, a
checksum that differs, and hints that must name the same run. Each ends in one clear line."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from eeve_lib.cli import main
from eeve_lib.errors import CorpusError, ProfileError
from eeve_lib.pipeline import atomic, manifest, profiles, rundir
from eeve_lib.pipeline.corpora import iter_documents, load_corpus
from eeve_lib.pipeline.manifest import ManifestEntry
from eeve_lib.pipeline.profiles import load_profile
from tests.conftest import ROOT
from tests.test_user_errors import CTRL_C, fake_chapter, one_line_error


# ---------------------------------------------------------------------------------------------
# Item 8: YAML read within a size and alias budget


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A few hundred bytes whose aliases expand to width**levels values ("billion laughs")."""
    lines = ["name: bomb", "a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"notes: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def _limit_memory():  # the subprocess may not take the machine's memory, whatever the code does
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))


def test_eeve_profiles_marks_an_alias_bomb_broken_and_lists_the_others(tmp_path):
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "bomb.yaml").write_text(alias_bomb())
    assert (folder / "bomb.yaml").stat().st_size < 600
    shutil.copy(ROOT / "profiles" / "tiny.yaml", folder / "tiny.yaml")
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "eeve_lib.cli", "profiles"], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, preexec_fn=_limit_memory,
                          env={**os.environ, "EEVE_PROFILE_DIR": str(folder), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.time() - started < 25
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    assert lines[0].startswith("bomb") and "[broken]" in lines[0] and "alias" in lines[0], lines[0]
    assert str(folder / "bomb.yaml") in lines[0]
    assert lines[1].startswith("tiny") and "[broken]" not in lines[1]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("text,says", [
    ("name: loop\nnotes: &x [1, *x]\n", "contains it"),
    ("name: deep\nnotes: " + "[" * 150 + "]" * 150 + "\n", "nested"),
    ("name: deeper\nnotes: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    ("name: big\n" + "# a comment line\n" * 70000, "bytes"),
], ids=["recursive", "deep", "deeper-than-the-parser", "too-big"])
def test_a_hostile_profile_file_is_one_line_naming_it(tmp_path, monkeypatch, text, says):
    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)
    name = text.split("\n", 1)[0].split(": ")[1]
    (tmp_path / f"{name}.yaml").write_text(text)
    with pytest.raises(ProfileError) as e:
        load_profile(name)
    message = str(e.value)
    assert "\n" not in message and str(tmp_path / f"{name}.yaml") in message and says in message, message


def test_the_budget_leaves_every_real_profile_alone():
    for name in profiles.available_profiles():
        path = profiles.PROFILE_DIR / f"{name}.yaml"
        assert profiles.read_yaml_file(path) == yaml.safe_load(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Item 9: corpora decoded strictly, with or without a checksum; duplicates are not "empty"


def local_entry(path, **kw) -> ManifestEntry:  # no sha256: nothing vouches for the bytes
    return ManifestEntry(name="t", language="en", kind="local", source="test", revision="1", license="CC0",
                         path=str(path), **kw)


ENGLISH = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(300))


@pytest.mark.parametrize("encoding,names", [("utf-16-le", "UTF-16LE"), ("utf-16-be", "UTF-16BE"),
                                            ("utf-16", "UTF-16")])
@pytest.mark.parametrize("on_decode_error", ["fail", "skip"])
def test_a_utf16_corpus_without_a_checksum_is_refused_naming_file_and_fix(tmp_path, encoding, names,
                                                                        on_decode_error):
    path = tmp_path / "english.txt"
    path.write_bytes(ENGLISH.encode(encoding))
    with pytest.raises(CorpusError) as e:
        list(iter_documents(local_entry(path), on_decode_error))
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "UTF-16" in message, message
    assert f"iconv -f {names} -t UTF-8" in message and "manifest-checksums" in message, message


def test_a_stray_nul_byte_is_a_decode_error(tmp_path):
    path = tmp_path / "english.txt"
    path.write_bytes(b"first line\nsecond\x00 line with a stray NUL\nthird line\n")
    with pytest.raises(CorpusError) as e:
        list(iter_documents(local_entry(path)))
    assert f"{path}, line 2" in str(e.value) and "on_decode_error: skip" in str(e.value)
    with pytest.warns(UserWarning, match="skipped 1 line"):
        assert list(iter_documents(local_entry(path), "skip")) == ["first line", "third line"]


def test_a_corpus_of_one_repeated_line_says_so_instead_of_empty(tmp_path, monkeypatch):
    (tmp_path / "same.txt").write_text("같은 문장이 반복됩니다.\n" * 500, encoding="utf-8")
    (tmp_path / "manifests").mkdir()
    entry = {"language": "ko", "kind": "local", "source": "t", "revision": "1", "license": "CC0",
             "path": str(tmp_path / "same.txt")}
    (tmp_path / "manifests" / "t.yaml").write_text(yaml.safe_dump({"name": "t", "entries": {"ko": entry}}))
    monkeypatch.setattr(manifest, "MANIFEST_DIR", tmp_path / "manifests")
    profile = load_profile("tiny", {"data.manifest": "t", "data.korean": ["ko"], "data.english": ["ko"]})
    with pytest.raises(CorpusError) as e:
        load_corpus(profile, "korean")
    message = str(e.value)
    assert "empty" not in message and "500 documents" in message and "1 different text" in message, message


# ---------------------------------------------------------------------------------------------
# Item 10: SIGTERM, a full disk, a profile name that is a path, checksums that differ, hints


def test_sigterm_is_ctrl_c_one_line_the_resume_command_report_interrupted_no_temporaries(tmp_path):
    book, run, flag = tmp_path / "book", tmp_path / "run", tmp_path / "kernel.pid"
    fake_chapter(book, "00_fake", "x = 1")
    fake_chapter(book, "01_fake", "import os, time",
                 f"open({str(flag)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)", "print('never')")
    script = CTRL_C.format(root=str(ROOT), book=str(book), run=str(run), overrides=json.dumps({"seed": 7}))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (flag.exists() and flag.read_text()) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert flag.exists(), proc.communicate()
        proc.send_signal(signal.SIGTERM)  # as timeout, a scheduler or CI: the process, not its group
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err
        lines = [l for l in err.replace("\r", "\n").splitlines() if l.strip() and ": cell " not in l]
        assert lines == [f"eeve: stopped by SIGTERM; interrupted in chapter 01_fake; resume with eeve run --profile "
                         f"tiny --run-dir {run} --overrides '{{\"seed\": 7}}' --resume"], err
        time.sleep(0.5)
        with pytest.raises(ProcessLookupError):
            os.kill(int(flag.read_text()), 0)  # the kernel is gone
        report = json.loads((run / "report.json").read_text())
        assert report["chapters"]["00_fake"]["status"] == "completed"
        assert report["chapters"]["01_fake"]["status"] == "interrupted"
        assert not list((run / "executed").glob(".*running*")), list((run / "executed").iterdir())
        assert (run / "executed" / "01_fake.failed.ipynb").is_file()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if flag.exists() and flag.read_text():  # the old code left the kernel behind: never leave it here
            try:
                os.kill(int(flag.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_disk_full_at_start_is_one_line_naming_the_folder_and_the_space(fake_book, tmp_path, monkeypatch,
                                                                          capsys):
    fake_chapter(fake_book, "00_fake", "x = 1")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    run = tmp_path / "run"
    line = one_line_error(capsys, main(["run", "--profile", "tiny", "--run-dir", str(run)]))
    assert str(run) in line and "full" in line and "1 MB free" in line and "needs at least 256 MB" in line, line
    assert "--run-dir" in line
    assert not run.exists()  # refused before anything was written


def test_a_disk_that_fills_during_a_run_is_one_line_and_names_the_resume_command(fake_book, tmp_path,
                                                                                 monkeypatch, capsys):
    fake_chapter(fake_book, "00_fake", "x = 1")
    run = tmp_path / "run"
    with rundir.claim(run, "tiny"):  # an earlier run's folder: the next writes are the report's
        pass

    def no_space(path, obj):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(atomic, "write_json", no_space)
    code = main(["run", "--profile", "tiny", "--run-dir", str(run), "--overrides", '{"seed": 3}'])
    err = capsys.readouterr().err.replace("\r", "\n")
    line = one_line_error("\n".join(l for l in err.splitlines() if ": cell " not in l), code)
    assert str(run) in line and "ran out of space" in line and "needs at least" in line, line
    assert f"resume with eeve run --profile tiny --run-dir {run} --overrides '{{\"seed\": 3}}' --resume" in line
    assert not (run / "report.json").exists() and not list(run.rglob(".*tmp*"))


def test_lab_refuses_a_profile_name_that_is_a_path(monkeypatch, capsys):
    from eeve_lib.book import lab

    def never(*args, **kwargs):
        raise AssertionError("JupyterLab started")

    monkeypatch.setattr(lab, "kernel_installed", lambda: Path("/kernel"))
    monkeypatch.setattr(os, "execv", never)
    monkeypatch.setattr(subprocess, "run", never)
    line = one_line_error(capsys, main(["lab", "--profile", "../../x", "--no-browser"]))
    assert "'../../x'" in line and "Valid profiles" in line


def test_manifest_checksums_fails_when_it_prints_differs(tmp_path, monkeypatch, capsys):
    (tmp_path / "a.txt").write_text("글\n", encoding="utf-8")
    entry = {"language": "ko", "kind": "local", "source": "t", "revision": "1", "license": "CC0",
             "path": str(tmp_path / "a.txt"), "sha256": "0" * 64}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"name": "t", "entries": {"a": entry}}))
    monkeypatch.setattr(manifest, "MANIFEST_DIR", tmp_path)
    code = main(["manifest-checksums", "t"])
    captured = capsys.readouterr()
    assert "DIFFERS" in captured.out
    line = one_line_error(captured.err, code)
    assert "a" in line and "sha256" in line
    entry["sha256"] = __import__("hashlib").sha256("글\n".encode()).hexdigest()
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"name": "t", "entries": {"a": entry}}))
    assert main(["manifest-checksums", "t"]) == 0 and "[ok]" in capsys.readouterr().out


def test_the_hint_for_missing_chapters_names_the_same_run(fake_book, tmp_path, capsys):
    fake_chapter(fake_book, "00_fake", "x = 1")
    fake_chapter(fake_book, "01_fake", "y = 1")
    run = tmp_path / "run"
    line = one_line_error(capsys, main(["run", "--profile", "tiny", "--run-dir", str(run), "--chapters", "01",
                                        "--overrides", '{"seed": 5}']))
    assert f"eeve run --profile tiny --run-dir {run} --overrides '{{\"seed\": 5}}' --chapters 00_fake" in line, line


def test_the_hint_for_a_corrupt_report_names_the_same_run(fake_book, tmp_path, capsys):
    fake_chapter(fake_book, "00_fake", "x = 1")
    run = tmp_path / "run"
    with rundir.claim(run, "tiny"):
        pass
    (run / "report.json").write_text("{not json")
    line = one_line_error(capsys, main(["run", "--profile", "tiny", "--run-dir", str(run),
                                        "--overrides", '{"seed": 5}']))
    assert f"eeve run --profile tiny --run-dir {run} --overrides '{{\"seed\": 5}}' --fresh" in line, line


def test_a_failed_chapter_names_the_command_that_resumes_the_same_run(fake_book, tmp_path):
    from eeve_lib.pipeline.runner import ChapterFailed, run_book

    fake_chapter(fake_book, "00_fake", "1 / 0")
    run = tmp_path / "run"
    with pytest.raises(ChapterFailed) as e:
        run_book("tiny", run_dir=run, overrides={"seed": 5}, progress=False)
    assert f"resume with eeve run --profile tiny --run-dir {run} --overrides '{{\"seed\": 5}}' --resume" \
        in str(e.value), str(e.value)
