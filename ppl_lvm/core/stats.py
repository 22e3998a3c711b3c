"""Pure statistics of log weights, shared by every engine and diagnostic: the log-mean-exp
estimate with its standard error and effective sample size, the IWAE bound, and Pareto k̂
through ArviZ's PSIS."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

__all__ = ["LOG_2PI", "effective_sample_size", "iwae_bound", "log_mean_weight", "pareto_khat"]

#: log(2π), the constant of every Gaussian log-density.
LOG_2PI = math.log(2 * math.pi)


def iwae_bound(local: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k exp(local_k) per datum: ``local`` (K, N) -> (N,)."""
    return torch.logsumexp(local, 0) - math.log(local.shape[0])


def effective_sample_size(local: torch.Tensor) -> torch.Tensor:
    """(Σ w)² / Σ w² of log weights ``local`` (K, N) per datum, shape (N,), between 1 and K."""
    return torch.softmax(local, 0).pow(2).sum(0).reciprocal()


def log_mean_weight(local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The estimate, its standard error and the effective sample size, per datum.

    Parameters
    ----------
    local : torch.Tensor of shape (K, N)
        Log importance weights.

    Returns
    -------
    estimate : torch.Tensor of shape (N,)
        log (1/K) Σ_k w_k.
    stderr : torch.Tensor of shape (N,)
        Delta-method standard error of the estimate: sd(w) / (sqrt(K) mean(w)), computed from
        the normalised weights so that nothing overflows.
    ess : torch.Tensor of shape (N,)
        (Σ w)² / Σ w², between 1 and K.
    """
    k = local.shape[0]
    estimate = iwae_bound(local)
    w = torch.softmax(local, 0)  # normalised weights
    sum_sq = w.pow(2).sum(0)
    ess = sum_sq.reciprocal()
    if k > 1:
        stderr = ((k * sum_sq - 1).clamp(min=0) / (k - 1)).sqrt()
    else:
        stderr = torch.full_like(estimate, float("inf"))
    return estimate, stderr, ess


def pareto_khat(log_weights: torch.Tensor) -> torch.Tensor:
    """Pareto k̂ of importance weights per datum, from ArviZ's PSIS.

    Parameters
    ----------
    log_weights : torch.Tensor of shape (K, N)
        Unnormalised log importance weights of K particles for each of N data.

    Returns
    -------
    torch.Tensor of shape (N,)
        The fitted generalized-Pareto shape of each datum's weight tail: below about 0.7 the
        estimate is reliable (Vehtari et al. 2024); above it, the proposal misses mass. Judge
        them with :func:`khat_summary`.
    """
    import arviz as az

    lw = log_weights.detach().to(torch.float64).cpu().numpy().T  # ArviZ wants (..., samples)
    with warnings.catch_warnings():
        # ArviZ warns when a tail is too short to fit; k̂ is then inf or NaN, which we return
        warnings.filterwarnings("ignore", message=".*Pareto.*")
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        _, khat = az.psislw(lw)
    return torch.as_tensor(np.asarray(khat, dtype=np.float64)).reshape(-1)
