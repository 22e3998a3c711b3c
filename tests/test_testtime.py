"""Test-time inference for deep models with missing entries, against a closed form.

A deep model with a linear-Gaussian decoder, p(z) = N(0, I), p(x | z) = N(W z + b, σ² I), has
everything in closed form for any observed part o of a datum:

- p(x_o) = N(x_o; b_o, W_o W_oᵀ + σ² I);
- p(z | x_o) = N(μ, Σ), Σ = (I + W_oᵀ W_o / σ²)⁻¹, μ = Σ W_oᵀ (x_o - b_o) / σ²;
- E[x_m | x_o] = W_m μ + b_m.

Its guide is a deliberately poor linear encoder. A refined full-covariance proposal can reach
the exact posterior, so its importance weights are nearly constant; the MCMC methods must
reproduce the posterior's moments within their Monte Carlo error.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ppl_lvm import complete
from ppl_lvm.inference import UnsupportedModelError
from ppl_lvm.inference import testtime as tt
from ppl_lvm.models import AmortizedGaussianLVM, BinaryLatentFactors, GaussianMixture

pytestmark = pytest.mark.usefixtures("float64")

D, L, SIGMA = 6, 2, 0.5


class LinearDecoder(AmortizedGaussianLVM):
    """z ~ N(0, I_2), x | z ~ N(W z + b, σ² I_6), with a linear encoder."""

    def __init__(self, seed: int = 0):
        super().__init__(D, L, "gaussian")
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(D, L, generator=g))
        self.b = nn.Parameter(torch.randn(D, generator=g) * 0.3)
        self.encoder = nn.Linear(D, 2 * L)

    def decode(self, z):
        loc = z @ self.w.T + self.b
        return loc, torch.full_like(loc, SIGMA)


def exact(model, x, mask):
    """log p(x_o), the posterior mean and covariance, and E[x | x_o] for one datum (D,)."""
    w, b = model.w.detach(), model.b.detach()
    o = mask
    wo = w[o]
    cov_x = wo @ wo.T + SIGMA**2 * torch.eye(int(o.sum()))
    log_p = torch.distributions.MultivariateNormal(b[o], cov_x).log_prob(x[o])
    post_cov = torch.linalg.inv(torch.eye(L) + wo.T @ wo / SIGMA**2)
    post_mean = post_cov @ wo.T @ (x[o] - b[o]) / SIGMA**2
    return log_p, post_mean, post_cov, w @ post_mean + b


@pytest.fixture
def setting():
    torch.manual_seed(0)
    model = LinearDecoder()
    with torch.no_grad():
        x = model.sample(4, seed=1).x
    mask = torch.ones(4, D, dtype=torch.bool)
    mask[:, :3] = False  # the "top half" of each datum is missing
    return model, torch.where(mask, x, 0.0), mask


def test_refined_proposal_reaches_the_exact_posterior(setting):
    model, x, mask = setting
    torch.manual_seed(0)
    q = tt.refine(model, x, mask, steps=2000, num_particles=16)
    for n in range(len(x)):
        _, mean, cov, _ = exact(model, x[n], mask[n])
        assert torch.allclose(q.mean[n], mean, atol=1e-6), (q.mean[n], mean)
        assert torch.allclose(q.covariance_matrix[n], cov, atol=1e-6)
    # the doubly reparameterised gradient vanishes at the posterior; a plain IWAE gradient
    # would leave the proposal wandering about it by the size of the step


def test_refined_importance_sampling_gives_the_exact_evidence_within_its_error(setting):
    model, x, mask = setting
    torch.manual_seed(1)
    draws = tt.infer_latents(model, x, mask, "refine", num_particles=2000, refine_steps=2000)
    truth = torch.stack([exact(model, x[n], mask[n])[0] for n in range(len(x))])
    assert (draws.log_evidence - truth).abs().le(4 * draws.stderr + 1e-9).all()
    # a proposal at the posterior: the weights are almost flat
    assert draws.ess.min() > 0.99 * 2000
    assert (draws.khat < tt.KHAT_RELIABLE).all()
    assert draws.method == ["refine"] * len(x)


def test_the_amortised_guide_alone_is_flagged_and_auto_runs_hmc_there(setting):
    """The encoder is untrained, so its proposal misses the posterior: k̂ flags data, and
    "auto" runs HMC on each flagged datum (started from the guide's particles), whose mean of
    E[x | z] then matches the exact E[x | x_o] within 4.5 of its standard errors."""
    model, x, mask = setting
    torch.manual_seed(2)
    guide = tt.infer_latents(model, x, mask, "guide", num_particles=500)
    flagged = ~(guide.khat <= tt.KHAT_RELIABLE)
    assert flagged.any()
    torch.manual_seed(2)
    chains = 100
    auto = tt.infer_latents(model, x, mask, "auto", num_particles=500, num_chains=chains)
    assert auto.method == ["hmc" if f else "guide" for f in flagged.tolist()]
    assert auto.log_weights is None and auto.z.shape == (chains, len(x), L)
    assert torch.equal(auto.khat, guide.khat)  # the evidence is the guide's, flagged as such
    assert auto.accept[flagged].gt(0.3).all() and auto.accept[~flagged].isnan().all()
    w = model.w.detach()
    for n in flagged.nonzero().squeeze(-1).tolist():
        _, _, cov, expected = exact(model, x[n], mask[n])
        se = (w @ cov @ w.T).diagonal().sqrt() / math.sqrt(chains)
        assert ((auto.expected[n] - expected).abs() < 4.5 * se).all()


@pytest.mark.parametrize("method", ["mwg", "hmc"])
def test_mcmc_reproduces_the_posterior_moments(setting, method):
    """200 independent chains per datum: their final states' mean is within 4.5 standard
    errors (sd / sqrt(200), per coordinate) of the exact posterior mean, their variance within
    30% of the exact one, and the post-burn-in mean of E[x | z] within 4.5 of its own SEs."""
    model, x, mask = setting
    chains = 200
    torch.manual_seed(3)
    if method == "mwg":
        # Metropolis-within-Gibbs proposes z from the encoder of the completed datum, as a
        # trained VAE's would: here the complete-data posterior's mean, with 1.5 times its
        # marginal standard deviations (an untrained encoder mixes too slowly to test)
        w, b = model.w.detach(), model.b.detach()
        post = torch.linalg.inv(torch.eye(L) + w.T @ w / SIGMA**2)
        gain = post @ w.T / SIGMA**2
        scale = 1.5 * post.diagonal().sqrt()
        with torch.no_grad():
            model.encoder.weight.copy_(torch.cat([gain, torch.zeros(L, D)]))
            model.encoder.bias.copy_(
                torch.cat([-gain @ b, scale + torch.expm1(-scale).neg().log()])
            )
        draws = tt.metropolis_within_gibbs(
            model, x, mask, num_chains=chains, num_steps=400, num_keep=chains
        )
    else:
        draws = tt.hmc(model, x, mask, num_chains=chains, num_steps=200, num_keep=chains)
    assert draws.z.shape == (chains, len(x), L)
    assert ((draws.accept > 0.01) & (draws.accept <= 1)).all()
    for n in range(len(x)):
        _, mean, cov, expected = exact(model, x[n], mask[n])
        z = draws.z[:, n]
        se = z.std(0) / math.sqrt(chains)
        assert ((z.mean(0) - mean).abs() < 4.5 * se).all(), (z.mean(0), mean, se)
        assert torch.allclose(z.var(0), cov.diagonal(), rtol=0.3)
        # E[x | x_o] from the averaged states: its error is far below one draw's spread
        spread = (model.w.detach() @ cov @ model.w.detach().T).diagonal().sqrt()
        assert ((draws.expected[n] - expected).abs() < 4.5 * spread / math.sqrt(chains)).all()


def test_complete_with_a_refined_proposal_gives_the_exact_conditional_mean(setting):
    model, x, mask = setting
    done = complete(
        model, x, mask, num_samples=7, num_particles=2000, method="refine", refine_steps=600
    )
    assert done.samples.shape == (7, len(x), D)
    assert done.method == "refined importance resampling"
    assert done.methods == ["refine"] * len(x)
    w = model.w.detach()
    for n in range(len(x)):
        log_p, _, cov, expected = exact(model, x[n], mask[n])
        # the weighted mean's standard error: E[x_m | z]'s posterior spread over sqrt(ESS)
        se = (w @ cov @ w.T).diagonal().sqrt() / done.ess[n].sqrt()
        assert ((done.mean[n, :3] - expected[:3]).abs() < 4.5 * se[:3]).all()
        assert abs(float(done.log_evidence[n] - log_p)) < 4 * float(done.stderr[n]) + 1e-9
    # observed entries are the data's own, in every draw
    assert torch.equal(done.samples[:, mask], x[mask].expand(7, -1))


@pytest.mark.parametrize("method", ["mwg", "hmc"])
def test_complete_by_mcmc_reports_its_acceptance(setting, method):
    model, x, mask = setting
    done = complete(model, x, mask, num_samples=3, method=method, num_steps=60, seed=0)
    label = {"mwg": "Metropolis-within-Gibbs", "hmc": "HMC"}[method]
    assert done.method == label and done.accept.shape == (len(x),)
    assert done.log_evidence is None and done.samples.shape == (3, len(x), D)


def test_same_seed_same_completion(setting):
    model, x, mask = setting
    a = complete(model, x, mask, num_particles=100, method="auto", refine_steps=20, seed=5)
    b = complete(model, x, mask, num_particles=100, method="auto", refine_steps=20, seed=5)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.log_evidence, b.log_evidence)


def test_bad_method_and_models_without_a_latent_log_joint_are_refused(setting):
    model, x, mask = setting
    with pytest.raises(ValueError, match="method"):
        complete(model, x, mask, method="gibbs")
    for bad in ({"refine_steps": 0}, {"num_chains": 0}, {"num_steps": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            complete(model, x, mask, method="refine", **bad)
    gmm = GaussianMixture(D, num_components=2)
    with pytest.raises(UnsupportedModelError, match="method='auto'"):
        complete(gmm, x, mask, method="hmc")
    blf = BinaryLatentFactors(D, 3)
    with pytest.raises(UnsupportedModelError, match="LatentLogJoint"):
        tt.infer_latents(blf, x, mask, "refine")


def test_importance_sampling_engine_with_refined_proposals(setting):
    """``ImportanceSampling(proposal="refined")`` estimates log p(x_o) of a deep model within
    its standard error of the closed form, and refuses what it cannot do with advice."""
    from ppl_lvm.inference import ImportanceSampling

    model, x, mask = setting
    engine = ImportanceSampling("refined", num_particles=2000, refine_steps=2000)
    ev = engine.log_evidence(model, x, mask, seed=0)
    truth = torch.stack([exact(model, x[n], mask[n])[0] for n in range(len(x))])
    assert ev.kind == "estimate" and ev.khat.shape == (len(x),)
    assert ((ev.per_datum - truth).abs() <= 4 * ev.stderr + 1e-9).all()
    # the zero-filled guide's estimate is further off or less certain on the same data
    guide = ImportanceSampling("guide", num_particles=2000).log_evidence(model, x, mask, seed=0)
    assert (guide.ess < ev.ess).all()
    with pytest.raises(UnsupportedModelError, match="complete"):
        engine.posterior(model, x, mask)
    with pytest.raises(UnsupportedModelError, match="LatentLogJoint"):
        engine.log_evidence(GaussianMixture(D, num_components=2), x, mask)
