"""Regression tests for crashes and false refusals of the story catalogue (issue 13): each
fails on the code before its fix, and compares against an exact answer."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import stories
import torch
from torch.distributions import constraints

from ppl_lvm import models
from ppl_lvm.inference import SVI

pytestmark = pytest.mark.usefixtures("float64")


# -- a plate over the data that is not named "data" ---------------------------------------------
PA, PB, LOCS, SCALES = (0.3, 0.7), (0.6, 0.4), (-1.0, 1.0), (1.0, 2.0)


def global_switch(x, mask=None):
    """a (global, enumerated) picks the noise scale of every datum; b_n (local, enumerated)
    picks its mean; the plate over data is named "inner", as in Pyro's test_enum.py."""
    a = pyro.sample("a", dist.Categorical(torch.tensor(PA)), infer={"enumerate": "parallel"})
    with pyro.plate("inner", x.shape[0]):
        b = pyro.sample("b", dist.Categorical(torch.tensor(PB)), infer={"enumerate": "parallel"})
        pyro.sample("obs", dist.Normal(torch.tensor(LOCS)[b], torch.tensor(SCALES)[a]), obs=x)


def _switch_joint(x: torch.Tensor) -> torch.Tensor:
    """log p(x, a) by brute force, for a = 0, 1: (2,)."""
    out = []
    for a in range(2):
        comp = dist.Normal(torch.tensor(LOCS)[:, None], SCALES[a]).log_prob(x)  # (2, N)
        out.append(
            math.log(PA[a]) + torch.logsumexp(torch.tensor(PB).log()[:, None] + comp, 0).sum()
        )
    return torch.stack(out)


def test_svi_sums_a_global_enumerated_site_under_a_plate_not_named_data():
    """SVI('elbo') with the empty guide on a story whose plate is named "inner" and whose global
    discrete site TraceEnum_ELBO sums: the bound is log p(x) itself (it crashed with KeyError
    'data'), the draws of a follow p(a | x), and log_lik is log p(x_n | a_s)."""
    x = torch.tensor([0.5, 1.5, -2.0, 3.0])
    story = models.from_functions(global_switch, lambda x, mask=None: None, data_plate="inner")
    joint = _switch_joint(x)
    ev = SVI("elbo", num_particles=10).log_evidence(story, x)
    assert ev.total == pytest.approx(float(torch.logsumexp(joint, 0)), abs=1e-10)
    post = SVI("elbo").posterior(story, x, num_samples=4000, seed=0)
    a = post.samples["a"]
    assert a.shape == (4000,)
    p1 = float((joint - joint.logsumexp(0)).exp()[1])
    assert abs(float(a.double().mean()) - p1) < 4 * math.sqrt(p1 * (1 - p1) / 4000)
    scales = torch.tensor(SCALES)[a][:, None]  # (S, 1)
    comp = dist.Normal(torch.tensor(LOCS)[:, None, None], scales).log_prob(x)  # (2, S, N)
    expected = torch.logsumexp(torch.tensor(PB).log()[:, None, None] + comp, 0)
    assert torch.allclose(post.log_lik, expected, atol=1e-10)


def _mixture(plate: str):
    def model(x, mask=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
        with pyro.plate(plate, x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
            pyro.sample("obs", dist.Normal(mu + 3.0 * z, 1.0), obs=x)

    def guide(x, mask=None):
        loc = pyro.param("loc", torch.tensor(0.5))
        scale = pyro.param("scale", torch.tensor(0.3), constraint=constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    return models.from_functions(model, guide, data_plate=plate)


def test_a_plate_not_named_data_changes_nothing_in_svi():
    """A Bayesian mixture whose plate is named "N" gives SVI the same bound and the same
    posterior as the same story with the plate named "data" (it crashed with KeyError 'data')."""
    x = torch.tensor([-0.5, 0.2, 2.9, 3.4, 1.0])
    named, plain = _mixture("N"), _mixture("data")
    engine = SVI("elbo", num_particles=20)
    assert (
        engine.log_evidence(named, x, seed=3).total == engine.log_evidence(plain, x, seed=3).total
    )
    a, b = (
        engine.posterior(named, x, num_samples=50, seed=1),
        engine.posterior(plain, x, num_samples=50, seed=1),
    )
    assert torch.equal(a.samples["z"], b.samples["z"]) and torch.equal(a.log_lik, b.log_lik)
    assert a.samples["z"].shape == (50, 5)


# -- supports: the guide's must lie inside the model's ------------------------------------------
C = constraints


@pytest.mark.parametrize(
    ("inner", "outer", "inside"),
    [
        (C.positive, C.nonnegative, True),
        (C.nonnegative, C.positive, False),
        (C.greater_than(1.0), C.positive, True),
        (C.greater_than_eq(0.5), C.greater_than(0.5), False),
        (C.positive, C.real, True),
        (C.real, C.positive, False),
        (C.real, C.real, True),
        (C.unit_interval, C.nonnegative, True),
        (C.unit_interval, C.positive, False),
        (C.interval(0.2, 0.5), C.unit_interval, True),
        (C.unit_interval, C.interval(0.2, 0.5), False),
        (C.interval(0.0, 2.0), C.half_open_interval(0.0, 2.0), False),
        (C.half_open_interval(0.0, 1.0), C.unit_interval, True),
        (C.less_than(0.0), C.real, True),
        (C.less_than(0.0), C.positive, False),
        (C.real_vector, C.real, True),
        (C.boolean, C.integer_interval(0, 3), True),
        (C.integer_interval(0, 3), C.boolean, False),
        (C.integer_interval(1, 3), C.nonnegative_integer, True),
        (C.nonnegative_integer, C.positive_integer, False),
        (C.boolean, C.unit_interval, False),
        (C.unit_interval, C.boolean, False),
        (C.simplex, C.simplex, True),
        (C.real, C.simplex, False),
        (C.simplex, C.real, False),
        (C.independent(C.positive, 1), C.independent(C.nonnegative, 1), True),
    ],
)
def test_support_inside_is_set_containment(inner, outer, inside):
    """support_inside(guide, model) is containment of the two sets, open and closed ends and
    discreteness included."""
    from ppl_lvm.models.support import support_inside

    assert support_inside(inner, outer) is inside


def half_normal_story(x, mask=None):
    """z_n ~ HalfNormal(1) (support [0, inf)), x_n ~ N(z_n, 1)."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.HalfNormal(1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def weibull_guide(x, mask=None):
    """q(z_n) = Weibull(1, 1), an exponential on the open half-line (0, inf): its density stays
    positive at 0, so the weights are bounded (an exp-transformed Normal's vanishes there)."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Weibull(torch.ones(x.shape[0]), 1.0))


def test_a_guide_inside_the_models_support_is_accepted_and_weighs_right():
    """A guide on GreaterThan(0) for a HalfNormal site (GreaterThanEq(0)) was refused as a
    mismatch (the eight-schools example's exp-transformed Normal was); IS now estimates log p(x)
    within 4 SE of the closed form log 2 N(x; 0, √2) Φ(x / √2)."""
    from ppl_lvm.inference import ImportanceSampling

    x = torch.tensor([-1.0, 0.3, 1.2, 2.5])
    story = models.from_functions(half_normal_story, weibull_guide)
    ev = ImportanceSampling("guide", 4000).log_evidence(story, x, seed=0)
    exact = (
        math.log(2.0)
        + dist.Normal(0.0, math.sqrt(2.0)).log_prob(x)
        + dist.Normal(0.0, 1.0).cdf(x / math.sqrt(2.0)).log()
    )
    assert torch.all((ev.per_datum - exact).abs() < 4 * ev.stderr)


def _dirichlet_story(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        p = pyro.sample("p", dist.Dirichlet(torch.ones(3)))
        pyro.sample("x", dist.Categorical(p), obs=x)


def _real_vector_guide(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("p", dist.Normal(torch.zeros(3), 1.0).to_event(1))


def _normal_guide(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(0.0, 1.0))


def _half_cauchy_story(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.HalfCauchy(1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _log_normal_story(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.LogNormal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _half_normal_guide(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.HalfNormal(1.0))


@pytest.mark.parametrize(
    ("model", "guide", "x", "site"),
    [
        (_half_cauchy_story, _normal_guide, torch.ones(3), "z"),
        (_dirichlet_story, _real_vector_guide, torch.tensor([0.0, 2.0]), "p"),
        (_log_normal_story, _half_normal_guide, torch.ones(3), "z"),
    ],
    ids=["normal-for-halfcauchy", "real-for-simplex", "nonnegative-for-positive"],
)
def test_a_guide_outside_the_models_support_is_still_refused(model, guide, x, site):
    """A guide that proposes where the model has no density is a mismatch, named by site."""
    from ppl_lvm.inference import ImportanceSampling, ModelGuideMismatchError

    story = models.from_functions(model, guide)
    with pytest.raises(ModelGuideMismatchError, match=f"site '{site}'.*not inside it"):
        ImportanceSampling("guide", 10).log_evidence(story, x)


# -- a story with no latent site ----------------------------------------------------------------
def coin_mle(x, mask=None):
    """The MLE/MAP tutorial's coin with the fairness a parameter: nothing latent."""
    f = pyro.param("f", torch.tensor(0.7), constraint=constraints.unit_interval)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.Bernoulli(f), obs=x)


@pytest.mark.parametrize(
    "engine",
    ["enumeration", "is-prior", "is-guide", "svi-elbo", "svi-iwae"],
)
def test_the_posterior_of_a_story_with_no_latent_site(engine):
    """No draws, and every row of log_lik is log p(x_n) = log Bernoulli(x_n; 0.7); it converts
    to ArviZ with a log_likelihood group and no posterior group, without a warning (each engine
    raised a ValueError on S = 0 draws, or Pyro's infer_discrete warning)."""
    from ppl_lvm.inference import SVI, Enumeration, ImportanceSampling

    runner = {
        "enumeration": lambda: Enumeration(),
        "is-prior": lambda: ImportanceSampling("prior", 50),
        "is-guide": lambda: ImportanceSampling("guide", 50),
        "svi-elbo": lambda: SVI("elbo", num_particles=5),
        "svi-iwae": lambda: SVI("iwae", num_particles=5),
    }[engine]()
    x = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])
    story = models.from_functions(coin_mle, lambda x, mask=None: None)
    draws = {} if engine.startswith("is") else {"num_samples": 7}
    post = runner.posterior(story, x, seed=0, **draws)
    assert post.samples == {}
    assert post.num_samples == post.log_lik.shape[0] >= 1
    exact = dist.Bernoulli(torch.tensor(0.7)).log_prob(x)
    assert torch.allclose(post.log_lik, exact.expand_as(post.log_lik), atol=1e-12)
    idata = post.to_arviz()
    assert "posterior" not in idata.groups()
    assert idata.log_likelihood["x"].values.reshape(-1, 5) == pytest.approx(
        exact.expand(post.num_samples, 5).numpy(), abs=1e-12
    )


# -- a PyroModule the story calls but does not own ----------------------------------------------
def global_mean(x, mask=None):
    """mu ~ N(0, 1) shared; x_n ~ N(mu, 1)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)


def test_a_blocked_autoguide_inside_a_hand_written_guide():
    """The GMM tutorial's full_guide idiom: an autoguide built outside any engine, called under
    poutine.block(hide_types=["param"]) from the user's guide (it crashed with AttributeError
    '_Context' object has no attribute 'param_state'). The ELBO is the closed form of its q."""
    from pyro import poutine
    from pyro.infer.autoguide import AutoNormal

    auto = AutoNormal(poutine.block(global_mean, expose=["mu"]), init_scale=0.5)

    def full_guide(x, mask=None):
        with poutine.block(hide_types=["param"]):
            auto(x)

    x = torch.tensor([0.3, -1.2, 2.0, 0.7])
    story = models.from_functions(global_mean, full_guide)
    engine = SVI("elbo", num_particles=4000)
    totals = torch.tensor([engine.log_evidence(story, x, seed=s).total for s in range(5)])
    m, s = float(auto.locs.mu.detach()), float(auto.scales.mu.detach())
    n = x.shape[0]
    # E_q log p(x | mu) + E_q log p(mu) + H(q), q = N(m, s^2)
    exact_elbo = (
        -0.5 * n * math.log(2 * math.pi)
        - 0.5 * float(((x - m) ** 2).sum())
        - 0.5 * n * s**2
        - 0.5 * math.log(2 * math.pi)
        - 0.5 * (m**2 + s**2)
        + 0.5 * math.log(2 * math.pi * math.e * s**2)
    )
    se = float(totals.std()) / math.sqrt(5)
    assert abs(float(totals.mean()) - exact_elbo) < 4 * se + 1e-3


# -- a guide trained beforehand with plain pyro.infer.SVI ---------------------------------------
def local_normal(x, mask=None):
    """z_n ~ N(0, 1), x_n ~ N(z_n, 1): log p(x_n) = log N(x_n; 0, √2)."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def hand_guide(x, mask=None):
    loc = pyro.param("q_loc", torch.zeros(x.shape[0]))
    scale = pyro.param("q_scale", torch.ones(x.shape[0]), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, scale))


def _elbo(x, m, s):
    """The ELBO of q(z_n) = N(m_n, s_n^2) in closed form, summed over the data."""
    log2pi = math.log(2 * math.pi)
    lik = -0.5 * log2pi - 0.5 * ((x - m) ** 2 + s**2)
    prior = -0.5 * log2pi - 0.5 * (m**2 + s**2)
    entropy = 0.5 * torch.log(2 * math.pi * math.e * s**2)
    return float((lik + prior + entropy).sum())


@pytest.mark.parametrize("kind", ["autonormal", "pyro.param"])
def test_a_guide_trained_with_plain_pyro_svi_is_evaluated_as_trained(kind):
    """An AutoNormal (or a hand-written pyro.param guide) trained with pyro.infer.SVI in the
    global store: IS is within 4 SE of the exact log p(x), SVI's ELBO is the closed-form ELBO
    of the trained q (not of its initial values), and evaluation changes no parameter (the
    AutoNormal was an AssertionError 'submodule guide_fn has executed outside of
    supermodule'; the pyro.param guide was evaluated at its initial values)."""
    from pyro.infer import SVI as PyroSVI
    from pyro.infer import Trace_ELBO
    from pyro.infer.autoguide import AutoNormal

    from ppl_lvm.inference import ImportanceSampling

    pyro.set_rng_seed(0)
    x = torch.tensor([1.5, -0.4, 2.2, -2.8, 0.9, 0.1])
    guide = AutoNormal(local_normal) if kind == "autonormal" else hand_guide
    trainer = PyroSVI(local_normal, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(300):
        trainer.step(x)
    store = pyro.get_param_store()
    names = (
        ("AutoNormal.locs.z", "AutoNormal.scales.z")
        if kind == "autonormal"
        else (
            "q_loc",
            "q_scale",
        )
    )
    m, s = (store[name].detach().clone() for name in names)
    assert float((m - x / 2).abs().max()) < 0.5  # on its way to the exact posterior mean x / 2

    story = models.from_functions(local_normal, guide)
    ev = ImportanceSampling("guide", 2000).log_evidence(story, x, seed=0)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x)
    assert torch.all((ev.per_datum - exact).abs() < 4 * ev.stderr)
    engine = SVI("elbo", num_particles=2000)
    totals = torch.tensor([engine.log_evidence(story, x, seed=i).total for i in range(5)])
    se = float(totals.std()) / math.sqrt(5)
    assert abs(float(totals.mean()) - _elbo(x, m, s)) < 4 * se
    assert abs(_elbo(x, m, s) - _elbo(x, torch.zeros(6), torch.ones(6))) > 50 * se
    for name, before in zip(names, (m, s), strict=True):
        assert torch.equal(store[name].detach(), before)


# -- a story that does not broadcast over a leading particle dim --------------------------------
def flattening(x, mask=None):
    """z_n ~ N(0, 1), x_n ~ N(z_n, 1), with z flattened by .view(-1): fine for one draw, a
    'Shape mismatch inside plate' under an outer particle plate."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z.view(-1), 1.0), obs=x)


def exact_posterior(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))


def test_a_story_that_does_not_broadcast_over_particles_runs_one_particle_at_a_time():
    """The weighting routine falls back to one pass per particle (path 'per-particle'; it
    crashed with 'Shape mismatch inside plate'): with the exact posterior as proposal every
    weight is log p(x_n) exactly; from the prior the estimate is within 4 SE of it."""
    from ppl_lvm.inference import ImportanceSampling, log_weights

    x = torch.tensor([0.4, -1.3, 2.1, 0.0])
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x)
    story = models.from_functions(flattening, exact_posterior)
    lw = log_weights(story, x, num_particles=7)
    assert lw.path == "per-particle" and lw.local.shape == (7, 4)
    assert torch.allclose(lw.local, exact.expand(7, 4), atol=1e-12)
    assert lw.samples["z"].shape == (7, 4)
    ev = ImportanceSampling("prior", 500).log_evidence(story, x, seed=0)
    assert torch.all((ev.per_datum - exact).abs() < 4 * ev.stderr)
    plain = models.from_functions(normal_normal_plain, exact_posterior)
    assert log_weights(plain, x, num_particles=7).path == "vectorised"


def normal_normal_plain(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def test_the_enumeration_tutorial_trains_with_several_particles_one_at_a_time():
    """The tutorial's ``loc[x]`` does not broadcast over a leading particle dim: Pyro's own
    vectorised TraceEnum_ELBO fails on it, so SVI.fit with K = 4 particles falls back to Pyro's
    loop over particles; the trained guide's ELBO (five seeds, K = 20 each) rises above the
    untrained one by more than 4 standard errors of the difference."""
    from pyro.infer import TraceEnum_ELBO

    module = stories.load("enumeration_tutorial_gmm")
    x = module.data()
    vectorised = TraceEnum_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    with pytest.raises(ValueError, match="Shape mismatch inside plate"):
        vectorised.loss(module.model, module.guide, x)
    story = stories.build(module)
    engine = SVI("elbo", num_particles=4, lr=0.05, batch_size=None)

    def bound() -> torch.Tensor:
        return torch.tensor(
            [SVI("elbo", num_particles=20).log_evidence(story, x, seed=s).total for s in range(5)]
        )

    before = bound()
    fit = engine.fit(story, x, steps=100, seed=0, progress=False)
    after = bound()
    assert torch.isfinite(fit.history).all() and fit.num_steps == 100
    se = math.sqrt(float(before.var() + after.var()) / 5)
    assert float(after.mean() - before.mean()) > 4 * se
