"""How a fit hands a user's story its minibatches, decided once at the start with a trial trace.

- **indices**: model and guide get the whole data set and the data plate's subsample indices are
  set to the minibatch (Pyro's own subsampling, :class:`~ppl_lvm.models._subsample.DataIndices`).
  A story that picks its rows with the plate's indices (``with pyro.plate("data", len(x),
  subsample_size=...) as ind: x[ind]``), per-datum ``pyro.param(..., event_dim=...)`` inside the
  plate and autoguides' local parameters all see their own rows, and the plate scales by N / B.
- **rows**: the story gets ``x[idx]`` and every site in the data plate is scaled by N / B. This
  is the way for a story that uses ``x`` inside the plate without the plate's indices; it is
  refused when the story's parameters depend on N (per-datum parameters would be aligned to
  positions in the minibatch, not to data).

Built-in models keep their own tensor path with ``x[idx]``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import pyro.poutine as poutine
import torch
from pyro.util import check_site_shape

from ..core.data import num_data, reference, take_rows
from ..core.errors import UnsupportedModelError
from ..core.rng import fork_rng
from ..models._subsample import DataIndices
from ..models.base import LatentVariableModel, sample_sites
from ..models.story import FunctionModel
from ._weights import plate_nesting

__all__ = ["Minibatches", "plan"]


@dataclass(frozen=True)
class Minibatches:
    """How the loop draws minibatches and how a step hands them to the story.

    Attributes
    ----------
    mode : {"tensor", "rows", "indices"}
        A built-in model's ``x[idx]``; a story's ``x[idx]`` scaled by N / B; or the whole data
        with the data plate's subsample indices set to ``idx``.
    batch_size : int or None
        B, what the loop draws; None hands the whole data set, in order, every step.
    exact : bool
        Every minibatch has exactly B rows (a story's own ``subsample_size``), so an epoch is
        ⌊N / B⌋ steps.
    rank : int or None
        Plate dims of model and guide, from the trial (None: not traced yet).
    """

    mode: Literal["tensor", "rows", "indices"]
    batch_size: int | None
    exact: bool = False
    rank: int | None = None


def _trial(
    lvm: LatentVariableModel,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    indices: torch.Tensor | None,
    check: bool = True,
) -> tuple[int, bool]:
    """The guide and the model replayed on it, with every site's shape checked against its
    plates as Pyro's ELBOs check it. Returns the plate nesting and whether the indices reached
    the data plate. Its draws come from a fixed stream of their own (same seed, same numbers)."""
    model, guide = lvm.model, lvm.guide
    handler = None if indices is None else DataIndices(lvm.data_plate, indices, num_data(x))
    if handler is not None:
        model, guide = handler(model), handler(guide)
    with lvm.scoped(), fork_rng():
        torch.default_generator.manual_seed(0)
        if handler is not None and lvm.has_guide:
            _probe_model(lvm, model, x, mask)
            torch.default_generator.manual_seed(0)  # the guide's draws as without the probe
        if lvm.has_guide:
            guide_tr = poutine.trace(guide).get_trace(x, mask)
            model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, mask)
            traces = [guide_tr, model_tr]
        else:
            traces = [poutine.trace(model).get_trace(x, mask)]
        rank = max(plate_nesting(tr) for tr in traces)
        for tr in traces if check else ():
            tr.compute_log_prob()
            for _, site in sample_sites(tr):
                check_site_shape(site, rank)
    return rank, handler is not None and handler.used > 0


def _probe_model(lvm: LatentVariableModel, model, x: Any, mask: Any) -> None:
    """The model alone (latents from its prior), before the guide: a story that uses ``x`` in
    the data plate without the plate's indices meets the plate's shape check at its first local
    site, and the guide need not run on all N data to show it (an encoder over the whole data
    set, once per fit). Only that error counts; any other, such as a prior Pyro cannot sample,
    is left to the full trial that follows, which replays the guide's draws."""
    try:
        poutine.trace(model).get_trace(x, mask)
    except ValueError as err:
        if f"Shape mismatch inside plate('{lvm.data_plate}')" in str(err):
            raise
    except Exception:  # judged by the full trial
        pass


def _first_lines(err: Exception) -> str:
    # Pyro appends a table of trace shapes to its errors; the first lines name the problem
    lines = [line.strip() for line in str(err).strip().splitlines()[:2]]
    return " ".join(lines) or type(err).__name__


def _shapes(lvm: LatentVariableModel) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in lvm._param_state()["params"].items()}


def _refuse_rows(lvm: LatentVariableModel, why: str, err: Exception | None) -> None:
    plate = lvm.data_plate
    raise UnsupportedModelError(
        f"story '{lvm.name}' uses x inside plate '{plate}' without the plate's indices, so its "
        f"minibatches would be rows x[idx]; but {why}, and they would be aligned to positions in "
        f"the minibatch, not to data. Index x by the plate's indices (with pyro.plate("
        f"'{plate}', len(x), subsample_size=B) as ind: ... x[ind] ..., and per-datum "
        "parameters as pyro.param(..., event_dim=...) inside the plate, or an autoguide), or "
        "fit with batch_size=None."
    ) from err


def plan(
    lvm: LatentVariableModel, x: torch.Tensor, mask: torch.Tensor | None, batch_size: int | None
) -> Minibatches:
    """Decide how minibatches reach ``lvm`` for data ``x`` (N, ...), and create its parameters
    at full size (the guide's first run sees all N data).

    Raises
    ------
    UnsupportedModelError
        For a story that takes rows ``x[idx]`` and whose parameters depend on N, with the advice
        to index ``x`` by the plate's indices or to use ``batch_size=None``.
    """
    n = num_data(x)
    if not isinstance(lvm, FunctionModel):
        return Minibatches("tensor", batch_size)
    declared = lvm.declared_subsample(x, mask)
    if declared is not None and batch_size is not None and batch_size != declared:
        warnings.warn(
            f"story '{lvm.name}' declares subsample_size={declared} in plate "
            f"'{lvm.data_plate}'; its minibatches have {declared} data, not batch_size="
            f"{batch_size}. Pass batch_size={declared} (or None) to silence this.",
            UserWarning,
            stacklevel=4,
        )
    size = declared if declared is not None else batch_size
    if size is None or size >= n:
        # the whole data set, in order, every step: the story sees x itself
        rank, _ = _trial(lvm, x, mask, None, check=False)
        return Minibatches("indices", None, rank=rank)
    # a trial minibatch that is neither the first rows nor in order
    idx = torch.arange(n - 1, n - 1 - size, -1, device=reference(x).device)
    try:
        rank, seen = _trial(lvm, x, mask, idx)
    except Exception as err:
        if declared is not None:
            raise UnsupportedModelError(
                f"story '{lvm.name}' declares subsample_size={declared} in plate "
                f"'{lvm.data_plate}' but fails when the plate's indices pick the data "
                f"({_first_lines(err)}); "
                f"index x by them: with pyro.plate('{lvm.data_plate}', len(x), "
                f"subsample_size={declared}) as ind: ... x[ind] ..."
            ) from err
        seen, failure = False, err
    else:
        failure = None
    if seen:
        return Minibatches("indices", size, exact=declared is not None, rank=rank)
    # rows: the story must not depend on N. Its parameters as they would be created for a
    # minibatch (in a store of their own) must match those created for the whole data set
    full = _shapes(lvm)
    state = lvm.__dict__.get("_ppl_param_state")
    lvm.__dict__["_ppl_param_state"] = None
    try:
        rank, _ = _trial(lvm, take_rows(x, idx), take_rows(mask, idx), None)
        small = _shapes(lvm)
    except Exception as err:
        _refuse_rows(lvm, f"it fails on a minibatch of {size} rows ({_first_lines(err)})", err)
    finally:
        lvm.__dict__["_ppl_param_state"] = state
    grown = sorted(k for k in small if k in full and small[k] != full[k])
    if grown:
        _refuse_rows(
            lvm, f"the shapes of its parameters {grown} depend on the number of data", failure
        )
    return Minibatches("rows", size, rank=rank)
