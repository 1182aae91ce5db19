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


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The import statements under ``if TYPE_CHECKING:`` (annotations only: never run)."""
    return {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
            and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
            for n in ast.walk(block)}


def imported_modules(path: Path, lib: Path = LIB, at_runtime: bool = False) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved), at any depth;
    ``at_runtime``: without the imports under ``if TYPE_CHECKING:``."""
    package = ".".join(path.relative_to(lib.parent).parent.parts)
    out = set()
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree) if at_runtime else set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
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
            if isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "dataclasses":
                continue  # dataclasses.replace copies an object; it touches no file
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


def module_name(path: Path, lib: Path = LIB) -> str:
    parts = path.relative_to(lib.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(lib: Path = LIB) -> dict[str, set[str]]:
    """Each module of the library and the library's modules it imports when it runs, at any depth (a
    name imported from a module counts as that module; a package counts as its ``__init__``; an
    annotation-only import under ``if TYPE_CHECKING:`` does not count)."""
    names = {module_name(p, lib): p for p in modules(lib)}
    graph = {}
    for name, path in names.items():
        edges = set()
        for imported in imported_modules(path, lib, at_runtime=True):
            while imported and imported not in names:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                edges.add(imported)
        graph[name] = edges
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circle_inside_the_library():
    """A circle (even through an import inside a function) means two modules cannot be read, changed or
    tested apart: what both need belongs in a third module below them."""
    circles = import_circles(import_graph())
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_circle_check_sees_a_circle(tmp_path):
    lib = tmp_path / "eeve_lib"
    (lib / "method" / "families").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "method" / "__init__.py").write_text("")
    (lib / "method" / "families" / "__init__.py").write_text("from .byte import piece\n")
    (lib / "method" / "families" / "byte.py").write_text("def piece():\n    from ..candidates import rule\n")
    (lib / "method" / "candidates.py").write_text("from .families import piece\nrule = 1\n")
    (lib / "method" / "hangul.py").write_text("from .candidates import rule\n")
    # an annotation-only import back is no circle
    (lib / "method" / "uses_typed.py").write_text("from .typed import y\nfrom .hangul import x\n")
    (lib / "method" / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                             "    from .uses_typed import z\n")
    circles = import_circles(import_graph(lib))
    assert circles == [["eeve_lib.method.candidates", "eeve_lib.method.families", "eeve_lib.method.families.byte"]]


def test_the_training_loop_is_short_shown_in_chapter_04_and_the_only_one():
    """The paper's loop (freeze by stage, step, merge) is what chapter 04 shows, short enough to read
    aloud; the pipeline's engine and the benchmarks run through it, not through a copy."""
    import inspect
    import json

    from eeve_lib.method import stage_loop, training_loop

    shown = inspect.getsource(training_loop.train_stage_loop) + inspect.getsource(training_loop.train_step)
    assert len(shown.splitlines()) <= 50
    chapter = json.loads((LIB.parent / "book" / "04_seven_stages.ipynb").read_text())
    assert any("show_source(train_stage_loop" in "".join(c["source"]) for c in chapter["cells"])
    assert "train_stage_loop(" in inspect.getsource(stage_loop.train_stage)
    benchmark = (LIB.parent / "benchmarks" / "stage_training.py").read_text()
    assert "train_stage_loop(" in benchmark and "train_step(" not in benchmark
    # nobody else steps an optimizer (base_model.py pretrains the tiny base, which is not a stage)
    stepping = {p.name for p in modules(LIB) if ".step()" in p.read_text()}
    assert stepping == {"training_loop.py", "base_model.py"}, stepping


def test_method_functions_take_plain_values_not_profiles_or_the_environment():
    """The pipeline translates a profile (and the launch environment) into plain arguments: no
    method module reads ``os.environ`` or names a profile's settings class."""
    settings_classes = {"Profile", "TrainingSettings", "PretrainSettings", "BaseModelSettings", "VocabularySettings",
                        "EvaluationSettings", "AblationSettings"}
    offenders = []
    for path in modules(LIB / "method"):
        source = path.read_text()
        tree = ast.parse(source)
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
            n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        if "environ" in names or "getenv" in names or names & settings_classes:
            offenders.append(path.name)
        for f in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            if "settings" in [a.arg for a in f.args.args + f.args.kwonlyargs]:
                offenders.append(f"{path.name}:{f.name}")
    assert not offenders, offenders


def test_stage_behaviour_is_asked_of_a_stage_not_of_its_number():
    """Outside ``stages.py`` (the table) no code compares a stage or its number with a literal."""
    def names_a_stage(node) -> bool:
        return (isinstance(node, ast.Name) and node.id == "stage"
                or isinstance(node, ast.Attribute) and node.attr in ("number", "stage"))

    offenders = []
    for path in modules(LIB):
        if path.name == "stages.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and names_a_stage(node.left) and any(
                    isinstance(c, ast.Constant) and isinstance(c.value, int)
                    or isinstance(c, (ast.Tuple, ast.List, ast.Set))
                    and any(isinstance(e, ast.Constant) and isinstance(e.value, int) for e in c.elts)
                    for c in node.comparators):
                offenders.append(f"{path.relative_to(LIB)}:{node.lineno}")
    assert not offenders, offenders


def test_no_chapter_switches_on_a_tokenizer_family_by_name():
    """A chapter asks its family (``family.tokenize_word``, ...), never ``if family.name == ...``."""
    import json

    for chapter in sorted((LIB.parent / "book").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(chapter.read_text())["cells"]
                         if c["cell_type"] == "code")
        assert not re.search(r"family(_name)?(\.name)?\s*(==|!=|in)\s", code), chapter.name


def _says_why(lines: list[str], index: int) -> bool:
    """A comment on the import's line, or above the block of imports it belongs to."""
    if "#" in lines[index]:
        return True
    while index > 0 and lines[index - 1].strip().startswith(("from ", "import ")):
        index -= 1
    return lines[index - 1].strip().startswith("#")


def test_the_librarys_own_imports_sit_at_the_top_unless_a_comment_says_why():
    """An import of ``eeve_lib`` inside a function says why on its line or the line above (it loads
    torch, say); a module whose functions are commands may say it once, at the top."""
    lazy = []
    for path in modules(LIB):
        source = path.read_text()
        lines = source.splitlines()
        if "imports what it needs inside its function" in source:
            continue
        for function in ast.walk(ast.parse(source)):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                own = isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("eeve_lib"))
                if own and not _says_why(lines, node.lineno - 1):
                    lazy.append(f"{path.relative_to(LIB)}:{node.lineno}")
    assert not lazy, lazy
