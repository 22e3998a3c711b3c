"""A small convolutional VAE for images stored as flat rows: ``ConvVAE``.

It is an :class:`~.deep.AmortizedGaussianLVM` that gives an encoder and a decoder and
nothing else; everything the engines use comes from there.
"""

from __future__ import annotations

from torch import nn

from ..core.checks import check_positive_int
from .amortized import Likelihood
from .deep import AmortizedGaussianLVM

__all__ = ["ConvVAE"]


class ConvVAE(AmortizedGaussianLVM):
    """A VAE with convolutional encoder and decoder, on images of shape (H, W) stored as rows
    of D = H·W entries, like every model's data.

    Encoder: the row as a (1, H, W) image (two channels with ``mask_input``: the zero-filled
    image and the mask), a 3×3 convolution to C channels, a 3×3 stride-2 convolution to 2C
    channels at (⌈H/2⌉, ⌈W/2⌉), and a linear map to the 2L numbers of q(z | x). Decoder: the
    mirror image, a linear map from z to (2C, ⌈H/2⌉, ⌈W/2⌉), a 3×3 stride-2 transposed
    convolution back to (C, H, W), and a 3×3 convolution to one channel of Bernoulli logits, or
    to two (mean and raw scale) for a Gaussian likelihood; ReLU between the layers.

    Capabilities: DetachableGuide, MeanFieldTerms (with AnalyticKL), Observation, Generative.

    Parameters
    ----------
    image_shape : (int, int)
        (H, W).
    latent_dim : int
        L.
    channels : int
        C, the channels of the first convolution; the second has 2C.
    likelihood : {"bernoulli", "continuous_bernoulli", "gaussian"}
        Bernoulli(logits(z)) for binary (or grey, as soft targets) pixels, or N(μ(z), σ²(z)).
    mask_input : bool
        Feed the mask to the encoder as a second channel (MIWAE), for data with missing pixels.

    Examples
    --------
    >>> import torch
    >>> vae = ConvVAE(image_shape=(8, 8), latent_dim=4, channels=8)
    >>> vae.decode(torch.zeros(5, 3, 4)).shape
    torch.Size([5, 3, 64])
    """

    def __init__(
        self,
        image_shape: tuple[int, int] = (8, 8),
        latent_dim: int = 8,
        channels: int = 16,
        likelihood: Likelihood = "bernoulli",
        *,
        mask_input: bool = False,
    ):
        if len(tuple(image_shape)) != 2:
            raise ValueError(f"image_shape must be (H, W), got {image_shape!r}.")
        h, w = (check_positive_int("image_shape entries", s) for s in image_shape)
        super().__init__(h * w, latent_dim, likelihood, mask_input=mask_input)
        c = check_positive_int("channels", channels)
        self.image_shape = (h, w)
        hh, ww = (h + 1) // 2, (w + 1) // 2  # after the stride-2 convolution
        in_ch = 2 if mask_input else 1
        out_ch = 2 if likelihood == "gaussian" else 1
        self.encoder = nn.Sequential(
            nn.Unflatten(-1, (in_ch, h, w)),
            nn.Conv2d(in_ch, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * c * hh * ww, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 2 * c * hh * ww),
            nn.ReLU(),
            nn.Unflatten(-1, (2 * c, hh, ww)),
            # output_padding makes the output exactly (H, W) for odd and even sizes alike
            nn.ConvTranspose2d(
                2 * c, c, 3, stride=2, padding=1, output_padding=(1 - h % 2, 1 - w % 2)
            ),
            nn.ReLU(),
            nn.Conv2d(c, out_ch, 3, padding=1),
            nn.Flatten(),
        )
