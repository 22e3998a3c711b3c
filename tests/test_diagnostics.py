"""The ArviZ bridge and the diagnostics: pointwise log-likelihoods against closed forms and
scikit-learn, ArviZ's statistics on every engine's draws, k̂ classes, the amortisation gap,
R-hat across restarts and LOO over the number of mixture components."""

from __future__ import annotations

import math
import warnings

import arviz as az
import numpy as np
import pyro.distributions as dist
import pytest
import torch
from matplotlib.image import imread
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from ppl_lvm import diagnostics, models, plots
from ppl_lvm.inference import SVI, Enumeration, ImportanceSampling, Posterior

# ArviZ's rank-normalised R-hat (and the ESS inside az.summary) divide by a within-chain
# variance of zero for a quantity no draw changes, e.g. a label every draw agrees on.
CONSTANT_DRAWS = "invalid value encountered"


def _blobs(n_per: int = 20, seed: int = 0) -> torch.Tensor:
    """Three well-separated 2-D clusters: (3 n_per, 2)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.5]], dtype=torch.float64)
    return centres.repeat_interleave(n_per, 0) + 0.5 * torch.randn(
        3 * n_per, 2, generator=g, dtype=torch.float64
    )


def _gmm_full() -> tuple[models.GaussianMixture, dict[str, torch.Tensor]]:
    params = {
        "weights": torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64),
        "means": torch.tensor([[-3.0, 0.0], [3.0, 0.5], [0.0, 3.0]], dtype=torch.float64),
        "covariances": torch.tensor(
            [[[1.0, 0.3], [0.3, 0.5]], [[0.6, -0.2], [-0.2, 0.8]], [[2.0, 0.0], [0.0, 0.3]]],
            dtype=torch.float64,
        ),
    }
    gmm = (
        models.GaussianMixture(2, num_components=3, covariance="full")
        .double()
        .set_parameters(**params)
    )
    return gmm, params


def _ppca(seed: int = 0) -> tuple[models.LinearGaussian, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 2, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    lg = models.LinearGaussian(5, 2).double().set_parameters(w, b, 0.5)
    x = torch.randn(30, 2, generator=g, dtype=torch.float64) @ w.T + b
    x = x + 0.5 * torch.randn(30, 5, generator=g, dtype=torch.float64)
    return lg, x


def _gaussian_log_lik(lg: models.LinearGaussian, z: torch.Tensor, x: torch.Tensor, mask=None):
    """log N(x_n | W z + b, σ² I) over the observed entries, by torch.distributions."""
    per = torch.distributions.Normal(z @ lg.W.detach().T + lg.b.detach(), lg.sigma.detach())
    per = per.log_prob(x)
    if mask is not None:
        per = per * mask
    return per.sum(-1)


# ----------------------------------------------------------------------------------------------
# Posterior's new fields
def test_posterior_scores_are_optional_and_shape_checked():
    """log_lik, log_p and log_q default to None; wrong shapes are refused with the shape."""
    post = Posterior("X", {"z": torch.zeros(4, 3)}, x=torch.zeros(3, 1), local_sites=("z",))
    assert post.log_lik is None and post.log_p is None and post.log_q is None
    with pytest.raises(ValueError, match=r"log_lik must have shape \(S, N\) = \(4, 3\)"):
        Posterior("X", {"z": torch.zeros(4, 3)}, x=torch.zeros(3, 1), log_lik=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="log_p must have shape"):
        Posterior("X", {"z": torch.zeros(4, 3)}, x=torch.zeros(3, 1), log_p=torch.zeros(5))
    with pytest.raises(ValueError, match="must be per datum too"):
        Posterior(
            "X",
            {"z": torch.zeros(4, 3)},
            x=torch.zeros(3, 1),
            log_weights=torch.zeros(4, 3),
            log_q=torch.zeros(4),
            local_sites=("z",),
        )


def test_resample_gathers_scores_with_the_draws():
    """Resampling keeps each draw's log_lik, log_p and log_q beside it, per datum and jointly."""
    z = torch.arange(12.0).reshape(4, 3)  # (S=4, N=3), every value distinct
    post = Posterior(
        "X",
        {"z": z},
        x=torch.zeros(3, 1),
        log_weights=torch.randn(4, 3),
        local_sites=("z",),
        log_lik=z + 0.5,
        log_p=2 * z,
        log_q=-z,
    )
    out = post.resample(num_samples=50, seed=3)
    zs = out.samples["z"]
    assert zs.shape == (50, 3) and out.log_weights is None
    assert torch.equal(out.log_lik, zs + 0.5)
    assert torch.equal(out.log_p, 2 * zs) and torch.equal(out.log_q, -zs)

    mu = torch.arange(5.0)  # a global site: joint weights (S,)
    joint = Posterior(
        "X", {"mu": mu}, x=torch.zeros(2, 1), log_weights=torch.randn(5), log_p=mu * 3
    )
    out = joint.resample(num_samples=40, seed=1)
    assert torch.equal(out.log_p, out.samples["mu"] * 3) and out.log_q is None


# ----------------------------------------------------------------------------------------------
# log_likelihood against exact answers
def test_point_mixture_log_lik_equals_sklearn_and_exact_evidence():
    """For a point-estimate mixture every engine's log_lik is log Σ_k π_k N(x_n | μ_k, Σ_k),
    equal to scikit-learn's score_samples and to Enumeration's exact evidence in every draw."""
    gmm, params = _gmm_full()
    x = _blobs(10)
    sk = SkGaussianMixture(3, covariance_type="full")
    sk.weights_ = params["weights"].numpy()
    sk.means_ = params["means"].numpy()
    sk.covariances_ = params["covariances"].numpy()
    chol = np.linalg.cholesky(sk.covariances_)
    sk.precisions_cholesky_ = np.linalg.inv(chol).transpose(0, 2, 1)
    reference = torch.as_tensor(sk.score_samples(x.numpy()))
    exact = Enumeration().log_evidence(gmm, x).per_datum
    torch.testing.assert_close(exact, reference, rtol=0, atol=1e-10)

    enum = Enumeration().posterior(gmm, x, num_samples=50)
    svi = SVI().posterior(gmm, x, num_samples=50)
    imp = ImportanceSampling("prior", num_particles=50).posterior(gmm, x)
    for post in (enum, svi, imp):
        assert post.log_lik.shape == (50, 30)
        torch.testing.assert_close(post.log_lik, reference.expand(50, -1), rtol=0, atol=1e-10)
    # Enumeration's draws come from the exact posterior, so p/q is p(x_n) for every draw
    log_probs = enum.probs["z"].log().T.gather(0, enum.samples["z"])  # (S, N)
    torch.testing.assert_close(enum.log_q, log_probs, rtol=0, atol=1e-12)
    torch.testing.assert_close(enum.log_p - enum.log_q, enum.log_lik, rtol=0, atol=1e-10)
    # importance weights are log p - log q of the same particles
    torch.testing.assert_close(imp.log_weights, imp.log_p - imp.log_q, rtol=0, atol=0)

    idata = enum.to_arviz()
    ll = idata.log_likelihood["x"]
    assert ll.dims == ("chain", "draw", "datum") and ll.shape == (1, 50, 30)
    np.testing.assert_allclose(ll.values[0], reference.expand(50, -1).numpy(), atol=1e-10)
    assert set(idata.sample_stats.data_vars) == {"log_p", "log_q", "log_weight"}


def test_enumeration_generic_path_scores_binary_codes_exactly():
    """Through Pyro's enumeration (no tensor shortcut) log_lik is the model's exact evidence
    and log_p - log_q equals it, the vector-valued code scored by its exact posterior."""
    g = torch.Generator().manual_seed(1)
    blf = models.BinaryLatentFactors(6, 3, hidden=(8,)).double()
    blf.set_parameters(
        2 * torch.randn(6, 3, generator=g, dtype=torch.float64),
        torch.randn(6, generator=g, dtype=torch.float64),
        torch.tensor([0.3, 0.5, 0.6], dtype=torch.float64),
    )
    x = (torch.rand(9, 6, generator=g) > 0.5).double()
    post = Enumeration().posterior(blf, x, num_samples=40)
    exact = blf.exact_log_evidence(x)
    torch.testing.assert_close(post.log_lik, exact.expand(40, -1), rtol=0, atol=1e-10)
    torch.testing.assert_close(post.log_p - post.log_q, post.log_lik, rtol=0, atol=1e-10)
    # log p(x_n, z_sn) from the model's own joint over the 2^L states
    states = blf.states()  # (8, 3)
    idx = (post.samples["z"].unsqueeze(-2) == states).all(-1).to(torch.long).argmax(-1)
    joint = blf.state_log_joint(x).detach().T  # (states, N)
    torch.testing.assert_close(post.log_p, joint.gather(0, idx), rtol=0, atol=1e-10)


def test_bayesian_mixture_log_lik_uses_each_drawn_global():
    """SVI on a bayesian=True mixture: log_lik[s, n] = log Σ_k π_sk N(x_n | μ_sk, σ_sk), the
    joint log_p adds the priors, and the labels are drawn from p(z_n | x_n, θ_s)."""
    x = _blobs(10).float()
    gmm = models.GaussianMixture(2, num_components=3, bayesian=True, prior_scale=5.0)
    gmm.sites(x, which="guide")  # builds the guide: draws near the prior's median
    post = SVI().posterior(gmm, x, num_samples=2000, seed=0)
    w, locs, scales = (post.samples[k] for k in ("weights", "locs", "scales"))
    assert (
        w.shape == (2000, 3)
        and locs.shape == (2000, 3, 2)
        and post.samples["z"].shape
        == (
            2000,
            30,
        )
    )
    comp = dist.Normal(locs.unsqueeze(1), scales.unsqueeze(1)).log_prob(x[None, :, None]).sum(-1)
    log_joint = w.log().unsqueeze(1) + comp  # (S, N, K)
    expected = torch.logsumexp(log_joint, -1)
    torch.testing.assert_close(post.log_lik, expected, rtol=1e-5, atol=1e-4)
    prior = (
        dist.Dirichlet(torch.ones(3)).log_prob(w)
        + dist.Normal(0.0, 5.0).log_prob(locs).sum((-1, -2))
        + dist.LogNormal(0.0, 1.0).log_prob(scales).sum((-1, -2))
    )
    assert post.log_p.shape == (2000,) and post.log_q.shape == (2000,)
    torch.testing.assert_close(post.log_p, prior + expected.sum(-1), rtol=1e-5, atol=1e-2)
    # label frequencies against the responsibilities averaged over the drawn globals
    resp = torch.softmax(log_joint, -1).mean(0)  # (N, K)
    freq = torch.nn.functional.one_hot(post.samples["z"], 3).double().mean(0)
    se = (resp * (1 - resp) / 2000).sqrt().clamp(min=1e-3)
    assert ((freq - resp).abs() / se).max() < 5


def test_linear_gaussian_log_lik_is_the_closed_form_given_each_draw():
    """For continuous z (probabilistic PCA) log_lik = log N(x_n | W z_sn + b, σ² I) over the
    observed entries, from SVI and ImportanceSampling; with the exact guide p/q = p(x_n)."""
    lg, x = _ppca()
    lg.set_guide_to_posterior()
    mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) > 0.2
    for post in (
        SVI().posterior(lg, x, mask, num_samples=64),
        ImportanceSampling("guide", num_particles=64).posterior(lg, x, mask),
    ):
        z = post.samples["z"]  # (S, N, L)
        expected = _gaussian_log_lik(lg, z, x, mask)
        torch.testing.assert_close(post.log_lik, expected, rtol=0, atol=1e-10)
        prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        torch.testing.assert_close(post.log_p, prior + expected, rtol=0, atol=1e-10)
        idata = post.to_arviz()
        assert int(idata.observed_data["x"].isnull().sum()) == int((~mask).sum())
    post = SVI().posterior(lg, x, num_samples=64)  # complete data: the guide is exact
    exact = lg.exact_log_evidence(x)
    torch.testing.assert_close(post.log_p - post.log_q, exact.expand(64, -1), rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# ArviZ on every engine's draws
def test_arviz_statistics_run_on_every_engine(tmp_path):
    """az.summary, az.ess and az.rhat run on two chains of each engine; az.loo and
    az.plot_khat on the continuous-z engines, the figure saved and read back."""
    gmm, _ = _gmm_full()
    xg = _blobs(10)
    lg, x = _ppca()
    lg.set_guide_to_posterior()
    chains = {
        "Enumeration": [Enumeration().posterior(gmm, xg, num_samples=200, seed=s) for s in (0, 1)],
        "SVI": [SVI().posterior(lg, x, num_samples=200, seed=s) for s in (0, 1)],
        "ImportanceSampling": [
            ImportanceSampling("guide", num_particles=200).posterior(lg, x, seed=s) for s in (0, 1)
        ],
    }
    for name, posts in chains.items():
        idata = diagnostics.to_inference_data(posts)
        site = "z"
        assert idata.posterior[site].shape[:3] == (2, 200, posts[0].x.shape[0]), name
        assert {"posterior", "log_likelihood", "sample_stats", "observed_data"} <= set(
            idata.groups()
        )
        with warnings.catch_warnings():
            # labels of well-separated data never change: ArviZ divides by zero for them
            warnings.filterwarnings("ignore", CONSTANT_DRAWS, RuntimeWarning)
            summary = az.summary(idata, var_names=[site])
            ess = az.ess(idata)
            rhat = az.rhat(idata)
        assert len(summary) == np.prod(idata.posterior[site].shape[2:]), name
        assert {"ess_bulk", "r_hat"} <= set(summary.columns)
        assert ess[site].shape == idata.posterior[site].shape[2:]
        if name != "Enumeration":
            assert np.nanmax(rhat[site].values) < 1.05, name  # two runs of one sampler

    for name in ("SVI", "ImportanceSampling"):
        idata = diagnostics.to_inference_data(chains[name])
        with warnings.catch_warnings():
            # leaving x_n out sends z_n back to its prior, so a few k̂ exceed good_k: the known
            # weakness of LOO for local latents, which ArviZ reports
            warnings.filterwarnings("ignore", "Estimated shape parameter of Pareto", UserWarning)
            loo = az.loo(idata, pointwise=True)
        assert loo["pareto_k"].shape == (30,) and math.isfinite(loo["elpd_loo"])
        with warnings.catch_warnings():
            # ArviZ 0.23's plot_khat calls a matplotlib helper deprecated in matplotlib 3.11
            warnings.filterwarnings("ignore", "Passing a dict or None as alias_mapping")
            ax = az.plot_khat(loo)
        path = tmp_path / f"khat_{name}.png"
        ax.figure.savefig(path)
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def test_loo_on_point_estimates_warns_that_nothing_varies():
    """With point estimates the log-likelihood is the same in every draw: PSIS has no tail to
    fit, and ArviZ says so (LOO needs bayesian=True draws of the parameters)."""
    gmm, _ = _gmm_full()
    idata = Enumeration().posterior(gmm, _blobs(10), num_samples=100).to_arviz()
    with pytest.warns(UserWarning, match="Estimated shape parameter of Pareto"):
        loo = az.loo(idata, pointwise=True)
    assert float(loo["p_loo"]) == pytest.approx(0.0, abs=1e-9)


def test_weighted_draws_are_resampled_for_arviz():
    """Importance-weighted draws are resampled (SIR, seed 0) before export, each keeping its
    original weight in sample_stats; resample=False exports the raw particles."""
    lg, x = _ppca()
    post = ImportanceSampling("guide", num_particles=100).posterior(lg, x)
    idata = diagnostics.to_inference_data(post, seed=0)
    resampled = post.resample(seed=0)
    np.testing.assert_array_equal(idata.posterior["z"].values[0], resampled.samples["z"].numpy())
    np.testing.assert_array_equal(idata.log_likelihood["x"].values[0], resampled.log_lik.numpy())
    stats = idata.sample_stats
    np.testing.assert_allclose(stats["log_weight"].values, (stats["log_p"] - stats["log_q"]).values)
    raw = post.to_arviz(resample=False)
    np.testing.assert_array_equal(raw.posterior["z"].values[0], post.samples["z"].numpy())
    np.testing.assert_array_equal(
        raw.sample_stats["log_weight"].values[0], post.log_weights.numpy()
    )


def test_chains_must_describe_the_same_draws():
    """A list of posteriors becomes chains only with the same sites, shapes and data."""
    lg, x = _ppca()
    a = SVI().posterior(lg, x, num_samples=20)
    with pytest.raises(ValueError, match="same number of draws"):
        diagnostics.to_inference_data([a, SVI().posterior(lg, x, num_samples=30)])
    with pytest.raises(ValueError, match="other data"):
        diagnostics.to_inference_data([a, SVI().posterior(lg, x + 1, num_samples=20)])
    gmm, _ = _gmm_full()
    with pytest.raises(ValueError, match="same latent sites|same number of draws"):
        diagnostics.to_inference_data([a, Enumeration().posterior(gmm, x[:, :2], num_samples=20)])
    with pytest.raises(ValueError, match="non-empty list"):
        diagnostics.to_inference_data([])


# ----------------------------------------------------------------------------------------------
# k̂
def test_khat_summary_uses_arvizs_thresholds():
    """Bins are ArviZ's, half-open as its histogram counts: good < 0.5 ≤ ok < good_k ≤ bad < 1
    ≤ very bad, good_k = min(1 - 1/log10 S, 0.7) as az.loo reports it; with S large the counts
    are ks_summary's."""
    from arviz.stats.diagnostics import ks_summary

    k = np.array([0.2, 0.5, 0.500001, 0.7, 0.700001, 1.0, 1.2, np.inf, np.nan])
    s = diagnostics.khat_summary(k, num_samples=4000)
    assert s.good_k == 0.7 and s.ok_k == 0.5
    assert list(s.labels) == ["good", "ok", "ok", "bad", "bad"] + ["very bad"] * 4
    assert [s.counts[c] for c in diagnostics.KHAT_LABELS] == [1, 2, 2, 4]
    # ArviZ cannot count the NaN, which counts as very bad here
    assert ks_summary(k[:-1])["Count"].tolist() == [1, 2, 2, 3]
    small = diagnostics.khat_summary(torch.tensor([0.45, 0.55]), num_samples=100)
    assert small.good_k == pytest.approx(0.5) and list(small.labels) == ["good", "bad"]
    # good_k is the one az.loo uses for the same number of draws
    lg, x = _ppca()
    post = SVI().posterior(lg, x, num_samples=300)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Estimated shape parameter of Pareto", UserWarning)
        loo = az.loo(post.to_arviz(), pointwise=True)
    assert diagnostics.khat_summary(loo["pareto_k"].values, 300).good_k == loo["good_k"]
    with pytest.raises(ValueError, match="num_samples"):
        diagnostics.khat_summary(k, num_samples=1)


def test_guide_khat_flags_a_narrow_guide_and_passes_a_wide_one():
    """k̂ of the guide as a proposal: shrinking the exact posterior's scale makes the weights
    heavy-tailed (bad), widening it keeps them light (good)."""
    lg, x = _ppca()
    verdicts = {}
    for factor in (0.3, 1.5):
        lg.set_guide_to_posterior()
        lg._assign("guide_scale_tril", lg.guide_scale_tril.detach() * factor)
        ev = ImportanceSampling("guide", num_particles=1000).log_evidence(lg, x)
        verdicts[factor] = diagnostics.khat_summary(ev.khat, 1000)
    narrow, wide = verdicts[0.3], verdicts[1.5]
    assert narrow.counts["bad"] + narrow.counts["very bad"] >= 25 and not narrow.reliable
    assert wide.counts["good"] == 30 and wide.reliable
    assert "very bad" in str(narrow)


# ----------------------------------------------------------------------------------------------
# amortisation gap
def test_amortization_gap_is_zero_for_the_exact_guide_and_positive_otherwise():
    """With q = p(z | x) every weight equals p(x): ELBO = IWAE = exact. With a perturbed guide
    the ELBO falls below log p(x), and IWAE on the same particles closes most of the gap."""
    lg, x = _ppca()
    lg.set_guide_to_posterior()
    gap = diagnostics.amortization_gap(lg, x, num_particles=50)
    assert gap.exact_source == "LinearGaussian.exact_log_evidence"
    torch.testing.assert_close(gap.elbo, gap.exact, rtol=0, atol=1e-9)
    torch.testing.assert_close(gap.iwae, gap.exact, rtol=0, atol=1e-9)

    with torch.no_grad():
        lg.c.add_(0.5)  # shift every guide mean
    gap = diagnostics.amortization_gap(lg, x, num_particles=200)
    assert torch.all(gap.inference_gap > 0)
    assert torch.all(gap.iwae >= gap.elbo)  # Jensen on the very same particles
    means = gap.means()
    assert 0 < means["iwae_gap"] < 0.5 * means["inference_gap"]
    assert means["iwae_gain"] == pytest.approx(means["iwae"] - means["elbo"])


def test_amortization_gap_without_an_exact_value():
    """A VAE has no exact log p(x): the gap fields are None and the bounds still order."""
    vae = models.VAE(dim=4, latent_dim=2, hidden=(8,), likelihood="gaussian")
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    gap = diagnostics.amortization_gap(vae, x, num_particles=20)
    assert gap.exact is None and gap.inference_gap is None and gap.exact_source is None
    assert torch.all(gap.iwae >= gap.elbo - 1e-6)
    assert math.isnan(gap.means()["inference_gap"])


# ----------------------------------------------------------------------------------------------
# R-hat across restarts
def test_restart_rhat_sees_label_switching_between_em_restarts():
    """EM restarts from different k-means++ seeds find one optimum under different labels:
    R-hat of the labels explodes while the label-free log-likelihood agrees."""
    x = _blobs(20)
    out = diagnostics.restart_rhat(
        lambda: models.GaussianMixture(2, num_components=3).double(), x, Enumeration(), [0, 1, 2, 3]
    )
    assert out.verdict == "label switching" and out.flagged == ("z",)
    assert out.max_rhat["z"] > 1.01 and len(out.fits) == 4
    assert np.ptp(out.log_lik) < 1e-6 and math.isnan(out.log_lik_rhat)
    assert out.idata.posterior["z"].shape == (4, 1000, 60)
    same = diagnostics.restart_rhat(
        lambda: models.GaussianMixture(2, num_components=3).double(),
        x,
        Enumeration(),
        [0, 0],
        num_samples=500,
    )
    assert same.verdict == "agree" and same.flagged == ()


def test_restart_rhat_sees_local_optima():
    """Two EM runs started in different basins end in different optima: the log-likelihoods
    differ, which is reported as local optima."""
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([0.0, 3.0, 9.0]).repeat_interleave(20).unsqueeze(-1)
    x = x + 0.3 * torch.randn(60, 1, generator=g)
    starts = iter(
        [
            (torch.tensor([[0.0], [6.0]]), torch.tensor([[0.1], [9.0]])),  # {0}, {3, 9}
            (torch.tensor([[1.5], [9.0]]), torch.tensor([[2.25], [0.1]])),  # {0, 3}, {9}
        ]
    )

    def make():
        return models.GaussianMixture(1, num_components=2).set_parameters(
            torch.tensor([0.5, 0.5]), *next(starts)
        )

    out = diagnostics.restart_rhat(
        make, x, Enumeration(), [0, 1], fit_kwargs={"initialize": False}, num_samples=300
    )
    assert out.verdict == "local optima" and abs(out.log_lik[0] - out.log_lik[1]) > 0.1
    with pytest.raises(ValueError, match="at least two seeds"):
        diagnostics.restart_rhat(make, x, Enumeration(), [0])


# ----------------------------------------------------------------------------------------------
# LOO over the number of components
def _warm_bayesian_gmm(k: int, x: torch.Tensor) -> models.GaussianMixture:
    """A bayesian=True mixture whose guide starts at an EM fit's means and scales.

    From its default start (every component at the origin) SVI needs hundreds of steps to
    separate the components; this keeps the test to tens of steps.
    """
    point = models.GaussianMixture(2, num_components=k).double()
    Enumeration().fit(point, x, seed=0)
    model = models.GaussianMixture(2, num_components=k, bayesian=True, prior_scale=5.0).double()
    model.sites(x, which="guide")  # builds the guide's parameters
    model.load_state_dict(
        {
            "_auto_guide.locs.locs_unconstrained": point.means_,
            "_auto_guide.locs.scales_unconstrained": point.covariances_.sqrt().log(),
        },
        strict=False,
    )
    return model


def test_choose_components_prefers_three_clusters(tmp_path):
    """On three well-separated clusters PSIS-LOO and WAIC rank K=3 far above K=1, the table
    has one row per K and the elpd figure is a readable PNG."""
    x = _blobs(20)
    out = diagnostics.choose_components(
        lambda k: _warm_bayesian_gmm(k, x),
        x,
        [1, 2, 3],
        SVI(lr=0.05, batch_size=None),
        fit_kwargs={"steps": 50, "progress": False},
        num_samples=300,
        path=tmp_path / "elpd.png",
    )
    table = out.table.set_index("K")
    assert list(table.index) == [1, 2, 3] and out.best == 3
    for col in ("elpd_loo", "se", "p_loo", "elpd_waic", "max_khat"):
        assert np.isfinite(table[col]).all(), col
    gain = table.loc[3, "elpd_loo"] - table.loc[1, "elpd_loo"]
    assert gain > 5 * max(table.loc[1, "se"], table.loc[3, "se"])
    assert table.loc[3, "elpd_waic"] > table.loc[2, "elpd_waic"] > table.loc[1, "elpd_waic"]
    image = imread(out.path)
    assert out.path == tmp_path / "elpd.png" and image.ndim == 3 and image.shape[1] > 100
    assert "best K=3" in str(out)


def test_choose_components_refuses_point_estimates_before_fitting():
    """Point-estimate mixtures have nothing for LOO to leave out: refused up front."""
    calls = []

    def make(k):
        calls.append(k)
        return models.GaussianMixture(2, num_components=k)

    with pytest.raises(ValueError, match="bayesian=True"):
        diagnostics.choose_components(make, _blobs(5).float(), [1, 2], SVI())
    assert calls == [1, 2]


def test_elpd_curve_checks_its_inputs(tmp_path):
    """elpd_curve draws any K grid and refuses arrays of different lengths."""
    path = plots.elpd_curve([1, 2, 3], [-10.0, -5.0, -6.0], [1.0, 1.0, 1.0], tmp_path / "e.png")
    assert imread(path).ndim == 3
    with pytest.raises(ValueError, match="one length"):
        plots.elpd_curve([1, 2], [-1.0], [0.1, 0.1], tmp_path / "bad.png")
