"""The first cell of every chapter: load the profile the runner injected, quietly.

Where the chapter writes (``paths``):

one rule (:func:`eeve_lib.pipeline.paths.settings_home`) for ``eeve run`` and a chapter opened
by hand, so both land in the same folder:

* given ``run_dir`` (the runner passes the folder it holds when it is not the book's run): that
  directory;
* with the profile's own settings (a ``device`` aside): ``runs/<profile>``, the book's run, whose
  outputs every step reuses (nothing is recomputed while its inputs match);
* with other settings (``overrides`` or ``seed`` that change the profile):
  ``runs/<profile>-student``, a student's run, so that an exercise never overwrites the
  book's run. It starts as a copy of the book's run (hard links, so no extra disk), and each step
  recomputes only what the new settings change.

The chapter's ``(profile, paths)`` is remembered for the exercises' checks
(:mod:`eeve_lib.book.exercises`). Shown at the top of every chapter.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from ..pipeline import rundir
from ..pipeline.paths import RunPaths, run_paths, settings_home, student_run_paths
from ..pipeline.profiles import Profile, load_profile, parse_overrides
from . import plots

# The (profile, paths) of the last chapter set up in this kernel: the run the exercises check.
current: tuple[Profile, RunPaths] | None = None


def setup(profile: str = "tiny", run_dir: str | None = None, device: str | None = None, seed: int | None = None,
          overrides: str | dict[str, Any] | None = None) -> tuple[Profile, RunPaths]:
    """Validate the parameters, quieten library chatter, and return ``(profile, paths)``."""
    overrides = parse_overrides(overrides)
    if device:
        overrides["device"] = device
    if seed is not None:
        overrides["seed"] = seed
    prof = load_profile(profile, overrides)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    import matplotlib


    matplotlib.rcParams.update({"figure.dpi": FIGURE_DPI, "figure.figsize": (plots.WIDTH_IN, 3.4),
                                "axes.grid": True, "grid.alpha": 0.3, **plots.STYLE})
    _use_korean_font(matplotlib)
    _sharp_inline_figures()
    global current
    current = prof, chapter_paths(prof, run_dir)
    return current


#: The resolution the chapters draw at: a figure WIDTH_IN inches wide is shown WIDTH_IN x FIGURE_DPI
#: pixels wide on a desktop (its PNG has twice as many, for sharp screens).
FIGURE_DPI = 110


def chapter_paths(prof: Profile, run_dir: str | os.PathLike | None = None, *, announce: bool = True) -> RunPaths:
    """Where a chapter set up with ``prof`` reads and writes; see the module docstring."""
    home = settings_home(prof, run_dir)
    if run_dir or home is None:
        return run_paths(prof, home)
    return student_paths(prof, announce=announce,
                         why=f"these settings differ from profile {prof.name}'s: this chapter writes to")


def student_paths(prof: Profile, name: str | None = None, *, announce: bool = True,
                  why: str = "a run of your own:") -> RunPaths:
    """A student's run beside the book's: ``runs/<profile>-student`` (or ``runs/<profile>-<name>``).

    Created on first use from the book's run ``runs/<profile>`` (hard links: no extra disk); a step
    folder it lacks is taken from the book's run; what it has is its own. An exercise that trains
    another schedule passes these paths instead of the chapter's: the book's run stays as it was.
    """
    book = run_paths(prof)
    student = student_run_paths(prof, name)
    fresh = not rundir.is_run_dir(student.root)
    copied = rundir.branch(book.root, student.root, prof.name)
    if announce:
        start = f" (started from the book's run: {', '.join(copied)})" if fresh and copied else ""
        print(f"[eeve] {why} {student.root}{start}; the book's run {book.root} is left as it is.")
    return student


def _sharp_inline_figures() -> None:
    """Inline figures as PNG at twice their displayed size ("retina"): sharp on high-density
    screens and when the page scales them; the page shows them at their size, in pixels."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the kernel
        return
    if get_ipython() is None:  # a script or a test, not a kernel: nothing is shown inline
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("retina")


def _use_korean_font(matplotlib) -> None:
    """Prefer an installed font with Hangul glyphs, if there is one, for plot labels."""
    from matplotlib import font_manager

    for name in ("NanumGothic", "Noto Sans CJK KR", "Noto Sans KR", "UnDotum", "Baekmuk Gulim"):
        if any(f.name == name for f in font_manager.fontManager.ttflist):
            matplotlib.rcParams["font.family"] = [name, "DejaVu Sans"]
            return
    # Without one, Hangul in labels would render as boxes: plots label tokens by id instead.
    matplotlib.rcParams["axes.unicode_minus"] = False


#: Marks the core of a long library function: the lines between them are what a chapter shows,
#: after the signature and docstring; the whole function follows, folded.
CORE_START, CORE_END = "# >>> the core, shown in the book", "# <<< the core"


def _fenced(code: str) -> str:
    import re

    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}python\n{code}\n{fence}"


def _core(code: str) -> str | None:
    """Signature, docstring and the marked core of ``code`` (a function's source), or None when
    it marks no core. Skipped parts are shown as "..."."""
    lines = code.splitlines()
    marks = [i for i, line in enumerate(lines) if line.strip() in (CORE_START, CORE_END)]
    if len(marks) < 2 or len(marks) % 2:
        return None
    head_end = next(i for i, line in enumerate(lines) if line.rstrip().endswith(":")) + 1  # the signature
    first = lines[head_end].strip() if head_end < len(lines) else ""
    if first[:3] in ('"""', "'''"):  # and its docstring
        quote = first[:3]
        close = head_end if first.count(quote) >= 2 else next(
            k for k in range(head_end + 1, len(lines)) if quote in lines[k])
        head_end = close + 1
    indent = lines[marks[0]][:len(lines[marks[0]]) - len(lines[marks[0]].lstrip())]
    shown = lines[:head_end]
    for start, stop in zip(marks[::2], marks[1::2]):
        shown += [f"{indent}...", *lines[start + 1:stop]]
    return "\n".join(shown + [f"{indent}..."])


def source_markdown(*objects: Any) -> str:
    """The source of library functions or classes as Markdown Python blocks, read at run time.

    Each object's source comes from its module file through :func:`inspect.getsource`, headed by
    a comment naming where it lives, so the page shows the code that ran, never a copy. A long
    function that marks its core (:data:`CORE_START`, :data:`CORE_END`) is shown as its signature,
    docstring and core, with the whole function folded below it (an HTML ``<details>``, which the
    book and JupyterLab both render). Fences are longer than any run of backticks in the source.
    """
    import inspect
    import textwrap

    parts = []
    for obj in objects:
        code = textwrap.dedent(inspect.getsource(obj)).rstrip()
        name = f"{obj.__module__}.{obj.__qualname__}"
        core = _core(code)
        if core is None:
            parts.append(_fenced(f"# {name}\n{code}"))
            continue
        whole = "\n".join(line for line in code.splitlines() if line.strip() not in (CORE_START, CORE_END))
        parts.append(_fenced(f"# {name}: its core (the whole function is folded below)\n{core}")
                     + f"\n\n<details><summary>The whole of {obj.__qualname__} "
                       f"({len(whole.splitlines())} lines)</summary>\n\n{_fenced(whole)}\n\n</details>")
    return "\n\n".join(parts)


def show_source(*objects: Any):
    """Show the source of ``objects`` (functions, classes) as a Python block: in JupyterLab, in
    papermill's executed notebook and in the built book alike. See :func:`source_markdown`."""
    from IPython.display import Markdown, display

    display(Markdown(source_markdown(*objects)))


def plain(value: Any) -> Any:
    """``value`` as a plain Python number (numpy and torch scalars included), else unchanged."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    return value


def glue(**values: Any) -> None:
    """Glue each value under its name for the prose (``{glue:text}`name:.3f```), shown nowhere else.

    Values become plain Python numbers or strings first, so that the page can format them
    (numpy's ``np.float64(1.5)`` would reach the page as that text).
    """
    from myst_nb import glue as _glue

    for name, v in values.items():
        _glue(name, plain(v), display=False)
