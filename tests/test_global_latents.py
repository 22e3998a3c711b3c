"""Stories with global latents: the evidence is one joint number (``Evidence.per_datum`` is None),
exact by enumeration where the globals are discrete, estimated by importance sampling with a
standard error, and bounded by SVI. Exact answers are closed forms or brute-force sums."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from ppl_lvm import models
from ppl_lvm.inference import SVI, Enumeration, ImportanceSampling

pytestmark = pytest.mark.usefixtures("float64")

PROBS_Z, LOCS = (0.3, 0.7), (0.0, 2.0)


def switch(x, mask=None):
    """A global Bernoulli switch z moves the mean of every datum; a local label y per datum."""
    locs = torch.tensor(LOCS, dtype=x.dtype)
    z = pyro.sample("z", dist.Bernoulli(PROBS_Z[1]), infer={"enumerate": "parallel"})
    with pyro.plate("data", len(x)):
        y = pyro.sample("y", dist.Bernoulli(0.4), infer={"enumerate": "parallel"})
        pyro.sample("obs", dist.Normal(locs[z.long()] + y, 1.0), obs=x)


def switch_brute_force(x):
    """log p(x) and p(z = 1 | x) by summing z and every y_n."""
    terms = []
    for z in (0, 1):
        per = torch.logsumexp(
            torch.stack(
                [
                    math.log(p) + dist.Normal(LOCS[z] + y, 1.0).log_prob(x)
                    for y, p in ((0, 0.6), (1, 0.4))
                ]
            ),
            0,
        )
        terms.append(math.log(PROBS_Z[z]) + per.sum())
    terms = torch.stack(terms)
    return float(torch.logsumexp(terms, 0)), float(torch.softmax(terms, 0)[1])


def test_enumeration_sums_a_global_discrete_switch_exactly():
    """The joint log p(x) equals the brute-force sum and Pyro's TraceEnum_ELBO with the empty
    guide; there is no per-datum split; the draws of z follow p(z | x)."""
    x = torch.tensor([1.0, 2.0, 3.0, 2.5])
    total, p1 = switch_brute_force(x)
    story = models.from_functions(switch, lambda x, mask=None: None)
    ev = Enumeration().log_evidence(story, x)
    assert ev.kind == "exact" and ev.per_datum is None and len(ev) == 4
    assert ev.total == pytest.approx(total, abs=1e-10)
    pyro_value = -TraceEnum_ELBO(max_plate_nesting=1).loss(switch, lambda x, mask=None: None, x)
    assert ev.total == pytest.approx(pyro_value, abs=1e-10)
    post = Enumeration().posterior(story, x, num_samples=4000, seed=0)
    share = float(post.samples["z"].float().mean())
    assert abs(share - p1) < 4 * math.sqrt(p1 * (1 - p1) / 4000)
    assert post.log_lik.shape == (4000, 4)
    # given each draw of z, log_lik is log p(x_n | z) with y summed out
    z = post.samples["z"].long().reshape(-1)[:5]
    want = torch.logsumexp(
        torch.stack(
            [
                math.log(p) + dist.Normal(torch.tensor(LOCS)[z][:, None] + y, 1.0).log_prob(x)
                for y, p in ((0, 0.6), (1, 0.4))
            ]
        ),
        0,
    )
    assert torch.allclose(post.log_lik[:5], want, atol=1e-10)
    # SVI with the empty guide: TraceEnum_ELBO's ELBO is log p(x) itself
    assert SVI("elbo").log_evidence(story, x).total == pytest.approx(total, abs=1e-10)


def beta_bernoulli(x, mask=None):
    f = pyro.sample("f", dist.Beta(10.0, 10.0))
    with pyro.plate("data", len(x)):
        pyro.sample("obs", dist.Bernoulli(f), obs=x)


def poisson_gamma(x, mask=None):
    rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("obs", dist.Poisson(rate), obs=x)


def _log_beta(a, b):
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _gamma_moment(a: float, b: float) -> float:
    """log E[r^a e^(-b r)] under the Gamma(2, 1) prior."""
    return math.lgamma(2 + a) - (2 + a) * math.log(1 + b) - math.lgamma(2.0)


#: The ESS fraction that K prior draws tend to: E[w]^2 / E[w^2] with w the likelihood.
ESS_FRACTION = {
    "beta_bernoulli": math.exp(
        2 * _log_beta(13.0, 11.0) - _log_beta(16.0, 12.0) - _log_beta(10.0, 10.0)
    ),
    "poisson_gamma": math.exp(2 * _gamma_moment(6, 3) - _gamma_moment(12, 6)),
}


@pytest.mark.parametrize(
    ("fn", "x", "exact"),
    [
        (
            beta_bernoulli,
            torch.tensor([0.0, 1.0, 1.0, 1.0]),
            _log_beta(13.0, 11.0) - _log_beta(10.0, 10.0),
        ),
        (
            poisson_gamma,
            torch.tensor([1.0, 2.0, 3.0]),
            # ∫ Gamma(r; 2, 1) Π Poisson(x_n; r) dr in closed form
            2 * math.log(1.0)
            - math.lgamma(2.0)
            + math.lgamma(2.0 + 6.0)
            - (2.0 + 6.0) * math.log(1.0 + 3.0)
            - sum(math.lgamma(v + 1) for v in (1.0, 2.0, 3.0)),
        ),
    ],
    ids=["beta_bernoulli", "poisson_gamma"],
)
def test_importance_sampling_estimates_the_joint_evidence_of_a_global_latent(fn, x, exact):
    """Prior draws of the global, one weight per draw for the whole data set: within 4 standard
    errors of the closed form, with an ESS and a k̂ of that one estimate; the ESS fraction is
    the closed-form E[w]^2 / E[w^2] (0.87 and 0.64 here) to within 0.03, far more than its
    Monte Carlo spread at K = 20,000."""
    ev = ImportanceSampling("prior", 20000).log_evidence(models.from_functions(fn), x, seed=0)
    assert ev.per_datum is None and ev.stderr.dim() == 0 and ev.khat.dim() == 0
    assert abs(ev.total - exact) < 4 * ev.total_stderr
    assert float(ev.ess) / 20000 == pytest.approx(ESS_FRACTION[fn.__name__], abs=0.03)
    post = ImportanceSampling("prior", 500).posterior(models.from_functions(fn), x, seed=0)
    assert post.log_weights.shape == (500,)  # joint weights: one per draw of the global
    assert post.to_arviz().log_likelihood["x"].shape[-1] == len(x)


def global_bernoulli(x, mask=None):
    """Pyro's exact case of a global discrete latent: z ~ Bernoulli(0.25), x_n ~ N(z, 1)."""
    z = pyro.sample("z", dist.Bernoulli(0.25), infer={"enumerate": "parallel"})
    with pyro.plate("data", len(x)):
        pyro.sample("obs", dist.Normal(z, 1.0), obs=x)


def test_a_global_bernoulli_gives_pyros_exact_numbers():
    """log p(x) = -6.6103263 and P(z = 1 | x) = 0.9677479 for x = [1, 2, 3], to 1e-6: the
    evidence by Enumeration, the posterior as the evidence of the story with z = 1 observed
    over the evidence."""
    x = torch.tensor([1.0, 2.0, 3.0])
    total = Enumeration().log_evidence(global_bernoulli, x).total
    assert total == pytest.approx(-6.6103263, abs=1e-6)
    with_z1 = pyro.poutine.condition(global_bernoulli, data={"z": torch.tensor(1.0)})
    joint = Enumeration().log_evidence(models.from_functions(with_z1), x).total
    assert math.exp(joint - total) == pytest.approx(0.9677479, abs=1e-6)
    # and the posterior's draws of z follow it: 4,000 draws, 4 binomial standard errors
    post = Enumeration().posterior(global_bernoulli, x, num_samples=4000, seed=0)
    share = float(post.samples["z"].double().mean())
    assert abs(share - 0.9677479) < 4 * math.sqrt(0.9677479 * 0.0322521 / 4000)


CAT_PROBS, CAT_LOCS = (0.2, 0.3, 0.5), (-1.0, 1.0, 2.0)


def global_categorical(x, mask=None):
    """A global Categorical z over three means shared by every datum."""
    z = pyro.sample("z", dist.Categorical(torch.tensor(CAT_PROBS)), infer={"enumerate": "parallel"})
    with pyro.plate("data", len(x)):
        pyro.sample("obs", dist.Normal(torch.tensor(CAT_LOCS)[z], 1.0), obs=x)


def test_a_global_categorical_posterior_is_exact():
    """p(z = k | x) for each of three states, as the evidence with z = k observed over the
    evidence, equals the brute-force softmax to 1e-6; the draws follow it."""
    x = torch.tensor([1.0, 2.0, 3.0])
    terms = torch.stack(
        [
            math.log(p) + dist.Normal(m, 1.0).log_prob(x).sum()
            for p, m in zip(CAT_PROBS, CAT_LOCS, strict=True)
        ]
    )
    brute = torch.softmax(terms, 0)
    total = Enumeration().log_evidence(global_categorical, x).total
    assert total == pytest.approx(float(torch.logsumexp(terms, 0)), abs=1e-6)
    for k in range(3):
        fixed = pyro.poutine.condition(global_categorical, data={"z": torch.tensor(k)})
        joint = Enumeration().log_evidence(models.from_functions(fixed), x).total
        assert math.exp(joint - total) == pytest.approx(float(brute[k]), abs=1e-6)
    post = Enumeration().posterior(global_categorical, x, num_samples=4000, seed=0)
    share = torch.bincount(post.samples["z"].long().flatten(), minlength=3).double() / 4000
    assert ((share - brute).abs() <= 4 * (brute * (1 - brute) / 4000).sqrt() + 1e-3).all()
