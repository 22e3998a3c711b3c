"""Enumeration means what Pyro's TraceEnum_ELBO means, on Pyro's own handlers (issue 13).

Each story is written as a Pyro user writes it: plain functions, ``pyro.plate("data", N)`` at
dim -1 around the per-datum sites, no ``config_enumerate`` (the engine enumerates every discrete
latent itself). The references are Pyro's ``TraceEnum_ELBO`` (``-differentiable_loss`` with an
empty guide, which for a story whose only latents are enumerated is the exact log p(x), and
``compute_marginals``) and brute-force sums.
"""

from __future__ import annotations

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate

from ppl_lvm.inference import Enumeration, UnsupportedModelError
from ppl_lvm.models import from_functions

pytestmark = pytest.mark.usefixtures("float64")


def empty_guide(*args, **kwargs):
    """Every latent is enumerated in the model: the guide has nothing to sample."""


def pyro_log_evidence(model, x, max_plate_nesting=1) -> float:
    """Pyro's exact log p(x) of a story whose only latents are enumerated discrete sites.

    ``loss`` is ``-differentiable_loss`` (both are ``_compute_dice_elbo``), which refuses a
    story without parameters to differentiate."""
    elbo = TraceEnum_ELBO(max_plate_nesting=max_plate_nesting)
    return -elbo.loss(config_enumerate(model), empty_guide, x)


def pyro_marginals(model, x, max_plate_nesting=1) -> dict[str, torch.Tensor]:
    """Pyro's exact posterior marginals, ``TraceEnum_ELBO.compute_marginals``: probs per site."""
    elbo = TraceEnum_ELBO(max_plate_nesting=max_plate_nesting)
    out = elbo.compute_marginals(config_enumerate(model), empty_guide, x)
    return {k: v.probs for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# 1. poutine.scale: the scale multiplies each datum's log-sum, it is not inside it
WEIGHTS = [0.3, 0.5, 0.2]
LOCS = [[-2.0, 0.0], [0.5, 1.0], [3.0, -1.0]]


def mixture(x, mask=None):
    """The GMM tutorial's story with fixed parameters."""
    weights, locs = torch.tensor(WEIGHTS), torch.tensor(LOCS)
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[z], 1.0).to_event(1), obs=x)


def mixture_brute_force(x: torch.Tensor) -> torch.Tensor:
    """log p(x_n) = log Σ_k w_k N(x_n; loc_k, I), by a loop over k."""
    terms = [
        math.log(w) + dist.Normal(torch.tensor(loc), 1.0).log_prob(x).sum(-1)
        for w, loc in zip(WEIGHTS, LOCS, strict=True)
    ]
    return torch.logsumexp(torch.stack(terms, -1), -1)


@pytest.fixture
def gmm_data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 2, generator=g) * 2


def at_scale(scale):
    """The mixture run under poutine.scale(scale=scale), as a user wraps a story."""

    def scaled(x, mask=None):
        with poutine.scale(scale=scale):
            mixture(x, mask)

    return scaled


def test_scalar_scale_multiplies_the_exact_log_evidence(gmm_data):
    """Under poutine.scale(10) each datum scores 10 log p(x_n), as TraceEnum_ELBO does (the
    user's report: −64.84 from Enumeration against Pyro's −22.51 = 10 × exact)."""
    x = gmm_data
    exact = mixture_brute_force(x)
    ev = Enumeration().log_evidence(from_functions(at_scale(10.0)), x)
    torch.testing.assert_close(ev.per_datum, 10.0 * exact, rtol=1e-12, atol=1e-10)
    pyro_value = pyro_log_evidence(at_scale(10.0), x)
    assert math.isclose(pyro_value, 10.0 * float(exact.sum()), rel_tol=1e-12)
    assert math.isclose(float(ev.per_datum.sum()), pyro_value, rel_tol=1e-12)


def test_per_datum_scale_multiplies_each_datums_sum(gmm_data):
    """A tensor scale, one number per datum (minibatch or importance weights), scales each
    datum's log-sum. Pyro refuses a tensor scale on enumerated sites; data that share a scale
    give Pyro's value with that scalar scale."""
    x = gmm_data
    w = torch.tensor([1.0, 1.0, 5.0, 5.0, 5.0, 2.0])
    ev = Enumeration().log_evidence(at_scale(w), x)
    exact = mixture_brute_force(x)
    torch.testing.assert_close(ev.per_datum, w * exact, rtol=1e-12, atol=1e-10)
    for value in w.unique():
        group = w == value
        pyro_value = pyro_log_evidence(at_scale(float(value)), x[group])
        assert math.isclose(float(ev.per_datum[group].sum()), pyro_value, rel_tol=1e-12)
    with pytest.raises(ValueError, match="enumeration only supports scalar poutine.scale"):
        pyro_log_evidence(at_scale(w), x)


def test_tensor_scale_on_sites_free_of_enumeration_matches_pyro(gmm_data):
    """Where Pyro takes a tensor scale (a site that depends on no enumerated value) it scales
    that site's log-prob; with a scalar scale on the mixture both agree with Pyro."""
    x = torch.cat([gmm_data, torch.linspace(-1.0, 2.0, 6).unsqueeze(-1)], -1)  # (6, 3)
    w = torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 5.0])

    def story(x, mask=None):
        weights, locs = torch.tensor(WEIGHTS), torch.tensor(LOCS)
        with pyro.plate("data", len(x)):
            with poutine.scale(scale=3.0):
                z = pyro.sample("z", dist.Categorical(weights))
                pyro.sample("obs", dist.Normal(locs[z], 1.0).to_event(1), obs=x[:, :2])
            with poutine.scale(scale=w):
                pyro.sample("y", dist.Normal(0.0, 2.0), obs=x[:, 2])

    ev = Enumeration().log_evidence(story, x)
    truth = 3.0 * mixture_brute_force(x[:, :2]) + w * dist.Normal(0.0, 2.0).log_prob(x[:, 2])
    torch.testing.assert_close(ev.per_datum, truth, rtol=1e-12, atol=1e-10)
    assert math.isclose(float(ev.per_datum.sum()), pyro_log_evidence(story, x), rel_tol=1e-12)


def test_different_scales_inside_one_component_are_refused(gmm_data):
    """Pyro refuses a latent and the observation it feeds under different scales; so do we,
    with a clear UnsupportedModelError instead of a silently different number."""

    def story(x, mask=None):
        weights, locs = torch.tensor(WEIGHTS), torch.tensor(LOCS)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Categorical(weights))
            with poutine.scale(scale=10.0):
                pyro.sample("obs", dist.Normal(locs[z], 1.0).to_event(1), obs=x)

    with pytest.raises(ValueError, match="share a common poutine.scale"):
        pyro_log_evidence(story, gmm_data)
    with pytest.raises(UnsupportedModelError, match=r"share one scale per datum.*'z' 1.*'obs' 10"):
        Enumeration().log_evidence(story, gmm_data)


# ---------------------------------------------------------------------------------------------
# 2. poutine.mask and obs_mask: a masked-out datum contributes nothing
PRIOR4 = [0.1, 0.2, 0.3, 0.4]
LOCS4 = [[-3.0, 0.0], [-1.0, 1.0], [1.0, -1.0], [3.0, 2.0]]
KEEP = [True, False, True, True, False, True]


def masked_mixture(x, mask=None):
    """A 4-state mixture whose data 1 and 4 are masked out around the plate."""
    keep = torch.tensor(KEEP)
    prior, locs = torch.tensor(PRIOR4), torch.tensor(LOCS4)
    with pyro.plate("data", len(x)), poutine.mask(mask=keep):
        z = pyro.sample("z", dist.Categorical(prior))
        pyro.sample("obs", dist.Normal(locs[z], 1.0).to_event(1), obs=x)


def test_poutine_mask_drops_masked_data(gmm_data):
    """A masked datum scores 0, not log 4; the others score their exact log p(x_n)."""
    x, keep = gmm_data, torch.tensor(KEEP)
    joint = torch.stack(
        [
            math.log(p) + dist.Normal(torch.tensor(loc), 1.0).log_prob(x).sum(-1)
            for p, loc in zip(PRIOR4, LOCS4, strict=True)
        ],
        -1,
    )
    truth = torch.where(keep, torch.logsumexp(joint, -1), torch.zeros(()))
    ev = Enumeration().log_evidence(masked_mixture, x)
    torch.testing.assert_close(ev.per_datum, truth, rtol=1e-12, atol=1e-12)
    assert torch.all(ev.per_datum[~keep].abs() < 1e-12)
    assert math.isclose(float(ev.per_datum.sum()), pyro_log_evidence(masked_mixture, x))


def test_masked_datum_keeps_its_prior_in_the_posterior(gmm_data):
    """TraceEnum_ELBO scores an enumerated site without the mask, so a masked datum's label
    follows its prior, in the marginals (as Pyro's compute_marginals) and in the draws."""
    x, keep = gmm_data, torch.tensor(KEEP)
    s = 4000
    post = Enumeration().posterior(masked_mixture, x, num_samples=s, seed=0)
    torch.testing.assert_close(post.probs["z"], pyro_marginals(masked_mixture, x)["z"])
    prior = torch.tensor(PRIOR4)
    torch.testing.assert_close(post.probs["z"][~keep], prior.expand(2, 4))
    for n in torch.nonzero(~keep).flatten().tolist():
        freq = torch.bincount(post.samples["z"][:, n], minlength=4).double() / s
        assert torch.all((freq - prior).abs() < 4 * (prior * (1 - prior) / s).sqrt())


def test_obs_mask_drops_masked_data():
    """obs_mask splits a discrete observation into observed and imputed parts; the imputed
    part sums to one. Observed data score log Σ_k w_k Bern(x_n | p_k) (not + log 2), masked
    data score 0, and the total is Pyro's."""
    probs = [0.1, 0.5, 0.9]
    keep = torch.tensor(KEEP)

    def story(x, mask=None):
        weights, p = torch.tensor(WEIGHTS), torch.tensor(probs)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Categorical(weights))
            pyro.sample("obs", dist.Bernoulli(p[z]), obs=x[:, 0], obs_mask=keep)

    x = torch.tensor([[1.0], [0.0], [0.0], [1.0], [1.0], [0.0]])
    lik = torch.stack([dist.Bernoulli(q).log_prob(x[:, 0]) for q in probs], -1)
    truth = torch.logsumexp(torch.tensor(WEIGHTS).log() + lik, -1)
    truth = torch.where(keep, truth, torch.zeros(()))
    ev = Enumeration().log_evidence(story, x)
    torch.testing.assert_close(ev.per_datum, truth, rtol=1e-12, atol=1e-12)
    assert math.isclose(float(ev.per_datum.sum()), pyro_log_evidence(story, x), rel_tol=1e-12)


# ---------------------------------------------------------------------------------------------
# 3. pyro.markov: a chain's state count is per step, and the sum is Pyro's forward pass
INIT = [0.5, 0.3, 0.2]
TRANS = [[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]
EMIT = [-1.5, 0.5, 2.5]


def hmm(x, mask=None):
    """examples/hmm.py's first model with Gaussian emissions: x is (N sequences, T steps)."""
    init, trans, locs = torch.tensor(INIT), torch.tensor(TRANS), torch.tensor(EMIT)
    with pyro.plate("data", len(x)):
        z = None
        for t in pyro.markov(range(x.shape[1])):
            probs = init if z is None else trans[z]
            z = pyro.sample(f"z_{t}", dist.Categorical(probs), infer={"enumerate": "parallel"})
            pyro.sample(f"x_{t}", dist.Normal(locs[z], 1.0), obs=x[:, t])


def hmm_without_markov(x, mask=None):
    """The same chain written with a plain loop: every step keeps its own dim."""
    init, trans, locs = torch.tensor(INIT), torch.tensor(TRANS), torch.tensor(EMIT)
    with pyro.plate("data", len(x)):
        z = None
        for t in range(x.shape[1]):
            probs = init if z is None else trans[z]
            z = pyro.sample(f"z_{t}", dist.Categorical(probs))
            pyro.sample(f"x_{t}", dist.Normal(locs[z], 1.0), obs=x[:, t])


def hmm_data(steps: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.randn(5, steps, generator=g) * 1.5


def hmm_brute_force(x: torch.Tensor) -> torch.Tensor:
    """log p(x_n) by a loop over all H^T paths."""
    init, trans = torch.tensor(INIT).log(), torch.tensor(TRANS).log()
    emit = dist.Normal(torch.tensor(EMIT), 1.0).log_prob(x.unsqueeze(-1))  # (N, T, H)
    terms = []
    for path in itertools.product(range(3), repeat=x.shape[1]):
        lp = init[path[0]] + emit[:, 0, path[0]]
        for t in range(1, x.shape[1]):
            lp = lp + trans[path[t - 1], path[t]] + emit[:, t, path[t]]
        terms.append(lp)
    return torch.logsumexp(torch.stack(terms, -1), -1)


def test_markov_chain_matches_brute_force():
    """T=4, H=3: the chain's log p(x_n) is the sum over all 81 paths."""
    x = hmm_data(4)
    ev = Enumeration().log_evidence(hmm, x)
    torch.testing.assert_close(ev.per_datum, hmm_brute_force(x), rtol=1e-12, atol=1e-10)


def test_markov_chain_of_twelve_steps_is_summed_not_refused():
    """T=12, H=3 needs 3^2 = 9 states per step, not 3^12 = 531,441: accepted, and its
    log p(x) and posterior marginals are Pyro's."""
    x = hmm_data(12)
    ev = Enumeration().log_evidence(hmm, x)
    assert math.isclose(float(ev.per_datum.sum()), pyro_log_evidence(hmm, x), rel_tol=1e-12)
    s = 1000
    post = Enumeration().posterior(hmm, x, num_samples=s, seed=0)
    truth = pyro_marginals(hmm, x)
    for t in (0, 5, 11):
        p = truth[f"z_{t}"]
        torch.testing.assert_close(post.probs[f"z_{t}"], p)
        assert post.samples[f"z_{t}"].shape == (s, 5)
        freq = torch.nn.functional.one_hot(post.samples[f"z_{t}"], 3).double().mean(0)
        # a binomial tolerance, with room for a few hits in cells of tiny probability
        assert torch.all((freq - p).abs() < 5 * (p * (1 - p) / s).sqrt() + 3.0 / s)


def test_large_joint_spaces_are_still_refused():
    """The refusal stays for stories that truly hold a large joint space at once: the chain
    without pyro.markov (with advice to use it), and a Markov step beyond max_states."""
    x = hmm_data(12)
    with pytest.raises(UnsupportedModelError, match=r"531,441 joint.*pyro\.markov"):
        Enumeration().log_evidence(hmm_without_markov, x)
    with pytest.raises(UnsupportedModelError, match=r"needs 9 joint discrete states at once"):
        Enumeration(max_states=8).log_evidence(hmm, x)


# ---------------------------------------------------------------------------------------------
# 4. nested plates: marginals per datum and inner plate index
CLASS = [0.4, 0.6]
PZ = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]  # p(z | c)
ZLOCS = [-2.0, 0.0, 2.0]


def nested(x, mask=None):
    """A class per datum, a state per datum and feature: x is (N, F)."""
    pc, pz, locs = torch.tensor(CLASS), torch.tensor(PZ), torch.tensor(ZLOCS)
    with pyro.plate("data", x.shape[0], dim=-1):
        c = pyro.sample("c", dist.Categorical(pc))
        with pyro.plate("features", x.shape[1], dim=-2):
            z = pyro.sample("z", dist.Categorical(pz[c]))
            pyro.sample("obs", dist.Normal(locs[z], 1.0), obs=x.T)


def nested_brute_force(x):
    """log p(x_n), p(c | x_n) (N, 2) and p(z_nf | x_n) (N, F, 3), by loops over c and z."""
    pz = torch.tensor(PZ)
    emit = dist.Normal(torch.tensor(ZLOCS), 1.0).log_prob(x.unsqueeze(-1))  # (N, F, 3)
    per_c = []
    z_given_c = []
    for c in range(2):
        joint = pz[c].log() + emit  # (N, F, 3)
        per_c.append(math.log(CLASS[c]) + torch.logsumexp(joint, -1).sum(-1))
        z_given_c.append(torch.softmax(joint, -1))
    per_c = torch.stack(per_c, -1)  # (N, 2)
    log_px = torch.logsumexp(per_c, -1)
    pc = torch.softmax(per_c, -1)
    pz_x = sum(pc[:, c, None, None] * z_given_c[c] for c in range(2))
    return log_px, pc, pz_x


def test_nested_plate_posterior_per_datum_and_inner_index():
    """A latent inside a plate nested in the data plate: probs (N, F, K) and draws (S, N, F)
    from the exact posterior, log p(x) and marginals those of brute force and of Pyro."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, generator=g) * 2
    log_px, pc, pz_x = nested_brute_force(x)
    ev = Enumeration().log_evidence(nested, x)
    torch.testing.assert_close(ev.per_datum, log_px, rtol=1e-12, atol=1e-10)
    assert math.isclose(float(log_px.sum()), pyro_log_evidence(nested, x, 2), rel_tol=1e-12)
    s = 4000
    post = Enumeration().posterior(nested, x, num_samples=s, seed=0)
    torch.testing.assert_close(post.probs["c"], pc)
    torch.testing.assert_close(post.probs["z"], pz_x)
    truth = pyro_marginals(nested, x, 2)
    torch.testing.assert_close(post.probs["z"], truth["z"].permute(1, 0, 2))
    assert post.samples["c"].shape == (s, 4) and post.samples["z"].shape == (s, 4, 3)
    freq = torch.nn.functional.one_hot(post.samples["z"], 3).double().mean(0)
    assert torch.all((freq - pz_x).abs() < 4 * (pz_x * (1 - pz_x) / s).sqrt() + 3.0 / s)


def test_nested_plate_single_site_has_exact_log_q():
    """With one latent site in the inner plate, its elements are independent given x_n, and
    log q of a draw is the sum of its elements' exact log-probabilities."""
    locs = torch.tensor(ZLOCS)

    def story(x, mask=None):
        with pyro.plate("data", x.shape[0], dim=-1):
            with pyro.plate("features", x.shape[1], dim=-2):
                z = pyro.sample("z", dist.Categorical(torch.tensor(PZ[0])))
                pyro.sample("obs", dist.Normal(locs[z], 1.0), obs=x.T)

    x = torch.tensor([[0.3, -1.2], [2.0, 0.1], [-0.5, 1.5]])
    post = Enumeration().posterior(story, x, num_samples=5, seed=1)
    z = post.samples["z"]  # (S, N, F)
    manual = post.probs["z"].log().expand(5, 3, 2, 3).gather(-1, z.unsqueeze(-1)).sum((-1, -2))
    torch.testing.assert_close(post.log_q, manual)
    torch.testing.assert_close(post.log_p - post.log_q, post.log_lik)
