"""Live exploration in JupyterLab: controls that redraw a chapter's figure as they move.

Chapter 02 has a threshold slider over the first iteration's candidate counts, chapter 04 a stage
selector over the stages' rows and blocks. Both recompute on data the chapter already holds (the
counts are computed once; a new threshold only compares), so dragging is fast. The figure is an
ordinary output shown with a display id and replaced in place as the control moves: the static
book, executed headless, shows the figure for the default value, and the control itself is
inert there (no widget state is saved). Shown in chapters 02 and 04.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from . import plots


def _live(draw: Callable[[Any], Any], caption: Callable[[Any], str], control, value) -> Any:
    """Show ``control``, then ``caption(value)`` and ``draw(value)``; redraw both when the control moves."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    def figure(v):
        fig = draw(v)
        plt.close(fig)  # shown through the display id only, not again by the inline backend
        return fig

    display(control)
    text = _shown(_Text(caption(value)))
    image = _shown(figure(value))

    def redraw(change) -> None:
        text.update(_Text(caption(change["new"])))
        image.update(figure(change["new"]))

    control.observe(redraw, names="value")
    return control


def _shown(obj):
    """Display ``obj`` with a display id; its handle replaces it in place (outside IPython: shows anew)."""
    from IPython.display import display

    handle = display(obj, display_id=True)
    return handle if handle is not None else _Reshown()


class _Reshown:
    def update(self, obj) -> None:
        from IPython.display import display

        display(obj)


class _Text:
    """Plain text shown as such (a str would be shown with its quotes)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def threshold_choices(counts: Sequence[int], threshold: int, steps: int = 48) -> list[int]:
    """Thresholds for the slider: log-spaced from 1 to just above the largest count, and ``threshold``."""
    top = int(max(counts, default=1)) + 1
    grid = np.unique(np.geomspace(1, max(top, 2), steps).round().astype(int))
    return sorted(set(grid.tolist()) | {int(threshold)})


def kept_summary(counts: np.ndarray, threshold: int) -> str:
    kept = int((counts >= threshold).sum())
    return (f"threshold {threshold:,}: {kept:,} of {len(counts):,} candidates pass the first iteration "
            f"({kept / max(len(counts), 1):.0%}); the loop then re-counts with the kept tokens.")


def threshold_explorer(counts: Sequence[int], threshold: int):
    """Chapter 02: the rank-frequency figure with a slider for the threshold (first iteration's counts)."""
    import ipywidgets as widgets

    counts = np.asarray(counts)
    slider = widgets.SelectionSlider(options=threshold_choices(counts, threshold), value=int(threshold),
                                     description="threshold", continuous_update=True,
                                     layout=widgets.Layout(width="70%"))
    return _live(lambda t: plots.rank_frequency(counts, t, counts >= t), lambda t: kept_summary(counts, t),
                 slider, int(threshold))


def stage_explorer(stages: dict[int, Any], *, n_base: int, n_new: int, n_padding: int, hidden: int,
                   body_params: int, default: int = 1):
    """Chapter 04: a stage selector that redraws which rows and blocks of this run's model train."""
    import ipywidgets as widgets

    from ..method.stages import trainable_counts

    def counts(number: int) -> dict[str, int]:
        return trainable_counts(stages[number], n_base=n_base, n_new=n_new, hidden=hidden, body_params=body_params)

    def caption(number: int) -> str:
        c = counts(number)
        return (f"stage {number}: {c['total']:,} trainable parameters (input embedding {c['input_embedding']:,}, "
                f"output embedding and bias {c['output_embedding']:,}, transformer {c['transformer']:,})")

    selector = widgets.ToggleButtons(options=[(str(n), n) for n in stages], value=default, description="stage",
                                     style={"button_width": "3em"})
    return _live(lambda n: plots.stage_rows(stages[n], n_base=n_base, n_new=n_new, n_padding=n_padding,
                                            counts=counts(n)), caption, selector, default)


__all__ = ["threshold_explorer", "stage_explorer", "threshold_choices", "kept_summary"]
