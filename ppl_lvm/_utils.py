"""Small shared helpers: data validation and seeded, side-effect-free randomness."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def check_data(
    x: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate a data matrix and its mask, and blank the masked-out entries.

    Parameters
    ----------
    x : torch.Tensor of shape (N, D)
        Floating-point data. Entries where ``mask`` is False may hold anything, NaN included.
    mask : torch.Tensor of shape (N, D), dtype bool, optional
        True where an entry is observed. ``None`` means every entry is observed.

    Returns
    -------
    x : torch.Tensor of shape (N, D)
        ``x`` with masked-out entries replaced by 0, so that no NaN can reach a log-density
        or its gradient (a NaN multiplied by a zero mask still poisons the gradient).
    mask : torch.Tensor of shape (N, D) or None
        The mask, unchanged; ``None`` stays ``None``.

    Raises
    ------
    TypeError
        If ``x`` is not a floating tensor or array, or ``mask`` is not boolean.
    ValueError
        If ``x`` is not 2-D, is empty, the shapes disagree, or an observed entry is NaN or inf.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (N, D), got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(
            f"x must be floating point, got dtype {x.dtype}; convert it with x.float()."
        )
    if x.dim() != 2:
        raise ValueError(
            f"x must have shape (N, D) with one row per datum, got shape {tuple(x.shape)}; "
            "flatten images with x.reshape(len(x), -1)."
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"x has shape {tuple(x.shape)}: it is empty; a data set needs N >= 1 rows and "
            "D >= 1 columns."
        )
    if mask is not None:
        if isinstance(mask, np.ndarray):
            mask = torch.from_numpy(mask)
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(
                "mask must be a bool tensor (True = observed), got "
                f"{getattr(mask, 'dtype', type(mask).__name__)}; use mask.bool()."
            )
        if mask.shape != x.shape:
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} but x has shape {tuple(x.shape)}; "
                "they must match entry for entry."
            )
        mask = mask.to(x.device)
        observed = x[mask]
    else:
        observed = x
    # one reduction first: the sum is finite whenever every entry is (barring overflow), and
    # is four times cheaper than an element-wise check on large data
    if torch.isfinite(observed.sum()):
        bad = None
    else:
        bad = ~torch.isfinite(observed)
    if bad is not None and bad.any():
        where = torch.nonzero(~torch.isfinite(x) & (mask if mask is not None else True))[0]
        raise ValueError(
            f"x has {int(bad.sum())} observed entries that are NaN or inf, the first at "
            f"(row {int(where[0])}, column {int(where[1])}). If they are missing values, pass "
            "mask = torch.isfinite(x) (True = observed); otherwise clean the data."
        )
    if mask is not None:
        x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x, mask


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with a fixed seed without disturbing the caller's random state.

    ``seed=None`` leaves the global generators untouched. Otherwise torch's (CPU and CUDA),
    NumPy's and Python's generators are seeded inside the block and restored after it, so the
    same seed gives the same numbers and a fit never changes what the user draws next.
    """
    if seed is None:
        yield
        return
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {seed!r}.")
    import random

    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 (restoring the legacy global generator)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        # what pyro.set_rng_seed does, minus torch.manual_seed's lazy CUDA seeding, which
        # records a stack trace (about 1.5 ms per call) even on machines without CUDA
        seed = int(seed)
        torch.default_generator.manual_seed(seed)
        if devices:
            torch.cuda.manual_seed_all(seed)
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002 (the legacy global generator that users seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002
