"""The shared weighting routine against hand computations."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_lvm.core import seeded
from ppl_lvm.inference import ModelGuideMismatchError, log_weights
from ppl_lvm.models import from_functions

D = 3
PRIOR_SD = 1.5
NOISE_SD = 0.7


def normal_model(x, mask=None):
    """z_n ~ N(0, PRIOR_SD²); x_nd | z_n ~ N(z_n, NOISE_SD²)."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), PRIOR_SD))
        lik = dist.Normal(z.unsqueeze(-1), NOISE_SD).expand(z.shape + (x.shape[-1],))
        if mask is not None:
            lik = lik.mask(mask)
        pyro.sample("x", lik.to_event(1), obs=x)


def exact_posterior(x, mask):
    """Closed-form N(mean, var) of z_n given the observed entries of x_n."""
    m = torch.ones_like(x) if mask is None else mask.to(x.dtype)
    precision = 1 / PRIOR_SD**2 + m.sum(-1) / NOISE_SD**2
    mean = (m * x).sum(-1) / NOISE_SD**2 / precision
    return mean, precision.rsqrt()


def exact_guide(x, mask=None):
    """q(z_n | x_n) equal to the exact posterior."""
    mean, sd = exact_posterior(x, mask)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(mean, sd))


def crude_guide(x, mask=None):
    """A deliberately wrong proposal, so that weights vary."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x.new_full((x.shape[0],), 0.3), 2.0))


def exact_log_evidence(x, mask):
    """log p(x_n) over observed entries: x_obs ~ N(0, NOISE² I + PRIOR² 11ᵀ)."""
    out = []
    for n in range(x.shape[0]):
        keep = torch.ones(x.shape[1], dtype=torch.bool) if mask is None else mask[n]
        xo = x[n, keep]
        d = xo.shape[0]
        cov = NOISE_SD**2 * torch.eye(d, dtype=x.dtype) + PRIOR_SD**2 * torch.ones(
            d, d, dtype=x.dtype
        )
        out.append(dist.MultivariateNormal(torch.zeros(d, dtype=x.dtype), cov).log_prob(xo))
    return torch.stack(out)


pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, D, generator=g, dtype=torch.float64) * 2
    mask = torch.tensor(
        [[1, 1, 1], [1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=torch.bool
    )
    return x, mask


@pytest.mark.parametrize("masked", [False, True])
def test_matches_hand_computation(data, masked):
    """log p and log q per particle and datum equal a hand computation on the drawn z."""
    x, mask = data
    mask = mask if masked else None
    lw = log_weights((normal_model, crude_guide), x, mask, num_particles=50)
    z = lw.samples["z"]  # (K, N)
    assert z.shape == (50, 6)
    m = torch.ones_like(x) if mask is None else mask.double()
    hand_p = dist.Normal(0.0, PRIOR_SD).log_prob(z) + (
        m * dist.Normal(z.unsqueeze(-1), NOISE_SD).log_prob(x)
    ).sum(-1)
    hand_q = dist.Normal(0.3, 2.0).log_prob(z)
    torch.testing.assert_close(lw.log_p, hand_p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lw.log_q, hand_q, rtol=1e-12, atol=1e-12)
    assert lw.global_log_p.shape == (50,)
    assert torch.all(lw.global_log_p == 0) and not lw.has_global_latents


@pytest.mark.parametrize("masked", [False, True])
def test_exact_posterior_gives_constant_exact_weights(data, masked):
    """With q = p(z | x) every weight equals log p(x_n) over the observed entries."""
    x, mask = data
    mask = mask if masked else None
    lw = log_weights((normal_model, exact_guide), x, mask, num_particles=20)
    truth = exact_log_evidence(x, mask)
    torch.testing.assert_close(lw.local, truth.expand(20, -1), rtol=1e-10, atol=1e-10)


def test_masked_entries_are_never_read(data):
    """NaN or garbage in hidden entries changes nothing and yields no NaN."""
    x, mask = data
    garbage = x.clone()
    garbage[~mask] = float("nan")
    with seeded(3):
        a = log_weights((normal_model, crude_guide), garbage, mask, num_particles=10)
    garbage[~mask] = 1e6
    with seeded(3):
        b = log_weights((normal_model, crude_guide), garbage, mask, num_particles=10)
    assert torch.isfinite(a.local).all()
    torch.testing.assert_close(a.local, b.local, rtol=0, atol=0)


def test_prior_proposal_weights_are_the_likelihood(data):
    """proposal='prior' gives log w = log p(x | z), and its average converges to log p(x)."""
    x, mask = data
    with seeded(0):
        lw = log_weights(normal_model, x, mask, num_particles=200_000, proposal="prior")
    z = lw.samples["z"]
    lik = (mask.double() * dist.Normal(z.unsqueeze(-1), NOISE_SD).log_prob(x)).sum(-1)
    torch.testing.assert_close(lw.local, lik, rtol=1e-12, atol=1e-12)
    est = torch.logsumexp(lw.local, 0) - math.log(lw.num_particles)
    # delta-method standard error of the log of a mean of weights, at this seed
    w = torch.softmax(lw.local, 0)
    stderr = (w.pow(2).sum(0) * lw.num_particles - 1).clamp_min(0).sqrt() / math.sqrt(
        lw.num_particles
    )
    assert torch.all((est - exact_log_evidence(x, mask)).abs() < 4 * stderr + 1e-9)


def test_particles_are_one_batched_pass(data):
    """The model and guide run a fixed number of times whatever K is: no loop over particles."""
    x, _ = data
    calls = {"model": 0, "guide": 0}

    def model(x, mask=None):
        calls["model"] += 1
        normal_model(x, mask)

    def guide(x, mask=None):
        calls["guide"] += 1
        crude_guide(x, mask)

    for k in (1, 7, 300):
        calls.update(model=0, guide=0)
        lw = log_weights((model, guide), x, num_particles=k, validate=False)
        assert lw.local.shape == (k, 6)
        assert calls == {"model": 2, "guide": 2}


def test_discrete_and_global_sites():
    """A global mean and a local discrete label are split into global and per-datum parts."""
    x = torch.tensor([[-2.0], [0.5], [3.0], [1.0]], dtype=torch.float64)
    pi = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    offsets = torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64)

    def model(x, mask=None):
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(pi))
            loc = mu + offsets[c]
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x[:, 0])

    q_probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    q_probs = q_probs.double()

    def guide(x, mask=None):
        pyro.sample("mu", dist.Normal(torch.tensor(0.1, dtype=torch.float64), 0.5))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Categorical(q_probs))

    lw = log_weights((model, guide), x, num_particles=40)
    mu, c = lw.samples["mu"], lw.samples["c"]
    assert mu.shape == (40,) and c.shape == (40, 4)
    assert lw.local_sites == ("c",) and lw.has_global_latents
    hand_local_p = pi.log()[c] + dist.Normal(mu.unsqueeze(-1) + offsets[c], 1.0).log_prob(x[:, 0])
    hand_local_q = torch.gather(q_probs.log().expand(40, 4, 3), -1, c.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(lw.log_p, hand_local_p)
    torch.testing.assert_close(lw.log_q, hand_local_q)
    torch.testing.assert_close(lw.global_log_p, dist.Normal(0.0, 1.0).log_prob(mu))
    torch.testing.assert_close(lw.global_log_q, dist.Normal(0.1, 0.5).log_prob(mu))
    torch.testing.assert_close(
        lw.joint, lw.global_log_p - lw.global_log_q + (hand_local_p - hand_local_q).sum(-1)
    )


def test_extra_plate_inside_data():
    """Sites in a second plate are summed per datum, and draws come back as (K, N, L)."""
    x = torch.randn(5, 4, dtype=torch.float64)

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0], dim=-1):
            with pyro.plate("factors", 2, dim=-2):
                z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))  # (2, N)
            loc = z.sum(-2, keepdim=True).unsqueeze(-1)  # (..., 1, N, 1)
            lik = dist.Normal(loc, 1.0).expand(loc.shape[:-1] + x.shape[-1:])
            pyro.sample("x", lik.to_event(1), obs=x)

    def guide(x, mask=None):
        with pyro.plate("data", x.shape[0], dim=-1), pyro.plate("factors", 2, dim=-2):
            pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 0.9))

    lw = log_weights((model, guide), x, num_particles=8)
    z = lw.samples["z"]
    assert z.shape == (8, 5, 2)
    zsum = z.sum(-1)
    hand = (
        dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        + dist.Normal(zsum.unsqueeze(-1), 1.0).log_prob(x).sum(-1)
        - dist.Normal(0.0, 0.9).log_prob(z).sum(-1)
    )
    torch.testing.assert_close(lw.local, hand)


def guide_missing_site(x, mask=None):
    """A guide that samples nothing."""


def guide_extra_site(x, mask=None):
    """The right site plus one the model lacks."""
    exact_guide(x, mask)
    pyro.sample("w", dist.Normal(0.0, 1.0))


def guide_wrong_support(x, mask=None):
    """Proposes a non-negative integer where the model has a real number."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Poisson(torch.ones(x.shape[0], dtype=x.dtype)))


def guide_wrong_event(x, mask=None):
    """Samples a vector where the model has a scalar."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))


def guide_not_local(x, mask=None):
    """Samples one z for the whole data set."""
    pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))


@pytest.mark.parametrize(
    "guide, pattern",
    [
        (guide_missing_site, r"model latent sites with no guide site: \['z'\]"),
        (guide_extra_site, r"guide sites the model does not have: \['w'\]"),
        (guide_wrong_support, r"site 'z': the model's support is Real.*guide proposes"),
        (guide_wrong_event, r"site 'z': event shape \(\) in the model, \(2,\) in the guide"),
        (guide_not_local, r"site 'z': batch shape \(6,\) in the model, \(\) in the guide"),
    ],
)
def test_refuses_mismatched_pairs(data, guide, pattern):
    """A model/guide pair whose latent sites disagree is refused, naming the sites."""
    x, _ = data
    with pytest.raises(ModelGuideMismatchError, match=pattern):
        log_weights((normal_model, guide), x, num_particles=5)


def test_refuses_guide_that_samples_observed_site(data):
    """A guide sampling an observed site is named."""
    x, _ = data

    def guide(x, mask=None):
        exact_guide(x, mask)
        pyro.sample("x", dist.Normal(x, 1.0).to_event(2))

    with pytest.raises(ModelGuideMismatchError, match=r"guide samples sites the model observes"):
        log_weights((normal_model, guide), x, num_particles=5)


def test_refuses_model_that_ignores_mask(data):
    """A mask given to a model whose likelihood ignores it is an error, not silent zeros."""
    x, mask = data

    def careless(x, mask=None):
        normal_model(x, None)

    with pytest.raises(ValueError, match=r"observed site 'x' ignores it.*\.mask\(mask\)"):
        log_weights((careless, exact_guide), x, mask, num_particles=5)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_num_particles(data, k):
    """num_particles must be a positive int."""
    x, _ = data
    with pytest.raises(ValueError, match="num_particles must be a positive int"):
        log_weights((normal_model, exact_guide), x, num_particles=k)


def test_same_seed_same_numbers(data):
    """The same seed gives the same weights; another seed gives others."""
    x, mask = data
    runs = []
    for seed in (5, 5, 6):
        with seeded(seed):
            runs.append(log_weights((normal_model, crude_guide), x, mask, num_particles=4).local)
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_model_object_and_pair_agree(data):
    """A FunctionModel and a bare (model, guide) tuple are the same story."""
    x, mask = data
    with seeded(2):
        a = log_weights(from_functions(normal_model, crude_guide), x, mask, num_particles=3)
    with seeded(2):
        b = log_weights((normal_model, crude_guide), x, mask, num_particles=3)
    assert torch.equal(a.local, b.local)


def test_story_that_does_not_broadcast_particles_runs_per_particle():
    """A story that collapses the particle dim into a plate's position is never summed wrongly:
    its particles run one at a time (path 'per-particle'), each scored exactly."""
    x = torch.randn(5, 4)

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0], dim=-1):
            with pyro.plate("factors", 2, dim=-2):
                z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
            loc = z.sum(-2).unsqueeze(-1).expand(z.shape[:-2] + x.shape)  # drops a plate dim
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    def guide(x, mask=None):
        with pyro.plate("data", x.shape[0], dim=-1), pyro.plate("factors", 2, dim=-2):
            pyro.sample("z", dist.Normal(torch.zeros(()), 0.9))

    lw = log_weights((model, guide), x, num_particles=8)
    assert lw.path == "per-particle"
    z = lw.samples["z"]  # (K, N, 2)
    expected = dist.Normal(z.sum(-1, keepdim=True), 1.0).log_prob(x).sum(-1)  # (K, N)
    assert torch.allclose(lw.log_lik, expected, atol=1e-6)
