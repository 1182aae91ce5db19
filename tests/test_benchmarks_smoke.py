"""The benchmark scripts run (``--quick``), and what they check holds; no timing is asserted.

Speed and memory targets live in ``benchmarks/`` and are read from their printed ratios, never
from a test: these tests only make sure the scripts keep working and that the counting methods
give identical counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eeve_lib.method.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str, *args: str) -> subprocess.CompletedProcess:
    # The environment (EEVE_DATA_DIR from conftest) is inherited.
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def read_record(folder: Path, name: str) -> dict:
    """The record a quick run wrote into ``folder``, with the fields every record has."""
    import json

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from records import FIELDS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert [p.name for p in folder.iterdir()] == [f"{name}.json"]  # written whole: no temporary file left
    record = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    assert set(FIELDS) <= set(record), set(FIELDS) - set(record)
    assert record["benchmark"] == name and record["quick"] is True and "--quick" in record["command"]
    assert set(record["git"]) == {"commit", "dirty"}
    assert {"cpu_model", "cpu_count", "memory_bytes", "torch_threads"} <= set(record["hardware"])
    for target in record["targets"]:
        assert {"name", "goal", "threshold", "measured", "met"} <= set(target)
    return record


def test_token_counting_quick_gives_identical_counts(tmp_path):
    result = run_quick("token_counting.py", "--record-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical counts (all methods, all runs, all sizes): yes" in result.stdout
    record = read_record(tmp_path, "token_counting")
    assert record["identical"] is True
    # the quick pool is smaller than the largest size: the text is repeated, shuffled, and says so
    assert record["corpus"]["repeated"] and record["rows"][-1]["passes"] > 1
    for row in record["rows"]:
        counter = row["methods"]["counter"]
        assert row["identical"] and counter["peak_tree_rss"] > 0 and counter["mb_per_s"] > 0
        assert counter["distinct_words"] > 0 and "encode_batch" in row["methods"]
    # the 1 GB and 128 MB targets are not evaluated on a quick run, only named
    assert [t["met"] for t in record["targets"]] == [None, None, None]
    assert set(record["extrapolation"]["cores"]) == {"2", "64"}


def test_a_quick_run_records_nothing_unless_asked(tmp_path):
    env = {**os.environ, "EEVE_RESULTS_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "token_counting.py"), "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not recorded" in result.stdout and not any(tmp_path.iterdir())


def test_stage_training_quick_runs_every_stage(tmp_path):
    result = run_quick("stage_training.py", "--record-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    record = read_record(tmp_path, "stage_training")
    # the tiny model in float32 and in bfloat16 autocast, every stage of each
    assert [list(setup["stages"]) for setup in record["setups"]] == [[str(n) for n in STAGES]] * 2
    assert [setup["dtype"] for setup in record["setups"]] == ["float32", "bfloat16 autocast"]
    assert all(t["met"] is not None for t in record["targets"])
    # MFU: model FLOPs per second over the peak measured in the same run, in the step's dtype
    assert set(record["matmul_peak"]) == {"float32", "bfloat16"}
    for setup in record["setups"]:
        peak = setup["matmul_peak"]["flops_per_second"]
        assert peak > 1e9 and setup["matmul_peak"]["dtype"] == setup["dtype"].split()[0]
        for s in setup["stages"].values():
            tokens_per_second = setup["batch"] * setup["seq_len"] / s["step_seconds"]
            assert s["mfu"] == pytest.approx(s["flops_per_token"] * tokens_per_second / peak)
        # stage 6 does the most work a token: every weight gradient of the body and the head
        assert max(setup["stages"].values(), key=lambda s: s["flops_per_token"]) is setup["stages"]["6"]
    table = result.stdout.split("optimizer state B\n", 1)[1]
    assert [line.split()[0] for line in table.splitlines()[:7]] == [str(n) for n in STAGES]
    # Not a timing: stage 1 holds Adam state for the new input rows alone, exactly.
    assert "= 1.000x  MET" in result.stdout.split("stage 1 optimizer state", 1)[1].splitlines()[0]


def test_smol_speed_quick_keeps_frozen_rows_in_every_setting():
    from eeve_lib.pipeline.base import gguf_file
    from eeve_lib.pipeline.profiles import load_profile

    if gguf_file(load_profile("smol")) is None:
        pytest.skip("SmolLM2's GGUF file is missing: run `make setup`")
    result = run_quick("smol_speed.py")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "frozen rows exact" in line]
    assert len(lines) == 5 and all(line.endswith("frozen rows exact: True") for line in lines)
    assert sum(line.startswith("matmul peak, ") for line in result.stdout.splitlines()) == 2  # float32, bfloat16
    assert all("(" in part and "%)" in part for line in lines for part in line.split("by stage ")[1].split(", ")[:7])
    assert "bfloat16 / float32 tokens per second by stage" in result.stdout
    # the console shows what is measured: no loading bar or notice of transformers' own
    assert "Converting and de-quantizing" not in result.stderr and "Warning" not in result.stderr, result.stderr


def test_the_performance_page_names_the_fastest_setting_on_the_profiles_windows():
    """On the recorded SmolLM2 benchmark, and on the same record with float32 made the fastest."""
    import copy
    import json

    from eeve_lib.book import performance

    record = json.loads((ROOT / "results" / "benchmarks" / "smol_speed.json").read_text())
    fastest = performance.fastest_on_profile_windows(record)
    assert fastest["setting"] == record["profile_setting"]
    assert f"{fastest['setting']} is the fastest that keeps frozen rows exact" in performance.smol_prose(record)
    slower = copy.deepcopy(record)
    for setting in slower["settings"]:
        if setting["dtype"] == "float32":
            setting["stages"]["6"]["tokens_per_second"] = 10 * fastest["stages"]["6"]["tokens_per_second"]
    assert performance.fastest_on_profile_windows(slower)["dtype"] == "float32"
    assert "float32 is the fastest that keeps frozen rows exact" in performance.smol_prose(slower)
