"""Eight schools as NumPyro's README writes it: a plate named "J", global mu and tau.

Source: pyro-ppl/numpyro, ``README.md`` ("A Simple Example - 8 Schools"):

    def eight_schools(J, sigma, y=None):
        mu = numpyro.sample('mu', dist.Normal(0, 5))
        tau = numpyro.sample('tau', dist.HalfCauchy(5))
        with numpyro.plate('J', J):
            theta = numpyro.sample('theta', dist.Normal(mu, tau))
            numpyro.sample('obs', dist.Normal(theta, sigma), obs=y)

The README runs NUTS and has no guide; a Pyro user would write ``AutoNormal(model)``, used here
untrained.

Exact: given tau, theta integrates out and mu is Gaussian, so y ~ MVN(0, diag(sigma² + tau²) +
25 · 1 1ᵀ); tau is integrated by Gauss-Legendre quadrature in arctan(tau / 5), where the
HalfCauchy is uniform (200 nodes agree with 800 to 1e-12). A total: mu and tau couple the data.

What the contract made us change:
- ``numpyro`` becomes ``pyro`` (same primitives and distributions);
- ``eight_schools(J, sigma, y=None)`` becomes ``model(x, mask=None)`` with one dict
  ``x = {"y": (8,), "sigma": (8,)}`` (each school's observed effect and its known standard
  error travel together), and ``J = len(x["y"])``;
- the plate keeps its name, "J" (``DATA_PLATE``); the guide is added.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormal

from . import _exact

DATA_PLATE = "J"


def eight_schools(J, sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0, 5))
    tau = pyro.sample("tau", dist.HalfCauchy(5))
    with pyro.plate("J", J):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def model(x, mask=None):
    return eight_schools(len(x["y"]), x["sigma"], y=x["y"])


guide = AutoNormal(model)


def data():
    y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    return {"y": y, "sigma": sigma}


def exact_log_evidence(x, nodes=200):
    y, sigma = _exact.t64(x["y"]), _exact.t64(x["sigma"])
    n = len(y)
    theta, log_w = _exact.gauss_legendre(0.0, math.pi / 2, nodes)
    tau = 5 * torch.tan(theta)  # (Q,)
    cov = torch.diag_embed(sigma**2 + tau[:, None] ** 2) + 25  # (Q, N, N)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=_exact.F64), cov)
    # HalfCauchy(5) in theta is uniform on (0, pi/2): density 2 / pi
    return float(torch.logsumexp(mvn.log_prob(y) + log_w, 0)) + math.log(2 / math.pi)


ENGINES = {
    "enumeration": "refuse",
    "is-prior": "estimate",  # of the total, mu and tau included
    "is-guide": "bound",  # the untrained AutoNormal (scale 0.1) is a narrow proposal
    "svi-elbo": "bound",
    "svi-iwae": "bound",
    "ais": "estimate",
}
