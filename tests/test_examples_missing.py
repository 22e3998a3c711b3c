"""The missing-pixels example runs end to end with --quick and draws its figure."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import torch
from _helpers import load_example


def test_missing_pixels(tmp_path):
    """Every model's completion beats filling in the training mean; the figure is drawn."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_examples_vae.py: robust to a busy second core
    try:
        res = load_example("missing_pixels").main(
            ["--quick", "--out", str(tmp_path), "--seed", "0"]
        )
    finally:
        torch.set_num_threads(before)
    rmse = res["rmse"]
    assert (res["num_train"], res["num_test"]) == (1000, 200)
    assert all(math.isfinite(v) and 0 < v < 1 for v in rmse.values())
    baseline = rmse["mean imputation"]
    # quick run, seed 0: mean 0.2485, KNN 0.2080, mixture 0.2005, VAE (continuous Bernoulli)
    # 0.2215, VAE (50%) 0.2325
    for name, value in rmse.items():
        if name != "mean imputation":
            assert value < baseline, (name, value, baseline)
    # the encoder is a usable proposal: more than a couple of effective particles per digit
    # (quick run, seed 0: median 2.05 of 200, a zero-filled encoder is a poor proposal); a
    # degenerate proposal gives 1
    assert res["ess_median"] > 2
    (path,) = (Path(p) for p in res["figures"])
    assert path.name == "missing_pixels_completions.png" and path.parent == tmp_path
    img = mpimg.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 300
    assert float(np.std(img[..., :3])) > 0.05
