"""examples/binary_features.py runs end to end with --quick, learns features and draws them."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from _helpers import load_example as _load


@pytest.fixture(autouse=True)
def one_thread():
    """The example's tensors are small: on a busy two-core machine a second intra-op thread
    made this run take 144 s instead of 16 s (measured), by synchronisation alone."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_binary_features(tmp_path):
    """Quick run: exact held-out log p(x) far above independent pixels, bounds below it, and a
    figure of the features and coded digits."""
    res = _load("binary_features").main(["--quick", "--out", str(tmp_path), "--seed", "0"])
    assert res["num_features"] == 8 and res["num_train"] == 500 and res["num_test"] == 200
    numbers = ("exact_log_lik", "direct_log_lik", "elbo", "iwae", "independent_log_lik")
    assert all(math.isfinite(res[k]) for k in numbers) and math.isfinite(res["seconds"])
    # a log-probability mass of 784 binary pixels is negative
    assert res["exact_log_lik"] < 0
    # Enumeration and the model's matrix-product path are two exact sums of the same 256
    # states; float32 rounding over 784 pixels stays far below 1e-4 relative
    assert math.isclose(res["exact_log_lik"], res["direct_log_lik"], rel_tol=1e-4)
    # quick runs measured gains of 40.6-44.5 nats over independent pixels at seeds 0-5; a fit
    # whose features collapsed gains under 1, so 20 separates the two with margin
    assert res["exact_log_lik"] > res["independent_log_lik"] + 20
    # the IWAE-100 bound measured 0.17-0.22 nats below exact, with a standard error of the
    # 200-image mean of 0.07-0.11; 0.5 is about 5 standard errors of Monte Carlo noise
    assert res["iwae"] <= res["exact_log_lik"] + 0.5
    # the one-particle ELBO measured about 8 nats below exact (standard error 0.7-0.9), far
    # below the IWAE-100 bound
    assert res["elbo"] < res["iwae"]
    pi = res["feature_probs"]
    assert len(pi) == 8 and all(0 < p < 1 for p in pi)
    codes = np.asarray(res["codes"])
    assert codes.shape == (8, 8) and set(np.unique(codes)) <= {0.0, 1.0}

    paths = [Path(p) for p in res["figures"]]
    assert [p.name for p in paths] == ["binary_features.png"]
    path = paths[0]
    assert path.parent == tmp_path and path.is_file()
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 100
    # a blank (all-white) figure has std 0; drawn digits and features give far more than 0.01
    assert float(np.std(img[..., :3])) > 0.01
