"""The figures of the chapters, as functions (so that tests can call them on small runs).

Labels are in English: a machine without a Hangul font would draw Korean as empty boxes, so
Korean text appears in the chapters' tables instead.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .results import ENGLISH_TARGET


#: Every figure is at most this wide and no text in it is smaller than MIN_FONT_PT: at the 110 dpi
#: the chapters draw at (notebook.FIGURE_DPI), a page of 400 px shows a figure at about 340 px, and
#: its smallest text at about 11 px. tests/test_figures.py checks both on every figure function, and
#: tests/test_browser.py the size each figure is shown at.
WIDTH_IN, MIN_FONT_PT = 5.0, 12
STYLE = {"font.size": MIN_FONT_PT, "axes.titlesize": MIN_FONT_PT + 1, "axes.labelsize": MIN_FONT_PT,
         "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT,
         "legend.title_fontsize": MIN_FONT_PT, "figure.titlesize": MIN_FONT_PT + 1}


def readable(draw):
    """Draw a figure with the book's sizes (STYLE): for a phone as much as for a desktop."""
    import functools

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        import matplotlib.pyplot as plt

        with plt.rc_context(STYLE):
            return draw(*args, **kwargs)

    return drawn


def _figure(nrows: int = 1, width: float = WIDTH_IN, height: float = 3.4):
    """One panel, or ``nrows`` stacked (side by side they would shrink below a phone's reading size)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, 1, figsize=(width, height * nrows), constrained_layout=True)
    return fig, axes


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    out = np.empty_like(v)
    for i in range(len(v)):
        lo = max(0, i + 1 - window)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


@readable
def pretraining_curve(log: dict[str, list]):
    """Chapter 00: English training and validation loss of the base model."""
    fig, ax = _figure()
    ax.plot(log["step"], log["train_loss"], alpha=0.3, label="train (per step)")
    ax.plot(log["step"], smooth(log["train_loss"], 20), label="train (moving average)")
    ax.plot(log["validation_step"], log["validation_loss"], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title("Pretraining the English base model")
    ax.legend()
    return fig


@readable
def candidate_lengths(lengths_chars: Sequence[int], with_space: Sequence[bool]):
    """Chapter 01: how many characters the candidates have, split by leading space."""
    fig, ax = _figure()
    lengths = np.asarray(lengths_chars)
    space = np.asarray(with_space, dtype=bool)
    bins = np.arange(0.5, max(lengths.max(initial=1), 1) + 1.5)
    ax.hist([lengths[space], lengths[~space]], bins=bins, stacked=True,
            label=["word-initial (leading space)", "inside a word"])
    ax.set_xlabel("characters per candidate token")
    ax.set_ylabel("candidates")
    ax.set_title("Candidate tokens by length")
    ax.legend()
    return fig


@readable
def rank_frequency(counts: Sequence[int], threshold: int, kept: Sequence[bool]):
    """Chapter 02: candidates' frequencies by rank (log-log) with the threshold line."""
    fig, ax = _figure()
    counts = np.asarray(counts)
    order = np.argsort(-counts, kind="stable")
    c, k = counts[order], np.asarray(kept)[order]
    ranks = np.arange(1, len(c) + 1)
    ax.loglog(ranks[k], np.maximum(c[k], 0.8), ".", ms=3, label="kept")
    ax.loglog(ranks[~k], np.maximum(c[~k], 0.8), ".", ms=3, label="dropped")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold ({threshold})")
    ax.set_xlabel("rank")
    ax.set_ylabel("occurrences in the Korean training split")
    ax.set_title("Candidates by rank (first iteration)")
    ax.legend()
    return fig


@readable
def iterations(history: Sequence[dict[str, int]]):
    """Chapter 02: kept, dropped and added tokens per iteration of the loop."""
    fig, ax = _figure()
    n = [h["number"] for h in history]
    ax.bar(n, [h["kept"] for h in history], label="kept")
    ax.bar(n, [h["dropped"] for h in history], bottom=[h["kept"] for h in history], label="dropped")
    ax.bar(n, [h["singles_added"] for h in history],
           bottom=[h["kept"] + h["dropped"] for h in history], label="single characters added")
    ax.set_xlabel("iteration")
    ax.set_ylabel("tokens")
    ax.set_xticks(n)
    ax.set_title("The frequency loop, iteration by iteration")
    ax.legend()
    return fig


@readable
def similarity_histogram(similarities: Sequence[float]):
    """Chapter 03: cosine similarity of new input rows to their pieces' rows."""
    fig, ax = _figure()
    ax.hist(np.asarray(similarities), bins=30)
    ax.set_xlabel("cosine similarity of a new row\nto its pieces' rows (mean)")
    ax.set_ylabel("new tokens")
    ax.set_title("New input rows sit among their pieces")
    return fig


@readable
def stage_matrix(stages: dict[int, Any]):
    """Chapter 04: which parameter blocks train in each stage."""
    fig, ax = _figure(height=3.6)
    blocks = ["input: base rows", "input: new rows", "transformer", "output: base rows", "output: new rows"]
    grid = np.zeros((len(blocks), len(stages)))
    for j, s in enumerate(stages.values()):
        grid[0, j] = s.input_rows == "all"
        grid[1, j] = s.input_rows in ("new", "all")
        grid[2, j] = s.transformer
        grid[3, j] = s.output_rows == "all"
        grid[4, j] = s.output_rows in ("new", "all")
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    trains, frozen = "tab:green", "0.88"
    ax.imshow(grid, cmap=ListedColormap([frozen, trains]), vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(stages)), [str(n) for n in stages])
    ax.set_xlabel("stage")
    ax.set_yticks(range(len(blocks)), blocks)
    ax.set_xticks(np.arange(-0.5, len(stages)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(blocks)), minor=True)
    ax.grid(which="minor", color="white", lw=2)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="minor", length=0)
    ax.set_title("What trains in each of the seven stages")
    ax.legend(handles=[Patch(color=trains, label="trains"), Patch(color=frozen, label="frozen")],
              loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    return fig


@readable
def stage_losses(logs: Sequence[Any], base_validation: tuple[float, float] | None = None):
    """Chapter 04: training loss per step and validation losses, stage after stage."""
    fig, (ax1, ax2) = _figure(nrows=2, height=3.0)
    offset = 0
    for log in logs:
        steps = np.arange(offset, offset + len(log.losses))
        ax1.plot(steps, log.losses, lw=1, label=f"stage {log.stage}")
        v = log.validation
        xs = [offset + s for s in v["step"]]
        ax2.plot(xs, v["korean"], "o-", color="tab:red", ms=3, label="Korean" if log is logs[0] else None)
        ax2.plot(xs, v["english"], "s-", color="tab:blue", ms=3, label="English" if log is logs[0] else None)
        for ax in (ax1, ax2):
            ax.axvline(offset, color="grey", lw=0.5)
        offset += log.steps
    if base_validation:
        ax2.plot([0], [base_validation[0]], "o", color="tab:red", mfc="white")
        ax2.plot([0], [base_validation[1]], "s", color="tab:blue", mfc="white")
    ax1.set_xlabel("step (all stages)")
    ax1.set_ylabel("training loss (nats per token)")
    ax1.legend(ncol=2)
    ax2.set_xlabel("step (all stages)")
    ax2.set_ylabel("validation loss (nats per token)")
    ax2.legend()
    ax1.set_title("Korean training loss")
    ax2.set_title("Held-out loss (open markers: before stage 1)")
    return fig


@readable
def bits_per_character(names: Sequence[str], korean: Sequence[float], english: Sequence[float], title: str):
    """Chapter 05: Korean and English bits per character for a list of models."""
    fig, ax = _figure(height=3.8)
    x = np.arange(len(names))
    ax.plot(x, korean, "o-", color="tab:red", label="Korean (held out)")
    ax.plot(x, english, "s-", color="tab:blue", label="English (held out)")
    ax.set_xticks(x, names, rotation=90)
    ax.set_ylabel("bits per character (lower is better)")
    ax.set_title(title)
    ax.legend()
    return fig


@readable
def ablation_bars(names: Sequence[str], korean: Sequence[float], english: Sequence[float], title: str):
    """Chapter 05: ablation arms side by side."""
    fig, ax = _figure(height=3.8)
    x = np.arange(len(names))
    ax.bar(x - 0.2, korean, 0.4, color="tab:red", label="Korean")
    ax.bar(x + 0.2, english, 0.4, color="tab:blue", label="English")
    ax.set_xticks(x, names, rotation=90)
    ax.set_ylabel("bits per character (lower is better)")
    ax.set_title(title)
    ax.legend()
    return fig


@readable
def stage_rows(stage: Any, *, n_base: int, n_new: int, n_padding: int, counts: dict[str, int] | None = None):
    """Chapter 04: one stage drawn on the model: which rows of the embeddings and whether the transformer train.

    Each embedding is a column of its rows (base tokens, new tokens, padding), the transformer a
    block between them; green trains, grey is frozen (kept out of the optimizer), padding never
    trains. Segment heights follow the row counts, with a floor so that small ones stay visible.
    """
    from matplotlib.patches import Patch

    fig, ax = _figure(height=3.8)
    trains, frozen = "tab:green", "0.85"
    total = max(n_base + n_new + n_padding, 1)
    floor = 0.17 * total
    segments = [("base rows", n_base), ("new rows", n_new), ("padding rows", n_padding)]
    heights = [max(n, floor) if n else 0 for _, n in segments]
    scale = total / max(sum(heights), 1)
    for x, rows in ((0, stage.input_rows), (2, stage.output_rows)):
        bottom = total
        for (label, n), h in zip(segments, heights):
            if not n:
                continue
            h *= scale
            bottom -= h
            train = label != "padding rows" and (rows == "all" or (rows == "new" and label == "new rows"))
            ax.bar(x, h, bottom=bottom, width=0.8, color=trains if train else frozen, edgecolor="white",
                   hatch="//" if label == "padding rows" else None)
            ax.text(x, bottom + h / 2, f"{label}\n{n:,}", ha="center", va="center",
                    color="white" if train else "black")
    ax.bar(1, total, width=0.8, color=trains if stage.transformer else frozen, edgecolor="white")
    ax.text(1, total / 2, "transformer\n(every\nlayer)", ha="center", va="center",
            color="white" if stage.transformer else "black")
    ax.set_xticks([0, 1, 2], ["input\nembedding", "transformer", "output\nembedding\n+ bias"])
    ax.set_yticks([])
    ax.set_ylim(0, total)
    ax.grid(False)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    title = f"Stage {stage.number}: {stage.name}"
    if counts is not None:
        title += f"\n{counts['total']:,} trainable parameters"
    ax.set_title(title)
    ax.legend(handles=[Patch(color=trains, label="trains"), Patch(color=frozen, label="frozen")],
              loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return fig


@readable
def stage_scores(names: Sequence[str], korean: Sequence[float], english: Sequence[float],
                 korean_uniform: Sequence[float], english_uniform: Sequence[float], title: str):
    """Chapter 05: bits per character model by model (base, extended before training, each stage),
    Korean on a log axis (it falls by an order of magnitude) and English on its own axis, each
    beside the uniform guess over that model's vocabulary."""
    fig, (ko, en) = _figure(nrows=2, height=3.2)
    x = np.arange(len(names))
    for ax, values, uniform, colour, language in ((ko, korean, korean_uniform, "tab:red", "Korean"),
                                                 (en, english, english_uniform, "tab:blue", "English")):
        ax.plot(x, values, "o-", color=colour, label=f"{language} (held out)")
        ax.plot(x, uniform, ":", color="grey", label="uniform guess")
        ax.set_xticks(x, names, rotation=90)
        ax.set_title(language)
        ax.legend()
    ko.set_yscale("log")
    ko.set_ylabel("bits per character (log scale)")
    en.set_ylabel("bits per character")
    fig.suptitle(title)
    return fig


@readable
def arm_scores(labels: Sequence[str], korean: Sequence[dict], english: Sequence[dict], base: tuple[float, float],
               title: str):
    """Chapter 05: every arm as a point (Korean, English bits per character), mean over seeds with
    bars from the lowest to the highest seed; the base model as a dashed cross. Lower-left is better."""
    fig, ax = _figure(height=5.6)
    for k, (label, ko, en) in enumerate(zip(labels, korean, english)):
        ax.errorbar(ko["mean"], en["mean"], xerr=[[ko["mean"] - ko["min"]], [ko["max"] - ko["mean"]]],
                    yerr=[[en["mean"] - en["min"]], [en["max"] - en["mean"]]], fmt="o", capsize=3,
                    color=f"C{k % 10}", label=label)
    ax.axhline(base[1], color="grey", ls="--", lw=1, label="base model's English")
    ax.set_xlabel("Korean bits per character")
    ax.set_ylabel("English bits per character")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    return fig


@readable
def replay_tradeoff(shares: Sequence[float], korean: Sequence[dict], english: Sequence[dict],
                    base: tuple[float, float], title: str):
    """Chapter 05: Korean and English bits per character against the English-replay share (mean,
    min-max over seeds), the base model's English as a dashed line and 1.05 times it dotted."""
    fig, (ko, en) = _figure(nrows=2, height=3.0)
    order = np.argsort(shares)
    s = np.asarray(shares)[order]
    for ax, rows, colour, language in ((ko, korean, "tab:red", "Korean"), (en, english, "tab:blue", "English")):
        mean = np.array([rows[i]["mean"] for i in order])
        low = np.array([rows[i]["min"] for i in order])
        high = np.array([rows[i]["max"] for i in order])
        ax.plot(s, mean, "o-", color=colour)
        ax.fill_between(s, low, high, color=colour, alpha=0.2)
        ax.set_xlabel("English replay share")
        ax.set_ylabel("bits per character")
        ax.set_title(language)
    en.axhline(base[1], color="grey", ls="--", lw=1, label="base model")
    en.axhline(1.05 * base[1], color="grey", ls=":", lw=1, label="1.05 x base")
    en.legend()
    fig.suptitle(title)
    return fig


@readable
def headline(runs: dict[str, list[dict[str, Any]]]):
    """The Results page's first figure: for every run and arm, Korean against English bits per
    character as multiples of the run's base model (mean, bars from the lowest to the highest seed).
    Left of 1 Korean improved; below the dotted line English stayed within the book's target.
    Sized for a phone: one panel, large text, the legend below the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D


    markers = "osD^v<>"
    colours = {"seven_stages": "tab:red", "baseline:no_expansion": "tab:blue"}
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 5.4), constrained_layout=True)
    for k, (run, points) in enumerate(runs.items()):
        for p in points:
            ko, en = p["korean"], p["english"]
            colour = colours.get(p["arm"], "0.6")
            ax.errorbar(ko["mean"], en["mean"], xerr=[[ko["mean"] - ko["min"]], [ko["max"] - ko["mean"]]],
                        yerr=[[en["mean"] - en["min"]], [en["max"] - en["mean"]]],
                        fmt=markers[k % len(markers)], color=colour, ms=7 if p["arm"] in colours else 5,
                        capsize=2, lw=1, zorder=3 if p["arm"] in colours else 2)
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.axhline(ENGLISH_TARGET, color="k", lw=0.8, ls=":")
    ax.set_xlabel("Korean bits per character / base's")
    ax.set_ylabel("English bits per character / base's")
    handles = [Line2D([], [], color="0.3", marker=markers[k % len(markers)], ls="", label=run)
               for k, run in enumerate(runs)]
    handles += [Line2D([], [], color=c, marker="o", ls="", label=arm.replace("baseline:", ""))
                for arm, c in colours.items()]
    handles += [Line2D([], [], color="0.6", marker="o", ls="", label="other arms"),
                Line2D([], [], color="k", ls=":", label=f"English target ({ENGLISH_TARGET}x)")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2,
              frameon=False)
    return fig


@readable
def counting_scaling(megabytes: Sequence[float], speed: dict[str, Sequence[float | None]],
                     memory: dict[str, Sequence[float | None]], title: str):
    """The Performance page: throughput (MB/s) and peak memory (MB of the process tree) of each
    counting method against the corpus size, both on log-scaled sizes; a method measured at some
    sizes only (None elsewhere) is drawn where it was measured."""
    fig, (top, bottom) = _figure(nrows=2, height=3.0)
    x = np.asarray(megabytes, dtype=float)
    for k, name in enumerate(speed):
        for ax, values in ((top, speed[name]), (bottom, memory.get(name))):
            if values is None:
                continue
            v = np.array([np.nan if y is None else y for y in values], dtype=float)
            ax.plot(x, v, "os^Dv"[k % 5] + "-", color=f"C{k % 10}", label=name)
    for ax in (top, bottom):
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{m / 1000:g} GB" if m >= 1000 else f"{m:g} MB" for m in x])
        ax.minorticks_off()
        ax.set_xlabel("corpus size")
        ax.set_ylim(bottom=0)
    top.set_ylabel("MB/s (higher is better)")
    top.set_title("Throughput")
    if speed:
        highest = max((v for values in speed.values() for v in values if v is not None), default=1.0)
        top.set_ylim(0, highest * 1.7)  # room above the lines for the legend
        top.legend(loc="upper left", ncol=2)
    bottom.set_ylabel("peak memory (MB)")
    bottom.set_title("Peak memory of the process tree")
    fig.suptitle(title)
    return fig


@readable
def mfu_per_stage(series: dict[str, Sequence[float | None]], title: str):
    """The Performance page: model FLOPs utilisation (percent of the matmul peak in the step's dtype)
    of stages 1 to 7, one line per model and dtype; a stage not measured (None) is left out."""
    fig, ax = _figure(height=5.6)
    stages = np.arange(1, 8)
    for k, (name, values) in enumerate(series.items()):
        v = np.array([np.nan if y is None else 100 * y for y in values], dtype=float)
        ax.plot(stages, v, "os^Dvp"[k % 6] + "-", color=f"C{k % 10}", label=name)
    ax.axhline(50, color="0.5", linestyle=":", linewidth=1)
    ax.set_xticks(stages)
    ax.set_xlabel("stage")
    ax.set_ylabel("% of matmul peak")
    highest = max((100 * y for values in series.values() for y in values if y is not None), default=50.0)
    ax.set_ylim(0, max(50.0, highest) * 1.1)  # the 50% line always in view
    if series:  # below the axes: six lines leave no corner of the plot free on a phone's width
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    ax.set_title(title)
    return fig
