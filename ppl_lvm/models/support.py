"""Data against the story: values outside an observed site's support never yield a number.

:func:`check_values` is what every engine runs before any work (``Engine.prepare``). A model
that declares :class:`~.capabilities.ValueValidation` checks its own data cheaply; any other
story is traced once and each observed site's value is checked against its distribution's
support, entry by entry, skipping entries that the mask (``.mask(...)``, ``poutine.mask`` or
``obs_mask``) hides.
"""

from __future__ import annotations

import pyro.distributions as dist
import pyro.distributions.constraints as pyro_constraints
import torch
from torch.distributions import constraints

from .base import LatentVariableModel, sample_sites
from .capabilities import ValueValidation, has

__all__ = ["check_values", "support_inside"]


def _elementwise(support: constraints.Constraint) -> constraints.Constraint:
    # to_event wraps a support in `independent`; the entries are judged one by one
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def _site_mask(site: dict, shape: torch.Size) -> torch.Tensor | None:
    """True where an entry of the site's value is scored, broadcast to ``shape``; None if all."""
    masks = []
    fn = site["fn"]
    while fn is not None:
        if isinstance(fn, dist.MaskedDistribution) and not isinstance(fn._mask, bool):
            masks.append(fn._mask)
        fn = getattr(fn, "base_dist", None)
    if site.get("mask") is not None and not isinstance(site["mask"], bool):
        # poutine.mask is aligned with the batch dims; event dims follow
        m = site["mask"]
        event = len(site["fn"].event_shape)
        masks.append(m.reshape(tuple(m.shape) + (1,) * event))
    out = None
    for m in masks:
        try:
            m = torch.broadcast_to(m, shape)
        except RuntimeError:
            continue  # a mask aligned some other way: judge every entry
        out = m if out is None else out & m
    return out


def _offender(value: torch.Tensor, bad: torch.Tensor) -> str:
    where = torch.nonzero(bad)[0].tolist()
    return f"{float(value[tuple(where)]):g} at index {tuple(where)}"


def check_values(
    model: LatentVariableModel, x: torch.Tensor, mask: torch.Tensor | None = None
) -> None:
    """Refuse data that an observed site of the story cannot score.

    Parameters
    ----------
    model : LatentVariableModel
    x : torch.Tensor of shape (N, ...)
        Masked-out entries zero-filled.
    mask : torch.Tensor of x's shape, bool, optional

    Raises
    ------
    ValueError
        Naming the site, an offending value and its index, the support, and the fix.
    """
    if has(model, ValueValidation):
        model.validate_values(x, mask)
        return
    trace = model.trace(x, mask)
    for name, site in sample_sites(trace):
        if not site["is_observed"]:
            continue
        value = site["value"]
        if not torch.is_tensor(value):
            continue
        support = _elementwise(site["fn"].support)
        try:
            ok = support.check(value)
        except (RuntimeError, TypeError, ValueError):
            continue  # a support with no elementwise check (rare): Pyro's validation judges it
        if not torch.is_tensor(ok) or ok.shape != value.shape[: ok.dim()]:
            continue
        bad = ~ok
        scored = _site_mask(site, ok.shape)
        if scored is not None:
            bad = bad & scored
        if bool(bad.any()):
            raise ValueError(
                f"observed site '{name}' of story '{model.name}' has {int(bad.sum())} values "
                f"outside its support {support} ({type(site['fn']).__name__}), the first "
                f"{_offender(value, bad)}. Such data have no probability under the story: fix "
                "the data (binarize 0/1 data, give integer codes for a Categorical), choose a "
                "likelihood whose support holds them, or mask the entries that are missing."
            )


# A set of reals as (lower, lower included, upper, upper included), or None when the support is
# no interval of the line. Integer supports use the same bounds over the integers.
_Bounds = tuple[torch.Tensor, bool, torch.Tensor, bool]
_INF = float("inf")


def _bounds(c: constraints.Constraint) -> _Bounds | None:
    def t(v) -> torch.Tensor:
        return torch.as_tensor(v, dtype=torch.float64)

    if isinstance(c, type(constraints.real)):
        return t(-_INF), False, t(_INF), False
    if isinstance(c, constraints.greater_than):
        return t(c.lower_bound), False, t(_INF), False
    if isinstance(c, constraints.greater_than_eq):
        return t(c.lower_bound), True, t(_INF), False
    if isinstance(c, constraints.less_than):
        return t(-_INF), False, t(c.upper_bound), False
    if isinstance(c, constraints.interval):
        return t(c.lower_bound), True, t(c.upper_bound), True
    if isinstance(c, constraints.half_open_interval):
        return t(c.lower_bound), True, t(c.upper_bound), False
    if isinstance(c, type(constraints.boolean)):
        return t(0), True, t(1), True
    if isinstance(c, constraints.integer_interval):
        return t(c.lower_bound), True, t(c.upper_bound), True
    if isinstance(c, type(constraints.nonnegative_integer)):
        return t(c.lower_bound), True, t(_INF), False
    if isinstance(c, type(pyro_constraints.integer)):
        return t(-_INF), False, t(_INF), False
    return None


def support_inside(inner: constraints.Constraint, outer: constraints.Constraint) -> bool:
    """Whether every value of the support ``inner`` lies in ``outer``: a proposal from ``inner``
    (a guide) stays where the density of ``outer`` (the model) is positive.

    Sound on intervals of the line, open, closed or half open, and on integer ranges
    (``GreaterThan(0)`` lies inside ``GreaterThanEq(0)``, ``Interval(0.2, 0.5)`` inside
    ``unit_interval``, ``boolean`` inside ``IntegerInterval(0, 3)``, only ``real`` inside
    ``real``); a continuous support never lies inside a discrete one nor the reverse; any other
    support (``simplex``, ``lower_cholesky``, ...) only inside one of its own kind.
    ``.to_event`` wrappers are looked through (event shapes are compared elsewhere).
    """
    inner, outer = _elementwise(inner), _elementwise(outer)
    if inner is outer:
        return True
    if bool(inner.is_discrete) != bool(outer.is_discrete):
        return False
    a, b = _bounds(inner), _bounds(outer)
    if a is None or b is None:
        # no order to compare: the same kind of set, with the same bounds where it has any
        return type(inner) is type(outer) and all(
            torch.equal(torch.as_tensor(v), torch.as_tensor(getattr(outer, k)))
            for k, v in vars(inner).items()
            if isinstance(v, int | float) or torch.is_tensor(v)
        )
    (lo, lo_in, hi, hi_in), (olo, olo_in, ohi, ohi_in) = a, b
    try:
        low_ok = (lo > olo) | ((lo == olo) & (olo_in or not lo_in))
        high_ok = (hi < ohi) | ((hi == ohi) & (ohi_in or not hi_in))
        return bool((low_ok & high_ok).all())
    except RuntimeError:  # bounds of shapes that do not broadcast: not comparable
        return False
