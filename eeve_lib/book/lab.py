"""The classroom: JupyterLab at ``book/`` with the chapters' kernel (``make lab``, ``eeve lab``).

``make setup`` registers the project's kernel inside ``.venv`` (``python -m ipykernel install
--sys-prefix --name eeve-book``); every chapter names it in its metadata, so JupyterLab starts the
chapters in the environment that ran the book. :func:`lab_command` is the one command line of the
server, used by ``eeve lab`` and by ``tests/test_lab.py``: it listens on 127.0.0.1 only, opens at
``book/``, and asks nothing of the network (no news, no update check, no extension manager that
searches PyPI), so a class without internet works once ``make book`` has run. Shown on the
teachers' page.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from ..pipeline.runner import BOOK_DIR

KERNEL_NAME = "eeve-book"
KERNEL_DISPLAY_NAME = "eeve-book (.venv)"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}

# Default settings of the page (lab_settings/overrides.json): no news, no update check, no prompt.
SETTINGS_DIR = Path(__file__).resolve().parent / "lab_settings"
# Everything JupyterLab would otherwise fetch from the internet, switched off.
OFFLINE_SETTINGS = (
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
    f"--LabApp.app_settings_dir={SETTINGS_DIR}",
)


def lab_command(*, port: int | None = None, token: str | None = None, open_browser: bool = True,
                root: str | os.PathLike = BOOK_DIR, extra: Sequence[str] = ()) -> list[str]:
    """The command line of JupyterLab for the chapters: 127.0.0.1, ``root`` (default ``book/``), offline."""
    command = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root}",
               *OFFLINE_SETTINGS]
    if port is not None:
        command += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if token is not None:
        command.append(f"--IdentityProvider.token={token}")
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI and containers run as root; JupyterLab refuses it
        command.append("--allow-root")
    return command + list(extra)


def kernel_installed() -> Path | None:
    """The folder of the project's kernelspec, if ``make setup`` registered it; else None."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        return Path(KernelSpecManager().get_kernel_spec(KERNEL_NAME).resource_dir)
    except NoSuchKernel:
        return None


def install_kernel_command() -> list[str]:
    return [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME,
            "--display-name", KERNEL_DISPLAY_NAME]


__all__ = ["KERNEL_NAME", "KERNEL_DISPLAY_NAME", "KERNELSPEC", "lab_command", "kernel_installed",
           "install_kernel_command"]
