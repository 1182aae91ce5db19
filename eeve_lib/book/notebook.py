"""The first cell of every chapter: load the profile the runner injected, quietly.

Shown at the top of every chapter.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from ..pipeline.paths import RunPaths, run_paths
from ..pipeline.profiles import Profile, load_profile, parse_overrides


def setup(profile: str = "tiny", run_dir: str | None = None, device: str | None = None, seed: int | None = None,
          overrides: str | dict[str, Any] | None = None) -> tuple[Profile, RunPaths]:
    """Validate the parameters, quieten library chatter, and return ``(profile, paths)``."""
    overrides = parse_overrides(overrides)
    if device:
        overrides["device"] = device
    if seed is not None:
        overrides["seed"] = seed
    prof = load_profile(profile, overrides)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    import matplotlib

    matplotlib.rcParams.update({"figure.dpi": 110, "figure.figsize": (7.5, 3.6), "axes.grid": True,
                                "grid.alpha": 0.3, "font.size": 9})
    _use_korean_font(matplotlib)
    return prof, run_paths(prof, run_dir)


def _use_korean_font(matplotlib) -> None:
    """Prefer an installed font with Hangul glyphs, if there is one, for plot labels."""
    from matplotlib import font_manager

    for name in ("NanumGothic", "Noto Sans CJK KR", "Noto Sans KR", "UnDotum", "Baekmuk Gulim"):
        if any(f.name == name for f in font_manager.fontManager.ttflist):
            matplotlib.rcParams["font.family"] = [name, "DejaVu Sans"]
            return
    # Without one, Hangul in labels would render as boxes: plots label tokens by id instead.
    matplotlib.rcParams["axes.unicode_minus"] = False
