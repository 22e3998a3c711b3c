"""The coin of the MLE/MAP tutorial as a maximum-likelihood story: no latent at all.

Source: pyro-ppl/pyro, ``tutorial/source/mle_map.ipynb``: ``model_mle`` (the fairness is a
``pyro.param``, 0.5 before training) and the empty ``guide_mle``; data: 6 ones then 4 zeros.

    def model_mle(data):
        f = pyro.param("latent_fairness", torch.tensor(0.5),
                       constraint=constraints.unit_interval)
        with pyro.plate("data", data.size(0)):
            pyro.sample("obs", dist.Bernoulli(f), obs=data)

    def guide_mle(data):
        pass

Exact: nothing to integrate, log p(x) = 10 log 0.5 (the tutorial checks the loss against
``-dist.Bernoulli(mle_estimate).log_prob(data).sum()``). Every engine must give it, an
importance estimate with standard error 0, a bound equal to it.

What the contract made us change:
- model and guide take ``mask=None``; nothing else.
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from . import _exact


def model(data, mask=None):
    # note that we need to include the interval constraint;
    # in original_model() this constraint appears implicitly in
    # the support of the Beta distribution.
    f = pyro.param("latent_fairness", torch.tensor(0.5), constraint=constraints.unit_interval)
    with pyro.plate("data", data.size(0)):
        pyro.sample("obs", dist.Bernoulli(f), obs=data)


def guide(data, mask=None):
    pass


def data():
    data = torch.zeros(10)
    data[0:6] = 1.0
    return data


def exact_log_evidence(x):
    return float(dist.Bernoulli(torch.tensor(0.5, dtype=_exact.F64)).log_prob(_exact.t64(x)).sum())


ENGINES = {
    "enumeration": "exact",
    "is-prior": "estimate",
    "is-guide": "estimate",
    "svi-elbo": "bound",
    "svi-iwae": "bound",
    "ais": "refuse",  # no latent site: Enumeration gives log p(x)
}
