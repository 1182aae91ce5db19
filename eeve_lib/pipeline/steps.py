"""The pipeline's steps in one table, and their cache keys derived from it.

Each step names the method modules it runs, the profile sections it reads and the steps whose
outputs it reads (:data:`STEPS`). :func:`key` hashes exactly those (:func:`cache.step_key`), with
the upstream steps' keys found through the same table, plus what only the caller knows (a
schedule, an init, a model's own key) as ``extra``. A step added to the table is keyed correctly
with no other edit; a step names the method modules it calls, and every method module they
import comes along (:func:`code_modules`), so a helper moved into a module of its own is never
left out of a key.

Keys are remembered for the process while the base model's marker is the one they were computed
under (every key hangs from it), so a chapter that keys its stages nine times hashes them once.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import EeveError
from ..method.families import family_modules
from . import cache
from .paths import run_paths

if TYPE_CHECKING:  # the profile's type only
    from .profiles import Profile

LIB = Path(__file__).resolve().parent.parent
FAMILIES = "families"  # every tokenizer family's module (the seam's code is part of the steps using it)


@dataclass(frozen=True)
class Step:
    """One step of the pipeline: what its output depends on."""

    code: tuple[str, ...]  # modules of eeve_lib.method it runs (FAMILIES: every family's)
    sections: tuple[str, ...]  # profile sections (and top-level settings) it reads
    upstream: tuple[str, ...] = ()  # steps whose outputs it reads


STEPS: dict[str, Step] = {
    # Step 0 (ours): the base model, pretrained here or read from a file; its key also names the
    # corpora it was trained on (base.py's extra), and it is read back from its folder's marker.
    "base": Step(("base_model", "lm", FAMILIES), ("base_model", "seed")),
    # Steps 1-2: the intermediate tokenizer and its candidates.
    "candidates": Step(("intermediate_tokenizer", "candidates", FAMILIES), ("vocabulary", "data", "seed"),
                       ("base",)),
    # Steps 3-7: the target tokenizer from the frequency loop.
    "vocabulary": Step(("candidates", "target_tokenizer", "token_frequency", "frequency_loop", FAMILIES),
                       ("vocabulary", "data", "seed"), ("base", "candidates")),
    # Steps 9-10: the extended model after each stage (the schedule, init and stage index as extra).
    "stages": Step(("adapters", "embedding_init", "lm", "row_split", "sampling", "sharding", "stage_loop", "stages"),
                   ("seed",), ("vocabulary",)),
    # Step 11: a model's scores (its own key as extra).
    "scores": Step(("evaluation", "tasks"), ("evaluation", "data")),
}

# Steps whose key is read from their folder's marker rather than derived (their inputs include
# files the table cannot name, such as a downloaded base model).
READ_FROM_MARKER = {"base"}

_REMEMBERED: dict[str, str] = {}
COMPUTED: dict[str, int] = {}  # key computations per step in this process (what the tests count)


def code_modules(step: str) -> list:
    """The method modules of ``step``, imported: those the table names and every method module they
    import, at any depth (so a helper module a step's code moves into is never left out)."""
    names = []
    for name in STEPS[step].code:
        names += [m.__name__ for m in family_modules()] if name == FAMILIES else [f"eeve_lib.method.{name}"]
    seen: dict[str, ModuleType] = {}
    while names:
        name = names.pop()
        if name not in seen:
            seen[name] = importlib.import_module(name)
            names += _method_imports(seen[name])
    return sorted(seen.values(), key=lambda m: m.__name__)


def _method_imports(module: ModuleType) -> list[str]:
    """The modules of ``eeve_lib.method`` that ``module`` imports (at any depth of its code)."""
    found = []
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            origin = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            candidates = [origin] + [f"{origin}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found += [c for c in candidates if _is_method_module(c)]
    return found


def _is_method_module(name: str) -> bool:
    if not name.startswith("eeve_lib.method."):  # the package itself holds only the map of steps
        return False
    path = LIB.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _base_signature(profile: Profile, run_dir) -> tuple:
    marker = run_paths(profile, run_dir).base_marker
    try:
        st = marker.stat()
    except OSError:
        return ()
    return (str(marker), st.st_size, st.st_mtime_ns, st.st_ino)


def base_record(profile: Profile | str, run_dir=None) -> dict[str, Any]:
    """The marker record of a run's base model (``eeve_base.json``); one line naming chapter 00 if none."""
    paths = run_paths(profile, run_dir)
    record = cache.read_marker(paths.base_marker)
    if record is None:
        name = profile if isinstance(profile, str) else profile.name
        where = "" if paths.root == run_paths(name).root else f" --run-dir {paths.root}"
        raise EeveError(f"No base model in {paths.base}. Run chapter 00 first "
                        f"(eeve run --profile {name}{where} --chapters 00).")
    return record


def upstream_key(step: str, profile: Profile, run_dir=None) -> str:
    """The key of an upstream step's output: from its marker, or derived from the table."""
    if step in READ_FROM_MARKER:
        return base_record(profile, run_dir)["key"]
    return key(step, profile, run_dir)


def key(step: str, profile: Profile, run_dir=None, sections: tuple[str, ...] | None = None,
        extra: Mapping[str, Any] | None = None) -> str:
    """The key of ``step``'s output for ``profile`` in ``run_dir``: its code, its profile sections
    (``sections`` replaces the table's where one output reads more, e.g. the extended model's scores),
    its upstream steps' keys and ``extra``."""
    spec = STEPS[step]
    sections = spec.sections if sections is None else sections
    memo = json.dumps([step, profile.hash(), str(run_dir), list(sections), extra, _base_signature(profile, run_dir)],
                      sort_keys=True, default=str)
    if memo not in _REMEMBERED:
        COMPUTED[step] = COMPUTED.get(step, 0) + 1
        _REMEMBERED[memo] = cache.step_key(
            step, code=code_modules(step), profile=profile, sections=sections,
            upstream={name: upstream_key(name, profile, run_dir) for name in spec.upstream}, extra=extra)
    return _REMEMBERED[memo]


__all__ = ["Step", "STEPS", "key", "upstream_key", "base_record", "code_modules", "COMPUTED"]
