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

__all__ = ["image_grid", "scatter2d"]


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
