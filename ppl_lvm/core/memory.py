"""One memory budget for every chunked pass, set in one place and overridable by the user.

Every engine and workflow that processes data in chunks (particles × data × features,
enumerated states × data, ...) sizes its chunks with :func:`chunk_rows` against the same
budget: a number of tensor elements, not bytes. The budget is, in order of precedence:

1. the ``memory_budget=`` argument of the call or engine that takes one;
2. a :func:`memory_budget` block (``with ppl_lvm.memory_budget(2**22): ...``);
3. the environment variable ``PPL_LVM_MEMORY_BUDGET`` (elements, e.g. ``67108864``);
4. :data:`DEFAULT_BUDGET`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

from .checks import check_positive_int

__all__ = [
    "DEFAULT_BUDGET",
    "ENV_VAR",
    "chunk_rows",
    "current_budget",
    "memory_budget",
    "row_slices",
]

#: Elements one chunked tensor may hold: 2^26 numbers, 256 MiB of float32, so that a pass with
#: its intermediate tensors stays near 2 GiB.
DEFAULT_BUDGET = 2**26

#: The environment variable that overrides :data:`DEFAULT_BUDGET`.
ENV_VAR = "PPL_LVM_MEMORY_BUDGET"

_SCOPED: contextvars.ContextVar[int | None] = contextvars.ContextVar("ppl_lvm_budget", default=None)


def current_budget(budget: int | None = None) -> int:
    """The budget in force: ``budget`` if given, else the scoped one, the environment's, or
    the default.

    Raises
    ------
    ValueError
        When ``budget`` or ``PPL_LVM_MEMORY_BUDGET`` is not a positive integer.
    """
    if budget is not None:
        return check_positive_int("memory_budget", budget)
    scoped = _SCOPED.get()
    if scoped is not None:
        return scoped
    env = os.environ.get(ENV_VAR)
    if env is not None:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(
                f"{ENV_VAR}={env!r} is not a positive integer; set it to a number of tensor "
                f"elements, e.g. {DEFAULT_BUDGET}, or unset it."
            )
        return value
    return DEFAULT_BUDGET


@contextlib.contextmanager
def memory_budget(budget: int) -> Iterator[int]:
    """Run a block with another memory budget (elements per chunked tensor).

    Examples
    --------
    >>> with memory_budget(2**20):
    ...     current_budget()
    1048576
    """
    token = _SCOPED.set(check_positive_int("memory_budget", budget))
    try:
        yield budget
    finally:
        _SCOPED.reset(token)


def chunk_rows(num_rows: int, numbers_per_row: int, budget: int | None = None) -> int:
    """How many rows (data) one chunk may hold so that ``rows × numbers_per_row`` stays within
    the budget; at least 1 and at most ``num_rows``.

    Parameters
    ----------
    num_rows : int
        N, the rows to process.
    numbers_per_row : int
        Elements the largest tensor of a pass holds per row, e.g. K × D for K particles of a
        D-dimensional datum.
    budget : int, optional
        Overrides the budget in force (:func:`current_budget`).
    """
    limit = current_budget(budget)
    return max(1, min(num_rows, limit // max(1, int(numbers_per_row))))


def row_slices(num_rows: int, numbers_per_row: int, budget: int | None = None) -> Iterator[slice]:
    """Consecutive slices of ``range(num_rows)`` sized by :func:`chunk_rows`."""
    step = chunk_rows(num_rows, numbers_per_row, budget)
    for start in range(0, num_rows, step):
        yield slice(start, min(start + step, num_rows))
