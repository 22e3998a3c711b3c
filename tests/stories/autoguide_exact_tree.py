"""A global and a local continuous latent with ``AutoNormal``: ``test_exact_tree``.

Source: pyro-ppl/pyro, ``tests/infer/test_autoguide.py``, ``test_exact_tree`` (the model, the
data ``torch.randn(2)``; the test's exact loss is ``g.event_logsumexp() -
g.condition(data).event_logsumexp()`` of the joint Gaussian).

    def model(data):
        x = pyro.sample("x", dist.Normal(0, 1))
        with pyro.plate("data", len(data)):
            y = pyro.sample("y", dist.Normal(x, 1))
            pyro.sample("obs", dist.Normal(y, 1), obs=data)
        return {"x": x, "y": y}

Exact: obs = x·1 + e_y + e_obs, so obs ~ MVN(0, 2 I + 1 1ᵀ): the total log p(x) of all the data
(the global ``x`` couples them, so this is not a sum of per-datum terms).

What the contract made us change:
- the signature is ``model(data, mask=None)``;
- the data are fixed (seeded) draws of ``torch.randn(2)``, 1-D, shape (N,);
- ``AutoNormal(model, init_scale=1.0)`` (the test trains it; here it is evaluated untrained).
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormal

from . import _exact


def model(data, mask=None):
    x = pyro.sample("x", dist.Normal(0, 1))
    with pyro.plate("data", len(data)):
        y = pyro.sample("y", dist.Normal(x, 1))
        pyro.sample("obs", dist.Normal(y, 1), obs=data)
    return {"x": x, "y": y}


guide = AutoNormal(model, init_scale=1.0)


def data():
    return torch.randn(2, generator=torch.Generator().manual_seed(1))


def exact_log_evidence(x):
    x = _exact.t64(x)
    n = len(x)
    cov = 2 * torch.eye(n, dtype=_exact.F64) + torch.ones(n, n, dtype=_exact.F64)
    return _exact.mvn_logpdf(x, torch.zeros(n, dtype=_exact.F64), cov)


ENGINES = {
    "enumeration": "refuse",
    "is-prior": "estimate",  # of the total, the global x included
    "is-guide": "estimate",
    "svi-elbo": "bound",
    "svi-iwae": "bound",
    "ais": "estimate",
}
