"""The one training loop: every engine that learns by gradient runs it.

``SVI.fit``, ``Enumeration.fit(method="gradient")`` and ``ImportanceSampling.fit`` differ only in
the objective they hand it. The loop owns what they share: minibatch order, the optimiser step,
the NaN stop that restores the last finite parameters, early stopping on a validation score,
convergence on a tolerance, the progress bar, and checkpoints from which a resumed run equals an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from . import _checkpoint

__all__ = ["OPTIMIZERS", "LoopResult", "Schedule", "make_optimizer", "run"]

#: Optimisers known by name; a callable ``f(params, lr=...)`` works too.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


def make_optimizer(
    optimizer: str | Callable[..., torch.optim.Optimizer], params: list, lr: float
) -> torch.optim.Optimizer:
    """An optimiser over ``params``; Adam and AdamW use torch's fused kernel where it can.

    The fused kernel updates every tensor in one pass, about a fifth of a VAE epoch on CPU; older
    torch, or parameters it cannot fuse, take the default implementation.
    """
    if isinstance(optimizer, str) and optimizer in ("adam", "adamw"):
        try:
            return OPTIMIZERS[optimizer](params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    factory = OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer
    return factory(params, lr=lr)


@dataclass(frozen=True)
class Schedule:
    """How long and on what the loop trains.

    Attributes
    ----------
    num_data : int
        N.
    batch_size : int or None
        B; None hands the objective the whole data set, in order, every step.
    total_steps : int
        Steps to take (fewer when stopping early or converging).
    eval_every : int
        Steps between validation checks.
    patience : int or None
        Validation checks without improvement before stopping (the best parameters return).
    tol : float or None
        Stop when two consecutive objective values differ by less (exact objectives only).
    snapshot_every : int
        Steps between snapshots of the parameters that a NaN restores; copying every step costs
        a few percent of a VAE step, for a rare event.
    exact_batches : bool
        Every minibatch has exactly B rows (a plate's own ``subsample_size`` demands it): the
        N mod B rows left at the end of a permutation wait for the next one.
    """

    num_data: int
    batch_size: int | None
    total_steps: int
    eval_every: int = 1
    patience: int | None = None
    tol: float | None = None
    snapshot_every: int = 50
    exact_batches: bool = False


@dataclass
class _State:
    """Everything a checkpoint holds besides the model and optimiser."""

    step: int = 0
    history: list[float] = field(default_factory=list)
    perm: torch.Tensor | None = None
    pos: int = 0
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_value: float = -math.inf
    best_state: dict | None = None
    stale: int = 0


@dataclass(frozen=True)
class LoopResult:
    """What the loop did: per-step objective values, steps, and why it stopped."""

    history: list[float]
    num_steps: int
    validation: list[tuple[int, float]]
    stopped_early: bool
    converged: bool


def _snapshot(model: torch.nn.Module, optim, gen: torch.Generator, st: _State) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optim.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "batch_rng": gen.get_state(),
        "step": st.step,
        "history": st.history,
        "perm": st.perm,
        "pos": st.pos,
        "validation": st.validation,
        "best_value": st.best_value,
        "best_state": st.best_state,
        "stale": st.stale,
    }


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Hold a Ctrl-C (SIGINT) until the current step is complete.

    A ``KeyboardInterrupt`` raised in the middle of a step could leave the parameters, the
    optimiser or the random stream half-updated, and a checkpoint of that state would not resume
    to the uninterrupted result. The first Ctrl-C only sets a flag, which the loop reads between
    steps; a second one interrupts at once. Outside the main thread signals cannot be caught, and
    the loop runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    pending = [False]
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if pending[0]:
            raise KeyboardInterrupt
        pending[0] = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: pending[0]
    finally:
        signal.signal(signal.SIGINT, previous)


def run(
    objective: Callable[[torch.Tensor | None], torch.Tensor],
    *,
    model: torch.nn.Module,
    params: list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    seed: int,
    nan_message: Callable[[float, int, int], str],
    validate: Callable[[], float] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    meta: dict | None = None,
    resume: dict | None = None,
    progress: bool = True,
    desc: str = "fit",
    postfix: str = "objective",
    device: torch.device | None = None,
) -> LoopResult:
    """Maximise ``objective`` by gradient steps.

    Parameters
    ----------
    objective : callable
        ``objective(idx)`` with ``idx`` the minibatch's row indices (B,), or None for the whole
        data set in order; returns a differentiable scalar to maximise (per datum).
    model : torch.nn.Module
        Whose ``state_dict`` checkpoints and early stopping save and restore.
    params : list of torch.Tensor
        The tensors ``optimizer`` updates; a NaN restores their last snapshot.
    optimizer : torch.optim.Optimizer
    schedule : Schedule
    seed : int
        Seeds the minibatch order (a generator of its own).
    nan_message : callable
        ``nan_message(value, step, good_step)``: the text of the ``FloatingPointError``.
    validate : callable, optional
        Returns a held-out score, higher is better, checked every ``schedule.eval_every`` steps.
    checkpoint : path, optional
        Written every ``checkpoint_every`` steps, at the end and on Ctrl-C (after the step in
        progress completes, so that resuming gives the uninterrupted result).
    meta : dict, optional
        What the checkpoint belongs to (:func:`ppl_lvm.inference._checkpoint.describe`).
    resume : dict, optional
        A checkpoint read by :func:`ppl_lvm.inference._checkpoint.load`; the model's state must
        already be loaded.
    progress : bool
        Show a tqdm bar.
    desc, postfix : str
        The bar's label and the name of the value it shows.
    device : torch.device, optional
        Where minibatch indices go.

    Returns
    -------
    LoopResult

    Raises
    ------
    FloatingPointError
        When the objective is not finite; the parameters of the last snapshot are restored.
    """
    n, sch = schedule.num_data, schedule
    batch = None if sch.batch_size is None else min(sch.batch_size, n)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    st = _State(perm=None if batch is None else torch.randperm(n, generator=gen))
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["torch_rng"])
        gen.set_state(resume["batch_rng"])
        st = _State(
            step=resume["step"],
            history=list(resume["history"]),
            perm=resume["perm"],
            pos=resume["pos"],
            validation=[tuple(v) for v in resume["validation"]],
            best_value=resume["best_value"],
            best_state=resume["best_state"],
            stale=resume["stale"],
        )
    path = None if checkpoint is None else _checkpoint.check_writable(checkpoint)
    last_good = [p.detach().clone() for p in params]
    good_step = st.step
    stopped_early = converged = False
    bar = tqdm(total=sch.total_steps, initial=st.step, desc=desc, disable=not progress, leave=False)

    def save() -> None:
        if path is not None:
            _checkpoint.save(path, _snapshot(model, optimizer, gen, st), meta or {})

    at_boundary = False  # whether a Ctrl-C was taken between two steps
    try:
        with _deferred_interrupt() as interrupted:
            while st.step < sch.total_steps:
                if interrupted():
                    at_boundary = True
                    raise KeyboardInterrupt
                idx = None
                if batch is not None:
                    if st.pos >= n or (sch.exact_batches and st.pos + batch > n):
                        st.perm, st.pos = torch.randperm(n, generator=gen), 0
                    idx = st.perm[st.pos : st.pos + batch]
                    idx = idx if device is None else idx.to(device)
                optimizer.zero_grad(set_to_none=True)
                obj = objective(idx)
                value = obj.detach().item()
                if not math.isfinite(value):
                    with torch.no_grad():
                        for p, good in zip(params, last_good, strict=True):
                            p.copy_(good)
                    raise FloatingPointError(nan_message(value, st.step, good_step))
                (-obj).backward()
                if st.step % sch.snapshot_every == 0 and st.step != good_step:
                    with torch.no_grad():
                        for p, good in zip(params, last_good, strict=True):
                            good.copy_(p)
                    good_step = st.step
                optimizer.step()
                if batch is not None:
                    st.pos += batch
                previous = st.history[-1] if st.history else None
                st.history.append(value)
                st.step += 1
                bar.update(1)
                if st.step % 20 == 0:
                    bar.set_postfix({postfix: f"{value:.3f}"})
                if sch.tol is not None and previous is not None and abs(value - previous) < sch.tol:
                    converged = True
                    break
                if validate is not None and st.step % sch.eval_every == 0:
                    score = validate()
                    st.validation.append((st.step, score))
                    if score > st.best_value:
                        st.best_value, st.best_state, st.stale = (
                            score,
                            copy.deepcopy(model.state_dict()),
                            0,
                        )
                    else:
                        st.stale += 1
                    if sch.patience is not None and st.stale >= sch.patience:
                        stopped_early = True
                        break
                if path is not None and st.step % checkpoint_every == 0:
                    save()
    except KeyboardInterrupt:
        # an interrupted run keeps its progress: resume=checkpoint continues it exactly. A
        # second Ctrl-C lands mid-step, and that state is not saved: the last checkpoint stands.
        if at_boundary:
            save()
        raise
    finally:
        bar.close()
    save()
    if stopped_early and st.best_state is not None:
        model.load_state_dict(st.best_state)
    return LoopResult(
        history=st.history,
        num_steps=st.step,
        validation=st.validation,
        stopped_early=stopped_early,
        converged=converged,
    )
