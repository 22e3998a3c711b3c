"""Joint enumeration of discrete latent sites with event dims (e.g. z in {0,1}^L as one site):
Pyro's ``config_enumerate`` sees only sites whose distribution enumerates its support, so such
a site is wrapped to enumerate its S^E joint values; :func:`enumerable` is the story with every
discrete latent site enumerated in parallel."""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

__all__ = ["enumerable"]


# joint enumeration of discrete sites with event dims (e.g. z in {0,1}^L as one site)
class _JointSupport(dist.TorchDistribution):
    """Wraps a discrete distribution with event dims so that its whole joint support can be
    enumerated: every one of S^E joint values of the event, S states per element."""

    has_enumerate_support = True

    def __init__(self, base: dist.Distribution):
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(value)

    def sample(self, sample_shape=()):
        return self.base.sample(sample_shape)

    def expand(self, batch_shape, _instance=None):
        return _JointSupport(self.base.expand(batch_shape))

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        element = _innermost(self.base)
        states = element.enumerate_support(expand=False).reshape(-1)  # (S,)
        n_el = math.prod(self.event_shape)
        grid = torch.cartesian_prod(*([states] * n_el)) if n_el > 1 else states.unsqueeze(-1)
        grid = grid.reshape((-1,) + (1,) * len(self.batch_shape) + tuple(self.event_shape))
        if expand:
            grid = grid.expand((-1,) + tuple(self.batch_shape) + tuple(self.event_shape))
        return grid


def _innermost(fn: Any) -> Any:
    while isinstance(fn, dist.Independent | dist.MaskedDistribution | dist.ExpandedDistribution):
        fn = fn.base_dist
    return fn


class _JointSupportMessenger(Messenger):
    """Lets ``config_enumerate`` see discrete latent sites that have event dims."""

    def _process_message(self, msg):
        fn = msg["fn"]
        if (
            msg["type"] == "sample"
            and not msg["is_observed"]
            and not site_is_subsample(msg)
            and len(fn.event_shape) > 0
            and fn.support.is_discrete
            and not getattr(fn, "has_enumerate_support", False)
            and getattr(_innermost(fn), "has_enumerate_support", False)
        ):
            msg["fn"] = _JointSupport(fn)


def enumerable(fn):
    """The story with every discrete latent site enumerated in parallel."""
    return config_enumerate(_JointSupportMessenger()(fn), default="parallel")
