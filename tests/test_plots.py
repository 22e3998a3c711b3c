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
