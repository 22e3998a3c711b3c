"""Deep latent-variable models: ``VAE`` and the lecture's 2-D ``ToyVAE``.

z ~ N(0, I), x | z ~ p_θ(x | z) with a neural decoder: N(μ_θ(z), diag σ²_θ(z)) or
Bernoulli(logits_θ(z)), "a mixture of an infinite number of Gaussians". The guide is an
amortised Gaussian encoder q_φ(z | x) = N(m_φ(x), diag s²_φ(x)).

Both are :class:`~.deep.AmortizedGaussianLVM` subclasses that give an encoder and a
decoder; the Pyro model/guide pair and the direct tensor paths the engines use (the particle
log weights, the closed-form KL, the mean-field terms) come from there.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ..core.checks import check_data
from ..core.densities import normal_log_prob, std_normal_log_prob
from ..core.memory import row_slices
from .amortized import Likelihood
from .capabilities import ExactEvidence, Initializable, ModelSample
from .deep import AmortizedGaussianLVM

__all__ = ["VAE", "ToyVAE"]


def _mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none at the end)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class VAE(AmortizedGaussianLVM, Initializable):
    """A variational autoencoder with MLP encoder and decoder.

    Capabilities: DetachableGuide, MeanFieldTerms (with AnalyticKL), Observation, Initializable,
    Generative.

    Parameters
    ----------
    dim : int
        D, features per datum (784 for MNIST).
    latent_dim : int
        L.
    hidden : sequence of int
        Hidden layer widths of the encoder; the decoder mirrors them.
    likelihood : {"bernoulli", "continuous_bernoulli", "gaussian"}
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
        likelihood: Likelihood = "bernoulli",
        *,
        mask_input: bool = False,
    ):
        super().__init__(dim, latent_dim, likelihood, mask_input=mask_input)
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {hidden}.")
        self.hidden = hidden
        in_dim = 2 * dim if mask_input else dim
        self.encoder = _mlp([in_dim, *hidden, 2 * latent_dim])
        out = 2 * dim if likelihood == "gaussian" else dim
        self.decoder = _mlp([latent_dim, *reversed(hidden), out])

    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None, seed: int) -> None:
        """Start the decoder's output bias at the data: the logit of each pixel's mean
        (Bernoulli), or its mean and spread (Gaussian). Worth about a nat on MNIST."""
        m = torch.ones_like(x) if mask is None else mask.to(x.dtype)
        count = m.sum(0).clamp(min=1)
        mean = (x * m).sum(0) / count
        last = self.decoder[-1]
        with torch.no_grad():
            if self.likelihood != "gaussian":
                p = mean.clamp(1e-3, 1 - 1e-3)
                last.bias.copy_(torch.log(p) - torch.log1p(-p))
            else:
                var = ((x - mean).pow(2) * m).sum(0) / count
                sd = var.sqrt().clamp(min=1e-2)
                last.bias[: self.dim].copy_(mean)
                last.bias[self.dim :].copy_(torch.log(torch.expm1(sd)))  # softplus⁻¹

    def sample(
        self, num_samples: int, *, seed: int | None = None, mean: bool = True
    ) -> ModelSample:
        """Draw from the model: z ~ N(0, I), then the decoder's mean (the default) or, with
        ``mean=False``, a draw of x. Returns ``ModelSample(x (S, D), z (S, L))``."""
        return super().sample(num_samples, seed=seed, mean=mean)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, latent_dim={self.latent_dim}, hidden={self.hidden}, "
            f"likelihood={self.likelihood!r}, mask_input={self.mask_input}"
        )


class ToyVAE(AmortizedGaussianLVM, ExactEvidence):
    """The lecture's 2-D decoder, exactly: μ_θ(z) = σ(Az + c), Σ_θ(z) = diag(exp(σ(Bz + d))).

    θ = (A, B, c, d), each 2×2 or 2. The covariance is scaled by ``noise_scale²`` (the lecture's
    form is ``noise_scale=1``), as in ``datasets.load("toy2d")``, whose true process is
    ``ToyVAE.from_params(datasets.TOY2D)``.

    Capabilities: DetachableGuide, MeanFieldTerms (with AnalyticKL), ExactEvidence (by
    quadrature over z), Observation, Generative.

    Parameters
    ----------
    hidden : sequence of int
        Encoder hidden widths.
    noise_scale : float
        Fixed factor s in Σ_θ(z) = s² diag(exp(σ(Bz + d))).
    """

    def __init__(self, hidden: Sequence[int] = (64, 64), noise_scale: float = 0.05):
        super().__init__(2, 2, "gaussian")
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

    @torch.no_grad()
    def exact_log_evidence(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        num_grid: int = 100,
        extent: float = 5.0,
    ) -> torch.Tensor:
        """log p_θ(x) by quadrature over a grid of z in [-extent, extent]², shape (N,).

        In two dimensions the integral over z is cheap to take on a fine grid, so the true and
        the learned densities can be compared without any bound. The default 100² grid agrees
        with a 400² one to about 1e-5 nats for the toy2d process, at a sixteenth of the cost.

        Parameters
        ----------
        x : torch.Tensor of shape (N, 2)
        mask : torch.Tensor of shape (N, 2), bool, optional
            True where observed; a missing coordinate is integrated out exactly.
        num_grid : int
            Grid points per axis of z.
        extent : float
            Half-width of the grid.
        """
        x, mask = check_data(x, mask)
        ticks = torch.linspace(-extent, extent, num_grid, dtype=x.dtype, device=x.device)
        zz = torch.cartesian_prod(ticks, ticks)  # (G, 2)
        log_cell = 2 * math.log(float(ticks[1] - ticks[0]))
        loc, scale = self.decode(zz)  # (G, 2)
        log_prior = std_normal_log_prob(zz)
        out = []
        for rows in row_slices(x.shape[0], zz.shape[0] * 2):
            per = normal_log_prob(x[rows].unsqueeze(1), loc, scale)  # (n, G, 2)
            if mask is not None:
                per = per * mask[rows].unsqueeze(1).to(per.dtype)
            out.append(torch.logsumexp(per.sum(-1) + log_prior, -1) + log_cell)
        return torch.cat(out)

    def log_density(
        self, x: torch.Tensor, num_grid: int = 100, extent: float = 5.0
    ) -> torch.Tensor:
        """Deprecated: :meth:`exact_log_evidence`, under its previous name."""
        warnings.warn(
            "ToyVAE.log_density is deprecated and will be removed in the next release; use "
            "ToyVAE.exact_log_evidence(x, num_grid=..., extent=...).",
            FutureWarning,
            stacklevel=2,
        )
        return self.exact_log_evidence(x, num_grid=num_grid, extent=extent)
