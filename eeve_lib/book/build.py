"""Build the HTML book from an executed run, without re-executing anything.

``eeve build --profile P`` stages the book's pages with the *executed* notebooks of
``runs/<P>/executed/`` in place of the stored (output-free) chapters, adds a line to each chapter
saying how and when it was executed, hides papermill's injected parameters cell (the author's
``parameters`` cell stays, once), generates the "Reproducibility status" page from
``report.json``, writes the outside numbers of :mod:`eeve_lib.book.external` into the staged
``_config.yml`` as MyST substitutions (``{{ new_tokens_solar }}`` in a page), and runs Jupyter
Book 1.x with warnings treated as errors. A run done elsewhere
(say on a GPU server) can be copied into ``runs/<P>/`` and built here. Shown in the introduction.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..errors import EeveError
from ..pipeline import atomic
from ..pipeline.paths import BUILD_MARKER, run_paths
from ..pipeline.profiles import PROJECT_ROOT, load_profile, parse_overrides
from ..pipeline.rundir import disk_usage, refuse_unless_ours, write_marker
from ..pipeline.runner import BOOK_DIR, TOC, check_commit, chapters_in_order, load_report
from .exercises import EXERCISES, reference_answers
from .external import substitutions
from .lab import lab_copies

CONFIG = PROJECT_ROOT / "_config.yml"
STATUS_PAGE = "status.md"
# papermill tags the cell it injects after the author's ``parameters`` cell with this tag.
INJECTED_TAG = "injected-parameters"


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _fmt_time(stamp: str) -> str:
    """"2026-01-02T03:04:05+00:00" as "2026-01-02 03:04:05+00:00": a table cell may wrap at the space."""
    return stamp.replace("T", " ", 1) if stamp else ""


def _fmt_revision(revision: str) -> str:
    """"owner/repo@<40 hex>" as `owner/repo@<12 hex>`: code, which a narrow table cell may break."""
    repo, at, commit = str(revision).partition("@")
    return f"`{repo}@{commit[:12]}`" if at and len(commit) == 40 else f"`{revision}`"


def status_page(report: dict[str, Any], commit_warning: str | None = None) -> str:
    """The Markdown of the "Reproducibility status" page, generated from ``report.json``."""
    chapters = report.get("chapters", {})
    total = sum(r.get("wall_seconds", 0) for r in chapters.values())
    hw = report.get("hardware", {})
    git = report.get("git", {})
    lines = [
        "# Reproducibility status",
        "",
        "Every output in this book was computed by the code shown, in the run summarised here. This page is "
        "generated from `report.json` of that run.",
        "",
        f"- **Profile:** `{report.get('profile')}`",
        f"- **Commit:** `{git.get('commit') or 'unknown'}`"
        + (" (with uncommitted changes)" if git.get("dirty") else ""),
        f"- **Hardware:** {hw.get('cuda') or 'CPU only'}; {hw.get('cpu_count')} CPU cores; {hw.get('platform')}",
        f"- **Finished:** {_fmt_time(report.get('finished_at', '')) or 'unknown'}",
        f"- **Total execution time:** {_fmt_seconds(total)}",
        "",
    ]
    if commit_warning:
        lines += [":::{warning}", commit_warning, ":::", ""]
    # Device and commit get a column only where chapters differ; otherwise one line says it for all.
    devices = {r.get("device") for r in chapters.values()}
    commits = {(r.get("commit") or "?")[:12] for r in chapters.values()}
    columns = ["Chapter", "Status", "Wall time", "Share", "Peak memory"]
    columns += (["Device"] if len(devices) > 1 else []) + (["Commit"] if len(commits) > 1 else []) + ["Finished"]
    lines += ["## Chapters", ""]
    if len(devices) == 1 or len(commits) == 1:
        same = ([f"on `{devices.pop()}`"] if len(devices) == 1 else []) + \
               ([f"at commit `{commits.pop()}`"] if len(commits) == 1 else [])
        lines += [f"Every chapter ran {' and '.join(same)}.", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    order = {name: k for k, name in enumerate(chapters_in_order())}  # the book's order, not the run's
    for name, r in sorted(chapters.items(), key=lambda item: order.get(item[0], len(order))):
        share = f"{100 * r.get('wall_seconds', 0) / total:.0f} %" if total else "-"
        cells = [name, str(r.get("status")), _fmt_seconds(r.get("wall_seconds", 0)), share,
                 f"{r.get('peak_memory_mb', 0):.0f} MB"]
        cells += [str(r.get("device"))] if "Device" in columns else []
        cells += [f"`{(r.get('commit') or '?')[:12]}`"] if "Commit" in columns else []
        cells += [_fmt_time(r.get("finished_at", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Package versions", "", "| Package | Version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted((report.get("packages") or {}).items())]
    lines += [f"| python | {hw.get('python')} |", "", "## Data", "",
              "| Corpus (language) | Source | Revision | License | Size | sha256, verified |",
              "|---|---|---|---|---|---|"]
    for d in report.get("data", []):
        sha = d.get("sha256_verified") or "hub (not local)"
        size = _fmt_bytes(d["size_bytes"]) if d.get("size_bytes") else "-"
        lines.append(f"| {d['name']} ({d['language']}) | {d['source']} | {_fmt_revision(d['revision'])} | "
                     f"{d['license']} | {size} | `{sha[:16]}…` |")
    lines.append("")
    return "\n".join(lines)


def _banner_cell(chapter: str, report: dict[str, Any]) -> dict[str, Any]:
    r = report["chapters"][chapter]
    text = (f"```{{admonition}} How this page was computed\n:class: tip\n"
            f"Executed headless at profile `{report.get('profile')}` on {r.get('device')} in "
            f"{_fmt_seconds(r.get('wall_seconds', 0))} (peak memory {r.get('peak_memory_mb', 0):.0f} MB), "
            f"finished {r.get('finished_at')}. See [Reproducibility status](status.md).\n```")
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def repository_url(config: Path = CONFIG) -> str:
    """Where a reader clones this book from, set in one place: ``repository.url`` in ``_config.yml``;
    where that is unset, the ``origin`` remote of this checkout; without one, the checkout itself
    (a path that ``git clone`` accepts on this machine)."""
    configured = (yaml.safe_load(config.read_text(encoding="utf-8")).get("repository") or {}).get("url")
    if configured:
        return str(configured)
    root = config.parent
    try:
        origin = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        origin = None
    if origin is not None and origin.returncode == 0 and origin.stdout.strip():
        return origin.stdout.strip()
    return str(root.resolve())


def run_substitutions(report: dict[str, Any], run_root: Path, environment: Path | None = None) -> dict[str, str]:
    """What the pages may say about the run they were built from, as MyST substitutions: the profile
    (``{{ run_profile }}``), the time of every chapter (``{{ time_03_embedding_init }}``) and of all
    (``{{ run_total_time }}``), the machine's cores, and the disk of the run folder and of the Python
    environment (``{{ run_size }}``, ``{{ environment_size }}``), measured as the book is built."""
    chapters = report.get("chapters", {})
    subs = {"run_profile": str(report.get("profile")),
            "run_total_time": _fmt_seconds(sum(r.get("wall_seconds", 0) for r in chapters.values())),
            "run_cpu_count": str((report.get("hardware") or {}).get("cpu_count")),
            "run_size": _fmt_bytes(disk_usage(run_root)),
            "environment_size": _fmt_bytes(disk_usage(environment or Path(sys.prefix))),
            "repository_url": repository_url()}
    subs.update({f"time_{name}": _fmt_seconds(r.get("wall_seconds", 0)) for name, r in chapters.items()})
    subs.update(answer_substitutions(report, run_root))
    return subs


def answer_substitutions(report: dict[str, Any], run_root: Path) -> dict[str, str]:
    """Every exercise's answer in the run the book is built from (``{{ answer_2_1 }}``), for the
    teachers' page; nothing where the run's profile cannot be loaded (then the page says so)."""
    try:
        overrides = parse_overrides((report.get("parameters") or {}).get("overrides") or "{}")
        profile = load_profile(str(report.get("profile")), overrides or None)
    except EeveError as e:
        return {f"answer_{i.replace('.', '_')}": f"not computed ({e})" for i in EXERCISES}
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the answers load models: no bars on the build's console
    transformers_logging.set_verbosity_error()
    answers = reference_answers(profile, run_paths(profile, run_root))
    return {f"answer_{i.replace('.', '_')}": text for i, text in answers.items()}


def staged_config(config: Path = CONFIG, extra: dict[str, str] | None = None) -> str:
    """``_config.yml`` with the outside numbers as MyST substitutions (``{{ key }}``, ``{{ key_cite }}``),
    and ``extra`` ones (:func:`run_substitutions`)."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    parse = data.setdefault("parse", {})
    parse["myst_substitutions"] = {**(parse.get("myst_substitutions") or {}), **substitutions(), **(extra or {})}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def hide_injected_parameters(nb: dict[str, Any]) -> dict[str, Any]:
    """Tag papermill's injected parameters cell ``remove-cell``: the page shows the author's only."""
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if INJECTED_TAG in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    return nb


def stage_sources(profile: str, run_dir=None, stage_dir: Path | None = None) -> Path:
    """Copy the book's pages and the run's executed notebooks into a staging folder; return it."""
    paths = run_paths(profile, run_dir)
    report = load_report(paths.report)
    if not report:
        raise EeveError(f"No run to build from: {paths.report} is missing. Run `eeve run --profile {profile}` first, "
                        f"or copy a run done elsewhere into {paths.root}.")
    warning = check_commit(report, paths.report)
    missing = [c for c in chapters_in_order() if (report.get("chapters", {}).get(c) or {}).get("status") != "completed"]
    if missing:
        raise EeveError(f"Chapters {', '.join(missing)} have not completed in {paths.root}; run "
                        f"`eeve run --profile {profile} --resume` first.")
    stage = stage_dir or (PROJECT_ROOT / "_build" / ".src")
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "book").mkdir(parents=True)
    (stage / CONFIG.name).write_text(staged_config(extra=run_substitutions(report, paths.root)), encoding="utf-8")
    shutil.copy(TOC, stage / TOC.name)
    for item in BOOK_DIR.iterdir():
        if item.suffix == ".ipynb" or item.name.startswith(".") or item.name == "__pycache__":
            continue
        (shutil.copytree if item.is_dir() else shutil.copy)(item, stage / "book" / item.name)
    for chapter in chapters_in_order():
        nb = json.loads(paths.executed_notebook(chapter).read_text(encoding="utf-8"))
        # After the title cell: how this page was computed.
        nb["cells"].insert(1, _banner_cell(chapter, report))
        hide_injected_parameters(nb)
        (stage / "book" / f"{chapter}.ipynb").write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    (stage / "book" / STATUS_PAGE).write_text(status_page(report, warning), encoding="utf-8")
    return stage


def build_book(profile: str = "tiny", run_dir=None, output: str | Path | None = None) -> Path:
    """Build ``<output>/html`` (default ``_build/html``) from the run's executed notebooks.

    ``<output>/html`` is replaced whole, and only when the new book is built, if it is new, empty or
    a book built here before (its ``.eeve-build`` marker); anything else is refused before any work
    (see :func:`eeve_lib.pipeline.rundir.refuse_unless_ours`). The staging and Jupyter Book's own
    files go to a temporary folder inside ``<output>``, removed afterwards."""
    output = Path(output) if output else PROJECT_ROOT / "_build"
    html = output / "html"
    if output.exists() and not output.is_dir():
        raise EeveError(f"{output} is a file, not a folder; give --output a folder (the book lands in <output>/html).")
    refuse_unless_ours(html, BUILD_MARKER, "the built book", "choose another --output")
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".eeve-build.", suffix=".tmp", dir=output))
    try:
        stage = stage_sources(profile, run_dir, work / "src")
        cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(stage), "--path-output",
               str(work / "jb"), "--warningiserror", "--keep-going", "--quiet"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        built = work / "jb" / "_build" / "html"
        if result.returncode != 0 or not (built / "index.html").is_file():
            raise EeveError(f"The Jupyter Book build failed (warnings count as errors):\n{result.stdout[-4000:]}\n"
                            f"{result.stderr[-4000:]}")
        write_marker(built, BUILD_MARKER, eeve_build=1, profile=profile)
        refuse_unless_ours(html, BUILD_MARKER, "the built book", "choose another --output")  # again, after minutes
        with atomic.directory(html) as tmp:
            os.replace(built, tmp)  # the finished book, renamed onto the empty temporary folder
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not any(output.iterdir()):
            output.rmdir()  # a build that failed leaves no folder behind
    # The same run's chapters for JupyterLab, their prose written out like these pages' (lab.py).
    lab_copies(profile, run_dir)
    return html / "index.html"
