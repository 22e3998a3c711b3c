"""A catalogue of generative stories written by others (Pyro's and NumPyro's tutorials,
examples and tests), each kept as close as possible to how its author wrote it.

Every module ``tests/stories/<name>.py`` cites its source (repository and path), lists in its
docstring exactly what ppl_lvm's story contract made us change, and exposes:

- ``model`` and ``guide`` (or ``None``): the Pyro functions, as ``fn(x, mask=None)``;
- ``data()``: ``x``, or ``(x, mask)``;
- ``exact_log_evidence(x)``: the exact total log p(x) where a closed form, a brute-force sum or
  a converged quadrature exists, else ``None``;
- ``ENGINES``: engine name -> the outcome a correct engine must give (see :data:`OUTCOMES`);
- optionally ``DATA_PLATE`` (the name of the story's plate over data, default "data") and
  ``STORY_KWARGS`` (extra keyword arguments for model and guide).

The expected outcomes are what Pyro itself (``Trace_ELBO``, ``TraceEnum_ELBO``) or the closed
form says, not what the engines do today; ``tests/test_stories.py`` runs the matrix.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

#: The engines every story is run through, by the names ``ENGINES`` uses.
ENGINE_NAMES = ("enumeration", "is-prior", "is-guide", "svi-elbo", "svi-iwae", "ais")

#: What ``ENGINES`` may say:
#: "exact"    - kind "exact", equal to ``exact_log_evidence`` to 1e-5 (float64);
#: "estimate" - within 4 standard errors of ``exact_log_evidence``;
#: "bound"    - a lower bound: at most ``exact_log_evidence`` + 4 standard errors;
#: "refuse"   - raises UnsupportedModelError or ModelGuideMismatchError, naming an engine that
#:              accepts the story;
#: "runs"     - finite numbers (no exact value to compare with, or a Monte Carlo estimate whose
#:              standard error is not trustworthy at K = 2000).
OUTCOMES = ("exact", "estimate", "bound", "refuse", "runs")

#: The catalogue, one module each.
STORIES = (
    "autoguide_exact_batch",
    "autoguide_exact_batch_diagonal",
    "autoguide_exact_tree",
    "inference_normal_normal",
    "svi_part_i_beta_bernoulli",
    "mle_map_delta",
    "mle_map_mle",
    "gmm_tutorial_map",
    "gmm_tutorial_full_guide",
    "enumeration_tutorial_gmm",
    "autoguide_discrete_parallel",
    "enum_gmm_batch",
    "enum_plate_3",
    "enum_plate_3_masked",
    "enum_plate_3_scaled",
    "enum_plate_4",
    "factor_analysis",
    "vae_tiny",
    "ss_vae_m2",
    "hmm_model_1",
    "lda_small",
    "eight_schools_pyro",
    "eight_schools_numpyro",
)


def load(name: str) -> ModuleType:
    """A fresh copy of story ``name``: the module is re-executed, so its networks, autoguides
    and data are rebuilt (under the default dtype in force) and nothing learnt or drawn by an
    earlier test carries over."""
    module = importlib.import_module(f"{__name__}.{name}")
    return importlib.reload(module)


def build(module: ModuleType):
    """The story as ppl_lvm sees it: ``models.from_functions(model, guide, name=...)``, with
    the story's data plate and keyword arguments where ``from_functions`` takes them."""
    from ppl_lvm import models

    kwargs = {}
    params = inspect.signature(models.from_functions).parameters
    plate = getattr(module, "DATA_PLATE", "data")
    if plate != "data" and "data_plate" in params:
        kwargs["data_plate"] = plate
    story_kwargs = getattr(module, "STORY_KWARGS", {})
    if story_kwargs and any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kwargs.update(story_kwargs)
    name = module.__name__.rsplit(".", 1)[-1]
    return models.from_functions(module.model, module.guide, name=name, **kwargs)


def data_of(module: ModuleType):
    """``(x, mask)`` of a story; ``mask`` is None when ``data()`` returns ``x`` alone."""
    out = module.data()
    if isinstance(out, tuple):
        return out
    return out, None
