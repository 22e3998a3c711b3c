"""SVI: objectives against closed forms, minibatch scaling, and the training loop's promises."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_lvm import models
from ppl_lvm.core import seeded
from ppl_lvm.inference import SVI, Enumeration, UnsupportedModelError
from ppl_lvm.models import from_functions

PRIOR_SD, NOISE_SD = 1.3, 0.6


pytestmark = pytest.mark.usefixtures("float64")


def conjugate_model(x, mask=None):
    """mu is learnable; z_n ~ N(mu, PRIOR_SD²); x_nd ~ N(z_n, NOISE_SD²)."""
    mu = pyro.param("mu", torch.tensor(0.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(mu, PRIOR_SD))
        lik = dist.Normal(z.unsqueeze(-1), NOISE_SD).expand(z.shape + x.shape[-1:])
        if mask is not None:
            lik = lik.mask(mask)
        pyro.sample("x", lik.to_event(1), obs=x)


def posterior_of(x, mu):
    d = x.shape[-1]
    prec = 1 / PRIOR_SD**2 + d / NOISE_SD**2
    mean = (mu / PRIOR_SD**2 + x.sum(-1) / NOISE_SD**2) / prec
    return mean, prec**-0.5


def exact_guide(x, mask=None):
    """q(z_n | x_n) = p(z_n | x_n) at the current mu."""
    mu = pyro.param("mu", torch.tensor(0.0))
    mean, sd = posterior_of(x, mu)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(mean, sd))


def crude_guide(x, mask=None):
    """A fixed, wrong Gaussian."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(torch.full((x.shape[0],), 0.2), 0.9))


def exact_log_px(x, mu):
    d = x.shape[-1]
    cov = NOISE_SD**2 * torch.eye(d) + PRIOR_SD**2 * torch.ones(d, d)
    return dist.MultivariateNormal(torch.full((d,), float(mu)), cov).log_prob(x)


def analytic_elbo_crude(x):
    """E_q[log p(x, z) - log q(z)] for crude_guide with mu = 0, in closed form."""
    m, s = 0.2, 0.9
    d = x.shape[-1]
    e_prior = -0.5 * math.log(2 * math.pi * PRIOR_SD**2) - (m**2 + s**2) / (2 * PRIOR_SD**2)
    e_lik = -0.5 * d * math.log(2 * math.pi * NOISE_SD**2) - ((x - m).pow(2) + s**2).sum(-1) / (
        2 * NOISE_SD**2
    )
    entropy = 0.5 * math.log(2 * math.pi * math.e * s**2)
    return e_prior + e_lik + entropy


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    z = 1.5 + PRIOR_SD * torch.randn(40, 1, generator=g)
    return z + NOISE_SD * torch.randn(40, 3, generator=g)


@pytest.mark.parametrize("objective", ["elbo", "meanfield", "iwae"])
def test_exact_guide_bounds_are_exact(data, objective):
    """With q = p(z | x) the ELBO, mean-field ELBO and IWAE bound all equal log p(x)."""
    ev = SVI(objective=objective, num_particles=3).log_evidence(
        (conjugate_model, exact_guide), data
    )
    assert ev.kind == "lower_bound"
    torch.testing.assert_close(ev.per_datum, exact_log_px(data, 0.0), rtol=1e-10, atol=1e-10)


def test_elbo_estimate_matches_closed_form(data):
    """The per-datum ELBO with a crude guide matches its closed form within 4 standard errors."""
    k = 4000
    lw = SVI(num_particles=k).log_evidence((conjugate_model, crude_guide), data, seed=1)
    truth = analytic_elbo_crude(data)
    # standard error of a K-particle mean, from the spread of the weights at this seed
    from ppl_lvm.inference import log_weights

    with seeded(1):
        spread = log_weights((conjugate_model, crude_guide), data, num_particles=k).local.std(0)
    assert torch.all((lw.per_datum - truth).abs() < 4 * spread / math.sqrt(k))
    # on the same particles (same seed) the IWAE bound is above the ELBO by Jensen's inequality
    iwae = SVI(objective="iwae").log_evidence(
        (conjugate_model, crude_guide), data, num_particles=k, seed=1
    )
    assert torch.all(iwae.per_datum > lw.per_datum)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_minibatch_objective_is_scaled_to_the_full_data(data, objective):
    """A batch of B data is scaled by N/B: with the exact guide it is (N/B) Σ_b log p(x_n) / N."""
    engine = SVI(objective=objective, num_particles=2)
    story = from_functions(conjugate_model, exact_guide)
    story.sites(data)
    idx = torch.tensor([3, 17, 8, 30, 1])
    value = engine._objective.step(story, data[idx], None, len(data), 1, False)
    expected = (len(data) / len(idx)) * exact_log_px(data[idx], 0.0).sum() / len(data)
    assert value.item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize("objective", ["elbo", "meanfield", "iwae"])
def test_fit_learns_the_prior_mean(data, objective):
    """Fitting mu by each objective reaches the maximum-likelihood value (the data mean)."""
    story = from_functions(conjugate_model, exact_guide)
    fit = SVI(objective=objective, num_particles=2, lr=0.05, batch_size=20).fit(
        story, data, epochs=150, progress=False, seed=0
    )
    (mu,) = story.trainable_parameters()
    assert fit.history[-10:].mean() > fit.history[:10].mean()
    assert mu.item() == pytest.approx(data.mean().item(), abs=0.05)


def test_nan_names_the_step_and_restores_parameters(data):
    """A NaN objective stops the fit, names the step, and leaves the last finite parameters."""

    def model(x, mask=None):
        a = pyro.param("a", torch.tensor(0.3))
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "x",
                dist.Normal(0.0, a.sqrt(), validate_args=False).expand(x.shape).to_event(1),
                obs=x,
            )

    def guide(x, mask=None):
        pass

    story = from_functions(model, guide)
    # Pyro's validation warns about the NaN too; the engine turns it into a clear stop
    with (
        pytest.warns(UserWarning, match="Encountered NaN"),
        pytest.raises(FloatingPointError, match=r"was nan at step \d+; the parameters of step"),
    ):
        SVI(lr=0.2, batch_size=None, optimizer="sgd").fit(
            story, 0.01 * data, steps=50, progress=False
        )
    (a,) = story.trainable_parameters()
    assert math.isfinite(a.item()) and a.item() > 0


def _tiny_vae():
    return models.VAE(6, 2, (8,), "gaussian").double()


def test_resume_equals_uninterrupted(tmp_path, data):
    """Stopping at step 10 and resuming to 25 gives exactly the uninterrupted run's result."""
    x = torch.cat([data, data], -1)  # (40, 6)
    engine = SVI(objective="elbo", num_particles=2, lr=1e-2, batch_size=16)
    torch.manual_seed(0)
    a = _tiny_vae()
    b = _tiny_vae()
    b.load_state_dict(a.state_dict())
    full = engine.fit(a, x, steps=25, seed=3, progress=False)
    ckpt = tmp_path / "run.pt"
    engine.fit(b, x, steps=10, seed=3, progress=False, checkpoint=ckpt)
    fresh = _tiny_vae()
    resumed = engine.fit(fresh, x, steps=25, seed=3, progress=False, resume=ckpt)
    assert resumed.num_steps == 25
    torch.testing.assert_close(resumed.history, full.history, rtol=0, atol=0)
    for (name, pa), pb in zip(a.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_early_stopping_restores_the_best(data):
    """When the validation bound only falls, training stops after `patience` checks and the
    best (first) parameters come back."""
    x = torch.cat([data, data], -1)

    def ascend_loss(params, lr):
        return torch.optim.SGD(params, lr=lr, maximize=True)  # makes the bound worse each step

    vae = _tiny_vae()
    engine = SVI(objective="elbo", num_particles=8, optimizer=ascend_loss, lr=1e-2, batch_size=20)
    fit = engine.fit(vae, x, steps=200, validation=x, eval_every=2, patience=3, progress=False)
    assert fit.info["stopped_early"] and fit.num_steps < 200
    vals = [v for _, v in fit.info["validation"]]
    best = max(range(len(vals)), key=vals.__getitem__)
    assert len(vals) - 1 - best == 3  # stopped exactly `patience` checks after the best
    assert vals[-1] < vals[best] - 1.0  # and the bound had clearly fallen
    assert engine.mean_bound(vae, x, None) == pytest.approx(vals[best], abs=0.3)


def test_two_fits_never_share_parameters(data):
    """Two stories using the same pyro.param name are fitted independently; the global store
    stays empty."""
    a = from_functions(conjugate_model, exact_guide)
    b = from_functions(conjugate_model, exact_guide)
    SVI(lr=0.1, batch_size=None).fit(a, data, steps=40, progress=False)
    b.sites(data)
    (mu_b,) = b.trainable_parameters()
    assert mu_b.item() == 0.0
    SVI(lr=0.1, batch_size=None).fit(b, -data, steps=40, progress=False)
    (mu_a,) = a.trainable_parameters()
    assert mu_a.item() > 0.5 and mu_b.item() < -0.5
    assert len(pyro.get_param_store()) == 0


def test_argument_and_model_refusals(data):
    """Bad arguments and unsuitable stories are refused with the fix."""
    with pytest.raises(ValueError, match="objective must be"):
        SVI(objective="vi")
    with pytest.raises(ValueError, match="exactly one of epochs or steps"):
        SVI().fit((conjugate_model, exact_guide), data, epochs=1, steps=1)
    with pytest.raises(ValueError, match="patience needs validation"):
        SVI().fit((conjugate_model, exact_guide), data, epochs=1, patience=2)
    with pytest.raises(UnsupportedModelError, match="needs a guide"):
        SVI().fit(conjugate_model, data, epochs=1)
    with pytest.raises(UnsupportedModelError, match="one joint bound.*batch_size=None"):
        SVI(objective="iwae", batch_size=2).fit(
            models.GaussianMixture(3, num_components=2, bayesian=True), data, epochs=1
        )
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            SVI().fit((conjugate_model, exact_guide), data, epochs=1, device="cuda")


def test_enumerated_mixture_trains_by_traceenum(data):
    """A point-estimate mixture (z enumerated, empty guide) trains with TraceEnum_ELBO and its
    exact likelihood rises; its bound (z summed inside each weight) lies below the exact value,
    and with the empty guide it is the exact value itself."""
    x = torch.cat([data, -data])
    gmm = models.GaussianMixture(3, num_components=2).double()
    # a poor start: both components near the origin
    gmm.set_parameters(
        torch.tensor([0.5, 0.5]), torch.tensor([[0.1] * 3, [-0.1] * 3]), torch.ones(2, 3)
    )
    before = Enumeration().log_evidence(gmm, x).mean
    fit = SVI(lr=0.05, batch_size=20).fit(gmm, x, epochs=30, progress=False, initialize=False)
    after = Enumeration().log_evidence(gmm, x).mean
    assert after > before + 0.3 and fit.num_steps == 120
    exact = Enumeration().log_evidence(gmm, x).per_datum
    assert torch.allclose(SVI().log_evidence(gmm, x).per_datum, exact, atol=1e-9, rtol=0)


def test_posterior_draws_from_the_guide(data):
    """posterior returns S guide draws per datum, whose moments match the guide."""
    post = SVI().posterior((conjugate_model, exact_guide), data, num_samples=4000)
    z = post.samples["z"]
    assert z.shape == (4000, 40) and post.log_weights is None
    mean, sd = posterior_of(data, 0.0)
    assert torch.all((z.mean(0) - mean).abs() < 4 * sd / math.sqrt(4000))
    assert post.to_arviz().posterior["z"].shape == (1, 4000, 40)
