"""A global enumerated latent above a plate of local ones: ``test_elbo_enumerate_plate_4``.

Source: pyro-ppl/pyro, ``tests/infer/test_enum.py``, ``test_elbo_enumerate_plate_4`` with
outer_obs = inner_obs = True and scale = 1:

    #    a ---> outer_obs
    #      \
    #  +-----\\------------------+
    #  |       \\                |
    #  | b ---> inner_obs   N=2 |
    #  +------------------------+

    def auto_model():
        probs_a = pyro.param("probs_a")
        probs_b = pyro.param("probs_b")
        locs = pyro.param("locs")
        scales = pyro.param("scales")
        a = pyro.sample("a", dist.Categorical(probs_a), infer={"enumerate": "parallel"})
        if outer_obs:
            pyro.sample("outer_obs", dist.Normal(0.0, scales[a]), obs=outer_data)
        with pyro.plate("inner", 2):
            b = pyro.sample("b", dist.Categorical(probs_b), infer={"enumerate": "parallel"})
            if inner_obs:
                pyro.sample("inner_obs", dist.Normal(locs[b], scales[a]), obs=inner_data)

    def guide():
        pass

The plate is named "inner", the discrete ``a`` is global (it couples the data) and there is an
observation outside the plate; ``TraceEnum_ELBO`` sums it all exactly, and with the empty guide
its ELBO is log p(x) itself.

Exact: log Σ_a p(a) N(2; 0, scales[a]) Π_n Σ_b p(b) N(inner_n; locs[b], scales[a]) (the test's
``hand_model``), a total over the data.

What the contract made us change:
- the params are declared at first use inside the model, with the test's values and
  constraints (the test declares them before the model runs);
- ``inner_data`` is the story's data ``x`` (1-D, shape (2,)); ``outer_data`` stays a constant;
- model and guide take ``(data, mask=None)``; the plate keeps its name ("inner") and its
  literal size 2 (= len(x)).
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from . import _exact

DATA_PLATE = "inner"
outer_obs = inner_obs = True
PROBS_A, PROBS_B, LOCS, SCALES = [0.4, 0.6], [0.6, 0.4], [-1.0, 1.0], [1.0, 2.0]
OUTER_DATA = 2.0


def model(inner_data, mask=None):
    probs_a = pyro.param("probs_a", lambda: torch.tensor(PROBS_A), constraint=constraints.simplex)
    probs_b = pyro.param("probs_b", lambda: torch.tensor(PROBS_B), constraint=constraints.simplex)
    locs = pyro.param("locs", lambda: torch.tensor(LOCS))
    scales = pyro.param("scales", lambda: torch.tensor(SCALES), constraint=constraints.positive)
    outer_data = torch.tensor(OUTER_DATA)
    a = pyro.sample("a", dist.Categorical(probs_a), infer={"enumerate": "parallel"})
    if outer_obs:
        pyro.sample("outer_obs", dist.Normal(0.0, scales[a]), obs=outer_data)
    with pyro.plate("inner", 2):
        b = pyro.sample("b", dist.Categorical(probs_b), infer={"enumerate": "parallel"})
        if inner_obs:
            pyro.sample("inner_obs", dist.Normal(locs[b], scales[a]), obs=inner_data)


def guide(inner_data, mask=None):
    pass


def data():
    return torch.tensor([0.5, 1.5])


def exact_log_evidence(x):
    x = _exact.t64(x)
    pa, pb = torch.tensor(PROBS_A, dtype=x.dtype), torch.tensor(PROBS_B, dtype=x.dtype)
    locs, scales = torch.tensor(LOCS, dtype=x.dtype), torch.tensor(SCALES, dtype=x.dtype)
    terms = []
    for a in range(2):
        outer = dist.Normal(0.0, scales[a]).log_prob(torch.tensor(OUTER_DATA, dtype=x.dtype))
        inner = torch.logsumexp(
            pb.log()[:, None] + dist.Normal(locs[:, None], scales[a]).log_prob(x), 0
        ).sum()
        terms.append(pa[a].log() + outer + inner)
    return float(torch.logsumexp(torch.stack(terms), 0))


ENGINES = {
    "enumeration": "exact",  # a is global but discrete: TraceEnum_ELBO sums it exactly
    "is-prior": "estimate",
    "is-guide": "estimate",  # the empty guide proposes nothing: a and b are summed
    "svi-elbo": "bound",  # with the empty guide, TraceEnum_ELBO's ELBO is log p(x) itself
    "svi-iwae": "bound",  # a and b summed inside each weight: the IWAE bound is log p(x)
    "ais": "refuse",  # HMC moves continuous latents; discrete ones are refused
}
