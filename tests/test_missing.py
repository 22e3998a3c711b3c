"""Partially observed data: conditionals, EM with missing entries, completion, and evidence of
the observed part in every engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppl_lvm import complete, models
from ppl_lvm.core import seeded
from ppl_lvm.inference import Enumeration, UnsupportedModelError
from ppl_lvm.models._gaussian import masked_gaussian_conditional

pytestmark = pytest.mark.usefixtures("float64")


def _spd(d: int, g: torch.Generator) -> torch.Tensor:
    a = torch.randn(d, d, generator=g)
    return a @ a.T + 0.5 * torch.eye(d)


def test_gaussian_conditional_equals_slicing_each_datum():
    """Conditional mean and covariance of the missing block match numpy's per-datum slicing."""
    g = torch.Generator().manual_seed(0)
    d = 5
    cov, loc = _spd(d, g), torch.randn(d, generator=g)
    x = torch.randn(8, d, generator=g)
    mask = torch.rand(8, d, generator=g) > 0.5
    mask[0] = True
    mask[1] = False
    x_nan = torch.where(mask, x, torch.nan)
    mean, cond = masked_gaussian_conditional(x_nan, mask, loc, cov)
    for n in range(8):
        o, m = mask[n].numpy(), ~mask[n].numpy()
        s, mu, xn = cov.numpy(), loc.numpy(), x[n].numpy()
        want_mean = xn.copy()
        want_cov = np.zeros((d, d))
        if m.any():
            gain = s[np.ix_(m, o)] @ np.linalg.inv(s[np.ix_(o, o)]) if o.any() else None
            want_mean[m] = mu[m] + (gain @ (xn[o] - mu[o]) if o.any() else 0)
            block = s[np.ix_(m, m)] - (gain @ s[np.ix_(o, m)] if o.any() else 0)
            want_cov[np.ix_(m, m)] = block
        np.testing.assert_allclose(mean[n].numpy(), want_mean, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(cond[n].numpy(), want_cov, rtol=1e-10, atol=1e-10)


def _reference_full_em_step(x, mask, resp, mu, cov, reg):
    """One M-step of EM with missing entries, written per datum and component with numpy."""
    n, d = x.shape
    k = mu.shape[0]
    nk = resp.sum(0)
    new_mu = np.zeros((k, d))
    s2 = np.zeros((k, d, d))
    for j in range(k):
        for i in range(n):
            o, m = mask[i], ~mask[i]
            xhat = x[i].copy()
            c = np.zeros((d, d))
            if m.any():
                gain = cov[j][np.ix_(m, o)] @ np.linalg.inv(cov[j][np.ix_(o, o)])
                xhat[m] = mu[j][m] + gain @ (x[i][o] - mu[j][o])
                c[np.ix_(m, m)] = cov[j][np.ix_(m, m)] - gain @ cov[j][np.ix_(o, m)]
            new_mu[j] += resp[i, j] * xhat
            s2[j] += resp[i, j] * (np.outer(xhat, xhat) + c)
        new_mu[j] /= nk[j]
    new_cov = s2 / nk[:, None, None] - np.einsum("ki,kj->kij", new_mu, new_mu)
    return new_mu, new_cov + reg * np.eye(d)


@pytest.mark.parametrize("patterns", ["per datum", "shared"])
def test_full_covariance_em_step_with_missing_entries_matches_a_reference(patterns):
    """The full-covariance M-step with missing entries equals a per-datum numpy reference
    (Ghahramani & Jordan's expected sufficient statistics), to 1e-9, both when every datum has
    its own pattern and when a few patterns repeat (the grouped path)."""
    g = torch.Generator().manual_seed(1)
    n, d, k = 40, 4, 3
    x = torch.randn(n, d, generator=g) + 2 * (torch.rand(n, 1, generator=g) > 0.5)
    mask = torch.rand(n, d, generator=g) > 0.35
    if patterns == "shared":
        mask = mask[torch.arange(n) % 3]  # three patterns, one of them complete
        mask[::3] = True
    mask[:, 0] |= ~mask.any(1)  # every datum sees at least one entry
    gmm = models.GaussianMixture(d, num_components=k, covariance="full", reg_covar=1e-6)
    covs = torch.stack([_spd(d, g) for _ in range(k)])
    gmm.set_parameters(torch.tensor([0.2, 0.3, 0.5]), torch.randn(k, d, generator=g), covs)
    resp = torch.softmax(torch.randn(n, k, generator=g), -1)
    want_mu, want_cov = _reference_full_em_step(
        x.numpy(), mask.numpy(), resp.numpy(), gmm.means_.numpy(), covs.numpy(), 1e-6
    )
    gmm.m_step(torch.where(mask, x, 0.0), mask, resp)
    np.testing.assert_allclose(gmm.means_.numpy(), want_mu, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gmm.covariances_.numpy(), want_cov, rtol=1e-9, atol=1e-9)


def test_full_covariance_em_with_missing_entries_reaches_the_gradient_optimum():
    """With one component the observed-data likelihood has one optimum: EM with 40% missing
    entries and gradient ascent on the exact likelihood agree on it."""
    g = torch.Generator().manual_seed(2)
    d = 3
    chol = torch.linalg.cholesky(_spd(d, g))
    x = torch.randn(400, d, generator=g) @ chol.T + torch.tensor([1.0, -2.0, 0.5])
    mask = torch.rand(400, d, generator=g) > 0.4
    mask[:, 1] |= ~mask.any(1)
    em = models.GaussianMixture(d, num_components=1, covariance="full", reg_covar=0.0)
    fit_em = Enumeration().fit(em, x, mask, method="em", max_steps=500, tol=1e-12)
    grad = models.GaussianMixture(d, num_components=1, covariance="full", reg_covar=0.0)
    grad.load_state_dict(em.state_dict())
    fit_grad = Enumeration().fit(
        grad, x, mask, method="gradient", initialize=False, max_steps=300, tol=1e-12, lr=0.01
    )
    assert fit_em.final == pytest.approx(fit_grad.final, abs=1e-6)
    assert fit_grad.final - fit_grad.history[0] < 1e-6  # EM's answer could not be improved


# -- completion ---------------------------------------------------------------------------------


def _posterior_and_conditionals(gmm, x, mask):
    """p(z = k | x_o) and E[x | z = k, x_o] per datum by slicing each datum's observed block."""
    w, mu, cov = gmm.weights_.numpy(), gmm.means_.numpy(), gmm.covariances_.numpy()
    if cov.ndim == 1:
        cov = np.stack([np.eye(mu.shape[1]) * c for c in cov])
    elif cov.ndim == 2:
        cov = np.stack([np.diag(c) for c in cov])
    post, cond = [], []
    for xn, mn in zip(x.numpy(), mask.numpy(), strict=True):
        o, m = mn, ~mn
        logp, means = [], []
        for k in range(len(w)):
            s = cov[k][np.ix_(o, o)]
            diff = xn[o] - mu[k][o]
            _, logdet = np.linalg.slogdet(s)
            quad = diff @ np.linalg.solve(s, diff)
            logp.append(np.log(w[k]) - 0.5 * (quad + logdet + o.sum() * np.log(2 * np.pi)))
            e = xn.copy()
            e[m] = mu[k][m] + cov[k][np.ix_(m, o)] @ np.linalg.solve(s, diff)
            means.append(e)
        logp = np.array(logp)
        post.append(np.exp(logp - np.logaddexp.reduce(logp)))
        cond.append(np.array(means))
    return np.array(post), np.array(cond)


@pytest.mark.parametrize("covariance", ["diag", "spherical", "full"])
def test_gaussian_mixture_completion_is_exact(covariance):
    """The single imputation equals Σ_k p(k | x_o) E[x_m | k, x_o] computed by slicing, and the
    mean of 4,000 sampled completions lies within 4.5 standard errors of it."""
    g = torch.Generator().manual_seed(3)
    k, d, n = 3, 4, 6
    gmm = models.GaussianMixture(d, num_components=k, covariance=covariance)
    covs = {
        "diag": torch.rand(k, d, generator=g) + 0.3,
        "spherical": torch.rand(k, generator=g) + 0.3,
        "full": torch.stack([_spd(d, g) for _ in range(k)]),
    }[covariance]
    gmm.set_parameters(torch.tensor([0.3, 0.3, 0.4]), 2 * torch.randn(k, d, generator=g), covs)
    x = torch.randn(n, d, generator=g) * 2
    mask = torch.rand(n, d, generator=g) > 0.5
    mask[:, 0] = True
    post, cond = _posterior_and_conditionals(gmm, x, mask)
    done = complete(gmm, torch.where(mask, x, torch.nan), mask, num_samples=4000, seed=1)
    want = np.einsum("nk,nkd->nd", post, cond)
    np.testing.assert_allclose(done.mean.numpy(), want, rtol=1e-9, atol=1e-9)
    assert done.method == "exact"
    assert torch.equal(done.samples[:, mask], x[mask].expand(4000, -1))
    se = done.samples.std(0) / math.sqrt(4000)
    z = ((done.samples.mean(0) - done.mean).abs() / se.clamp(min=1e-12))[~mask]
    assert z.max() < 4.5


def test_bernoulli_mixture_completion_is_exact():
    """Pixel probabilities of the missing entries are Σ_k p(k | x_o) p_kd, by brute force."""
    g = torch.Generator().manual_seed(5)
    k, d = 3, 6
    bmm = models.BernoulliMixture(d, num_components=k)
    probs = torch.rand(k, d, generator=g) * 0.9 + 0.05
    weights = torch.tensor([0.2, 0.5, 0.3])
    with torch.no_grad():
        bmm._set_weights(weights)
        bmm._assign("probs", probs)
    x = torch.bernoulli(torch.full((5, d), 0.5), generator=g)
    mask = torch.rand(5, d, generator=g) > 0.5
    done = complete(bmm, x, mask, num_samples=3)
    for n in range(5):
        o = mask[n]
        lik = (probs[:, o] ** x[n, o] * (1 - probs[:, o]) ** (1 - x[n, o])).prod(-1) * weights
        p = lik / lik.sum()
        want = torch.where(o, x[n], p @ probs)
        torch.testing.assert_close(done.mean[n], want, rtol=1e-10, atol=1e-12)
    assert set(done.samples.unique().tolist()) <= {0.0, 1.0}


def test_linear_gaussian_completion_exact_and_resampling_agree():
    """PPCA's completion is the Gaussian conditional of N(b, W Wᵀ + σ² I); importance
    resampling through a broad guide, N(0, 2² I), reproduces it within Monte Carlo error."""
    g = torch.Generator().manual_seed(6)
    d, latent = 5, 2
    ppca = models.LinearGaussian(d, latent)
    ppca.set_parameters(torch.randn(d, latent, generator=g), torch.randn(d, generator=g), 0.3)
    with torch.no_grad():
        ppca.V.zero_()
        ppca.c.zero_()
    ppca._assign("guide_scale_tril", 2 * torch.eye(latent))
    x = torch.randn(4, d, generator=g) * 2
    mask = torch.rand(4, d, generator=g) > 0.5
    mask[:, 0] = True
    exact = complete(ppca, x, mask, num_samples=2000, seed=0)
    cmean, _ = masked_gaussian_conditional(x, mask, ppca.mean_, ppca.covariance_)
    torch.testing.assert_close(exact.mean, cmean)
    from ppl_lvm.completion import _resample

    with seeded(0):
        _, _, sir_mean, ess = _resample(ppca, x, mask, 10, 20_000)
    assert (ess > 50).all()
    # the conditional sd of each missing entry over sqrt(ESS) bounds the resampling error
    se = exact.samples.std(0) / ess.sqrt().unsqueeze(-1)
    assert ((sir_mean - exact.mean).abs() <= 5 * se + 1e-12).all()


def test_vae_completion_by_importance_resampling():
    """A VAE completes by importance resampling: observed entries kept, weighted mean between
    0 and 1, an ESS per datum, and the same numbers for the same seed."""
    torch.manual_seed(0)
    vae = models.VAE(8, 2, (8,), mask_input=True)
    x = torch.bernoulli(torch.full((4, 8), 0.5))
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[:, :4] = False
    a = complete(vae, torch.where(mask, x, torch.nan), mask, num_samples=6, num_particles=50)
    b = complete(vae, x, mask, num_samples=6, num_particles=50)
    assert a.method == "importance resampling"
    assert torch.equal(a.samples, b.samples) and torch.equal(a.mean, b.mean)
    assert a.samples.shape == (6, 4, 8) and a.ess.shape == (4,)
    assert ((a.ess >= 1) & (a.ess <= 50 + 1e-9)).all()
    assert torch.equal(a.mean[mask], x[mask])
    assert ((a.mean[~mask] > 0) & (a.mean[~mask] < 1)).all()


def test_completion_refusals():
    """No mask, a Bayesian mixture or a story without the needed methods: a clear error."""
    x = torch.randn(3, 2)
    gmm = models.GaussianMixture(2, num_components=2)
    with pytest.raises(ValueError, match="needs a mask"):
        complete(gmm, x, None)
    with pytest.raises(UnsupportedModelError, match="bayesian=False"):
        complete(
            models.GaussianMixture(2, num_components=2, bayesian=True),
            x,
            torch.ones(3, 2, dtype=bool),
        )

    def model(x, mask=None):
        pass

    with pytest.raises(UnsupportedModelError, match="observation"):
        complete(model, x, torch.ones(3, 2, dtype=bool))
    with pytest.raises(ValueError, match="dim=2"):
        complete(gmm, torch.randn(3, 5), torch.ones(3, 5, dtype=bool))
    with pytest.raises(ValueError, match="NaN|nan|finite"):
        complete(gmm, torch.full((3, 2), torch.nan), torch.ones(3, 2, dtype=bool))
    with pytest.raises(ValueError, match="num_samples"):
        complete(gmm, x, torch.ones(3, 2, dtype=bool), num_samples=0)


# -- the evidence of the observed part ------------------------------------------------------


def _observed_log_evidence(gmm, x, mask) -> np.ndarray:
    """log p(x_o) per datum, by slicing each datum's observed block (numpy)."""
    w, mu, cov = gmm.weights_.numpy(), gmm.means_.numpy(), gmm.covariances_.numpy()
    cov = np.stack([np.diag(c) for c in cov]) if cov.ndim == 2 else cov
    out = []
    for xn, o in zip(x.numpy(), mask.numpy(), strict=True):
        terms = []
        for k in range(len(w)):
            s, diff = cov[k][np.ix_(o, o)], xn[o] - mu[k][o]
            quad = diff @ np.linalg.solve(s, diff)
            logdet = np.linalg.slogdet(s)[1]
            terms.append(np.log(w[k]) - 0.5 * (quad + logdet + o.sum() * np.log(2 * np.pi)))
        out.append(np.logaddexp.reduce(terms))
    return np.array(out)


@pytest.mark.parametrize("pattern", ["top_half", "random"])
def test_observed_part_evidence_in_every_engine(pattern):
    """log p(x_o): Enumeration equals slicing to 1e-9; importance sampling from the prior lies
    within 4 standard errors of it; the SVI bound of a Bayesian-free guide is below it."""
    from ppl_lvm.inference import SVI, ImportanceSampling

    g = torch.Generator().manual_seed(7)
    k, d, n = 3, 6, 8
    gmm = models.GaussianMixture(d, num_components=k, covariance="full")
    gmm.set_parameters(
        torch.tensor([0.3, 0.3, 0.4]),
        2 * torch.randn(k, d, generator=g),
        torch.stack([_spd(d, g) for _ in range(k)]),
    )
    x = 2 * torch.randn(n, d, generator=g)
    if pattern == "top_half":
        mask = torch.ones(n, d, dtype=torch.bool)
        mask[:, : d // 2] = False
    else:
        mask = torch.rand(n, d, generator=g) > 0.5
        mask[:, 0] = True
    want = _observed_log_evidence(gmm, x, mask)
    x_nan = torch.where(mask, x, torch.nan)
    exact = Enumeration().log_evidence(gmm, x_nan, mask)
    np.testing.assert_allclose(exact.per_datum.numpy(), want, rtol=1e-9, atol=1e-9)
    est = ImportanceSampling(proposal="prior", num_particles=20_000).log_evidence(
        gmm, x_nan, mask, seed=0
    )
    z = (est.per_datum - exact.per_datum).abs() / est.stderr
    assert z.max() < 4.0

    # PPCA with the same mask: IS from the prior is within 4 SE of the closed form, and the
    # ELBO of the complete-data posterior guide lies below it
    ppca = models.LinearGaussian(d, 2)
    ppca.set_parameters(torch.randn(d, 2, generator=g), torch.randn(d, generator=g), 0.8)
    ppca.set_guide_to_posterior()
    truth = ppca.exact_log_evidence(x, mask)
    is_est = ImportanceSampling(proposal="prior", num_particles=20_000).log_evidence(
        ppca, x_nan, mask, seed=0
    )
    assert ((is_est.per_datum - truth).abs() / is_est.stderr).max() < 4.0
    elbo = SVI(num_particles=2000).log_evidence(ppca, x_nan, mask, seed=0)
    assert (elbo.per_datum <= truth + 1e-2).all()


# -- training on partially observed data ----------------------------------------------------


def _two_clusters(n: int, d: int, g: torch.Generator):
    centres = torch.stack([torch.zeros(d), torch.full((d,), 4.0)])
    labels = (torch.rand(n, generator=g) > 0.4).long()
    return centres[labels] + torch.randn(n, d, generator=g), centres


def test_gaussian_mixtures_train_with_half_the_entries_missing():
    """EM on data with 50% of entries missing at random recovers both centres (diag and full)."""
    g = torch.Generator().manual_seed(8)
    x, centres = _two_clusters(800, 4, g)
    mask = torch.rand(800, 4, generator=g) > 0.5
    for covariance in ("diag", "full"):
        gmm = models.GaussianMixture(4, num_components=2, covariance=covariance)
        Enumeration().fit(gmm, torch.where(mask, x, torch.nan), mask, method="em", seed=0)
        order = gmm.means_[:, 0].argsort()
        assert (gmm.means_[order] - centres).abs().max() < 0.25, covariance


def test_top_half_missing_in_every_datum_learns_the_bottom_half_exactly():
    """With the first half of the features missing in every datum, EM on the bottom half is
    exactly EM on the bottom-half columns alone, from the same start; the unseen half keeps
    its starting values, since no datum says anything about it."""
    g = torch.Generator().manual_seed(9)
    x, _ = _two_clusters(300, 6, g)
    mask = torch.ones(300, 6, dtype=torch.bool)
    mask[:, :3] = False
    start_means = torch.randn(2, 6, generator=g)
    start_var = torch.rand(2, 6, generator=g) + 0.5
    part = models.GaussianMixture(6, num_components=2).set_parameters(
        torch.tensor([0.5, 0.5]), start_means, start_var
    )
    bottom = models.GaussianMixture(3, num_components=2).set_parameters(
        torch.tensor([0.5, 0.5]), start_means[:, 3:], start_var[:, 3:]
    )
    kw = {"method": "em", "initialize": False, "max_steps": 50, "tol": 1e-12}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_part = Enumeration().fit(part, torch.where(mask, x, torch.nan), mask, **kw)
        fit_bottom = Enumeration().fit(bottom, x[:, 3:], **kw)
    torch.testing.assert_close(fit_part.history, fit_bottom.history)
    torch.testing.assert_close(part.means_[:, 3:], bottom.means_)
    torch.testing.assert_close(part.covariances_[:, 3:], bottom.covariances_)
    torch.testing.assert_close(part.means_[:, :3], start_means[:, :3])


def test_bernoulli_mixture_trains_with_half_the_pixels_missing():
    """EM on binary data with 50% of pixels missing recovers the component probabilities."""
    g = torch.Generator().manual_seed(10)
    probs = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.9, 0.1], [0.1, 0.2, 0.9, 0.8, 0.1, 0.9]])
    labels = (torch.rand(2000, generator=g) > 0.5).long()
    x = torch.bernoulli(probs[labels], generator=g)
    mask = torch.rand(2000, 6, generator=g) > 0.5
    bmm = models.BernoulliMixture(6, num_components=2)
    Enumeration().fit(bmm, torch.where(mask, x, torch.nan), mask, method="em", seed=0)
    order = bmm.probs_[:, 0].argsort(descending=True)
    assert (bmm.probs_[order] - probs).abs().max() < 0.06


def test_linear_gaussian_trains_with_half_the_entries_missing():
    """SVI on PPCA with 50% of entries missing recovers the data's covariance W Wᵀ + σ² I.

    The IWAE objective (MIWAE) is used: the amortised guide's covariance does not depend on
    which entries are missing, so the single-particle ELBO's optimum is visibly biased here
    (35% covariance error), while 20 particles bring it to the true covariance."""
    from ppl_lvm.inference import SVI

    g = torch.Generator().manual_seed(11)
    truth = models.LinearGaussian(5, 2)
    truth.set_parameters(torch.randn(5, 2, generator=g), torch.randn(5, generator=g), 0.3)
    z = torch.randn(3000, 2, generator=g)
    x = z @ truth.loadings_.T + truth.mean_ + 0.3 * torch.randn(3000, 5, generator=g)
    mask = torch.rand(3000, 5, generator=g) > 0.5
    ppca = models.LinearGaussian(5, 2)
    SVI("iwae", num_particles=20, lr=0.02, batch_size=500).fit(
        ppca, torch.where(mask, x, torch.nan), mask, epochs=60, seed=0, progress=False
    )
    err = (ppca.covariance_ - truth.covariance_).abs().max() / truth.covariance_.abs().max()
    assert err < 0.15, err


def test_full_covariance_log_prob_grouped_by_pattern_equals_per_datum():
    """Scoring observed blocks pattern by pattern equals the per-datum embedding."""
    from ppl_lvm.models._gaussian import masked_mvn_log_prob
    from ppl_lvm.models.gaussian_mixture import _full_log_prob

    g = torch.Generator().manual_seed(12)
    k, d, n = 3, 5, 40
    cov = torch.stack([_spd(d, g) for _ in range(k)])
    loc = torch.randn(k, d, generator=g)
    x = torch.randn(n, d, generator=g)
    mask = (torch.rand(n, d, generator=g) > 0.5)[torch.arange(n) % 3]  # three patterns
    mask[0] = False  # and a datum with nothing observed
    got = _full_log_prob(x, mask, loc, torch.linalg.cholesky(cov))
    want = masked_mvn_log_prob(x.unsqueeze(-2), mask.unsqueeze(-2), loc, cov)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert bool((got[0] == 0).all())


def test_bernoulli_mixture_with_the_top_half_missing_learns_the_bottom_half_exactly():
    """As for Gaussians: EM on binary data whose first half is never seen equals EM on the
    bottom-half columns alone, from the same start."""
    import warnings

    g = torch.Generator().manual_seed(13)
    probs = torch.rand(2, 6, generator=g) * 0.8 + 0.1
    x = torch.bernoulli(probs[(torch.rand(400, generator=g) > 0.5).long()], generator=g)
    mask = torch.ones(400, 6, dtype=torch.bool)
    mask[:, :3] = False
    start = torch.rand(2, 6, generator=g) * 0.6 + 0.2
    part, bottom = (
        models.BernoulliMixture(6, num_components=2),
        models.BernoulliMixture(3, num_components=2),
    )
    with torch.no_grad():
        for model, p in ((part, start), (bottom, start[:, 3:])):
            model._set_weights(torch.tensor([0.5, 0.5]))
            model._assign("probs", p)
    kw = {"method": "em", "initialize": False, "max_steps": 40, "tol": 1e-12}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_part = Enumeration().fit(part, torch.where(mask, x, torch.nan), mask, **kw)
        fit_bottom = Enumeration().fit(bottom, x[:, 3:], **kw)
    torch.testing.assert_close(fit_part.history, fit_bottom.history)
    torch.testing.assert_close(part.probs_[:, 3:], bottom.probs_)


def test_linear_gaussian_with_the_top_half_missing_learns_the_bottom_block():
    """PPCA trained on data whose first two features are never seen recovers the covariance
    of the three it sees."""
    from ppl_lvm.inference import SVI

    g = torch.Generator().manual_seed(14)
    truth = models.LinearGaussian(5, 2)
    truth.set_parameters(torch.randn(5, 2, generator=g), torch.randn(5, generator=g), 0.3)
    x = torch.randn(3000, 2, generator=g) @ truth.loadings_.T + truth.mean_
    x = x + 0.3 * torch.randn(3000, 5, generator=g)
    mask = torch.ones(3000, 5, dtype=torch.bool)
    mask[:, :2] = False
    ppca = models.LinearGaussian(5, 2)
    SVI("iwae", num_particles=20, lr=0.02, batch_size=500).fit(
        ppca, torch.where(mask, x, torch.nan), mask, epochs=60, seed=0, progress=False
    )
    seen, want = ppca.covariance_[2:, 2:], truth.covariance_[2:, 2:]
    assert (seen - want).abs().max() / want.abs().max() < 0.15
    assert torch.isfinite(ppca.covariance_).all()
