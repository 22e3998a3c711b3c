"""Every engine entry point checks the data against the story before any work: impossible data
never yield a number, the dtype and width are checked once, and seed=None is a fresh seed that
the result records."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_lvm import compare, complete, models
from ppl_lvm.inference import SVI, Enumeration, ImportanceSampling


def _bernoulli_mixture(x: torch.Tensor) -> models.BernoulliMixture:
    bmm = models.BernoulliMixture(x.shape[1], num_components=2)
    bmm._set_weights(torch.tensor([0.3, 0.7]))
    bmm._assign("probs", torch.linspace(0.1, 0.9, 2 * x.shape[1]).reshape(2, -1))
    return bmm


def _binary(n: int = 20, d: int = 6) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def test_enumeration_refuses_a_two_in_bernoulli_data():
    """log p(x = 2) under a Bernoulli mixture was +1.32 nats; now the 2 is named."""
    x = _binary()
    bmm = _bernoulli_mixture(x)
    bad = x.clone()
    bad[3, 4] = 2.0
    with pytest.raises(
        ValueError, match=r"binary data \(0 or 1\).*the first 2 at \(row 3, column 4\)"
    ):
        Enumeration().log_evidence(bmm, bad)
    masked = torch.ones_like(bad, dtype=torch.bool)
    masked[3, 4] = False  # a masked entry is never judged
    assert torch.isfinite(Enumeration().log_evidence(bmm, bad, masked).per_datum).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda vae, x: SVI("meanfield").fit(vae, x, steps=2, progress=False),
        lambda vae, x: ImportanceSampling("guide", num_particles=10).log_evidence(vae, x),
        lambda vae, x: SVI("elbo").posterior(vae, x, num_samples=5),
        lambda vae, x: complete(vae, x, torch.rand(x.shape) > 0.5, num_particles=10),
    ],
    ids=["fit", "log_evidence", "posterior", "complete"],
)
def test_a_bernoulli_vae_refuses_grey_values_everywhere(call):
    """3·x under a Bernoulli VAE trained to an ELBO of +12.6; every entry point refuses it."""
    vae = models.VAE(6, 2, (8,), "bernoulli")
    with pytest.raises(ValueError, match=r"binary data \(0 or 1\).*the first 3"):
        call(vae, 3 * _binary())


def test_categorical_codes_must_be_integers():
    """Codes such as 0.5 were truncated by .long(); they are refused by name."""
    x = torch.randint(0, 4, (20, 5), generator=torch.Generator().manual_seed(0)).float()
    cmm = models.CategoricalMixture(5, num_components=2, num_categories=4)
    with pytest.raises(ValueError, match=r"integer codes 0\.\.3.*the first 0\.5"):
        Enumeration().log_evidence(cmm, x + 0.5)


def _coin_model(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Beta(2.0, 2.0))
        pyro.sample("flip", dist.Bernoulli(z).expand([x.shape[0]]), obs=x[:, 0])


def _coin_guide(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Beta(torch.full((x.shape[0],), 2.0), 2.0))


@pytest.mark.parametrize(
    "engine",
    [ImportanceSampling("prior", num_particles=10), ImportanceSampling("guide", 10), SVI("elbo")],
    ids=["is-prior", "is-guide", "svi"],
)
def test_a_users_story_names_the_site_and_the_value(engine):
    """Out-of-support data through a user's own story: the site and value are named, not a
    torch traceback with the whole tensor."""
    x = torch.tensor([[0.0], [1.0], [2.0]])
    with pytest.raises(ValueError, match=r"observed site 'flip'.*outside its support.*the first 2"):
        engine.log_evidence((_coin_model, _coin_guide), x)


def test_compare_refuses_impossible_data_once():
    """compare checks the data before any engine runs (one error, not one per engine)."""
    x = _binary()
    bmm = _bernoulli_mixture(x)
    with pytest.raises(ValueError, match="binary data"):
        compare(bmm, 2 * x, engines=["enumeration", "is-prior"])


def test_a_wrong_width_names_both_widths():
    """Wrong D was `mat1 and mat2 shapes cannot be multiplied`; now both D's are named."""
    vae = models.VAE(6, 2, (8,), "gaussian")
    with pytest.raises(ValueError, match=r"D=8 features per datum but VAE was built for dim=6"):
        SVI().log_evidence(vae, torch.zeros(3, 8))


def test_a_wrong_width_validation_set_fails_before_training():
    """The validation set is checked before the first step, so the model is untouched."""
    vae = models.VAE(6, 2, (8,), "gaussian")
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with pytest.raises(ValueError, match="D=5 features per datum"):
        SVI().fit(vae, torch.randn(30, 6), steps=50, validation=torch.randn(10, 5), progress=False)
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())


def test_float64_data_with_a_float32_model_is_cast_with_one_warning():
    """A dtype mismatch was `expected m1 and m2 to have the same dtype`; now it is cast, once."""
    vae = models.VAE(6, 2, (8,), "gaussian")
    with pytest.warns(UserWarning, match="x was cast to torch.float32") as record:
        ev = SVI().log_evidence(vae, torch.randn(4, 6, dtype=torch.float64))
    assert len([w for w in record if "was cast" in str(w.message)]) == 1
    assert ev.per_datum.dtype == torch.float32


def test_float16_data_is_refused_clearly():
    """Half-precision data have no exact log-densities here: refused with the fix."""
    with pytest.raises((TypeError, ValueError), match="float16"):
        SVI().log_evidence(models.VAE(6, 2, (8,)), torch.zeros(3, 6, dtype=torch.float16))


def _fit_with(seed):
    torch.manual_seed(0)  # the same starting network every time
    vae = models.VAE(6, 2, (8,), "gaussian")
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(1))
    return SVI(batch_size=10).fit(vae, x, steps=6, seed=seed, progress=False)


def test_seed_none_is_a_fresh_seed_that_the_result_records():
    """seed=None used to fail with `manual_seed expected a long`; now it draws a fresh seed,
    records it, and that seed reproduces the run exactly."""
    first, second = _fit_with(None), _fit_with(None)
    assert isinstance(first.seed, int) and first.seed != second.seed
    assert not torch.equal(first.history, second.history)
    assert torch.equal(_fit_with(first.seed).history, first.history)


def test_em_on_fully_masked_data_is_refused():
    """EM on data with every entry masked reported "converged"; now it is refused."""
    x = _binary()
    with pytest.raises(ValueError, match="every entry of x is masked"):
        Enumeration().fit(
            models.BernoulliMixture(6, num_components=2), x, torch.zeros_like(x, dtype=torch.bool)
        )
