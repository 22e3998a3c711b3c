"""Log-densities in closed form, as plain tensor code, for the models' direct paths."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .stats import LOG_2PI

__all__ = ["bernoulli_log_prob", "gaussian_kl", "normal_log_prob", "std_normal_log_prob"]


def std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Σ_l log N(z_l; 0, 1) over the last dim: (..., L) -> (...)."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)


def normal_log_prob(x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(x; loc, scale²) entry by entry, broadcasting."""
    return -0.5 * (((x - loc) / scale).pow(2) + 2 * scale.log() + LOG_2PI)


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; σ(logits)) entry by entry, broadcasting."""
    logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none")


def gaussian_kl(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, diag scale²) ‖ N(0, I)) over the last dim."""
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum(-1)
