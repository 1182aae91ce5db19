"""The chapters as JupyterLab shows them after a run: prose with the run's numbers, no MyST markup.

The rules of :func:`eeve_lib.book.lab.lab_markdown` are checked on each construct and on generated
values; then the micro run's copies (written by the book's build) are opened in JupyterLab's page in
headless Chromium, and the text of every rendered markdown cell is read back.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from eeve_lib.book.lab import citation_labels, glued_values, lab_copies, lab_markdown, lab_notebook
from eeve_lib.pipeline.runner import chapters_in_order
from tests.test_browser import chromium_paths  # noqa: F401 (a fixture: skips where Chromium is missing)

ROOT = Path(__file__).resolve().parent.parent
CITATIONS = citation_labels(ROOT / "book" / "references.bib")
# What MyST markup looks like when a renderer does not know it.
RAW_MARKUP = re.compile(r"\{(glue|cite|numref|ref|doc|admonition)[^}]*\}|^:::|:class:", re.M)


def _rendered_text(markdown: str) -> str:
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", MarkdownIt("commonmark").render(markdown)))


def test_each_construct_is_written_out():
    glued = {"ratio": "0.4567", "arm": "'baseline:no_expansion'", "count": "12345"}
    source = ("Ratio {glue:text}`ratio:.2f`, arm {glue:text}`arm`, {glue:text}`count:,d` tokens "
              "{cite}`kim2024eeve`; {cite:t}`kim2024eeve`; {cite:p}`kim2024eeve,microsoft2023phi2`.\n\n"
              ":::{admonition} Solutions\n:class: dropdown\n\n1. The answer.\n:::\n\n"
              ":::{admonition} Note\nPlain.\n:::\n")
    out = lab_markdown(source, glued, CITATIONS)
    assert "Ratio 0.46, arm baseline:no\\_expansion, 12,345 tokens (Kim et al., 2024); Kim et al. (2024); " \
           "(Kim et al., 2024; Microsoft, 2023)." in out
    assert "<details><summary>Solutions</summary>" in out and "1. The answer." in out
    assert "> **Note**" in out and "> Plain." in out
    assert not RAW_MARKUP.search(out)
    assert "baseline:no_expansion" in _rendered_text(out)


def test_a_value_the_chapter_never_glued_is_an_error_not_a_blank():
    with pytest.raises(KeyError, match="missing"):
        lab_markdown("{glue:text}`missing`", {}, CITATIONS)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60))
def test_a_glued_text_reads_as_itself_once_rendered(value):
    out = lab_markdown("Before {glue:text}`v` after.", {"v": repr(value)}, CITATIONS)
    shown = _rendered_text(out)
    # CommonMark folds runs of spaces only at line ends; compare without leading/trailing blanks
    assert " ".join(value.split()) in " ".join(shown.split())


def test_the_parameters_cell_holds_the_run_and_a_note_says_whose_numbers():
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Title"]},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [], "source": ["profile = 'tiny'\n"]},
        {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
         "source": ["# Parameters\n", "profile = \"tiny\"\n", "run_dir = \"/r\"\n"]},
        {"cell_type": "code", "metadata": {}, "source": ["glue(x=1)"], "outputs": [
            {"output_type": "display_data", "metadata": {"scrapbook": {"name": "x", "mime_prefix": "p/"}},
             "data": {"p/text/plain": "1.5"}}]},
        {"cell_type": "markdown", "metadata": {}, "source": ["x is {glue:text}`x:.1f`."]},
    ]}
    assert glued_values(nb) == {"x": "1.5"}
    out = lab_notebook(nb, "05_evaluation", "runs/tiny", "tiny", CITATIONS)
    sources = ["".join(c["source"]) for c in out["cells"]]
    assert sources[0] == "# Title" and "runs/tiny" in sources[1] and "book/05_evaluation.ipynb" in sources[1]
    assert sources[2] == 'profile = "tiny"\nrun_dir = "/r"\n'
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in out["cells"])
    assert sources[-1] == "x is 1.5."
    assert nb["cells"][1]["source"] == ["profile = 'tiny'\n"], "the executed notebook is not changed"


def test_every_chapter_of_the_micro_run_has_a_copy_without_markup(micro_run):
    lab = micro_run["run_dir"] / "lab"
    for chapter in chapters_in_order():
        nb = json.loads((lab / f"{chapter}.ipynb").read_text(encoding="utf-8"))
        prose = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        assert not RAW_MARKUP.search(prose), (chapter, RAW_MARKUP.search(prose))
        executed = json.loads((micro_run["run_dir"] / "executed" / f"{chapter}.ipynb").read_text())
        numbers = [v for v in glued_values(executed).values() if re.fullmatch(r"-?\d+\.\d{3,}", v)]
        if numbers:  # at least one glued number reaches the prose, formatted
            assert any(f"{float(v):.2f}" in prose or f"{float(v):.3f}" in prose for v in numbers), chapter


def test_a_copy_the_user_changed_is_kept(micro_run):
    lab, kept = lab_copies("tiny", micro_run["run_dir"])
    assert kept == []
    mine = lab / "03_embedding_init.ipynb"
    mine.write_text(mine.read_text() + " ", encoding="utf-8")
    before = mine.read_text()
    _, kept = lab_copies("tiny", micro_run["run_dir"])
    assert kept == ["03_embedding_init"] and mine.read_text() == before


@pytest.mark.browser
def test_chapters_read_in_the_jupyterlab_page_show_no_markup(micro_run, tmp_path, chromium_paths):
    """What a student reads: every rendered markdown cell of two chapters, in JupyterLab's page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_browser import CHROMIUM_FLAGS
    from tests.test_lab import START_S, running_lab

    options = webdriver.ChromeOptions()
    options.binary_location = chromium_paths["chromium"]
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium'}"]:
        options.add_argument(flag)
    home, pages = tmp_path / "jupyter", tmp_path / "pages"
    home.mkdir()
    pages.mkdir()
    for chapter in ("03_embedding_init", "05_evaluation"):
        shutil.copy(micro_run["run_dir"] / "lab" / f"{chapter}.ipynb", pages)
    # the chapter's source as JupyterLab would show it: the markup this test must be able to see
    shutil.copy(ROOT / "book" / "05_evaluation.ipynb", pages / "source_05_evaluation.ipynb")

    def rendered_prose(driver, lab, name: str) -> str:
        nb = json.loads((pages / f"{name}.ipynb").read_text())
        cells = sum(c["cell_type"] == "markdown" for c in nb["cells"])
        # ?reset: a fresh workspace, so that only this notebook is open
        driver.get(f"{lab.base}/lab/tree/{name}.ipynb?reset&token={lab.token}")
        rendered = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell .jp-MarkdownOutput"
        WebDriverWait(driver, START_S).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rendered)) >= cells,
                                             f"{name}: its {cells} markdown cells were not rendered")
        texts = driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", rendered)
        return "\n".join(texts)

    with running_lab(home, root=pages) as lab:
        driver = webdriver.Chrome(service=Service(chromium_paths["chromedriver"]), options=options)
        try:
            assert RAW_MARKUP.search(rendered_prose(driver, lab, "source_05_evaluation")), \
                "the source chapter's markup should show in JupyterLab: the check below would see nothing"
            for chapter in ("03_embedding_init", "05_evaluation"):
                prose = rendered_prose(driver, lab, chapter)
                assert not RAW_MARKUP.search(prose), (chapter, RAW_MARKUP.search(prose))
                assert "Kim et al., 2024" in prose or chapter != "05_evaluation"
                assert "bits per character" in prose
        finally:
            driver.quit()
