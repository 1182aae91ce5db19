"""Recorded runs: ``results/<profile>/``, what the Results page sets beside the build's own run.

``eeve record --profile small`` copies, from a completed run, the files that hold its numbers and
its figures' data, never its weights:

    results/<profile>/metrics.json      eval/metrics.json (every model, every arm over its seeds)
    results/<profile>/report.json       report.json (how each chapter ran: time, memory, versions)
    results/<profile>/expansion.json    tokenizer/expansion.json (the vocabulary step's summary)
    results/<profile>/base.json         the base model's record (pretraining log, Korean share)
    results/<profile>/stages.json       every stage's log (losses, held-out loss, cost)
    results/<profile>/record.json       commit, date, hardware, profile and the command that ran it

Each file is written atomically; a run that is not complete is refused with the command that
completes it.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from ..errors import EeveError
from . import atomic, cache
from .paths import RecordPaths, record_paths, results_root, run_paths
from .profiles import Profile, load_profile


def record_run(profile: Profile | str, run_dir=None, *, root: Path | None = None, note: str | None = None) -> Path:
    """Copy a completed run's numbers into ``results/<profile>/`` (see the module docstring)."""
    profile = load_profile(profile) if isinstance(profile, str) else profile
    paths = run_paths(profile, run_dir)
    report = json.loads(paths.report.read_text()) if paths.report.is_file() else {}
    failed = [c for c, r in report.get("chapters", {}).items() if r.get("status") != "completed"]
    if not paths.metrics.is_file() or not report or failed:
        raise EeveError(f"{paths.root} is not a completed run (missing eval/metrics.json or report.json, or "
                        f"chapters not completed: {', '.join(failed) or 'none'}); complete it first with "
                        f"`eeve run --profile {profile.name} --resume`.")
    model_record = cache.read_marker(paths.model_marker) or {}
    base_record = cache.read_marker(paths.base_marker) or {}
    chapters = report.get("chapters", {})
    record: dict[str, Any] = {
        "profile": profile.name,
        "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": report.get("git"),
        "hardware": report.get("hardware"),
        "packages": report.get("packages"),
        "parameters": report.get("parameters"),
        "wall_seconds": round(sum(c.get("wall_seconds", 0) for c in chapters.values()), 1),
        "chapters": {c: {k: r.get(k) for k in ("wall_seconds", "peak_memory_mb", "device", "commit")}
                     for c, r in chapters.items()},
        "profile_settings": profile.to_dict(),
        "command": f"eeve run --profile {profile.name} && eeve record --profile {profile.name}",
        # What the files cannot say (e.g. a chapter that failed and was resumed: its time in the
        # report is the resumed run's), in the recorder's words.
        "note": note,
    }
    target = record_paths(profile.name, root)
    target.root.mkdir(parents=True, exist_ok=True)
    atomic.write_json(target.metrics, json.loads(paths.metrics.read_text()))
    atomic.write_json(target.report, report)
    atomic.write_json(target.expansion, json.loads(paths.expansion_summary.read_text()))
    atomic.write_json(target.base, base_record)
    atomic.write_json(target.stages, model_record.get("logs", []))
    atomic.write_json(target.record, record)
    return target.root


def recorded_runs(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every recorded run under ``results/``: profile -> its files, loaded (the Results page)."""
    found: dict[str, dict[str, Any]] = {}
    base = root or results_root()
    if not base.is_dir():
        return found
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        record = RecordPaths(folder)
        if record.complete():
            found[folder.name] = {name: json.loads(getattr(record, name).read_text()) for name in RecordPaths.FILES}
    return found


__all__ = ["record_run", "recorded_runs"]
