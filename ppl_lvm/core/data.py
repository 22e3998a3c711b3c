"""The data contract in one place: ``x`` is a tensor whose first dimension is N, or a dict of
such tensors that share N; ``mask`` mirrors it.

Every engine, objective and workflow that slices rows, counts data, chunks, minibatches or
fills masked entries goes through these few functions, so a dict ``x`` (images and labels,
sequences and lengths, y and sigma) travels everywhere a tensor does:

- :func:`num_data`, :func:`take_rows`, :func:`map_tensors`, :func:`to_device`: rows and devices;
- :func:`entries`, :func:`mask_entry`, :func:`reference`, :func:`zeros`: one tensor at a time;
- :func:`all_observed`, :func:`fully_masked`: the mask as a whole;
- :func:`data_key`, :func:`width`: what caches and the memory budget need;
- :func:`fill_masked`: masked entries filled with a value some datum really has.

A dict ``mask`` may name only some keys of ``x``; a key it leaves out is fully observed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = [
    "Data",
    "Mask",
    "all_observed",
    "data_key",
    "entries",
    "fill_masked",
    "fully_masked",
    "map_tensors",
    "mask_entry",
    "num_data",
    "reference",
    "take_rows",
    "to_device",
    "width",
    "zeros",
]

#: A tensor (N, ...) or a dict of tensors that share N.
Data = torch.Tensor | Mapping[str, torch.Tensor]
#: None, a bool tensor of ``x``'s shape, or for a dict ``x`` a dict of masks for some keys.
Mask = torch.Tensor | Mapping[str, torch.Tensor] | None


def entries(x: Data) -> list[tuple[str | None, torch.Tensor]]:
    """The tensors of ``x`` with their keys: ``[(None, x)]`` for a tensor, ``[(key, x[key]),
    ...]`` for a dict, in the dict's order."""
    if isinstance(x, Mapping):
        return list(x.items())
    return [(None, x)]


def mask_entry(mask: Mask, key: str | None) -> torch.Tensor | None:
    """The mask of one entry of :func:`entries`: None where it is fully observed."""
    if mask is None:
        return None
    if isinstance(mask, Mapping):
        return mask.get(key) if key is not None else None
    return mask


def num_data(x: Data) -> int:
    """N, the size of the first dimension (shared by every tensor of a dict)."""
    return int(entries(x)[0][1].shape[0])


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], x: Any) -> Any:
    """``fn`` applied to every tensor of ``x`` (a tensor, a dict of them, or None)."""
    if x is None:
        return None
    if isinstance(x, Mapping):
        return {k: fn(v) for k, v in x.items()}
    return fn(x)


def take_rows(x: Any, rows: slice | torch.Tensor) -> Any:
    """The rows ``rows`` (a slice or an index tensor) of every tensor of ``x``; None stays None.
    The same rows of every key, so a datum's entries stay together."""
    return map_tensors(lambda v: v[rows], x)


def to_device(x: Any, device: torch.device | str) -> Any:
    """``x`` (or its mask, or None) on ``device``."""
    return map_tensors(lambda v: v.to(device), x)


def reference(x: Data) -> torch.Tensor:
    """A tensor of ``x`` to take a float dtype and a device from: the first floating-point one
    (labels and lengths are integers), else the first."""
    tensors = [v for _, v in entries(x)]
    return next((v for v in tensors if v.is_floating_point()), tensors[0])


def zeros(x: Data, *shape: int) -> torch.Tensor:
    """Float zeros of ``shape`` in ``x``'s float dtype (the default dtype where every tensor is
    an integer) and on its device: the start of a sum of log-densities."""
    ref = reference(x)
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    return torch.zeros(shape, dtype=dtype, device=ref.device)


def all_observed(mask: Mask) -> bool:
    """Whether the mask hides nothing (None, or every entry True)."""
    if mask is None:
        return True
    return all(bool(m.all()) for _, m in entries(mask))


def fully_masked(x: Data, mask: Mask) -> bool:
    """Whether the mask hides every entry of every tensor of ``x``."""
    if mask is None:
        return False
    return all(
        (m := mask_entry(mask, key)) is not None and not bool(m.any()) for key, _ in entries(x)
    )


def data_key(x: Data, mask: Mask) -> tuple:
    """A hashable description of the data's structure (keys, shapes, dtypes, device, which
    entries are masked), for caches of a story's site metadata."""
    return tuple(
        (key, tuple(v.shape), v.dtype, v.device, mask_entry(mask, key) is None)
        for key, v in entries(x)
    )


def width(x: Data) -> int:
    """Numbers per datum: the product of the trailing shape, summed over a dict's tensors."""
    return max(1, sum(math.prod(v.shape[1:]) for _, v in entries(x)))


def fill_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with every masked entry replaced by a value some datum really has.

    A masked entry is never scored, but a log-density is still computed there, and a value
    outside the distribution's support gives NaN or an error (a row of zeros is no one-hot
    vector; log 0 poisons a gradient even under a zero mask). So the entries of a datum that
    the mask hides take the values of the first datum that is fully observed, which lie in
    the support whenever the observed data do; for a column (one position of the trailing
    shape) where no datum is fully observed, the column's first observed value; and 0 where
    nothing in the column is observed.

    Parameters
    ----------
    x : torch.Tensor of shape (N, ...)
    mask : torch.Tensor of x's shape, bool
        True where observed.

    Returns
    -------
    torch.Tensor of shape (N, ...)
        A new tensor; the observed entries are those of ``x``. The filled values depend on
        the rows given together, so a story must not read them (they are placeholders).
    """
    n = x.shape[0]
    flat_x = x.reshape(n, -1)  # (N, C)
    flat_m = mask.reshape(n, -1)  # (N, C)
    # per column, the first observed row (argmax returns the first maximum); 0 if none
    first = flat_m.to(torch.uint8).argmax(0)  # (C,)
    fill = flat_x.gather(0, first[None]).squeeze(0)  # (C,)
    seen = flat_m.any(0)  # (C,)
    complete = flat_m.all(1)  # (N,)
    # the first fully observed row where there is one: its values are a datum's, jointly
    row = complete.to(torch.uint8).argmax()
    fill = torch.where(complete.any(), flat_x[row], fill)
    fill = torch.where(seen, fill, torch.zeros((), dtype=x.dtype, device=x.device))
    return torch.where(flat_m, flat_x, fill[None]).reshape(x.shape)
