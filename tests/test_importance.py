"""ImportanceSampling: estimates against Enumeration's exact values and closed forms."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Importance

from ppl_lvm import datasets, models
from ppl_lvm.core.stats import log_mean_weight
from ppl_lvm.inference import (
    SVI,
    Enumeration,
    ImportanceSampling,
    ModelGuideMismatchError,
    UnsupportedModelError,
)
from ppl_lvm.models import from_functions

pytestmark = pytest.mark.usefixtures("float64")


def _fitted(kind):
    """A small fitted mixture of each family and data for it."""
    g = torch.Generator().manual_seed(0)
    if kind == "bernoulli":
        x = (torch.rand(60, 8, generator=g) < torch.linspace(0.1, 0.9, 8)).double()
        model = models.BernoulliMixture(8, num_components=3).double()
    elif kind == "categorical":
        x = torch.randint(0, 4, (60, 8), generator=g).double()
        model = models.CategoricalMixture(8, num_components=3, num_categories=4).double()
    else:
        x = torch.randn(60, 4, generator=g) + 2 * (torch.rand(60, 1, generator=g) > 0.5)
        model = models.GaussianMixture(4, num_components=3, covariance=kind).double()
    Enumeration().fit(model, x, method="em", max_steps=50, tol=1e-4)
    return model, x[:6]


MIXTURES = ["diag", "full", "spherical", "bernoulli", "categorical"]


@pytest.mark.parametrize("kind", MIXTURES)
@pytest.mark.parametrize("proposal", ["prior", "uniform"])
def test_mixture_estimates_converge_to_exact(kind, proposal):
    """Within 3 standard errors of Enumeration's exact value, and the error shrinks as 1/√K."""
    model, x = _fitted(kind)
    exact = Enumeration().log_evidence(model, x).per_datum
    small = ImportanceSampling(proposal, num_particles=1000).log_evidence(model, x, seed=1)
    big = ImportanceSampling(proposal, num_particles=16000).log_evidence(model, x, seed=2)
    for ev in (small, big):
        assert ev.kind == "estimate"
        assert torch.all((ev.per_datum - exact).abs() <= 3 * ev.stderr + 1e-12)
    ratio = (big.stderr / small.stderr).median()
    assert float(ratio) == pytest.approx(0.25, rel=0.25)  # sqrt(1000 / 16000)


def test_exact_posterior_proposal_has_zero_variance():
    """With q(z | x) = p(z | x) every weight is log p(x): the estimate is exact and ESS = K."""
    model, x = _fitted("diag")
    probs = Enumeration().posterior(model, x, num_samples=1).probs["z"]

    def exact_guide(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Categorical(probs))

    story = from_functions(model.model, exact_guide)
    ev = ImportanceSampling("guide", num_particles=500).log_evidence(story, x)
    exact = Enumeration().log_evidence(model, x).per_datum
    torch.testing.assert_close(ev.per_datum, exact, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ev.ess, torch.full_like(ev.ess, 500.0), rtol=1e-9, atol=1e-9)
    assert torch.all(ev.stderr < 1e-6)


def test_prior_estimate_of_a_conjugate_model_and_its_standard_error():
    """On z ~ N(0,1), x ~ N(z, 1) the prior proposal converges to N(x; 0, 2), and the stated
    standard error matches the spread of repeated estimates."""

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.tensor(0.0), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])

    x = torch.tensor([[0.3], [2.5]])
    truth = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x[:, 0])
    engine = ImportanceSampling("prior", num_particles=400)
    runs = [engine.log_evidence(model, x, seed=s, khat=False) for s in range(60)]
    est = torch.stack([r.per_datum for r in runs])
    se = torch.stack([r.stderr for r in runs]).mean(0)
    assert torch.all((est.mean(0) - truth).abs() < 4 * se / math.sqrt(60) + 2 * se**2)
    assert torch.all((est.std(0) / se - 1).abs() < 0.35)  # stated SE ≈ observed spread


def test_mismatched_pair_is_refused_where_pyro_is_silently_wrong():
    """pyro.infer.Importance returns a wrong log-normaliser for a mismatched pair; ours raises.

    The model has no observations, so the true log-normaliser is 0.
    """

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.tensor(0.0), 1.0))

    def wrong_guide(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("w", dist.Normal(torch.tensor(1.0), 0.5))

    x = torch.zeros(1, 1)
    pyro.set_rng_seed(0)
    pyro_value = float(Importance(model, wrong_guide, num_samples=200).run(x).get_log_normalizer())
    assert abs(pyro_value) > 0.1  # no warning, no error: just a wrong number
    with pytest.raises(ModelGuideMismatchError, match=r"no guide site: \['z'\]"):
        ImportanceSampling("guide", num_particles=200).log_evidence((model, wrong_guide), x)


def test_uniform_refuses_continuous_latents():
    """Naive Monte Carlo over a continuous space is refused with the alternatives."""
    vae = models.VAE(4, 2, (3,)).double()
    with pytest.raises(UnsupportedModelError, match=r"uniform proposal needs a finite.*'z'"):
        ImportanceSampling("uniform", num_particles=10).log_evidence(vae, torch.zeros(2, 4))


def test_weighted_posterior_and_resampling_match_exact_probabilities():
    """Self-normalised weights and SIR draws reproduce p(z | x) within binomial errors."""
    model, x = _fitted("diag")
    k = 20000
    post = ImportanceSampling("uniform", num_particles=k).posterior(model, x, seed=3)
    probs = Enumeration().posterior(model, x, num_samples=1).probs["z"]
    w = post.normalized_weights()  # (K, N)
    z = post.samples["z"]
    for c in range(3):
        est = (w * (z == c)).sum(0)
        assert torch.all((est - probs[:, c]).abs() < 0.03)
    draws = post.resample(num_samples=k, seed=4).samples["z"]
    for c in range(3):
        freq = (draws == c).double().mean(0)
        se = (probs[:, c] * (1 - probs[:, c]) / k).sqrt()
        assert torch.all((freq - probs[:, c]).abs() < 0.03 + 4 * se)


def test_chunks_do_not_change_the_estimate():
    """Chunked passes (one datum at a time) agree with one pass within standard errors."""
    model, x = _fitted("bernoulli")
    one = ImportanceSampling("prior", num_particles=3000).log_evidence(model, x, seed=0)
    many = ImportanceSampling("prior", num_particles=3000, chunk_size=1).log_evidence(
        model, x, seed=0
    )
    assert torch.all((one.per_datum - many.per_datum).abs() < 4 * (one.stderr + many.stderr))


def test_fit_is_the_iwae_objective_of_svi():
    """ImportanceSampling.fit runs SVI(objective='iwae') with the same K: identical histories."""
    x = datasets.load("digits").x[:64].double()
    torch.manual_seed(0)
    a = models.VAE(64, 2, (16,), "gaussian").double()
    b = models.VAE(64, 2, (16,), "gaussian").double()
    b.load_state_dict(a.state_dict())
    h1 = ImportanceSampling(num_particles=5).fit(a, x, steps=5, lr=1e-3, progress=False)
    h2 = SVI("iwae", num_particles=5, lr=1e-3).fit(b, x, steps=5, progress=False)
    assert h1.objective == "iwae"
    torch.testing.assert_close(h1.history, h2.history, rtol=0, atol=0)
    with pytest.raises(UnsupportedModelError, match="nothing to learn"):
        ImportanceSampling("prior").fit(a, x, steps=1)


def test_log_mean_weight_by_hand():
    """Estimate, delta-method SE and ESS equal their formulas on explicit weights."""
    w = torch.tensor([[1.0], [2.0], [3.0], [6.0]])
    est, se, ess = log_mean_weight(w.log())
    assert float(est) == pytest.approx(math.log(3.0))
    sd = w.std()  # unbiased, as the delta method uses
    assert float(se) == pytest.approx(float(sd / (2 * 3.0)))  # sd / (sqrt(K) mean)
    assert float(ess) == pytest.approx(12.0**2 / 50.0)


def test_argument_errors():
    """Bad settings are named."""
    with pytest.raises(ValueError, match="proposal must be"):
        ImportanceSampling("posterior")
    with pytest.raises(ValueError, match="num_particles must be a positive int"):
        ImportanceSampling(num_particles=0)
    with pytest.raises(UnsupportedModelError, match="finite latent space"):
        ImportanceSampling("uniform").log_evidence(
            models.GaussianMixture(3, num_components=2, bayesian=True), torch.zeros(2, 3)
        )


def test_linear_gaussian_estimate_converges_to_closed_form():
    """On probabilistic PCA the prior and guide estimates lie within 3 standard errors of
    exact_log_evidence, and the exact-posterior guide reproduces it."""
    g = torch.Generator().manual_seed(0)
    ppca = models.LinearGaussian(6, 2).double()
    ppca.set_parameters(torch.randn(6, 2, generator=g), torch.zeros(6), 0.5)
    x = torch.randn(5, 6, generator=g)
    exact = ppca.exact_log_evidence(x)
    prior = ImportanceSampling("prior", num_particles=20000).log_evidence(ppca, x, seed=0)
    guide = ImportanceSampling("guide", num_particles=2000).log_evidence(ppca, x, seed=0)
    for ev in (prior, guide):
        assert torch.all((ev.per_datum - exact).abs() <= 3 * ev.stderr + 1e-9)
    ppca.set_guide_to_posterior()
    exact_guide = ImportanceSampling("guide", num_particles=100).log_evidence(ppca, x)
    torch.testing.assert_close(exact_guide.per_datum, exact, rtol=1e-8, atol=1e-8)
