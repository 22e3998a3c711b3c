"""The engine and model registries seen from outside: a user's engine, defined here and
registered with one call, runs through ``compare`` and the ``ppl-lvm`` command without any
change to the package; ``--help`` and ``--engine`` read the registry."""

from __future__ import annotations

import re

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_lvm
from ppl_lvm import inference
from ppl_lvm.cli import main
from ppl_lvm.cli.stories import BUILTIN_MODELS, register_model, unregister_model
from ppl_lvm.inference import Engine, Evidence, UnsupportedModelError

# A fixed story with a closed-form evidence: z ~ Categorical(PI), x | z ~ N(MU_z, I_2).
PI = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
MU = torch.tensor([[-2.0, 0.0], [0.0, 2.0], [2.0, -1.0]], dtype=torch.float64)
TOY_LABEL = "toy, closed form"


def toy_story(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Categorical(PI.to(x.dtype)))
        pyro.sample("x", dist.Normal(MU.to(x.dtype)[z], 1.0).to_event(1), obs=x)


def closed_form(x: torch.Tensor) -> torch.Tensor:
    """log p(x_n) = logsumexp_k [log π_k + log N(x_n; μ_k, I)], shape (N,)."""
    x = x.double()
    log_lik = dist.Normal(MU, 1.0).log_prob(x[:, None, :]).sum(-1)
    return torch.logsumexp(PI.log() + log_lik, -1)


class ToyExact(Engine):
    """Exact log p(x) of the toy story, in closed form; it fits and samples nothing."""

    name = "ToyExact"
    evidence_kind = "exact"
    options = ()

    @property
    def label(self) -> str:
        return TOY_LABEL

    def fit(self, model, x, mask=None, *, seed=0, progress=False, **options):
        raise UnsupportedModelError("ToyExact has nothing to learn.")

    def log_evidence(self, model, x, mask=None, *, seed=0):
        lvm, x, mask, _ = self.prepare(model, x, mask)
        if lvm.name != "toy_story" or mask is not None:
            raise UnsupportedModelError("ToyExact knows only toy_story, fully observed.")
        return Evidence(per_datum=closed_form(x).to(x.dtype), kind="exact", engine=self.name)

    def posterior(self, model, x, mask=None, *, num_samples=1000, seed=0):
        raise UnsupportedModelError("ToyExact draws no posterior.")


@pytest.fixture
def toy():
    """The toy engine as "toy" and its story as --model toy-story, removed afterwards."""
    inference.register("toy", ToyExact, label=TOY_LABEL)
    register_model("toy-story", lambda ds, args: ppl_lvm.from_functions(toy_story), "the toy")
    try:
        yield
    finally:
        inference.unregister("toy")
        unregister_model("toy-story")


@pytest.fixture
def toy_data(tmp_path):
    x = torch.distributions.Normal(MU[torch.tensor([0, 1, 2] * 10)], 1.0).sample()
    path = tmp_path / "toy.npy"
    np.save(path, x.numpy())
    return x, path


def test_registered_engine_runs_through_compare(toy, toy_data):
    """compare(engines=["toy", ...]) builds the registered engine by name; its exact value
    matches the closed form and enumeration's."""
    x, _ = toy_data
    table = ppl_lvm.compare(ppl_lvm.from_functions(toy_story), x, engines=["toy", "enumeration"])
    toy_row, enum_row = table.rows
    assert toy_row["engine"] == TOY_LABEL and toy_row["kind"] == "exact"
    assert toy_row["estimate"] == pytest.approx(float(closed_form(x).sum()), rel=1e-6)
    assert enum_row["estimate"] == pytest.approx(toy_row["estimate"], rel=1e-5)


def test_registered_engine_and_model_run_through_the_command(toy, toy_data, tmp_path, capsys):
    """`ppl-lvm compare --model toy-story --engine toy,enumeration` runs both registered
    additions; the toy's row carries its closed-form total."""
    x, path = toy_data
    argv = ["compare", "--model", "toy-story", "--data", str(path), "--engine", "toy,enumeration"]
    assert main([*argv, "--out", str(tmp_path / "cmp")]) == 0
    text = capsys.readouterr().out
    assert TOY_LABEL in text and "Enumeration" in text
    assert f"{float(closed_form(x).sum()):,.4f}" in text
    assert (tmp_path / "cmp" / "compare.png").is_file()


def test_particles_reach_only_engines_that_take_them(toy, toy_data, tmp_path, capsys):
    """--particles overrides num_particles where an engine declares it (IS) and is not passed
    to one whose options lack it (the toy)."""
    _, path = toy_data
    argv = ["compare", "--model", "toy-story", "--data", str(path), "--engine", "toy,is-prior"]
    assert main([*argv, "--particles", "50", "--out", str(tmp_path / "cmp")]) == 0
    text = capsys.readouterr().out
    assert TOY_LABEL in text and "IS prior, K=50" in text


def test_compare_help_lists_every_registered_engine_and_model(toy, capsys):
    """`compare --help` lists every name of inference.available() with its label, and every
    --model name, the toy ones included."""
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "toy" in inference.available()
    for name in inference.available():
        label = inference.spec(name).label
        assert re.search(rf"^\s+{re.escape(name)}\s+{re.escape(label)}$", text, re.M), name
    for name in BUILTIN_MODELS:
        assert re.search(rf"^\s+{re.escape(name)}\s", text, re.M), name


def test_unknown_engine_is_one_line_listing_the_registry(toy, capsys):
    """An unknown --engine exits 2 with one line naming every registered engine."""
    code = main(["compare", "--model", "toy-story", "--data", "digits", "--engine", "magic"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "unknown" in err and "'magic'" in err and "\n" not in err and "Traceback" not in err
    for name in inference.available():
        assert name in err


def test_a_model_name_is_registered_once():
    """register_model refuses a taken name unless asked to replace it."""
    with pytest.raises(ValueError, match="already registered"):
        register_model("gmm", lambda ds, args: None, "again")
    with pytest.raises(ValueError, match="module:attribute|':'"):
        register_model("a:b", lambda ds, args: None, "a colon")


def test_default_engine_comes_from_declared_capabilities():
    """A mixture with a closed-form M-step is fitted by enumeration (EM); a Bayesian one, whose
    M-step is switched off, and a VAE by mean-field SVI."""
    from ppl_lvm import models
    from ppl_lvm.cli.commands import default_engine

    assert default_engine(models.GaussianMixture(dim=2, num_components=3)) == "enumeration"
    bayes = models.GaussianMixture(dim=2, num_components=3, bayesian=True)
    assert default_engine(bayes) == "meanfield"
    assert default_engine(models.VAE(4, 2, (8,))) == "meanfield"
