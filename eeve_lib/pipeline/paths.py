"""The layout of a run: ``runs/<profile>/`` and what lives in it.

Users and tests rely on this layout, so every folder and marker is named once, here::

    runs/<profile>/base/                 the English base model and its tokenizer (HF format)
    runs/<profile>/intermediate/         the intermediate tokenizer and the candidates (chapter 01)
    runs/<profile>/tokenizer/            the extended tokenizer (HF format) + expansion.json
    runs/<profile>/stages/stage<N>/      the model after stage N (HF format, with tokenizer)
    runs/<profile>/model/                the final model (HF format, with tokenizer)
    runs/<profile>/train/                per-stage loss logs and resumable checkpoints (safetensors + JSON)
    runs/<profile>/ablations/<arm>/      ablation arms: model/, train/ (as above), at the profile's seed
    runs/<profile>/ablations/<arm>@seed<N>/  the same arm at training seed N (the seven stages too)
    runs/<profile>/eval/metrics.json     every model's scores, and each arm's mean and spread over seeds
    runs/<profile>/eval/scores/          each model's scores, reused while the model's key matches
    runs/<profile>/executed/             the executed notebooks and their logs
    runs/<profile>/report.json           how each chapter ran (time, memory, device, versions)
    runs/<profile>-student/              a student's run: a chapter opened in JupyterLab with other
                                         settings than the profile's writes here, not into the book's run

Every step folder holds a marker (``MARKERS``) with the key of the inputs it was computed from;
:mod:`eeve_lib.pipeline.cache` reads and writes them. Nothing outside the pipeline builds a path
into a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .profiles import Profile, PROJECT_ROOT, load_profile

# The marker file of each kind of step folder: its presence says the folder is complete.
MARKERS = {
    "base": "eeve_base.json",
    "intermediate": "candidates.json",
    "tokenizer": "expansion.json",
    "stage": "eeve_stage.json",
    "model": "eeve_stage.json",
}


def _under_root(*parts: str) -> property:
    """A property: the path ``root/<parts>`` of a run."""
    return property(lambda self: self.root.joinpath(*parts), doc="/".join(parts))


# The folder suffix of an arm's replicate at another seed: ablations/<arm>@seed<N>/.
SEED_SUFFIX = "@seed"
# A run directory says it is one (``--fresh`` empties nothing else), and one run at a time locks it.
RUN_MARKER = ".eeve-run"
RUN_LOCK = ".eeve-lock"
# The suffix of a student's run directory (``runs/<profile>-student``; see eeve_lib.book.notebook).
STUDENT_SUFFIX = "-student"
# The markers of the other folders eeve writes whole and may later replace (see pipeline/rundir.py:
# a folder is eeve's only by its marker, never by the names of what it holds): the stand-in base
# model of ``eeve prepare-full-dry`` and the HTML of ``eeve build`` (``<output>/html``). A recorded
# run (``results/<profile>/``) is marked by its own ``record.json`` (RecordPaths.record).
STANDIN_MARKER = ".eeve-standin"
BUILD_MARKER = ".eeve-build"
# The entries that hold the steps' outputs (each reused only while its key matches): what a new run
# directory may start from, copied from another run.
STEP_FOLDERS = ("base", "intermediate", "tokenizer", "stages", "model", "train", "ablations", "eval")


@dataclass(frozen=True)
class RunPaths:
    """Every path of one run (or of an ablation arm inside it); see the module docstring."""

    root: Path

    base = _under_root("base")
    base_marker = _under_root("base", MARKERS["base"])
    intermediate = _under_root("intermediate")
    intermediate_tokenizer = _under_root("intermediate", "intermediate_tokenizer.json")
    candidates = _under_root("intermediate", MARKERS["intermediate"])
    tokenizer = _under_root("tokenizer")
    expansion_summary = _under_root("tokenizer", MARKERS["tokenizer"])
    expansion_details = _under_root("tokenizer", "expansion_details.json")
    token_counts = _under_root("tokenizer", "token_counts.npy")
    word_counts = _under_root("tokenizer", "word_counts.json.gz")
    stages = _under_root("stages")
    model = _under_root("model")
    model_marker = _under_root("model", MARKERS["model"])
    train = _under_root("train")
    ablations = _under_root("ablations")
    eval = _under_root("eval")
    metrics = _under_root("eval", "metrics.json")
    executed = _under_root("executed")
    # The chapters as JupyterLab shows them after a run: its numbers written into the prose.
    lab = _under_root("lab")
    lab_marker = _under_root("lab", ".eeve-lab.json")
    report = _under_root("report.json")

    def stage(self, number: int) -> Path:
        return self.stages / f"stage{number}"

    def stage_marker(self, number: int) -> Path:
        return self.stage(number) / MARKERS["stage"]

    def stage_log(self, number: int) -> Path:
        return self.train / f"stage{number}.json"

    def checkpoint(self, number: int) -> Path:
        return self.train / f"stage{number}" / "checkpoint.safetensors"

    def ablation(self, arm: str, seed: int | None = None) -> "RunPaths":
        """The folder of an ablation arm, laid out like a run (``model/``, ``train/``).

        ``seed``: a replicate at another training seed than the profile's (``<arm>@seed<N>``).
        """
        return RunPaths(self.ablations / (arm.replace(":", "-") + ("" if seed is None else f"{SEED_SUFFIX}{seed}")))

    def score(self, model_name: str) -> Path:
        """The cached scores of one model of the run (``eval/scores/<name>.json``)."""
        return self.eval / "scores" / (model_name.replace(":", "-") + ".json")

    def executed_notebook(self, chapter: str) -> Path:
        return self.executed / f"{chapter}.ipynb"

    def chapter_log(self, chapter: str) -> Path:
        return self.executed / f"{chapter}.log"


def runs_root() -> Path:
    """``$EEVE_RUNS_DIR`` or ``<project>/runs``."""
    return Path(os.environ.get("EEVE_RUNS_DIR", PROJECT_ROOT / "runs"))


def student_run_paths(profile: Profile | str, name: str | None = None) -> RunPaths:
    """``runs/<profile>-student`` (or ``runs/<profile>-<name>``): a run of a student's own, beside the book's."""
    profile_name = profile if isinstance(profile, str) else profile.name
    if name is not None and (not name or any(c in name for c in "/\\") or name.startswith(".")):
        raise ValueError(f"a student run's name is one word without slashes, not {name!r}")
    return RunPaths(runs_root() / (f"{profile_name}-{name}" if name else f"{profile_name}{STUDENT_SUFFIX}"))


def settings_home(profile: Profile, run_dir: str | os.PathLike | None = None) -> str | os.PathLike | None:
    """Where a run with ``profile``'s settings writes: one rule for ``eeve run``, ``eeve train`` and a
    chapter opened by hand. ``run_dir`` when given; None (the book's run, ``runs/<profile>``) when the
    settings are the named profile's own, the device aside (it changes where a run computes, not
    what); else the student's run ``runs/<profile>-student``, so the book's run is never overwritten."""
    if run_dir:
        return run_dir
    if profile.hash() == load_profile(profile.name, {"device": profile.device}).hash():
        return None
    return student_run_paths(profile).root


def run_paths(profile: Profile | str, run_dir: str | os.PathLike | RunPaths | None = None) -> RunPaths:
    """The paths of a run of ``profile`` (in ``run_dir`` when given, else ``runs/<profile>``)."""
    if isinstance(run_dir, RunPaths):
        return run_dir
    name = profile if isinstance(profile, str) else profile.name
    return RunPaths(Path(run_dir).resolve() if run_dir else runs_root() / name)


@dataclass(frozen=True)
class RecordPaths:
    """A recorded run, ``results/<profile>/``: a run's numbers and figures' data, never weights."""

    root: Path

    metrics = _under_root("metrics.json")  # the run's eval/metrics.json
    report = _under_root("report.json")  # the run's report.json
    expansion = _under_root("expansion.json")  # the run's tokenizer/expansion.json
    base = _under_root("base.json")  # the base model's record (pretraining log)
    stages = _under_root("stages.json")  # every stage's log
    record = _under_root("record.json")  # commit, date, hardware, command

    FILES = ("metrics", "report", "expansion", "base", "stages", "record")

    def complete(self) -> bool:
        return all(getattr(self, name).is_file() for name in self.FILES)


def results_root() -> Path:
    """``$EEVE_RESULTS_DIR`` or ``<project>/results``: the recorded runs."""
    return Path(os.environ.get("EEVE_RESULTS_DIR", PROJECT_ROOT / "results"))


def record_paths(profile_name: str, root: Path | None = None) -> RecordPaths:
    return RecordPaths((root or results_root()) / profile_name)
