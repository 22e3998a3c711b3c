"""Completing what is missing: draws from p(x_missing | x_observed) and its mean.

The probability of a partially observed datum is a sum over all of its completions; the
completions themselves come from the same posterior. Two routes:

- **exact** for the finite mixtures and probabilistic PCA: p(z | x_o) is computed exactly
  (enumeration, or the Gaussian closed form), then x_m | z, x_o in closed form;
- **importance resampling** for models with an amortised guide (VAEs, binary latent features):
  K particles z_k ~ q(z | x_o) weighted by w_k ∝ p(x_o, z_k) / q(z_k | x_o); S of them are
  resampled for the sampled completions, and the single imputation is the weighted mean
  Σ_k w̃_k E[x_m | z_k] (Mattei & Frellsen 2019).
- **test-time inference** for deep models that declare ``LatentLogJoint``
  (:mod:`ppl_lvm.inference.testtime`): the guide fed a zero-filled datum proposes poorly for
  the observed part alone, so ``method="auto"`` runs HMC on z (the missing entries summed
  out), started from the guide's particles, wherever the guide's Pareto k̂ exceeds 0.7;
  ``"refine"`` refines a per-datum Gaussian proposal on the observed-data IWAE bound for every
  datum (and estimates log p(x_o) stably, with its standard error), ``"hmc"`` runs HMC on every
  datum and ``"mwg"`` Metropolis-within-Gibbs on p(z, x_m | x_o).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from ._typing import ModelLike
from .core.checks import check_choice, check_data, check_positive_int
from .core.errors import UnsupportedModelError
from .core.rng import seeded
from .inference import log_weights_in_chunks
from .inference.testtime import METHODS, LatentDraws, Method, infer_latents
from .models.capabilities import (
    ExactCompletion,
    LatentLogJoint,
    Observation,
    OwnCompletion,
    ParticleLogWeights,
    has,
)
from .models.story import as_model, conform_data
from .models.support import check_values

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
    method : str
        "exact", "importance resampling" (the guide), "refined importance resampling",
        "Metropolis-within-Gibbs" or "HMC"; where ``method="auto"`` used two, both with their
        counts of data ("importance resampling (212), refined importance resampling (788)").
    ess : torch.Tensor of shape (N,) or None
        Effective sample size of the importance weights (importance resampling only).
    methods : list of str or None
        Per datum, what drew its latent values (test-time inference only).
    log_evidence, stderr, khat : torch.Tensor of shape (N,) or None
        The importance estimate of log p(x_o) of each datum, its standard error and Pareto k̂
        (k̂ above 0.7: not to be trusted), where an importance method ran.
    accept : torch.Tensor of shape (N,) or None
        The MCMC moves' mean acceptance probability per datum, where MCMC ran.
    """

    samples: torch.Tensor
    sample_means: torch.Tensor
    mean: torch.Tensor
    x: torch.Tensor
    mask: torch.Tensor
    method: str
    ess: torch.Tensor | None = None
    methods: list[str] | None = None
    log_evidence: torch.Tensor | None = None
    stderr: torch.Tensor | None = None
    khat: torch.Tensor | None = None
    accept: torch.Tensor | None = None

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
    method: Method = "auto",
    refine_steps: int = 300,
    num_chains: int = 4,
    num_steps: int | None = None,
    seed: int | None = 0,
) -> Completion:
    """Conditional completions of the unobserved entries of ``x``.

    Parameters
    ----------
    model : LatentVariableModel
        A fitted model that declares ``ExactCompletion`` (the mixtures and ``LinearGaussian``:
        exact), ``OwnCompletion`` (``Autoregressive``: exact through an ordering that puts the
        observed entries first, else importance resampling), or ``ParticleLogWeights`` and
        ``Observation`` (``VAE``, ``ToyVAE``, ``BinaryLatentFactors``: importance resampling
        with the guide, or test-time inference, see ``method``).
    x : torch.Tensor of shape (N, D)
        Data; entries where ``mask`` is False are never read and may hold NaN.
    mask : torch.Tensor of shape (N, D), bool
        True where an entry is observed.
    num_samples : int
        S, sampled completions per datum.
    num_particles : int
        K, guide particles per datum for importance resampling.
    method : {"auto", "guide", "refine", "mwg", "hmc"}
        For a model that declares ``LatentLogJoint`` (the deep models): how p(z | x_o) is
        reached (see the module docstring); ``"auto"`` chooses per datum by the guide's k̂.
        Other models take ``"auto"`` (their exact or guide route).
    refine_steps : int
        Adam steps of each refined proposal.
    num_chains, num_steps : int
        MCMC chains per datum and steps per chain (the first half is burn-in); ``num_steps``
        defaults to 200 for HMC and 500 for Metropolis-within-Gibbs.
    seed : int or None

    Returns
    -------
    Completion

    Examples
    --------
    >>> from ppl_lvm import complete, datasets, models
    >>> gmm = models.GaussianMixture(2, num_components=2).set_parameters(
    ...     torch.tensor([0.5, 0.5]), torch.tensor([[0.0, 0.0], [4.0, 4.0]]), torch.ones(2, 2))
    >>> x = torch.tensor([[4.1, float("nan")]])
    >>> done = complete(gmm, x, ~x.isnan(), num_samples=5)
    >>> done.samples.shape, round(float(done.mean[0, 1]), 2)
    (torch.Size([5, 1, 2]), 4.0)
    """
    lvm = as_model(model)
    if mask is None:
        raise ValueError("complete needs a mask (True = observed) saying what to fill in.")
    x, mask = check_data(x, mask, fill=lvm.masked_fill)
    if lvm.dim is not None and isinstance(x, torch.Tensor) and x.shape[-1] != lvm.dim:
        raise ValueError(
            f"x has {x.shape[-1]} features per datum but {lvm.name} was built for "
            f"dim={lvm.dim}; pass data of shape (N, dim)."
        )
    check_positive_int("num_samples", num_samples)
    check_positive_int("num_particles", num_particles)
    check_choice("method", method, METHODS)
    check_positive_int("refine_steps", refine_steps)
    check_positive_int("num_chains", num_chains)
    check_positive_int("num_steps", num_steps, allow_none=True)
    own = has(lvm, OwnCompletion)
    exact = has(lvm, ExactCompletion)
    resampled = own or (has(lvm, ParticleLogWeights) and has(lvm, Observation))
    if not exact and isinstance(lvm, ExactCompletion):
        # declared but switched off for this instance: a mixture with priors on its parameters
        raise UnsupportedModelError(
            f"{lvm.name}(bayesian=True) has a posterior over its parameters; complete with a "
            "point-estimate mixture (bayesian=False)."
        )
    if not (exact or resampled):
        raise UnsupportedModelError(
            f"story '{lvm.name}' cannot be completed here: declare ExactCompletion "
            "(complete_exact), or ParticleLogWeights and Observation (particle_log_weights(x, "
            "mask, K) and observation(z), the distribution p(x | z)), as the built-in VAE does; "
            "see ppl_lvm.models.capabilities."
        )
    x = conform_data(lvm, x)
    with torch.no_grad(), seeded(seed):
        check_values(lvm, x, mask)
        if own:
            _refuse_method(lvm, method, "it completes by its own procedure")
            with lvm.scoped():
                drawn = lvm.complete_own(x, mask, num_samples, num_particles=num_particles)
            counts = Counter(drawn.method)
            label = (
                drawn.method[0]
                if len(counts) == 1
                else ", ".join(f"{m} ({c})" for m, c in sorted(counts.items()))
            )
            return Completion(*drawn[:3], x, mask, label, ess=drawn.ess, methods=list(drawn.method))
        if exact:
            _refuse_method(lvm, method, "its completions are exact")
            with lvm.scoped():
                samples, sample_means, mean = lvm.complete_exact(x, mask, num_samples)
            return Completion(samples, sample_means, mean, x, mask, "exact")
        if has(lvm, LatentLogJoint) and method != "guide":
            with lvm.scoped():
                draws = infer_latents(
                    lvm, x, mask, method, num_particles=num_particles,
                    refine_steps=refine_steps, num_chains=num_chains, num_steps=num_steps,
                    num_keep=num_samples,
                )  # fmt: skip
                return _from_draws(lvm, draws, x, mask, num_samples)
        _refuse_method(lvm, method, "it declares no LatentLogJoint for test-time inference")
        out = _resample(lvm, x, mask, num_samples, num_particles)
        return Completion(*out[:3], x, mask, "importance resampling", ess=out[3])


def _keep_observed(values: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, values)


def _resample(lvm, x, mask, num_samples: int, num_particles: int):
    """Sampling importance resampling with the guide, in chunks of data."""
    samples, sample_means, mean, ess = [], [], [], []
    with lvm.scoped():
        for rows, lw in log_weights_in_chunks(lvm, x, mask, num_particles=num_particles):
            xb, mb = x[rows], mask[rows]
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


_LABELS = {
    "guide": "importance resampling",
    "refine": "refined importance resampling",
    "mwg": "Metropolis-within-Gibbs",
    "hmc": "HMC",
}


def _refuse_method(lvm, method: str, why: str) -> None:
    if method not in ("auto", "guide"):
        raise UnsupportedModelError(
            f"method={method!r} is test-time inference for deep models; {lvm.name} takes "
            f"method='auto' ({why})."
        )


def _from_draws(lvm, draws: LatentDraws, x, mask, num_samples: int) -> Completion:
    """A Completion from test-time draws: resampled importance particles, or MCMC states."""
    if draws.log_weights is not None:
        w = torch.softmax(draws.log_weights, 0)  # (K, N)
        expected = torch.einsum("kn,knd->nd", w, lvm.observation(draws.z).mean)
        idx = torch.multinomial(w.T, num_samples, replacement=True).T  # (S, N)
        chosen = draws.z[idx, torch.arange(x.shape[0], device=x.device)]
    else:
        expected, chosen = draws.expected, draws.z[:num_samples]
    obs = lvm.observation(chosen)
    counts = Counter(draws.method)
    used = [m for m in _LABELS if counts[m]]
    label = (
        _LABELS[used[0]]
        if len(used) == 1
        else ", ".join(f"{_LABELS[m]} ({counts[m]})" for m in used)
    )
    return Completion(
        _keep_observed(obs.sample(), x, mask),
        _keep_observed(obs.mean, x, mask),
        _keep_observed(expected, x, mask),
        x,
        mask,
        label,
        ess=draws.ess,
        methods=draws.method,
        log_evidence=draws.log_evidence,
        stderr=draws.stderr,
        khat=draws.khat,
        accept=draws.accept,
    )
