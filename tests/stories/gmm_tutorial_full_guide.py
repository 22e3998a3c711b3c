"""The Gaussian mixture tutorial with its ``full_guide``: MAP globals, per-datum assignments.

Source: pyro-ppl/pyro, ``tutorial/source/gmm.ipynb``: ``model`` (as in ``gmm_tutorial_map``)
and ``full_guide``, which runs ``global_guide`` (AutoDelta over weights, locs, scale) with its
parameters hidden and draws each ``assignment`` from a per-datum ``assignment_probs`` param,
enumerated in the guide by ``@config_enumerate``.

    @config_enumerate
    def full_guide(data):
        # Global variables.
        with poutine.block(hide_types=["param"]):  # Keep our learned values of global parameters.
            global_guide(data)
        # Local variables.
        with pyro.plate('data', len(data)):
            assignment_probs = pyro.param('assignment_probs', torch.ones(len(data), K) / K,
                                          constraint=constraints.simplex)
            pyro.sample('assignment', dist.Categorical(assignment_probs))

Exact: as in ``gmm_tutorial_map`` (every parameter integrated out). The globals are point
masses, so only the prior proposal can estimate log p(x); a per-datum ``assignment_probs``
must be read against its own rows.

What the contract made us change:
- ``model(data)`` and ``full_guide(data)`` take ``mask=None``;
- the module-level data tensor is named ``DATA``; ``init_loc_fn`` reads it;
- the tutorial's ``constraints.simplex`` comes from ``torch.distributions``.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.infer.autoguide import AutoDelta
from torch.distributions import constraints

from . import _exact

DATA = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])
K = 2  # Fixed number of components.


@config_enumerate
def model(data, mask=None):
    # Global variables.
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", K):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))

    with pyro.plate("data", len(data)):
        # Local variables.
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def init_loc_fn(site):
    if site["name"] == "weights":
        return torch.ones(K) / K
    if site["name"] == "scale":
        return (DATA.var() / 2).sqrt()
    if site["name"] == "locs":
        return DATA[torch.multinomial(torch.ones(len(DATA)) / len(DATA), K)]
    raise ValueError(site["name"])


global_guide = AutoDelta(
    poutine.block(model, expose=["weights", "locs", "scale"]),
    init_loc_fn=init_loc_fn,
)


@config_enumerate
def full_guide(data, mask=None):
    # Global variables.
    with poutine.block(hide_types=["param"]):  # Keep our learned values of global parameters.
        global_guide(data)

    # Local variables.
    with pyro.plate("data", len(data)):
        assignment_probs = pyro.param(
            "assignment_probs",
            torch.ones(len(data), K) / K,
            constraint=constraints.simplex,
        )
        pyro.sample("assignment", dist.Categorical(assignment_probs))


guide = full_guide


def data():
    return DATA


def exact_log_evidence(x):
    return _exact.bayesian_gmm_1d(x, K, dirichlet=0.5, loc_scale=10.0, log_scale_sd=2.0)


ENGINES = {
    "enumeration": "refuse",
    "is-prior": "estimate",  # the assignments summed: as gmm_tutorial_map
    "is-guide": "refuse",  # point masses over the globals
    "svi-elbo": "refuse",  # a MAP objective, not a bound
    "svi-iwae": "refuse",
    "ais": "refuse",  # HMC moves continuous latents; discrete ones are refused
}
