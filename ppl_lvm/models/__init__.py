"""Generative stories: the model contract and the built-in latent-variable models."""

from .base import (
    DATA_PLATE,
    FunctionModel,
    LatentVariableModel,
    SiteInfo,
    as_model,
    discrete_state_count,
    from_functions,
)
from .mixture import BernoulliMixture, CategoricalMixture, GaussianMixture, MixtureModel

__all__ = [
    "DATA_PLATE",
    "BernoulliMixture",
    "CategoricalMixture",
    "FunctionModel",
    "GaussianMixture",
    "LatentVariableModel",
    "MixtureModel",
    "SiteInfo",
    "as_model",
    "discrete_state_count",
    "from_functions",
]
