"""The VAE examples run end to end with --quick, reach sensible bounds and draw their figures;
``plots.density_contours`` checks its input."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from _helpers import load_example as _load

from ppl_lvm import plots


@pytest.fixture(autouse=True)
def one_thread():
    """Train on one thread. The networks are small, and on a two-core machine two intra-op
    threads sharing a core with another busy process made an epoch 30x slower (measured), where
    one thread loses at most a factor of two on an idle machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(name: str, out: Path) -> dict:
    return _load(name).main(["--quick", "--out", str(out), "--seed", "0"])


def _check_figures(result: dict, out: Path, names: set[str]) -> None:
    """Every figure is the expected file in ``out``, opens as an image and is not blank."""
    paths = [Path(p) for p in result["figures"]]
    assert {p.name for p in paths} == names
    for path in paths:
        assert path.parent == out and path.is_file()
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 100
        # a blank (all-white) figure has std 0; digits, points or contours give far more
        assert float(np.std(img[..., :3])) > 0.01


def test_vae_mnist(tmp_path):
    """The MNIST VAE learns beyond independent pixels, and its IWAE bound is above its ELBO."""
    res = _run("vae_mnist", tmp_path)
    assert (res["num_train"], res["num_test"], res["epochs"]) == (2000, 500, 3)
    assert res["num_particles"] == 50
    for key in ("test_elbo", "test_iwae", "pixels_log_lik", "latent2_test_elbo"):
        # log-probabilities of binary pixels: finite and negative
        assert math.isfinite(res[key]) and res[key] < 0, key
    # Quick runs over seeds 0-5 measured (nats per test digit): ELBO -160.0 to -163.8, the
    # IWAE-50 bound 3.6 to 5.0 above it, independent pixels -202.9 to -207.6, the 2-D VAE's
    # ELBO -172.6 to -178.2, and the minibatch ELBO rising from about -209 to about -164.
    # The IWAE-K bound is at least the ELBO in expectation; 0.5 nats allows for the Monte Carlo
    # noise of a 500-digit mean, and a gap of 20 would mean a broken bound.
    assert res["test_elbo"] - 0.5 <= res["test_iwae"] <= res["test_elbo"] + 20
    # the latent code explains ~40 nats per digit beyond the pixel means (the decoder's start)
    assert res["test_elbo"] > res["pixels_log_lik"] + 20
    assert res["latent2_test_elbo"] > res["pixels_log_lik"] + 10
    # training moved: the minibatch bound rose by ~45 nats over 60 steps
    assert res["train_elbo_last"] > res["train_elbo_first"] + 20
    _check_figures(
        res, tmp_path, {"vae_reconstructions.png", "vae_samples.png", "vae_latent_space.png"}
    )


def test_vae_toy2d(tmp_path):
    """The fitted ToyVAE's held-out density comes close to the true one, far above a Gaussian."""
    res = _run("vae_toy2d", tmp_path)
    assert (res["num_train"], res["num_test"], res["epochs"]) == (1500, 500, 25)
    true, learned, gauss = (
        res["true_log_density"],
        res["learned_log_density"],
        res["gaussian_log_density"],
    )
    assert all(math.isfinite(v) for v in (true, learned, gauss, res["test_iwae"]))
    # Quick runs over seeds 0-9 measured (mean held-out log-density, nats): the truth -0.19 to
    # -0.29, the fitted model 0.04-0.11 below it, one 2-D Gaussian 0.60-0.68 below it.
    # The true density beats the naive baseline by far more than the split-to-split variation.
    assert true > gauss + 0.4
    # close to the truth: within 0.2 nats (at most 0.11 measured), and not above it by more
    # than the sampling noise of 500 held-out points
    assert true - 0.2 < learned < true + 0.05
    assert learned > gauss + 0.3  # measured 0.51 or more
    # the IWAE-1000 bound sits below the exact value (at most 0.01 below, measured); a bound
    # above it by more than Monte Carlo noise would mean the quadrature or the bound is wrong
    assert learned - 0.05 <= res["test_iwae"] <= learned + 0.02
    _check_figures(res, tmp_path, {"toy2d_density.png"})


def _grid_and_panels(n: int = 30) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    ticks = torch.linspace(-2.0, 2.0, n)
    gy, gx = torch.meshgrid(ticks, ticks, indexing="ij")
    standard = -0.5 * (gx**2 + gy**2) - math.log(2 * math.pi)
    holed = standard.clone()
    holed[0, 0] = -math.inf  # a zero density somewhere is allowed
    return ticks, {"standard normal": standard, "with a hole": holed}


def test_density_contours_draws(tmp_path):
    """Two panels with data points and a -inf entry give a readable, non-blank PNG."""
    ticks, panels = _grid_and_panels()
    pts = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    path = plots.density_contours(ticks, ticks, panels, tmp_path / "d.png", points=pts)
    assert path == tmp_path / "d.png"
    img = mpimg.imread(path)
    assert img.shape[1] > img.shape[0]  # side by side
    assert float(np.std(img[..., :3])) > 0.01


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, p: (t, t, {"a": p["standard normal"][:-1]}, {}), r"shape \(29, 30\)"),
        (lambda t, p: (t, t, {"a": p["standard normal"] * float("nan")}, {}), "NaN"),
        (lambda t, p: (t.flip(0), t, p, {}), "grid_x must be 1-D and strictly increasing"),
        (lambda t, p: (t, t, {}, {}), "log_densities is empty"),
        (lambda t, p: (t, t, p, {"points": torch.zeros(5, 3)}), r"points must have shape"),
        (lambda t, p: (t, t, p, {"floor": 0.0}), "floor must be positive"),
        (lambda t, p: (t, t, p, {"levels": 1}), "levels must be an int >= 2"),
    ],
)
def test_density_contours_refuses_bad_input(tmp_path, change, message):
    """Malformed grids, panels or options are refused with a message, and nothing is saved."""
    ticks, panels = _grid_and_panels()
    gx, gy, dens, options = change(ticks, panels)
    with pytest.raises(ValueError, match=message):
        plots.density_contours(gx, gy, dens, tmp_path / "bad.png", **options)
    assert not (tmp_path / "bad.png").exists()
