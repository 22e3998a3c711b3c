"""Matplotlib figures. Every function draws on its own ``Figure`` (no pyplot state, no GUI
backend), saves it to ``path`` and returns that path."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

__all__ = [
    "bracket_curve",
    "cluster_means",
    "density_contours",
    "elpd_curve",
    "evidence_curve",
    "image_grid",
    "membership_bars",
    "scatter2d",
]


def _as_numpy(a: torch.Tensor | np.ndarray) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def image_grid(
    images: torch.Tensor | np.ndarray,
    image_shape: tuple[int, int],
    path: str | os.PathLike,
    *,
    ncols: int = 10,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
) -> Path:
    """Draw flattened images on a grid.

    Parameters
    ----------
    images : array of shape (M, H*W)
        Pixel intensities, drawn in grey from 0 (white) to 1 (black).
    image_shape : (H, W)
    path : path-like
        Where the PNG goes.
    ncols : int
        Images per row.
    titles : sequence of str, optional
        One caption per image.
    suptitle : str, optional
    mask : array of shape (M, H*W), bool, optional
        Hidden pixels (False) are drawn in a flat colour so missingness is visible.

    Returns
    -------
    pathlib.Path
    """
    imgs = _as_numpy(images)
    if imgs.ndim != 2 or imgs.shape[1] != image_shape[0] * image_shape[1]:
        raise ValueError(
            f"images must have shape (M, {image_shape[0] * image_shape[1]}) for image_shape "
            f"{tuple(image_shape)}, got {imgs.shape}."
        )
    m = imgs.shape[0]
    ncols = max(1, min(ncols, m))
    nrows = math.ceil(m / ncols)
    fig = Figure(figsize=(ncols * 0.9, nrows * 0.9 + (0.4 if suptitle else 0.0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    hidden = None if mask is None else ~_as_numpy(mask).astype(bool)
    # hidden pixels get a pale blue so that "missing" never reads as "blank paper"
    cmap = colormaps["Greys"].with_extremes(bad="#bcd7ef")
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= m:
            continue
        img = imgs[i].reshape(image_shape).astype(float)
        if hidden is not None:
            img = np.ma.masked_array(img, hidden[i].reshape(image_shape))
        ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    return _save(fig, path)


def scatter2d(
    x: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    labels: torch.Tensor | np.ndarray | None = None,
    title: str | None = None,
    axis_labels: tuple[str, str] = ("$x_1$", "$x_2$"),
) -> Path:
    """Scatter plot of 2-D points, coloured by label when given.

    Parameters
    ----------
    x : array of shape (N, 2)
    path : path-like
    labels : array of shape (N,), optional
    title : str, optional
    axis_labels : (str, str)

    Returns
    -------
    pathlib.Path
    """
    pts = _as_numpy(x)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"x must have shape (N, 2), got {pts.shape}.")
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.subplots()
    if labels is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.5)
    else:
        lab = _as_numpy(labels)
        sc = ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.6, c=lab, cmap="tab10")
        fig.colorbar(sc, ax=ax)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    if title:
        ax.set_title(title)
    return _save(fig, path)


def membership_bars(
    probs: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """STRUCTURE-style membership plot: one stacked bar of cluster probabilities per datum.

    Each datum n is a thin bar whose K segments are p(z_n = k | x_n), coloured by cluster k.
    Data are grouped by their true label, and within a group sorted by their dominant
    cluster (then by how sure that assignment is), so a clean clustering shows as one solid
    colour per group and mixed or misassigned data stand out. Thin vertical lines separate the
    groups, and each group is named under its block.

    Parameters
    ----------
    probs : array of shape (N, K)
        Posterior membership probabilities; every row is non-negative and sums to 1.
    labels : array of shape (N,)
        True group of each datum (e.g. its population); any sortable values.
    path : path-like
        Where the PNG goes.
    title : str, optional

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``probs`` is not (N, K) probability rows or ``labels`` is not (N,) for the same N.
    """
    p = _as_numpy(probs).astype(float)
    lab = _as_numpy(labels)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs must have shape (N, K) with N, K >= 1, got {p.shape}.")
    if lab.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {lab.shape}.")
    if lab.shape[0] != p.shape[0]:
        raise ValueError(
            f"probs has {p.shape[0]} rows but labels has {lab.shape[0]} entries; pass one "
            "label per row of probs."
        )
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        raise ValueError(
            "every row of probs must hold non-negative probabilities that sum to 1 (e.g. "
            "Posterior.probs['z'])."
        )
    n, k = p.shape
    groups, group_of = np.unique(lab, return_inverse=True)
    # Cluster indices are arbitrary (label switching), so rank each cluster by the group where
    # it holds the largest share of the members: within a group the matching cluster then comes
    # first and data claimed by other groups' clusters line up after it, in group order.
    share = np.zeros((len(groups), k))
    np.add.at(share, group_of, p)
    share /= np.bincount(group_of)[:, None]
    home = share.argmax(0)
    rank = np.empty(k, dtype=int)
    rank[np.lexsort((-share.max(0), home))] = np.arange(k)
    dominant = p.argmax(1)
    # lexsort sorts by its last key first: group, then dominant cluster, then surest first
    order = np.lexsort((-p[np.arange(n), dominant], rank[dominant], group_of))
    p, group_of = p[order], group_of[order]

    if k <= 10:
        colours = colormaps["tab10"](np.arange(k))
    elif k <= 20:
        colours = colormaps["tab20"](np.arange(k))
    else:
        colours = colormaps["hsv"](np.arange(k) / k)
    fig = Figure(figsize=(min(12.0, max(5.0, 0.04 * n + 2.0)), 2.8))
    ax = fig.subplots()
    pos = np.arange(n)
    bottom = np.zeros(n)
    for c in range(k):
        # width 1 and no edges, so neighbouring bars touch and thin bars stay visible
        ax.bar(
            pos,
            p[:, c],
            bottom=bottom,
            width=1.0,
            color=colours[c],
            linewidth=0,
            label=f"cluster {c}",
        )
        bottom += p[:, c]
    starts = np.searchsorted(group_of, np.arange(len(groups)))
    ends = np.append(starts[1:], n)
    for s in starts[1:]:
        ax.axvline(s - 0.5, color="black", linewidth=1.0)
    ax.set_xticks((starts + ends - 1) / 2, [str(g) for g in groups])
    ax.tick_params(axis="x", length=0)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(0, 1)
    ax.set_xlabel("one bar per datum, grouped by true label")
    ax.set_ylabel("$p(z_n = k \\mid x_n)$")
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False, borderaxespad=0
    )
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def cluster_means(
    means: torch.Tensor | np.ndarray,
    image_shape: tuple[int, int],
    clusters: torch.Tensor,
    labels: torch.Tensor,
    path: str | os.PathLike,
    *,
    suptitle: str | None = None,
) -> Path:
    """Component means as images, titled with each cluster's majority label and size.

    Components are shown in order of their majority label, since a mixture's own order is
    arbitrary (label switching).

    Parameters
    ----------
    means : array of shape (K, H*W)
    image_shape : (H, W)
    clusters : torch.Tensor of shape (N,), int
        The cluster of each datum (e.g. MAP assignments).
    labels : torch.Tensor of shape (N,), int
        True labels, used only for the titles.
    path : path-like
    suptitle : str, optional

    Returns
    -------
    pathlib.Path
    """
    from ..metrics import cluster_majority

    k = len(means)
    majority = cluster_majority(clusters, labels, k)
    sizes = torch.bincount(clusters, minlength=k).tolist()
    titles = [
        f"'{m}' · n={n}" if m is not None else "empty" for m, n in zip(majority, sizes, strict=True)
    ]
    order = sorted(range(k), key=lambda c: (majority[c] is None, majority[c] or 0, -sizes[c]))
    imgs = np.clip(_as_numpy(means)[order].astype(float), 0.0, 1.0)
    return image_grid(
        imgs,
        image_shape,
        path,
        ncols=min(k, 10),
        titles=[titles[c] for c in order],
        suptitle=suptitle,
    )


def density_contours(
    grid_x: torch.Tensor | np.ndarray,
    grid_y: torch.Tensor | np.ndarray,
    log_densities: dict[str, torch.Tensor | np.ndarray],
    path: str | os.PathLike,
    *,
    points: torch.Tensor | np.ndarray | None = None,
    levels: int = 12,
    floor: float = 8.0,
    suptitle: str | None = None,
) -> Path:
    """Side-by-side filled contours of 2-D log-densities on a grid, on one shared colour scale.

    Parameters
    ----------
    grid_x : array of shape (G1,)
        Increasing x-coordinates of the grid columns.
    grid_y : array of shape (G2,)
        Increasing y-coordinates of the grid rows.
    log_densities : dict of str to array of shape (G2, G1)
        One panel per entry, titled by its key: log p at (grid_x[j], grid_y[i]) in entry
        ``[i, j]`` (the layout of ``numpy.meshgrid(grid_x, grid_y)``). ``-inf`` is allowed.
    path : path-like
        Where the PNG goes.
    points : array of shape (N, 2), optional
        Data drawn as faint dots on every panel.
    levels : int
        Contour levels.
    floor : float
        Nats below the highest value, over all panels, where the colour scale stops; lower
        values are drawn in the lowest colour. A density's far tails would otherwise take up
        the whole scale.
    suptitle : str, optional

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If the grid is not two increasing 1-D arrays, a panel's shape does not match it, a panel
        holds NaN or +inf, there are no panels, ``points`` is not (N, 2), ``levels < 2`` or
        ``floor <= 0``.
    """
    from matplotlib.ticker import MaxNLocator

    gx, gy = _as_numpy(grid_x).astype(float), _as_numpy(grid_y).astype(float)
    for label, g in (("grid_x", gx), ("grid_y", gy)):
        if g.ndim != 1 or g.shape[0] < 2 or not np.all(np.diff(g) > 0):
            raise ValueError(f"{label} must be 1-D and strictly increasing with >= 2 points.")
    if not log_densities:
        raise ValueError("log_densities is empty; pass at least one {title: grid} panel.")
    panels = {}
    for title, values in log_densities.items():
        v = _as_numpy(values).astype(float)
        if v.shape != (gy.shape[0], gx.shape[0]):
            raise ValueError(
                f"panel {title!r} has shape {v.shape}, but the grid needs (len(grid_y), "
                f"len(grid_x)) = {(gy.shape[0], gx.shape[0])}."
            )
        if np.isnan(v).any() or np.isposinf(v).any():
            raise ValueError(f"panel {title!r} holds NaN or +inf; log-densities must be < inf.")
        panels[title] = v
    pts = None
    if points is not None:
        pts = _as_numpy(points)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points must have shape (N, 2), got {pts.shape}.")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}.")
    if not floor > 0:
        raise ValueError(f"floor must be positive, got {floor!r}.")

    top = max(float(v.max()) for v in panels.values())
    if not np.isfinite(top):
        raise ValueError("every panel is -inf everywhere; there is no density to draw.")
    bounds = np.linspace(top - floor, top, levels + 1)
    fig = Figure(figsize=(4.2 * len(panels) + 0.8, 4.2 + (0.3 if suptitle else 0.0)))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    filled = None
    for ax, (title, v) in zip(axes, panels.items(), strict=True):
        # clip, so that everything below the floor gets the lowest colour rather than a hole
        clipped = np.clip(v, top - floor, top)
        filled = ax.contourf(gx, gy, clipped, levels=bounds, cmap="viridis")
        ax.contour(gx, gy, clipped, levels=bounds[1:-1], colors="white", linewidths=0.4)
        if pts is not None:
            ax.scatter(pts[:, 0], pts[:, 1], s=1.5, c="black", alpha=0.15, linewidths=0)
        ax.set_xlim(gx[0], gx[-1])
        ax.set_ylim(gy[0], gy[-1])
        ax.set_aspect("equal")
        ax.set_title(title)
        ax.set_xlabel("$x_1$")
    axes[0].set_ylabel("$x_2$")
    # round ticks: the level boundaries themselves fall on arbitrary values
    fig.colorbar(filled, ax=list(axes), label="log p(x)", shrink=0.9, ticks=MaxNLocator(nbins=6))
    if suptitle:
        fig.suptitle(suptitle)
    return _save(fig, path)


def elpd_curve(
    ks: Sequence[int] | np.ndarray,
    elpd: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    *,
    waic: Sequence[float] | np.ndarray | None = None,
    waic_se: Sequence[float] | np.ndarray | None = None,
    title: str = "Choosing the number of components",
) -> Path:
    """Expected log predictive density against the number of components K.

    Parameters
    ----------
    ks : array of shape (M,)
        The numbers of components.
    elpd : array of shape (M,)
        PSIS-LOO elpd of each K (higher is better).
    se : array of shape (M,)
        Its standard error; drawn as ± one se.
    path : path-like
        Where the PNG goes.
    waic, waic_se : arrays of shape (M,), optional
        WAIC's elpd and standard error, drawn beside LOO.
    title : str

    Returns
    -------
    pathlib.Path
    """
    ks, elpd, se = (np.asarray(a, dtype=float) for a in (ks, elpd, se))
    if not ks.shape == elpd.shape == se.shape or ks.ndim != 1 or ks.size == 0:
        raise ValueError(
            f"ks, elpd and se must be 1-D of one length, got shapes {ks.shape}, {elpd.shape}, "
            f"{se.shape}."
        )
    fig = Figure(figsize=(4.8, 3.4))
    ax = fig.subplots()
    ax.errorbar(ks, elpd, yerr=se, marker="o", capsize=3, label="PSIS-LOO ± se")
    if waic is not None:
        waic = np.asarray(waic, dtype=float)
        yerr = None if waic_se is None else np.asarray(waic_se, dtype=float)
        # a small offset keeps the two error bars apart where they overlap
        ax.errorbar(ks + 0.08, waic, yerr=yerr, marker="s", capsize=3, alpha=0.7, label="WAIC")
    best = int(np.argmax(elpd))
    ax.axvline(ks[best], color="grey", linestyle=":", linewidth=1)
    ax.annotate(
        f"best K = {ks[best]:g}",
        (ks[best], elpd[best]),
        xytext=(6, -14),
        textcoords="offset points",
    )
    ax.set_xticks(ks)
    ax.set_xlabel("number of components K")
    ax.set_ylabel("elpd (higher is better)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


# (below _save, which they use)
from .evidence import bracket_curve, evidence_curve  # noqa: E402
