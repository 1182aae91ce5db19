"""Exercise re-runs never write into the book's run.

A chapter executed by papermill outside ``eeve run`` (the teachers' page: ``papermill
book/03_embedding_init.ipynb out.ipynb -p overrides '{"embedding_init": "random"}'``) with settings
that differ from its profile's sets itself up in ``runs/<profile>-student``, started from the
book's run by hard links; with the profile's own settings it reads the book's run. The chapter's
own first cells (its ``parameters`` cell and the cell that calls ``notebook.setup``) are executed
for real, in a kernel, by papermill, under a private ``EEVE_RUNS_DIR``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "book" / "03_embedding_init.ipynb"


def _chapter_head(tmp_path: Path) -> Path:
    """The chapter's parameters cell and its setup cell, then a cell that prints where it writes."""
    nb = json.loads(CHAPTER.read_text(encoding="utf-8"))
    cells = nb["cells"]
    params = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    setup = next(c for c in cells if c["cell_type"] == "code" and "notebook.setup(" in "".join(c["source"]))
    report = {"cell_type": "code", "id": "writes-to", "metadata": {}, "execution_count": None, "outputs": [],
              "source": "print('WRITES-TO', paths.root)"}
    head = dict(nb, cells=[params, setup, report])
    path = tmp_path / "head.ipynb"
    path.write_text(json.dumps(head), encoding="utf-8")
    return path


def _run(tmp_path: Path, monkeypatch, **parameters) -> str:
    import papermill

    monkeypatch.setenv("EEVE_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(_chapter_head(tmp_path)), str(out), parameters=parameters, kernel_name="python3",
                               progress_bar=False, cwd=str(ROOT / "book"))
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    text = "".join("".join(o["text"]) if isinstance(o.get("text"), list) else o.get("text", "") for o in outputs)
    return next(line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("WRITES-TO "))


@pytest.fixture
def book_run(tmp_path):
    from eeve_lib.pipeline import atomic
    from eeve_lib.pipeline.paths import RUN_MARKER

    book = tmp_path / "runs" / "tiny"
    (book / "base").mkdir(parents=True)
    atomic.write_json(book / RUN_MARKER, {"eeve_run_directory": 1, "profile": "tiny"})
    (book / "base" / "weights.bin").write_bytes(b"book weights")
    return book


def test_papermill_with_other_settings_writes_a_students_run(book_run, tmp_path, monkeypatch):
    before = sorted(p.relative_to(book_run).as_posix() for p in book_run.rglob("*"))
    root = _run(tmp_path, monkeypatch, profile="tiny", overrides='{"embedding_init": "random"}')
    student = tmp_path / "runs" / "tiny-student"
    assert Path(root) == student
    assert (student / "base" / "weights.bin").read_bytes() == b"book weights"
    assert os.stat(student / "base" / "weights.bin").st_ino == os.stat(book_run / "base" / "weights.bin").st_ino
    assert sorted(p.relative_to(book_run).as_posix() for p in book_run.rglob("*")) == before


def test_papermill_with_the_profiles_settings_reads_the_books_run(book_run, tmp_path, monkeypatch):
    root = _run(tmp_path, monkeypatch, profile="tiny")
    assert Path(root) == book_run
    assert not (tmp_path / "runs" / "tiny-student").exists()
