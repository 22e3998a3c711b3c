"""Figures are written, open, and refuse malformed input."""

from __future__ import annotations

import matplotlib.image as mpimg
import pytest
import torch

from ppl_lvm import plots


def test_image_grid_with_mask(tmp_path):
    """A grid of images with hidden pixels is saved as a readable PNG."""
    x = torch.rand(12, 16)
    mask = torch.rand(12, 16) > 0.3
    path = plots.image_grid(x, (4, 4), tmp_path / "grid.png", ncols=6, mask=mask, suptitle="t")
    img = mpimg.imread(path)
    assert img.shape[0] > 40 and img.shape[1] > 100


def test_image_grid_shape_error(tmp_path):
    """Images that do not match image_shape name both shapes."""
    with pytest.raises(ValueError, match=r"must have shape \(M, 16\)"):
        plots.image_grid(torch.rand(3, 15), (4, 4), tmp_path / "g.png")


def test_scatter2d(tmp_path):
    """A labelled 2-D scatter is saved; non-2-D input is refused."""
    path = plots.scatter2d(torch.randn(50, 2), tmp_path / "s.png", labels=torch.arange(50) % 3)
    assert mpimg.imread(path).ndim == 3
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        plots.scatter2d(torch.randn(5, 3), tmp_path / "t.png")


def test_evidence_and_bracket_curves_are_saved_and_open(tmp_path):
    path = plots.evidence_curve(
        [1, 2, 3],
        [-20.0, -17.1, -17.5],
        [0.1, 0.5, 0.4],
        tmp_path / "ev.png",
        exact=[-20.0, -17.13, -17.6],
        elpd=[-15.0, -12.0, -12.5],
        elpd_se=[1.0, 1.2, 1.1],
    )
    assert mpimg.imread(path).ndim == 3
    path = plots.bracket_curve(
        [10, 100, 1000], [-124, -118.8, -118.3], [-110, -117.6, -118.3], tmp_path / "b.png"
    )
    assert mpimg.imread(path).ndim == 3
    with pytest.raises(ValueError, match="one non-zero length"):
        plots.evidence_curve([1, 2], [0.0], [0.1], tmp_path / "bad.png")
