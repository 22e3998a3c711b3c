"""The mixture family as models: parameters, initialisation, validation, the Bayesian variant."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO
from pyro.optim import Adam

from ppl_lvm import models
from ppl_lvm.inference import Enumeration
from ppl_lvm.inference._weights import log_weights
from ppl_lvm.models.mixture_base import _select, kmeans_plusplus


def test_set_parameters_round_trip_and_shapes():
    """Parameters set in scikit-learn's conventions read back unchanged, for every covariance."""
    k, d = 3, 2
    w = torch.tensor([0.2, 0.3, 0.5])
    m = torch.randn(k, d)
    covs = {
        "diag": torch.rand(k, d) + 0.1,
        "spherical": torch.rand(k) + 0.1,
        "full": torch.tensor([[2.0, 0.3], [0.3, 1.0]]).expand(k, d, d).clone(),
    }
    for cov, c in covs.items():
        g = models.GaussianMixture(d, num_components=k, covariance=cov).set_parameters(w, m, c)
        torch.testing.assert_close(g.weights_, w)
        torch.testing.assert_close(g.means_, m)
        torch.testing.assert_close(g.covariances_, c)
    with pytest.raises(
        ValueError, match=r"expected weights \(3,\), means \(3, 2\) and covariances"
    ):
        models.GaussianMixture(d, num_components=k).set_parameters(w, m, torch.ones(k))


def test_fitted_attributes_are_copies():
    """Mutating means_ does not touch the model."""
    g = models.GaussianMixture(2, num_components=2)
    g.means_.add_(5.0)
    assert torch.all(g.means_ == 0)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (
            lambda: models.GaussianMixture(2, num_components=0),
            "num_components must be a positive int",
        ),
        (
            lambda: models.GaussianMixture(2, num_components=2, covariance="tied"),
            "covariance must be one of 'diag', 'full'",
        ),
        (
            lambda: models.GaussianMixture(2, num_components=2, reg_covar=-1.0),
            "reg_covar must be >= 0",
        ),
        (
            lambda: models.CategoricalMixture(3, num_components=2, num_categories=1),
            "num_categories must be an int >= 2",
        ),
        (
            lambda: models.BernoulliMixture(3, num_components=2, num_init=0),
            "num_init must be a positive int",
        ),
    ],
)
def test_constructor_errors(make, pattern):
    """Bad constructor arguments are named."""
    with pytest.raises(ValueError, match=pattern):
        make()


def test_kmeans_plusplus_is_seeded_and_spreads_out():
    """Same seed, same seeds; the seeds land in distinct, well-separated blobs."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = centres.repeat_interleave(50, 0) + 0.1 * torch.randn(200, 2, generator=g)
    a = kmeans_plusplus(x, None, 4, torch.Generator().manual_seed(3))
    b = kmeans_plusplus(x, None, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert len(set((a // 50).tolist())) == 4  # one seed per blob
    with pytest.raises(ValueError, match="cannot seed 5 components from only 4"):
        kmeans_plusplus(x[:4], None, 5, torch.Generator())


def test_initialize_is_reproducible():
    """initialize with the same seed gives identical parameters; another seed differs."""
    x = torch.randn(100, 3)
    a, b, c = (models.GaussianMixture(3, num_components=4) for _ in range(3))
    a.initialize(x, None, seed=1)
    b.initialize(x, None, seed=1)
    c.initialize(x, None, seed=2)
    assert torch.equal(a.means_, b.means_)
    assert not torch.equal(a.means_, c.means_)


def test_select_gathers_per_particle_parameters():
    """Components are picked per particle when the globals carry a particle dim."""
    params = torch.arange(2 * 3 * 4.0).reshape(2, 1, 3, 4)  # (S=2, 1, K=3, D=4)
    z = torch.tensor([[0, 2, 1], [1, 1, 0]])  # (S, N=3)
    out = _select(params, z, 1)
    assert out.shape == (2, 3, 4)
    for s in range(2):
        for n in range(3):
            assert torch.equal(out[s, n], params[s, 0, z[s, n]])
    flat = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(_select(flat, z, 1), flat[z])


@pytest.mark.parametrize(
    "model, x, pattern",
    [
        (
            models.BernoulliMixture(3, num_components=2),
            torch.tensor([[0.0, 0.5, 1.0]]),
            "binary data",
        ),
        (
            models.CategoricalMixture(3, num_components=2, num_categories=4),
            torch.tensor([[0.0, 4.0, 1.0]]),
            "codes 0..3",
        ),
        (
            models.CategoricalMixture(3, num_components=2, num_categories=4),
            torch.tensor([[0.0, 1.5, 1.0]]),
            "codes 0..3",
        ),
    ],
)
def test_fit_refuses_values_outside_the_support(model, x, pattern):
    """A Bernoulli mixture wants 0/1 and a categorical one integer codes; fit says so."""
    with pytest.raises(ValueError, match=pattern):
        Enumeration().fit(model, x.expand(4, 3), method="em")


def test_bayesian_sites_and_guide():
    """bayesian=True makes the globals latent sites with priors and a guide over them."""
    g = models.GaussianMixture(2, num_components=3, covariance="full", bayesian=True)
    x = torch.randn(10, 2)
    sites = g.sites(x)
    assert [k for k, s in sites.items() if s.latent and not s.local] == [
        "weights",
        "locs",
        "scales",
        "corr_tril",
    ]
    assert sites["z"].local and sites["z"].discrete
    guide_sites = g.sites(x, which="guide")
    assert set(guide_sites) == {"weights", "locs", "scales", "corr_tril"}


def test_bayesian_mixture_learns_with_traceenum_elbo():
    """SVI with TraceEnum_ELBO on the Bayesian mixture recovers two well-separated means."""
    pyro.set_rng_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(100, 1, generator=g) - 3, torch.randn(100, 1, generator=g) + 3])
    gmm = models.GaussianMixture(
        1, num_components=2, covariance="diag", bayesian=True, prior_scale=5.0
    )
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    with gmm.scoped():
        gmm.guide(x)  # creates the guide's parameters
        svi = SVI(gmm.model, gmm.guide, Adam({"lr": 0.05}), elbo)
        losses = [svi.step(x) for _ in range(600)]
        locs = gmm._auto_guide.median(x)["locs"].reshape(-1)
    assert losses[-1] < losses[0]
    assert sorted(locs.tolist()) == pytest.approx([-3.0, 3.0], abs=0.35)


def test_bayesian_mixture_under_vectorised_particles():
    """Globals drawn per particle are used per particle: the weighting routine runs."""
    gmm = models.BernoulliMixture(3, num_components=2, bayesian=True)
    x = (torch.rand(5, 3) > 0.5).float()

    def guide(x, mask=None):
        gmm.guide(x, mask)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Categorical(torch.ones(2) / 2))

    story = models.from_functions(gmm.model, guide)
    with gmm.scoped():
        lw = log_weights(story, x, num_particles=7)
    assert lw.local.shape == (7, 5) and lw.global_log_p.shape == (7,)
    assert lw.has_global_latents and torch.isfinite(lw.joint).all()
