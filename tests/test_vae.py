"""VAE and ToyVAE: the direct tensor path against Pyro's traced pass, and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from ppl_lvm import datasets, models
from ppl_lvm.core import seeded
from ppl_lvm.inference import log_weights

pytestmark = pytest.mark.usefixtures("float64")


def _data(likelihood, n=6, d=10):
    g = torch.Generator().manual_seed(0)
    if likelihood == "bernoulli":
        x = (torch.rand(n, d, generator=g) > 0.5).double()
    else:
        x = torch.randn(n, d, generator=g)
    mask = torch.rand(n, d, generator=g) > 0.3
    return x, mask


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("mask_input", [False, True])
def test_direct_path_equals_traced_pass(likelihood, masked, mask_input):
    """particle_log_weights gives Pyro's log p and log q on the same particles."""
    torch.manual_seed(0)
    vae = models.VAE(10, 3, (7, 5), likelihood, mask_input=mask_input).double()
    x, mask = _data(likelihood)
    mask = mask if masked else None
    if mask is not None:
        x = torch.where(mask, x, 0.0)  # engines hand models zero-filled data
    with vae.scoped():
        slow = log_weights(vae, x, mask, num_particles=4, fast=False)
        fast = vae.particle_log_weights(x, mask, 4, z=slow.samples["z"])
    torch.testing.assert_close(fast.log_p, slow.log_p, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast.log_q, slow.log_q, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast.log_lik, slow.log_lik, rtol=1e-10, atol=1e-10)


def test_masked_entries_are_never_read():
    """NaN in hidden entries leaves the weights unchanged and finite."""
    vae = models.VAE(10, 3, (7,), "gaussian", mask_input=True).double()
    x, mask = _data("gaussian")
    dirty = x.clone()
    dirty[~mask] = float("nan")
    with seeded(0):
        a = log_weights(vae, dirty, mask, num_particles=5).local
    with seeded(0):
        b = log_weights(vae, x, mask, num_particles=5).local
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_analytic_kl_is_the_kl():
    """analytic_kl equals torch's KL between the encoder's Gaussian and N(0, I)."""
    vae = models.VAE(10, 3, (7,)).double()
    x, _ = _data("bernoulli")
    loc, scale = vae.encode(x)
    q = torch.distributions.Normal(loc, scale)
    p = torch.distributions.Normal(torch.zeros_like(loc), 1.0)
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(vae.analytic_kl(x), expected)


def test_initialize_sets_output_bias_at_the_data():
    """Bernoulli: bias = logit of pixel means; Gaussian: mean and softplus⁻¹ of the spread."""
    x, _ = _data("bernoulli", n=200)
    vae = models.VAE(10, 3, (7,)).double()
    vae.initialize(x, None, seed=0)
    p = x.mean(0).clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(vae.decoder[-1].bias, torch.log(p / (1 - p)))
    xg, _ = _data("gaussian", n=200)
    gv = models.VAE(10, 3, (7,), "gaussian").double()
    gv.initialize(xg, None, seed=0)
    bias = gv.decoder[-1].bias
    torch.testing.assert_close(bias[:10], xg.mean(0))
    torch.testing.assert_close(torch.nn.functional.softplus(bias[10:]), xg.std(0, unbiased=False))


def test_constructor_errors():
    """Bad sizes and likelihoods are named."""
    with pytest.raises(ValueError, match="likelihood must be"):
        models.VAE(4, 2, likelihood="poisson")
    with pytest.raises(ValueError, match="latent_dim must be a positive int"):
        models.VAE(4, 0)
    with pytest.raises(ValueError, match="hidden widths must be positive"):
        models.VAE(4, 2, hidden=(3, 0))


def test_toy_decoder_is_the_lecture_process():
    """ToyVAE.from_params(TOY2D) decodes exactly the data set's mean and variance."""
    toy = models.ToyVAE.from_params(datasets.TOY2D).double()
    z = torch.randn(50, 2)
    loc, scale = toy.decode(z)
    mean, var = datasets.toy2d_mean_and_variance(z)
    torch.testing.assert_close(loc, mean.double(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(scale.pow(2), var.double(), rtol=1e-6, atol=1e-9)


def test_toy_density_by_quadrature_integrates_to_one_and_matches_sampling():
    """The quadrature density integrates to 1 over x, and its mean on data drawn from the
    process agrees with an importance estimate through the exact prior."""
    toy = models.ToyVAE.from_params(datasets.TOY2D).double()
    ticks = torch.linspace(-0.6, 1.6, 90)
    grid = torch.cartesian_prod(ticks, ticks)
    mass = toy.exact_log_evidence(grid, num_grid=120).exp().sum() * float(ticks[1] - ticks[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=0.02)
    x = datasets.load("toy2d", n=20, seed=5).x.double()
    with seeded(0):
        lw = log_weights(toy, x, num_particles=100_000, proposal="prior")
    mc = torch.logsumexp(lw.local, 0) - math.log(100_000)
    torch.testing.assert_close(toy.exact_log_evidence(x), mc, atol=0.05, rtol=0)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_meanfield_terms_equal_the_full_path(likelihood, k):
    """The training step's two terms are the full path's log-likelihood for the same particles
    and the closed-form KL, with and without a mask."""
    x, mask = _data(likelihood)
    vae = models.VAE(10, 3, (7,), likelihood).double()
    with seeded(4):
        log_lik, kl = vae.meanfield_terms(x, mask, k)
    with seeded(4):
        lw = vae.particle_log_weights(x, mask, k)
    assert log_lik.shape == (k, 6) and kl.shape == (6,)
    torch.testing.assert_close(log_lik, lw.log_lik, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kl, vae.analytic_kl(x, mask))


def test_toy_density_default_grid_agrees_with_a_fine_grid():
    """The default 100² quadrature grid matches a 400² one to 1e-4 nats on toy2d data."""
    truth = models.ToyVAE.from_params(datasets.TOY2D).double()
    x, _z = datasets.sample_toy2d(200, seed=5)
    x = x.double()
    torch.testing.assert_close(
        truth.exact_log_evidence(x), truth.exact_log_evidence(x, num_grid=400), rtol=0, atol=1e-4
    )
