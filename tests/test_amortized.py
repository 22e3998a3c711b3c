"""AmortizedLVM and AmortizedGaussianLVM: a subclass that gives only an encoder and a decoder (or
only its distributions) has the same direct path as Pyro's traced pass and trains; declared
capabilities; one ``sample`` return type; ConvVAE and its example; ToyVAE's renamed evidence."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pyro.distributions as dist
import pytest
import torch
from _helpers import load_example
from torch import nn

from ppl_lvm import complete, datasets, models
from ppl_lvm.core import seeded
from ppl_lvm.inference import SVI, log_weights
from ppl_lvm.models._gaussian import gaussian_completions
from ppl_lvm.models.capabilities import (
    AnalyticKL,
    DetachableGuide,
    ExactCompletion,
    ExactEvidence,
    Generative,
    Initializable,
    MeanFieldTerms,
    ModelSample,
    Observation,
    ParticleLogWeights,
    ValueValidation,
    has,
)


class TinyVAE(models.AmortizedGaussianLVM):
    """A new deep model: an encoder and a decoder, nothing else."""

    def __init__(self, likelihood: str = "bernoulli", mask_input: bool = False):
        super().__init__(6, 2, likelihood, mask_input=mask_input)
        self.encoder = nn.Sequential(
            nn.Linear(12 if mask_input else 6, 16), nn.Tanh(), nn.Linear(16, 4)
        )
        out = 6 if likelihood == "bernoulli" else 12
        self.decoder = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, out))


class LaplaceFactors(models.AmortizedLVM):
    """Only the three distributions: a Laplace prior, a Normal guide, a Laplace likelihood."""

    def __init__(self):
        super().__init__(dim=5, latent_dim=2)
        self.encoder = nn.Linear(5, 4)
        self.W = nn.Parameter(torch.randn(5, 2))

    def prior_distribution(self, num_data, like):
        return dist.Laplace(like.new_zeros(()), 1.0).expand([num_data, 2]).to_event(1)

    def guide_distribution(self, x, mask=None):
        loc, raw = self.encoder(x).split(2, -1)
        return dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1)

    def likelihood_distribution(self, z):
        return dist.Laplace(z @ self.W.T, 0.5)


def _data(likelihood: str, n: int = 8, d: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    if likelihood == "bernoulli":
        x = (x > 0.5).to(x.dtype)
    mask = torch.rand(n, d, generator=g) > 0.3
    return torch.where(mask, x, 0.0), mask


def _assert_fast_equals_traced(model, x, mask, k=5):
    with model.scoped():
        slow = log_weights(model, x, mask, num_particles=k, fast=False)
        fast = model.particle_log_weights(x, mask, k, z=slow.samples["z"])
    for name in ("log_p", "log_q", "log_lik"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name), rtol=1e-5, atol=1e-5)
    return fast


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("masked", [False, True])
def test_encoder_decoder_subclass_direct_path_equals_traced_pass(likelihood, masked):
    """The direct path of a subclass that gives only encoder and decoder is Pyro's traced pass."""
    torch.manual_seed(0)
    model = TinyVAE(likelihood, mask_input=masked).double()
    x, mask = _data(likelihood)
    _assert_fast_equals_traced(model, x, mask if masked else None)


@pytest.mark.usefixtures("float64")
def test_distributions_only_subclass_direct_path_equals_traced_pass():
    """The generic hooks (prior, guide and likelihood as distributions) give the traced pass."""
    torch.manual_seed(1)
    model = LaplaceFactors().double()
    x, mask = _data("gaussian", d=5)
    for m in (None, mask):
        fast = _assert_fast_equals_traced(model, x, m)
        assert fast.log_q_score is None  # a reparameterised guide
    with seeded(0):
        drawn = model.sample(4)
    assert isinstance(drawn, ModelSample) and drawn.x.shape == (4, 5) and drawn.z.shape == (4, 2)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("mask_input", [False, True])
def test_conv_vae_direct_path_equals_traced_pass(likelihood, mask_input):
    """ConvVAE on odd-sized images, with and without a mask as a second input channel."""
    torch.manual_seed(0)
    model = models.ConvVAE(
        (5, 3), latent_dim=3, channels=4, likelihood=likelihood, mask_input=mask_input
    ).double()
    x, mask = _data(likelihood, d=15)
    _assert_fast_equals_traced(model, x, mask)
    out = model.decode(torch.zeros(2, 4, 3))  # leading particle dims pass through
    for part in out if likelihood == "gaussian" else (out,):
        assert part.shape == (2, 4, 15)
    assert model.reconstruct(x).shape == (8, 15)


def test_encoder_decoder_subclass_trains_with_svi():
    """SVI on the ELBO raises a TinyVAE's bound on correlated binary data."""
    torch.manual_seed(0)
    z = torch.randn(200, 1)
    x = torch.bernoulli(torch.sigmoid(3 * z * torch.tensor([1.0, 1, 1, -1, -1, -1])))
    model = TinyVAE("bernoulli")
    engine = SVI(objective="elbo", lr=2e-2, batch_size=None)
    before = engine.log_evidence(model, x, seed=0).mean
    fit = engine.fit(model, x, steps=300, seed=0, progress=False)
    after = engine.log_evidence(model, x, seed=0).mean
    assert after > before + 0.5
    assert fit.history[-20:].mean() > fit.history[:20].mean()


def test_wrong_network_widths_are_named():
    """An encoder or decoder of the wrong width fails with the width it needs."""
    model = TinyVAE("gaussian")
    model.decoder = nn.Linear(2, 6)
    with pytest.raises(ValueError, match="needs 12"):
        model.particle_log_weights(torch.zeros(3, 6), None, 2)
    model.encoder = nn.Linear(6, 3)
    with pytest.raises(ValueError, match=r"2 \* latent_dim = 4"):
        model.encode(torch.zeros(3, 6))
    with pytest.raises(TypeError, match="abstract"):
        models.AmortizedLVM(3, 2)


def test_declared_capabilities():
    """Each model declares what it implements and nothing else."""
    every = (
        ParticleLogWeights,
        DetachableGuide,
        AnalyticKL,
        MeanFieldTerms,
        ExactEvidence,
        Initializable,
        ExactCompletion,
        Observation,
        ValueValidation,
        Generative,
    )
    deep = {
        ParticleLogWeights,
        DetachableGuide,
        AnalyticKL,
        MeanFieldTerms,
        Observation,
        ValueValidation,
    }
    expected = {
        models.VAE(4, 2, (3,)): deep | {Initializable, Generative},
        models.ToyVAE((4,)): deep | {ExactEvidence, Generative},
        models.ConvVAE((4, 4), 2, 2): deep | {Generative},
        TinyVAE(): deep | {Generative},
        models.LinearGaussian(4, 2): {
            ParticleLogWeights,
            AnalyticKL,
            ExactEvidence,
            ExactCompletion,
            Observation,
            Initializable,
            Generative,
        },
        models.BinaryLatentFactors(4, 2, (3,)): {
            ParticleLogWeights,
            ExactEvidence,
            Observation,
            Initializable,
            ValueValidation,
            Generative,
        },
    }
    for model, caps in expected.items():
        got = {c for c in every if has(model, c)}
        assert got == caps, model.name


def test_sample_returns_model_sample_everywhere():
    """Every model's sample(S, seed=s) is a ModelSample (x (S, D), z (S, L)), repeatable."""
    built = [
        models.VAE(4, 2, (3,)),
        models.ToyVAE((4,)),
        models.ConvVAE((4, 4), 2, 2),
        models.LinearGaussian(4, 2),
        models.BinaryLatentFactors(4, 2, (3,)),
    ]
    for model in built:
        first = model.sample(7, seed=3)
        again = model.sample(7, seed=3)
        assert isinstance(first, ModelSample), model.name
        x, z = first
        assert x.shape == (7, model.dim) and z.shape == (7, model.latent_dim), model.name
        assert torch.equal(x, again.x) and torch.equal(z, again.z), model.name
    vae = built[0]
    probs = vae.sample(50, seed=0).x  # the decoder's mean by default, as before
    assert bool(((probs > 0) & (probs < 1)).all())
    draws = vae.sample(50, seed=0, mean=False).x
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        vae.sample(0)


@pytest.mark.usefixtures("float64")
def test_linear_gaussian_sample_has_the_marginal_covariance():
    """x ~ p(x) by sampling has mean b and covariance W Wᵀ + σ² I."""
    g = torch.Generator().manual_seed(0)
    ppca = models.LinearGaussian(3, 2).set_parameters(
        torch.randn(3, 2, generator=g), torch.tensor([1.0, -2.0, 0.5]), 0.3
    )
    x, z = ppca.sample(40_000, seed=1)
    torch.testing.assert_close(x.mean(0), ppca.mean_, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), ppca.covariance_, atol=0.05, rtol=0.03)
    assert z.shape == (40_000, 2)


@pytest.mark.usefixtures("float64")
def test_linear_gaussian_complete_exact_is_the_gaussian_conditional():
    """complete_exact gives the closed-form completions that complete() returns."""
    ppca = models.LinearGaussian(5, 2)
    x, mask = _data("gaussian", n=6, d=5, seed=3)
    ppca.initialize(x, mask, seed=0)
    with seeded(0):
        got = ppca.complete_exact(x, mask, 4)
    with seeded(0):
        want = gaussian_completions(x, mask, ppca.mean_, ppca.covariance_, 4)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    done = complete(ppca, x, mask, num_samples=4, seed=0)
    torch.testing.assert_close(done.mean, got[2])
    assert done.method == "exact"


def test_binary_validate_values():
    """validate_values refuses a non-binary observed entry and ignores hidden ones."""
    model = models.BinaryLatentFactors(3, 2, (3,))
    x = torch.tensor([[0.0, 1.0, 0.5]])
    with pytest.raises(ValueError, match=r"binary data \(0 or 1\).*binarize"):
        model.validate_values(x)
    model.validate_values(x, torch.tensor([[True, True, False]]))


# the old ToyVAE.log_density of ToyVAE.from_params(TOY2D) at these points (float32), as
# computed before the rename: the default 100² grid on [-5, 5]², and a 50² grid on [-4, 4]²
_TOY_POINTS = [[0.2, 0.3], [0.5, 0.5], [0.9, 0.1], [0.05, 0.95]]
_TOY_OLD = [-0.8593971729278564, -1.4100356101989746, 0.8147668838500977, 0.43288469314575195]
_TOY_OLD_50 = [-0.8609917163848877, -1.422142505645752, 0.8147594928741455, 0.43264317512512207]


def test_toy_exact_log_evidence_is_the_old_log_density():
    """exact_log_evidence gives the numbers log_density gave; log_density still works, with a
    FutureWarning naming the new name."""
    truth = models.ToyVAE.from_params(datasets.TOY2D)
    x = torch.tensor(_TOY_POINTS)
    torch.testing.assert_close(truth.exact_log_evidence(x), torch.tensor(_TOY_OLD))
    got = truth.exact_log_evidence(x, num_grid=50, extent=4.0)
    torch.testing.assert_close(got, torch.tensor(_TOY_OLD_50))
    with pytest.warns(FutureWarning, match="exact_log_evidence"):
        old = truth.log_density(x, num_grid=50, extent=4.0)
    torch.testing.assert_close(old, got, rtol=0, atol=0)


@pytest.mark.usefixtures("float64")
def test_toy_exact_log_evidence_integrates_out_a_missing_coordinate():
    """With the second coordinate hidden, the evidence is the marginal density of the first:
    it ignores the hidden value and integrates to one over the first coordinate."""
    truth = models.ToyVAE.from_params(datasets.TOY2D).double()
    ticks = torch.linspace(-0.6, 1.6, 300)
    x = torch.stack([ticks, torch.full_like(ticks, 0.3)], -1)
    mask = torch.tensor([True, False]).expand(300, 2)
    marginal = truth.exact_log_evidence(x, mask)
    shifted = truth.exact_log_evidence(x + torch.tensor([0.0, 7.0]), mask)
    torch.testing.assert_close(marginal, shifted, rtol=0, atol=0)
    mass = marginal.exp().sum() * float(ticks[1] - ticks[0])
    assert float(mass) == pytest.approx(1.0, abs=0.01)


@pytest.fixture
def one_thread():
    """The networks are tiny: on a shared two-core machine one thread is the faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_conv_vae_digits_example(tmp_path: Path):
    """The example runs with --quick, beats independent pixels and saves its figure."""
    res = load_example("conv_vae_digits").main(["--quick", "--out", str(tmp_path), "--seed", "0"])
    assert (res["num_train"], res["num_test"], res["epochs"]) == (600, 100, 20)
    for key in ("test_elbo", "test_log_lik", "pixels_log_lik"):
        assert math.isfinite(res[key]) and res[key] < 0, key
    # quick runs at seeds 0-2 measured an ELBO 3.8-4.9 nats per digit above independent
    # pixels, and the K=100 importance estimate 0.9-1.3 above the ELBO (standard error ~0.03)
    assert res["test_elbo"] > res["pixels_log_lik"] + 1.5
    assert res["test_elbo"] - 0.3 <= res["test_log_lik"] <= res["test_elbo"] + 10
    assert res["train_elbo_last"] > res["train_elbo_first"]
    (figure,) = (Path(p) for p in res["figures"])
    assert figure.parent == tmp_path and figure.name == "conv_vae_digits.png"
    img = mpimg.imread(figure)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 100
    assert float(np.std(img[..., :3])) > 0.01
