"""BinaryLatentFactors: exact sums against brute force, both weighting paths, and SVI training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ppl_lvm.inference import SVI, Enumeration, UnsupportedModelError, log_weights
from ppl_lvm.models import BinaryLatentFactors

D, L = 16, 4  # 4×4 images, four features


pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation, which on a
    busy machine made the training here 10-30 times slower (measured)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def bars_model() -> BinaryLatentFactors:
    """The true model: four features, the top and bottom rows and the left and right columns
    of a 4×4 image; a pixel is on with probability σ(-3) = 0.05 unless a bar covers it, then
    σ(2) = 0.88 (σ(7) at a corner that two bars cover)."""
    bars = torch.zeros(L, 4, 4)
    bars[0, 0, :] = bars[1, 3, :] = bars[2, :, 0] = bars[3, :, 3] = 1
    w = 5 * bars.reshape(L, D).T
    probs = torch.tensor([0.3, 0.4, 0.5, 0.35])
    return BinaryLatentFactors(D, L).double().set_parameters(w, torch.full((D,), -3.0), probs)


@pytest.fixture(scope="module")
def bars_data() -> torch.Tensor:
    x, _ = bars_model().sample(400, seed=0)
    return x


def random_model(seed: int = 0) -> BinaryLatentFactors:
    g = torch.Generator().manual_seed(seed)
    model = BinaryLatentFactors(D, L, hidden=(8,)).double()
    probs = torch.rand(L, generator=g) * 0.8 + 0.1
    return model.set_parameters(
        2 * torch.randn(D, L, generator=g), torch.randn(D, generator=g), probs
    )


def random_mask(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, D, generator=g) > 0.3
    mask[0] = False  # a datum with nothing observed has log p(x) = 0
    return mask


def brute_force(model: BinaryLatentFactors, x, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x_n) and p(z_nl = 1 | x_n) by looping over the 16 states, one pixel at a time."""
    w, b, pi = model.loadings_, model.bias_, model.feature_probs_
    m = torch.ones_like(x) if mask is None else mask.double()
    joint, states = [], []
    for bits in itertools.product([0.0, 1.0], repeat=L):
        s = torch.tensor(bits)
        log_prior = sum(math.log(pi[j] if s[j] else 1 - pi[j]) for j in range(L))
        p = torch.sigmoid(w @ s + b)  # (D,)
        lik = (m * (x * p.log() + (1 - x) * (1 - p).log())).sum(-1)  # (N,)
        joint.append(log_prior + lik)
        states.append(s)
    joint = torch.stack(joint, -1)  # (N, 16)
    post = torch.softmax(joint, -1)
    return torch.logsumexp(joint, -1), post @ torch.stack(states)


# ---------------------------------------------------------------------------------------------
# exact sums
@pytest.mark.parametrize("masked", [False, True])
def test_enumeration_equals_brute_force(masked):
    """Enumeration's exact log p(x) for L = 4 equals the sum over 16 states written out."""
    model = random_model()
    x, _ = model.sample(30, seed=2)
    mask = random_mask(30) if masked else None
    want, want_probs = brute_force(model, x, mask)
    got = Enumeration().log_evidence(model, x, mask)
    assert got.kind == "exact"
    torch.testing.assert_close(got.per_datum, want, rtol=1e-12, atol=1e-12)
    # the direct matrix-product path gives the same numbers
    torch.testing.assert_close(model.exact_log_evidence(x, mask), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.exact_feature_probs(x, mask), want_probs)
    if masked:
        assert abs(float(got.per_datum[0])) < 1e-12


def test_states_are_all_binary_vectors():
    """states() lists each of the 2^L binary vectors once."""
    s = random_model().states()
    assert s.shape == (16, L)
    assert {tuple(r) for r in s.long().tolist()} == set(itertools.product([0, 1], repeat=L))


def test_enumeration_refuses_thirty_features():
    """L = 30 is refused with the lecture's 2^30 count, before any work."""
    model = BinaryLatentFactors(dim=5, num_features=30, hidden=())
    x = torch.zeros(3, 5)
    with pytest.raises(UnsupportedModelError, match=r"2\^30 = 1,073,741,824 joint states per"):
        Enumeration().log_evidence(model, x)
    with pytest.raises(ValueError, match=r"2\^30 = 1,073,741,824 joint states per datum"):
        model.exact_log_evidence(x)


# ---------------------------------------------------------------------------------------------
# the weighting paths
@pytest.mark.parametrize("masked", [False, True])
def test_fast_path_equals_generic_path(masked):
    """particle_log_weights scores the generic path's particles to the same numbers, and its
    log_q_score is the whole log q (every guide draw is discrete)."""
    model = random_model()
    x, _ = model.sample(25, seed=3)
    mask = random_mask(25) if masked else None
    with torch.no_grad():
        slow = log_weights(model, x, mask, num_particles=6, fast=False)
        fast = model.particle_log_weights(x, mask, 6, z=slow.samples["z"])
    for name in ("log_p", "log_q", "log_lik", "log_q_score", "global_log_p", "global_log_q"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name))
    torch.testing.assert_close(fast.log_q_score, fast.log_q)
    assert fast.samples["z"].shape == (6, 25, L)


def test_fast_draws_follow_the_guide():
    """The direct path's draws have the guide's probabilities, within 4 standard errors."""
    model = random_model()
    x, _ = model.sample(5, seed=4)
    k = 4000
    with torch.no_grad():
        z = model.particle_log_weights(x, None, k).samples["z"]
        q = torch.sigmoid(model.encode(x))
    # a mean of k Bernoulli draws has standard error sqrt(q (1 - q) / k) <= 0.008
    se = (q * (1 - q) / k).sqrt()
    assert bool(((z.mean(0) - q).abs() <= 4 * se + 1e-12).all())


# ---------------------------------------------------------------------------------------------
# training by SVI
@pytest.fixture(scope="module")
def trained(bars_data) -> dict[str, tuple[BinaryLatentFactors, float]]:
    """Models trained from the same start by each objective: (model, exact log p(x) at start)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    out = {}
    for objective in ("elbo", "iwae"):
        model = BinaryLatentFactors(D, L, hidden=(32,)).double()
        model.initialize(bars_data, None, seed=0)
        start = float(model.exact_log_evidence(bars_data).mean())
        # K = 8: the score-function term needs K >= 2 for its baseline; full batch, 200 steps
        # (measured: 1-3 s per objective on one thread)
        SVI(objective, num_particles=8, lr=0.05, batch_size=None).fit(
            model, bars_data, steps=200, seed=0, progress=False
        )
        out[objective] = (model, start)
    torch.set_default_dtype(old)
    return out


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_svi_increases_the_exact_likelihood(bars_data, trained, objective):
    """Training raises the exact mean log p(x) well above the independent-pixel start.

    The start (b at the pixel frequencies, W ≈ 0) scores about -8.69 nats per image and the
    true model -6.18; seeds 0-2 measured -6.07 to -6.49 after training, so a gain of 1.5 nats
    leaves margin, and a fit that learned no bar gains nothing.
    """
    model, start = trained[objective]
    truth = float(bars_model().exact_log_evidence(bars_data).mean())
    after = float(Enumeration().log_evidence(model, bars_data).mean)
    assert start < truth - 2.0  # the features matter: the start is far from the truth
    assert after > start + 1.5, (start, after)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_iwae_bound_below_exact(bars_data, trained, objective):
    """The IWAE-K bound of a trained model is at most the exact log p(x), within 3 standard
    errors (of the mean over 400 data of bound minus exact, each datum its own particles)."""
    model, _ = trained[objective]
    exact = model.exact_log_evidence(bars_data)
    for k in (1, 10):
        ev = SVI("iwae", num_particles=k).log_evidence(model, bars_data, seed=1)
        diff = ev.per_datum - exact
        se = float(diff.std() / math.sqrt(len(diff)))
        assert float(diff.mean()) <= 3 * se + 1e-12, (k, float(diff.mean()), se)


# ---------------------------------------------------------------------------------------------
# errors and small pieces
def test_non_binary_data_is_refused():
    """Pixels other than 0 and 1 are refused with the fix named; masked ones are ignored."""
    model = random_model()
    x = torch.full((3, D), 0.5)
    with pytest.raises(ValueError, match=r"binary data \(0 or 1\).*binarize"):
        Enumeration().log_evidence(model, x)
    # also once the site metadata for this shape is cached, as the engines do
    model.sites(torch.zeros(3, D))
    with pytest.raises(ValueError, match=r"binary data \(0 or 1\).*binarize"):
        SVI(num_particles=2).fit(model, x, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"binary data \(0 or 1\).*binarize"):
        log_weights(model, x, num_particles=2, validate=False, max_plate_nesting=1)
    mask = torch.zeros(3, D, dtype=torch.bool)
    torch.testing.assert_close(model.exact_log_evidence(x, mask), torch.zeros(3))


def test_argument_errors():
    """Bad sizes and probabilities are refused with the problem named."""
    with pytest.raises(ValueError, match=r"num_features must be a positive int, got 0"):
        BinaryLatentFactors(4, 0)
    with pytest.raises(ValueError, match=r"hidden widths must be positive ints"):
        BinaryLatentFactors(4, 2, hidden=(0,))
    model = BinaryLatentFactors(4, 2)
    with pytest.raises(ValueError, match=r"expected W \(4, 2\), b \(4,\)"):
        model.set_parameters(torch.zeros(2, 4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"strictly between 0 and 1"):
        model.set_parameters(torch.zeros(4, 2), torch.zeros(4), 1.0)


def test_sample_is_seeded_and_binary():
    """sample(seed=s) repeats exactly and gives 0/1 arrays of the stated shapes."""
    model = bars_model()
    x1, z1 = model.sample(50, seed=7)
    x2, z2 = model.sample(50, seed=7)
    assert torch.equal(x1, x2) and torch.equal(z1, z2)
    assert x1.shape == (50, D) and z1.shape == (50, L)
    assert set(x1.unique().tolist()) <= {0.0, 1.0} and set(z1.unique().tolist()) <= {0.0, 1.0}
