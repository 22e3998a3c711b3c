"""Mixtures of independent discrete features: Bernoulli (binary pixels) and Categorical (DNA
letters), x_nd | z_n = k ~ Bernoulli(p_kd) or Categorical(θ_kd)."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam

from ..core.checks import check_positive_int, refuse_values
from ._legacy import legacy_signature
from .mixture_base import MixtureModel, _keep_observed, _observed, _select

__all__ = ["BernoulliMixture", "CategoricalMixture"]


class BernoulliMixture(MixtureModel):
    """Mixture of independent Bernoullis: x_nd | z_n = k ~ Bernoulli(p_kd), for binary pixels.

    Parameters
    ----------
    dim : int
        D.
    num_components : int
        K (keyword-only).
    eps : float
        Every p_kd is kept in [eps, 1 - eps] after an M-step, so an unseen pixel value never
        has probability zero.
    bayesian : bool
        Priors (bayesian=True): π ~ Dirichlet(1), p_kd ~ Beta(1, 1).
    num_init : int
        Restarts kept by best exact likelihood.

    The previous spellings ``BernoulliMixture(n_components, dim)``, ``n_components=`` and
    ``n_init=`` still work for one release, with a ``FutureWarning``.
    """

    @legacy_signature(("n_components", "dim"))
    def __init__(
        self,
        dim: int,
        *,
        num_components: int,
        eps: float = 1e-6,
        bayesian: bool = False,
        num_init: int = 1,
    ):
        super().__init__(dim, num_components=num_components, bayesian=bayesian, num_init=num_init)
        if not 0 <= eps < 0.5:
            raise ValueError(f"eps must be in [0, 0.5), got {eps}.")
        self.eps = float(eps)
        k, d = self.num_components, self.dim
        self.probs = PyroParam(torch.full((k, d), 0.5), constraints.unit_interval)

    @property
    def probs_(self) -> torch.Tensor:
        """p_kd, shape (K, D)."""
        return self.probs.detach().clone()

    def _point_globals(self):
        return {"probs": self.probs}

    def _global_priors(self):
        ones = self.weight_logits.new_ones(self.num_components, self.dim)
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

    def validate_values(self, x, mask=None):
        """Observed entries must be 0 or 1."""
        refuse_values(
            x,
            mask,
            x.eq(0).logical_or_(x.eq(1)),
            model="BernoulliMixture",
            expected="binary data (0 or 1)",
            fix="binarize it first, e.g. Dataset.binarize(0.5) or (x > 0.5).float().",
        )

    def complete_exact(self, x, mask, num_samples):
        """z_s ~ p(z | x_o), then x_md ~ Bernoulli(p_{z_s} d); the means are p_{z_s} and
        Σ_k p(k | x_o) p_k, observed entries kept."""
        post, z = self._posterior_draws(x, mask, num_samples)  # (N, K), (S, N)
        comp = self.probs_  # (K, D)
        cond = comp[z]  # (S, N, D)
        samples = _keep_observed(torch.bernoulli(cond), x, mask)
        return samples, _keep_observed(cond, x, mask), _keep_observed(post @ comp, x, mask)


class CategoricalMixture(MixtureModel):
    """Mixture of independent categoricals: x_nd | z_n = k ~ Categorical(θ_kd), for DNA letters.

    ``x`` holds integer codes 0..C-1 stored as floats (as ``datasets.load("dna",
    encoding="acgt")`` gives them).

    Parameters
    ----------
    dim : int
        D.
    num_components : int
        K (keyword-only).
    num_categories : int
        C (4 for A, C, G, T; keyword-only).
    eps : float
        Floor on every θ_kdc after an M-step.
    bayesian : bool
        Priors (bayesian=True): π ~ Dirichlet(1), θ_kd ~ Dirichlet(1).
    num_init : int
        Restarts kept by best exact likelihood.

    The previous spellings ``CategoricalMixture(n_components, dim, num_categories)``,
    ``n_components=`` and ``n_init=`` still work for one release, with a ``FutureWarning``.
    """

    @legacy_signature(("n_components", "dim", "num_categories"))
    def __init__(
        self,
        dim: int,
        *,
        num_components: int,
        num_categories: int,
        eps: float = 1e-6,
        bayesian: bool = False,
        num_init: int = 1,
    ):
        super().__init__(dim, num_components=num_components, bayesian=bayesian, num_init=num_init)
        c = check_positive_int("num_categories", num_categories)
        if c < 2:
            raise ValueError(f"num_categories must be an int >= 2, got {num_categories!r}.")
        self.num_categories = c
        if not 0 <= eps < 1 / c:
            raise ValueError(f"eps must be in [0, 1/num_categories), got {eps}.")
        self.eps = float(eps)
        k, d = self.num_components, self.dim
        self.probs = PyroParam(torch.full((k, d, c), 1.0 / c), constraint=constraints.simplex)

    @property
    def probs_(self) -> torch.Tensor:
        """θ_kdc, shape (K, D, C)."""
        return self.probs.detach().clone()

    def _point_globals(self):
        return {"probs": self.probs}

    def _global_priors(self):
        conc = self.weight_logits.new_ones(self.num_components, self.dim, self.num_categories)
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

    def _from_features(self, features):
        """The most weighted category of each feature block: codes, shape (..., D)."""
        blocks = features.unflatten(-1, (self.dim, self.num_categories))
        return blocks.argmax(-1).to(features.dtype)

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

    def validate_values(self, x, mask=None):
        """Observed entries must be integer codes 0..C-1."""
        c = self.num_categories
        refuse_values(
            x,
            mask,
            (x == x.round()) & (x >= 0) & (x < c),
            model="CategoricalMixture",
            expected=f"integer codes 0..{c - 1}",
            fix="values such as 0.5 are never rounded. Load DNA with datasets.load('dna', "
            "encoding='acgt'), or give the mixture num_categories large enough.",
        )

    def complete_exact(self, x, mask, num_samples):
        """z_s ~ p(z | x_o), then x_md ~ Categorical(θ_{z_s} d); the means are the most
        probable category under θ_{z_s} and under Σ_k p(k | x_o) θ_k, observed entries kept."""
        post, z = self._posterior_draws(x, mask, num_samples)  # (N, K), (S, N)
        probs = self.probs_  # (K, D, C)
        draws = torch.distributions.Categorical(probs=probs[z]).sample().to(x.dtype)  # (S, N, D)
        samples = _keep_observed(draws, x, mask)
        sample_means = _keep_observed(probs[z].argmax(-1).to(x.dtype), x, mask)
        mix = torch.einsum("nk,kdc->ndc", post, probs)
        return samples, sample_means, _keep_observed(mix.argmax(-1).to(x.dtype), x, mask)
