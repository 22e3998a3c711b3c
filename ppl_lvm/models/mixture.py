"""Shallow latent-variable models: finite mixtures with one discrete label per datum.

z_n ~ Categorical(π), x_n | z_n = k ~ p_k(x): Gaussian (diag, full or spherical covariance),
Bernoulli (binary pixels) or Categorical (DNA letters). The posterior p(z_n | x_n) clusters the
data.

Besides the Pyro ``model``/``guide`` pair that every engine accepts, each family exposes a direct
tensor path that the exact engine uses when it is present:

- :meth:`MixtureModel.enumerate_log_joint` gives log p(x_n, z_n = k), shape (N, K), with plain
  matrix products instead of a traced Pyro pass;
- :meth:`MixtureModel.m_step` is the closed-form EM update, exact also when entries are missing
  (their expected sufficient statistics come from the current parameters);
- :meth:`MixtureModel.initialize` seeds the components k-means++-style from the data.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam
from torch.distributions import transform_to

from ._gaussian import conditionals_by_pattern, masked_gaussian_conditional, masked_mvn_log_prob
from .base import DATA_PLATE, LatentVariableModel

__all__ = ["BernoulliMixture", "CategoricalMixture", "GaussianMixture", "MixtureModel"]

_LOG_2PI = math.log(2 * math.pi)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return value


def _observed(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mask as x's dtype: 1 where observed, 0 where missing; ones when mask is None."""
    return torch.ones_like(x) if mask is None else mask.to(x.dtype)


def kmeans_plusplus(
    x: torch.Tensor, mask: torch.Tensor | None, n_clusters: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): indices of ``n_clusters`` rows of ``x``.

    Each new centre is a datum drawn with probability proportional to its squared distance
    from the nearest centre so far. Missing entries are filled with their column's observed
    mean first, so distances are defined.

    Parameters
    ----------
    x : torch.Tensor of shape (N, D)
    mask : torch.Tensor of shape (N, D) or None
    n_clusters : int
    generator : torch.Generator

    Returns
    -------
    torch.Tensor of shape (n_clusters,), int64
    """
    n = x.shape[0]
    if n < n_clusters:
        raise ValueError(f"cannot seed {n_clusters} components from only {n} data points.")
    if mask is not None:
        m = mask.to(x.dtype)
        col_mean = (x * m).sum(0) / m.sum(0).clamp(min=1)
        x = torch.where(mask, x, col_mean)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    closest = (x - x[first]).pow(2).sum(-1)  # (N,)
    for _ in range(1, n_clusters):
        total = closest.sum()
        if total <= 0:  # every point coincides with a centre: fall back to uniform picks
            probs = torch.ones_like(closest)
        else:
            probs = closest / total
        idx = int(torch.multinomial(probs, 1, generator=generator))
        chosen.append(idx)
        closest = torch.minimum(closest, (x - x[idx]).pow(2).sum(-1))
    return torch.tensor(chosen, dtype=torch.long)


def _select(param: torch.Tensor, z: torch.Tensor, event_dim: int) -> torch.Tensor:
    """Component ``z`` of ``param``: shape (*batch, K, *event) -> (*broadcast(batch, z), *event).

    Plain indexing when the parameters have no batch dims (point estimates, or globals drawn
    once); a gather when globals were drawn per particle, so each particle uses its own.
    """
    k_dim = param.dim() - event_dim - 1
    if k_dim == 0:
        return param[z]
    event = param.shape[k_dim + 1 :]
    batch = torch.broadcast_shapes(param.shape[:k_dim], z.shape)
    p = param.expand(batch + param.shape[k_dim:])
    idx = z.expand(batch).reshape(batch + (1,) * (1 + event_dim)).expand(batch + (1,) + event)
    return p.gather(len(batch), idx).squeeze(len(batch))


class MixtureModel(LatentVariableModel):
    """Base of the finite mixtures: weights π, a local label ``z`` and a component family.

    Parameters
    ----------
    n_components : int
        K, the number of components.
    dim : int
        D, the number of features per datum.
    bayesian : bool
        False (default): the global parameters are point estimates (module parameters). True:
        they get priors, and the guide is a mean-field posterior over them (``AutoNormal`` on the
        globals), so that posteriors over parameters exist for diagnostics.
    n_init : int
        Restarts of :meth:`initialize` that an engine's ``fit`` runs; it keeps the restart with
        the best exact likelihood.
    """

    static_structure = True
    #: The one local discrete site, summed out exactly by enumeration.
    label_site = "z"

    def __init__(self, n_components: int, dim: int, *, bayesian: bool = False, n_init: int = 1):
        super().__init__()
        self.n_components = _check_int("n_components", n_components, 1)
        self.dim = _check_int("dim", dim, 1)
        self.n_init = _check_int("n_init", n_init, 1)
        self.bayesian = bool(bayesian)
        self.weight_logits = PyroParam(torch.zeros(n_components))
        self._auto_guide = None

    # -- what subclasses provide ---------------------------------------------------------------
    def _global_priors(self) -> dict[str, dist.Distribution]:
        """Priors of the component parameters (bayesian=True); event shapes cover each array."""
        raise NotImplementedError

    def _point_globals(self) -> dict[str, torch.Tensor]:
        """The component parameters as point estimates."""
        raise NotImplementedError

    def _likelihood(
        self, params: dict[str, torch.Tensor], z: torch.Tensor, x: torch.Tensor, mask
    ) -> dist.Distribution:
        """p(x_n | z_n) as a distribution with event shape (D,) and batch shape of z."""
        raise NotImplementedError

    def component_log_prob(
        self, x: torch.Tensor, mask: torch.Tensor | None, stats: Any = None
    ) -> torch.Tensor:
        """log p(x_n | z_n = k) over the observed entries, shape (N, K). Direct tensor path.

        ``stats`` is what :meth:`data_statistics` returned for the same ``x`` and ``mask``.
        """
        raise NotImplementedError

    def data_statistics(self, x: torch.Tensor, mask: torch.Tensor | None) -> Any:
        """Features of the data that every EM iteration reuses; computed once per fit."""
        return None

    def m_step(
        self, x: torch.Tensor, mask: torch.Tensor | None, resp: torch.Tensor, stats: Any = None
    ) -> None:
        """Closed-form EM update from responsibilities ``resp`` (N, K); updates in place."""
        raise NotImplementedError

    def _validate_values(self, x: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Check that observed entries lie in the family's support."""

    # -- the Pyro story ------------------------------------------------------------------------
    @property
    def weights(self) -> torch.Tensor:
        """Mixture weights π, shape (K,)."""
        return torch.softmax(self.weight_logits, -1)

    def _globals(self) -> dict[str, torch.Tensor]:
        if not self.bayesian:
            return {"weights": self.weights, **self._point_globals()}
        k = self.n_components
        conc = torch.ones(k, dtype=self.weight_logits.dtype, device=self.weight_logits.device)
        out = {"weights": pyro.sample("weights", dist.Dirichlet(conc))}
        for name, prior in self._global_priors().items():
            out[name] = pyro.sample(name, prior)
        return out

    def model(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """z_n ~ Categorical(π); x_n | z_n ~ component z_n, over the observed entries.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        """
        params = self._globals()
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            z = pyro.sample(
                self.label_site,
                dist.Categorical(params["weights"]),
                infer={"enumerate": "parallel"},
            )
            pyro.sample("x", self._likelihood(params, z, x, mask), obs=x)

    def guide(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Point estimates: nothing to sample, z is summed out. Bayesian: q over the globals."""
        if not self.bayesian:
            return
        if self._auto_guide is None:
            from pyro.infer.autoguide import AutoNormal

            hide = {self.label_site}
            globals_only = pyro.poutine.block(self.model, hide_fn=lambda m: m["name"] in hide)
            self._auto_guide = AutoNormal(globals_only, init_scale=0.05)
        self._auto_guide(x, mask)

    # -- direct tensor path --------------------------------------------------------------------
    def enumerate_log_joint(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, stats: Any = None
    ) -> torch.Tensor:
        """log p(x_n, z_n = k) = log π_k + log p(x_n | z_n = k), shape (N, K).

        Only for point estimates (``bayesian=False``); ``x`` (N, D) with masked entries
        zero-filled; ``stats`` optionally from :meth:`data_statistics`.
        """
        log_w = torch.log_softmax(self.weight_logits, -1)
        return log_w + self.component_log_prob(x, mask, stats)

    def _assign(self, name: str, value: torch.Tensor) -> None:
        """Write a constrained value into a PyroParam's unconstrained storage, in place."""
        constraint = self._pyro_params[name][0]
        unconstrained = getattr(self, name + "_unconstrained")
        with torch.no_grad():
            unconstrained.copy_(transform_to(constraint).inv(value))

    def _set_weights(self, weights: torch.Tensor) -> None:
        with torch.no_grad():
            self.weight_logits_unconstrained.copy_(weights.clamp(min=1e-300).log())

    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None, seed: int) -> None:
        """k-means++ seeding, hard assignment to the nearest seed, then one M-step.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D), masked entries zero-filled
        mask : torch.Tensor of shape (N, D) or None
        seed : int
        """
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        xf = self._features(x).to("cpu")
        mf = None if mask is None else self._feature_mask(mask).to("cpu")
        centres = kmeans_plusplus(xf, mf, self.n_components, g)
        m = _observed(xf, mf)
        diff = (xf.unsqueeze(1) - xf[centres].unsqueeze(0)).pow(2)  # (N, K, F)
        nearest = (diff * m.unsqueeze(1)).sum(-1).argmin(-1)  # (N,)
        resp = torch.nn.functional.one_hot(nearest, self.n_components).to(x.dtype)
        # a little mass everywhere keeps every component alive for the first M-step
        resp = (resp + 1e-3).to(x.device)
        resp = resp / resp.sum(-1, keepdim=True)
        self._initial_m_step(x, mask, resp)

    def _initial_m_step(self, x, mask, resp) -> None:
        self.m_step(x, mask, resp)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _feature_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask

    @property
    def name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        return (
            f"n_components={self.n_components}, dim={self.dim}"
            + (", bayesian=True" if self.bayesian else "")
            + (f", n_init={self.n_init}" if self.n_init != 1 else "")
        )


class GaussianMixture(MixtureModel):
    """Mixture of Gaussians: x_n | z_n = k ~ N(μ_k, Σ_k).

    Parameters
    ----------
    n_components : int
        K.
    dim : int
        D.
    covariance : {"diag", "full", "spherical"}
        Σ_k = diag(σ²_k), a full matrix (kept as its Cholesky factor), or σ²_k I.
    reg_covar : float
        Added to every variance (the diagonal of Σ_k) in an M-step, as scikit-learn does, so a
        component that collapses onto one point keeps a finite density.
    bayesian : bool
        Priors (bayesian=True): π ~ Dirichlet(1), μ_kd ~ N(prior_loc, prior_scale²), σ_kd ~
        LogNormal(0, 1) (a diag/spherical scale or the scales of a full covariance), and an
        LKJ(1) prior on the correlation Cholesky factor of a full covariance.
    n_init : int
        Restarts kept by best exact likelihood.
    prior_loc, prior_scale : float
        The Normal prior on the means (bayesian=True only).

    Examples
    --------
    >>> gmm = GaussianMixture(n_components=3, dim=2, covariance="full")
    >>> gmm.means_.shape, gmm.covariances_.shape
    (torch.Size([3, 2]), torch.Size([3, 2, 2]))
    """

    def __init__(
        self,
        n_components: int,
        dim: int,
        covariance: Literal["diag", "full", "spherical"] = "diag",
        *,
        reg_covar: float = 1e-6,
        bayesian: bool = False,
        n_init: int = 1,
        prior_loc: float = 0.0,
        prior_scale: float = 1.0,
    ):
        super().__init__(n_components, dim, bayesian=bayesian, n_init=n_init)
        if covariance not in ("diag", "full", "spherical"):
            raise ValueError(
                f"covariance must be 'diag', 'full' or 'spherical', got {covariance!r}."
            )
        if reg_covar < 0:
            raise ValueError(f"reg_covar must be >= 0, got {reg_covar}.")
        self.covariance = covariance
        self.reg_covar = float(reg_covar)
        self.prior_loc = float(prior_loc)
        self.prior_scale = float(prior_scale)
        k, d = n_components, dim
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
        k, d = self.n_components, self.dim
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
        k, d = self.n_components, self.dim
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
            norm = (locs.pow(2) * prec + var.log()).sum(-1) + x.shape[-1] * _LOG_2PI  # (K,)
            return -0.5 * (coef @ feats_t + norm.unsqueeze(-1)).T
        m = mask.to(x.dtype)
        mx = m * x
        quad = torch.cat([mx * x, mx], -1) @ coef.T
        quad = quad + m @ (locs.pow(2) * prec + var.log()).T
        return -0.5 * (quad + m.sum(-1, keepdim=True) * _LOG_2PI)

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
            k, d = self.n_components, self.dim
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
        return -0.5 * (quad + x.shape[-1] * _LOG_2PI) - log_det
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
            out[rows] = -0.5 * (quad + int(o.sum()) * _LOG_2PI) - log_det
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


class BernoulliMixture(MixtureModel):
    """Mixture of independent Bernoullis: x_nd | z_n = k ~ Bernoulli(p_kd), for binary pixels.

    Parameters
    ----------
    n_components : int
    dim : int
    eps : float
        Every p_kd is kept in [eps, 1 - eps] after an M-step, so an unseen pixel value never
        has probability zero.
    bayesian : bool
        Priors (bayesian=True): π ~ Dirichlet(1), p_kd ~ Beta(1, 1).
    n_init : int
    """

    def __init__(
        self,
        n_components: int,
        dim: int,
        *,
        eps: float = 1e-6,
        bayesian: bool = False,
        n_init: int = 1,
    ):
        super().__init__(n_components, dim, bayesian=bayesian, n_init=n_init)
        if not 0 <= eps < 0.5:
            raise ValueError(f"eps must be in [0, 0.5), got {eps}.")
        self.eps = float(eps)
        self.probs = PyroParam(torch.full((n_components, dim), 0.5), constraints.unit_interval)

    @property
    def probs_(self) -> torch.Tensor:
        """p_kd, shape (K, D)."""
        return self.probs.detach().clone()

    def _point_globals(self):
        return {"probs": self.probs}

    def _global_priors(self):
        ones = self.weight_logits.new_ones(self.n_components, self.dim)
        return {"probs": dist.Beta(ones, ones).to_event(2)}

    def _likelihood(self, params, z, x, mask):
        lik = dist.Bernoulli(probs=_select(params["probs"], z, 1))
        if mask is not None:
            lik = lik.mask(mask)
        return lik.to_event(1)

    def component_log_prob(self, x, mask=None, stats=None):
        """Σ_d m_nd [x log p + (1 - x) log(1 - p)], shape (N, K)."""
        m = _observed(x, mask)
        p = self.probs
        return (m * x) @ p.log().T + (m * (1 - x)) @ torch.log1p(-p).T

    def m_step(self, x, mask, resp, stats=None):
        """p_kd = E[x_nd] under the responsibilities; missing pixels count as p_kd."""
        with torch.no_grad():
            nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
            self._set_weights(nk / nk.sum())
            if mask is None:
                s1 = resp.T @ x
            else:
                m = mask.to(x.dtype)
                s1 = resp.T @ (m * x) + (nk.unsqueeze(-1) - resp.T @ m) * self.probs_
            self._assign("probs", (s1 / nk.unsqueeze(-1)).clamp(self.eps, 1 - self.eps))

    def _validate_values(self, x, mask):
        obs = x if mask is None else x[mask]
        if not bool(((obs == 0) | (obs == 1)).all()):
            raise ValueError(
                "BernoulliMixture needs binary data (0 or 1) in every observed entry; binarize "
                "it first, e.g. Dataset.binarize(0.5) or (x > 0.5).float()."
            )


class CategoricalMixture(MixtureModel):
    """Mixture of independent categoricals: x_nd | z_n = k ~ Categorical(θ_kd), for DNA letters.

    ``x`` holds integer codes 0..C-1 stored as floats (as ``datasets.load("dna",
    encoding="acgt")`` gives them).

    Parameters
    ----------
    n_components : int
    dim : int
    num_categories : int
        C (4 for A, C, G, T).
    eps : float
        Floor on every θ_kdc after an M-step.
    bayesian : bool
        Priors (bayesian=True): π ~ Dirichlet(1), θ_kd ~ Dirichlet(1).
    n_init : int
    """

    def __init__(
        self,
        n_components: int,
        dim: int,
        num_categories: int,
        *,
        eps: float = 1e-6,
        bayesian: bool = False,
        n_init: int = 1,
    ):
        super().__init__(n_components, dim, bayesian=bayesian, n_init=n_init)
        self.num_categories = _check_int("num_categories", num_categories, 2)
        if not 0 <= eps < 1 / num_categories:
            raise ValueError(f"eps must be in [0, 1/num_categories), got {eps}.")
        self.eps = float(eps)
        c = num_categories
        self.probs = PyroParam(
            torch.full((n_components, dim, c), 1.0 / c), constraint=constraints.simplex
        )

    @property
    def probs_(self) -> torch.Tensor:
        """θ_kdc, shape (K, D, C)."""
        return self.probs.detach().clone()

    def _point_globals(self):
        return {"probs": self.probs}

    def _global_priors(self):
        conc = self.weight_logits.new_ones(self.n_components, self.dim, self.num_categories)
        return {"probs": dist.Dirichlet(conc).to_event(2)}

    def _likelihood(self, params, z, x, mask):
        lik = dist.Categorical(probs=_select(params["probs"], z, 2))
        if mask is not None:
            lik = lik.mask(mask)
        return lik.to_event(1)

    def _features(self, x):
        return self._one_hot(x).flatten(-2)

    def _feature_mask(self, mask):
        return mask.repeat_interleave(self.num_categories, dim=-1)

    def _one_hot(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x.long(), self.num_categories).to(x.dtype)

    def component_log_prob(self, x, mask=None, stats=None):
        """Σ_d m_nd log θ_k,d,x_nd, shape (N, K)."""
        onehot = self._one_hot(x) * _observed(x, mask).unsqueeze(-1)  # (N, D, C)
        return onehot.flatten(-2) @ self.probs.log().flatten(-2).T

    def m_step(self, x, mask, resp, stats=None):
        """θ_kdc = expected share of category c; missing letters count as θ_kd."""
        with torch.no_grad():
            nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
            self._set_weights(nk / nk.sum())
            onehot = self._one_hot(x)
            if mask is None:
                counts = torch.einsum("nk,ndc->kdc", resp, onehot)
            else:
                m = mask.to(x.dtype)
                counts = torch.einsum("nk,ndc->kdc", resp, onehot * m.unsqueeze(-1))
                counts = counts + (nk.unsqueeze(-1) - resp.T @ m).unsqueeze(-1) * self.probs_
            theta = (counts / nk.view(-1, 1, 1)).clamp(min=self.eps)
            self._assign("probs", theta / theta.sum(-1, keepdim=True))

    def _validate_values(self, x, mask):
        obs = x if mask is None else x[mask]
        c = self.num_categories
        if not bool(((obs == obs.round()) & (obs >= 0) & (obs < c)).all()):
            raise ValueError(
                f"CategoricalMixture needs integer codes 0..{c - 1} in every observed entry; "
                "load DNA with datasets.load('dna', encoding='acgt')."
            )
