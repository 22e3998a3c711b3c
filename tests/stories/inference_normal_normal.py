"""Normal-Normal with a global 2-D mean and a guide near the posterior: ``NormalNormalTests``.

Source: pyro-ppl/pyro, ``tests/infer/test_inference.py``, ``NormalNormalTests.setUp`` and
``do_elbo_test`` (reparameterized guide). Known prior and noise precisions; the guide starts
at the analytic posterior mean + 0.134 and log-scale - 0.14, as in the test.

    def model():
        loc_latent = pyro.sample(
            "loc_latent", dist.Normal(self.loc0, torch.pow(self.lam0, -0.5)).to_event(1))
        with pyro.plate("data", self.batch_size):
            pyro.sample("obs", dist.Normal(loc_latent, torch.pow(self.lam, -0.5)).to_event(1),
                        obs=self.data)
        return loc_latent

Exact: for each coordinate d the four data are MVN(loc0_d 1, I / lam_d + 1 1ᵀ / lam0_d);
log p(x) is the sum over the two coordinates (a total: the global couples the data).

What the contract made us change:
- ``model()`` and ``guide()`` read ``self.data``; here they take ``(data, mask=None)`` and the
  plate is sized ``len(data)`` instead of ``self.batch_size`` (both 4);
- ``self.*`` constants are module constants; the analytic posterior the guide starts from is
  computed from the data as in ``setUp``.
"""

import pyro
import pyro.distributions as dist
import torch

from . import _exact

lam0 = torch.tensor([0.1, 0.1])  # precision of prior
loc0 = torch.tensor([0.0, 0.5])  # prior mean
lam = torch.tensor([6.0, 4.0])  # known precision of observation noise
_DATA = [[-0.1, 0.3], [0.00, 0.4], [0.20, 0.5], [0.10, 0.7]]


def _analytic(data):
    n_data = torch.tensor([float(len(data))])
    analytic_lam_n = lam0 + n_data.expand_as(lam) * lam
    analytic_log_sig_n = -0.5 * torch.log(analytic_lam_n)
    analytic_loc_n = data.sum(0) * (lam / analytic_lam_n) + loc0 * (lam0 / analytic_lam_n)
    return analytic_loc_n, analytic_log_sig_n


def model(data, mask=None):
    loc_latent = pyro.sample("loc_latent", dist.Normal(loc0, torch.pow(lam0, -0.5)).to_event(1))
    with pyro.plate("data", len(data)):
        pyro.sample("obs", dist.Normal(loc_latent, torch.pow(lam, -0.5)).to_event(1), obs=data)
    return loc_latent


def guide(data, mask=None):
    analytic_loc_n, analytic_log_sig_n = _analytic(data)
    loc_q = pyro.param("loc_q", analytic_loc_n.detach() + 0.134)
    log_sig_q = pyro.param("log_sig_q", analytic_log_sig_n.data.detach() - 0.14)
    sig_q = torch.exp(log_sig_q)
    pyro.sample("loc_latent", dist.Normal(loc_q, sig_q).to_event(1))


def data():
    return torch.tensor(_DATA)


def exact_log_evidence(x):
    x = _exact.t64(x)
    n = len(x)
    total = 0.0
    for d in range(x.shape[1]):
        cov = torch.eye(n, dtype=_exact.F64) / float(lam[d]) + torch.ones(
            n, n, dtype=_exact.F64
        ) / float(lam0[d])
        total += _exact.mvn_logpdf(x[:, d], torch.full((n,), float(loc0[d])), cov)
    return total


ENGINES = {
    "enumeration": "refuse",
    "is-prior": "estimate",  # of the total, the global mean included
    "is-guide": "estimate",
    "svi-elbo": "bound",
    "svi-iwae": "bound",
    "ais": "estimate",
}
