"""One memory budget for every chunked pass, set in one place and overridable by the user.

Every engine and workflow that processes data in chunks (particles × data × features,
enumerated states × data, ...) sizes its chunks with :func:`chunk_rows` against the same
budget: a number of tensor elements, not bytes. The budget is, in order of precedence:

1. the ``memory_budget=`` argument of the call or engine that takes one;
2. a :func:`memory_budget` block (``with ppl_lvm.memory_budget(2**22): ...``);
3. the environment variable ``PPL_LVM_MEMORY_BUDGET`` (elements, e.g. ``67108864``);
4. the default: a sixteenth of the memory available when the process asks (4-byte elements),
   at most :data:`DEFAULT_BUDGET`.

Passes are sized before they allocate: an engine knows how many numbers one particle of one
datum needs (the story's ``working_width``, times the enumerated states where it enumerates),
chunks data, and then particles, to stay within the budget, and refuses clearly when even one
particle of one datum would not fit.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator

from .checks import check_positive_int

__all__ = [
    "DEFAULT_BUDGET",
    "ENV_VAR",
    "check_fits",
    "chunk_rows",
    "current_budget",
    "memory_budget",
    "row_slices",
]

#: The most elements one chunked tensor holds by default: 2^26 numbers, 256 MiB of float32, so
#: that a pass with its intermediate tensors stays near 2 GiB.
DEFAULT_BUDGET = 2**26

#: The least default budget, on a machine with almost no memory free.
_FLOOR = 2**20

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
    return min(DEFAULT_BUDGET, max(_FLOOR, _available_bytes() // 64))


@functools.lru_cache(maxsize=1)
def _available_bytes() -> int:
    """Memory the operating system says is available (Linux: MemAvailable), else 16 GiB; read
    once per process, since every chunked call asks."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 16 * 2**30


def check_fits(numbers: int, what: str, budget: int | None = None) -> None:
    """Refuse a pass whose smallest piece (one particle of one datum) exceeds the budget.

    Raises
    ------
    MemoryError
        Naming ``what``, its size and the budget, and how to raise it.
    """
    limit = current_budget(budget)
    if numbers > limit:
        raise MemoryError(
            f"{what} needs {numbers:,} numbers in one pass, more than the memory budget of "
            f"{limit:,}; raise it (memory_budget= of the engine, `with ppl_lvm.memory_budget(n):`"
            f" or {ENV_VAR}) or make the story smaller."
        )


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
