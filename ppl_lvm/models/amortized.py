"""Amortised latent-variable models: one skeleton for every story with a per-datum latent z
and an encoder q(z | x).

z_n ~ p(z), x_n | z_n ~ p(x | z_n) entry by entry over the observed entries, and a guide
q(z_n | x_n) computed from the datum by a network or a linear map. :class:`AmortizedLVM` writes
the parts that every such model shares once: the Pyro model and guide over the data plate, the
masked likelihood, the direct tensor path :meth:`~AmortizedLVM.particle_log_weights` (the same
numbers as the traced pass, without Pyro's per-call overhead), ``observation(z)`` and
``sample``. A subclass gives only what differs: the prior family, the guide's distribution and
the likelihood's. :class:`AmortizedGaussianLVM` narrows that to a deep model with a Gaussian
latent: it takes an ``encoder`` and a ``decoder`` network and nothing else.
"""

from __future__ import annotations

import abc
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_choice, check_positive_int, refuse_values
from ..core.densities import (
    bernoulli_log_prob,
    gaussian_kl,
    normal_log_prob,
    std_normal_log_prob,
)
from ..core.logweights import LogWeights
from ..core.rng import seeded
from .base import DATA_PLATE, LatentVariableModel
from .capabilities import (
    DetachableGuide,
    Generative,
    MeanFieldTerms,
    ModelSample,
    Observation,
    ParticleLogWeights,
    ValueValidation,
    has,
)

__all__ = ["LIKELIHOODS", "AmortizedGaussianLVM", "AmortizedLVM", "Likelihood"]


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


class AmortizedGaussianLVM(AmortizedLVM, DetachableGuide, MeanFieldTerms, ValueValidation):
    """A deep latent-variable model: z ~ N(0, I_L), q(z | x) = N(m(x), diag s²(x)) from an
    ``encoder`` network, and p(x | z) from a ``decoder`` network.

    A subclass calls ``super().__init__(dim, latent_dim, likelihood, mask_input=...)`` and sets
    two ``nn.Module`` attributes, and nothing else:

    - ``encoder``: (N, D) -> (N, 2L), or (N, 2D) -> (N, 2L) with ``mask_input=True`` (the
      zero-filled data, then the 0/1 mask). Columns [0, L) are the mean m(x); [L, 2L) a raw
      scale, with s(x) = softplus(raw) + 1e-5.
    - ``decoder``: (B, L) -> (B, D) logits for ``likelihood="bernoulli"`` or
      ``"continuous_bernoulli"``, or
      (B, 2D) for ``"gaussian"``: columns [0, D) the mean μ(z), [D, 2D) a raw scale, with
      σ(z) = softplus(raw) + 1e-3. It always sees a 2-D batch: leading particle dims are
      flattened into B and restored after.

    A decoder that is not a network (ToyVAE's parametric one) overrides :meth:`decode` instead:
    z (..., L) -> logits (..., D), or (μ, σ) each (..., D). The model then has the Gaussian
    direct path with detachable log q (DReG), the closed-form KL and the mean-field terms,
    ``observation``, ``sample`` and ``reconstruct``.

    Parameters
    ----------
    dim : int
        D.
    latent_dim : int
        L.
    likelihood : {"bernoulli", "continuous_bernoulli", "gaussian"}
        Bernoulli(logits(z)) for binary entries, the continuous Bernoulli of Loaiza-Ganem &
        Cunningham (2019) for intensities in [0, 1] (grey pixels), or N(μ(z), diag σ²(z)).
    mask_input : bool
        Feed the mask to the encoder beside the zero-filled data (MIWAE), for data with
        missing entries.

    Examples
    --------
    >>> class TinyVAE(AmortizedGaussianLVM):
    ...     def __init__(self):
    ...         super().__init__(dim=6, latent_dim=2, likelihood="bernoulli")
    ...         self.encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    ...         self.decoder = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 6))
    >>> TinyVAE().particle_log_weights(torch.zeros(3, 6), None, 5).log_p.shape
    torch.Size([5, 3])
    """

    encoder: nn.Module
    decoder: nn.Module

    def __init__(
        self,
        dim: int,
        latent_dim: int,
        likelihood: Likelihood = "bernoulli",
        *,
        mask_input: bool = False,
    ):
        super().__init__(dim, latent_dim)
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.mask_input = bool(mask_input)

    def validate_values(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """A Bernoulli decoder scores 0 and 1 only; a Gaussian one any finite value (which the
        data checks already ensure). ``x`` (N, D), ``mask`` (N, D) or None."""
        if self.likelihood == "continuous_bernoulli":
            refuse_values(
                x,
                mask,
                (x >= 0) & (x <= 1),
                model=f"{type(self).__name__}(likelihood='continuous_bernoulli')",
                expected="values in [0, 1]",
                fix="rescale the data to [0, 1], or build the model with likelihood='gaussian'.",
            )
        if self.likelihood == "bernoulli":
            refuse_values(
                x,
                mask,
                x.eq(0).logical_or_(x.eq(1)),
                model=f"{type(self).__name__}(likelihood='bernoulli')",
                expected="binary data (0 or 1)",
                fix="binarize it first (Dataset.binarize(0.5)), or build the model with "
                "likelihood='continuous_bernoulli' (grey values in [0, 1]) or 'gaussian'.",
            )

    # -- the networks ----------------------------------------------------------------------------
    def encode(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): loc and scale, each of shape (N, L). Missing entries are zero-filled, and
        with ``mask_input=True`` the mask itself is an input (as in MIWAE)."""
        if self.mask_input:
            m = torch.ones_like(x) if mask is None else mask.to(x.dtype)
            h = self.encoder(torch.cat([x * m, m], -1))
        else:
            # the engines fill masked entries with observed values (check_data); the encoder
            # sees zeros there, whatever the rows it is handed together
            h = self.encoder(x if mask is None else x * mask.to(x.dtype))
        if h.shape[-1] != 2 * self.latent_dim:
            raise ValueError(
                f"{self.name}'s encoder gave {h.shape[-1]} numbers per datum; it must give "
                f"2 * latent_dim = {2 * self.latent_dim} (the mean, then the raw scale)."
            )
        loc, raw = h.split(self.latent_dim, -1)
        return loc, F.softplus(raw) + 1e-5

    def decode(self, z: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The decoder: logits (..., D) for Bernoulli, or (loc, scale) for Gaussian."""
        h = self.decoder(z.reshape(-1, z.shape[-1]))
        h = h.reshape(*z.shape[:-1], h.shape[-1])
        width = 2 * self.dim if self.likelihood == "gaussian" else self.dim
        if h.shape[-1] != width:
            raise ValueError(
                f"{self.name}'s decoder gave {h.shape[-1]} numbers per latent vector; a "
                f"{self.likelihood} likelihood over dim={self.dim} entries needs {width}."
            )
        if self.likelihood != "gaussian":
            return h
        loc, raw = h.split(self.dim, -1)
        return loc, F.softplus(raw) + 1e-3

    # -- the distributions ---------------------------------------------------------------------
    def guide_distribution(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dist.Distribution:
        """q(z_n | x_n) = N(m(x_n), diag s²(x_n))."""
        return dist.Normal(*self.encode(x, mask)).to_event(1)

    def likelihood_distribution(self, z: torch.Tensor) -> dist.Distribution:
        """Bernoulli(logits(z)), ContinuousBernoulli(logits(z)) or N(μ(z), σ²(z)) per entry."""
        out = self.decode(z)
        if self.likelihood == "bernoulli":
            # the data were checked to be 0/1 once; validating each particle would cost a pass
            return dist.Bernoulli(logits=out, validate_args=False)
        if self.likelihood == "continuous_bernoulli":
            return dist.ContinuousBernoulli(logits=out, validate_args=False)
        return dist.Normal(*out)

    # -- closed forms of the tensor hooks --------------------------------------------------------
    def _propose(self, x, mask, num_particles, z, stop_q_grad: bool = False):
        loc, scale = self.encode(x, mask)
        if z is None:
            eps = torch.randn((num_particles, *loc.shape), dtype=loc.dtype, device=loc.device)
            z = loc + scale * eps  # (K, N, L)
        if stop_q_grad:
            loc, scale = loc.detach(), scale.detach()
        return z, normal_log_prob(z, loc, scale).sum(-1), None

    def _entry_log_lik(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.decode(z)
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(out, x)
        if self.likelihood == "continuous_bernoulli":
            # torch's density, whose normaliser is stable near λ = ½ (a Taylor expansion)
            cb = torch.distributions.ContinuousBernoulli(logits=out, validate_args=False)
            return cb.log_prob(x.expand_as(out))
        return normal_log_prob(x, *out)

    # -- capabilities ----------------------------------------------------------------------------
    def particle_log_weights(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        num_particles: int,
        z: torch.Tensor | None = None,
        stop_q_grad: bool = False,
    ) -> LogWeights:
        """log p(x_n, z) and log q(z | x_n) for K reparameterised particles.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D) or None
        num_particles : int
            K.
        z : torch.Tensor of shape (K, N, L), optional
            Score these particles instead of drawing new ones.
        stop_q_grad : bool
            Evaluate log q with the encoder's outputs detached, so that the encoder's gradient
            flows only through z (the path derivative that DReG reweights).

        Returns
        -------
        LogWeights
            ``log_p``, ``log_q``, ``log_lik`` of shape (K, N) and ``samples["z"]`` (K, N, L).
        """
        return self._particle_log_weights(x, mask, num_particles, z, stop_q_grad=stop_q_grad)

    def meanfield_terms(
        self, x: torch.Tensor, mask: torch.Tensor | None, num_particles: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two terms of the mean-field ELBO from one encoder pass, and nothing else.

        The training step needs only E_q[log p(x | z)] and the closed-form KL; skipping log q,
        the log prior and the bookkeeping of :meth:`particle_log_weights` saves about a hundred
        small tensor operations per step, which is what separates a Pyro-style step from a
        hand-written one.

        Returns
        -------
        log_lik : torch.Tensor of shape (K, N)
            log p(x_n | z_k) over the observed entries.
        kl : torch.Tensor of shape (N,)
            KL(q(z | x_n) ‖ N(0, I)).
        """
        loc, scale = self.encode(x, mask)
        if num_particles == 1:
            # one particle: stay 2-D, which spares the views a leading particle dim costs
            z = loc + scale * torch.randn_like(loc)
            return self._log_lik(z, x, mask).unsqueeze(0), gaussian_kl(loc, scale)
        eps = torch.randn((num_particles, *loc.shape), dtype=loc.dtype, device=loc.device)
        return self._log_lik(loc + scale * eps, x, mask), gaussian_kl(loc, scale)

    def analytic_kl(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z | x_n) ‖ N(0, I)) in closed form, shape (N,)."""
        return gaussian_kl(*self.encode(x, mask))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's mean at the encoder's mean: E[x | z = m(x)], shape (N, D)."""
        loc, _ = self.encode(x, mask)
        return self.likelihood_distribution(loc).mean

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, latent_dim={self.latent_dim}, likelihood={self.likelihood!r}, "
            f"mask_input={self.mask_input}"
        )
