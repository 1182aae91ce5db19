"""Numbers from outside the book live in one place, each with a source in the bibliography.

* every entry of ``eeve_lib.book.external.NUMBERS`` names a key of ``book/references.bib`` and says
  where in that source the number stands;
* no chapter, page or library module types one of those numbers: they read it from
  ``external.py`` (``number(key).text()`` in code, ``{{ key }}`` in Markdown);
* ``eeve build`` turns them into MyST substitutions, and hides papermill's injected parameters cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eeve_lib.book import external
from eeve_lib.book.external import NUMBERS, Cited, number
from eeve_lib.errors import EeveError

ROOT = Path(__file__).resolve().parent.parent
BIB = ROOT / "book" / "references.bib"
EXTERNAL = ROOT / "eeve_lib" / "book" / "external.py"

# The literal spellings of outside numbers that must not be typed anywhere but external.py.
LITERALS = ("58,944", "58944", "8,960", "8960", "40,000", "6,000", "50,295", "50295", "51,200", "51200",
            "40,960", "40960")
LITERAL = re.compile(r"(?<![\d,.])(" + "|".join(re.escape(x) for x in LITERALS) + r")(?!,?\d)")
# Files allowed to type them anyway: none.
ALLOWED: set[str] = set()


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(encoding="utf-8"), flags=re.M))


def test_the_bibliography_has_the_books_sources():
    keys = bib_keys()
    assert len(keys) >= 8
    for key in ("kim2024eeve", "yanolja2024eeve108b", "yanolja2024eeve28b", "microsoft2023phi2", "kim2023solar",
                "kim2022kobest", "park2015nsmc", "park2014konlpy", "park2016korean", "radford2019gpt2",
                "sennrich2016bpe", "gao2023harness", "touvron2023llama2"):
        assert key in keys, key


@pytest.mark.parametrize("key", sorted(NUMBERS))
def test_every_number_has_a_source_in_the_bibliography(key):
    cited = NUMBERS[key]
    assert isinstance(cited, Cited)
    assert cited.source in bib_keys(), f"{key}: source {cited.source!r} is not a key of {BIB.name}"
    assert cited.what and cited.where, key
    assert cited.text() in cited.cite() and cited.where in cited.cite()


def test_the_numbers_the_book_quotes():
    assert number("new_tokens_solar").text() == "8,960"
    assert number("new_tokens_solar").cite() == "8,960 (EEVE-Korean-10.8B model card text)"
    assert number("eeve_2_8b_vocab_rows").where == "config.json (vocab_size)"
    assert number("training_tokens").where == "abstract" and number("training_tokens").source == "kim2024eeve"
    assert number("stage_count").value == 7 and number("hook_stage").value == 5
    # The released models' sizes agree with the base models' and the added tokens.
    assert number("eeve_10_8b_vocab_rows").value == number("solar_vocab").value + number("new_tokens_solar").value
    from eeve_lib.book.resources import phi2_shape

    assert round(phi2_shape().total_params / 1e9, 2) == number("eeve_2_8b_params").value


def test_an_unknown_number_names_the_valid_keys():
    with pytest.raises(EeveError) as err:
        number("new_tokens")
    assert isinstance(err.value, KeyError)
    assert "new_tokens_solar" in str(err.value) and "min_frequency" in str(err.value)


def test_substitutions_cover_every_number():
    subs = external.substitutions()
    for key, cited in NUMBERS.items():
        assert subs[key] == cited.text() and subs[f"{key}_cite"] == cited.cite()
        assert re.fullmatch(r"[A-Za-z_]\w*", key), f"{key} is not a valid substitution name"


def _sources() -> list[tuple[Path, str, int | str, str]]:
    """(file, where, line or cell:line, text) of every chapter cell, page and library module line."""
    out = []
    for nb_path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] not in ("markdown", "code"):
                continue
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for n, line in enumerate(source.splitlines(), 1):
                out.append((nb_path, f"cell {i}, line {n}", line))
    pages = sorted((ROOT / "book").glob("*.md"))
    modules = sorted(p for p in (ROOT / "eeve_lib").rglob("*.py") if p != EXTERNAL)
    for path in pages + modules:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            out.append((path, f"line {n}", line))
    return out


def test_no_outside_number_is_typed_outside_external_py():
    """A typed copy of an outside number drifts from its source: read it from external.py."""
    offenders: dict[str, list[str]] = {}
    for path, where, line in _sources():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        for match in LITERAL.finditer(line):
            offenders.setdefault(rel, []).append(f"{where}: {match.group(1)}")
    assert not offenders, "outside numbers typed instead of read from eeve_lib/book/external.py:\n" + "\n".join(
        f"{file}: " + "; ".join(hits) for file, hits in sorted(offenders.items()))


def test_allowed_files_still_offend():
    """The allow-list only shrinks: a file that no longer types a number leaves it."""
    typed = {path.relative_to(ROOT).as_posix() for path, _, line in _sources() if LITERAL.search(line)}
    assert ALLOWED <= typed, f"remove {sorted(ALLOWED - typed)} from ALLOWED"


def test_the_staged_config_has_the_numbers_as_substitutions(tmp_path):
    import yaml

    from eeve_lib.book.build import staged_config

    config = yaml.safe_load(staged_config())
    subs = config["parse"]["myst_substitutions"]
    assert subs["new_tokens_solar"] == "8,960"
    assert "substitution" in config["parse"]["myst_enable_extensions"]
    assert config["bibtex_bibfiles"] == ["book/references.bib"]
    assert "sphinxcontrib.bibtex" in config["sphinx"]["config"]["extensions"]


def test_pages_use_only_known_substitutions():
    """A misspelt {{ key }} would render as nothing: every one a page uses exists (outside numbers, and
    what the build measures of its run)."""
    from eeve_lib.book.build import run_substitutions
    from eeve_lib.pipeline.runner import chapters_in_order

    report = {"profile": "tiny", "chapters": {name: {"wall_seconds": 1} for name in chapters_in_order()}}
    known = set(external.substitutions()) | set(run_substitutions(report, ROOT / "book", environment=ROOT / "book"))
    used = []
    for path in sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "book").glob("*.ipynb")):
        used += [(path.name, k) for k in re.findall(r"\{\{\s*(\w+)\s*\}\}", path.read_text(encoding="utf-8"))]
    unknown = [f"{name}: {{{{ {key} }}}}" for name, key in used if key not in known]
    assert not unknown, unknown


def test_papermills_injected_parameters_cell_is_hidden():
    from eeve_lib.book.build import hide_injected_parameters

    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "profile = 'tiny'"},
                    {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "profile = 'x'"},
                    {"cell_type": "code", "metadata": {}, "source": "1"}]}
    tags = [c["metadata"]["tags"] for c in hide_injected_parameters(nb)["cells"]]
    assert tags == [["parameters"], ["injected-parameters", "remove-cell"], []]


def test_run_substitutions_measure_the_run(tmp_path):
    from eeve_lib.book.build import run_substitutions

    (tmp_path / "a").write_bytes(b"x" * 5000)
    (tmp_path / "b").hardlink_to(tmp_path / "a")  # counted once
    report = {"profile": "tiny", "hardware": {"cpu_count": 2},
              "chapters": {"00_base_model": {"wall_seconds": 30}, "01_intermediate_tokenizer": {"wall_seconds": 150}}}
    subs = run_substitutions(report, tmp_path, environment=tmp_path)
    assert subs["run_total_time"] == "3.0 min" and subs["time_00_base_model"] == "30 s"
    assert subs["run_profile"] == "tiny" and subs["run_cpu_count"] == "2"
    from eeve_lib.pipeline.rundir import disk_usage

    assert disk_usage(tmp_path) == (tmp_path / "a").stat().st_blocks * 512  # the hard link adds nothing
    assert subs["run_size"].endswith(" KB")
