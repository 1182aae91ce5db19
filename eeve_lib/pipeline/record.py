"""Recorded runs: ``results/<profile>/``, what the Results page sets beside the build's own run.

``eeve record --profile small`` copies, from a completed run, the files that hold its numbers and
its figures' data, never its weights:

    results/<profile>/metrics.json      eval/metrics.json (every model, every arm over its seeds)
    results/<profile>/report.json       report.json (how each chapter ran: time, memory, versions)
    results/<profile>/expansion.json    tokenizer/expansion.json (the vocabulary step's summary)
    results/<profile>/base.json         the base model's record (pretraining log, Korean share)
    results/<profile>/stages.json       every stage's log (losses, held-out loss, cost)
    results/<profile>/record.json       commit, date, hardware, profile and the command that ran it

The record is written whole into a temporary folder and swapped in (a failure halfway leaves the
previous record as it was), only over a folder that is empty or holds a record (its ``record.json``).
Refused, with one line and before anything is written: a run that is not complete (with the command
that completes it), a run of another profile or of other settings than the profile's as they are now
(the record says it holds that profile's run, with its settings and its command), a run another
``eeve run`` holds, and a run file that cannot be read.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from ..errors import EeveError
from . import atomic, cache, rundir
from .paths import RecordPaths, record_paths, results_root, run_paths
from .profiles import Profile, load_profile, parse_overrides


def _run_command(profile: Profile, run_dir, *options: str) -> str:
    return " ".join(["eeve run --profile", profile.name, *(["--run-dir", str(run_dir)] if run_dir else []), *options])


def _read_json(path: Path, what: str, fix: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EeveError(f"{path} ({what}) cannot be read: {e}. {fix}") from None


def _check_settings(profile: Profile, report: dict[str, Any], where: Path, run_dir) -> None:
    """Refuse a run of another profile, or of other settings than ``profile``'s as they are now."""
    ran = report.get("profile")
    if ran != profile.name:
        raise EeveError(
            f"{where} is a run of profile {ran!r}, not {profile.name!r}: recorded as {profile.name} it would claim "
            f"{profile.name}'s settings and command. Record it under its own profile (eeve record --profile {ran} "
            f"--run-dir {where}), or record a run of {profile.name} ({_run_command(profile, None)}).")
    device = (report.get("parameters") or {}).get("device")
    # The runner's own rule: another --device is the same profile's run; any other setting is not.
    expected = {profile.hash()} | ({load_profile(profile, {"device": device}).hash()} if device else set())
    other = [c for c, r in (report.get("chapters") or {}).items() if (r.get("inputs") or {}).get("profile") not in
             expected]
    if other:
        try:
            overrides = {k: v for k, v in parse_overrides((report.get("parameters") or {}).get("overrides")).items()
                         if k != "device"}
        except EeveError:
            overrides = {"?": "unreadable"}
        why = (f"with overrides {json.dumps(overrides, sort_keys=True)}" if overrides else
               f"before {profile.name}'s file or defaults changed")
        fix = (f"record a run of {profile.name}'s own settings ({_run_command(profile, None)}, then eeve record "
               f"--profile {profile.name})" if overrides else
               f"bring the run up to date with `{_run_command(profile, run_dir, '--resume')}` and record again")
        raise EeveError(f"{where} ran with other settings than profile {profile.name}'s ({why}; chapters "
                        f"{', '.join(other)}), and a record of {profile.name} claims its settings: {fix}.")


def record_run(profile: Profile | str, run_dir=None, *, root: Path | None = None, note: str | None = None) -> Path:
    """Copy a completed run's numbers into ``results/<profile>/`` (see the module docstring)."""
    profile = load_profile(profile) if isinstance(profile, str) else profile
    paths = run_paths(profile, run_dir)
    target = record_paths(profile.name, root)
    rundir.refuse_unless_ours(target.root, target.record.name, f"the record of profile {profile.name!r}",
                              "move your files elsewhere first")
    with rundir.reading(paths.root):
        values = _read_run(profile, paths, run_dir)
    report = values["report"]
    chapters = report.get("chapters", {})
    device = (report.get("parameters") or {}).get("device")
    command = _run_command(profile, None, *(["--device", device] if device else []))
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
        "command": f"{command} && eeve record --profile {profile.name}",
        # What the files cannot say (e.g. a chapter that failed and was resumed: its time in the
        # report is the resumed run's), in the recorder's words.
        "note": note,
    }
    rundir.refuse_unless_ours(target.root, target.record.name, f"the record of profile {profile.name!r}",
                              "move your files elsewhere first")  # again: the run was read meanwhile
    with atomic.directory(target.root) as tmp:  # whole, or not at all: never two runs mixed
        written = RecordPaths(tmp)
        atomic.write_json(written.metrics, values["metrics"])
        atomic.write_json(written.report, report)
        atomic.write_json(written.expansion, values["expansion"])
        atomic.write_json(written.base, values["base"])
        atomic.write_json(written.stages, values["model"].get("logs", []))
        atomic.write_json(written.record, record)
    return target.root


def _read_run(profile: Profile, paths, run_dir) -> dict[str, Any]:
    """Everything a record copies from the run, read and checked before anything is written."""
    resume = f"`{_run_command(profile, run_dir, '--resume')}`"
    report = _read_json(paths.report, "the run's report",
                        f"It is not a run that can be recorded: delete it and run {resume} (unchanged steps are "
                        f"reused).") if paths.report.is_file() else {}
    if not isinstance(report, dict):
        raise EeveError(f"{paths.report} is not a report of eeve: delete it and run {resume}.")
    failed = [c for c, r in (report.get("chapters") or {}).items() if (r or {}).get("status") != "completed"]
    missing = [str(p.relative_to(paths.root)) for p in (paths.report, paths.metrics, paths.expansion_summary)
               if not p.is_file()]
    if missing or not report.get("chapters") or failed:
        raise EeveError(f"{paths.root} is not a completed run (missing: {', '.join(missing) or 'nothing'}; chapters "
                        f"not completed: {', '.join(failed) or 'none'}); complete it first with {resume}.")
    _check_settings(profile, report, paths.root, run_dir)
    fix = f"Run the chapter that writes it again: {resume}."
    return {"report": report,
            "metrics": _read_json(paths.metrics, "the run's metrics", fix),
            "expansion": _read_json(paths.expansion_summary, "the vocabulary step's summary", fix),
            "model": cache.read_marker(paths.model_marker) or {},
            "base": cache.read_marker(paths.base_marker) or {}}


def recorded_runs(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every complete recorded run under ``results/``: profile -> its files, loaded (the Results page).

    Complete: every file there and readable, and all of one run of the folder's profile (its
    ``record.json`` and its ``report.json`` name it). A temporary folder of a record being written,
    and anything else, is left out."""
    found: dict[str, dict[str, Any]] = {}
    base = root or results_root()
    if not base.is_dir():
        return found
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        record = RecordPaths(folder)
        if not record.complete():
            continue
        try:
            files = {name: json.loads(getattr(record, name).read_text(encoding="utf-8")) for name in RecordPaths.FILES}
        except (OSError, ValueError):
            continue
        if all(isinstance(files[name], dict) for name in ("record", "report", "metrics")) and \
                files["record"].get("profile") == files["report"].get("profile") == folder.name:
            found[folder.name] = files
    return found


__all__ = ["record_run", "recorded_runs"]
