"""Regression tests for crashes and false refusals of the story catalogue (issue 13): each
fails on the code before its fix, and compares against an exact answer."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
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
