"""Mixtures of Gaussians with diagonal, spherical or full covariances.

x_n | z_n = k ~ N(μ_k, Σ_k). The full covariance is kept as its Cholesky factor and scored
against all K components at once (:class:`_ComponentMultivariateNormal`), never with a D×D
factor per datum; missing entries are marginalised out, and EM with missing entries is exact
(Ghahramani & Jordan 1994).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam

from ..core.checks import check_choice
from ..core.stats import LOG_2PI
from ._gaussian import (
    conditionals_by_pattern,
    gaussian_completions,
    masked_gaussian_conditional,
    masked_mvn_log_prob,
)
from ._legacy import legacy_signature
from .mixture_base import MixtureModel, _keep_observed, _select

__all__ = ["GaussianMixture"]

COVARIANCES = ("diag", "full", "spherical")


class GaussianMixture(MixtureModel):
    """Mixture of Gaussians: x_n | z_n = k ~ N(μ_k, Σ_k).

    Parameters
    ----------
    dim : int
        D.
    num_components : int
        K (keyword-only).
    covariance : {"diag", "full", "spherical"}
        Σ_k = diag(σ²_k), a full matrix (kept as its Cholesky factor), or σ²_k I.
    reg_covar : float
        Added to every variance (the diagonal of Σ_k) in an M-step, as scikit-learn does, so a
        component that collapses onto one point keeps a finite density.
    bayesian : bool
        Priors (bayesian=True): π ~ Dirichlet(1), μ_kd ~ N(prior_loc, prior_scale²), σ_kd ~
        LogNormal(0, 1) (a diag/spherical scale or the scales of a full covariance), and an
        LKJ(1) prior on the correlation Cholesky factor of a full covariance.
    num_init : int
        Restarts kept by best exact likelihood.
    prior_loc, prior_scale : float
        The Normal prior on the means (bayesian=True only).

    The previous spellings ``GaussianMixture(n_components, dim, covariance)``,
    ``n_components=`` and ``n_init=`` still work for one release, with a ``FutureWarning``.

    Examples
    --------
    >>> gmm = GaussianMixture(dim=2, num_components=3, covariance="full")
    >>> gmm.means_.shape, gmm.covariances_.shape
    (torch.Size([3, 2]), torch.Size([3, 2, 2]))
    """

    @legacy_signature(("n_components", "dim", "covariance"))
    def __init__(
        self,
        dim: int,
        *,
        num_components: int,
        covariance: Literal["diag", "full", "spherical"] = "diag",
        reg_covar: float = 1e-6,
        bayesian: bool = False,
        num_init: int = 1,
        prior_loc: float = 0.0,
        prior_scale: float = 1.0,
    ):
        super().__init__(dim, num_components=num_components, bayesian=bayesian, num_init=num_init)
        self.covariance = check_choice("covariance", covariance, COVARIANCES)
        if reg_covar < 0:
            raise ValueError(f"reg_covar must be >= 0, got {reg_covar}.")
        self.reg_covar = float(reg_covar)
        self.prior_loc = float(prior_loc)
        self.prior_scale = float(prior_scale)
        k, d = self.num_components, self.dim
        self.locs = PyroParam(torch.zeros(k, d))
        if covariance == "diag":
            self.scales = PyroParam(torch.ones(k, d), constraint=constraints.positive)
        elif covariance == "spherical":
            self.scales = PyroParam(torch.ones(k), constraint=constraints.positive)
        else:
            self.scale_tril = PyroParam(
                torch.eye(d).expand(k, d, d).clone(), constraint=constraints.lower_cholesky
            )

    # -- parameters in scikit-learn's conventions -------------------------------------------
    @property
    def means_(self) -> torch.Tensor:
        """Component means, shape (K, D)."""
        return self.locs.detach().clone()

    @property
    def weights_(self) -> torch.Tensor:
        """Mixture weights, shape (K,)."""
        return self.weights.detach().clone()

    @property
    def covariances_(self) -> torch.Tensor:
        """Covariances as scikit-learn stores them: (K, D) diag, (K,) spherical, (K, D, D) full."""
        if self.covariance == "full":
            tril = self.scale_tril.detach()
            return tril @ tril.transpose(-1, -2)
        return self.scales.detach().pow(2)

    def set_parameters(
        self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor
    ) -> GaussianMixture:
        """Set π, μ and Σ (scikit-learn's ``covariances_`` convention); returns self.

        Parameters
        ----------
        weights : tensor of shape (K,)
        means : tensor of shape (K, D)
        covariances : tensor of shape (K, D), (K,) or (K, D, D) by ``covariance``
        """
        dtype = self.locs.dtype
        weights, means, covariances = (
            torch.as_tensor(v, dtype=dtype) for v in (weights, means, covariances)
        )
        k, d = self.num_components, self.dim
        expected = {"diag": (k, d), "spherical": (k,), "full": (k, d, d)}[self.covariance]
        if weights.shape != (k,) or means.shape != (k, d) or covariances.shape != expected:
            raise ValueError(
                f"expected weights {(k,)}, means {(k, d)} and covariances {expected}, got "
                f"{tuple(weights.shape)}, {tuple(means.shape)}, {tuple(covariances.shape)}."
            )
        self._set_weights(weights)
        self._assign("locs", means)
        if self.covariance == "full":
            self._assign("scale_tril", torch.linalg.cholesky(covariances))
        else:
            self._assign("scales", covariances.sqrt())
        return self

    # -- Pyro story pieces ---------------------------------------------------------------------
    def _point_globals(self) -> dict[str, torch.Tensor]:
        if self.covariance == "full":
            return {"locs": self.locs, "scale_tril": self.scale_tril}
        return {"locs": self.locs, "scales": self.scales}

    def _global_priors(self) -> dict[str, dist.Distribution]:
        k, d = self.num_components, self.dim
        ref = self.locs
        loc = ref.new_full((k, d), self.prior_loc)
        priors: dict[str, dist.Distribution] = {
            "locs": dist.Normal(loc, self.prior_scale).to_event(2)
        }
        if self.covariance == "diag":
            priors["scales"] = dist.LogNormal(ref.new_zeros(k, d), 1.0).to_event(2)
        elif self.covariance == "spherical":
            priors["scales"] = dist.LogNormal(ref.new_zeros(k), 1.0).to_event(1)
        else:
            priors["scales"] = dist.LogNormal(ref.new_zeros(k, d), 1.0).to_event(2)
            priors["corr_tril"] = dist.LKJCholesky(d, ref.new_ones(())).expand([k]).to_event(1)
        return priors

    def _likelihood(self, params, z, x, mask) -> dist.Distribution:
        if self.covariance == "full" and "scale_tril" in params and params["locs"].dim() == 2:
            # point estimates: score every datum against the K factors, never one per datum
            return _ComponentMultivariateNormal(params["locs"], params["scale_tril"], z, mask)
        locs = _select(params["locs"], z, 1)
        if self.covariance == "full":
            if "scale_tril" in params:
                tril = params["scale_tril"]
            else:  # bayesian: Σ = diag(s) C diag(s), C = L Lᵀ, so its Cholesky factor is diag(s) L
                tril = params["scales"].unsqueeze(-1) * params["corr_tril"]
            tril = _select(tril, z, 2)
            if mask is not None:
                return _MaskedMultivariateNormal(locs, tril, mask)
            return dist.MultivariateNormal(locs, scale_tril=tril)
        if self.covariance == "spherical":
            scales = _select(params["scales"], z, 0).unsqueeze(-1).expand(locs.shape)
        else:
            scales = _select(params["scales"], z, 1)
        lik = dist.Normal(locs, scales)
        if mask is not None:
            lik = lik.mask(mask)
        return lik.to_event(1)

    # -- direct tensor path --------------------------------------------------------------------
    def data_statistics(self, x: torch.Tensor, mask: torch.Tensor | None) -> Any:
        """[x², x] as (N, 2D) and its transpose (2D, N), for fully observed diag/spherical."""
        if mask is not None or self.covariance == "full":
            return None
        feats = torch.cat([x * x, x], -1)
        return feats, feats.T.contiguous()

    def component_log_prob(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, stats: Any = None
    ) -> torch.Tensor:
        """log N(x_n,obs; μ_k,obs, Σ_k,obs), shape (N, K), by matrix products."""
        locs = self.locs
        if self.covariance == "full":
            return _full_log_prob(x, mask, locs, self.scale_tril)
        var = self.scales.pow(2)
        if self.covariance == "spherical":
            var = var.unsqueeze(-1).expand_as(locs)
        prec = var.reciprocal()  # (K, D)
        # Σ_d m (x - μ)² / σ² expanded into (K, 2D) @ (2D, N) products, as scikit-learn does;
        # the (K, N) orientation runs about twice as fast as (N, 2D) @ (2D, K) here
        coef = torch.cat([prec, -2 * locs * prec], -1)  # (K, 2D)
        if mask is None:
            feats_t = stats[1] if stats is not None else torch.cat([x * x, x], -1).T
            norm = (locs.pow(2) * prec + var.log()).sum(-1) + x.shape[-1] * LOG_2PI  # (K,)
            return -0.5 * (coef @ feats_t + norm.unsqueeze(-1)).T
        m = mask.to(x.dtype)
        mx = m * x
        quad = torch.cat([mx * x, mx], -1) @ coef.T
        quad = quad + m @ (locs.pow(2) * prec + var.log()).T
        return -0.5 * (quad + m.sum(-1, keepdim=True) * LOG_2PI)

    def m_step(
        self, x: torch.Tensor, mask: torch.Tensor | None, resp: torch.Tensor, stats: Any = None
    ) -> None:
        """Closed-form M-step. Missing entries contribute their expectations under the
        current parameters, so this is exact EM with missing data for every covariance type."""
        with torch.no_grad():
            nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # (K,)
            self._set_weights(nk / nk.sum())
            if self.covariance == "full":
                self._m_step_full(x, mask, resp, nk)
                return
            old_mu = self.locs.detach()
            old_var = self.covariances_
            if self.covariance == "spherical":
                old_var = old_var.unsqueeze(-1).expand_as(old_mu)
            if mask is None:
                feats = stats[0] if stats is not None else torch.cat([x * x, x], -1)
                s2, s1 = (resp.T @ feats).split(self.dim, -1)  # (K, D) each
            else:
                m = mask.to(x.dtype)
                s0 = resp.T @ m  # (K, D) responsibility mass that saw each entry
                missing = nk.unsqueeze(-1) - s0
                s1 = resp.T @ (m * x) + missing * old_mu
                s2 = resp.T @ (m * x * x) + missing * (old_var + old_mu.pow(2))
            mu = s1 / nk.unsqueeze(-1)
            var = s2 / nk.unsqueeze(-1) - mu.pow(2)
            var = var.clamp(min=0) + self.reg_covar
            self._assign("locs", mu)
            if self.covariance == "spherical":
                self._assign("scales", var.mean(-1).sqrt())
            else:
                self._assign("scales", var.sqrt())

    def _m_step_full(self, x, mask, resp, nk) -> None:
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        if mask is None or bool(mask.all()):
            mu = (resp.T @ x) / nk.unsqueeze(-1)  # (K, D)
            diff = x.unsqueeze(0) - mu.unsqueeze(1)  # (K, N, D)
            # batched products, (K, D, N) @ (K, N, D): never a (K, N, D, D) temporary
            weighted = diff * resp.T.unsqueeze(-1)
            cov = weighted.transpose(1, 2) @ diff / nk.view(-1, 1, 1)
        else:
            # exact EM with missing entries (Ghahramani & Jordan 1994): each datum's missing
            # block enters through its conditional mean and covariance under the current Σ_k
            old_mu, old_cov = self.locs.detach(), self.covariances_
            k, d = self.num_components, self.dim
            s1 = x.new_zeros(k, d)
            s2 = x.new_zeros(k, d, d)
            if _few_patterns(mask):
                for rows, _, mean, cond in conditionals_by_pattern(x, mask, old_mu, old_cov):
                    r = resp[rows]  # (n, K)
                    s1 += torch.einsum("nk,nkd->kd", r, mean)
                    s2 += (mean * r.unsqueeze(-1)).permute(1, 2, 0) @ mean.transpose(0, 1)
                    s2 += r.sum(0).view(-1, 1, 1) * cond
            else:
                chunk = max(1, 2**22 // (k * d * d))
                for start in range(0, x.shape[0], chunk):
                    sl = slice(start, start + chunk)
                    mean, cond = masked_gaussian_conditional(
                        x[sl].unsqueeze(1), mask[sl].unsqueeze(1), old_mu, old_cov
                    )  # (n, K, D), (n, K, D, D)
                    r = resp[sl]
                    s1 += torch.einsum("nk,nkd->kd", r, mean)
                    weighted = (mean * r.unsqueeze(-1)).permute(1, 2, 0)  # (K, D, n)
                    s2 += weighted @ mean.transpose(0, 1)
                    s2 += (cond * r.unsqueeze(-1).unsqueeze(-1)).sum(0)
            mu = s1 / nk.unsqueeze(-1)
            cov = s2 / nk.view(-1, 1, 1) - mu.unsqueeze(-1) * mu.unsqueeze(-2)
        cov = 0.5 * (cov + cov.transpose(-1, -2)) + self.reg_covar * eye
        self._assign("locs", mu)
        self._assign("scale_tril", torch.linalg.cholesky(cov))

    # -- exact completion ----------------------------------------------------------------------
    def complete_exact(
        self, x: torch.Tensor, mask: torch.Tensor, num_samples: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z_s ~ p(z | x_o) by enumeration, then x_m | z_s, x_o in closed form: independent
        coordinates for diag/spherical, the Gaussian conditional for a full covariance.

        Returns
        -------
        samples, sample_means : torch.Tensor of shape (S, N, D)
        mean : torch.Tensor of shape (N, D)
            E[x_m | x_o] = Σ_k p(k | x_o) E[x_m | k, x_o], observed entries kept.
        """
        post, z = self._posterior_draws(x, mask, num_samples)  # (N, K), (S, N)
        locs = self.means_
        if self.covariance == "full":
            return gaussian_completions(x, mask, locs, self.covariances_, num_samples, post, z)
        var = self.covariances_
        if self.covariance == "spherical":
            var = var.unsqueeze(-1).expand_as(locs)
        loc_s, sd_s = locs[z], var.sqrt()[z]  # (S, N, D)
        samples = _keep_observed(loc_s + sd_s * torch.randn_like(loc_s), x, mask)
        return samples, _keep_observed(loc_s, x, mask), _keep_observed(post @ locs, x, mask)


def _few_patterns(mask: torch.Tensor) -> bool:
    """Whether grouping data by missingness pattern beats conditioning each datum: when the
    patterns repeat (a region missing in every image), one factorisation serves many data."""
    return torch.unique(mask, dim=0).shape[0] * 4 <= mask.shape[0]


def _full_log_prob(x, mask, locs, scale_tril) -> torch.Tensor:
    """log N(x_obs; μ_obs, Σ_obs) for every datum and component, shape (N, K).

    Missing coordinates are replaced by an independent unit-variance coordinate that is
    observed at its mean: the marginal of the observed block is unchanged and the stand-in
    adds exactly -½ log 2π per missing entry, which is removed again.
    """
    diff = x.unsqueeze(-2) - locs  # (N, K, D)
    if mask is None or bool(mask.all()):
        # batched triangular solve: ‖L_k⁻¹ (x_n - μ_k)‖²
        sol = torch.linalg.solve_triangular(
            scale_tril, diff.permute(1, 2, 0), upper=False
        )  # (K, D, N)
        quad = sol.pow(2).sum(-2).T  # (N, K)
        log_det = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
        return -0.5 * (quad + x.shape[-1] * LOG_2PI) - log_det
    cov = scale_tril @ scale_tril.transpose(-1, -2)  # (K, D, D)
    if _few_patterns(mask):
        # one factorisation of each pattern's observed block serves all data that share it
        out = x.new_zeros(x.shape[0], locs.shape[0])
        patterns, inverse = torch.unique(mask, dim=0, return_inverse=True)
        for u, o in enumerate(patterns):
            if not bool(o.any()):
                continue  # nothing observed: log 1
            rows = (inverse == u).nonzero().squeeze(-1)
            tril = torch.linalg.cholesky(cov[:, o][:, :, o])  # (K, |o|, |o|)
            diff = (x[rows][:, o].unsqueeze(0) - locs[:, o].unsqueeze(1)).transpose(1, 2)
            quad = torch.linalg.solve_triangular(tril, diff, upper=False).pow(2).sum(-2).T
            log_det = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
            out[rows] = -0.5 * (quad + int(o.sum()) * LOG_2PI) - log_det
        return out
    # every datum its own pattern: a D×D embedding per datum and component, in chunks
    chunk = max(1, 2**24 // (locs.shape[0] * x.shape[-1] ** 2))
    return torch.cat(
        [
            masked_mvn_log_prob(xc.unsqueeze(-2), mc.unsqueeze(-2), locs, cov)
            for xc, mc in zip(x.split(chunk), mask.split(chunk), strict=True)
        ]
    )


class _ComponentMultivariateNormal(dist.TorchDistribution):
    """N(μ_z, Σ_z) for labels z, holding the K components rather than a D×D factor per datum.

    Selecting each datum's Cholesky factor would build an (N, D, D) tensor: 9.8 GB for 4,000
    MNIST digits. The log density is instead computed against all K components at once and
    the label's column picked out. Batch shape is z's (broadcast with the mask's rows); event
    shape (D,). Missing entries (``mask`` False) are marginalised out.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.real, 1)
    handles_mask = True

    def __init__(self, locs, scale_tril, z, mask=None):
        self.locs, self.scale_tril, self.z, self.obs_mask = locs, scale_tril, z, mask
        batch = z.shape if mask is None else torch.broadcast_shapes(z.shape, mask.shape[:-1])
        super().__init__(batch, locs.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        mask = (
            None if self.obs_mask is None else self.obs_mask.expand(batch_shape + self.event_shape)
        )
        return _ComponentMultivariateNormal(
            self.locs, self.scale_tril, self.z.expand(batch_shape), mask
        )

    def sample(self, sample_shape=()):
        z = self.z.expand(self.batch_shape)
        full = dist.MultivariateNormal(self.locs[z], scale_tril=self.scale_tril[z])
        return full.sample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        mask = self.obs_mask
        if mask is not None:
            # the mask repeats over any leading (enumeration) dims; one row per datum suffices
            mask = mask.reshape(-1, *mask.shape[-2:])[0] if mask.dim() > 2 else mask
        lp = _full_log_prob(value.reshape(-1, value.shape[-1]), mask, self.locs, self.scale_tril)
        lp = lp.reshape(*value.shape[:-1], lp.shape[-1])  # (..., N, K)
        shape = torch.broadcast_shapes(self.batch_shape, lp.shape[:-1])
        z = self.z.expand(shape).unsqueeze(-1)
        return lp.expand(*shape, lp.shape[-1]).gather(-1, z).squeeze(-1)


class _MaskedMultivariateNormal(dist.TorchDistribution):
    """A full-covariance Normal scored on each datum's observed coordinates only.

    Batch shape is the broadcast of ``loc``'s batch and the mask's rows; event shape (D,).
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.real, 1)
    #: scores each datum's observed coordinates only, so the mask check accepts it
    handles_mask = True

    def __init__(self, loc: torch.Tensor, scale_tril: torch.Tensor, mask: torch.Tensor):
        self.loc, self.scale_tril, self.obs_mask = loc, scale_tril, mask
        batch = torch.broadcast_shapes(loc.shape[:-1], scale_tril.shape[:-2], mask.shape[:-1])
        super().__init__(batch, loc.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        d = self.event_shape[0]
        return _MaskedMultivariateNormal(
            self.loc.expand(batch_shape + (d,)),
            self.scale_tril.expand(batch_shape + (d, d)),
            self.obs_mask.expand(batch_shape + (d,)),
        )

    def sample(self, sample_shape=()):
        full = dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril)
        return full.expand(self.batch_shape).sample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        cov = self.scale_tril @ self.scale_tril.transpose(-1, -2)
        return masked_mvn_log_prob(value, self.obs_mask, self.loc, cov)
