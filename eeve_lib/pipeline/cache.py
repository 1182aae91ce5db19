"""The one caching rule of the pipeline.

A step's saved outputs are reused when the key of its inputs matches the key in the step
folder's marker; otherwise the step is recomputed and its folder replaced atomically
(:func:`eeve_lib.pipeline.atomic.directory`). A key is the hash of

* the step's code: the source of the method modules it runs,
* the profile sections it reads,
* the keys of the upstream steps whose outputs it reads,
* anything else the caller names (an ablation arm, a stage index).

So a change anywhere upstream, in the profile or in the code invalidates exactly the steps it
can change. The runner uses the same key for a chapter's ``--resume``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping


def code_hash(modules: Iterable[ModuleType | str | Path]) -> str:
    """Hash of the source of ``modules`` (module objects or file paths), in a stable order."""
    h = hashlib.sha256()
    files = []
    for m in modules:
        path = Path(inspect.getsourcefile(m)) if isinstance(m, ModuleType) else Path(m)
        files.append(path)
    for path in sorted(set(files)):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def step_key(step: str, *, code: Iterable[ModuleType | str | Path] = (), profile=None,
             sections: Iterable[str] = (), upstream: Mapping[str, str] | None = None,
             extra: Mapping[str, Any] | None = None) -> str:
    """The key of a step's inputs (see the module docstring)."""
    payload = {
        "step": step,
        "code": code_hash(code) if code else None,
        "profile": profile.hash(*sections) if profile is not None and sections else None,
        "upstream": dict(upstream or {}),
        "extra": dict(extra or {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_marker(marker: Path) -> dict[str, Any] | None:
    """A step folder's marker record, or None when the folder is incomplete or absent."""
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def cached(marker: Path, key: str) -> dict[str, Any] | None:
    """The marker record if the saved outputs were computed from inputs with ``key``; else None."""
    record = read_marker(marker)
    if record is not None and record.get("key") == key:
        return record
    return None


def saved_key(marker: Path) -> str | None:
    """The key a step folder was computed from (None if it is incomplete)."""
    record = read_marker(marker)
    return record.get("key") if record else None
