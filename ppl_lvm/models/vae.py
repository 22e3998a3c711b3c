"""Deep latent-variable models: ``VAE`` and the lecture's 2-D ``ToyVAE``.

z ~ N(0, I), x | z ~ p_θ(x | z) with a neural decoder: N(μ_θ(z), diag σ²_θ(z)) or
Bernoulli(logits_θ(z)), "a mixture of an infinite number of Gaussians". The guide is an
amortised Gaussian encoder q_φ(z | x) = N(m_φ(x), diag s²_φ(x)).

Besides the Pyro model/guide pair, both expose the direct tensor path that the engines use when
present: :meth:`particle_log_weights` (log p(x, z) and log q(z | x) for K particles, the same
numbers as the traced pass without Pyro's per-call overhead), :meth:`analytic_kl`, and
:meth:`meanfield_terms`, the two terms of the mean-field ELBO alone for the training step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ..core.logweights import LogWeights
from .base import DATA_PLATE, LatentVariableModel

__all__ = ["VAE", "ToyVAE"]

_LOG_2PI = math.log(2 * math.pi)


def _mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none at the end)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Σ_l log N(z_l; 0, 1) over the last dim."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * _LOG_2PI)


def _normal_log_prob(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Σ_l log N(z_l; loc_l, scale_l) over the last dim."""
    return -0.5 * (((z - loc) / scale).pow(2) + 2 * scale.log() + _LOG_2PI).sum(-1)


def _gaussian_kl(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, diag scale²) ‖ N(0, I)) over the last dim."""
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum(-1)


class _AmortizedGaussianLVM(LatentVariableModel):
    """Shared machinery: standard-normal prior, Gaussian encoder, masked likelihood."""

    static_structure = True
    latent_site = "z"

    def __init__(self, dim: int, latent_dim: int, mask_input: bool):
        super().__init__()
        for label, value in (("dim", dim), ("latent_dim", latent_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}.")
        self.dim = dim
        self.latent_dim = latent_dim
        self.mask_input = bool(mask_input)

    # subclasses provide
    encoder: nn.Module

    def _log_lik(self, z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """log p(x_n | z) over observed entries: z (..., N, L) -> (..., N)."""
        raise NotImplementedError

    def _likelihood(self, z: torch.Tensor, mask: torch.Tensor | None) -> dist.Distribution:
        raise NotImplementedError

    # -- encoder ---------------------------------------------------------------------------
    def encode(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): loc and scale, each of shape (N, L). Missing entries are zero-filled, and
        with ``mask_input=True`` the mask itself is an input (as in MIWAE)."""
        if self.mask_input:
            m = torch.ones_like(x) if mask is None else mask.to(x.dtype)
            h = self.encoder(torch.cat([x * m, m], -1))
        else:
            h = self.encoder(x)
        loc, raw = h.split(self.latent_dim, -1)
        return loc, F.softplus(raw) + 1e-5

    # -- the Pyro story ----------------------------------------------------------------------
    def model(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """z_n ~ N(0, I_L); x_n | z_n ~ the decoder's likelihood over the observed entries.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        """
        n = x.shape[0]
        with pyro.plate(DATA_PLATE, n, dim=-1):
            prior = dist.Normal(x.new_zeros(()), 1.0).expand([n, self.latent_dim]).to_event(1)
            z = pyro.sample(self.latent_site, prior)
            pyro.sample("x", self._likelihood(z, mask), obs=x)

    def guide(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """z_n ~ N(m_φ(x_n), diag s²_φ(x_n))."""
        loc, scale = self.encode(x, mask)
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            pyro.sample(self.latent_site, dist.Normal(loc, scale).to_event(1))

    # -- direct tensor path ------------------------------------------------------------------
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
        loc, scale = self.encode(x, mask)
        if z is None:
            eps = torch.randn((num_particles, *loc.shape), dtype=loc.dtype, device=loc.device)
            z = loc + scale * eps  # (K, N, L)
        log_lik = self._log_lik(z, x, mask)
        if stop_q_grad:
            log_q = _normal_log_prob(z, loc.detach(), scale.detach())
        else:
            log_q = _normal_log_prob(z, loc, scale)
        log_p = _std_normal_log_prob(z) + log_lik
        zeros = x.new_zeros(z.shape[0])
        return LogWeights(
            log_p=log_p,
            log_q=log_q,
            global_log_p=zeros,
            global_log_q=zeros,
            samples={self.latent_site: z},
            local_sites=(self.latent_site,),
            log_lik=log_lik,
            log_q_score=None,
        )

    def meanfield_terms(
        self, x: torch.Tensor, mask: torch.Tensor | None, num_particles: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two terms of the mean-field ELBO from one encoder pass, and nothing else.

        The training step needs only E_q[log p(x | z)] and the closed-form KL; skipping log q,
        the log prior and the bookkeeping of :meth:`particle_log_weights` saves about a hundred
        small tensor operations per step, which is what separates a Pyro-style step from a
        hand-written one.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D) or None
        num_particles : int
            K reparameterised draws of z per datum.

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
            return self._log_lik(z, x, mask).unsqueeze(0), _gaussian_kl(loc, scale)
        eps = torch.randn((num_particles, *loc.shape), dtype=loc.dtype, device=loc.device)
        return self._log_lik(loc + scale * eps, x, mask), _gaussian_kl(loc, scale)

    def observation(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z): batch shape z.shape[:-1], event shape (D,)."""
        return self._likelihood(z, None)

    def analytic_kl(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z | x_n) ‖ N(0, I)) in closed form, shape (N,)."""
        return _gaussian_kl(*self.encode(x, mask))


class VAE(_AmortizedGaussianLVM):
    """A variational autoencoder with MLP encoder and decoder.

    Parameters
    ----------
    dim : int
        D, features per datum (784 for MNIST).
    latent_dim : int
        L.
    hidden : sequence of int
        Hidden layer widths of the encoder; the decoder mirrors them.
    likelihood : {"bernoulli", "gaussian"}
        Bernoulli(logits_θ(z)) for binary pixels, or N(μ_θ(z), diag σ²_θ(z)) with the diagonal
        covariance learned too, as in the lecture.
    mask_input : bool
        Feed the mask to the encoder beside the zero-filled data (MIWAE), for data with missing
        entries.

    Examples
    --------
    >>> vae = VAE(dim=784, latent_dim=20, hidden=(400,), likelihood="bernoulli")
    >>> vae.encode(torch.zeros(3, 784))[0].shape
    torch.Size([3, 20])
    """

    def __init__(
        self,
        dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (400,),
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        *,
        mask_input: bool = False,
    ):
        super().__init__(dim, latent_dim, mask_input)
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}.")
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {hidden}.")
        self.hidden = hidden
        self.likelihood = likelihood
        in_dim = 2 * dim if mask_input else dim
        self.encoder = _mlp([in_dim, *hidden, 2 * latent_dim])
        out = dim if likelihood == "bernoulli" else 2 * dim
        self.decoder = _mlp([latent_dim, *reversed(hidden), out])

    def decode(self, z: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The decoder: logits (..., D) for Bernoulli, or (loc, scale) for Gaussian."""
        h = self.decoder(z)
        if self.likelihood == "bernoulli":
            return h
        loc, raw = h.split(self.dim, -1)
        return loc, F.softplus(raw) + 1e-3

    def _likelihood(self, z, mask):
        if self.likelihood == "bernoulli":
            lik = dist.Bernoulli(logits=self.decode(z), validate_args=False)
        else:
            loc, scale = self.decode(z)
            lik = dist.Normal(loc, scale)
        if mask is not None:
            lik = lik.mask(mask)
        return lik.to_event(1)

    def _log_lik(self, z, x, mask):
        if self.likelihood == "bernoulli":
            logits = self.decode(z)
            per = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        else:
            loc, scale = self.decode(z)
            per = -0.5 * (((x - loc) / scale).pow(2) + 2 * scale.log() + _LOG_2PI)
        if mask is not None:
            per = per * mask.to(per.dtype)
        return per.sum(-1)

    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None, seed: int) -> None:
        """Start the decoder's output bias at the data: the logit of each pixel's mean
        (Bernoulli), or its mean and spread (Gaussian). Worth about a nat on MNIST."""
        m = torch.ones_like(x) if mask is None else mask.to(x.dtype)
        count = m.sum(0).clamp(min=1)
        mean = (x * m).sum(0) / count
        last = self.decoder[-1]
        with torch.no_grad():
            if self.likelihood == "bernoulli":
                p = mean.clamp(1e-3, 1 - 1e-3)
                last.bias.copy_(torch.log(p) - torch.log1p(-p))
            else:
                var = ((x - mean).pow(2) * m).sum(0) / count
                sd = var.sqrt().clamp(min=1e-2)
                last.bias[: self.dim].copy_(mean)
                last.bias[self.dim :].copy_(torch.log(torch.expm1(sd)))  # softplus⁻¹

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's mean at the encoder's mean: E[x | z = m_φ(x)], shape (N, D)."""
        loc, _ = self.encode(x, mask)
        out = self.decode(loc)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out[0]

    @torch.no_grad()
    def sample(self, num_samples: int, *, mean: bool = True) -> torch.Tensor:
        """Draw x from the model: z ~ N(0, I), then the decoder's mean (or a draw), (S, D)."""
        ref = next(self.parameters())
        z = torch.randn(num_samples, self.latent_dim, dtype=ref.dtype, device=ref.device)
        out = self.decode(z)
        if self.likelihood == "bernoulli":
            p = torch.sigmoid(out)
            return p if mean else torch.bernoulli(p)
        loc, scale = out
        return loc if mean else loc + scale * torch.randn_like(loc)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, latent_dim={self.latent_dim}, hidden={self.hidden}, "
            f"likelihood={self.likelihood!r}, mask_input={self.mask_input}"
        )


class ToyVAE(_AmortizedGaussianLVM):
    """The lecture's 2-D decoder, exactly: μ_θ(z) = σ(Az + c), Σ_θ(z) = diag(exp(σ(Bz + d))).

    θ = (A, B, c, d), each 2×2 or 2. The covariance is scaled by ``noise_scale²`` (the lecture's
    form is ``noise_scale=1``), as in ``datasets.load("toy2d")``, whose true process is
    ``ToyVAE.from_params(datasets.TOY2D)``.

    Parameters
    ----------
    hidden : sequence of int
        Encoder hidden widths.
    noise_scale : float
        Fixed factor s in Σ_θ(z) = s² diag(exp(σ(Bz + d))).
    """

    def __init__(self, hidden: Sequence[int] = (64, 64), noise_scale: float = 0.05):
        super().__init__(2, 2, mask_input=False)
        if not noise_scale > 0:
            raise ValueError(f"noise_scale must be positive, got {noise_scale!r}.")
        self.noise_scale = float(noise_scale)
        g = torch.Generator().manual_seed(0)
        self.A = nn.Parameter(torch.randn(2, 2, generator=g))
        self.B = nn.Parameter(0.1 * torch.randn(2, 2, generator=g))
        self.c = nn.Parameter(torch.zeros(2))
        self.d = nn.Parameter(torch.zeros(2))
        self.encoder = _mlp([2, *hidden, 4], activation=nn.Tanh)

    @classmethod
    def from_params(cls, params, hidden: Sequence[int] = (64, 64)) -> ToyVAE:
        """A ToyVAE whose θ equals ``params`` (a ``datasets.Toy2DParams``)."""
        model = cls(hidden=hidden, noise_scale=params.noise_scale)
        a, b, c, d = params.as_tensors(torch.float32, torch.device("cpu"))
        with torch.no_grad():
            model.A.copy_(a)
            model.B.copy_(b)
            model.c.copy_(c)
            model.d.copy_(d)
        return model

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ_θ(z) and the standard deviation sqrt of Σ_θ(z)'s diagonal, each (..., 2)."""
        loc = torch.sigmoid(z @ self.A.T + self.c)
        var = self.noise_scale**2 * torch.exp(torch.sigmoid(z @ self.B.T + self.d))
        return loc, var.sqrt()

    def _likelihood(self, z, mask):
        loc, scale = self.decode(z)
        lik = dist.Normal(loc, scale)
        if mask is not None:
            lik = lik.mask(mask)
        return lik.to_event(1)

    def _log_lik(self, z, x, mask):
        loc, scale = self.decode(z)
        per = -0.5 * (((x - loc) / scale).pow(2) + 2 * scale.log() + _LOG_2PI)
        if mask is not None:
            per = per * mask.to(per.dtype)
        return per.sum(-1)

    @torch.no_grad()
    def log_density(
        self, x: torch.Tensor, num_grid: int = 100, extent: float = 5.0
    ) -> torch.Tensor:
        """log p_θ(x) by quadrature over a grid of z in [-extent, extent]², shape (N,).

        In two dimensions the integral over z is cheap to take on a fine grid, so the true and
        the learned densities can be compared without any bound. The default 100² grid agrees
        with a 400² one to about 1e-5 nats for the toy2d process, at a sixteenth of the cost.
        """
        ticks = torch.linspace(-extent, extent, num_grid, dtype=x.dtype, device=x.device)
        zz = torch.cartesian_prod(ticks, ticks)  # (G, 2)
        log_cell = 2 * math.log(float(ticks[1] - ticks[0]))
        loc, scale = self.decode(zz)  # (G, 2)
        out = []
        for xb in x.split(512):
            lik = -0.5 * (
                ((xb.unsqueeze(1) - loc) / scale).pow(2) + 2 * scale.log() + _LOG_2PI
            ).sum(-1)  # (n, G)
            out.append(torch.logsumexp(lik + _std_normal_log_prob(zz), -1) + log_cell)
        return torch.cat(out)
