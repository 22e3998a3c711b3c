"""Completing what is missing: draws from p(x_missing | x_observed) and its mean.

The probability of a partially observed datum is a sum over all of its completions; the
completions themselves come from the same posterior. Two routes:

- **exact** for the finite mixtures and probabilistic PCA: p(z | x_o) is computed exactly
  (enumeration, or the Gaussian closed form), then x_m | z, x_o in closed form;
- **importance resampling** for models with an amortised guide (VAEs, binary latent features):
  K particles z_k ~ q(z | x_o) weighted by w_k ∝ p(x_o, z_k) / q(z_k | x_o); S of them are
  resampled for the sampled completions, and the single imputation is the weighted mean
  Σ_k w̃_k E[x_m | z_k] (Mattei & Frellsen 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._typing import ModelLike
from .core.checks import check_data
from .core.errors import UnsupportedModelError
from .core.rng import seeded
from .models._gaussian import gaussian_completions
from .models.base import as_model
from .models.linear import LinearGaussian
from .models.mixture import BernoulliMixture, CategoricalMixture, GaussianMixture, MixtureModel

__all__ = ["Completion", "complete"]


@dataclass(frozen=True)
class Completion:
    """Completions of partially observed data; observed entries are always the data's own.

    Attributes
    ----------
    samples : torch.Tensor of shape (S, N, D)
        Draws of x from p(x_m | x_o), one full datum per draw.
    sample_means : torch.Tensor of shape (S, N, D)
        E[x_m | z_s, x_o] for the latent value behind each draw: a smooth picture of each
        sampled completion (pixel probabilities rather than 0/1 draws).
    mean : torch.Tensor of shape (N, D)
        The single imputation E[x_m | x_o] (for ``CategoricalMixture``, the most probable
        category of each missing entry).
    x : torch.Tensor of shape (N, D)
        The data, missing entries zero-filled.
    mask : torch.Tensor of shape (N, D), bool
        True where observed.
    method : {"exact", "importance resampling"}
    ess : torch.Tensor of shape (N,) or None
        Effective sample size of the importance weights (importance resampling only).
    """

    samples: torch.Tensor
    sample_means: torch.Tensor
    mean: torch.Tensor
    x: torch.Tensor
    mask: torch.Tensor
    method: str
    ess: torch.Tensor | None = None

    def rmse(self, truth: torch.Tensor) -> float:
        """Root mean squared error of :attr:`mean` against ``truth`` over the missing entries."""
        missing = ~self.mask
        if not bool(missing.any()):
            raise ValueError("nothing is missing, so there is no completion error to measure.")
        diff = (self.mean - truth.to(self.mean))[missing]
        return float(diff.pow(2).mean().sqrt())


def complete(
    model: ModelLike,
    x: torch.Tensor,
    mask: torch.Tensor,
    num_samples: int = 10,
    *,
    num_particles: int = 1000,
    seed: int | None = 0,
) -> Completion:
    """Conditional completions of the unobserved entries of ``x``.

    Parameters
    ----------
    model : LatentVariableModel
        A fitted ``GaussianMixture``, ``BernoulliMixture``, ``CategoricalMixture`` or
        ``LinearGaussian`` (exact), or a model with an amortised guide, a
        ``particle_log_weights`` method and an ``observation(z)`` method giving p(x | z)
        (``VAE``, ``ToyVAE``, ``BinaryLatentFactors``; importance resampling).
    x : torch.Tensor of shape (N, D)
        Data; entries where ``mask`` is False are never read and may hold NaN.
    mask : torch.Tensor of shape (N, D), bool
        True where an entry is observed.
    num_samples : int
        S, sampled completions per datum.
    num_particles : int
        K, guide particles per datum for importance resampling.
    seed : int or None

    Returns
    -------
    Completion

    Examples
    --------
    >>> from ppl_lvm import complete, datasets, models
    >>> gmm = models.GaussianMixture(2, 2).set_parameters(
    ...     torch.tensor([0.5, 0.5]), torch.tensor([[0.0, 0.0], [4.0, 4.0]]), torch.ones(2, 2))
    >>> x = torch.tensor([[4.1, float("nan")]])
    >>> done = complete(gmm, x, ~x.isnan(), num_samples=5)
    >>> done.samples.shape, round(float(done.mean[0, 1]), 2)
    (torch.Size([5, 1, 2]), 4.0)
    """
    lvm = as_model(model)
    if mask is None:
        raise ValueError("complete needs a mask (True = observed) saying what to fill in.")
    x, mask = check_data(x, mask)
    dim = getattr(lvm, "dim", None)
    if dim is not None and x.shape[-1] != dim:
        raise ValueError(
            f"x has {x.shape[-1]} features per datum but {lvm.name} was built for dim={dim}; "
            "pass data of shape (N, dim)."
        )
    for label, value in (("num_samples", num_samples), ("num_particles", num_particles)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}.")
    if isinstance(lvm, MixtureModel) and lvm.bayesian:
        raise UnsupportedModelError(
            f"{lvm.name}(bayesian=True) has a posterior over its parameters; complete with a "
            "point-estimate mixture (bayesian=False)."
        )
    x = x.to(_dtype(lvm, x))
    with torch.no_grad(), seeded(seed):
        if isinstance(lvm, MixtureModel):
            lvm._validate_values(x, mask)
            samples, sample_means, mean = _mixture(lvm, x, mask, num_samples)
            return Completion(samples, sample_means, mean, x, mask, "exact")
        if isinstance(lvm, LinearGaussian):
            samples, sample_means, mean = _linear(lvm, x, mask, num_samples)
            return Completion(samples, sample_means, mean, x, mask, "exact")
        if hasattr(lvm, "particle_log_weights") and hasattr(lvm, "observation"):
            out = _resample(lvm, x, mask, num_samples, num_particles)
            return Completion(*out[:3], x, mask, "importance resampling", ess=out[3])
    raise UnsupportedModelError(
        f"story '{lvm.name}' cannot be completed here: give it particle_log_weights(x, mask, K) "
        "and observation(z) (the distribution p(x | z)), as the built-in VAE has."
    )


def _dtype(lvm, x: torch.Tensor) -> torch.dtype:
    ref = next(iter(lvm.parameters()), None)
    return x.dtype if ref is None else ref.dtype


def _keep_observed(values: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, values)


def _mixture(lvm: MixtureModel, x, mask, num_samples: int):
    """Exact: z_s ~ p(z | x_o) by enumeration, then x_m | z_s, x_o in closed form."""
    post = torch.softmax(lvm.enumerate_log_joint(x, mask), -1)  # (N, K)
    z = torch.multinomial(post, num_samples, replacement=True).T  # (S, N)
    if isinstance(lvm, CategoricalMixture):
        probs = lvm.probs_  # (K, D, C)
        draws = torch.distributions.Categorical(probs=probs[z]).sample().to(x.dtype)  # (S, N, D)
        samples = _keep_observed(draws, x, mask)
        sample_means = _keep_observed(probs[z].argmax(-1).to(x.dtype), x, mask)
        mix = torch.einsum("nk,kdc->ndc", post, probs)
        return samples, sample_means, _keep_observed(mix.argmax(-1).to(x.dtype), x, mask)
    if isinstance(lvm, BernoulliMixture):
        comp = lvm.probs_  # (K, D)
        cond = comp[z]  # (S, N, D)
        samples = _keep_observed(torch.bernoulli(cond), x, mask)
        return samples, _keep_observed(cond, x, mask), _keep_observed(post @ comp, x, mask)
    if not isinstance(lvm, GaussianMixture):
        raise UnsupportedModelError(f"no closed-form completion for {lvm.name}.")
    locs = lvm.means_
    if lvm.covariance != "full":
        var = lvm.covariances_
        if lvm.covariance == "spherical":
            var = var.unsqueeze(-1).expand_as(locs)
        loc_s, sd_s = locs[z], var.sqrt()[z]  # (S, N, D)
        samples = _keep_observed(loc_s + sd_s * torch.randn_like(loc_s), x, mask)
        return samples, _keep_observed(loc_s, x, mask), _keep_observed(post @ locs, x, mask)
    return gaussian_completions(x, mask, locs, lvm.covariances_, num_samples, post, z)


def _linear(lvm: LinearGaussian, x, mask, num_samples: int):
    """Exact: x ~ N(b, W Wᵀ + σ² I), so x_m | x_o is Gaussian."""
    return gaussian_completions(x, mask, lvm.mean_, lvm.covariance_, num_samples)


def _resample(lvm, x, mask, num_samples: int, num_particles: int):
    """Sampling importance resampling with the guide, in chunks of data."""
    d = x.shape[-1]
    chunk = max(1, min(x.shape[0], 2**24 // (num_particles * d)))
    samples, sample_means, mean, ess = [], [], [], []
    with lvm.scoped():
        for start in range(0, x.shape[0], chunk):
            xb, mb = x[start : start + chunk], mask[start : start + chunk]
            lw = lvm.particle_log_weights(xb, mb, num_particles)
            z = lw.samples[lw.local_sites[0]]  # (K, n, ...)
            w = torch.softmax(lw.local, 0)  # (K, n)
            ess.append(1.0 / w.pow(2).sum(0))
            expected = lvm.observation(z).mean  # (K, n, D)
            mean.append(_keep_observed(torch.einsum("kn,knd->nd", w, expected), xb, mb))
            idx = torch.multinomial(w.T, num_samples, replacement=True).T  # (S, n)
            cols = torch.arange(xb.shape[0], device=x.device)
            chosen = z[idx, cols]  # (S, n, ...)
            obs = lvm.observation(chosen)
            sample_means.append(_keep_observed(obs.mean, xb, mb))
            samples.append(_keep_observed(obs.sample(), xb, mb))
    out_ess = torch.cat(ess)
    if not bool(torch.isfinite(out_ess).all()):
        raise FloatingPointError("the importance weights were not finite; check the model fit.")
    return torch.cat(samples, 1), torch.cat(sample_means, 1), torch.cat(mean, 0), out_ess
