"""A two-component mixture with point-estimate parameters and a per-datum discrete guide.

Source: pyro-ppl/pyro, ``tests/infer/test_enum.py``, ``gmm_batch_model`` and
``gmm_batch_guide`` (data ``torch.arange(0.0, float(data_size))``, data_size = 3):

    def gmm_batch_model(data):
        p = pyro.param("p", torch.tensor([0.3], requires_grad=True))
        p = torch.cat([p, 1 - p])
        scale = pyro.param("scale", torch.tensor([1.0], requires_grad=True))
        mus = torch.tensor([-1.0, 1.0])
        with pyro.plate("data", len(data)) as batch:
            n = len(batch)
            z = pyro.sample("z", dist.OneHotCategorical(p).expand_by([n]))
            assert z.shape[-1] == 2
            loc = (z * mus).sum(-1)
            pyro.sample("x", dist.Normal(loc, scale.expand(n)), obs=data[batch])

    def gmm_batch_guide(data):
        with pyro.plate("data", len(data)) as batch:
            n = len(batch)
            probs = pyro.param("probs", torch.ones(n, 1) * 0.6)
            probs = torch.cat([probs, 1 - probs], dim=1)
            z = pyro.sample("z", dist.OneHotCategorical(probs))
            assert z.shape[-1] == 2

The mixture's parameters are point estimates (``pyro.param``), the labels local and discrete
(one-hot), the guide's ``probs`` one row per datum: a story for exact enumeration.

Exact: log p(x) = Σ_n log(0.3 N(x_n; -1, 1) + 0.7 N(x_n; 1, 1)), by brute force over z.

What the contract made us change:
- model and guide take ``mask=None``; nothing else. (``expand_by([n])``, ``scale.expand(n)``
  and the ``torch.cat`` of the params are the authors'; a particle dimension must not break
  them.)
"""

import pyro
import pyro.distributions as dist
import torch

from . import _exact


def model(data, mask=None):
    p = pyro.param("p", torch.tensor([0.3], requires_grad=True))
    p = torch.cat([p, 1 - p])
    scale = pyro.param("scale", torch.tensor([1.0], requires_grad=True))
    mus = torch.tensor([-1.0, 1.0])
    with pyro.plate("data", len(data)) as batch:
        n = len(batch)
        z = pyro.sample("z", dist.OneHotCategorical(p).expand_by([n]))
        assert z.shape[-1] == 2
        loc = (z * mus).sum(-1)
        pyro.sample("x", dist.Normal(loc, scale.expand(n)), obs=data[batch])


def guide(data, mask=None):
    with pyro.plate("data", len(data)) as batch:
        n = len(batch)
        probs = pyro.param("probs", torch.ones(n, 1) * 0.6)
        probs = torch.cat([probs, 1 - probs], dim=1)
        z = pyro.sample("z", dist.OneHotCategorical(probs))
        assert z.shape[-1] == 2


def data():
    return torch.arange(0.0, 3.0)


def exact_log_evidence(x):
    x = _exact.t64(x)
    comp = torch.stack(
        [
            dist.Normal(-1.0, 1.0).log_prob(x) + torch.log(torch.tensor(0.3, dtype=x.dtype)),
            dist.Normal(1.0, 1.0).log_prob(x) + torch.log(torch.tensor(0.7, dtype=x.dtype)),
        ]
    )
    return float(torch.logsumexp(comp, 0).sum())


ENGINES = {
    "enumeration": "exact",
    "is-prior": "estimate",
    "is-guide": "estimate",
    "svi-elbo": "bound",  # Trace_ELBO: z drawn from the guide (nothing marked to enumerate)
    "svi-iwae": "bound",
    "ais": "refuse",  # HMC moves continuous latents; discrete ones are refused
}
