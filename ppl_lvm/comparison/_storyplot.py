"""The figure of a story comparison: log p(x) per story and engine, and elpd_loo beside it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_stories"]

# how each kind of number is drawn (the colour is the engine's)
_MARKERS = {"exact": "D", "estimate": "o", "lower_bound": "^"}


def _offsets(num_engines: int) -> list[float]:
    """Horizontal offsets of the engines around each story's tick, within ±0.3."""
    if num_engines == 1:
        return [0.0]
    step = 0.6 / (num_engines - 1)
    return [-0.3 + j * step for j in range(num_engines)]


def _panel(
    ax: Axes,
    rows: Sequence[dict[str, Any]],
    stories: Sequence[str],
    engines: Sequence[str],
    value: str,
    err: str,
    times: float,
) -> bool:
    """One point per row with a value, ± ``times`` × its error; returns whether any was drawn."""
    drawn, labelled, bracketed = False, set(), False
    offsets = dict(zip(engines, _offsets(len(engines)), strict=True))
    for r in rows:
        if r[value] is None:
            continue
        j = engines.index(r["engine"])
        xpos = stories.index(r["story"]) + offsets[r["engine"]]
        colour = f"C{j % 10}"
        se = r[err]
        ax.errorbar(
            [xpos],
            [r[value]],
            yerr=None if not se else [times * se],
            fmt=_MARKERS.get(r["kind"], "o"),
            color=colour,
            capsize=4,
            label=None if r["engine"] in labelled else r["engine"],
        )
        labelled.add(r["engine"])
        drawn = True
        if value == "estimate" and r["lower"] is not None and r["upper"] is not None:
            # a bracket (an AIS lower and upper bound) is drawn as the interval it is
            ax.vlines(
                xpos + 0.04,
                r["lower"],
                r["upper"],
                color=colour,
                lw=5,
                alpha=0.35,
                label=None if bracketed else "bracket (lower, upper)",
            )
            bracketed = True
    ax.set_xticks(range(len(stories)), list(stories), rotation=20, ha="right")
    ax.set_xlim(-0.6, len(stories) - 0.4)
    ax.grid(axis="y", alpha=0.3)
    return drawn


def plot_stories(
    rows: Sequence[dict[str, Any]],
    stories: Sequence[str],
    engines: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str,
) -> Path:
    """Two panels over the stories: log p(x) of all data by each engine (exact ◆, estimate ●
    ± 2 SE, lower bound ▲, a bracket as a shaded bar), and elpd_loo ± its SE.

    Parameters
    ----------
    rows : sequence of dict
        :attr:`StoryComparison.rows`.
    stories, engines : sequence of str
        The story names and engine labels, in order; an engine's colour is its index.
    path : path-like
        Where the PNG goes; its folder is created.
    title : str

    Returns
    -------
    pathlib.Path
    """
    width = max(8.0, 1.6 * len(stories) + 4.0)
    fig = Figure(figsize=(width, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    if _panel(left, rows, stories, engines, "estimate", "stderr", 2.0):
        left.legend(fontsize=7, loc="best")
    left.set_ylabel("log p(x) of all data (± 2 SE)")
    left.set_title("log evidence; log BF = difference", fontsize=9)
    if not _panel(right, rows, stories, engines, "elpd_loo", "loo_se", 1.0):
        right.text(0.5, 0.5, "no LOO: see the notes", transform=right.transAxes, ha="center")
    right.set_ylabel("elpd_loo (± its SE)")
    right.set_title("PSIS-LOO from each engine's posterior", fontsize=9)
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
