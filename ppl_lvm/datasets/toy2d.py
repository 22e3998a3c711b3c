"""The toy 2-D latent-variable model: its parameters, density, sampler and data set."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.checks import check_positive_int
from ._dataset import Dataset

__all__ = ["TOY2D", "Toy2DParams", "load_toy2d", "sample_toy2d", "toy2d_mean_and_variance"]


# --------------------------------------------------------------------------------------------
# Toy 2-D generative process
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Toy2DParams:
    """Parameters of the toy 2-D latent-variable model.

    The model is ``z ~ N(0, I_2)`` and ``x | z ~ N(sigmoid(A z + c),
    diag(noise_scale**2 * exp(sigmoid(B z + d))))``; the second argument of the normal is the
    covariance diagonal.  With ``noise_scale = 1`` this is the textbook form, but then the
    noise standard deviation (between 1 and e**0.5) would swamp the mean, which lies in
    (0, 1); a small ``noise_scale`` keeps the curved shape of the mean visible.

    Parameters
    ----------
    A, B : tuple of tuple of float
        2×2 weight matrices (row-major) of the mean and the variance.
    c, d : tuple of float
        Length-2 offsets of the mean and the variance.
    noise_scale : float
        Multiplies the noise standard deviation.
    """

    A: tuple[tuple[float, float], tuple[float, float]]
    B: tuple[tuple[float, float], tuple[float, float]]
    c: tuple[float, float]
    d: tuple[float, float]
    noise_scale: float = 0.05

    def as_tensors(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(A [2, 2], B [2, 2], c [2], d [2])`` as tensors."""
        a, b, c, d = (
            torch.tensor(p, dtype=dtype, device=device) for p in (self.A, self.B, self.c, self.d)
        )
        return a, b, c, d


# Large weights push A z + c into sigmoid's saturating tails, so the mean bends the Gaussian
# latent into a curved, corner-heavy density; B mixes both latents so the noise level varies
# across the picture too.
TOY2D = Toy2DParams(
    A=((3.0, -2.0), (1.5, 2.5)),
    B=((2.0, 1.0), (-1.0, 2.0)),
    c=(0.5, -0.5),
    d=(-1.0, 1.0),
    noise_scale=0.05,
)


def toy2d_mean_and_variance(
    z: torch.Tensor, params: Toy2DParams = TOY2D
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance diagonal of ``x | z`` in the toy 2-D model.

    Parameters
    ----------
    z : torch.Tensor
        Latents, shape ``[..., 2]``.
    params : Toy2DParams, default TOY2D
        Model parameters.

    Returns
    -------
    mean : torch.Tensor
        ``sigmoid(A z + c)``, shape ``[..., 2]``.
    var : torch.Tensor
        ``noise_scale**2 * exp(sigmoid(B z + d))``, shape ``[..., 2]``.
    """
    if z.shape[-1] != 2:
        raise ValueError(f"z must have shape [..., 2], got {tuple(z.shape)}")
    a, b, c, d = params.as_tensors(dtype=z.dtype, device=z.device)
    mean = torch.sigmoid(z @ a.T + c)
    var = params.noise_scale**2 * torch.exp(torch.sigmoid(z @ b.T + d))
    return mean, var


def sample_toy2d(
    n: int, seed: int = 0, params: Toy2DParams = TOY2D
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw from the toy 2-D model.

    Parameters
    ----------
    n : int
        Number of draws.
    seed : int, default 0
        Seed of a private ``torch.Generator``; the global RNG is untouched.
    params : Toy2DParams, default TOY2D
        Model parameters.

    Returns
    -------
    x : torch.Tensor
        Observations, shape ``[n, 2]``, float32.
    z : torch.Tensor
        The latents that generated them, shape ``[n, 2]``, float32.
    """
    check_positive_int("n", n)
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=generator)
    mean, var = toy2d_mean_and_variance(z, params)
    x = mean + var.sqrt() * torch.randn(n, 2, generator=generator)
    return x, z


def load_toy2d(n: int = 2000, seed: int = 0, params: Toy2DParams = TOY2D) -> Dataset:
    """Draws from the toy 2-D model as a data set.

    Parameters
    ----------
    n : int, default 2000
        Number of draws.
    seed : int, default 0
        Seed of the draws.
    params : Toy2DParams, default TOY2D
        Model parameters.

    Returns
    -------
    Dataset
        ``x`` of shape ``[n, 2]``; ``info["z"]`` holds the true latents ``[n, 2]`` (kept
        aligned with the rows by :meth:`Dataset.split`), ``info["params"]`` the parameters.
    """
    x, z = sample_toy2d(n, seed, params)
    return Dataset(
        x=x,
        name="toy2d",
        info={"params": params, "z": z, "n": n, "seed": seed, "per_row": ("z",)},
    )
