"""Inference engines; one per module, all subclassing :class:`Engine`."""

from ._weights import LogWeights, check_model_guide, log_weights
from .base import (
    Engine,
    Evidence,
    FitResult,
    ModelGuideMismatchError,
    Posterior,
    UnsupportedModelError,
)
from .enumeration import Enumeration
from .importance import ImportanceSampling
from .svi import SVI

__all__ = [
    "SVI",
    "Engine",
    "Enumeration",
    "Evidence",
    "FitResult",
    "ImportanceSampling",
    "LogWeights",
    "ModelGuideMismatchError",
    "Posterior",
    "UnsupportedModelError",
    "check_model_guide",
    "log_weights",
]
