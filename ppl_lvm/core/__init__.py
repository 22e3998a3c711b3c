"""The bottom layer: results and errors, pure statistics, the ArviZ bridge, data checks, seeded
randomness and the memory budget. It imports nothing else from ppl_lvm."""

from .arviz_bridge import (
    KHAT_LABELS,
    KhatSummary,
    LooWaic,
    khat_summary,
    loo_waic,
    to_inference_data,
)
from .checks import check_choice, check_data, check_positive_int
from .errors import ModelGuideMismatchError, UnsupportedModelError
from .logweights import LogWeights
from .memory import DEFAULT_BUDGET, chunk_rows, current_budget, memory_budget, row_slices
from .posterior import Posterior
from .results import EVIDENCE_KINDS, Evidence, EvidenceKind, FitResult, format_number
from .rng import fork_rng, seeded
from .stats import LOG_2PI, effective_sample_size, iwae_bound, log_mean_weight, pareto_khat

__all__ = [
    "DEFAULT_BUDGET",
    "EVIDENCE_KINDS",
    "KHAT_LABELS",
    "LOG_2PI",
    "Evidence",
    "EvidenceKind",
    "FitResult",
    "KhatSummary",
    "LogWeights",
    "LooWaic",
    "ModelGuideMismatchError",
    "Posterior",
    "UnsupportedModelError",
    "check_choice",
    "check_data",
    "check_positive_int",
    "chunk_rows",
    "current_budget",
    "effective_sample_size",
    "fork_rng",
    "format_number",
    "iwae_bound",
    "khat_summary",
    "log_mean_weight",
    "loo_waic",
    "memory_budget",
    "pareto_khat",
    "row_slices",
    "seeded",
    "to_inference_data",
]
