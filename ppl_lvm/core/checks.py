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
        float32 or float64 data. Entries where ``mask`` is False may hold anything, NaN included.
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
        If ``x`` is not a float32 or float64 tensor or array (float16 and bfloat16 are refused
        too), or ``mask`` is not boolean.
    ValueError
        If ``x`` is a scalar or empty, the shapes disagree, or an observed entry is NaN or inf.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (N, D), got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(
            f"x must be floating point, got dtype {x.dtype}; convert it with x.float()."
        )
    if x.dtype not in (torch.float32, torch.float64):
        # Half precision and narrower (float16, bfloat16, float8) hold too few digits for
        # log-densities summed over many entries, and overflow at 65504 (float16).
        raise TypeError(
            f"x has dtype {x.dtype}, too narrow for log-densities and their gradients; the "
            "engines compute in float32 or float64: convert it with x.float()."
        )
    if x.dim() == 0:
        raise ValueError(
            "x must have a first dimension over data points, shape (N,), (N, D) or (N, ...), "
            "got a scalar; pass x.reshape(1) for one datum."
        )
    if x.numel() == 0:
        raise ValueError(
            f"x has shape {tuple(x.shape)}: it is empty; a data set needs N >= 1 data of at "
            "least one entry each."
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
        place = f"row {int(where[0])}" + "".join(f", index {int(i)}" for i in where[1:])
        if len(where) == 2:
            place = f"row {int(where[0])}, column {int(where[1])}"
        raise ValueError(
            f"x has {int(bad.sum())} observed entries that are NaN or inf, the first at "
            f"({place}). If they are missing values, pass "
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


def refuse_values(
    x: torch.Tensor,
    mask: torch.Tensor | None,
    ok: torch.Tensor,
    *,
    model: str,
    expected: str,
    fix: str,
) -> None:
    """Raise ``ValueError`` when an observed entry of ``x`` is outside a model's support.

    Parameters
    ----------
    x : torch.Tensor of shape (N, D)
    mask : torch.Tensor of shape (N, D), bool, or None
        True where observed; unobserved entries are never judged.
    ok : torch.Tensor of shape (N, D), bool
        Whether each entry is a value the model can score.
    model, expected, fix : str
        The model's name, what it needs (``"binary data (0 or 1)"``) and how to get there; the
        message names the first offending value and where it is.
    """
    # one reduction in the common case that every entry is fine; the details only on failure
    if bool(ok.all()) if mask is None else bool(ok.logical_or_(~mask).all()):
        return
    bad = ~ok if mask is None else ~ok & mask
    if bool(bad.any()):
        where = torch.nonzero(bad)[0].tolist()
        value = float(x[tuple(where)])
        place = f"row {where[0]}" + (f", column {where[1]}" if len(where) > 1 else "")
        raise ValueError(
            f"{model} needs {expected} in every observed entry, but x has {int(bad.sum())} "
            f"that are not, the first {value:g} at ({place}); {fix}"
        )


def refuse_all_masked(mask: torch.Tensor | None) -> None:
    """A fit needs at least one observed entry: refuse a mask that hides everything."""
    if mask is not None and not bool(mask.any()):
        raise ValueError(
            "every entry of x is masked (mask is all False): there is nothing to learn from. "
            "Pass data with observed entries (True = observed)."
        )
