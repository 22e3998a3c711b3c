"""Generative stories: the model contract and the built-in latent-variable models."""

from .amortized import AmortizedLVM
from .autoregressive import Autoregressive
from .base import DATA_PLATE, GuideStructure, LatentVariableModel, SiteInfo, discrete_state_count
from .binary import BinaryLatentFactors
from .conv_vae import ConvVAE
from .deep import AmortizedGaussianLVM
from .linear import LinearGaussian
from .mixture import BernoulliMixture, CategoricalMixture, GaussianMixture, MixtureModel
from .story import FunctionModel, as_model, conform_data, from_functions
from .vae import VAE, ToyVAE

__all__ = [
    "DATA_PLATE",
    "VAE",
    "AmortizedGaussianLVM",
    "AmortizedLVM",
    "Autoregressive",
    "BernoulliMixture",
    "BinaryLatentFactors",
    "CategoricalMixture",
    "ConvVAE",
    "FunctionModel",
    "GaussianMixture",
    "GuideStructure",
    "LatentVariableModel",
    "LinearGaussian",
    "MixtureModel",
    "SiteInfo",
    "ToyVAE",
    "as_model",
    "conform_data",
    "discrete_state_count",
    "from_functions",
]
