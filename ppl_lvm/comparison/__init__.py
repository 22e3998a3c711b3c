"""Compare engines on one story, or stories on the same data: log p(x), Bayes factors, LOO.

:func:`compare` has two forms.

- **One story, several engines** (:mod:`.engines`): each engine's ``log_evidence`` on the same
  data and seed, timed, gathered in a :class:`Comparison`: a table (engine, estimate, standard
  error, kind, ESS, k̂, seconds) and a figure of the per-datum means with their error bars.
- **Several stories** (:mod:`.stories`), given as a mapping ``{name: story}``: every story
  through every engine, gathered in a :class:`StoryComparison` with each story's log evidence,
  its log Bayes factor against a reference story and the factor's standard error, and PSIS-LOO
  from each engine's posterior through the one ArviZ bridge (:mod:`ppl_lvm.core.arviz_bridge`).

In both, an engine that refuses a story becomes a row whose ``note`` says why, so a user sees
at a glance which engines apply to their own model and what each would have needed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from .._typing import ModelLike
from ..core.data import Data, Mask
from ..inference import Bracket, Engine, available, create
from .engines import COLUMNS, Comparison, compare_engines
from .stories import STORY_COLUMNS, StoryComparison, compare_stories

__all__ = ["COLUMNS", "STORY_COLUMNS", "Comparison", "StoryComparison", "compare"]


def compare(
    model: ModelLike | Mapping[str, ModelLike],
    x: Data,
    mask: Mask = None,
    engines: Sequence[Engine | str] | Engine | str | None = None,
    *,
    seed: int | None = 0,
    out: str | os.PathLike | None = None,
    title: str | None = None,
    reference: str | None = None,
    loo: bool | None = None,
    brackets: Mapping[str, Bracket] | None = None,
) -> Comparison | StoryComparison:
    """Run engines' ``log_evidence`` on one story, or on several stories of the same data.

    Parameters
    ----------
    model : LatentVariableModel, (model_fn, guide_fn) pair, model function, or a mapping
        One story: its engines are compared, and a :class:`Comparison` comes back. A mapping
        ``{name: story}`` of such stories (``{"K=2": gmm2, "K=3": gmm3}``): the stories are
        compared on the same data, and a :class:`StoryComparison` comes back. A user's own
        functions work as for any engine.
    x : torch.Tensor of shape (N, ...), or dict of such tensors sharing N
    mask : torch.Tensor of x's shape, bool, optional
        True where an entry is observed.
    engines : list of Engine or str, optional
        Engine instances, or names registered in :func:`ppl_lvm.inference.available` for their
        registered settings. None runs every registered engine; those that refuse a story
        appear as rows with the reason in ``note``.
    seed : int or None
        Passed to every engine's ``log_evidence`` (and ``posterior``, for LOO); exact engines
        ignore it. The same seed gives the same numbers.
    out : path-like, optional
        A folder; the figure is saved there as ``compare.png`` (one story) or
        ``compare_stories.png`` (several). None draws no figure (call ``.plot`` later).
    title : str, optional
        Title of the figure.
    reference : str, optional
        Several stories only: the story every log Bayes factor is taken against. None takes,
        for each engine, the story with the largest log evidence by that engine, so every log
        Bayes factor is at most 0.
    loo : bool, optional
        Several stories only: whether to draw each engine's posterior and compute PSIS-LOO
        (``elpd_loo`` and its standard error). None means True for several stories; the
        one-story form computes no LOO and refuses ``loo=True``.

    brackets : mapping of str to Bracket, optional
        Several stories only: for a story's AIS rows, its bidirectional Monte Carlo bracket
        (:meth:`AnnealedImportanceSampling.bracket`, on data simulated from that story with the
        same AIS settings); the table and figure show the estimate with the bracket's gap above
        it.

    Returns
    -------
    Comparison
        For one story: one row per engine, in the order given.
    StoryComparison
        For a mapping: one row per story and engine, stories in the mapping's order.

    Raises
    ------
    ValueError
        For an unknown engine name (the message lists the valid ones), invalid data, an empty
        mapping, a mapping value that is no story, a ``reference`` that names no story, or
        ``reference``/``loo=True`` with one story.
    TypeError
        For an entry of ``engines`` that is neither an Engine nor a name.

    Examples
    --------
    >>> import torch
    >>> from ppl_lvm import models
    >>> from ppl_lvm.comparison import compare
    >>> gmm = models.GaussianMixture(dim=2, num_components=2)
    >>> table = compare(gmm, torch.randn(10, 2), engines=["enumeration", "is-prior", "elbo"])
    >>> [r["kind"] for r in table.rows]
    ['exact', 'estimate', None]
    >>> gmm3 = models.GaussianMixture(dim=2, num_components=3)
    >>> both = compare({"K=2": gmm, "K=3": gmm3}, torch.randn(10, 2), engines=["enumeration"])
    >>> [r["story"] for r in both.rows]
    ['K=2', 'K=3']
    """
    if isinstance(model, Mapping):
        return compare_stories(
            model,
            x,
            mask,
            engines,
            seed=seed,
            out=out,
            title=title,
            reference=reference,
            loo=True if loo is None else loo,
            brackets=brackets,
        )
    if reference is not None or loo or brackets:
        given = "reference" if reference is not None else "loo=True" if loo else "brackets"
        raise ValueError(
            f"{given} compares several stories, and one story was given; pass a mapping "
            "{name: story} such as {'K=2': gmm2, 'K=3': gmm3}, or leave it out."
        )
    return compare_engines(model, x, mask, engines, seed=seed, out=out, title=title)


def default_engine(name: str) -> Engine:
    """Deprecated: use :func:`ppl_lvm.inference.create`, which reads the one engine registry."""
    warnings.warn(
        "ppl_lvm.comparison.default_engine is deprecated; use ppl_lvm.inference.create(name).",
        FutureWarning,
        stacklevel=2,
    )
    return create(name)


def __getattr__(name: str) -> Any:
    # the old constant, for a release: the names now live in the registry
    if name == "ENGINE_NAMES":
        warnings.warn(
            "ppl_lvm.comparison.ENGINE_NAMES is deprecated; use ppl_lvm.inference.available().",
            FutureWarning,
            stacklevel=2,
        )
        return available()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
