"""The coin of the MLE/MAP tutorial with a point-mass (MAP) guide.

Source: pyro-ppl/pyro, ``tutorial/source/mle_map.ipynb``: ``original_model`` and
``guide_map`` (a ``Delta`` at ``f_map``, 0.5 before training); data: 6 ones then 4 zeros.

    def original_model(data):
        f = pyro.sample("latent_fairness", dist.Beta(10.0, 10.0))
        with pyro.plate("data", data.size(0)):
            pyro.sample("obs", dist.Bernoulli(f), obs=data)

    def guide_map(data):
        f_map = pyro.param("f_map", torch.tensor(0.5), constraint=constraints.unit_interval)
        pyro.sample("latent_fairness", dist.Delta(f_map))

Exact: log p(x) = log B(16, 14) - log B(10, 10). With a Delta guide, SVI's objective is
log p(x, f_map), a MAP objective and not a bound (it lies above log p(x)), and a point mass is no
importance-sampling proposal; both must be refused with advice (issue 13), and the prior
proposal still estimates log p(x).

What the contract made us change:
- model and guide take ``mask=None``; nothing else.
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from . import _exact


def model(data, mask=None):
    f = pyro.sample("latent_fairness", dist.Beta(10.0, 10.0))
    with pyro.plate("data", data.size(0)):
        pyro.sample("obs", dist.Bernoulli(f), obs=data)


def guide(data, mask=None):
    f_map = pyro.param("f_map", torch.tensor(0.5), constraint=constraints.unit_interval)
    pyro.sample("latent_fairness", dist.Delta(f_map))


def data():
    data = torch.zeros(10)
    data[0:6] = 1.0
    return data


def exact_log_evidence(x):
    return _exact.beta_bernoulli(x, 10.0, 10.0)


ENGINES = {
    "enumeration": "refuse",
    "is-prior": "estimate",
    "is-guide": "refuse",  # a point mass is no proposal
    "svi-elbo": "refuse",  # a MAP objective, not a bound
    "svi-iwae": "refuse",
    "ais": "estimate",  # from the prior: the guide's point mass is not used
}
