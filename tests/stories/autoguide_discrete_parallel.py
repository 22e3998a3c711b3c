"""A Bayesian mixture whose guide is an ``AutoGuideList`` with ``AutoDiscreteParallel``.

Source: pyro-ppl/pyro, ``tests/infer/test_autoguide.py``, ``test_discrete_parallel`` (with
continuous_class = AutoNormal):

    K = 2
    data = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])

    def model(data):
        weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
        locs = pyro.sample("locs", dist.Normal(0, 10).expand_by([K]).to_event(1))
        scale = pyro.sample("scale", dist.LogNormal(0, 1))
        with pyro.plate("data", len(data)):
            weights = weights.expand(torch.Size((len(data),)) + weights.shape)
            assignment = pyro.sample("assignment", dist.Categorical(weights))
            pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)

    guide = AutoGuideList(model)
    guide.append(continuous_class(poutine.block(model, hide=["assignment"])))
    guide.append(AutoDiscreteParallel(poutine.block(model, expose=["assignment"])))

The test scores it with ``TraceEnum_ELBO(max_plate_nesting=1)``: the assignments are
enumerated in the guide.

Exact: every parameter integrated out (``_exact.bayesian_gmm_1d`` with LogNormal(0, 1)).

What the contract made us change:
- ``model(data)`` takes ``mask=None``; the module-level data tensor is ``DATA``.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoDiscreteParallel, AutoGuideList, AutoNormal

from . import _exact

K = 2
DATA = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])


def model(data, mask=None):
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
    locs = pyro.sample("locs", dist.Normal(0, 10).expand_by([K]).to_event(1))
    scale = pyro.sample("scale", dist.LogNormal(0, 1))

    with pyro.plate("data", len(data)):
        weights = weights.expand(torch.Size((len(data),)) + weights.shape)
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


guide = AutoGuideList(model)
guide.append(AutoNormal(poutine.block(model, hide=["assignment"])))
guide.append(AutoDiscreteParallel(poutine.block(model, expose=["assignment"])))


def data():
    return DATA


def exact_log_evidence(x):
    return _exact.bayesian_gmm_1d(x, K, dirichlet=0.5, loc_scale=10.0, log_scale_sd=1.0)


ENGINES = {
    "enumeration": "refuse",  # continuous global latents
    "is-prior": "bound",
    "is-guide": "bound",  # an untrained guide: a valid but poor proposal
    "svi-elbo": "bound",  # TraceEnum_ELBO with the assignments enumerated in the guide
    "svi-iwae": "bound",  # the assignments drawn from the guide: a valid IWAE bound
    "ais": "refuse",  # HMC moves continuous latents; discrete ones are refused
}
