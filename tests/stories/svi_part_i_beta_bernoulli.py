"""Beta-Bernoulli coin with a Beta guide: the SVI Part I tutorial.

Source: pyro-ppl/pyro, ``tutorial/source/svi_part_i.ipynb`` (the model, the guide with
alpha_q = beta_q = 15 before training, and the data: 6 heads then 4 tails).

    def model(data):
        alpha0 = torch.tensor(10.0)
        beta0 = torch.tensor(10.0)
        f = pyro.sample("latent_fairness", dist.Beta(alpha0, beta0))
        for i in range(len(data)):
            pyro.sample("obs_{}".format(i), dist.Bernoulli(f), obs=data[i])

Exact: log p(x) = log B(10 + 6, 10 + 4) - log B(10, 10).

What the contract made us change:
- the Python loop over the data (sites ``obs_0`` ... ``obs_9``) becomes one vectorised
  ``pyro.plate("data", len(data))`` with a single site ``obs`` (the tutorial's later sections
  write it so);
- ``data`` is a 1-D tensor of shape (N,) rather than a list of scalar tensors;
- model and guide take ``mask=None``.
"""

import pyro
import pyro.distributions as dist
import torch
import torch.distributions.constraints as constraints

from . import _exact


def model(data, mask=None):
    # define the hyperparameters that control the Beta prior
    alpha0 = torch.tensor(10.0)
    beta0 = torch.tensor(10.0)
    # sample f from the Beta prior
    f = pyro.sample("latent_fairness", dist.Beta(alpha0, beta0))
    # observe the data with the Bernoulli likelihood
    with pyro.plate("data", len(data)):
        pyro.sample("obs", dist.Bernoulli(f), obs=data)


def guide(data, mask=None):
    # both parameters have initial value 15.0, as in the tutorial before training
    alpha_q = pyro.param("alpha_q", torch.tensor(15.0), constraint=constraints.positive)
    beta_q = pyro.param("beta_q", torch.tensor(15.0), constraint=constraints.positive)
    pyro.sample("latent_fairness", dist.Beta(alpha_q, beta_q))


def data():
    return torch.tensor([1.0] * 6 + [0.0] * 4)


def exact_log_evidence(x):
    return _exact.beta_bernoulli(x, 10.0, 10.0)


ENGINES = {
    "enumeration": "refuse",  # a continuous (global) latent
    "is-prior": "estimate",
    "is-guide": "estimate",
    "svi-elbo": "bound",
    "svi-iwae": "bound",
    "ais": "estimate",  # HMC on the logit of the fairness
}
