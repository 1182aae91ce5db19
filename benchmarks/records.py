"""What every benchmark records beside its numbers, and how: ``results/benchmarks/<name>.json``.

A record says where its numbers come from: the commit (and whether the checkout differed from
it), the date, the machine (CPU model and count, memory, torch threads, GPU if any), the command
that ran, the load on the machine, and each target with its measured value and whether it was met.
It is written atomically (a reader never sees half a record), by ``make benchmarks``; the
performance page (``book/performance.ipynb``) renders every record it finds.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The fields every record has (tests/test_benchmarks_smoke.py checks them).
FIELDS = ("benchmark", "command", "date", "git", "hardware", "load_average", "quick", "targets")


def default_directory() -> Path:
    """``results/benchmarks`` of the results root (``$EEVE_RESULTS_DIR`` or ``<project>/results``)."""
    from eeve_lib.pipeline.paths import results_root

    return results_root() / "benchmarks"


def cpu_model() -> str:
    """The CPU's model name as the operating system reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware() -> dict[str, Any]:
    """The machine: CPU model and count, memory, torch threads, platform, Python, torch, GPU."""
    import psutil

    from eeve_lib.runtime import describe_hardware

    info = describe_hardware()
    info.update({"cpu_model": cpu_model(), "memory_bytes": psutil.virtual_memory().total,
                 "usable_cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None})
    return info


def command(script: str, argv: list[str] | None) -> str:
    """The command line that ran ``script`` (as a reader would type it from the project's root)."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"benchmarks/{script}", *map(shlex.quote, args)])


def target(name: str, goal: str, threshold: float, measured: float | None, met: bool | None, unit: str = "",
           note: str = "") -> dict:
    """One target: what it asks (``goal``, in words; ``threshold``, its number), the measured value, and
    met (True), missed (False) or not measured (None, with a ``note`` saying why)."""
    return {"name": name, "goal": goal, "threshold": threshold, "measured": measured, "unit": unit, "met": met,
            "note": note}


def write(name: str, numbers: dict[str, Any], *, script: str, argv: list[str] | None, directory: Path | None,
          quick: bool, targets: list[dict], started: float | None = None, load_at_start: float | None = None) -> Path:
    """Write ``<directory>/<name>.json`` atomically: the numbers plus commit, date, machine, command."""
    import time

    from eeve_lib.pipeline import atomic
    from eeve_lib.pipeline.runner import git_commit

    record = {"benchmark": name, "command": command(script, argv),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "git": git_commit(), "hardware": hardware(), "quick": quick, "targets": targets,
              "load_average": {"start": load_at_start, "end": os.getloadavg()[0]},
              **({"wall_seconds": round(time.time() - started, 1)} if started is not None else {}),
              **numbers}
    path = Path(directory or default_directory()) / f"{name}.json"
    atomic.write_json(path, record)
    return path
