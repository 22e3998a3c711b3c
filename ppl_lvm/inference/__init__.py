"""Inference engines, one per module, all subclassing :class:`Engine`, and the one registry."""

from functools import partial

from ..core.errors import ModelGuideMismatchError, UnsupportedModelError
from ..core.logweights import LogWeights
from ..core.posterior import Posterior
from ..core.results import Evidence, FitResult
from ._enumops import exact_log_marginal
from ._weights import check_model_guide, log_weights, log_weights_in_chunks
from .ais import AnnealedImportanceSampling, Bracket
from .base import Engine
from .enumeration import Enumeration
from .importance import ImportanceSampling
from .registry import EngineSpec, available, create, register, spec, unregister
from .svi import SVI

# The built-in engines, under the names the CLI has always used. One place: compare, the CLI's
# --engine, the demo and the README's table all read it. The bounds use 100 particles, which
# makes them tight enough to compare; `create("iwae", num_particles=20)` trains cheaper.
register("enumeration", Enumeration, label="exact log p(x), every discrete latent summed out")
_PROPOSALS = {
    "prior": "particles from the prior (naive Monte Carlo)",
    "uniform": "particles uniform over a finite latent space (naive Monte Carlo)",
    "guide": "particles from the learned guide q(z | x)",
}
for _proposal, _text in _PROPOSALS.items():
    register(
        f"is-{_proposal}",
        partial(ImportanceSampling, proposal=_proposal, num_particles=1000),
        label=f"importance sampling, {_text}",
    )
register("elbo", partial(SVI, objective="elbo", num_particles=100), label="evidence lower bound")
register(
    "iwae", partial(SVI, objective="iwae", num_particles=100), label="importance-weighted bound"
)
register(
    "meanfield",
    partial(SVI, objective="meanfield"),
    label="ELBO with its KL in closed form, the default fit of deep models",
)
register(
    "ais",
    partial(AnnealedImportanceSampling, proposal="prior"),
    label="annealed importance sampling from the prior, HMC moves",
)
del _proposal, _text, _PROPOSALS

__all__ = [
    "SVI",
    "AnnealedImportanceSampling",
    "Bracket",
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
    "exact_log_marginal",
    "log_weights",
    "log_weights_in_chunks",
    "register",
    "spec",
    "unregister",
]
