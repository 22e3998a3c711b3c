"""The deep amortised model with a Gaussian latent: z ~ N(0, I_L), an ``encoder`` network for
q(z | x) and a ``decoder`` network for p(x | z), on the :class:`~.amortized.AmortizedLVM`
skeleton. ``VAE`` and ``ConvVAE`` are subclasses that give only their two networks."""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_choice, refuse_values
from ..core.densities import bernoulli_log_prob, gaussian_kl, normal_log_prob
from ..core.logweights import LogWeights
from .amortized import LIKELIHOODS, AmortizedLVM, Likelihood
from .capabilities import (
    DetachableGuide,
    LatentLogJoint,
    MeanFieldTerms,
    ValueValidation,
)

__all__ = ["AmortizedGaussianLVM"]


class AmortizedGaussianLVM(
    AmortizedLVM, DetachableGuide, MeanFieldTerms, LatentLogJoint, ValueValidation
):
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
