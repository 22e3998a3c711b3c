"""AnnealedImportanceSampling: Pyro's exact cases, local and global latents, guides, masks,
the bidirectional bracket, and its refusals."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoNormal

from ppl_lvm import models
from ppl_lvm.inference import (
    SVI,
    AnnealedImportanceSampling,
    ImportanceSampling,
    UnsupportedModelError,
    create,
)

pytestmark = pytest.mark.usefixtures("float64")


def ais(**kw) -> AnnealedImportanceSampling:
    kw.setdefault("num_steps", 100)
    kw.setdefault("num_chains", 32)
    kw.setdefault("step_size", 0.3)
    return AnnealedImportanceSampling(**kw)


# -- Pyro's exact cases: conjugate global latents (tests/infer/test_conjugate_gradients.py and
# the SVI tutorials' Beta-Bernoulli), each written as there, with mask=None -------------------
def normal_normal(x, mask=None):
    loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("obs", dist.Normal(loc, 1.0), obs=x)


def poisson_gamma(x, mask=None):
    rate = pyro.sample("rate", dist.Gamma(1.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("obs", dist.Poisson(rate), obs=x)


def beta_bernoulli(x, mask=None):
    f = pyro.sample("latent_fairness", dist.Beta(1.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("obs", dist.Bernoulli(f), obs=x)


def _closed_form(name: str):
    if name == "normal_normal":
        x = torch.zeros(50)
        # x ~ N(0, I + 11ᵀ) with the mean integrated out
        mvn = dist.MultivariateNormal(torch.zeros(50), torch.eye(50) + torch.ones(50, 50))
        return normal_normal, x, float(mvn.log_prob(x)), -47.91283948
    if name == "poisson_gamma":
        x = torch.tensor([1.0, 2.0, 3.0])
        # Gamma(1, 1) prior: Γ(1 + Σx) / (1 + n)^(1 + Σx) / Π x!
        s = float(x.sum())
        exact = (
            math.lgamma(1 + s) - (1 + s) * math.log(1 + len(x)) - float(torch.lgamma(x + 1).sum())
        )
        return poisson_gamma, x, exact, -5.6097160
    x = torch.tensor([0.0, 1.0, 1.0, 1.0])
    exact = math.lgamma(4) + math.lgamma(2) - math.lgamma(6)  # B(1 + 3, 1 + 1) / B(1, 1)
    return beta_bernoulli, x, exact, -2.9957323


@pytest.mark.parametrize("name", ["normal_normal", "poisson_gamma", "beta_bernoulli"])
def test_pyros_exact_cases_lie_within_three_standard_errors(name):
    """The joint evidence of a continuous global latent: the closed form (the number Pyro's
    cases quote, checked here) within 3 SE of 32 chains."""
    fn, x, exact, pyros = _closed_form(name)
    assert exact == pytest.approx(pyros, abs=1e-6)
    ev = ais().log_evidence(fn, x, seed=0)
    assert ev.per_datum is None and ev.kind == "estimate" and ev.stderr.dim() == 0
    assert 0 < float(ev.stderr) < 0.5
    assert abs(ev.total - exact) < 3 * float(ev.stderr), (ev.total, exact, ev.stderr)


@pytest.mark.parametrize("name", ["normal_normal", "poisson_gamma", "beta_bernoulli"])
def test_pyros_exact_cases_through_importance_sampling(name):
    """The same cases through ImportanceSampling from the prior (one weight per draw of the
    global for the whole data set): within 3 SE at K = 20,000."""
    fn, x, exact, _ = _closed_form(name)
    ev = ImportanceSampling("prior", 20000).log_evidence(fn, x, seed=0)
    assert ev.per_datum is None and ev.stderr.dim() == 0
    assert abs(ev.total - exact) < 3 * float(ev.stderr), (ev.total, exact, ev.stderr)


def local(x, mask=None):
    """z_n ~ N(0, 1), x_nd ~ N(z_n, 1): log p(x_n) = N(x_n; 0, I + 11ᵀ) over observed d."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        lik = dist.Normal(z.unsqueeze(-1), 1.0)
        if mask is not None:
            lik = lik.mask(mask)
        pyro.sample("x", lik.to_event(1), obs=x)


def _exact_local(x, mask):
    out = []
    for row, m in zip(x, mask, strict=True):
        d = int(m.sum())
        mvn = dist.MultivariateNormal(torch.zeros(d), torch.eye(d) + torch.ones(d, d))
        out.append(mvn.log_prob(row[m]))
    return torch.stack(out)


def test_local_latents_give_per_datum_estimates_and_masks_are_honoured():
    x = torch.linspace(-2.0, 2.0, 12).reshape(6, 2)
    mask = torch.ones(6, 2, dtype=torch.bool)
    mask[1, 0] = mask[4, 1] = False
    ev = ais().log_evidence(local, x, mask, seed=1)
    exact = _exact_local(x, mask)
    assert ev.per_datum.shape == (6,) and ev.factorises
    assert (ev.per_datum - exact).abs().le(4 * ev.stderr).all(), (ev.per_datum, exact, ev.stderr)
    # the masked entry's value plays no part
    x2 = x.clone()
    x2[1, 0] = 100.0
    ev2 = ais().log_evidence(local, x2, mask, seed=1)
    torch.testing.assert_close(ev2.per_datum, ev.per_datum)


@pytest.mark.parametrize("guide_cls", [AutoNormal, AutoDiagonalNormal])
def test_a_trained_guide_is_a_proposal(guide_cls):
    """From AutoNormal (per datum) and AutoDiagonalNormal (one vector over all data: a joint
    evidence), trained by SVI: within 4 SE of the exact evidence."""
    x = torch.linspace(-2.0, 2.0, 8)[:, None]
    pyro.clear_param_store()
    story = models.from_functions(local, guide_cls(local))
    SVI("elbo", lr=0.05).fit(story, x, steps=300, seed=0, progress=False)
    ev = ais(proposal="guide", num_steps=50).log_evidence(story, x, seed=0)
    exact = float(_exact_local(x, torch.ones_like(x, dtype=torch.bool)).sum())
    assert ev.factorises == (guide_cls is AutoNormal)
    assert abs(ev.total - exact) < 4 * ev.total_stderr + 1e-3, (ev.total, exact)


def test_fit_trains_the_guide_by_the_elbo():
    """AIS evaluates; its fit is the ELBO's, through SVI's driver: the same seed gives SVI's
    numbers."""
    x = torch.linspace(-2.0, 2.0, 8)[:, None]
    pyro.clear_param_store()
    ours = ais(proposal="guide").fit(
        models.from_functions(local, AutoNormal(local)), x, steps=50, lr=0.05, seed=0
    )
    pyro.clear_param_store()
    svi = SVI("elbo", lr=0.05, batch_size=100).fit(
        models.from_functions(local, AutoNormal(local)), x, steps=50, seed=0, progress=False
    )
    assert ours.objective == "elbo" and ours.num_steps == 50
    torch.testing.assert_close(ours.history, svi.history)


def test_the_guide_start_beats_the_prior_start_at_the_same_cost():
    x = torch.tensor([[4.0], [-4.0], [0.5]])
    pyro.clear_param_store()
    story = models.from_functions(local, AutoNormal(local))
    SVI("elbo", lr=0.05).fit(story, x, steps=400, seed=0, progress=False)
    prior = ais(num_steps=10).log_evidence(story, x, seed=0)
    guide = ais(proposal="guide", num_steps=10).log_evidence(story, x, seed=0)
    assert guide.total_stderr < prior.total_stderr


def test_a_built_in_model_against_its_exact_evidence():
    """Probabilistic PCA, whose log p(x_n) is Gaussian: AIS from the prior within 4 SE."""
    torch.manual_seed(0)
    ppca = models.LinearGaussian(dim=4, latent_dim=2)
    x = torch.randn(5, 4)
    exact = ppca.exact_log_evidence(x)
    ev = ais(num_steps=150).log_evidence(ppca, x, seed=0)
    assert (ev.per_datum - exact.to(ev.per_datum.dtype)).abs().le(4 * ev.stderr + 1e-3).all()


def test_the_posterior_is_the_weighted_final_chains():
    """Normal-Normal: the weighted mean of the chains' loc is the exact posterior mean
    Σx / (n + 1); with 32 chains its error is about sd / sqrt(32) = 0.025."""
    x = torch.linspace(0.0, 2.0, 15)
    post = ais().posterior(normal_normal, x, seed=0)
    assert post.samples["loc"].shape == (32,) and post.log_weights.shape == (32,)
    assert post.log_lik.shape == (32, 15)
    w = post.normalized_weights()
    mean = float((w * post.samples["loc"]).sum())
    sd = 1 / math.sqrt(len(x) + 1)
    assert mean == pytest.approx(float(x.sum()) / (len(x) + 1), abs=4 * sd / math.sqrt(32))
    draws = ais().posterior(normal_normal, x, num_samples=100, seed=0)
    assert draws.log_weights is None and draws.samples["loc"].shape == (100,)


def test_the_bracket_holds_the_exact_evidence_and_closes():
    """BDMC on data simulated from Normal-Normal: lower <= exact <= upper (within 3 SE each),
    with a gap under half a nat for 20 data and 200 steps."""
    b = ais(num_steps=200, num_chains=16).bracket(normal_normal, 20, like=torch.zeros(1), seed=3)
    assert b.x.shape == (20,) and set(b.latents) == {"loc"}
    cov = torch.eye(20) + torch.ones(20, 20)
    exact = float(dist.MultivariateNormal(torch.zeros(20), cov).log_prob(b.x))
    assert b.lower.total <= exact + 3 * b.lower.total_stderr
    assert b.upper.total >= exact - 3 * b.upper.total_stderr
    assert -3 * (b.lower.total_stderr + b.upper.total_stderr) < float(b.gap) < 0.5


def test_the_bracket_of_local_latents_is_per_datum():
    b = ais(num_steps=100, num_chains=8).bracket(local, 6, like=torch.zeros(1, 3), seed=0)
    assert b.x.shape == (6, 3) and b.lower.per_datum.shape == (6,)
    exact = float(_exact_local(b.x, torch.ones(6, 3, dtype=torch.bool)).sum())
    assert (
        b.lower.total - 4 * b.lower.total_stderr
        <= exact
        <= b.upper.total + 4 * b.upper.total_stderr
    )


def test_the_bracket_of_a_built_in_model_needs_no_template():
    b = ais(num_steps=20, num_chains=4).bracket(models.LinearGaussian(3, 1), 5, seed=0)
    assert b.x.shape == (5, 3) and math.isfinite(float(b.gap))


def test_same_seed_same_numbers():
    x = torch.tensor([0.3, -1.0, 2.0])
    a = ais(num_steps=20).log_evidence(local, x[:, None], seed=7)
    b = ais(num_steps=20).log_evidence(local, x[:, None], seed=7)
    c = ais(num_steps=20).log_evidence(local, x[:, None], seed=8)
    torch.testing.assert_close(a.per_datum, b.per_datum, rtol=0, atol=0)
    assert not torch.equal(a.per_datum, c.per_datum)


def test_registered_as_ais():
    engine = create("ais")
    assert isinstance(engine, AnnealedImportanceSampling) and engine.proposal == "prior"


def _discrete(x, mask=None):
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(c, 1.0), obs=x)


def _mixed(x, mask=None):
    loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(c + loc, 1.0), obs=x)


def _no_latent(x, mask=None):
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)


@pytest.mark.parametrize(
    "fn, advice",
    [
        (_discrete, "Enumeration"),
        (_mixed, "ImportanceSampling\\(proposal='prior'\\)"),
        (_no_latent, "Enumeration"),
    ],
)
def test_refusals_name_an_engine_that_accepts_the_story(fn, advice):
    with pytest.raises(UnsupportedModelError, match=advice):
        ais().log_evidence(fn, torch.zeros(3))


def _no_broadcast(x, mask=None):
    """Plain indexing that assumes z has shape (N,): fine for one draw, not for a batch."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z[:, None], 1.0).to_event(1), obs=x)


def test_a_story_that_does_not_broadcast_over_chains_is_refused_with_advice():
    """AIS's chains are one batch; the advice names the engine with a per-particle path, and
    that engine gives the exact answer within 4 SE."""
    x = torch.linspace(-1.0, 1.0, 6).reshape(3, 2)
    with pytest.raises(UnsupportedModelError, match="ImportanceSampling\\(proposal='prior'\\)"):
        ais().log_evidence(_no_broadcast, x)
    ev = ImportanceSampling("prior", 2000).log_evidence(_no_broadcast, x)
    exact = _exact_local(x, torch.ones_like(x, dtype=torch.bool))
    assert (ev.per_datum - exact).abs().le(4 * ev.stderr).all()


def test_a_point_mass_guide_is_refused():
    story = models.from_functions(local, AutoDelta(local))
    with pytest.raises(UnsupportedModelError, match="point mass"):
        ais(proposal="guide").log_evidence(story, torch.zeros(3, 1))


def test_a_story_needs_a_template_for_the_bracket():
    with pytest.raises(ValueError, match="like=x"):
        ais().bracket(normal_normal, 5)


@settings(max_examples=25, deadline=None)
@given(
    key=st.sampled_from(["num_steps", "num_chains", "num_leapfrog", "step_size", "proposal"]),
    value=st.one_of(st.integers(-3, 0), st.floats(-1.0, 0.0), st.text(max_size=3), st.none()),
)
def test_bad_settings_are_refused_with_the_name(key, value):
    with pytest.raises((ValueError, TypeError), match=key):
        AnnealedImportanceSampling(**{key: value})
