"""The benchmark scripts run (``--quick``), and what they check holds; no timing is asserted.

Speed and memory targets live in ``benchmarks/`` and are read from their printed ratios, never
from a test: these tests only make sure the scripts keep working and that the counting methods
give identical counts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from eeve_lib.method.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str) -> subprocess.CompletedProcess:
    # The environment (EEVE_DATA_DIR from conftest) is inherited.
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_token_counting_quick_gives_identical_counts():
    result = run_quick("token_counting.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical counts (all methods, all runs, all sizes): yes" in result.stdout


def test_stage_training_quick_runs_every_stage():
    result = run_quick("stage_training.py")
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.split("optimizer state B\n", 1)[1]
    assert [line.split()[0] for line in table.splitlines()[:7]] == [str(n) for n in STAGES]
    # Not a timing: stage 1 holds Adam state for the new input rows alone, exactly.
    assert "= 1.000x  MET" in result.stdout.split("stage 1 optimizer state", 1)[1].splitlines()[0]


def test_smol_speed_quick_keeps_frozen_rows_in_every_setting():
    from eeve_lib.pipeline.base import gguf_file
    from eeve_lib.pipeline.profiles import load_profile

    if gguf_file(load_profile("smol")) is None:
        import pytest

        pytest.skip("SmolLM2's GGUF file is missing: run `make setup`")
    result = run_quick("smol_speed.py")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "frozen rows exact" in line]
    assert len(lines) == 5 and all(line.endswith("frozen rows exact: True") for line in lines)
    assert "bfloat16 / float32 tokens per second by stage" in result.stdout
