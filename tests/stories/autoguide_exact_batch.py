"""Normal-Normal with a local latent per datum and ``AutoNormal``: ``test_exact_batch``.

Source: pyro-ppl/pyro, ``tests/infer/test_autoguide.py``, ``test_exact_batch`` (the model, the
data ``torch.randn(3)`` and the closed-form expected loss; Guide = AutoNormal).

    def model(data):
        with pyro.plate("data", len(data)):
            loc = pyro.sample("loc", dist.Normal(0, 1))
            pyro.sample("obs", dist.Normal(loc, 1), obs=data)
        return loc

Exact: each datum is N(0, 2) once ``loc`` is integrated out, so log p(x) = Σ_n log N(x_n; 0, √2)
(the test's ``g.event_logsumexp() - g.condition(data).event_logsumexp()``).

What the contract made us change:
- the signature is ``model(data, mask=None)`` (the mask is unused: the data are complete);
- the data are fixed (seeded) draws of ``torch.randn(3)``, 1-D, shape (N,);
- ``AutoNormal(model, init_scale=1.0)``: the test trains the guide for 500 steps; here it is
  evaluated untrained, so its scale starts at 1 instead of 0.1 to make it a sound proposal.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormal

from . import _exact


def model(data, mask=None):
    with pyro.plate("data", len(data)):
        loc = pyro.sample("loc", dist.Normal(0, 1))
        pyro.sample("obs", dist.Normal(loc, 1), obs=data)
    return loc


guide = AutoNormal(model, init_scale=1.0)


def data():
    return torch.randn(3, generator=torch.Generator().manual_seed(0))


def exact_log_evidence(x):
    return float(dist.Normal(0.0, 2.0**0.5).log_prob(_exact.t64(x)).sum())


ENGINES = {
    "enumeration": "refuse",  # a continuous local latent: no sum to enumerate
    "is-prior": "estimate",
    "is-guide": "estimate",
    "svi-elbo": "bound",
    "svi-iwae": "bound",
    "ais": "estimate",
}
