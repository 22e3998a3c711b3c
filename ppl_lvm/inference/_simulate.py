"""Data simulated from a story, for bidirectional Monte Carlo: one joint draw (z*, x) from the
model, so that z* is an exact draw from p(z | x)."""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger

from ..core.errors import UnsupportedModelError
from ..models.base import LatentVariableModel, sample_sites

__all__ = ["simulate", "template"]


def template(lvm: LatentVariableModel, n: int, like: Any) -> torch.Tensor:
    """N rows shaped like a datum, for the model to simulate into."""
    if like is None:
        dim = getattr(lvm, "dim", None)
        if not isinstance(dim, int):
            raise ValueError(
                f"bracket cannot tell the shape of a datum of story '{lvm.name}'; pass "
                "like=x, data whose rows have that shape."
            )
        return torch.zeros(n, dim)
    if not isinstance(like, torch.Tensor) or like.dim() < 1:
        raise TypeError(
            f"like must be a tensor of data, shape (M, ...), got {type(like).__name__}; "
            "bracket simulates data of one tensor."
        )
    return torch.zeros((n,) + tuple(like.shape[1:]), dtype=like.dtype)


class _Simulate(Messenger):
    """Draws every observed site's value from its distribution, broadcast to the shape of the
    observation (a story may leave that broadcast to ``log_prob``, as ``Normal(z[..., None],
    1)`` against x of shape (N, D) does); records which sites those were."""

    def __init__(self) -> None:
        super().__init__()
        self.simulated: list[str] = []

    def _pyro_sample(self, msg: dict) -> None:
        if not msg["is_observed"] or type(msg["fn"]).__name__ == "_Subsample":
            return
        fn, obs = msg["fn"], msg["value"]
        while isinstance(fn, dist.Independent | dist.MaskedDistribution):
            fn = fn.base_dist  # the mask hides nothing from a simulation
        batch = obs.shape[: obs.dim() - fn.event_dim]
        msg["value"] = fn.expand(torch.broadcast_shapes(fn.batch_shape, batch)).sample()
        self.simulated.append(msg["name"])


def simulate(lvm: LatentVariableModel, template: torch.Tensor):
    """One joint draw (z*, x) from the model, its observations simulated."""
    sim = _Simulate()
    with lvm.scoped(), torch.no_grad():
        tr = poutine.trace(sim(lvm.model)).get_trace(template, None)
    observed = [n for n in sim.simulated if tr.nodes[n]["value"].numel() == template.numel()]
    latents = {n: s["value"] for n, s in sample_sites(tr) if not s["is_observed"]}
    if len(observed) != 1:
        raise UnsupportedModelError(
            f"bracket simulates x from the one observed site of story '{lvm.name}' whose "
            f"value has the data's {template.numel()} entries, and found {observed or 'none'}; "
            "bracket a story with one observed site holding the data."
        )
    x = tr.nodes[observed[0]]["value"].reshape(template.shape).to(template.dtype)
    return x, latents
