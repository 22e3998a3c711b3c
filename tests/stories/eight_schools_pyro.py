"""Eight schools as Pyro's ``examples/eight_schools/svi.py`` writes it.

Source: pyro-ppl/pyro, ``examples/eight_schools/svi.py`` (``model`` and ``guide``) and
``examples/eight_schools/data.py`` (y and sigma); the data are ``torch.stack([y, sigma],
dim=1)``, an (8, 2) tensor.

    def model(data):
        y = data[:, 0]
        sigma = data[:, 1]
        with pyro.plate("data", J):
            eta = pyro.sample("eta", dist.Normal(torch.zeros(J), torch.ones(J)))
            mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
            tau = pyro.sample("tau", dist.HalfCauchy(scale=25 * torch.ones(1)))
            theta = mu + tau * eta
            pyro.sample("obs", dist.Normal(theta, sigma), obs=y)

As written, ``mu`` and ``tau`` sit inside the plate, so the plate broadcasts them to one value
per school: every latent is local. The guide is the example's, with its narrow random start
(scales 0.1 · U(0, 1)), drawn under the engines' seed.

Exact: per school, mu + tau · eta ~ N(0, 100 + tau²) given tau, so log p(y_j) = log ∫
N(y_j; 0, sigma_j² + 100 + tau²) HalfCauchy(tau; 25) dtau, a 1-D integral done by
Gauss-Legendre quadrature in theta = arctan(tau / 25) (the Cauchy becomes uniform; 400 nodes
agree with 800 to 1e-12).

What the contract made us change:
- ``model(data)`` and ``guide(data)`` take ``mask=None``; ``J`` stays the module constant 8 =
  len(data).
"""

import math

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints, transforms

from . import _exact

J = 8
y = torch.tensor([28, 8, -3, 7, -1, 1, 18, 12]).type(torch.Tensor)
sigma = torch.tensor([15, 10, 16, 11, 9, 11, 10, 18]).type(torch.Tensor)


def model(data, mask=None):
    y = data[:, 0]
    sigma = data[:, 1]

    with pyro.plate("data", J):
        eta = pyro.sample("eta", dist.Normal(torch.zeros(J), torch.ones(J)))
        mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
        tau = pyro.sample("tau", dist.HalfCauchy(scale=25 * torch.ones(1)))

        theta = mu + tau * eta

        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def guide(data, mask=None):
    loc_eta = torch.randn(J)
    # note that we initialize our scales to be pretty narrow
    scale_eta = 0.1 * torch.rand(J)
    loc_mu = torch.randn(1)
    scale_mu = 0.1 * torch.rand(1)
    loc_logtau = torch.randn(1)
    scale_logtau = 0.1 * torch.rand(1)

    # register learnable params in the param store
    m_eta_param = pyro.param("loc_eta", loc_eta)
    s_eta_param = pyro.param("scale_eta", scale_eta, constraint=constraints.positive)
    m_mu_param = pyro.param("loc_mu", loc_mu)
    s_mu_param = pyro.param("scale_mu", scale_mu, constraint=constraints.positive)
    m_logtau_param = pyro.param("loc_logtau", loc_logtau)
    s_logtau_param = pyro.param("scale_logtau", scale_logtau, constraint=constraints.positive)

    # guide distributions
    dist_eta = dist.Normal(m_eta_param, s_eta_param)
    dist_mu = dist.Normal(m_mu_param, s_mu_param)
    dist_tau = dist.TransformedDistribution(
        dist.Normal(m_logtau_param, s_logtau_param),
        transforms=transforms.ExpTransform(),
    )

    with pyro.plate("data", J):
        pyro.sample("eta", dist_eta)
        pyro.sample("mu", dist_mu)
        pyro.sample("tau", dist_tau)


def data():
    return torch.stack([y, sigma], dim=1)


def exact_log_evidence(x, nodes=200):
    x = _exact.t64(x)
    theta, log_w = _exact.gauss_legendre(0.0, math.pi / 2, nodes)
    tau = 25 * torch.tan(theta)  # (Q,)
    var = x[:, 1:2] ** 2 + 100 + tau**2  # (N, Q)
    log_lik = -0.5 * (torch.log(2 * math.pi * var) + x[:, :1] ** 2 / var)
    # HalfCauchy(25) in theta is uniform on (0, pi/2): density 2 / pi
    return float(torch.logsumexp(log_lik + log_w + math.log(2 / math.pi), -1).sum())


ENGINES = {
    "enumeration": "refuse",
    "is-prior": "estimate",
    "is-guide": "bound",  # the example's narrow random start: a valid but poor proposal
    "svi-elbo": "bound",
    "svi-iwae": "bound",
    "ais": "estimate",
}
