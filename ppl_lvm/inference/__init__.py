"""Inference engines, one per module, all subclassing :class:`Engine`, and the one registry."""

from ..core.errors import ModelGuideMismatchError, UnsupportedModelError
from ..core.logweights import LogWeights
from ..core.posterior import Posterior
from ..core.results import Evidence, FitResult
from ._weights import check_model_guide, log_weights
from .base import Engine
from .enumeration import Enumeration
from .importance import ImportanceSampling
from .registry import EngineSpec, available, create, register, spec, unregister
from .svi import SVI

__all__ = [
    "SVI",
    "Engine",
    "EngineSpec",
    "Enumeration",
    "Evidence",
    "FitResult",
    "ImportanceSampling",
    "LogWeights",
    "ModelGuideMismatchError",
    "Posterior",
    "UnsupportedModelError",
    "available",
    "check_model_guide",
    "create",
    "log_weights",
    "register",
    "spec",
    "unregister",
]
