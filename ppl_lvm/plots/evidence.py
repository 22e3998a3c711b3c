"""Figures of log p(x): an evidence curve beside LOO, and a BDMC bracket against the number of
intermediate distributions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from . import _save

__all__ = ["bracket_curve", "evidence_curve"]


def _vectors(names: str, *arrays) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=float) for a in arrays]
    if any(a.ndim != 1 or a.shape != out[0].shape for a in out) or out[0].size == 0:
        shapes = ", ".join(str(a.shape) for a in out)
        raise ValueError(f"{names} must be 1-D of one non-zero length, got shapes {shapes}.")
    return out


def evidence_curve(
    ks: Sequence[int] | np.ndarray,
    log_evidence: Sequence[float] | np.ndarray,
    stderr: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    *,
    exact: Sequence[float] | np.ndarray | None = None,
    elpd: Sequence[float] | np.ndarray | None = None,
    elpd_se: Sequence[float] | np.ndarray | None = None,
    title: str = "Evidence and LOO against K",
) -> Path:
    """The log evidence of each model (± 2 SE, and the exact value where known) beside its
    PSIS-LOO elpd (± SE).

    Parameters
    ----------
    ks : array of shape (M,)
        What tells the models apart (the number of components).
    log_evidence, stderr : arrays of shape (M,)
        Each model's joint log p(x) and its standard error.
    path : path-like
        Where the PNG goes.
    exact : array of shape (M,), optional
        The exact log p(x), drawn as a dashed line.
    elpd, elpd_se : arrays of shape (M,), optional
        PSIS-LOO, drawn in a second panel.
    title : str

    Returns
    -------
    pathlib.Path
    """
    ks, ev, se = _vectors("ks, log_evidence and stderr", ks, log_evidence, stderr)
    panels = 2 if elpd is not None else 1
    fig = Figure(figsize=(4.6 * panels, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, panels))
    axes[0].errorbar(ks, ev, yerr=2 * se, fmt="o", capsize=3, label="estimate ± 2 SE")
    if exact is not None:
        (exact,) = _vectors("exact", exact)
        axes[0].plot(ks, exact, "k--", label="exact")
    axes[0].set(xlabel="K", ylabel="log p(x)", title="evidence", xticks=ks)
    axes[0].legend(fontsize=8)
    if elpd is not None:
        (loo,) = _vectors("elpd", elpd)
        yerr = None if elpd_se is None else _vectors("elpd_se", elpd_se)[0]
        axes[1].errorbar(ks, loo, yerr=yerr, fmt="s", capsize=3, color="C1")
        axes[1].set(xlabel="K", ylabel="elpd_loo", title="PSIS-LOO", xticks=ks)
    fig.suptitle(title)
    return _save(fig, path)


def bracket_curve(
    steps: Sequence[int] | np.ndarray,
    lower: Sequence[float] | np.ndarray,
    upper: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "BDMC bracket",
) -> Path:
    """Forward (lower) and reverse (upper) AIS per datum against the number of intermediate
    distributions T, and their gap on a log scale with the 1-nat line.

    Parameters
    ----------
    steps : array of shape (M,)
        T of each run.
    lower, upper : arrays of shape (M,)
        log p(x) per datum from forward and reverse AIS.
    path : path-like
    title : str

    Returns
    -------
    pathlib.Path
    """
    steps, lo, up = _vectors("steps, lower and upper", steps, lower, upper)
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(steps, lo, "o-", label="forward AIS (lower)")
    left.plot(steps, up, "s-", label="reverse AIS (upper)")
    left.set(xscale="log", xlabel="intermediate distributions T", ylabel="log p(x) per datum")
    left.legend(fontsize=8)
    # a gap at or below zero is Monte Carlo noise around a closed bracket
    right.plot(steps, np.clip(up - lo, 1e-4, None), "o-")
    right.axhline(1.0, ls="--", color="grey")
    right.set(xscale="log", yscale="log", xlabel="T", ylabel="gap per datum (nats)")
    fig.suptitle(title)
    return _save(fig, path)
