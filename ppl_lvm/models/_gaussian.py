"""Gaussian densities over each datum's observed coordinates, shared by the Gaussian models."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.distributions import MultivariateNormal

from ..core.stats import LOG_2PI

__all__ = [
    "conditionals_by_pattern",
    "gaussian_completions",
    "masked_gaussian_conditional",
    "masked_mvn_log_prob",
]


def masked_mvn_log_prob(
    x: torch.Tensor, mask: torch.Tensor | None, loc: torch.Tensor, cov: torch.Tensor
) -> torch.Tensor:
    """log N(x_obs; loc_obs, cov_obs) over the observed coordinates of each datum.

    The marginal of a Gaussian on a subset of coordinates is the Gaussian of the corresponding
    sub-vector and sub-matrix. Slicing a different block per datum would need a loop, so each
    missing coordinate is replaced instead by an independent unit-variance coordinate that is
    observed exactly at its mean: the observed block's density is unchanged, the stand-in adds
    exactly -½ log 2π per missing entry, and that constant is removed again. Every datum then
    has a full D×D covariance and one batched Cholesky factorisation scores them all.

    Parameters
    ----------
    x : torch.Tensor of shape (..., D)
        Values; entries where ``mask`` is False may hold anything finite (engines zero-fill).
    mask : torch.Tensor of shape (..., D), bool, or None
        True where an entry is observed; None means every entry is.
    loc : torch.Tensor of shape (..., D)
    cov : torch.Tensor of shape (..., D, D)
        Symmetric positive definite.

    Returns
    -------
    torch.Tensor of shape (...)
        The broadcast of the batch shapes of ``x``, ``mask``, ``loc`` and ``cov``. A datum with
        no observed entry scores 0 (log 1).

    Examples
    --------
    >>> x = torch.tensor([[1.0, 5.0]])
    >>> mask = torch.tensor([[True, False]])
    >>> lp = masked_mvn_log_prob(x, mask, torch.zeros(2), torch.eye(2))
    >>> torch.allclose(lp, torch.distributions.Normal(0.0, 1.0).log_prob(torch.tensor([1.0])))
    True
    """
    if mask is None:
        diff = x - loc
        return MultivariateNormal(torch.zeros_like(diff), covariance_matrix=cov).log_prob(diff)
    m = mask.to(x.dtype)
    shape = torch.broadcast_shapes(x.shape, loc.shape, m.shape, cov.shape[:-1])
    m = m.expand(shape)
    eye = torch.eye(shape[-1], dtype=x.dtype, device=x.device)
    cov = cov * (m.unsqueeze(-1) * m.unsqueeze(-2)) + eye * (1 - m).unsqueeze(-1)
    diff = (x - loc) * m
    lp = MultivariateNormal(torch.zeros_like(diff), covariance_matrix=cov).log_prob(diff)
    return lp + 0.5 * (1 - m).sum(-1) * LOG_2PI


def masked_gaussian_conditional(
    x: torch.Tensor, mask: torch.Tensor, loc: torch.Tensor, cov: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian of the missing coordinates given the observed ones, for every datum.

    For x ~ N(μ, Σ) split into observed o and missing m, x_m | x_o is Gaussian with mean
    μ_m + Σ_mo Σ_oo⁻¹ (x_o - μ_o) and covariance Σ_mm - Σ_mo Σ_oo⁻¹ Σ_om. Each datum has its own
    split; as in :func:`masked_mvn_log_prob`, the observed block is embedded in a D×D matrix
    A = M Σ M + (I - M), whose inverse holds Σ_oo⁻¹ in the observed block and zeros across, so
    one batched Cholesky factorisation serves every pattern.

    Parameters
    ----------
    x : torch.Tensor of shape (..., D)
        Values; missing entries are never read.
    mask : torch.Tensor of shape (..., D), bool
        True where observed.
    loc : torch.Tensor of shape (..., D)
    cov : torch.Tensor of shape (..., D, D)

    Returns
    -------
    mean : torch.Tensor of shape (..., D)
        E[x | x_o]: the observed values where observed, the conditional mean elsewhere.
    cond_cov : torch.Tensor of shape (..., D, D)
        Cov[x | x_o]: the conditional covariance of the missing block, zero in every row and
        column of an observed coordinate.
    """
    m = mask.to(cov.dtype)
    shape = torch.broadcast_shapes(x.shape, loc.shape, m.shape, cov.shape[:-1])
    m = m.expand(shape)
    cov = cov.expand(*shape, shape[-1])
    u = 1 - m
    eye = torch.eye(shape[-1], dtype=cov.dtype, device=cov.device)
    a = cov * (m.unsqueeze(-1) * m.unsqueeze(-2)) + eye * u.unsqueeze(-1)
    chol = torch.linalg.cholesky(a)
    diff = torch.where(mask, x - loc, torch.zeros((), dtype=cov.dtype, device=cov.device))
    y = torch.cholesky_solve(diff.expand(shape).unsqueeze(-1), chol) * m.unsqueeze(-1)
    mean = loc + (cov @ y).squeeze(-1)
    mean = torch.where(mask, x, mean)
    # Σ - Σ P Σ with P = M A⁻¹ M
    ps = torch.cholesky_solve(m.unsqueeze(-1) * cov, chol) * m.unsqueeze(-1)
    cond = (cov - cov @ ps) * (u.unsqueeze(-1) * u.unsqueeze(-2))
    return mean, 0.5 * (cond + cond.transpose(-1, -2))


def conditionals_by_pattern(
    x: torch.Tensor, mask: torch.Tensor, loc: torch.Tensor, cov: torch.Tensor
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Gaussian conditionals of the missing given the observed entries, one mask pattern at a
    time.

    Data that share a pattern share the regression of their missing block on the observed one
    (Σ_mo Σ_oo⁻¹) and its covariance, so each is factorised once per pattern, not per datum:
    for images with the same region missing, that is one factorisation in all.

    Parameters
    ----------
    x : torch.Tensor of shape (N, D)
    mask : torch.Tensor of shape (N, D), bool
        True where observed.
    loc : torch.Tensor of shape (D,) or (K, D)
        One Gaussian, or K of them (mixture components).
    cov : torch.Tensor of shape (D, D) or (K, D, D)

    Yields
    ------
    rows : torch.Tensor of shape (n,), long
        The data with this pattern.
    pattern : torch.Tensor of shape (D,), bool
    mean : torch.Tensor of shape (n, D) or (n, K, D)
        E[x | x_o]: observed values kept, conditional means elsewhere.
    cond_cov : torch.Tensor of shape (D, D) or (K, D, D)
        Cov[x | x_o]: zero in the rows and columns of observed coordinates.
    """
    patterns, inverse = torch.unique(mask, dim=0, return_inverse=True)
    batch = loc.shape[:-1]
    for u, pattern in enumerate(patterns):
        rows = (inverse == u).nonzero().squeeze(-1)
        o, m = pattern, ~pattern
        xs = x[rows]
        mean = xs.reshape(len(rows), *([1] * len(batch)), -1).expand(len(rows), *loc.shape)
        mean = mean.clone()
        cond = torch.zeros_like(cov)
        if bool(m.any()):
            s_mm = cov[..., m, :][..., :, m]
            if bool(o.any()):
                s_oo = cov[..., o, :][..., :, o]
                s_mo = cov[..., m, :][..., :, o]
                chol = torch.linalg.cholesky(s_oo)
                # gainᵀ = Σ_oo⁻¹ Σ_om
                gain_t = torch.cholesky_solve(s_mo.transpose(-1, -2), chol)
                diff = xs[:, o].reshape(len(rows), *([1] * len(batch)), -1) - loc[..., o]
                if batch:  # (n, K, o) x (K, o, m) per component, never expanded over n
                    shift = torch.einsum("nko,kom->nkm", diff, gain_t)
                else:
                    shift = diff @ gain_t
                mean[..., m] = loc[..., m] + shift
                block = s_mm - s_mo @ gain_t
            else:
                mean[..., m] = loc[..., m].expand(mean[..., m].shape)
                block = s_mm
            idx = m.nonzero().squeeze(-1)
            cond[..., idx.unsqueeze(-1), idx] = 0.5 * (block + block.transpose(-1, -2))
        yield rows, pattern, mean, cond


def gaussian_completions(
    x: torch.Tensor,
    mask: torch.Tensor,
    loc: torch.Tensor,
    cov: torch.Tensor,
    num_samples: int,
    post: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Completions from one Gaussian (loc (D,), cov (D, D)) or a mixture of K of them
    (loc (K, D), cov (K, D, D), posterior ``post`` (N, K) and drawn components ``z`` (S, N)),
    factorising each missingness pattern's conditional once.

    Returns
    -------
    samples, sample_means : torch.Tensor of shape (S, N, D)
    mean : torch.Tensor of shape (N, D)
    """
    n, d = x.shape
    samples = x.new_empty(num_samples, n, d)
    sample_means = x.new_empty(num_samples, n, d)
    mean = x.new_empty(n, d)
    for rows, pattern, cmean, ccov in conditionals_by_pattern(x, mask, loc, cov):
        # unit variance on observed coordinates makes the factor exist; their noise is dropped
        chol = torch.linalg.cholesky(ccov + torch.diag(pattern.to(ccov.dtype)))
        eps = torch.randn(num_samples, len(rows), d, dtype=x.dtype, device=x.device)
        if post is None:
            sel_mean = cmean.expand(num_samples, *cmean.shape)  # (S, n, D)
            noise = eps @ chol.T
            mean[rows] = cmean
        else:
            zr = z[:, rows]  # (S, n)
            sel_mean = cmean[torch.arange(len(rows), device=x.device), zr]  # (S, n, D)
            noise = torch.zeros_like(eps)
            for k in range(chol.shape[0]):  # per component: never an (S, n, D, D) gather
                drawn = zr == k
                noise[drawn] = eps[drawn] @ chol[k].T
            mean[rows] = torch.einsum("nk,nkd->nd", post[rows], cmean)
        sample_means[:, rows] = sel_mean
        samples[:, rows] = sel_mean + noise * (~pattern).to(x.dtype)
    return samples, sample_means, mean
