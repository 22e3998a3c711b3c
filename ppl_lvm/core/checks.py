"""Argument and data checks shared by every layer: one place for each rule."""

from __future__ import annotations

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


def check_positive_int(name: str, value: object, *, allow_none: bool = False) -> int | None:
    """Return ``value`` if it is a positive int (not a bool), else raise ``ValueError``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
    allow_none : bool
        Accept ``None`` too (an optional setting left unset).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive int{extra}, got {value!r}.")
    return int(value)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}.")
    return value  # type: ignore[return-value]
