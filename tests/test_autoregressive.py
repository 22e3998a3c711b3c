"""models.Autoregressive against brute force on tiny binary images: every one of the 2^D images
(D = 9 or 16) is scored, so every marginal, conditional and completion has an exact answer."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppl_lvm import models
from ppl_lvm.core.rng import seeded
from ppl_lvm.inference import SVI, Enumeration, ImportanceSampling, UnsupportedModelError
from ppl_lvm.inference._weights import log_weights
from ppl_lvm.models.capabilities import CompletionDraws, OwnCompletion, has

D = 9  # 3 x 3 images


@pytest.fixture(autouse=True)
def one_thread_float64():
    """float64 for exact comparisons; one thread, since tiny models gain nothing from two and a
    busy second core slows every step."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def log_prob(ar, x, ordering=0):
    """log p_σ(x), (N,), without a gradient."""
    return ar.log_prob(x, ordering).detach()


def images(dim: int) -> torch.Tensor:
    """Every binary image of ``dim`` pixels, shape (2^dim, dim)."""
    return ((torch.arange(2**dim)[:, None] >> torch.arange(dim)) & 1).double()


def random_model(dim=D, hidden=(16,), num_orderings=4, seed=0, scale=0.5):
    """A model with random weights, every parameter (the per-ordering biases too) non-zero."""
    ar = models.Autoregressive(dim, hidden, num_orderings, seed=seed).double()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in ar.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return ar


def compatible(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, 2^D): which images agree with each datum on its observed pixels."""
    every = images(x.shape[1])
    return ((every[None] == x[:, None]) | ~mask[:, None]).all(-1)


def brute_log_marginal(ar, x, mask, ordering):
    """log Σ_{x_m} p_σ(x_o, x_m) by summing over every image, (N,)."""
    lp = log_prob(ar, images(x.shape[1]), ordering)
    return torch.logsumexp(lp.masked_fill(~compatible(x, mask), -math.inf), -1)


def brute_conditional(ar, x, mask, ordering):
    """p_σ(image | x_o) over every image, (N, 2^D), and E_σ[x | x_o], (N, D)."""
    every = images(x.shape[1])
    lp = log_prob(ar, every, ordering).detach()
    post = torch.softmax(lp.masked_fill(~compatible(x, mask), -math.inf), -1)
    return post, post @ every


def image_index(x: torch.Tensor) -> torch.Tensor:
    """The row of :func:`images` that each image is: (..., D) -> (...)."""
    return (x.long() << torch.arange(x.shape[-1])).sum(-1)


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's goodness-of-fit p-value of ``counts`` against ``probs`` (cells expected fewer
    than 5 times are pooled into one, as the χ² approximation needs)."""
    from scipy.stats import chi2

    expected = probs * counts.sum()
    big = expected >= 5
    obs = torch.cat([counts[big].double(), counts[~big].sum().reshape(1).double()])
    exp = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    assert bool((obs[~keep] == 0).all())  # nothing where the probability is 0
    return float(chi2.sf(stat, int(keep.sum()) - 1))


def data(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, D, generator=g) < 0.5).double()


#: top row missing: ordering 1 (reverse raster) visits the observed rows first
TOP_MISSING = torch.arange(D).expand(6, D) >= 3
#: masks no trained ordering of random_model() covers (checked in the tests that use them)
SCATTERED = torch.tensor(
    [
        [1, 0, 1, 0, 1, 0, 1, 0, 1],
        [0, 1, 0, 1, 0, 1, 0, 1, 0],
        [1, 1, 0, 0, 1, 1, 0, 0, 1],
        [0, 0, 1, 1, 1, 0, 0, 1, 1],
        [1, 0, 0, 1, 0, 1, 1, 0, 0],
        [0, 1, 1, 0, 0, 0, 1, 1, 0],
    ],
    dtype=torch.bool,
)


# -- the joint of each ordering ---------------------------------------------------------------
@pytest.mark.parametrize("hidden", [(), (16,), (12, 12)])
def test_every_ordering_normalises(hidden):
    """Σ over all 2^9 images of p_σ(x) is 1 for every trained ordering, to 1e-10."""
    ar = random_model(hidden=hidden, num_orderings=5)
    for r in range(5):
        total = torch.logsumexp(log_prob(ar, images(D), r), 0).exp()
        assert abs(float(total) - 1) < 1e-10, (hidden, r)


@settings(max_examples=20, deadline=None, database=None)
@given(
    dim=st.integers(1, 6),
    hidden=st.lists(st.integers(1, 7), max_size=2),
    num_orderings=st.integers(2, 4),
    seed=st.integers(0, 10_000),
)
def test_normalises_for_any_size_and_seed(dim, hidden, num_orderings, seed):
    """For any D, widths, R and seed, each ordering's joint sums to 1 over {0,1}^D."""
    ar = random_model(dim, tuple(hidden), num_orderings, seed=seed)
    for r in range(num_orderings):
        assert abs(float(torch.logsumexp(log_prob(ar, images(dim), r), 0).exp()) - 1) < 1e-10


def test_orderings_are_raster_reverse_then_seeded_random():
    """Ordering 0 is raster order, 1 reverse raster, the rest permutations fixed by the seed."""
    ar = models.Autoregressive(D, (8,), 6, seed=3)
    orders = ar.orderings_
    assert orders.shape == (6, D)
    assert orders[0].tolist() == list(range(D)) and orders[1].tolist() == list(range(D))[::-1]
    for row in orders:
        assert sorted(row.tolist()) == list(range(D))
    assert torch.equal(orders, models.Autoregressive(D, (8,), 6, seed=3).orderings_)
    assert not torch.equal(orders[2:], models.Autoregressive(D, (8,), 6, seed=4).orderings_[2:])


def test_loading_parameters_brings_their_orderings():
    """A state dict from a model with other random orderings replaces the orderings (and the
    connectivity masks built from them): the loaded model scores as its source does."""
    a, b = random_model(seed=0), random_model(seed=1)
    for r in range(4):
        log_prob(a, data(), r)  # the masks of a's orderings are built and kept
    a.load_state_dict(b.state_dict())
    assert torch.equal(a.orderings_, b.orderings_)
    for r in range(4):
        torch.testing.assert_close(log_prob(a, data(), r), log_prob(b, data(), r))


def test_orderings_differ_as_models():
    """The orderings' joints are different models: they disagree on some image (so the tests
    below that name an ordering test something)."""
    ar = random_model()
    lp = torch.stack([log_prob(ar, images(D), r) for r in range(4)])
    assert float((lp - lp[0]).abs().max()) > 0.1


# -- p(x_observed) -------------------------------------------------------------------------------
def test_bottom_first_marginal_is_exact():
    """With the top row missing, p(x_o) is exact through ordering 1 and equals the brute-force
    sum over completions of p_1(x_o, x_m)."""
    ar, x = random_model(), data()
    ev = ar.observed_log_evidence(x, TOP_MISSING)
    assert ev.method == ("exact",) * 6 and ev.ordering.tolist() == [1] * 6
    assert ev.evidence.kind == "exact" and bool((ev.stderr == 0).all())
    torch.testing.assert_close(
        ev.per_datum, brute_log_marginal(ar, x, TOP_MISSING, 1), rtol=0, atol=1e-10
    )


def test_raster_covers_a_missing_bottom_and_complete_data_is_log_prob():
    """A missing bottom row is covered by ordering 0 itself; complete data give log p_0(x)."""
    ar, x = random_model(), data()
    bottom = torch.arange(D).expand(6, D) < 6
    ev = ar.observed_log_evidence(x, bottom)
    assert ev.ordering.tolist() == [0] * 6
    torch.testing.assert_close(
        ev.per_datum, brute_log_marginal(ar, x, bottom, 0), rtol=0, atol=1e-10
    )
    full = ar.observed_log_evidence(x)
    torch.testing.assert_close(full.per_datum, log_prob(ar, x, 0), rtol=0, atol=1e-12)


def test_4x4_top_half_is_exact():
    """On 4 x 4 images (65,536 of them) a missing top half is exact through ordering 1."""
    dim = 16
    ar = random_model(dim=dim, hidden=(24,))
    x = (torch.rand(4, dim, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    top = torch.arange(dim).expand(4, dim) >= 8
    ev = ar.observed_log_evidence(x, top)
    assert ev.method == ("exact",) * 4
    torch.testing.assert_close(ev.per_datum, brute_log_marginal(ar, x, top, 1), rtol=0, atol=1e-10)


def test_importance_estimate_within_four_standard_errors():
    """Where no ordering covers the mask, log p_0(x_o) is estimated within 4 stated SEs of the
    brute-force sum under p_0, with a seed; the SEs, ESS and k̂ are those of real weights."""
    ar, x = random_model(), data()
    assert bool((ar.covering_orderings(SCATTERED) == -1).all())
    ev = ar.observed_log_evidence(x, SCATTERED, num_particles=3000, seed=0)
    assert ev.method == ("importance sampling",) * 6 and ev.evidence.kind == "estimate"
    truth = brute_log_marginal(ar, x, SCATTERED, 0)
    se = ev.stderr
    assert bool((se > 0).all()) and bool((ev.evidence.ess <= 3000).all())
    # (k̂ may be inf: with 5 missing pixels the K weights take at most 32 values, a tail too
    # coarse for ArviZ's Pareto fit)
    assert ev.evidence.khat.shape == (6,) and not bool(ev.evidence.khat.isnan().any())
    assert bool((ev.evidence.ess > 100).all())  # weights good enough for the SE to be trusted
    assert bool(((ev.per_datum - truth).abs() <= 4 * se).all()), (ev.per_datum, truth, se)


def test_mixed_masks_say_which_method_ran():
    """Exact and estimated data side by side: exact ones have SE 0 and no ESS."""
    ar, x = random_model(), data()
    mask = torch.cat([TOP_MISSING[:3], SCATTERED[3:]])
    ev = ar.observed_log_evidence(x, mask, num_particles=500)
    assert ev.method == ("exact",) * 3 + ("importance sampling",) * 3
    assert ev.exact.tolist() == [True] * 3 + [False] * 3
    assert bool((ev.stderr[:3] == 0).all()) and bool(ev.evidence.ess[:3].isnan().all())
    assert "3 exact, 3 by importance sampling" in str(ev)


def test_same_seed_same_numbers():
    """The same seed gives the same estimate and completions; another seed does not."""
    ar, x = random_model(), data()
    a = ar.observed_log_evidence(x, SCATTERED, num_particles=200, seed=5).per_datum
    b = ar.observed_log_evidence(x, SCATTERED, num_particles=200, seed=5).per_datum
    c = ar.observed_log_evidence(x, SCATTERED, num_particles=200, seed=6).per_datum
    assert torch.equal(a, b) and not torch.equal(a, c)
    s1 = ar.complete_own(x, SCATTERED, 4, num_particles=50, seed=1).samples
    s2 = ar.complete_own(x, SCATTERED, 4, num_particles=50, seed=1).samples
    assert torch.equal(s1, s2)


# -- completion ------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [(16,), (8, 8)])
def test_exact_completion_matches_the_brute_force_conditional(hidden):
    """Completions of a missing top row are draws from p_1(x_m | x_o): each completion's
    frequency is within 4 binomial SEs of its brute-force probability, and the mean (averaged
    conditional probabilities) within 4 of its own SEs of E_1[x_m | x_o]."""
    ar, x = random_model(hidden=hidden), data(n=3)
    mask = TOP_MISSING[:3]
    s = 4000
    assert has(ar, OwnCompletion)  # what ppl_lvm.complete may ask for
    out = ar.complete_own(x, mask, s, seed=0)
    samples, sample_means, _, method, ess = out  # a 5-tuple
    assert isinstance(out, CompletionDraws) and samples.shape == sample_means.shape == (s, 3, D)
    assert method == ("exact",) * 3 and ess is None
    assert torch.equal(out.samples[:, mask], x[mask].expand(s, -1))  # observed kept
    post, mean = brute_conditional(ar, x, mask, 1)
    for n in range(3):
        counts = torch.bincount(image_index(out.samples[:, n]), minlength=2**D)
        assert chi_square_p_value(counts, post[n]) > 1e-4, n
    # E[p(x_d = 1 | path)] has at most the spread of x_d itself (the law of total variance)
    se = (mean * (1 - mean)).clamp(min=0).div(s).sqrt()
    assert bool(((out.mean - mean).abs() <= 4 * se + 1e-12).all())
    # the first missing pixel in ordering 1 (pixel 2) has one conditional: exact with any S
    torch.testing.assert_close(out.mean[:, 2], mean[:, 2], rtol=0, atol=1e-10)


def test_importance_resampling_completion_targets_p0():
    """Where no ordering covers the mask, completions are resampled toward p_0(x_m | x_o): the
    weighted mean is within 4 SEs (at the weights' ESS) of the brute-force E_0[x_m | x_o]."""
    ar, x = random_model(), data(n=3)
    mask = SCATTERED[:3]
    out = ar.complete_own(x, mask, 2000, num_particles=4000, seed=0)
    assert out.method == ("importance resampling",) * 3
    assert out.ess.shape == (3,) and bool((out.ess > 50).all())
    _, mean = brute_conditional(ar, x, mask, 0)
    se = (mean * (1 - mean)).clamp(min=0).div(out.ess[:, None]).sqrt()
    assert bool(((out.mean - mean).abs() <= 4 * se + 1e-12).all())
    assert torch.equal(out.samples[:, mask], x[mask].expand(2000, -1))
    assert torch.equal(out.sample_means, out.samples)  # the latent is the completion itself


@pytest.mark.parametrize("hidden", [(), (16,), (8, 8)])
def test_sampler_probabilities_are_the_networks_conditionals(hidden):
    """Along each drawn path, the probabilities the sampler used (O(H) updates for one hidden
    layer) are the network's own conditionals on the completed image, and log q their sum."""
    ar, x = random_model(hidden=hidden), data(n=4)
    mask = SCATTERED[:4]
    for r in range(4):
        draws, probs, log_q = ar.sample_missing(x, mask, 50, ordering=r, seed=r)
        p = torch.sigmoid(ar.made(draws, r)).detach()
        torch.testing.assert_close(probs[:, ~mask], p[:, ~mask], rtol=0, atol=1e-12)
        lq = torch.where(draws == 1, p, 1 - p).log().masked_fill(mask, 0).sum(-1)
        torch.testing.assert_close(log_q, lq, rtol=0, atol=1e-10)


def test_ancestral_samples_follow_p0():
    """model.sample draws whole images from p_0: frequencies within 4 SEs of the brute force."""
    dim, s = 4, 20000
    ar = random_model(dim=dim, hidden=(8,))
    draws = ar.sample(s, seed=0)
    assert draws.z.shape == (s, 0)
    freq = torch.bincount(image_index(draws.x), minlength=2**dim) / s
    p = log_prob(ar, images(dim), 0).detach().exp()
    assert bool(((freq - p).abs() <= 4 * (p * (1 - p) / s).sqrt()).all())


# -- the Pyro story under the generic engines ---------------------------------------------------
@pytest.mark.parametrize("which", ["top", "scattered", "complete", "nothing seen"])
def test_enumeration_sums_every_completion(which):
    """Enumeration over the missing pixels' latent sites equals the brute-force p_0(x_o)."""
    ar, x = random_model(), data()
    mask = {
        "top": TOP_MISSING,
        "scattered": SCATTERED,
        "complete": torch.ones(6, D, dtype=torch.bool),
        "nothing seen": torch.cat([SCATTERED[:5], torch.zeros(1, D, dtype=torch.bool)]),
    }[which]
    ev = Enumeration().log_evidence(ar, x, mask)
    assert ev.kind == "exact"
    torch.testing.assert_close(ev.per_datum, brute_log_marginal(ar, x, mask, 0), rtol=0, atol=1e-10)
    if which == "nothing seen":
        assert abs(float(ev.per_datum[-1])) < 1e-12


def test_importance_sampling_with_the_guide_is_within_its_standard_error():
    """ImportanceSampling("guide") on the story: within 4 SEs of the brute-force p_0(x_o)."""
    ar, x = random_model(), data()
    ev = ImportanceSampling("guide", num_particles=3000).log_evidence(ar, x, SCATTERED, seed=0)
    truth = brute_log_marginal(ar, x, SCATTERED, 0)
    assert bool((ev.stderr > 0).all())
    assert bool(((ev.per_datum - truth).abs() <= 4 * ev.stderr).all()), (ev.per_datum, truth)


def test_importance_sampling_from_the_prior_is_within_its_standard_error():
    """ImportanceSampling("prior") draws the missing pixels from p_0's own conditionals with
    the observed ones clamped (the Pyro path): within 4 SEs of the brute-force p_0(x_o)."""
    ar, x = random_model(), data()
    ev = ImportanceSampling("prior", num_particles=3000).log_evidence(ar, x, SCATTERED, seed=0)
    truth = brute_log_marginal(ar, x, SCATTERED, 0)
    assert bool(((ev.per_datum - truth).abs() <= 4 * ev.stderr).all()), (ev.per_datum, truth)


def test_uniform_importance_sampling_is_unbiased():
    """ImportanceSampling("uniform") on the story is within 4 SEs of the brute-force p_0(x_o)
    (with 20,000 completions of 4 or 5 pixels, the uniform proposal copes). The uniform guide
    once drew every latent site unmasked, so each observed pixel's masked ``x_d_unobserved``
    site added log 2 to every weight."""
    ar, x = random_model(), data()
    ev = ImportanceSampling("uniform", num_particles=20000).log_evidence(ar, x, SCATTERED, seed=0)
    truth = brute_log_marginal(ar, x, SCATTERED, 0)
    assert bool(((ev.per_datum - truth).abs() <= 4 * ev.stderr).all()), (ev.per_datum, truth)


def test_guide_with_a_covering_ordering_is_the_exact_conditional():
    """Where the guide's ordering covers every datum (ordering 1, top row missing), its
    proposal is the exact conditional: log q of each draw is the brute-force log p_1(x_m | x_o)
    = log p_1(x_o, x_m) - log p_1(x_o)."""
    ar, x = random_model(), data()
    assert ar.proposal_ordering(TOP_MISSING) == 1
    lw = ar.particle_log_weights(x, TOP_MISSING, 20)
    draws = torch.stack([lw.samples[f"x_{d}_unobserved"] for d in range(D)], -1)
    joint = log_prob(ar, draws.reshape(-1, D), 1).reshape(20, 6).detach()
    expected = joint - brute_log_marginal(ar, x, TOP_MISSING, 1)
    torch.testing.assert_close(lw.log_q.detach(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("which", ["scattered", "top", "complete"])
def test_direct_path_gives_the_numbers_of_the_traced_story(which):
    """particle_log_weights scores the traced guide's particles as the traced model does."""
    ar, x = random_model(), data()
    mask = {"scattered": SCATTERED, "top": TOP_MISSING, "complete": None}[which]
    with seeded(0):
        traced = log_weights(ar, x, mask, num_particles=16, fast=False)
    if mask is None:
        direct = ar.particle_log_weights(x, None, 16)
    else:
        z = torch.stack([traced.samples[f"x_{d}_unobserved"] for d in range(D)], -1)
        direct = ar.particle_log_weights(x, mask, 16, z=z)
    for name in ("log_p", "log_q", "log_lik"):
        torch.testing.assert_close(getattr(direct, name), getattr(traced, name), rtol=0, atol=1e-10)
    assert set(direct.local_sites) == set(traced.local_sites)


def test_ensemble_is_the_mixture_over_orderings():
    """The ensemble story's exact evidence is log (1/R) Σ_σ p_σ(x); its direct path scores
    orderings as the traced story does."""
    ar, x = random_model(), data()
    ens = ar.ensemble()
    ev = Enumeration().log_evidence(ens, x)
    lp = torch.stack([log_prob(ar, x, r) for r in range(4)]).detach()
    torch.testing.assert_close(
        ev.per_datum, torch.logsumexp(lp, 0) - math.log(4), rtol=0, atol=1e-10
    )
    with seeded(0):
        traced = log_weights(ens, x, num_particles=8, fast=False)
    direct = ens.particle_log_weights(x, None, 8, z=traced.samples["ordering"])
    torch.testing.assert_close(direct.log_p, traced.log_p, rtol=0, atol=1e-10)
    torch.testing.assert_close(direct.log_q, traced.log_q, rtol=0, atol=1e-10)
    # the ELBO with the uniform guide is the average over orderings (the order-agnostic bound)
    elbo = SVI(num_particles=4000).log_evidence(ens, x, seed=0).per_datum
    assert bool(((elbo - lp.mean(0)).abs() < 0.2).all())


# -- training ------------------------------------------------------------------------------------
PROTOTYPES = torch.tensor(
    [[1, 1, 1, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0, 0, 0, 1]]
).double()
WEIGHTS, FLIP = torch.tensor([0.5, 0.3, 0.2]).double(), 0.1


def synthetic(n: int, seed: int) -> torch.Tensor:
    """Three 3 x 3 strokes, each pixel flipped with probability 0.1."""
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    return (PROTOTYPES[k] != (torch.rand(n, D, generator=g) < FLIP)).double()


def true_log_prob(x: torch.Tensor) -> torch.Tensor:
    p = PROTOTYPES * (1 - FLIP) + (1 - PROTOTYPES) * FLIP  # (3, D)
    per = (x[:, None] * p.log() + (1 - x[:, None]) * (1 - p).log()).sum(-1)
    return torch.logsumexp(per + WEIGHTS.log(), -1)


def test_order_agnostic_training_improves_every_ordering():
    """300 SVI steps on the ensemble story: every ordering's held-out log-likelihood is finite,
    rises by over a nat, and ends within 0.2 nats of the true distribution's."""
    train, test = synthetic(2000, 0), synthetic(500, 1)
    ar = models.Autoregressive(D, (32,), 4, seed=0).double()
    before = torch.stack([log_prob(ar, test, r).mean() for r in range(4)]).detach()
    fit = SVI(lr=1e-2, batch_size=100).fit(ar.ensemble(), train, steps=300, progress=False)
    after = torch.stack([log_prob(ar, test, r).mean() for r in range(4)]).detach()
    truth = float(true_log_prob(test).mean())
    assert fit.num_steps == 300 and bool(torch.isfinite(after).all())
    assert bool((after > before + 1).all()), (before, after)
    assert bool((after > truth - 0.2).all()), (after, truth)


def test_maximum_likelihood_of_the_canonical_ordering():
    """SVI on the story itself with complete data maximises log p_0(x): 300 steps take the
    held-out log p_0(x) up by over a nat, to within 0.2 nats of the truth."""
    train, test = synthetic(2000, 0), synthetic(500, 1)
    ar = models.Autoregressive(D, (32,), 4, seed=0).double()
    before = float(log_prob(ar, test, 0).mean())
    SVI(lr=1e-2, batch_size=100).fit(ar, train, steps=300, progress=False)
    after = float(log_prob(ar, test, 0).mean())
    assert after > before + 1 and after > float(true_log_prob(test).mean()) - 0.2


def test_learning_from_incomplete_data_by_the_iwae_bound():
    """SVI's IWAE bound with the guide's completions, on training images with 30% of pixels
    missing: the held-out exact log p_0(x_o) (by Enumeration) rises by over a nat, and the
    complete-data log p_0(x) ends within 0.3 nats of the truth."""
    train, test = synthetic(2000, 0), synthetic(300, 1)
    g = torch.Generator().manual_seed(3)
    mask, test_mask = torch.rand(2000, D, generator=g) > 0.3, torch.rand(300, D, generator=g) > 0.3
    ar = models.Autoregressive(D, (32,), 4, seed=0).double()
    before = Enumeration().log_evidence(ar, test, test_mask).mean
    SVI("iwae", num_particles=5, lr=1e-2, batch_size=100).fit(
        ar, train, mask, steps=200, progress=False
    )
    after = Enumeration().log_evidence(ar, test, test_mask).mean
    assert after > before + 1, (before, after)
    complete = float(log_prob(ar, test, 0).mean())
    assert complete > float(true_log_prob(test).mean()) - 0.3


def test_fit_is_reproducible():
    """The same seed trains to the same parameters."""
    train = synthetic(300, 0)
    states = []
    for _ in range(2):
        ar = models.Autoregressive(D, (8,), 3, seed=0).double()
        SVI(lr=1e-2, batch_size=50).fit(ar.ensemble(), train, steps=20, progress=False, seed=4)
        states.append(torch.cat([p.detach().flatten() for p in ar.parameters()]))
    assert torch.equal(*states)


# -- bad input ----------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, database=None)
@given(
    row=st.integers(0, 2),
    col=st.integers(0, D - 1),
    value=st.floats(-5, 5).filter(lambda v: v not in (0.0, 1.0)),
)
def test_non_binary_pixel_is_refused_by_name(row, col, value):
    """An observed pixel other than 0 or 1 is a ValueError naming it and the fix; the same
    pixel masked out is never read."""
    ar = models.Autoregressive(D, (4,), 2).double()
    x = torch.zeros(3, D)
    x[row, col] = value
    with pytest.raises(ValueError, match=rf"row {row}, column {col}.*binarize"):
        ar.observed_log_evidence(x)
    mask = torch.ones(3, D, dtype=torch.bool)
    mask[row, col] = False
    assert ar.observed_log_evidence(x, mask).per_datum.shape == (3,)


def test_wrong_shapes_and_arguments_name_the_fix():
    """Wrong width, mask shape, mask dtype, ordering and constructor arguments."""
    ar = models.Autoregressive(D, (4,), 3).double()
    x = torch.zeros(2, D)
    with pytest.raises(ValueError, match=r"dim=9.*\(N, 9\)"):
        ar.log_prob(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="flatten images"):
        ar.log_prob(torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="must match entry for entry"):
        ar.observed_log_evidence(x, torch.ones(2, 8, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool tensor"):
        ar.observed_log_evidence(x, torch.ones(2, D))
    with pytest.raises(ValueError, match=r"ordering must be in \[0, 3\)"):
        ar.log_prob(x, ordering=3)
    with pytest.raises(ValueError, match="needs a mask"):
        ar.complete_own(x, None, 2)
    with pytest.raises(ValueError, match="num_orderings must be at least 2"):
        models.Autoregressive(D, (4,), 1)
    with pytest.raises(ValueError, match=r"image_shape \(2, 2\) does not hold dim=9"):
        models.Autoregressive(D, image_shape=(2, 2))
    with pytest.raises(ValueError, match="hidden widths must be positive"):
        models.Autoregressive(D, (0,))
    with pytest.raises(ValueError, match="num_particles must be a positive int"):
        ar.observed_log_evidence(x, num_particles=0)


def test_ensemble_refuses_missing_pixels_with_the_way_forward():
    """The ensemble scores complete data only, and says which story trains on a mask."""
    ar = models.Autoregressive(D, (4,), 2).double()
    mask = torch.ones(4, D, dtype=torch.bool)
    mask[0, 0] = False
    with pytest.raises(ValueError, match=r"complete data only.*SVI\(objective='iwae'"):
        SVI().fit(ar.ensemble(), torch.zeros(4, D), mask, steps=1, progress=False)


def test_cli_builds_it_for_binary_data():
    """`--model ar` builds an Autoregressive sized to the data; grey data are refused."""
    from argparse import Namespace

    from ppl_lvm import datasets
    from ppl_lvm.cli.stories import make_model

    ds = datasets.load("digits")
    model = make_model(Namespace(model="ar"), ds.binarize())
    assert isinstance(model, models.Autoregressive) and model.dim == ds.dim
    with pytest.raises(ValueError, match="binary"):
        make_model(Namespace(model="ar"), ds)


def test_complete_routes_an_autoregressive_model_to_its_own_completion():
    """``ppl_lvm.complete`` completes an ``Autoregressive`` model by ``complete_own``: exact
    through the bottom-first ordering for a missing top row (E[x_m | x_o] within 4 SEs of the
    brute force), importance resampling for a scattered mask, each datum labelled."""
    from ppl_lvm import complete

    ar, x = random_model(), data(n=3)
    done = complete(ar, x, TOP_MISSING[:3], num_samples=4000, seed=0)
    assert done.method == "exact" and done.methods == ["exact"] * 3
    _, mean = brute_conditional(ar, x, TOP_MISSING[:3], 1)
    se = (mean * (1 - mean)).clamp(min=0).div(4000).sqrt()
    assert bool(((done.mean - mean).abs() <= 4 * se + 1e-12).all())
    scattered = complete(ar, x, SCATTERED[:3], num_samples=5, num_particles=200, seed=0)
    assert scattered.method == "importance resampling" and scattered.ess.shape == (3,)
    with pytest.raises(UnsupportedModelError, match="method='auto'"):
        complete(ar, x, SCATTERED[:3], method="hmc")
