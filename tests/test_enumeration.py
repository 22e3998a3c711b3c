"""Enumeration: exact log p(x) and p(z | x) against brute force, scikit-learn and itself."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from ppl_lvm import datasets, models
from ppl_lvm.inference import Enumeration, UnsupportedModelError
from ppl_lvm.metrics import cluster_purity
from ppl_lvm.models import from_functions

pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


# ---------------------------------------------------------------------------------------------
# a story with two dependent discrete sites, small enough to sum by hand
PI = [0.2, 0.5, 0.3]
PZ2 = [[0.9, 0.1], [0.4, 0.6], [0.25, 0.75]]  # p(z2 | z1)
LOC = [[-2.0, 0.0], [0.5, 1.0], [2.0, 3.0]]  # mean of x given (z1, z2)


def two_site_model(x, mask=None):
    """z1 ~ Cat(PI); z2 | z1 ~ Cat(PZ2[z1]); x_nd ~ N(LOC[z1, z2], 1)."""
    pi, pz2, loc = torch.tensor(PI), torch.tensor(PZ2), torch.tensor(LOC)
    with pyro.plate("data", x.shape[0]):
        z1 = pyro.sample("z1", dist.Categorical(pi))
        z2 = pyro.sample("z2", dist.Categorical(pz2[z1]))
        mean = loc[z1, z2].unsqueeze(-1)
        lik = dist.Normal(mean, 1.0).expand(torch.broadcast_shapes(mean.shape, x.shape))
        if mask is not None:
            lik = lik.mask(mask)
        pyro.sample("x", lik.to_event(1), obs=x)


def brute_force_two_site(x, mask):
    """log p(x_n) and p(z1, z2 | x_n) by looping over all 6 joint states."""
    m = torch.ones_like(x) if mask is None else mask.double()
    joint = torch.empty(x.shape[0], 3, 2)
    for a, b in itertools.product(range(3), range(2)):
        lik = (m * dist.Normal(LOC[a][b], 1.0).log_prob(x)).sum(-1)
        joint[:, a, b] = math.log(PI[a]) + math.log(PZ2[a][b]) + lik
    log_px = torch.logsumexp(joint.reshape(len(x), -1), -1)
    return log_px, torch.exp(joint - log_px.view(-1, 1, 1))


@pytest.fixture
def small_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g) * 2
    mask = torch.rand(7, 3, generator=g) > 0.3
    mask[0] = False  # a datum with nothing observed has log p = 0
    return x, mask


@pytest.mark.parametrize("masked", [False, True])
def test_two_sites_match_brute_force(small_data, masked):
    """Several discrete sites are summed exactly: log p(x) and marginals equal the brute force."""
    x, mask = small_data
    mask = mask if masked else None
    ev = Enumeration().log_evidence(two_site_model, x, mask)
    truth, post = brute_force_two_site(x, mask)
    assert ev.kind == "exact" and torch.all(ev.stderr == 0)
    torch.testing.assert_close(ev.per_datum, truth, rtol=1e-12, atol=1e-12)
    if masked:
        assert ev.per_datum[0] == 0.0
    p = Enumeration().posterior(two_site_model, x, mask, num_samples=4)
    torch.testing.assert_close(p.probs["z1"], post.sum(-1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(p.probs["z2"], post.sum(-2), rtol=1e-10, atol=1e-12)


def test_single_datum(small_data):
    """One datum (a data plate of size 1) is summed and described like any other."""
    x, _ = small_data
    truth, post = brute_force_two_site(x[:1], None)
    ev = Enumeration().log_evidence(two_site_model, x[:1])
    torch.testing.assert_close(ev.per_datum, truth, rtol=1e-12, atol=1e-12)
    p = Enumeration().posterior(two_site_model, x[:1], num_samples=2)
    torch.testing.assert_close(p.probs["z1"], post.sum(-1), rtol=1e-10, atol=1e-12)


def test_joint_draws_follow_exact_posterior(small_data):
    """Joint draws (z1, z2) match p(z1, z2 | x) within 4 binomial standard errors."""
    x, _ = small_data
    s = 20_000
    post = Enumeration().posterior(two_site_model, x, num_samples=s, seed=3)
    z1, z2 = post.samples["z1"], post.samples["z2"]
    assert z1.shape == (s, 7) and z2.shape == (s, 7)
    _, truth = brute_force_two_site(x, None)
    for n in (1, 4):
        for a, b in itertools.product(range(3), range(2)):
            freq = ((z1[:, n] == a) & (z2[:, n] == b)).double().mean()
            p = truth[n, a, b]
            assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / s) + 1e-12


def test_map_assignment_is_viterbi(small_data):
    """temperature=0 returns the joint MAP state in every draw."""
    x, _ = small_data
    post = Enumeration().posterior(two_site_model, x, num_samples=3, temperature=0)
    _, truth = brute_force_two_site(x, None)
    flat = truth.reshape(len(x), -1).argmax(-1)
    assert torch.equal(post.samples["z1"][0], flat // 2)
    assert torch.equal(post.samples["z2"][0], flat % 2)
    assert torch.equal(post.samples["z1"][0], post.samples["z1"][2])


def test_event_dim_discrete_site_is_enumerated_jointly():
    """A Bernoulli vector site (to_event) is summed over all 2^L joint values exactly."""
    big_l = 4
    w = torch.linspace(-1.0, 1.5, big_l * 3).reshape(big_l, 3)

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(torch.full((big_l,), 0.3)).to_event(1))
            pyro.sample("x", dist.Normal(z @ w, 0.8).to_event(1), obs=x)

    x = torch.randn(5, 3)
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=big_l)))  # (16, L)
    prior = (states * math.log(0.3) + (1 - states) * math.log(0.7)).sum(-1)
    lik = dist.Normal(states @ w, 0.8).log_prob(x.unsqueeze(1)).sum(-1)  # (N, 16)
    truth = torch.logsumexp(prior + lik, -1)
    ev = Enumeration().log_evidence(model, x)
    torch.testing.assert_close(ev.per_datum, truth, rtol=1e-12, atol=1e-12)
    post = Enumeration().posterior(model, x, num_samples=6, temperature=0)
    best = states[(prior + lik).argmax(-1)]
    assert torch.equal(post.samples["z"][0], best)


# ---------------------------------------------------------------------------------------------
# refusals, all before any work
def test_refuses_continuous_local_site():
    """A continuous local latent is refused, naming it and the engines to use."""

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])

    with pytest.raises(
        UnsupportedModelError, match=r"'z' \(Normal\).*ImportanceSampling\(proposal='prior'\)"
    ):
        Enumeration().log_evidence(model, torch.zeros(3, 1))


def test_refuses_thirty_binary_features_with_their_count():
    """2^30 joint states per datum are refused with the lecture's number, before any work."""
    calls = {"n": 0}

    def model(x, mask=None):
        calls["n"] += 1
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(torch.full((30,), 0.5)).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    with pytest.raises(UnsupportedModelError, match=r"2\^30 = 1,073,741,824 joint states per"):
        Enumeration().log_evidence(model, torch.zeros(4, 1))
    assert calls["n"] == 1  # one metadata trace, no enumeration


def test_refuses_bayesian_mixture():
    """Continuous priors on the globals leave no exact sum; the error names the sites and an
    engine that accepts the story."""
    gmm = models.GaussianMixture(3, num_components=2, bayesian=True)
    with pytest.raises(
        UnsupportedModelError,
        match=r"continuous latent sites \['weights', 'locs'.*"
        r"ImportanceSampling\(proposal='prior'\)",
    ):
        Enumeration().log_evidence(gmm, torch.zeros(4, 3))


def test_refuses_site_outside_plate_fed_by_enumerated_site():
    """Pyro's TraceEnum_ELBO is silently wrong here; Enumeration refuses instead.

    z_n ~ Bernoulli(0.5) per datum and one observation y ~ N(Σ_n z_n, 1) outside the plate:
    parallel enumeration gives z one value shared by the whole plate.
    """
    y_obs = torch.tensor([1.0])

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])
        pyro.sample("y", dist.Normal(z.sum(-1, keepdim=True), 1.0), obs=y_obs)

    x = torch.tensor([[0.2], [1.1], [-0.3]])
    terms = []
    for zs in itertools.product([0.0, 1.0], repeat=3):
        zt = torch.tensor(zs)
        terms.append(
            3 * math.log(0.5)
            + dist.Normal(zt, 1.0).log_prob(x[:, 0]).sum()
            + dist.Normal(zt.sum(), 1.0).log_prob(y_obs).sum()
        )
    truth = float(torch.logsumexp(torch.stack(terms), 0))
    pyro_value = -TraceEnum_ELBO(max_plate_nesting=1).loss(
        config_enumerate(model), lambda x, mask=None: None, x
    )
    assert abs(pyro_value - truth) > 1.0  # the silent error this refusal prevents
    with pytest.raises(UnsupportedModelError, match=r"'y' depends on the enumerated site 'z'"):
        Enumeration().log_evidence(model, x)


def test_refuses_nested_plate_coupling():
    """A site outside an inner plate that uses the inner enumerated values is refused."""

    def nested(x, mask=None):
        with pyro.plate("data", x.shape[0], dim=-1):
            with pyro.plate("features", 2, dim=-2):
                z = pyro.sample("z", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(z.sum(-2, keepdim=True), 1.0), obs=x[:, 0])

    x = torch.tensor([[0.2], [1.1], [-0.3]])
    with pytest.raises(
        UnsupportedModelError,
        match=r"'x' depends on the enumerated site 'z' but sits outside its plate\(s\) "
        r"\['features'\]",
    ):
        Enumeration().log_evidence(nested, x)


def test_em_refused_for_stories_without_m_steps(small_data):
    """EM on a user story says to use method='gradient'."""
    x, _ = small_data
    with pytest.raises(UnsupportedModelError, match="method='gradient'"):
        Enumeration().fit(two_site_model, x, method="em")


@pytest.mark.parametrize("bad", [{"method": "newton"}, {"max_steps": 0}])
def test_fit_argument_errors(small_data, bad):
    """Bad fit arguments are named."""
    x, _ = small_data
    with pytest.raises(ValueError, match=next(iter(bad))):
        Enumeration().fit(models.GaussianMixture(3, num_components=2).double(), x, **bad)


# ---------------------------------------------------------------------------------------------
# built-in mixtures: the direct tensor path against the generic Pyro path and scikit-learn
def _random_gmm(cov, k=3, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    gmm = models.GaussianMixture(d, num_components=k, covariance=cov).double()
    w = torch.rand(k, generator=g) + 0.2
    means = torch.randn(k, d, generator=g)
    if cov == "diag":
        c = torch.rand(k, d, generator=g) + 0.3
    elif cov == "spherical":
        c = torch.rand(k, generator=g) + 0.3
    else:
        a = torch.randn(k, d, d, generator=g)
        c = a @ a.transpose(-1, -2) / d + 0.3 * torch.eye(d)
    return gmm.set_parameters(w / w.sum(), means, c)


def _sklearn_with(gmm):
    cov = gmm.covariance
    sk = SkGaussianMixture(gmm.num_components, covariance_type=cov)
    sk.weights_ = gmm.weights_.numpy()
    sk.means_ = gmm.means_.numpy()
    sk.covariances_ = gmm.covariances_.numpy()
    if cov == "full":
        chol = np.linalg.cholesky(sk.covariances_)
        sk.precisions_cholesky_ = np.stack(
            [np.linalg.inv(c).T for c in chol]
        )  # inverse of the lower factor, transposed, as scikit-learn stores it
    else:
        sk.precisions_cholesky_ = 1 / np.sqrt(sk.covariances_)
    return sk


@pytest.mark.parametrize("cov", ["diag", "full", "spherical"])
def test_gaussian_matches_sklearn(cov):
    """score_samples and predict_proba of scikit-learn equal our exact values (1e-5 relative)."""
    gmm = _random_gmm(cov)
    x = torch.randn(50, 4) * 1.5
    ev = Enumeration().log_evidence(gmm, x)
    sk = _sklearn_with(gmm)
    np.testing.assert_allclose(ev.per_datum.numpy(), sk.score_samples(x.numpy()), rtol=1e-5)
    post = Enumeration().posterior(gmm, x, num_samples=2)
    np.testing.assert_allclose(post.probs["z"].numpy(), sk.predict_proba(x.numpy()), atol=1e-8)


def _generic(model):
    """The same story without its direct tensor path, so the Pyro enumeration path runs."""
    return from_functions(model.model)


FAMILIES = {
    "diag": lambda: _random_gmm("diag"),
    "full": lambda: _random_gmm("full"),
    "spherical": lambda: _random_gmm("spherical"),
    "bernoulli": lambda: models.BernoulliMixture(4, num_components=3).double(),
    "categorical": lambda: models.CategoricalMixture(
        4, num_components=3, num_categories=4
    ).double(),
}


def _family_data(kind, g):
    if kind == "bernoulli":
        return (torch.rand(9, 4, generator=g) > 0.4).double()
    if kind == "categorical":
        return torch.randint(0, 4, (9, 4), generator=g).double()
    return torch.randn(9, 4, generator=g)


@pytest.mark.parametrize("kind", list(FAMILIES))
@pytest.mark.parametrize("masked", [False, True])
def test_direct_path_equals_pyro_enumeration(kind, masked):
    """The direct tensor path and Pyro's enumeration of the same story agree exactly."""
    g = torch.Generator().manual_seed(1)
    model = FAMILIES[kind]()
    x = _family_data(kind, g)
    if kind in ("bernoulli", "categorical"):
        model.initialize(x, None, seed=0)
    mask = (torch.rand(9, 4, generator=g) > 0.3) if masked else None
    fast = Enumeration().log_evidence(model, x, mask).per_datum
    slow = Enumeration().log_evidence(_generic(model), x, mask).per_datum
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)


def test_full_covariance_with_missing_entries_is_the_marginal():
    """With entries missing, a full Gaussian scores the observed block's exact marginal."""
    gmm = _random_gmm("full", k=2, d=3)
    x = torch.randn(4, 3)
    mask = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 0, 1], [0, 1, 0]], dtype=torch.bool)
    ev = Enumeration().log_evidence(gmm, x, mask).per_datum
    w, mu, cov = gmm.weights_, gmm.means_, gmm.covariances_
    for n in range(4):
        o = mask[n]
        comps = [
            w[k].log() + dist.MultivariateNormal(mu[k, o], cov[k][o][:, o]).log_prob(x[n, o])
            for k in range(2)
        ]
        assert float(ev[n]) == pytest.approx(float(torch.logsumexp(torch.stack(comps), 0)))


# ---------------------------------------------------------------------------------------------
# EM and gradient fits
def test_em_on_digits_beats_or_matches_sklearn_from_same_start(digits):
    """From identical initial parameters, our EM reaches scikit-learn's log-likelihood."""
    x = digits.x.double()
    gmm = models.GaussianMixture(64, num_components=10, covariance="diag").double()
    gmm.initialize(x, None, seed=0)
    init = (gmm.weights_.clone(), gmm.means_.clone(), gmm.covariances_.clone())
    fit = Enumeration().fit(gmm, x, method="em", initialize=False, max_steps=300, tol=1e-3)
    ours = Enumeration().log_evidence(gmm, x).mean
    sk = SkGaussianMixture(
        10,
        covariance_type="diag",
        weights_init=init[0].numpy(),
        means_init=init[1].numpy(),
        precisions_init=1 / init[2].numpy(),
        max_iter=300,
        tol=1e-3,
    ).fit(x.numpy())
    theirs = float(sk.score(x.numpy()))
    assert fit.converged and sk.converged_
    assert ours >= theirs - 1e-6, (ours, theirs)
    labels = Enumeration().posterior(gmm, x, num_samples=1, temperature=0).samples["z"][0]
    purity = cluster_purity(labels, digits.labels)
    print(f"digits diag K=10: ours {ours:.4f}, sklearn {theirs:.4f}, purity {purity:.3f}")
    assert purity > 0.4  # chance is about 0.11 for ten balanced classes


EM_CASES = [
    (kind, masked)
    for kind in ("diag", "full", "spherical", "bernoulli", "categorical")
    for masked in (False, True)
]


@pytest.mark.parametrize("kind, masked", EM_CASES)
def test_em_history_never_decreases(kind, masked):
    """EM's exact log-likelihood never goes down, with and without missing entries."""
    g = torch.Generator().manual_seed(4)
    n, d = 300, 6
    if kind == "bernoulli":
        x = (torch.rand(n, d, generator=g) < torch.linspace(0.1, 0.9, d)).double()
        model = models.BernoulliMixture(d, num_components=4).double()
    elif kind == "categorical":
        x = torch.randint(0, 4, (n, d), generator=g).double()
        model = models.CategoricalMixture(d, num_components=4, num_categories=4).double()
    else:
        x = torch.randn(n, d, generator=g) + 3 * (torch.rand(n, 1, generator=g) > 0.5)
        model = models.GaussianMixture(d, num_components=4, covariance=kind).double()
    mask = (torch.rand(n, d, generator=g) > 0.4) if masked else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = Enumeration().fit(model, x, mask, method="em", max_steps=60, tol=1e-10)
    h = fit.history
    assert len(h) > 5
    assert torch.all(h[1:] - h[:-1] >= -1e-9 * h.abs()[1:].clamp(min=1)), h


def test_convergence_warning_and_restarts(digits):
    """Too few steps warn; num_init restarts keep the best final log-likelihood."""
    x = digits.x[:400].double()
    gmm = models.GaussianMixture(64, num_components=5, covariance="diag", num_init=3).double()
    with pytest.warns(ConvergenceWarning, match="did not converge in 2 steps"):
        fit = Enumeration().fit(gmm, x, method="em", max_steps=2)
    assert len(fit.info["restarts"]) == 3
    assert fit.info["final"] == max(fit.info["restarts"])
    assert Enumeration().log_evidence(gmm, x).mean == pytest.approx(fit.info["final"])


def test_gradient_fit_reaches_em_optimum():
    """Gradient ascent on the exact likelihood reaches EM's optimum on well-separated data."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-3.0, 0.0], [3.0, 1.0], [0.0, 4.0]])
    x = centres[torch.randint(0, 3, (600,), generator=g)] + 0.5 * torch.randn(600, 2, generator=g)
    em = models.GaussianMixture(2, num_components=3, covariance="diag").double()
    Enumeration().fit(em, x, method="em", seed=0, tol=1e-8, max_steps=500)
    gd = models.GaussianMixture(2, num_components=3, covariance="diag").double()
    fit = Enumeration().fit(gd, x, method="gradient", seed=0, lr=0.05, max_steps=1500, tol=1e-9)
    ll_em = Enumeration().log_evidence(em, x).mean
    ll_gd = Enumeration().log_evidence(gd, x).mean
    assert fit.history[-1] > fit.history[0]
    assert ll_gd == pytest.approx(ll_em, abs=1e-3)


def test_gradient_fit_of_a_user_story():
    """The generic path learns a user's pyro.param by the exact likelihood."""

    def model(x, mask=None):
        loc = pyro.param("loc", torch.tensor([-0.5, 0.5]))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Categorical(torch.tensor([0.5, 0.5])))
            pyro.sample("x", dist.Normal(loc[z], 0.5), obs=x[:, 0])

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (400,), generator=g) * 4.0 - 2.0 + 0.5 * torch.randn(400, generator=g)
    story = from_functions(model)
    fit = Enumeration().fit(story, x.unsqueeze(-1), method="gradient", lr=0.1, max_steps=400)
    assert fit.history[-1] > fit.history[0]
    (loc,) = story.trainable_parameters()
    assert sorted(loc.detach().tolist()) == pytest.approx([-2.0, 2.0], abs=0.15)
