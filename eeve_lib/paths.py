"""The layout of a run: ``runs/<profile>/`` and what lives in it.

Users and tests rely on this layout, so it is defined once, here::

    runs/<profile>/base/                 the English base model and its tokenizer (HF format)
    runs/<profile>/tokenizer/            the extended tokenizer (HF format) + expansion.json
    runs/<profile>/stages/stage<N>/      the model after stage N (HF format, with tokenizer)
    runs/<profile>/model/                the final model (HF format, with tokenizer)
    runs/<profile>/train/                per-step losses and resumable checkpoints
    runs/<profile>/ablations/<arm>/      ablation arms' final models
    runs/<profile>/eval/metrics.json     every model's scores
    runs/<profile>/executed/             the executed notebooks and their logs
    runs/<profile>/report.json           how each chapter ran (time, memory, device, versions)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .profiles import PROJECT_ROOT, Profile


@dataclass(frozen=True)
class RunPaths:
    """Every path of one run; see the module docstring for the layout."""

    root: Path

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def stages(self) -> Path:
        return self.root / "stages"

    def stage(self, number: int) -> Path:
        return self.stages / f"stage{number}"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def ablations(self) -> Path:
        return self.root / "ablations"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def metrics(self) -> Path:
        return self.eval / "metrics.json"

    @property
    def executed(self) -> Path:
        return self.root / "executed"

    @property
    def report(self) -> Path:
        return self.root / "report.json"


def runs_root() -> Path:
    """``$EEVE_RUNS_DIR`` or ``<project>/runs``."""
    return Path(os.environ.get("EEVE_RUNS_DIR", PROJECT_ROOT / "runs"))


def run_paths(profile: Profile | str, run_dir: str | os.PathLike | None = None) -> RunPaths:
    """The paths of a run of ``profile`` (in ``run_dir`` when given, else ``runs/<profile>``)."""
    name = profile if isinstance(profile, str) else profile.name
    return RunPaths(Path(run_dir).resolve() if run_dir else runs_root() / name)
