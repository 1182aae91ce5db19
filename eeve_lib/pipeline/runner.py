"""The batch runner: execute the chapters headless with papermill, in ``_toc.yml`` order.

``eeve run --profile P`` injects ``profile``, ``run_dir``, ``device``, ``seed`` and ``overrides``
into each chapter's ``parameters`` cell, keeps every executed notebook and its log under
``runs/<P>/executed/``, stops at the first failure with a message naming the chapter, the cell and
the log, and writes ``runs/<P>/report.json`` (per chapter: status, wall time, peak memory, device;
for the run: git commit, package versions, data-manifest hashes). ``--resume`` skips chapters that
completed with unchanged inputs (library, chapter, profile and data hashes, and the keys of the step
outputs each saw: a model replaced since, by ``eeve train`` say, runs its chapters again). The console
shows each chapter's progress cell by cell and a failing cell's traceback (:mod:`eeve_lib.pipeline.execution`);
Ctrl-C (or SIGTERM, which ``eeve`` turns into the same) stops with one line naming the chapter and the
command that resumes. Shown in the introduction; the report becomes the book's "Reproducibility status" page.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import EeveError
# execution and manifest by module: their names are looked up when called (tests stand in for them)
from . import atomic, cache, execution, manifest, rundir
from .corpora import manifest_records
from .paths import MARKERS, STEP_FOLDERS, run_paths, settings_home
from .profiles import PROJECT_ROOT, load_profile, parse_overrides

BOOK_DIR = PROJECT_ROOT / "book"
TOC = PROJECT_ROOT / "_toc.yml"
REPORT_VERSION = 1
# Free space a run needs to start: its executed notebooks, their logs and the report (models come on top).
MIN_FREE_BYTES = 256 * 2**20
PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "accelerate", "papermill", "jupyter-book",
            "matplotlib", "numpy", "konlpy")


class ChapterFailed(EeveError):
    """A chapter raised, or its kernel died; the message names the chapter, cell and log."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a chapter; the message names it and the command that resumes the run."""


def _toc_files() -> list[str]:
    toc = yaml.safe_load(TOC.read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    return files


def chapters_in_order() -> list[str]:
    """Chapter names (notebook stems) in ``_toc.yml`` order."""
    names = []
    for f in _toc_files():
        p = PROJECT_ROOT / f
        if p.with_suffix(".ipynb").is_file():
            names.append(p.stem)
    return names


def select_chapters(requested: Sequence[str] | None) -> list[str]:
    """Resolve names or number prefixes ("03", "3", "03_embedding_init") to chapters, in order."""
    all_chapters = chapters_in_order()
    if not requested:
        return all_chapters
    chosen = set()
    for r in requested:
        matches = [c for c in all_chapters if c == r or c.split("_", 1)[0] == r.zfill(2)]
        if not matches:
            raise EeveError(f"Unknown chapter {r!r}. Chapters: {', '.join(all_chapters)}.")
        chosen.update(matches)
    return [c for c in all_chapters if c in chosen]


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether its tracked files differ from it, records aside: a
    benchmark or ``eeve record`` that rewrites ``results/`` does not change the code that the
    next one runs."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results").stdout.strip() != ""
    return {"commit": head.stdout.strip(), "dirty": dirty}


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _tree_hash(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        # EEVE_MANIFEST_DIR may lie outside the project: such a file is named by its full path
        h.update((p.relative_to(PROJECT_ROOT) if p.is_relative_to(PROJECT_ROOT) else p).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _chapter_source_hash(path: Path) -> str:
    """Hash of a notebook's cell sources only (not metadata), so saving it in Jupyter changes nothing."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    text = json.dumps([(c["cell_type"], "".join(c["source"])) for c in nb["cells"]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def input_hashes(profile, chapter: str, parameters: dict[str, Any]) -> dict[str, str]:
    """What a chapter's result depends on: library, chapter, profile (with overrides) and data."""
    return {
        "library": cache.code_hash((PROJECT_ROOT / "eeve_lib").rglob("*.py")),
        "chapter": _chapter_source_hash(BOOK_DIR / f"{chapter}.ipynb"),
        "profile": profile.hash(),
        "data": _tree_hash([manifest.MANIFEST_DIR / f"{profile.data.manifest}.yaml"]),
        "parameters": hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16],
    }


def step_keys(root: Path) -> dict[str, str | None]:
    """The key in every step marker of the run at ``root`` (base, tokenizers, stages, model, ablation
    arms), by the marker's path in the run: which outputs the chapters so far read or wrote."""
    names, keys = set(MARKERS.values()), {}
    for folder in STEP_FOLDERS:
        for where, dirs, files in os.walk(root / folder):  # no links followed
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # not a temporary's
            for name in sorted(names.intersection(files)):
                marker = Path(where) / name
                keys[marker.relative_to(root).as_posix()] = cache.saved_key(marker)
    return keys


def steps_unchanged(recorded: Any, root: Path) -> bool:
    """Whether every step output a chapter saw when it completed still holds the key it had then.

    A model replaced since (``eeve train``, a chapter run by hand) changes a key, so ``--resume``
    runs again every chapter that read or wrote it; outputs of later chapters do not count.
    """
    if not isinstance(recorded, dict):  # a report of an eeve that did not record them
        return False
    current = step_keys(root)
    return all(current.get(path) == key for path, key in recorded.items())


def load_report(path: Path, fresh_command: str = "eeve run --fresh") -> dict[str, Any]:
    """The report at ``path`` ({} if none); ``fresh_command`` is the hint that starts its run afresh."""
    if path.is_file():
        try:
            report = json.loads(path.read_text())
        except (ValueError, OSError) as e:
            raise EeveError(f"{path} cannot be read as a report ({e}); delete it, or start the run afresh "
                            f"({fresh_command}).") from None
        if not isinstance(report, dict):
            raise EeveError(f"{path} is not a report of eeve; delete it, or start the run afresh ({fresh_command}).")
        return report
    return {}


def check_commit(report: dict[str, Any], where: Path) -> str | None:
    """A warning when ``report`` (or any of its chapters) was written at another commit than the checkout's."""
    current = git_commit()["commit"]
    recorded = {(report.get("git") or {}).get("commit")} | {c.get("commit")
                                                            for c in report.get("chapters", {}).values()}
    recorded.discard(None)
    others = sorted(r for r in recorded if r != current)
    if others and current:
        message = (f"{where} was produced at commit {', '.join(r[:12] for r in others)}, but this checkout is at "
                   f"{current[:12]}: its results may not match the code you see.")
        warnings.warn(message)
        return message
    return None


class _PeakMemory:
    """Peak resident memory of this process's children (the kernel), polled in a thread."""

    def __init__(self, interval: float = 0.5):
        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)

    def _poll(self, interval: float) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for child in self._proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _describe_failure(exc: BaseException, chapter: str, log: Path, executed: Path | None,
                      resume_command: str = "eeve run --resume", disk: str = "") -> str:
    import papermill

    if isinstance(exc, papermill.PapermillExecutionError):
        # exec_count is the cell's execution count; cell_index is the position in the notebook
        what = f"in cell {exc.cell_index} (execution {exc.exec_count}): {exc.ename}: {exc.evalue}"
    elif type(exc).__name__ == "DeadKernelError":
        what = "because its kernel died (out of memory, or a crash in native code)"
    else:
        what = f"with {type(exc).__name__}: {exc}"
    notebook = f"  Partly executed notebook: {executed}\n" if executed is not None and executed.exists() else ""
    full = f"  {disk}\n" if disk else ""  # a full disk: which, what is free, what a run needs
    return (f"Chapter {chapter} failed {what}.\n  Log: {log}\n{notebook}{full}"
            f"  Chapters that completed before it are kept; fix the problem and resume with {resume_command}")


def _is_disk_full(error: BaseException | str) -> bool:
    """Whether ``error`` (an exception, or a chapter's error text) says the disk or the quota is full."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return any(os.strerror(n) in str(error) for n in (errno.ENOSPC, errno.EDQUOT))


def _free_bytes(folder: Path) -> int | None:
    """Free bytes on the file system that holds ``folder`` (or would hold it: its nearest existing parent);
    None where that says nothing: a read-only or pseudo file system (claiming the folder says why)."""
    for p in (folder, *folder.parents):
        if p.exists():
            try:
                usage = shutil.disk_usage(p)
            except OSError:
                return None
            return usage.free if usage.total and os.access(p, os.W_OK) else None
    return None


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n < 2**30 else f"{n / 2**30:,.1f} GB"


def _disk_full_message(root: Path, profile_name: str, free: int | None, ran_out: bool = False) -> str:
    """One line: the disk holding ``root`` is full (or ``ran_out`` of space while writing), what is
    free, and the space a run needs."""
    needed = f"at least {_mb(MIN_FREE_BYTES)} to start (notebooks, logs and the report)"
    book = run_paths(profile_name)
    if book.report.is_file() and book.root.resolve() != root.resolve():
        # walks the whole run: only here, on the way out
        needed += f", and the models on top: the whole run {book.root} takes {_mb(rundir.disk_usage(book.root))}"
    else:
        needed += ", and the models on top"
    have = f"{_mb(free)} free" if free is not None else "no free space"
    full = f"ran out of space (now {have})" if ran_out else f"is full ({have})"
    return (f"The disk holding {root} {full}; a run of profile {profile_name} needs {needed}. "
            f"Free space there, or choose a folder on another disk with --run-dir.")


def _cell_traceback(exc: BaseException) -> str | None:
    """The failing cell's traceback, without terminal colours, for the console."""
    lines = getattr(exc, "traceback", None)
    if not isinstance(lines, list) or not lines:
        return None
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", "\n".join(map(str, lines)))


def _resume_command(profile_name: str, run_dir, device: str | None, seed: int | None,
                    overrides: dict[str, Any], tail: Sequence[str] = ("--resume",)) -> str:
    """The ``eeve run`` command for the same run (profile, folder, device, seed, overrides), then ``tail``."""
    words = ["eeve", "run", "--profile", profile_name]
    if run_dir:
        words += ["--run-dir", str(run_dir)]
    if device:
        words += ["--device", device]
    if seed is not None:
        words += ["--seed", str(seed)]
    if overrides:
        words += ["--overrides", json.dumps(overrides, sort_keys=True)]
    return " ".join(shlex.quote(w) for w in words + list(tail))


def settings_run_dir(profile_name: str, profile, run_dir=None, device: str | None = None, *,
                     progress: bool = True):
    """Where a command that writes runs ``profile`` (profile ``profile_name`` with overrides), by
    :func:`~.paths.settings_home`'s rule, announced when it is the student's run. ``eeve run`` and
    ``eeve train`` both go through it; a chapter opened by hand follows the same rule."""
    home = settings_home(profile, run_dir)
    if run_dir is None and home is not None and progress:
        print(f"[eeve] these settings differ from profile {profile_name}'s: the run goes to {home} "
              f"(give --run-dir to choose another folder)", flush=True)
    return home


def run_book(profile_name: str, chapters: Sequence[str] | None = None, *, resume: bool = False, run_dir=None,
             device: str | None = None, seed: int | None = None, overrides: dict[str, Any] | str | None = None,
             fresh: bool = False, progress: bool = True) -> dict[str, Any]:
    """Execute chapters with papermill and write ``report.json``; see the module docstring.

    Before any chapter runs: the profile and overrides are validated, every corpus the profile
    names is verified against its checksum, and the run directory is claimed (created or adopted,
    locked against a second run, emptied first with ``fresh``; see :mod:`eeve_lib.pipeline.rundir`).
    Ctrl-C kills the running chapter's kernel and raises :class:`RunInterrupted`.
    """
    user_overrides = parse_overrides(overrides)
    overrides = dict(user_overrides)
    if device:
        overrides["device"] = device
    if seed is not None:
        overrides["seed"] = seed
    profile = load_profile(profile_name, overrides)  # validates the profile name and overrides first
    selected = select_chapters(chapters)
    run_dir = settings_run_dir(profile_name, profile, run_dir, device, progress=progress)
    paths = run_paths(profile, run_dir)

    data = manifest_records(profile)  # every corpus verified before anything runs
    same_run = (profile_name, paths.root if run_dir else None, device, seed, user_overrides)
    resume_command = _resume_command(*same_run)
    free = _free_bytes(paths.root)
    if free is not None and free < MIN_FREE_BYTES:
        raise EeveError(_disk_full_message(paths.root, profile_name, free))
    try:
        with rundir.claim(paths.root, profile.name, fresh=fresh):
            return _run_chapters(profile, profile_name, selected, paths, data, resume=resume, run_dir=run_dir,
                                 device=device, seed=seed, overrides=overrides, progress=progress,
                                 resume_command=resume_command, same_run=same_run)
    except OSError as e:  # a disk that fills up during the run: one line, not a chain of tracebacks
        if not _is_disk_full(e):
            raise
        raise EeveError(f"{_disk_full_message(paths.root, profile_name, _free_bytes(paths.root), True)} Then "
                        f"resume with {resume_command}") from None
    except rundir.RunDirError as e:  # claiming the folder failed on a full disk
        if not _is_disk_full(str(e)):
            raise
        raise EeveError(_disk_full_message(paths.root, profile_name, _free_bytes(paths.root), True)) from None


def _run_chapters(profile, profile_name: str, selected: list[str], paths, data: list[dict[str, Any]], *,
                  resume: bool, run_dir, device: str | None, seed: int | None, overrides: dict[str, Any],
                  progress: bool, resume_command: str, same_run: tuple = ()) -> dict[str, Any]:
    """run_book's work, in a claimed run directory. Hints name the same run: ``same_run`` holds
    run_book's arguments for :func:`_resume_command`."""
    same_run = same_run or (profile_name, paths.root if run_dir else None, device, seed, {})
    report = load_report(paths.report, _resume_command(*same_run, tail=["--fresh"]))
    check_commit(report, paths.report)
    order = chapters_in_order()
    done = {c for c, r in (report.get("chapters") or {}).items() if r.get("status") == "completed"}
    first = order.index(selected[0])
    missing = [c for c in order[:first] if c not in done and c not in selected]
    if missing:
        raise EeveError(
            f"Chapter {selected[0]} needs the earlier chapters of profile {profile.name!r}, and "
            f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} not run in {paths.root}. Run them first "
            f"({_resume_command(*same_run, tail=['--chapters', *missing])}), or run without --chapters."
        )
    from ..runtime import describe_hardware  # here, not at the top: it loads torch

    # run_dir only when asked for: the default (runs/<profile>) then reads as such in the book.
    parameters = {"profile": profile_name, "run_dir": str(paths.root) if run_dir else None, "device": device,
                  "seed": seed, "overrides": json.dumps(overrides, sort_keys=True)}
    report.update({
        "version": REPORT_VERSION,
        "profile": profile.name,
        "run_dir": str(paths.root),
        "git": git_commit(),
        "packages": package_versions(),
        "hardware": describe_hardware(),
        "data": data,
        "parameters": parameters,
    })
    report.setdefault("chapters", {})
    paths.executed.mkdir(parents=True, exist_ok=True)
    for chapter in selected:
        hashes = input_hashes(profile, chapter, parameters)
        previous = report["chapters"].get(chapter, {})
        executed = paths.executed_notebook(chapter)
        log = paths.chapter_log(chapter)
        if resume and previous.get("status") == "completed" and previous.get("inputs") == hashes \
                and executed.is_file() and steps_unchanged(previous.get("steps"), paths.root):
            if progress:
                print(f"[eeve] {chapter}: unchanged, skipped (--resume)")
            continue
        if progress:
            print(f"[eeve] {chapter}: running at profile {profile.name} ...", flush=True)
        started = time.time()
        partial = executed.with_name(f".{chapter}.running.ipynb")
        failed_copy = executed.with_name(f"{chapter}.failed.ipynb")
        failed_copy.unlink(missing_ok=True)  # a previous failure's notebook is not this run's
        status, error = "completed", None
        with _PeakMemory() as memory, open(log, "w", encoding="utf-8") as log_file:
            try:
                execution.execute_chapter(BOOK_DIR / f"{chapter}.ipynb", partial, parameters, log_file=log_file,
                                          cwd=BOOK_DIR, description=chapter,
                                          progress_file=sys.stderr if progress else None)
            except BaseException as exc:  # noqa: BLE001 - reported, then re-raised as ChapterFailed
                status, error = ("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"), exc
        if status == "completed":
            os.replace(partial, executed)
        elif partial.exists():
            try:  # a notebook saved on a disk that filled up may be cut short: kept only if whole
                json.loads(partial.read_text(encoding="utf-8"))
                os.replace(partial, failed_copy)
            except (ValueError, OSError):
                partial.unlink(missing_ok=True)
        notebook = executed if status == "completed" else failed_copy
        record = {
            "status": status,
            "wall_seconds": round(time.time() - started, 1),
            "peak_memory_mb": round(memory.peak / 2**20, 1),
            "device": device or profile.device,
            "commit": report["git"]["commit"],
            "inputs": hashes,
            "log": str(log.relative_to(paths.root)),
            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if notebook.exists():  # the report names only files that exist
            record["executed"] = str(notebook.relative_to(paths.root))
        if status == "completed":  # the outputs it read and wrote, as it left them (see --resume)
            record["steps"] = step_keys(paths.root)
        if status == "interrupted":
            record["error"] = f"interrupted in chapter {chapter}; resume with {resume_command}"
        elif error is not None:
            disk = _disk_full_message(paths.root, profile_name, _free_bytes(paths.root), True) \
                if _is_disk_full(error) or _is_disk_full(getattr(error, "evalue", "")) else ""
            record["error"] = _describe_failure(error, chapter, log, failed_copy, resume_command, disk)
        report["chapters"][chapter] = record
        report["finished_at"] = record["finished_at"]
        atomic.write_json(paths.report, report)
        if status == "interrupted":
            raise RunInterrupted(record["error"]) from None
        if error is not None:
            trace = _cell_traceback(error)
            if progress and trace:
                print(f"[eeve] {chapter}: the failing cell's traceback:\n{trace}", file=sys.stderr, flush=True)
            raise ChapterFailed(record["error"]) from None
        if progress:
            print(f"[eeve] {chapter}: done in {record['wall_seconds']} s, peak memory {record['peak_memory_mb']} MB",
                  flush=True)
    return report
