"""Minibatches of a user's story go through Pyro's own subsampling: the data plate's indices.

SVI used to hand a story ``x[idx]`` and create its parameters on ``x[:batch]``: a per-datum
parameter (a local AutoNormal, a hand-written ``pyro.param`` inside the plate) was then B long
and aligned to positions in the minibatch, not to data, and silently wrong. Now the story gets
all of x, the plate's indices are set to the minibatch, and Pyro's plate slices the parameters
and scales by N / B.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from ppl_lvm import models
from ppl_lvm.inference import SVI, ImportanceSampling, UnsupportedModelError

pytestmark = pytest.mark.usefixtures("float64")


def _data(n: int = 12) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(0)) * 2


def exact(x: torch.Tensor) -> torch.Tensor:
    """log p(x_n) of z_n ~ N(0, 1), x_n ~ N(z_n, 1): N(x_n; 0, 2)."""
    return dist.Normal(0.0, math.sqrt(2.0)).log_prob(x)


def indexed(x, mask=None):
    """z_n ~ N(0, 1), x_n ~ N(z_n, 1), the data picked by the plate's indices."""
    with pyro.plate("data", len(x)) as ind:
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[ind])


def per_datum_guide(x, mask=None):
    """Pyro's idiom for per-datum parameters: event_dim inside the plate, sliced by it."""
    with pyro.plate("data", len(x)):
        loc = pyro.param("loc", torch.zeros(len(x)), event_dim=0)
        scale = pyro.param(
            "scale", torch.ones(len(x)), constraint=dist.constraints.positive, event_dim=0
        )
        pyro.sample("z", dist.Normal(loc, scale))


# Measured with seeds 0, 1, 2 (N = 12, B = 4, K = 16, 600 Adam steps at lr 0.05): the guide
# means' errors from x_n / 2 were at most 0.26 and 0.105 in root mean square, for both guides.
# Aligned to positions instead of data, each mean learns the average of the rows that visit
# its position, and the error is of the size of x_n / 2 itself (root mean square 0.9 here).
MAX_ERR, RMS_ERR = 0.4, 0.2


@pytest.mark.parametrize("guide", ["AutoNormal", "pyro.param"])
def test_per_datum_guide_means_converge_to_their_own_posterior(guide):
    """With batch_size < N each datum's guide mean reaches its exact posterior mean x_n / 2."""
    x = _data()
    assert float((x / 2).pow(2).mean().sqrt()) > 0.8  # what position-aligned means would miss
    story = models.from_functions(
        indexed, AutoNormal(indexed) if guide == "AutoNormal" else per_datum_guide
    )
    fit = SVI("elbo", num_particles=16, lr=0.05, batch_size=4).fit(
        story, x, steps=600, seed=0, progress=False
    )
    assert fit.info["minibatches"] == "indices" and fit.info["batch_size"] == 4
    with story.scoped():
        loc = story.guide_fn.locs.z if guide == "AutoNormal" else pyro.param("loc")
    assert loc.shape == (12,)  # created at full size, not at the minibatch's
    err = loc.detach() - x / 2
    assert err.abs().max() < MAX_ERR and err.pow(2).mean().sqrt() < RMS_ERR


def subsampled(x, mask=None):
    """The story declares its own minibatch, as in Pyro's SVI tutorial part II."""
    with pyro.plate("data", len(x), subsample_size=5) as ind:
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[ind])


def exact_posterior_guide(x, mask=None):
    """q(z_n) = N(x_n / 2 + shift, 1 / 2): with shift 0 the exact posterior."""
    with pyro.plate("data", len(x), subsample_size=5):
        shift = pyro.param("shift", torch.tensor(0.0))
        loc = pyro.param("loc", lambda: x / 2, event_dim=0)
        pyro.sample("z", dist.Normal(loc + shift, math.sqrt(0.5)))


def test_a_declared_subsample_step_is_pyros_own_loss_on_the_same_indices():
    """One step's objective is Pyro's Trace_ELBO loss on the indices Pyro's plate draws: exact
    for the exact guide (every draw scores log p(x_n)), and within Monte Carlo error of the
    closed-form ELBO, N / B Σ_batch [log p(x_n) − KL(q_n ‖ p(z_n | x_n))], for a shifted one."""
    x = _data(13)
    for shift, particles in ((0.0, 4), (0.5, 20000)):
        story = models.from_functions(subsampled, exact_posterior_guide)
        pyro.clear_param_store()
        pyro.param("shift", torch.tensor(shift))
        pyro.set_rng_seed(5)
        idx = pyro.poutine.trace(exact_posterior_guide).get_trace(x).nodes["data"]["value"]
        pyro.set_rng_seed(5)  # Pyro's SVI: the guide's plate draws the same indices
        elbo = Trace_ELBO(particles, max_plate_nesting=1, vectorize_particles=True)
        pyro_loss = elbo.loss(subsampled, exact_posterior_guide, x)
        pyro.clear_param_store()
        with story.scoped():
            pyro.param("shift", torch.tensor(shift))
        engine = SVI("elbo", num_particles=particles)
        ours = engine._objective.step(story, x, None, 13, 1, False, indices=idx).item() * 13
        # KL(N(m + s, 1/2) ‖ N(m, 1/2)) = s² for variance 1/2
        closed = 13 / 5 * float((exact(x[idx]) - shift**2).sum())
        if shift == 0.0:
            assert -pyro_loss == pytest.approx(closed, abs=1e-10)
            assert ours == pytest.approx(closed, abs=1e-10)
        else:
            # the integrand is −s² − 2s·e, e ~ N(0, 1/2), per datum: with 5 data scaled by
            # 13 / 5 and 20000 draws, SE = 13/5 · 2s · sqrt(5/2) / sqrt(20000) ≈ 0.029
            assert ours == pytest.approx(closed, abs=0.15)
            assert -pyro_loss == pytest.approx(closed, abs=0.15)
    assert len(idx) == 5 and not torch.equal(idx, torch.arange(5))


def test_a_declared_subsample_is_fitted_and_evaluated_over_all_data():
    """The story's subsample_size is its minibatch (N mod B rows wait for the next epoch), and
    log_evidence, IS and posterior cover all N data, the last chunk overlapping the one before."""
    x = _data(13)
    story = models.from_functions(subsampled, exact_posterior_guide)
    with pytest.warns(UserWarning, match="subsample_size=5.*not batch_size=4"):
        fit = SVI("elbo", lr=0.01, batch_size=4).fit(story, x, epochs=3, seed=0, progress=False)
    assert fit.num_steps == 6 and fit.info["batch_size"] == 5  # ⌊13 / 5⌋ steps an epoch
    with story.scoped():
        pyro.param("shift").data.zero_()
        pyro.param("loc").data.copy_(x / 2)
    ev = SVI("elbo", num_particles=3).log_evidence(story, x)
    torch.testing.assert_close(ev.per_datum, exact(x), rtol=0, atol=1e-10)
    ev = ImportanceSampling("guide", 3).log_evidence(story, x)
    torch.testing.assert_close(ev.per_datum, exact(x), rtol=0, atol=1e-10)
    post = SVI("elbo").posterior(story, x, num_samples=4000, seed=0)
    assert post.samples["z"].shape == (4000, 13)
    # posterior means x_n / 2 with sd sqrt(1/2) / sqrt(4000) = 0.011 each
    assert (post.samples["z"].mean(0) - x / 2).abs().max() < 0.05
    torch.testing.assert_close(post.log_lik, dist.Normal(post.samples["z"], 1.0).log_prob(x))


def row_story(x, mask=None):
    """Uses x inside the plate without the plate's indices: it can only take rows x[idx]."""
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def row_per_datum_guide(x, mask=None):
    loc = pyro.param("loc", torch.zeros(len(x)))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(loc, math.sqrt(0.5)))


def test_rows_with_per_datum_parameters_are_refused_and_the_advice_works():
    """A story that takes rows and has per-datum parameters would align them to positions; it
    is refused, and both ways the message names work."""
    x = _data()
    for guide in (row_per_datum_guide, AutoNormal(row_story)):
        story = models.from_functions(row_story, guide)
        with pytest.raises(UnsupportedModelError, match="Index x by the plate's indices") as info:
            SVI("elbo", batch_size=4).fit(story, x, steps=2, progress=False)
        assert "batch_size=None" in str(info.value)
        fit = SVI("elbo", batch_size=None).fit(story, x, steps=2, progress=False)
        assert fit.num_steps == 2
    fixed = models.from_functions(indexed, per_datum_guide)  # the story, indexed by the plate
    fit = SVI("elbo", batch_size=4).fit(fixed, x, steps=2, progress=False)
    assert fit.info["minibatches"] == "indices"


def test_rows_without_per_datum_parameters_still_minibatch():
    """An amortised guide has no per-datum parameters: rows x[idx], scaled by N / B, are fine;
    a step is the ELBO of the rows, N / B times (closed form for the exact amortised guide)."""
    x = _data()

    def amortised(x, mask=None):
        w = pyro.param("w", torch.tensor(0.5))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(w * x, math.sqrt(0.5)))

    story = models.from_functions(row_story, amortised)
    fit = SVI("elbo", batch_size=4).fit(story, x, steps=3, progress=False)
    assert fit.info["minibatches"] == "rows"
    with story.scoped():
        pyro.param("w").data.fill_(0.5)
    value = SVI("elbo")._objective.step(story, x[:4], None, 12, 1, False).item()
    assert value * 12 == pytest.approx(3 * float(exact(x[:4]).sum()), abs=1e-10)


def test_the_same_seed_gives_the_same_numbers_in_indices_mode():
    x = _data()
    runs = [
        SVI("elbo", num_particles=2, lr=0.05, batch_size=4)
        .fit(
            models.from_functions(indexed, AutoNormal(indexed)), x, steps=6, seed=s, progress=False
        )
        .history
        for s in (3, 3, 4)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


class _Interrupting(torch.optim.Adam):
    """Adam that, when armed, stops the run in the middle of its 8th update, as a kill would."""

    armed = False

    def step(self, closure=None):
        self.count = getattr(self, "count", 0) + 1
        if self.armed and self.count == 8:
            raise KeyboardInterrupt
        return super().step(closure)


def test_resume_in_indices_mode_equals_the_uninterrupted_run(tmp_path):
    """A declared subsample (13 data, 5 a step: epochs of 2 steps, permutations redrawn) with
    a local AutoNormal: resumed from the checkpoint of step 5, parameters equal bit for bit."""
    x = _data(13)
    ckpt = tmp_path / "run.pt"

    def run(**kw):
        story = models.from_functions(subsampled, AutoNormal(subsampled))
        engine = SVI("elbo", num_particles=2, lr=0.05, batch_size=5, optimizer=_Interrupting)
        engine.fit(story, x, steps=12, seed=1, progress=False, **kw)
        return story.state_dict()

    whole = run()
    _Interrupting.armed = True
    try:
        with pytest.raises(KeyboardInterrupt):
            run(checkpoint=ckpt, checkpoint_every=5)
    finally:
        _Interrupting.armed = False
    resumed = run(resume=ckpt)
    assert whole.keys() == resumed.keys() and len(whole) > 0
    for name, value in whole.items():
        assert torch.equal(value, resumed[name]), name


def test_plan_does_not_run_the_guide_on_all_data_for_a_story_without_indices():
    """A story that uses x inside the plate without its indices (Pyro's examples/vae/vae.py)
    is told apart by its model's plate shape check, before its guide would run an encoder
    over all N data in the trial of the plate's indices; it then takes rows x[idx]."""
    from ppl_lvm.inference._minibatch import plan

    calls = []

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x, mask=None):
        calls.append(x.shape[0])
        loc = pyro.param("w", torch.tensor(0.5)) * x
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 1.0))

    x = _data(40)
    story = models.from_functions(model, guide)
    story.declared_subsample(x)  # the one trace of all of x that reads the plate's size
    calls.clear()
    chosen = plan(story, x, None, 8)
    assert chosen.mode == "rows" and chosen.batch_size == 8
    assert calls and 40 not in calls, calls
