"""``test_elbo_enumerate_plate_3`` of pyro-ppl/pyro ``tests/infer/test_enum.py``, written once
for the three stories ``enum_plate_3``, ``enum_plate_3_masked`` and ``enum_plate_3_scaled``
(the test's parametrisations scale ∈ {1, 10} and num_samples/num_masked ∈ {(3, 3), (3, 2)}).

    #  +-----------------------+
    #  | x ----> y ----> z     |
    #  |                     N |
    #  +-----------------------+

The author's code, with ``num_samples``, ``num_masked`` and ``scale`` bound by :func:`make`::

    @poutine.scale(scale=scale)
    def auto_model(data):
        probs_x = pyro.param("model_probs_x")
        probs_y = pyro.param("model_probs_y")
        probs_z = pyro.param("model_probs_z")
        with pyro.plate("data", len(data)):
            if num_masked == num_samples:
                x = pyro.sample("x", dist.Categorical(probs_x))
                y = pyro.sample("y", dist.Categorical(probs_y[x]),
                                infer={"enumerate": "parallel"})
                pyro.sample("z", dist.Categorical(probs_z[y]), obs=data)
            else:
                with poutine.mask(mask=torch.arange(num_samples) < num_masked):
                    ...the same three sites...

    @poutine.scale(scale=scale)
    @config_enumerate
    def auto_guide(data):
        probs_x = pyro.param("guide_probs_x")
        with pyro.plate("data", len(data)):
            ...pyro.sample("x", dist.Categorical(probs_x)), masked alike...

What the contract made us change (for all three):
- the test declares the params before the model runs (``pyro.param(name, init,
  constraint=constraints.simplex)``); a story's params live in its own store, so the first
  ``pyro.param`` call in model and guide declares them, with the test's values and constraint;
- model and guide take ``(data, mask=None)``;
- the data, drawn by the test from Categorical([0.3, 0.7]), are fixed: ``[1., 0., 1.]``, 1-D.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from torch.distributions import constraints

from . import _exact

PROBS_X = [0.4, 0.6]
PROBS_Y = [[0.75, 0.25], [0.55, 0.45]]
PROBS_Z = [[0.3, 0.7], [0.2, 0.8]]
GUIDE_PROBS_X = [0.1, 0.9]
DATA = [1.0, 0.0, 1.0]


def _params():
    probs_x = pyro.param(
        "model_probs_x", lambda: torch.tensor(PROBS_X), constraint=constraints.simplex
    )
    probs_y = pyro.param(
        "model_probs_y", lambda: torch.tensor(PROBS_Y), constraint=constraints.simplex
    )
    probs_z = pyro.param(
        "model_probs_z", lambda: torch.tensor(PROBS_Z), constraint=constraints.simplex
    )
    return probs_x, probs_y, probs_z


def make(num_samples: int, num_masked: int, scale: float):
    """The test's ``auto_model`` and ``auto_guide`` for one parametrisation."""

    @poutine.scale(scale=scale)
    def auto_model(data, mask=None):
        probs_x, probs_y, probs_z = _params()
        with pyro.plate("data", len(data)):
            if num_masked == num_samples:
                x = pyro.sample("x", dist.Categorical(probs_x))
                y = pyro.sample("y", dist.Categorical(probs_y[x]), infer={"enumerate": "parallel"})
                pyro.sample("z", dist.Categorical(probs_z[y]), obs=data)
            else:
                with poutine.mask(mask=torch.arange(num_samples) < num_masked):
                    x = pyro.sample("x", dist.Categorical(probs_x))
                    y = pyro.sample(
                        "y",
                        dist.Categorical(probs_y[x]),
                        infer={"enumerate": "parallel"},
                    )
                    pyro.sample("z", dist.Categorical(probs_z[y]), obs=data)

    @poutine.scale(scale=scale)
    @config_enumerate
    def auto_guide(data, mask=None):
        probs_x = pyro.param(
            "guide_probs_x", lambda: torch.tensor(GUIDE_PROBS_X), constraint=constraints.simplex
        )
        with pyro.plate("data", len(data)):
            if num_masked == num_samples:
                pyro.sample("x", dist.Categorical(probs_x))
            else:
                with poutine.mask(mask=torch.arange(num_samples) < num_masked):
                    pyro.sample("x", dist.Categorical(probs_x))

    return auto_model, auto_guide


def data():
    return torch.tensor(DATA)


def exact(x, num_masked: int, scale: float) -> float:
    """scale × Σ_{n < num_masked} log p(z_n), p(z) = Σ_x Σ_y p(x) p(y | x) p(z | y): what
    ``TraceEnum_ELBO`` gives for the test's ``hand_model`` (a masked datum counts 0, and
    ``poutine.scale`` multiplies the log density)."""
    px = torch.tensor(PROBS_X, dtype=_exact.F64)
    py = torch.tensor(PROBS_Y, dtype=_exact.F64)
    pz = torch.tensor(PROBS_Z, dtype=_exact.F64)
    marginal = px @ py @ pz  # (2,)
    z = _exact.t64(x).long()[:num_masked]
    return scale * float(marginal[z].log().sum())
