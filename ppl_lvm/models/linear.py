"""Probabilistic PCA: ``LinearGaussian``, the linear-Gaussian latent-variable model.

z ~ N(0, I_L), x | z ~ N(W z + b, σ² I_D) (Tipping & Bishop 1999). Everything about it has a
closed form: the marginal x ~ N(b, W Wᵀ + σ² I), the posterior p(z | x) = N(M⁻¹ Wᵀ (x - b),
σ² M⁻¹) with M = Wᵀ W + σ² I, and the maximum-likelihood W, b, σ² (the top principal
components, which scikit-learn's ``PCA`` computes). That makes it the model on which every
approximate engine can be checked against an exact answer.

The guide is an amortised Gaussian q(z | x) = N(V (x - b) + c, S Sᵀ) with a linear encoder and
one full lower-triangular S shared by all data. The exact posterior has a mean linear in x and
a covariance that does not depend on x, so for complete data this family contains it, and the
ELBO can reach log p(x) exactly. The Pyro story and the direct tensor path come from
:class:`~.amortized.AmortizedLVM`.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam
from torch import nn
from torch.distributions import transform_to

from ..core.checks import check_data
from ..core.densities import normal_log_prob
from ..core.stats import LOG_2PI
from ._gaussian import gaussian_completions, masked_mvn_log_prob
from .amortized import AmortizedLVM
from .capabilities import AnalyticKL, ExactCompletion, ExactEvidence, Initializable

__all__ = ["LinearGaussian"]


class LinearGaussian(AmortizedLVM, AnalyticKL, ExactEvidence, ExactCompletion, Initializable):
    """Probabilistic PCA: z ~ N(0, I_L), x | z ~ N(W z + b, σ² I_D).

    Capabilities: ParticleLogWeights, AnalyticKL, ExactEvidence, ExactCompletion, Observation,
    Initializable, Generative.

    Parameters
    ----------
    dim : int
        D, features per datum.
    latent_dim : int
        L, the number of latent factors (principal components).

    Attributes
    ----------
    W : torch.nn.Parameter of shape (D, L)
        Factor loadings.
    b : torch.nn.Parameter of shape (D,)
        The mean of x.
    sigma : PyroParam, positive scalar
        Noise standard deviation σ.
    V, c : torch.nn.Parameter of shapes (L, D) and (L,)
        The guide's linear encoder: the mean of q(z | x) is V (x - b) + c.
    guide_scale_tril : PyroParam of shape (L, L), lower Cholesky
        S, the guide's covariance factor, shared by all data.

    Notes
    -----
    Entries where the mask is False are left out of the likelihood. The guide reads the centred
    data with missing entries set to 0, i.e. imputed at their mean; with missing entries the
    true posterior covariance differs per datum, so the guide is then an approximation, while
    :meth:`exact_log_evidence` stays exact.

    Examples
    --------
    >>> ppca = LinearGaussian(dim=64, latent_dim=5)
    >>> ppca.exact_log_evidence(torch.zeros(3, 64)).shape
    torch.Size([3])
    """

    def __init__(self, dim: int, latent_dim: int):
        super().__init__(dim, latent_dim)
        # a fixed generator: constructing a model must not consume the caller's random stream
        g = torch.Generator().manual_seed(0)
        self.W = nn.Parameter(0.1 * torch.randn(dim, latent_dim, generator=g))
        self.b = nn.Parameter(torch.zeros(dim))
        self.sigma = PyroParam(torch.tensor(1.0), constraint=constraints.positive)
        self.V = nn.Parameter(torch.zeros(latent_dim, dim))
        self.c = nn.Parameter(torch.zeros(latent_dim))
        self.guide_scale_tril = PyroParam(
            torch.eye(latent_dim), constraint=constraints.lower_cholesky
        )

    # -- fitted values, in scikit-learn's conventions -------------------------------------------
    @property
    def loadings_(self) -> torch.Tensor:
        """W, shape (D, L) (a copy)."""
        return self.W.detach().clone()

    @property
    def mean_(self) -> torch.Tensor:
        """b, the mean of x, shape (D,) (a copy)."""
        return self.b.detach().clone()

    @property
    def noise_variance_(self) -> float:
        """σ², the variance of the isotropic noise."""
        return float(self.sigma.detach() ** 2)

    @property
    def covariance_(self) -> torch.Tensor:
        """The marginal covariance W Wᵀ + σ² I of x, shape (D, D)."""
        w = self.W.detach()
        eye = torch.eye(self.dim, dtype=w.dtype, device=w.device)
        return w @ w.T + self.sigma.detach() ** 2 * eye

    @property
    def components_(self) -> torch.Tensor:
        """Orthonormal principal axes, shape (L, D), by decreasing variance (up to sign).

        The left singular vectors of W: the axes that scikit-learn's ``PCA.components_`` holds
        when W is the maximum-likelihood estimate.
        """
        u, _, _ = torch.linalg.svd(self.W.detach(), full_matrices=False)
        return u.T.contiguous()

    @property
    def explained_variance_(self) -> torch.Tensor:
        """Variance of x along each of :attr:`components_`: s_l² + σ², shape (L,)."""
        s = torch.linalg.svdvals(self.W.detach())
        return s.pow(2) + self.sigma.detach() ** 2

    def _assign(self, name: str, value: torch.Tensor) -> None:
        """Write a constrained value into a PyroParam's unconstrained storage, in place."""
        constraint = self._pyro_params[name][0]
        with torch.no_grad():
            getattr(self, name + "_unconstrained").copy_(transform_to(constraint).inv(value))

    def set_parameters(
        self, W: torch.Tensor, b: torch.Tensor, sigma: float | torch.Tensor
    ) -> LinearGaussian:
        """Set the model's W (D, L), b (D,) and σ > 0; returns self.

        The guide is left as it is; call :meth:`set_guide_to_posterior` to make it exact.
        """
        ref = self.W
        W, b, sigma = (
            torch.as_tensor(v, dtype=ref.dtype, device=ref.device) for v in (W, b, sigma)
        )
        d, k = self.dim, self.latent_dim
        if W.shape != (d, k) or b.shape != (d,) or sigma.dim() != 0:
            raise ValueError(
                f"expected W {(d, k)}, b {(d,)} and a scalar sigma, got {tuple(W.shape)}, "
                f"{tuple(b.shape)} and {tuple(sigma.shape)}."
            )
        if not bool(sigma > 0):
            raise ValueError(f"sigma must be positive (a standard deviation), got {float(sigma)}.")
        with torch.no_grad():
            self.W.copy_(W)
            self.b.copy_(b)
        self._assign("sigma", sigma)
        return self

    # -- closed forms --------------------------------------------------------------------------
    @torch.no_grad()
    def exact_log_evidence(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x_n) = log N(x_n,obs; b_obs, (W Wᵀ + σ² I)_obs), shape (N,), no gradient.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
            True where observed; missing entries are marginalised out exactly.
        """
        x, mask = check_data(x, mask)
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        cov = self.W @ self.W.T + self.sigma.pow(2) * eye
        return masked_mvn_log_prob(x, mask, self.b, cov)

    @torch.no_grad()
    def complete_exact(
        self, x: torch.Tensor, mask: torch.Tensor, num_samples: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draws of the unobserved entries from p(x_m | x_o): x ~ N(b, W Wᵀ + σ² I), so x_m | x_o
        is Gaussian, factorised once per missingness pattern.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D), missing entries zero-filled
        mask : torch.Tensor of shape (N, D), bool
            True where observed.
        num_samples : int
            S.

        Returns
        -------
        samples : torch.Tensor of shape (S, N, D)
        sample_means : torch.Tensor of shape (S, N, D)
            E[x_m | x_o] behind each draw (the same for every draw: z is integrated out).
        mean : torch.Tensor of shape (N, D)
            The single imputation E[x_m | x_o].
        """
        return gaussian_completions(x, mask, self.mean_, self.covariance_, num_samples)

    def _posterior_precision_factor(self) -> torch.Tensor:
        """M = Wᵀ W + σ² I, shape (L, L)."""
        w = self.W
        eye = torch.eye(self.latent_dim, dtype=w.dtype, device=w.device)
        return w.T @ w + self.sigma.pow(2) * eye

    @torch.no_grad()
    def exact_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z | x_n) = N(M⁻¹ Wᵀ (x_n - b), σ² M⁻¹) for complete data, M = Wᵀ W + σ² I.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)

        Returns
        -------
        loc : torch.Tensor of shape (N, L)
        scale_tril : torch.Tensor of shape (L, L)
            Cholesky factor of the posterior covariance, the same for every datum.
        """
        x, _ = check_data(x)
        m = self._posterior_precision_factor()
        loc = torch.linalg.solve(m, self.W.T @ (x - self.b).T).T
        cov = self.sigma.pow(2) * torch.cholesky_inverse(torch.linalg.cholesky(m))
        return loc, torch.linalg.cholesky(cov)

    def set_guide_to_posterior(self) -> LinearGaussian:
        """Make the guide the exact posterior of the current W, b, σ (complete data); returns
        self. V = M⁻¹ Wᵀ, c = 0 and S = chol(σ² M⁻¹)."""
        with torch.no_grad():
            m = self._posterior_precision_factor()
            self.V.copy_(torch.linalg.solve(m, self.W.T))
            self.c.zero_()
            cov = self.sigma.pow(2) * torch.cholesky_inverse(torch.linalg.cholesky(m))
        self._assign("guide_scale_tril", torch.linalg.cholesky(cov))
        return self

    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None, seed: int) -> None:
        """Start from the data: b at the observed column means, σ at their pooled standard
        deviation, W small and random, and the guide at the exact posterior of that start.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D), masked entries zero-filled
        mask : torch.Tensor of shape (N, D) or None
        seed : int
            Seeds W.
        """
        m = torch.ones_like(x) if mask is None else mask.to(x.dtype)
        mean = (x * m).sum(0) / m.sum(0).clamp(min=1)
        var = ((x - mean).pow(2) * m).sum() / m.sum().clamp(min=1)
        sd = var.sqrt().clamp(min=1e-3)
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(self.dim, self.latent_dim, generator=g, dtype=x.dtype)
        # small next to the data's spread so the start is close to an isotropic Gaussian, yet
        # not zero: at W = 0 every direction has the same gradient and the factors never split
        self.set_parameters(0.1 * sd * noise.to(x.device), mean, sd)
        self.set_guide_to_posterior()

    # -- the guide's encoder --------------------------------------------------------------------
    def encode(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x_n) = N(V (x_n - b) + c, S Sᵀ), missing entries of x_n - b set to 0.

        Returns
        -------
        loc : torch.Tensor of shape (N, L)
        scale_tril : torch.Tensor of shape (L, L)
        """
        centred = x - self.b
        if mask is not None:
            centred = centred * mask.to(x.dtype)
        return centred @ self.V.T + self.c, self.guide_scale_tril

    # -- the distributions --------------------------------------------------------------------
    def guide_distribution(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dist.Distribution:
        """q(z_n | x_n) = N(V (x_n - b) + c, S Sᵀ)."""
        loc, scale_tril = self.encode(x, mask)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)

    def likelihood_distribution(self, z: torch.Tensor) -> dist.Distribution:
        """p(x_nd | z) = N((W z + b)_d, σ²) per entry."""
        return dist.Normal(z @ self.W.T + self.b, self.sigma)

    # -- closed forms of the tensor hooks --------------------------------------------------------
    def _entry_log_lik(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return normal_log_prob(x, z @ self.W.T + self.b, self.sigma)

    def _propose(self, x, mask, num_particles, z):
        loc, tril = self.encode(x, mask)
        if z is None:
            eps = torch.randn((num_particles, *loc.shape), dtype=loc.dtype, device=loc.device)
            z = loc + eps @ tril.T  # (K, N, L)
        k, n, dim_z = z.shape
        # ‖S⁻¹ (z - loc)‖² with one triangular solve for all K·N particles
        white = torch.linalg.solve_triangular(tril, (z - loc).reshape(-1, dim_z).T, upper=False)
        log_det = tril.diagonal().log().sum()
        log_q = -0.5 * (white.pow(2).sum(0).reshape(k, n) + dim_z * LOG_2PI) - log_det
        return z, log_q, None

    def analytic_kl(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """KL(N(μ_n, S Sᵀ) ‖ N(0, I)) = ½ (tr S Sᵀ + ‖μ_n‖² - L - log det S Sᵀ), shape (N,)."""
        loc, tril = self.encode(x, mask)
        trace = tril.pow(2).sum()
        log_det = 2 * tril.diagonal().log().sum()
        return 0.5 * (trace + loc.pow(2).sum(-1) - self.latent_dim - log_det)
