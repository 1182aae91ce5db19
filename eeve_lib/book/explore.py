"""Live exploration in JupyterLab: controls that redraw a chapter's figure as they move.

Chapter 02 has a threshold slider over the first iteration's candidate counts, chapter 04 a stage
selector over the stages' rows and blocks. Both recompute on data the chapter already holds (the
counts are computed once; a new threshold only compares), so dragging is fast. An explorer shows
its control and a one-line summary where it is made, and its figure where ``.figure()`` is called,
in the next cell: that cell carries the figure's number and caption in the book (a cell's caption
applies to each of its outputs, so the figure needs a cell of its own). The figure is an ordinary
output shown with a display id and replaced in place as the control moves: the static book,
executed headless, shows it for the default value, and the control itself is inert there (no
widget state is saved). Shown in chapters 02 and 04.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..method.stages import trainable_counts
from . import plots


class Explorer:
    """A control, the summary line it rewrites and the figure it redraws as it moves."""

    def __init__(self, draw: Callable[[Any], Any], caption: Callable[[Any], str], control, value):
        self.control, self._draw, self._caption, self._image = control, draw, caption, None
        from IPython.display import display

        display(control)
        self._text = _shown(_Text(caption(value)))
        control.observe(self._redraw, names="value")

    @property
    def value(self):
        return self.control.value

    @value.setter
    def value(self, new) -> None:
        self.control.value = new

    @property
    def options(self):
        return self.control.options

    def figure(self) -> None:
        """Show the figure for the control's value here; it is redrawn in place from now on."""
        self._image = _shown(self._figure(self.control.value))

    def _figure(self, value):
        import matplotlib.pyplot as plt

        fig = self._draw(value)
        plt.close(fig)  # shown through the display id only, not again by the inline backend
        return fig

    def _redraw(self, change) -> None:
        self._text.update(_Text(self._caption(change["new"])))
        if self._image is not None:
            self._image.update(self._figure(change["new"]))


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
    return Explorer(lambda t: plots.rank_frequency(counts, t, counts >= t), lambda t: kept_summary(counts, t),
                    slider, int(threshold))


def stage_explorer(stages: dict[int, Any], *, n_base: int, n_new: int, n_padding: int, hidden: int,
                   body_params: int, default: int = 1):
    """Chapter 04: a stage selector that redraws which rows and blocks of this run's model train."""
    import ipywidgets as widgets


    def counts(number: int) -> dict[str, int]:
        return trainable_counts(stages[number], n_base=n_base, n_new=n_new, hidden=hidden, body_params=body_params)

    def caption(number: int) -> str:
        c = counts(number)
        return (f"stage {number}: {c['total']:,} trainable parameters (input embedding {c['input_embedding']:,}, "
                f"output embedding and bias {c['output_embedding']:,}, transformer {c['transformer']:,})")

    selector = widgets.ToggleButtons(options=[(str(n), n) for n in stages], value=default, description="stage",
                                     style={"button_width": "3em"})
    return Explorer(lambda n: plots.stage_rows(stages[n], n_base=n_base, n_new=n_new, n_padding=n_padding,
                                               counts=counts(n)), caption, selector, default)


__all__ = ["Explorer", "threshold_explorer", "stage_explorer", "threshold_choices", "kept_summary"]
