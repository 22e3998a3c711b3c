"""ppl-lvm: latent-variable models on Pyro, with exact, variational and importance-sampling
inference behind one model/guide contract.

>>> from ppl_lvm import datasets, models, inference, diagnostics
"""

from . import datasets, diagnostics, inference, models, plots
from .comparison import Comparison, StoryComparison, compare
from .completion import Completion, complete
from .core import Evidence, FitResult, Posterior, UnsupportedModelError, memory_budget
from .inference import Engine
from .models import LatentVariableModel, from_functions

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "Completion",
    "Engine",
    "Evidence",
    "FitResult",
    "LatentVariableModel",
    "Posterior",
    "StoryComparison",
    "UnsupportedModelError",
    "__version__",
    "compare",
    "complete",
    "datasets",
    "diagnostics",
    "from_functions",
    "inference",
    "memory_budget",
    "models",
    "plots",
]
