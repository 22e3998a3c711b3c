"""Amortised latent-variable models: one skeleton for every story with a per-datum latent z
and an encoder q(z | x).

z_n ~ p(z), x_n | z_n ~ p(x | z_n) entry by entry over the observed entries, and a guide
q(z_n | x_n) computed from the datum by a network or a linear map. :class:`AmortizedLVM` writes
the parts that every such model shares once: the Pyro model and guide over the data plate, the
masked likelihood, the direct tensor path :meth:`~AmortizedLVM.particle_log_weights` (the same
numbers as the traced pass, without Pyro's per-call overhead), ``observation(z)`` and
``sample``. A subclass gives only what differs: the prior family, the guide's distribution and
the likelihood's. :class:`~.deep.AmortizedGaussianLVM` narrows that to a deep model with a Gaussian
latent: it takes an ``encoder`` and a ``decoder`` network and nothing else.
"""

from __future__ import annotations

import abc
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ..core.checks import check_positive_int
from ..core.densities import (
    std_normal_log_prob,
)
from ..core.logweights import LogWeights
from ..core.rng import seeded
from .base import DATA_PLATE, LatentVariableModel
from .capabilities import (
    Generative,
    ModelSample,
    Observation,
    ParticleLogWeights,
    ValueValidation,
    has,
)

__all__ = ["LIKELIHOODS", "AmortizedLVM", "Likelihood"]


#: The decoder likelihoods of :class:`AmortizedGaussianLVM`.
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")
Likelihood = Literal["bernoulli", "continuous_bernoulli", "gaussian"]


#: Layers whose outputs are channels × positions wide.
_CONVOLUTIONS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


class AmortizedLVM(LatentVariableModel, ParticleLogWeights, Observation, Generative):
    """A latent-variable model with one latent vector z_n per datum and an amortised guide.

    The subclass contract, with N data of D entries, a latent vector of L entries and K
    particles (leading dims written ``...``):

    - :meth:`guide_distribution` ``(x, mask)`` -> q(z_n | x_n): batch shape (N,), event shape
      (L,). Missing entries of ``x`` arrive zero-filled. Required.
    - :meth:`likelihood_distribution` ``(z)`` -> p(x_nd | z_n) entry by entry, *before*
      masking: batch shape ``z.shape[:-1] + (D,)``, event shape (). The skeleton masks it and
      sums over the D entries. Required.
    - :meth:`prior_distribution` ``(num_data, like)`` -> p(z): batch shape (num_data,), event
      shape (L,), with ``like``'s dtype and device. Defaults to N(0, I_L).

    From these alone the model, the guide, the direct path and :meth:`sample` work, and
    ``particle_log_weights`` equals the traced pass. A subclass may replace the generic tensor
    hooks by closed forms for speed, with the same numbers: ``_propose`` (draw and score the
    particles), ``_entry_log_lik`` (log p(x_nd | z), shape (..., N, D)) and ``_log_prior``.
    A model that declares :class:`~.capabilities.ValueValidation` has its ``validate_values``
    run by the model and by the direct path.

    Parameters
    ----------
    dim : int
        D, entries per datum.
    latent_dim : int
        L, entries of the latent vector.
    """

    static_structure = True
    latent_site = "z"

    def __init__(self, dim: int, latent_dim: int):
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)

    def working_width(self, x: torch.Tensor) -> int:
        """The data's width, or the widest layer of the networks when that is wider (a
        convolution's channels times the image size, at most)."""
        width = super().working_width(x)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                width = max(width, module.out_features)
            elif isinstance(module, _CONVOLUTIONS):
                width = max(width, module.out_channels * self.dim)
        return width

    # -- what a subclass gives -------------------------------------------------------------------
    def prior_distribution(self, num_data: int, like: torch.Tensor) -> dist.Distribution:
        """p(z) = N(0, I_L) for ``num_data`` data: batch shape (num_data,), event shape (L,)."""
        prior = dist.Normal(like.new_zeros(()), 1.0).expand([num_data, self.latent_dim])
        return prior.to_event(1)

    @abc.abstractmethod
    def guide_distribution(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dist.Distribution:
        """q(z_n | x_n): batch shape (N,), event shape (L,)."""

    @abc.abstractmethod
    def likelihood_distribution(self, z: torch.Tensor) -> dist.Distribution:
        """p(x_nd | z) per entry, unmasked: batch shape ``z.shape[:-1] + (D,)``."""

    # -- tensor hooks: generic, replaceable by closed forms ----------------------------------------
    def _propose(
        self, x: torch.Tensor, mask: torch.Tensor | None, num_particles: int, z: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Particles (K, N, L) (drawn from q unless given), log q (K, N), and the part of log q
        that needs a score-function term (None for a reparameterised guide)."""
        q = self.guide_distribution(x, mask)
        if z is None:
            z = q.rsample((num_particles,)) if q.has_rsample else q.sample((num_particles,))
        log_q = q.log_prob(z)
        return z, log_q, None if q.has_rsample else log_q

    def _log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): (..., N, L) -> (..., N)."""
        if type(self).prior_distribution is AmortizedLVM.prior_distribution:
            return std_normal_log_prob(z)  # the default prior, in closed form
        return self.prior_distribution(z.shape[-2], z).log_prob(z)

    def _entry_log_lik(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_nd | z) per entry: (..., N, D)."""
        return self.likelihood_distribution(z).log_prob(x)

    def _log_lik(self, z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """log p(x_n | z) over the observed entries: z (..., N, L) -> (..., N)."""
        per = self._entry_log_lik(z, x)
        if mask is not None:
            per = per * mask.to(per.dtype)
        return per.sum(-1)

    def log_joint(
        self, z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """log p(z) + log p(x_o | z): z (..., N, L) -> (..., N) (:class:`LatentLogJoint`)."""
        return self._log_prior(z) + self._log_lik(z, x, mask)

    # -- the Pyro story ----------------------------------------------------------------------------
    def model(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """z_n ~ p(z); x_n | z_n ~ the likelihood over the observed entries.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        """
        if has(self, ValueValidation):
            self.validate_values(x, mask)
        n = x.shape[0]
        with pyro.plate(DATA_PLATE, n, dim=-1):
            z = pyro.sample(self.latent_site, self.prior_distribution(n, x))
            lik = self.likelihood_distribution(z)
            if mask is not None:
                lik = lik.mask(mask)
            pyro.sample("x", lik.to_event(1), obs=x)

    def guide(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """z_n ~ q(z | x_n)."""
        q = self.guide_distribution(x, mask)
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            pyro.sample(self.latent_site, q)

    # -- direct tensor path --------------------------------------------------------------------
    def particle_log_weights(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        num_particles: int,
        z: torch.Tensor | None = None,
    ) -> LogWeights:
        """log p(x_n, z) and log q(z | x_n) for K particles drawn from the guide.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D) or None
        num_particles : int
            K.
        z : torch.Tensor of shape (K, N, L), optional
            Score these particles instead of drawing new ones.

        Returns
        -------
        LogWeights
            ``log_p``, ``log_q``, ``log_lik`` of shape (K, N), ``samples["z"]`` (K, N, L), and
            ``log_q_score`` when the guide is not reparameterised (discrete draws).
        """
        return self._particle_log_weights(x, mask, num_particles, z)

    def _particle_log_weights(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        num_particles: int,
        z: torch.Tensor | None,
        **propose: bool,
    ) -> LogWeights:
        if has(self, ValueValidation):
            # the engines cache site metadata per shape, so the model's own check may not run
            self.validate_values(x, mask)
        z, log_q, log_q_score = self._propose(x, mask, num_particles, z, **propose)
        log_lik = self._log_lik(z, x, mask)
        zeros = x.new_zeros(z.shape[0])
        return LogWeights(
            log_p=self._log_prior(z) + log_lik,
            log_q=log_q,
            global_log_p=zeros,
            global_log_q=zeros,
            samples={self.latent_site: z},
            local_sites=(self.latent_site,),
            log_lik=log_lik,
            log_q_score=log_q_score,
        )

    def observation(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z): batch shape ``z.shape[:-1]``, event shape (D,)."""
        return self.likelihood_distribution(z).to_event(1)

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, seed: int | None = None, mean: bool = False
    ) -> ModelSample:
        """Draw from the model: z ~ p(z), then x ~ p(x | z).

        Parameters
        ----------
        num_samples : int
            S.
        seed : int, optional
            Seeds the draws without moving the caller's random stream; None draws from
            torch's global generator.
        mean : bool
            Return E[x | z] (pixel probabilities, the decoder's mean) instead of a draw of x.

        Returns
        -------
        ModelSample
            ``x`` of shape (S, D) and ``z`` of shape (S, L); unpacks as ``x, z``.
        """
        num_samples = check_positive_int("num_samples", num_samples)
        ref = next(iter(self.parameters()), None)
        like = torch.zeros(()) if ref is None else ref.new_zeros(())
        with seeded(seed):
            z = self.prior_distribution(num_samples, like).sample()
            lik = self.likelihood_distribution(z)
            x = lik.mean if mean else lik.sample()
        return ModelSample(x, z)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, latent_dim={self.latent_dim}"
