"""The house rules of eeve_lib, checked on its source (see README, "Architecture").

* Method modules (``eeve_lib/method``) hold the paper's steps: each docstring begins with the
  step it holds ("Step 3: ..."), they import nothing from the pipeline or book layers, and they
  touch no files.
* Only the pipeline's ``paths`` module names the run folder's files and builds ``RunPaths``.
* Everything specific to a tokenizer family lives in ``eeve_lib/method/families``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "eeve_lib"
METHOD = LIB / "method"
FAMILIES = METHOD / "families"
STEP_LABEL = re.compile(r"^Steps? \d+(-\d+)?(( and|,) \d+(-\d+)?)*(,| \(|:)")
# Calls that read or write files, or load and save models: the pipeline's job.
DISK_CALLS = {"open", "save_pretrained", "from_pretrained", "write_text", "write_bytes", "read_text", "read_bytes",
              "mkdir", "unlink", "rmtree", "save", "load", "from_file", "to_json_file", "replace", "rename"}
# Names of files and folders inside a run: only pipeline/paths.py may spell them.
RUN_FILE_NAMES = ("eeve_base.json", "eeve_stage.json", "expansion.json", "candidates.json", "metrics.json",
                  "report.json", "checkpoint.pt", "checkpoint.safetensors", "intermediate_tokenizer.json",
                  "token_counts.npy", ".eeve-run", ".eeve-lock", ".eeve-build", ".eeve-standin", ".eeve-lab.json")
FAMILY_SPECIFIC = ("ByteLevel", "bytes_to_unicode", "GPT2_PATTERN", "to_byte_level", "Metaspace", "byte_fallback")


def modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def method_modules() -> list[Path]:
    return [p for p in modules(METHOD) if p.name != "__init__.py" or p.parent != METHOD]


def imported_modules(path: Path, lib: Path = LIB) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved), at any depth."""
    package = ".".join(path.relative_to(lib.parent).parent.parts)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{alias.name}" for alias in node.names)
    return out


def called_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def string_constants(path: Path) -> set[str]:
    """String literals of the code (docstrings and other bare strings, which only describe, excluded)."""
    tree = ast.parse(path.read_text())
    prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in prose}


def test_there_are_method_modules():
    assert len(method_modules()) >= 10


@pytest.mark.parametrize("path", method_modules(), ids=lambda p: str(p.relative_to(LIB)))
def test_method_module_docstring_begins_with_its_step(path):
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert STEP_LABEL.match(doc), f"{path.relative_to(LIB)}: docstring must begin with 'Step N: ...', not {doc[:60]!r}"


def layer_violations(path: Path, lib: Path = LIB) -> list[str]:
    return sorted(m for m in imported_modules(path, lib)
                  if m.startswith(("eeve_lib.pipeline", "eeve_lib.book", "eeve_lib.cli")))


@pytest.mark.parametrize("path", modules(METHOD), ids=lambda p: str(p.relative_to(LIB)))
def test_method_modules_import_neither_pipeline_nor_book(path):
    bad = layer_violations(path)
    assert not bad, f"{path.relative_to(LIB)} imports {bad}: method modules are pure (objects in, objects out)"


@pytest.mark.parametrize("path", modules(METHOD), ids=lambda p: str(p.relative_to(LIB)))
def test_method_modules_touch_no_files(path):
    bad = sorted(called_names(path) & DISK_CALLS)
    assert not bad, f"{path.relative_to(LIB)} calls {bad}: loading and saving belong to the pipeline"


@pytest.mark.parametrize("path", [p for p in modules(LIB) if p != LIB / "pipeline" / "paths.py"],
                         ids=lambda p: str(p.relative_to(LIB)))
def test_only_the_paths_module_names_run_files(path):
    named = sorted(s for s in string_constants(path) if any(s == f or s.endswith(("/" + f, "." + f))
                                                             for f in RUN_FILE_NAMES))
    assert not named, f"{path.relative_to(LIB)} spells run files {named}: ask RunPaths (pipeline/paths.py)"
    tree = ast.parse(path.read_text())
    builds = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "RunPaths"]
    assert not builds, f"{path.relative_to(LIB)} builds RunPaths itself (lines {builds}): use run_paths()"


@pytest.mark.parametrize("path", [p for p in modules(LIB) if FAMILIES not in p.parents],
                         ids=lambda p: str(p.relative_to(LIB)))
def test_nothing_family_specific_outside_the_families(path):
    source = path.read_text()
    found = [word for word in FAMILY_SPECIFIC if word in source]
    implementations = {p.stem for p in FAMILIES.glob("*.py") if p.name != "__init__.py"}
    imports = sorted(m for m in imported_modules(path) if m.startswith("eeve_lib.method.families.")
                     and m.split(".")[3] in implementations)
    assert not found and not imports, (f"{path.relative_to(LIB)} holds family-specific code ({found or imports}); "
                                       f"it belongs behind the seam in eeve_lib/method/families")


def test_the_layering_check_sees_a_violation(tmp_path):
    """Relative and absolute imports of the pipeline from a method module are both caught."""
    lib = tmp_path / "eeve_lib"
    (lib / "method" / "families").mkdir(parents=True)
    relative = lib / "method" / "probe.py"
    relative.write_text('"""Step 1: probe."""\nfrom ..pipeline import paths\n')
    nested = lib / "method" / "families" / "probe.py"
    nested.write_text('"""Step 1: probe."""\ndef f():\n    from ...book.plots import stage_matrix\n')
    absolute = lib / "method" / "probe2.py"
    absolute.write_text('"""Step 1: probe."""\nimport eeve_lib.pipeline.runner\n')
    clean = lib / "method" / "probe3.py"
    clean.write_text('"""Step 1: probe."""\nfrom ..errors import EeveError\nfrom .lm import pack_documents\n')
    assert layer_violations(relative, lib) == ["eeve_lib.pipeline", "eeve_lib.pipeline.paths"]
    assert layer_violations(nested, lib) == ["eeve_lib.book.plots", "eeve_lib.book.plots.stage_matrix"]
    assert layer_violations(absolute, lib) == ["eeve_lib.pipeline.runner"]
    assert layer_violations(clean, lib) == []
