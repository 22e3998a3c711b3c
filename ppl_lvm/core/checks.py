"""Argument and data checks shared by every layer: one place for each rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from .data import Data, Mask, entries, fill_masked, fully_masked


def check_data(
    x: Data, mask: Mask = None, *, fill: Literal["observed", "zero"] = "observed"
) -> tuple[Data, Mask]:
    """Validate the data and their mask, and fill the masked-out entries.

    Parameters
    ----------
    x : torch.Tensor of shape (N, ...), or dict of str to such tensors that share N
        A tensor must be float32 or float64. In a dict, floating entries must be float32 or
        float64 too, and integer or bool entries (labels, lengths) are accepted as they are.
        Entries where ``mask`` is False may hold anything, NaN included.
    mask : torch.Tensor of x's shape, dtype bool, or dict of str to such masks, optional
        True where an entry is observed; ``None`` means every entry is observed. For a dict
        ``x``, a dict holding masks for some of its keys (a key left out is fully observed),
        each of its tensor's shape.
    fill : {"observed", "zero"}
        What a masked entry becomes: a value some datum has (see below), or 0, what the
        built-in models and their encoders expect (``LatentVariableModel.masked_fill``).

    Returns
    -------
    x : torch.Tensor or dict
        ``x`` (a new dict for a dict) with each masked-out entry filled: with ``"observed"``
        by :func:`~ppl_lvm.core.data.fill_masked`, the value of the first fully observed datum
        (else its column's first observed value, else 0), so that a discrete observation's
        masked entry lies in its support (a one-hot label stays one-hot); with ``"zero"`` by 0.
        Either way no NaN reaches a log-density or its gradient (a NaN multiplied by a zero
        mask still poisons the gradient).
    mask : torch.Tensor, dict or None
        The mask on ``x``'s device; ``None`` stays ``None``, and so does an empty dict.

    Raises
    ------
    TypeError
        If ``x`` is not a float32 or float64 tensor or array (float16 and bfloat16 are refused
        too), a dict entry is neither such a float nor an integer or bool tensor, or a mask is
        not boolean or does not mirror ``x`` (a dict for a dict).
    ValueError
        If ``x`` is a scalar or empty, a dict is empty or its tensors do not share N, a mask
        names a key ``x`` lacks or has another shape, or an observed entry is NaN or inf.
    """
    if fill not in ("observed", "zero"):
        raise ValueError(f"fill must be 'observed' or 'zero', got {fill!r}.")
    if isinstance(x, Mapping):
        return _check_dict(x, mask, fill)
    if isinstance(mask, Mapping):
        raise TypeError(
            "mask is a dict but x is a tensor; a dict mask goes with a dict x (one mask per "
            "key). Pass a bool tensor of x's shape."
        )
    x = _as_tensor(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"x must be a torch.Tensor of shape (N, ...) or a dict of such tensors that share "
            f"N, got {type(x).__name__}."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"x must be floating point, got dtype {x.dtype}; convert it with x.float()."
        )
    return _check_entry(x, mask, "x", fill)


def _as_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    return value


def _check_dict(x: Mapping, mask: Mask, fill: str) -> tuple[dict, dict | None]:
    if not x:
        raise ValueError("x is an empty dict; give at least one tensor of shape (N, ...).")
    if mask is not None and not isinstance(mask, Mapping):
        raise TypeError(
            f"x is a dict with keys {list(x)} but mask is a {type(mask).__name__}; give a dict "
            "of bool masks for some of x's keys, e.g. mask={'y': y_mask} (a key left out is "
            "fully observed)."
        )
    mask = dict(mask or {})
    unknown = [k for k in mask if k not in x]
    if unknown:
        raise ValueError(
            f"mask has keys {unknown} that x lacks (x has {list(x)}); a dict mask holds masks "
            "for some of x's keys, each of its tensor's shape."
        )
    out, masks, sizes = {}, {}, {}
    for key, value in x.items():
        name = f"x[{key!r}]"
        value = _as_tensor(value)
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of shape (N, ...), got {type(value).__name__}."
            )
        if value.is_complex():
            raise TypeError(f"{name} has complex dtype {value.dtype}; give real values.")
        out[key], m = _check_entry(value, mask.get(key), name, fill)
        if m is not None:
            masks[key] = m
        sizes[key] = int(value.shape[0])
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"the tensors of x must share their first dimension N (one row per datum), got "
            f"{sizes}; give every key the same number of data."
        )
    return out, (masks or None)


def _check_entry(
    x: torch.Tensor, mask: torch.Tensor | None, name: str, fill: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One tensor of the data (floating, or in a dict integer or bool) and its mask."""
    if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
        # Half precision and narrower (float16, bfloat16, float8) hold too few digits for
        # log-densities summed over many entries, and overflow at 65504 (float16).
        raise TypeError(
            f"{name} has dtype {x.dtype}, too narrow for log-densities and their gradients; "
            f"the engines compute in float32 or float64: convert it with {name}.float()."
        )
    if x.dim() == 0:
        raise ValueError(
            f"{name} must have a first dimension over data points, shape (N,), (N, D) or "
            f"(N, ...), got a scalar; pass {name}.reshape(1) for one datum."
        )
    if x.numel() == 0:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}: it is empty; a data set needs N >= 1 data of "
            "at least one entry each."
        )
    mask = _as_tensor(mask)
    mname = "mask" if name == "x" else f"the mask of {name}"
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(
                f"{mname} must be a bool tensor (True = observed), got "
                f"{getattr(mask, 'dtype', type(mask).__name__)}; use mask.bool()."
            )
        if mask.shape != x.shape:
            raise ValueError(
                f"{mname} has shape {tuple(mask.shape)} but {name} has shape "
                f"{tuple(x.shape)}; they must match entry for entry."
            )
        mask = mask.to(x.device)
    if x.is_floating_point():
        _refuse_nonfinite(x, mask, name)
    if mask is not None and fill == "zero":
        x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    elif mask is not None:
        x = fill_masked(x, mask)
    return x, mask


def _refuse_nonfinite(x: torch.Tensor, mask: torch.Tensor | None, name: str) -> None:
    observed = x if mask is None else x[mask]
    # one reduction first: the sum is finite whenever every entry is (barring overflow), and
    # is four times cheaper than an element-wise check on large data
    if torch.isfinite(observed.sum()):
        return
    bad = ~torch.isfinite(observed)
    if not bad.any():
        return
    where = torch.nonzero(~torch.isfinite(x) & (mask if mask is not None else True))[0]
    place = f"row {int(where[0])}" + "".join(f", index {int(i)}" for i in where[1:])
    if len(where) == 2:
        place = f"row {int(where[0])}, column {int(where[1])}"
    fix = f"mask={{{name[2:-1]}: torch.isfinite({name})}}"
    if name == "x":
        fix = "mask = torch.isfinite(x)"
    raise ValueError(
        f"{name} has {int(bad.sum())} observed entries that are NaN or inf, the first at "
        f"({place}). If they are missing values, pass {fix} (True = observed); otherwise "
        "clean the data."
    )


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


def refuse_all_masked(mask: Mask, x: Data | None = None) -> None:
    """A fit needs at least one observed entry: refuse a mask that hides everything (of every
    tensor of a dict ``x``; a key the mask dict leaves out is observed)."""
    if mask is None:
        return
    hidden = (
        fully_masked(x, mask) if x is not None else not any(bool(m.any()) for _, m in entries(mask))
    )
    if hidden:
        raise ValueError(
            "every entry of x is masked (mask is all False): there is nothing to learn from. "
            "Pass data with observed entries (True = observed)."
        )
