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
import re
import sys
from pathlib import Path
from typing import Sequence

from ..pipeline import atomic, runner  # runner by module: chapters_in_order is looked up when called
from ..pipeline.paths import run_paths
from ..pipeline.profiles import PROJECT_ROOT
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


# --------------------------------------------------------------------------------------------
# The chapters as JupyterLab shows them after a run
#
# JupyterLab renders markdown cells as CommonMark: MyST's roles (the glued numbers, citations)
# and directives (the folded solutions) would show as raw markup. After a run, each executed
# chapter is copied to ``runs/<profile>/lab/`` with that markup written out as the built book
# shows it: each glued number formatted by myst-nb's own formatter from the value the chapter
# glued, each citation as its author and year, each admonition as a (folded) block. The chapters
# in ``book/`` stay the one source; a copy is to the chapter what the HTML page is.

ROLE = re.compile(r"\{(?P<role>glue:text|glue|cite:p|cite:t|cite)\}`(?P<content>[^`]*)`")
ADMONITION = re.compile(r"^:::\{admonition\}[ \t]*(?P<title>[^\n]*)\n(?P<options>(?::[\w-]+:[^\n]*\n)*)"
                        r"(?P<body>.*?)^:::[ \t]*$", re.M | re.S)
BIB_ENTRY = re.compile(r"@\w+\{(?P<key>[^,\s]+),(?P<fields>.*?)\n\}", re.S)
LAB_NOTE = ("*This copy of the chapter shows the numbers of the run in `{run}` (profile {profile}) written "
            "into its prose. Running its cells recomputes their outputs in that run; the prose keeps that "
            "run's numbers. The chapter itself is `book/{chapter}.ipynb`.*")


def glued_values(nb: dict) -> dict[str, str]:
    """Every value an executed notebook glued (``notebook.glue``), as its ``text/plain``."""
    out = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            scrap = (output.get("metadata") or {}).get("scrapbook", {})
            text = output.get("data", {}).get(scrap.get("mime_prefix", "") + "text/plain")
            if scrap.get("name") and text is not None:
                out[scrap["name"]] = "".join(text) if isinstance(text, list) else text
    return out


def citation_labels(bib: Path) -> dict[str, tuple[str, str]]:
    """Each reference's (authors as cited, year) from a BibTeX file: "Kim et al.", "2024"."""
    labels = {}
    for entry in BIB_ENTRY.finditer(bib.read_text(encoding="utf-8")):
        fields = dict(re.findall(r"(\w+)\s*=\s*\{(.*?)\},?\s*$", entry["fields"], re.M))
        names = [n.strip().strip("{}") for n in fields.get("author", "?").split(" and ")]
        surnames = [n.split(",")[0].strip() for n in names]
        authors = (surnames[0] if len(surnames) == 1 else " and ".join(surnames) if len(surnames) == 2
                   else f"{surnames[0]} et al.")
        labels[entry["key"]] = (authors, fields.get("year", "n.d."))
    return labels


def _escaped(text: str) -> str:
    """Plain text that CommonMark shows as it is (no emphasis, code or tags made of it)."""
    return re.sub(r"([\\`*_<>&\[\]#~|$])", r"\\\1", text)


def lab_markdown(source: str, glued: dict[str, str], citations: dict[str, tuple[str, str]]) -> str:
    """A markdown cell's MyST markup written out as CommonMark (see the section comment)."""
    from myst_nb.core.variables import format_plain_text

    def role(match: re.Match) -> str:
        kind, content = match["role"], match["content"]
        if kind.startswith("glue"):
            key, spec = content.rsplit(":", 1) if ":" in content else (content, "s")  # as myst-nb splits
            if key not in glued:
                raise KeyError(f"the chapter glues no value named {key!r}")
            return _escaped(format_plain_text(glued[key], spec or "s"))
        cited = [citations.get(k.strip(), (k.strip(), "n.d.")) for k in content.split(",")]
        if kind == "cite:t":
            return "; ".join(f"{a} ({y})" for a, y in cited)
        return "(" + "; ".join(f"{a}, {y}" for a, y in cited) + ")"

    def admonition(match: re.Match) -> str:
        title, body = match["title"].strip(), match["body"].strip("\n")
        if ":class: dropdown" in match["options"]:
            return f"<details><summary>{title}</summary>\n\n{body}\n\n</details>"
        quoted = "\n".join(f"> {line}" if line else ">" for line in body.splitlines())
        return f"> **{title}**\n>\n{quoted}"

    return ADMONITION.sub(admonition, ROLE.sub(role, source))


def lab_notebook(executed: dict, chapter: str, run_shown: str, profile: str,
                 citations: dict[str, tuple[str, str]]) -> dict:
    """The Lab copy of one executed chapter: prose written out, papermill's injected parameters moved
    into the parameters cell (so that editing that cell changes the run), a note at the top."""
    import copy

    nb = copy.deepcopy(executed)
    glued = glued_values(nb)
    injected = next((c for c in nb["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])),
                    None)
    cells = []
    for cell in nb["cells"]:
        if cell is injected:
            continue
        if cell["cell_type"] == "markdown":
            cell["source"] = lab_markdown("".join(cell["source"]), glued, citations).splitlines(keepends=True)
        elif injected is not None and "parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = "".join(injected["source"]).replace("# Parameters\n", "", 1).splitlines(keepends=True)
        cells.append(cell)
    note = {"cell_type": "markdown", "metadata": {}, "id": "eeve-lab-note",
            "source": [LAB_NOTE.format(run=run_shown, profile=profile, chapter=chapter)]}
    nb["cells"] = cells[:1] + [note] + cells[1:]
    return nb


def write_lab_copies(paths, profile: str, chapters: list[str], bib: Path, shown_root: str) -> list[str]:
    """Write each executed chapter's Lab copy to ``paths.lab`` (atomically, one file at a time).

    A copy the user has changed since it was written (its checksum differs from the one recorded
    in the folder's marker) is kept as it is; the returned list names those.
    """
    import hashlib
    import json


    citations = citation_labels(bib)
    written = json.loads(paths.lab_marker.read_text()) if paths.lab_marker.is_file() else {}
    paths.lab.mkdir(parents=True, exist_ok=True)
    kept = []
    for chapter in chapters:
        source = paths.executed_notebook(chapter)
        if not source.is_file():
            continue
        target = paths.lab / f"{chapter}.ipynb"
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() != written.get(chapter):
            kept.append(chapter)
            continue
        nb = lab_notebook(json.loads(source.read_text(encoding="utf-8")), chapter, shown_root, profile, citations)
        text = json.dumps(nb, ensure_ascii=False, indent=1)
        atomic.write_text(target, text)
        written[chapter] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    atomic.write_json(paths.lab_marker, written)
    return kept


def lab_copies(profile: str, run_dir=None) -> tuple[Path, list[str]]:
    """The Lab copies of every chapter a run has executed (:func:`write_lab_copies`): their folder,
    and the chapters whose copy the user had changed and was kept."""
    paths = run_paths(profile, run_dir)
    root = paths.root.resolve()
    shown = str(root.relative_to(PROJECT_ROOT)) if root.is_relative_to(PROJECT_ROOT) else str(root)
    kept = write_lab_copies(paths, profile, runner.chapters_in_order(), BOOK_DIR / "references.bib", shown)
    return paths.lab, kept


__all__ = ["KERNEL_NAME", "KERNEL_DISPLAY_NAME", "KERNELSPEC", "lab_command", "kernel_installed",
           "install_kernel_command", "lab_copies", "lab_markdown", "lab_notebook", "write_lab_copies", "glued_values",
           "citation_labels"]
