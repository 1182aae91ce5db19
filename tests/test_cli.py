"""The `eeve` command answers bad input with one clear line and exit status 2."""

import subprocess
import sys


def eeve(*args):
    return subprocess.run([sys.executable, "-m", "eeve_lib.cli", *args], capture_output=True, text=True)


def test_unknown_profile():
    out = eeve("run", "--profile", "enormous")
    assert out.returncode == 2
    assert "Unknown profile 'enormous'" in out.stderr and "tiny" in out.stderr and "Traceback" not in out.stderr


def test_bad_override_key():
    out = eeve("run", "--profile", "tiny", "--overrides", '{"training.lr": 1}')
    assert out.returncode == 2 and "unknown key(s) lr" in out.stderr


def test_profiles_are_listed():
    out = eeve("profiles")
    assert out.returncode == 0 and all(p in out.stdout for p in ("tiny", "small", "full", "full-dry"))
