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
from .svi import SVI

__all__ = [
    "SVI",
    "Engine",
    "Enumeration",
    "Evidence",
    "FitResult",
    "LogWeights",
    "ModelGuideMismatchError",
    "Posterior",
    "UnsupportedModelError",
    "check_model_guide",
    "log_weights",
]
