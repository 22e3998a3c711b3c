"""The ELBO of a fully reparameterised story without Pyro's trace objects: SVI's later steps.

Pyro's ``Trace_ELBO`` records a ``Trace`` of the guide and of the replayed model (a copy of
every message), prunes the subsample sites, computes every site's score parts and, with
validation on, checks every site's shape and the two traces against each other, on every step.
When each latent site of the guide is reparameterised (``rsample``) none of that changes the
number or its gradient: the surrogate is then the ELBO itself,

    sum over model sites of scale * mask * log p  -  sum over guide sites of scale * mask * log q,

which :func:`lean_elbo` accumulates site by site as the story runs. SVI uses it only after a
first step through Pyro's own ``Trace_ELBO`` has checked the story, and falls back to Pyro for
good when a site needs more (a score-function term, enumeration, a model latent the guide does
not draw). The same draws, in the same order, as ``Trace_ELBO``: the same seed gives the same
numbers on either path, up to the order of a float sum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

__all__ = ["NotLean", "lean_elbo"]

# wrappers whose score parts are their base distribution's (masked, expanded, to_event)
_WRAPPERS = (dist.MaskedDistribution, dist.ExpandedDistribution, dist.Independent)
_DEFAULT_SCORE_PARTS = dist.Distribution.score_parts


class NotLean(Exception):
    """The story needs Pyro's full ``Trace_ELBO`` (raised before any number is returned)."""


def _reparameterised(fn: Any) -> bool:
    """Whether Pyro's score parts of ``fn`` are (log q, 0, log q): an ``rsample`` and the
    default split (not a partly reparameterised ``Rejector``)."""
    if not getattr(fn, "has_rsample", False):
        return False
    while isinstance(fn, _WRAPPERS):
        fn = fn.base_dist
    return getattr(type(fn), "score_parts", None) is _DEFAULT_SCORE_PARTS


class _Accumulate(Messenger):
    """Sums ``scale * mask * log_prob`` over the sample sites of one run.

    On the guide's run (``draws`` None) it records each traced latent value; on the model's run
    it replays those values at the sites of the same name, as ``poutine.replay`` does.
    """

    def __init__(self, draws: dict[str, dict] | None = None) -> None:
        super().__init__()
        self.replaying = draws is not None
        self.draws: dict[str, dict] = {} if draws is None else draws
        self.total: torch.Tensor | float = 0.0

    def _pyro_sample(self, msg: dict) -> None:
        if msg["infer"].get("enumerate"):
            raise NotLean(f"site '{msg['name']}' is enumerated")
        if not self.replaying or msg["is_observed"] or site_is_subsample(msg):
            return
        drawn = self.draws.get(msg["name"])
        if drawn is None:
            raise NotLean(f"model latent '{msg['name']}' has no guide site")
        msg["value"], msg["infer"], msg["done"] = drawn["value"], drawn["infer"], True

    def _pyro_post_sample(self, msg: dict) -> None:
        if site_is_subsample(msg) or msg["infer"].get("_do_not_trace"):
            return  # neither is part of Pyro's traces
        if not self.replaying:
            if not _reparameterised(msg["fn"]):
                raise NotLean(f"guide site '{msg['name']}' needs a score-function term")
            if not msg["is_observed"]:
                self.draws[msg["name"]] = {"value": msg["value"], "infer": msg["infer"]}
        log_p = msg["fn"].log_prob(msg["value"], *msg["args"], **msg["kwargs"])
        self.total = self.total + scale_and_mask(log_p, msg["scale"], msg["mask"]).sum()


def lean_elbo(model: Callable, guide: Callable, *args: Any) -> torch.Tensor:
    """One particle's ELBO of a fully reparameterised story, differentiable (a scalar).

    Parameters
    ----------
    model, guide : callable
        The story's model and guide, with any handlers (minibatch scaling, subsample indices)
        already applied.
    *args
        What both are called with (the data and its mask).

    Returns
    -------
    torch.Tensor of shape ()
        log p(x, z) - log q(z) at one draw z ~ q, scaled and masked as Pyro scales sites; its
        gradient is ``Trace_ELBO``'s.

    Raises
    ------
    NotLean
        When a site needs Pyro's full treatment; nothing is returned and the caller runs
        ``Trace_ELBO`` instead.
    """
    with _Accumulate() as on_guide:
        guide(*args)
    with _Accumulate(on_guide.draws) as on_model:
        model(*args)
    return torch.as_tensor(on_model.total) - torch.as_tensor(on_guide.total)
