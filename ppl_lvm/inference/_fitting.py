"""The driver that SVI and importance sampling share to learn a story's parameters by a bound:
data and device set-up, initialisation, resume, and the one training loop."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import pyro
import torch

from ..core.checks import check_data, check_positive_int, refuse_all_masked
from ..core.data import num_data, reference, take_rows, to_device
from ..core.errors import UnsupportedModelError
from ..core.results import FitResult
from ..core.rng import seeded
from ..models.base import LatentVariableModel, SiteInfo
from ..models.capabilities import Initializable, ParticleLogWeights, has
from ..models.story import conform_data
from ..models.support import check_values
from . import _checkpoint, _loop, _minibatch
from ._weights import plate_nesting
from .objectives import Objective

__all__ = ["fit_by_gradient", "gradient_fit_result"]


def _rank(lvm: LatentVariableModel, x, mask, enumerated: bool) -> int:
    """Plate dims of the story; the model's own tensor path needs no plate bookkeeping."""
    if has(lvm, ParticleLogWeights) and not enumerated:
        return 1
    return max(plate_nesting(lvm.trace(x, mask)), plate_nesting(lvm.trace(x, mask, "guide")))


def fit_by_gradient(
    objective: Objective,
    lvm: LatentVariableModel,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    sites: dict[str, SiteInfo],
    *,
    engine: str,
    label: str,
    lr: float,
    batch_size: int | None,
    seed: int,
    progress: bool,
    epochs: int | None,
    steps: int | None,
    optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
    validate: Callable[..., float] | None = None,
    validation: torch.Tensor | tuple[torch.Tensor, torch.Tensor | None] | None = None,
    eval_every: int = 1,
    patience: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: str | os.PathLike | None = None,
    initialize: bool = True,
    device: str | torch.device | None = None,
) -> tuple[_loop.LoopResult, dict[str, Any], float]:
    """Maximise ``objective`` over minibatches of ``x`` (N, D); the arguments are those of
    ``SVI.fit``. ``validate(lvm, x_val, mask_val)`` scores held-out data (needed with
    ``validation``).

    Returns
    -------
    loop : LoopResult
    info : dict
        ``validation``, ``stopped_early``, ``batch_size``, ``epochs``, ``device``.
    seconds : float
    """
    if validation is not None and validate is None:
        raise TypeError("fit_by_gradient: validation data need a validate(lvm, x, mask) score.")
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs or steps, e.g. fit(..., epochs=20).")
    check_positive_int("epochs", epochs, allow_none=True)
    check_positive_int("steps", steps, allow_none=True)
    if patience is not None and validation is None:
        raise ValueError("patience needs validation data: fit(..., validation=x_val).")
    refuse_all_masked(mask, x)
    dev = _resolve_device(device, x)
    if any(p.device != dev for p in lvm.parameters()):
        lvm.to(dev)
    x, mask = to_device(x, dev), to_device(mask, dev)
    val = None
    if validation is not None:
        vx, vm = validation if isinstance(validation, tuple) else (validation, None)
        vx, vm = check_data(vx, vm, fill=lvm.masked_fill)
        vx = conform_data(lvm, vx)  # a wrong width fails here, before any training
        check_values(lvm, vx, vm)
        val = (to_device(vx, dev), to_device(vm, dev))

    n = num_data(x)
    # a user's story gets the whole data and the data plate's indices where it can
    plan = _minibatch.plan(lvm, x, mask, batch_size)
    batch = n if plan.batch_size is None else min(plan.batch_size, n)
    per_epoch = n // batch if plan.exact else math.ceil(n / batch)
    total = steps if steps is not None else epochs * per_epoch
    unit = per_epoch if epochs is not None else 1
    enumerated = objective.enumerated(sites)
    first = slice(0, batch)
    rank = plan.rank
    if rank is None:
        rank = _rank(lvm, take_rows(x, first), take_rows(mask, first), enumerated)
    if checkpoint is not None:
        _checkpoint.check_writable(checkpoint)
    t0 = time.perf_counter()
    with seeded(seed):
        # parameters exist once model and guide have run (a story's: at full size, in the plan)
        if plan.mode == "tensor":
            lvm.sites(take_rows(x, first), take_rows(mask, first), "guide")
        # what a checkpoint belongs to; hashing the data costs a pass, so only when one is used
        meta = (
            None
            if checkpoint is None and resume is None
            else _checkpoint.describe(
                lvm,
                x,
                mask,
                engine=engine,
                objective=objective.name,
                estimator=objective.estimator,
                num_particles=objective.num_particles,
                batch_size=batch_size,
                # a callable by its qualified name: its repr holds a memory address
                optimizer=optimizer
                if isinstance(optimizer, str)
                else getattr(optimizer, "__qualname__", type(optimizer).__qualname__),
                lr=float(lr),
                seed=seed,
            )
        )
        state = None
        if resume is not None:
            state = _checkpoint.load(resume, meta, dev)
            lvm.load_state_dict(state["model"])
        elif initialize and has(lvm, Initializable):
            lvm.initialize(x, mask, seed)
        params = lvm.trainable_parameters()
        if not params:
            raise UnsupportedModelError(
                f"story '{lvm.name}' has no parameters to fit; declare them with "
                "pyro.param or as module parameters."
            )

        def one_step(idx: torch.Tensor | None, lean: bool) -> torch.Tensor:
            if plan.mode == "indices" and idx is not None:
                return objective.step(lvm, x, mask, n, rank, enumerated, indices=idx, lean=lean)
            xb = x if idx is None else take_rows(x, idx)
            mb = mask if idx is None else take_rows(mask, idx)
            return objective.step(lvm, xb, mb, n, rank, enumerated, lean=lean)

        checked = False

        def step(idx: torch.Tensor | None) -> torch.Tensor:
            # The first step runs Pyro's own loss with Pyro's validation as the user set it:
            # site shapes, model against guide, distribution arguments. Later steps skip those
            # per-step checks, as the built-in models' tensor paths do (the data's supports were
            # checked on all N before any work, and a non-finite value stops the loop); a step
            # that comes out non-finite is run again with validation, so that Pyro's own error
            # names an invalid argument where there is one.
            nonlocal checked
            if not checked:
                checked = True
                return one_step(idx, lean=False)
            with pyro.validation_enabled(False):
                value = one_step(idx, lean=True)
            if not torch.isfinite(value.detach()).all():
                one_step(idx, lean=False)
            return value

        def nan_message(value: float, at: int, good: int) -> str:
            return (
                f"{label}: the {objective.name} objective was {value} at step {at}; the "
                f"parameters of step {good}, the last finite snapshot, were restored. "
                "Lower lr, or check the data scale."
            )

        loop = _loop.run(
            step,
            model=lvm,
            params=params,
            optimizer=_loop.make_optimizer(optimizer, params, lr),
            schedule=_loop.Schedule(
                num_data=n,
                batch_size=plan.batch_size,
                exact_batches=plan.exact,
                total_steps=total,
                eval_every=eval_every * unit,
                patience=patience,
            ),
            seed=seed,
            nan_message=nan_message,
            validate=None if val is None else (lambda: validate(lvm, *val)),
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            meta=meta,
            resume=state,
            progress=progress,
            desc=label,
            postfix=objective.name,
            device=dev,
        )
    info = {
        "validation": loop.validation,
        "stopped_early": loop.stopped_early,
        "batch_size": batch,
        "minibatches": plan.mode,
        "epochs": loop.num_steps / per_epoch,
        "device": str(dev),
    }
    return loop, info, time.perf_counter() - t0


def _resolve_device(device: str | torch.device | None, x: torch.Tensor) -> torch.device:
    if device is None:
        return reference(x).device
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available here.")
    return dev


def gradient_fit_result(
    engine: str, objective: str, loop: _loop.LoopResult, seconds: float, seed: int, info: dict
) -> FitResult:
    """The :class:`FitResult` of a :func:`fit_by_gradient` run: the per-datum objective at
    every step as ``history`` (float64), no convergence verdict."""
    return FitResult(
        engine=engine,
        objective=objective,
        history=torch.tensor(loop.history, dtype=torch.float64),
        seconds=seconds,
        num_steps=loop.num_steps,
        converged=None,
        seed=seed,
        info=info,
    )
