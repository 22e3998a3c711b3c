"""Result dataclasses and the Engine base's up-front refusals."""

from __future__ import annotations

import dataclasses

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_lvm.inference import Engine, Evidence, FitResult, Posterior, UnsupportedModelError


def continuous_story(x, mask=None):
    """A local Normal latent."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])


class SumOnly(Engine):
    """A stand-in engine that, like Enumeration, handles discrete sites only."""

    name = "SumOnly"
    evidence_kind = "exact"
    handles_continuous_local = False

    def __init__(self):
        self.work_done = False

    def fit(self, model, x, mask=None, *, seed=0):
        self.prepare(model, x, mask)
        self.work_done = True

    def log_evidence(self, model, x, mask=None):
        self.prepare(model, x, mask)
        self.work_done = True

    def posterior(self, model, x, mask=None, *, num_samples=1000):
        self.prepare(model, x, mask)
        self.work_done = True


class NeedsGuide(SumOnly):
    """A stand-in engine that needs a guide."""

    name = "NeedsGuide"
    handles_continuous_local = True
    needs_guide = True


def test_engine_refuses_continuous_site_before_work():
    """A discrete-only engine names the continuous site and the engines to use instead."""
    engine = SumOnly()
    with pytest.raises(UnsupportedModelError, match=r"'z' \(Normal\).*ImportanceSampling or SVI"):
        engine.log_evidence(continuous_story, torch.zeros(3, 1))
    assert not engine.work_done


def test_engine_refuses_missing_guide():
    """An engine that needs a guide says how to supply one."""
    with pytest.raises(UnsupportedModelError, match="needs a guide.*guide_fn"):
        NeedsGuide().fit(continuous_story, torch.zeros(3, 1))


@pytest.mark.parametrize(
    "x, mask, err, pattern",
    [
        # 1-D data (N,) are data since issue 13; a scalar has no data dimension
        (torch.tensor(3.0), None, ValueError, "got a scalar"),
        (torch.zeros(3, 2, dtype=torch.long), None, TypeError, "floating point"),
        (torch.tensor([[0.0, float("nan")]]), None, ValueError, r"NaN or inf.*row 0, column 1"),
        (torch.zeros(2, 2), torch.ones(2, 3, dtype=torch.bool), ValueError, "mask has shape"),
        (torch.zeros(2, 2), torch.ones(2, 2), TypeError, "mask must be a bool tensor"),
        (torch.zeros(0, 2), None, ValueError, "it is empty"),
    ],
)
def test_engine_validates_data(x, mask, err, pattern):
    """Bad data is refused with the problem and the fix named."""
    engine = NeedsGuide()
    with pytest.raises(err, match=pattern):
        engine.prepare((continuous_story, continuous_story), x, mask)
    assert not engine.work_done


def test_engine_is_abstract():
    """An engine must implement the three questions."""

    class Half(Engine):
        def fit(self, model, x, mask=None, *, seed=0):
            return None

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_evidence_fields_and_totals():
    """total sums per-datum values and stderr adds in quadrature."""
    ev = Evidence(
        per_datum=torch.tensor([-1.0, -2.0, -3.0]),
        kind="estimate",
        engine="X",
        stderr=torch.tensor([0.3, 0.4, 0.0]),
    )
    assert ev.total == pytest.approx(-6.0) and ev.mean == pytest.approx(-2.0)
    assert ev.total_stderr == pytest.approx(0.5)
    assert "estimate by X" in str(ev) and "± 0.5000" in str(ev)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.kind = "exact"
    with pytest.raises(ValueError, match="kind must be one of"):
        Evidence(per_datum=torch.zeros(2), kind="guess", engine="X")
    with pytest.raises(ValueError, match="stderr must have the shape"):
        Evidence(per_datum=torch.zeros(2), kind="estimate", engine="X", stderr=torch.zeros(3))


def test_a_joint_evidence_has_a_total_and_no_per_datum_split():
    """With a global latent the evidence is one number for the data set: total and mean come
    from ``joint``, its error bars are 0-dim, and exactly one of per_datum and joint is given."""
    ev = Evidence(
        per_datum=None,
        joint=torch.tensor(-6.0),
        num_data=3,
        kind="estimate",
        engine="X",
        stderr=torch.tensor(0.5),
    )
    assert not ev.factorises and len(ev) == 3
    assert ev.total == -6.0 and ev.mean == -2.0 and ev.total_stderr == 0.5
    assert "joint" in str(ev)
    with pytest.raises(ValueError, match="exactly one of per_datum"):
        Evidence(per_datum=torch.zeros(2), joint=torch.tensor(0.0), kind="exact", engine="X")
    with pytest.raises(ValueError, match="exactly one of per_datum"):
        Evidence(per_datum=None, kind="exact", engine="X")
    with pytest.raises(ValueError, match="needs num_data"):
        Evidence(per_datum=None, joint=torch.tensor(0.0), kind="exact", engine="X")
    with pytest.raises(ValueError, match="stderr must have the shape of joint"):
        Evidence(
            per_datum=None,
            joint=torch.tensor(0.0),
            num_data=2,
            kind="estimate",
            engine="X",
            stderr=torch.zeros(2),
        )


def test_fit_result_prints_final_value():
    """A FitResult reports its objective and final value."""
    fit = FitResult("SVI", "elbo", torch.tensor([-3.0, -2.0]), 1.5, 2, converged=True, seed=0)
    assert fit.final == -2.0
    assert "elbo: -2.0000 per datum after 2 steps" in str(fit)


def test_resample_per_datum_follows_weights():
    """SIR with one dominant weight per datum returns that draw for every resample."""
    z = torch.arange(12.0).reshape(4, 3)  # (S=4, N=3)
    lw = torch.full((4, 3), -1e9)
    lw[2, 0] = lw[0, 1] = lw[3, 2] = 0.0
    post = Posterior("X", {"z": z}, x=torch.zeros(3, 1), log_weights=lw, local_sites=("z",))
    out = post.resample(num_samples=50, seed=1)
    assert out.log_weights is None and out.samples["z"].shape == (50, 3)
    assert torch.all(out.samples["z"] == torch.tensor([6.0, 1.0, 11.0]))


def test_resample_matches_weights_in_distribution():
    """Resampled frequencies match the normalised weights within binomial standard errors."""
    z = torch.tensor([[0.0], [1.0], [2.0]])  # (S=3, N=1)
    w = torch.tensor([0.2, 0.5, 0.3])
    post = Posterior(
        "X", {"z": z}, x=torch.zeros(1, 1), log_weights=w.log().unsqueeze(-1), local_sites=("z",)
    )
    n = 20_000
    draws = post.resample(num_samples=n, seed=0).samples["z"][:, 0]
    freq = torch.stack([(draws == k).float().mean() for k in range(3)])
    se = (w * (1 - w) / n).sqrt()
    assert torch.all((freq - w).abs() < 4 * se)


def test_posterior_rejects_per_datum_weights_on_global_sites():
    """Per-datum weights cannot weight a global site."""
    with pytest.raises(ValueError, match="cannot weight global sites"):
        Posterior("X", {"mu": torch.zeros(4)}, x=torch.zeros(3, 1), log_weights=torch.zeros(4, 3))


def test_posterior_to_arviz_groups():
    """to_arviz gives posterior, sample_stats and observed_data with NaN where masked."""
    import arviz as az

    z = torch.randn(100, 3)
    mask = torch.tensor([[True, False], [True, True], [False, True]])
    post = Posterior(
        "X",
        {"z": z, "mu": torch.randn(100)},
        x=torch.ones(3, 2),
        mask=mask,
        log_weights=torch.zeros(100),
        local_sites=("z",),
    )
    idata = post.to_arviz()
    assert set(idata.groups()) >= {"posterior", "sample_stats", "observed_data"}
    assert idata.posterior["z"].shape == (1, 100, 3)
    assert int(idata.observed_data["x"].isnull().sum()) == 2
    summary = az.summary(idata, var_names=["mu"])
    assert summary.shape[0] == 1
