"""The "Reproducibility status" page, as ``eeve build`` generates it from ``report.json``: narrow
enough for 1400 px (tests/test_browser.py checks the rendered page)."""

from eeve_lib.book.build import status_page


def report(devices=("cpu", "cpu"), commits=("a" * 40, "a" * 40)):
    chapters = {f"0{i}_chapter": {"status": "completed", "wall_seconds": 30, "device": d, "commit": c,
                                  "peak_memory_mb": 100, "finished_at": "2026-01-01T00:00:00+00:00"}
                for i, (d, c) in enumerate(zip(devices, commits))}
    data = [{"name": "news", "language": "ko", "source": "s", "license": "l", "size_bytes": 29_166_208,
             "revision": "jungyeul/korean-parallel-corpora@" + "a1" * 20, "sha256_verified": "f" * 64}]
    return {"profile": "tiny", "chapters": chapters, "data": data, "git": {"commit": "a" * 40}}


def test_shared_device_and_commit_are_said_once():
    page = status_page(report())
    assert "Every chapter ran on `cpu` and at commit `aaaaaaaaaaaa`." in page
    assert "| Chapter | Status | Wall time | Share | Peak memory | Finished |" in page
    assert "| 00_chapter | completed | 30 s | 50 % | 100 MB | 2026-01-01 00:00:00+00:00 |" in page


def test_differing_devices_and_commits_get_columns():
    page = status_page(report(devices=("cpu", "cuda"), commits=("a" * 40, "b" * 40)))
    assert "| Chapter | Status | Wall time | Share | Peak memory | Device | Commit | Finished |" in page
    assert "Every chapter ran" not in page


def test_data_rows_are_short():
    row = next(line for line in status_page(report()).splitlines() if line.startswith("| news"))
    assert row.startswith("| news (ko) |") and "`jungyeul/korean-parallel-corpora@a1a1a1a1a1a1`" in row
    assert "29.2 MB" in row and "`ffffffffffffffff…`" in row
