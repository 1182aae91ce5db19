"""Code that fits the page: chapter code lines at most 88 characters, library lines at most 120.

A code cell's line longer than 88 characters is clipped behind a scroll bar at 1400 px (the
browser test checks the pages themselves); the library, shown in the chapters, keeps 120. Each
offender is named as file, cell and line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTER_WIDTH = 88
LIBRARY_WIDTH = 120
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_code_cells_fit_the_page(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    long = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for n, line in enumerate(source.splitlines(), 1):
            if len(line) > CHAPTER_WIDTH:
                long.append(f"{notebook.name}:cell {i}:line {n}: {len(line)} characters")
    assert not long, f"code lines over {CHAPTER_WIDTH} characters:\n" + "\n".join(long)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_cell_has_a_unique_id(notebook):
    """nbformat 4.5 cells carry ids; one without makes nbformat print a warning on the console of
    every run that executes the chapter."""
    ids = [cell.get("id") for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), [i for i, x in enumerate(ids) if x is None]


PAGES = sorted((ROOT / "book").glob("*.md")) + NOTEBOOKS


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_markdown_code_blocks_fit_the_page(path):
    """Commands in the pages' fenced blocks (bash, python) obey the same width as code cells."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        texts = [(f"cell {i}:", "".join(c["source"])) for i, c in enumerate(nb["cells"])
                 if c["cell_type"] == "markdown"]
    else:
        texts = [("", path.read_text(encoding="utf-8"))]
    long = []
    for where, text in texts:
        fenced = False
        for n, line in enumerate(text.splitlines(), 1):
            fence = line.strip()
            if fence.startswith("```"):
                # an opening fence may name a language or a directive; a closing one is bare
                fenced = True if not fenced else fence.strip("`") != ""
                continue
            if fenced and len(line) > CHAPTER_WIDTH:
                long.append(f"{path.name}:{where}line {n}: {len(line)} characters")
    assert not long, f"fenced code lines over {CHAPTER_WIDTH} characters:\n" + "\n".join(long)


def test_library_lines_fit():
    long = []
    for path in sorted((ROOT / "eeve_lib").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if len(line) > LIBRARY_WIDTH:
                long.append(f"{path.relative_to(ROOT)}:{n}: {len(line)} characters")
    assert not long, f"library lines over {LIBRARY_WIDTH} characters:\n" + "\n".join(long)
