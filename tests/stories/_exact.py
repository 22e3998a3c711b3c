"""Exact log-evidence helpers shared by the stories: closed forms and converged quadratures,
computed in float64 whatever the default dtype, and independent of ppl_lvm and of Pyro's
inference code."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch

F64 = torch.float64


def t64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to(F64)


def log_beta(a, b) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def beta_bernoulli(x, a0: float, b0: float) -> float:
    """log p(x) for f ~ Beta(a0, b0), x_n ~ Bernoulli(f)."""
    x = t64(x)
    heads = float(x.sum())
    tails = float(len(x) - heads)
    return log_beta(a0 + heads, b0 + tails) - log_beta(a0, b0)


def mvn_logpdf(x, loc, cov) -> float:
    x, loc, cov = t64(x), t64(loc), t64(cov)
    d = torch.distributions.MultivariateNormal(loc.expand(x.shape[-1:]), covariance_matrix=cov)
    return float(d.log_prob(x).sum())


def log_trapezoid(log_f: torch.Tensor, grid: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log ∫ exp(log_f) on a uniform ``grid`` by the trapezoidal rule, along ``dim``."""
    h = float(grid[1] - grid[0])
    w = torch.ones(len(grid), dtype=F64)
    w[0] = w[-1] = 0.5
    shape = [1] * log_f.dim()
    shape[dim] = -1
    return torch.logsumexp(log_f + w.log().view(shape), dim) + math.log(h)


def gauss_legendre(a: float, b: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and log-weights of n-point Gauss-Legendre quadrature on (a, b)."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    nodes = 0.5 * (b - a) * nodes + 0.5 * (b + a)
    weights = 0.5 * (b - a) * weights
    return torch.tensor(nodes, dtype=F64), torch.tensor(np.log(weights), dtype=F64)


def bayesian_gmm_1d(
    data, num_components: int, dirichlet: float, loc_scale: float, log_scale_sd: float
) -> float:
    key = tuple(t64(data).tolist())
    return _bayesian_gmm_1d(key, num_components, dirichlet, loc_scale, log_scale_sd)


@functools.cache
def _bayesian_gmm_1d(
    data: tuple, num_components: int, dirichlet: float, loc_scale: float, log_scale_sd: float
) -> float:
    """log p(data) for a one-dimensional mixture with every parameter integrated out:

        weights ~ Dirichlet(dirichlet · 1_K), scale ~ LogNormal(0, log_scale_sd),
        locs_k ~ Normal(0, loc_scale), z_n ~ Categorical(weights), x_n ~ Normal(locs[z_n], scale).

    Given the scale and an assignment, the weights (Dirichlet-multinomial) and the locs
    (Gaussian) integrate in closed form; the sum runs over all K^N assignments and the scale's
    integral is a trapezoidal rule in u = log(scale) on [-10, 10] (201 points; 401 and 801 agree
    with it to 1e-13 on the catalogue's data: the integrand is smooth and decays at both ends).
    """
    x = t64(data)
    n, k = len(x), num_components
    z = torch.tensor(list(itertools.product(range(k), repeat=n)))  # (K^N, N)
    onehot = torch.nn.functional.one_hot(z, k).to(F64)  # (P, N, K)
    counts = onehot.sum(1)  # (P, K)
    sums = (onehot * x[:, None]).sum(1)
    sumsq = (onehot * (x**2)[:, None]).sum(1)
    a = dirichlet
    log_dm = (
        math.lgamma(k * a)
        - k * math.lgamma(a)
        + torch.lgamma(counts + a).sum(-1)
        - math.lgamma(n + k * a)
    )  # (P,)
    tau2 = loc_scale**2
    grid = torch.linspace(-10.0, 10.0, 201, dtype=F64)
    out = []
    for u in grid.split(8):
        s2 = torch.exp(2 * u)[:, None, None]  # (G, 1, 1)
        c, s, q = counts[None], sums[None], sumsq[None]
        log_m = (
            -0.5 * c * math.log(2 * math.pi)
            - 0.5 * (c - 1) * torch.log(s2)
            - 0.5 * torch.log(s2 + c * tau2)
            - q / (2 * s2)
            + tau2 * s**2 / (2 * s2 * (s2 + c * tau2))
        )  # (G, P, K); an empty component contributes exactly 0
        log_lik = torch.logsumexp(log_m.sum(-1) + log_dm, -1)  # (G,)
        log_prior_u = torch.distributions.Normal(
            torch.tensor(0.0, dtype=F64), torch.tensor(log_scale_sd, dtype=F64)
        ).log_prob(u)
        out.append(log_lik + log_prior_u)
    return float(log_trapezoid(torch.cat(out), grid))


def grid_2d(limit: float = 8.0, num: int = 321) -> tuple[torch.Tensor, float]:
    """A uniform (num², 2) grid on [-limit, limit]² and log of its cell area."""
    g = torch.linspace(-limit, limit, num, dtype=F64)
    h = float(g[1] - g[0])
    zz = torch.cartesian_prod(g, g)
    return zz, 2 * math.log(h)


def log_integral_2d_standard_normal(log_lik_fn, limit: float = 8.0, num: int = 321):
    """log ∫ N(z; 0, I_2) exp(log_lik_fn(z)) dz for every datum: ``log_lik_fn`` maps the (G, 2)
    grid to (G, N) log-likelihoods. A plain Riemann sum on a wide, fine grid: for an integrand
    this smooth that decays like a Gaussian, it equals the trapezoidal rule and converges
    exponentially fast (the stories check two grids agree to 1e-9)."""
    zz, log_area = grid_2d(limit, num)
    log_prior = -0.5 * (zz**2).sum(-1) - math.log(2 * math.pi)  # (G,)
    log_lik = log_lik_fn(zz)  # (G, N)
    return torch.logsumexp(log_lik + log_prior[:, None], 0) + log_area  # (N,)
