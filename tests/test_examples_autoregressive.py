"""The autoregressive missing-pixels example runs with --quick and tells its story in numbers."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import torch
from _helpers import load_example


def test_autoregressive_missing_quick(tmp_path):
    """The own-conditional proposal is exact with one completion, uniform completions land far
    below the exact value (and their own SE hides it), the prior lies between; both figures are
    drawn."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_examples_vae.py: robust to a busy second core
    try:
        res = load_example("autoregressive_missing").main(
            ["--quick", "--out", str(tmp_path), "--seed", "0"]
        )
    finally:
        torch.set_num_threads(before)
    counts, est = res["counts"], res["estimates"]
    for n, exact in enumerate(res["exact"]):
        assert math.isfinite(exact) and exact < 0
        # the posterior as proposal: every weight is p_1(x_bottom), whatever K
        for (value, se), k in zip(est["own conditional"][n], counts, strict=True):
            assert abs(value - exact) < 1e-3 and (k == 1 or se < 1e-3), (k, value, se)
        uniform, uniform_se = est["uniform"][n][-1]
        prior, _ = est["prior"][n][-1]
        # the lecture's point: hundreds of nats low at K=1000, far beyond its stated error
        assert exact - uniform > max(100.0, 10 * uniform_se), (uniform, uniform_se, exact)
        assert abs(prior - exact) < abs(uniform - exact)
        p0, p0_se = res["p0"][n]
        assert math.isfinite(p0) and 0 < p0_se < 1
    assert 0 < res["completion_rmse"] < 0.5
    paths = [Path(p) for p in res["figures"]]
    assert [p.name for p in paths] == [
        "autoregressive_evidence.png",
        "autoregressive_completions.png",
    ]
    for path in paths:
        assert path.parent == tmp_path
        img = mpimg.imread(path)
        assert img.shape[0] > 300 and img.shape[1] > 300
        assert float(np.std(img[..., :3])) > 0.05
