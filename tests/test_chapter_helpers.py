"""The chapters' helpers (showing library source, gluing numbers) and the habits of chapters 00-04.

Chapters 00-04 show the library functions of their step (``notebook.show_source``, read from
``eeve_lib`` at run time), glue the numbers their prose quotes (``notebook.glue``), assert their
claims, keep code lines within 88 characters, and read every number from outside the project from
``eeve_lib.book.external`` instead of typing it.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from eeve_lib.book import notebook
from eeve_lib.book.external import NUMBERS, Cited, number

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ["00_base_model", "01_intermediate_tokenizer", "02_frequency_loop", "03_embedding_init",
            "04_seven_stages"]


def _cells(chapter: str, kind: str) -> list[str]:
    cells = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == kind]


def test_source_markdown_is_the_library_source_in_a_python_block():
    from eeve_lib.method.candidates import extract_candidates, is_hangul

    text = notebook.source_markdown(is_hangul, extract_candidates)
    assert text.startswith("```python\n# eeve_lib.method.hangul.is_hangul\n") and text.endswith("\n```")
    for function in (is_hangul, extract_candidates):
        assert inspect.getsource(function).strip() in text


def test_source_markdown_fence_outlasts_backticks_in_the_source():
    def documented():
        """An example: ```python``` in a docstring."""

    text = notebook.source_markdown(documented)
    assert text.startswith("````python\n") and text.endswith("\n````")


def test_methods_and_classes_show_too():
    from eeve_lib.method.families.byte_level import ByteLevelBPE
    from eeve_lib.method.row_split import SplitEmbedding

    assert "def train_intermediate" in notebook.source_markdown(ByteLevelBPE.train_intermediate)
    assert "class SplitEmbedding" in notebook.source_markdown(SplitEmbedding)


def test_glue_hands_plain_python_values_to_myst_nb(monkeypatch):
    import numpy as np
    import torch

    glued = {}
    monkeypatch.setattr("myst_nb.glue", lambda name, value, display=True: glued.update({name: (value, display)}))
    assert notebook.glue(a=np.float64(1.5), b=torch.tensor(3), c="text", d=np.int64(7)) is None
    assert glued == {"a": (1.5, False), "b": (3, False), "c": ("text", False), "d": (7, False)}
    assert all(type(v) in (float, int, str) for v, _ in glued.values())


def test_outside_numbers_read_as_text_and_cite_their_source():
    assert number("new_tokens_solar").text() == "8,960"
    assert number("new_tokens_solar").cite() == "8,960 (EEVE-Korean-10.8B model card text)"
    assert number("training_tokens").text() == "about 2 billion"
    assert number("eeve_2_8b_vocab_rows").where.startswith("config.json")
    assert all(isinstance(c, Cited) and c.source and c.where for c in NUMBERS.values())
    with pytest.raises(KeyError, match="No outside number"):
        number("no such number")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_shows_source_glues_and_asserts(chapter):
    code, prose = "\n".join(_cells(chapter, "code")), "\n".join(_cells(chapter, "markdown"))
    assert "notebook.show_source(" in code, "the chapter shows no library source"
    glued = set(re.findall(r"\{glue:text\}`([A-Za-z0-9_]+)", prose))
    assert glued, "the prose quotes no computed number"
    for name in glued:
        assert re.search(rf"\b{name}\b", code), f"{name} is quoted but never glued"
    assert len(re.findall(r"^\s*assert ", code, flags=re.M)) >= 3, "too few checked claims"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_code_lines_fit_88_characters(chapter):
    long = [line for cell in _cells(chapter, "code") for line in cell.splitlines() if len(line) > 88]
    assert not long, long


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_types_no_number_from_outside(chapter):
    text = "\n".join(_cells(chapter, "code") + _cells(chapter, "markdown"))
    for key, cited in NUMBERS.items():
        if isinstance(cited.value, (int, float)) and cited.value >= 1000:
            for spelled in {f"{int(cited.value):,}", str(int(cited.value))}:
                assert not re.search(rf"(?<![\d,.]){re.escape(spelled)}(?![\d,])", text), (key, spelled)


def test_a_long_function_is_shown_as_its_core_with_the_whole_folded_below():
    import inspect

    from eeve_lib.method.embedding_init import extend_model
    from eeve_lib.method.target_tokenizer import build_target_tokenizer

    for function in (extend_model, build_target_tokenizer):
        text = notebook.source_markdown(function)
        shown, folded = text.split("<details>")
        assert "its core" in shown and f"def {function.__name__}(" in shown and "    ..." in shown
        assert len(shown.splitlines()) < len(inspect.getsource(function).splitlines())
        assert f"The whole of {function.__name__}" in folded and folded.rstrip().endswith("</details>")
        # the whole is the library's source, without the markers; the core is a part of it, verbatim
        whole = folded.split("```python\n", 1)[1].rsplit("\n```", 1)[0]
        source = inspect.getsource(function).rstrip().splitlines()
        assert whole.splitlines() == [line for line in source if line.strip() not in (notebook.CORE_START,
                                                                                     notebook.CORE_END)]
        assert notebook.CORE_START not in text and notebook.CORE_END not in text
        core = [line for line in shown.splitlines()[2:] if line.strip() not in ("...", "", "```")]
        assert all(line in source for line in core)
    short = notebook.source_markdown(notebook.plain)
    assert "<details>" not in short and "its core" not in short
