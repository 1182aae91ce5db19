"""Claiming a run directory: a marker that says it is one, and a lock that one run holds.

``eeve run`` writes only into directories it created or adopted: each carries a ``.eeve-run``
marker (JSON, written when the directory is created, or when an empty one is first used). A folder
is adopted only by its marker or by being empty, never by the names of what it holds: a folder of
the user's holding ``model/`` and ``eval/`` is not a run. ``--fresh`` empties a directory only if it
carries the marker, and never touches anything outside it. The same rule holds for every folder
that a command writes whole and may later replace (:func:`refuse_unless_ours`): the stand-in base
model, a recorded run, the built HTML, each with its own marker. One run at a time holds ``.eeve-lock`` (an exclusive
``flock`` on a file that holds the holder's PID); a second run on the same directory is refused
with that PID, and the lock of a process that died is released by the kernel, so the next run
takes it over. Leftover temporaries of killed runs are removed only while holding the lock.
``branch`` starts a run directory from another run's outputs (a student's run from the book's),
with hard links where the file system allows: every write under ``runs/`` replaces files instead of
changing them, so the new run can never alter the one it started from.
Shown in "Where outputs go" of the README.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Iterator

from ..errors import EeveError
from . import atomic
from .paths import RUN_LOCK as LOCK
from .paths import RUN_MARKER as MARKER
from .paths import STEP_FOLDERS


class RunDirError(EeveError):
    """A run directory (or another folder eeve writes) that is not eeve's, cannot be written, or is in
    use by another run."""


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and (".tmp" in name or name.endswith(".old"))


def is_run_dir(root: str | os.PathLike) -> bool:
    """Whether ``root`` carries the marker of an eeve run directory."""
    return (Path(root) / MARKER).is_file()


def ours(root: str | os.PathLike, marker: str) -> bool:
    """The one rule of ownership: eeve may write into (and replace) ``root`` if it is absent, an
    empty folder, or a folder carrying ``marker``; never a file, and never a folder holding anything
    else, whatever the names of what it holds."""
    root = Path(root)
    if not root.exists():
        return not root.is_symlink()  # a dangling link is not a folder of eeve's
    return root.is_dir() and ((root / marker).is_file() or not any(root.iterdir()))


def refuse_unless_ours(root: str | os.PathLike, marker: str, what: str, fix: str) -> None:
    """Raise :class:`RunDirError` (one line: the problem and the fix) unless :func:`ours` allows
    writing ``root``; checked before any work. ``what``: the kind of output (e.g. "a stand-in base
    model"); ``fix``: how to choose another place (e.g. "choose another --output")."""
    root = Path(root)
    if ours(root, marker):
        return
    if root.exists() and not root.is_dir() or root.is_symlink() and not root.exists():
        raise RunDirError(f"{root} is a file, not a folder; eeve writes {what} only into a new or empty folder "
                          f"or one it wrote before. Delete it yourself if you mean to, or {fix}.")
    raise RunDirError(f"Refusing to write {what} into {root}: it holds files and has no {marker} file, so eeve did "
                      f"not write it, and eeve replaces nothing of yours. Delete it yourself if you mean to, or "
                      f"{fix}.")


def write_marker(root: str | os.PathLike, marker: str, **about) -> Path:
    """Mark ``root`` as eeve's (JSON: what wrote it and when) so that a later command may replace it."""
    return atomic.write_json(Path(root) / marker, {
        **about, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})


def _unusable(root: Path, e: OSError) -> RunDirError:
    return RunDirError(f"Cannot use {root} as a run directory: {e.strerror or e}. Choose a writable location "
                       f"with --run-dir.")


def _ensure(root: Path, profile: str, fresh: bool) -> None:
    """Create or adopt ``root`` as a run directory; refuse anything else."""
    if root.exists() and not root.is_dir():
        raise RunDirError(f"{root} is a file, not a directory; give --run-dir a new or empty folder, or an earlier "
                          f"run directory.")
    try:
        root.mkdir(parents=True, exist_ok=True)
        if is_run_dir(root):
            return
        if fresh and any(root.iterdir()):
            raise RunDirError(
                f"Refusing --fresh: {root} has no {MARKER} file, so it is not a run directory that eeve created, "
                f"and --fresh deletes only those. Delete it yourself if you mean to, or choose another --run-dir.")
        if not ours(root, MARKER):  # a folder with files is never adopted by their names: only by its marker
            raise RunDirError(
                f"{root} is not an eeve run directory (no {MARKER} file) and holds other files; eeve writes only "
                f"into its own run directories. Choose a new or empty folder with --run-dir.")
        write_marker(root, MARKER, eeve_run_directory=1, profile=profile)
    except OSError as e:
        raise _unusable(root, e) from None


def _remove(path: Path) -> None:
    """Remove ``path``; a symbolic link is removed itself, never what it points to."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def empty(root: Path) -> int:
    """Remove everything in the run directory ``root`` except its marker and lock; return how many entries."""
    if not is_run_dir(root):  # checked again here: nothing without a marker is ever removed
        raise RunDirError(f"{root} has no {MARKER} file; not removing anything in it.")
    removed = 0
    for p in list(root.iterdir()):
        if p.name not in (MARKER, LOCK):
            _remove(p)
            removed += 1
    return removed


def remove_stale_temporaries(root: Path) -> int:
    """Remove ``.*.tmp*`` and ``.*.old`` leftovers of killed runs under ``root``, not following links."""
    count = 0
    for folder, dirs, files in os.walk(root):  # os.walk does not descend into linked folders
        for name in [d for d in dirs if _is_temporary(d)]:
            _remove(Path(folder) / name)
            dirs.remove(name)
            count += 1
        for name in files:
            if _is_temporary(name):
                (Path(folder) / name).unlink(missing_ok=True)
                count += 1
    return count


def _holder(lock_file) -> str:
    lock_file.seek(0)
    pid = lock_file.read().strip()
    return f"PID {pid}" if pid.isdigit() else "a process that has not written its PID yet"


def _fcntl():
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock, no lock
        return None
    return fcntl


def _lock_or_refuse(root: Path, lock_file) -> None:
    fcntl = _fcntl()
    if fcntl is not None:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(
                f"{root} is in use by another eeve run ({_holder(lock_file)}). Wait for it to finish or stop "
                f"it, or use another --run-dir.") from None


def _unlock(lock_file) -> None:
    fcntl = _fcntl()
    if fcntl is not None:
        fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextlib.contextmanager
def reading(root: str | os.PathLike) -> Iterator[Path]:
    """Hold the run ``root``'s lock while reading it (``eeve record``), writing nothing into it: refused
    while a run holds it. A folder without a lock file has never been run by eeve here: nothing to hold."""
    root = Path(root)
    try:
        lock_file = open(root / LOCK, encoding="utf-8")
    except OSError:
        lock_file = None
    if lock_file is None:
        yield root
        return
    with lock_file:
        _lock_or_refuse(root, lock_file)
        try:
            yield root
        finally:
            _unlock(lock_file)


@contextlib.contextmanager
def claim(root: str | os.PathLike, profile: str, *, fresh: bool = False) -> Iterator[Path]:
    """Hold ``root`` as this process's run directory for the block: create or adopt it, lock it,
    empty it first if ``fresh``, and remove stale temporaries. Raises :class:`RunDirError` if it is
    not (and cannot become) a run directory, cannot be written, or another run holds it."""
    root = Path(root)
    _ensure(root, profile, fresh)
    try:
        lock_file = open(root / LOCK, "a+", encoding="utf-8")
    except OSError as e:
        raise _unusable(root, e) from None
    with lock_file:
        _lock_or_refuse(root, lock_file)
        try:
            # The lock is ours (a dead holder's flock is gone with its process): record who holds it.
            lock_file.seek(0)
            lock_file.truncate()
            lock_file.write(f"{os.getpid()}\n")
            lock_file.flush()
            if fresh:
                empty(root)
            remove_stale_temporaries(root)
            yield root
        finally:
            with contextlib.suppress(OSError):
                lock_file.seek(0)
                lock_file.truncate()
            _unlock(lock_file)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: a plain copy
        shutil.copy2(source, target)


def branch(source: str | os.PathLike, target: str | os.PathLike, profile: str) -> list[str]:
    """Make ``target`` a run directory and give it each step folder of the run ``source`` that it lacks.

    Returns the names of the folders copied (hard links where possible; see the module docstring).
    ``target``'s own folders are never touched: the cache replaces a folder whose key no longer
    matches when a step runs there. Nothing is copied from a ``source`` that is not a run directory.
    """
    source, target = Path(source), Path(target)
    _ensure(target, profile, fresh=False)
    if not is_run_dir(source) or source.resolve() == target.resolve():
        return []
    copied = []
    for name in STEP_FOLDERS:
        src, dst = source / name, target / name
        if src.is_dir() and not src.is_symlink() and not dst.exists():
            tmp = dst.with_name(f".{name}.branch.tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            shutil.copytree(src, tmp, symlinks=True, copy_function=_link_or_copy)
            os.replace(tmp, dst)
            copied.append(name)
    return copied


def disk_usage(root: Path) -> int:
    """Bytes on disk under ``root``, each file once (a student's run shares the book's by hard links)."""
    seen, total = set(), 0
    for path in Path(root).rglob("*"):
        try:
            st = path.lstat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total
