"""Every figure of the book is readable on a phone: at most plots.WIDTH_IN wide, no text smaller than
plots.MIN_FONT_PT, no two texts on top of each other (each figure function, drawn on small data)."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import pytest

matplotlib.use("Agg")

from eeve_lib.book import plots  # noqa: E402
from eeve_lib.method.stages import STAGES  # noqa: E402


def _spread(mean):
    return {"mean": mean, "min": mean * 0.98, "max": mean * 1.02}


def _log(stage):
    return SimpleNamespace(stage=stage, steps=10, losses=[3.0 - 0.1 * k for k in range(10)],
                           validation={"step": [0, 9], "korean": [3.1, 2.9], "english": [2.0, 2.1]})


ARMS = ["seven_stages", "schedule:full_finetune", "schedule:embeddings_only", "init:mean_resizing",
        "init:random", "stage6:lora", "baseline:no_expansion", "baseline:equal_text", "replay:0",
        "replay:0.75"]
FIGURES = {
    "pretraining_curve": lambda: plots.pretraining_curve(
        {"step": list(range(100)), "train_loss": [5 - k / 30 for k in range(100)],
         "validation_step": [0, 50, 99], "validation_loss": [5.0, 3.5, 2.0]}),
    "candidate_lengths": lambda: plots.candidate_lengths([1, 2, 2, 3, 4, 5, 1], [True, False] * 3 + [True]),
    "rank_frequency": lambda: plots.rank_frequency([500, 300, 120, 40, 12, 6, 3, 1], 10, [True] * 5 + [False] * 3),
    "iterations": lambda: plots.iterations([{"number": n, "kept": 900 - n, "dropped": 30 * n,
                                             "singles_added": 5} for n in (1, 2, 3)]),
    "similarity_histogram": lambda: plots.similarity_histogram([0.2 + k / 100 for k in range(60)]),
    "stage_matrix": lambda: plots.stage_matrix(STAGES),
    "stage_losses": lambda: plots.stage_losses([_log(s) for s in STAGES], (3.2, 2.05)),
    "stage_rows": lambda: plots.stage_rows(STAGES[5], n_base=50_295, n_new=8_960, n_padding=41,
                                           counts={"total": 123_456_789}),
    "stage_scores": lambda: plots.stage_scores(
        ["base", "extended"] + [f"stage{s}" for s in STAGES] + ["final"], [9.0, 7.2] + [6.0] * 8,
        [2.0, 2.2] + [2.1] * 8, [28.0, 7.8] + [7.8] * 8, [3.7, 3.9] + [3.9] * 8, "Model by model (profile tiny, seed 1234)"),
    "arm_scores": lambda: plots.arm_scores(ARMS, [_spread(5 + k / 10) for k in range(len(ARMS))],
                                           [_spread(2.1 + k / 100) for k in range(len(ARMS))], (9.0, 2.1),
                                           "Every arm, mean and range over 3 seeds (tiny)"),
    "replay_tradeoff": lambda: plots.replay_tradeoff([0.0, 0.5, 0.75], [_spread(4.9), _spread(5.3), _spread(5.6)],
                                                     [_spread(2.5), _spread(2.2), _spread(2.15)], (9.0, 2.12),
                                                     "English replay (tiny)"),
    "counting_scaling": lambda: plots.counting_scaling(
        [16, 128, 1000], {"counter": [5.1, 5.6, 5.9], "encode_batch": [2.1, 2.0, 2.0], "naive": [0.9, None, None]},
        {"counter": [210, 330, 340], "encode_batch": [95, 96, 96], "naive": [80, None, None]},
        "Counting on 2 cores (2026-01-02)"),
    "mfu_per_stage": lambda: plots.mfu_per_stage(
        {"tiny phi, float32": [0.21, 0.35, 0.3, 0.33, 0.3, 0.45, 0.4],
         "phi-2-shaped phi, bf16 autocast": [0.1, 0.2, None, 0.2, 0.2, 0.3, 0.3],
         "SmolLM2-135M, bfloat16 autocast": [0.3, 0.5, 0.5, 0.55, 0.5, 0.6, 0.58]}, "MFU per stage (2 cores, 2026-12-03)"),
    "headline": lambda: plots.headline({
        "tiny (this build)": [{"arm": a, "seeds": 3, "korean": _spread(0.6 + k / 50), "english": _spread(1.0 + k / 100)}
                              for k, a in enumerate(ARMS)],
        "small": [{"arm": "seven_stages", "seeds": 3, "korean": _spread(0.59), "english": _spread(1.09)}],
        "smol": [{"arm": "seven_stages", "seeds": 2, "korean": _spread(0.78), "english": _spread(0.96)}]}),
}


def test_every_figure_function_is_drawn_here():
    public = {name for name in dir(plots) if getattr(getattr(plots, name), "__wrapped__", None) is not None}
    assert public <= set(FIGURES) | {"bits_per_character", "ablation_bars"}, public - set(FIGURES)


@pytest.mark.parametrize("name", list(FIGURES))
def test_a_figure_is_readable_on_a_phone(name):
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    fig = FIGURES[name]()
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        width, _ = fig.get_size_inches()
        assert width <= plots.WIDTH_IN + 1e-9, f"{name} is {width} inches wide"
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < plots.MIN_FONT_PT]
        assert not small, f"{name}: text below {plots.MIN_FONT_PT} pt: {small[:5]}"
        # what the page shows is the tight box around everything drawn: it must not be much wider
        tight = fig.get_tightbbox(renderer).width
        assert tight <= plots.WIDTH_IN * 1.02, f"{name} draws {tight:.2f} inches wide"
        # no two labels of the same axis on top of each other
        for ax in fig.axes:
            for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
                boxes = [t.get_window_extent(renderer) for t in ticks if t.get_visible() and t.get_text()]
                for a, b in zip(boxes, boxes[1:]):
                    assert not a.overlaps(b), f"{name}: overlapping tick labels"
    finally:
        plt.close(fig)
