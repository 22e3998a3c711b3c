"""The previous release's constructor spellings, kept working for one release with a warning.

Every model now takes ``(dim, <latent size>, ...)`` with sizes named ``num_*``. Where the old
order put two sizes first (``GaussianMixture(n_components, dim)``), the new signature is
``__init__(self, dim, *, num_components, ...)``: the size after ``dim`` is keyword-only, so a
call with two leading positional arguments cannot be the new spelling and is read, with a
``FutureWarning`` that spells the call out, in the old order. Once the old order is removed,
such a call raises ``TypeError`` rather than silently meaning something else.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["legacy_signature", "renamed_attribute"]

F = TypeVar("F", bound=Callable[..., None])

#: Old keyword -> new keyword, shared by every model.
RENAMED = {"n_components": "num_components", "n_init": "num_init"}


def _warn(message: str) -> None:
    # wrapper -> helper -> here: level 4 names the line that built the model
    warnings.warn(message, FutureWarning, stacklevel=4)


def _rename_keywords(cls: str, kwargs: dict, renamed: Mapping[str, str]) -> dict:
    out = dict(kwargs)
    for old, new in renamed.items():
        if old not in out:
            continue
        if new in out:
            raise TypeError(f"{cls}() got both {old}= and {new}=; pass only {new}=.")
        out[new] = out.pop(old)
        _warn(f"{cls}({old}=...) is deprecated; write {cls}({new}={out[new]!r}).")
    return out


def _legacy_positional(
    cls: str, old_order: tuple[str, ...], args: tuple, kwargs: dict, renamed: Mapping[str, str]
) -> dict:
    if len(args) > len(old_order):
        raise TypeError(
            f"{cls}() takes 1 positional argument (dim) but {len(args)} were given; pass the "
            "others by keyword."
        )
    out = dict(kwargs)
    names = old_order[: len(args)]
    for name, value in zip(names, args, strict=True):
        new = renamed.get(name, name)
        if new in out:
            raise TypeError(f"{cls}() got multiple values for argument {new!r}.")
        out[new] = value
    spelled = ["dim", *(renamed.get(n, n) for n in old_order if n != "dim")]
    new_call = ", ".join(f"{n}={out[n]!r}" for n in spelled if n in out)
    old_call = ", ".join(old_order[: max(len(args), 2)])
    _warn(f"{cls}({old_call}) is deprecated; write {cls}({new_call}).")
    return out


def legacy_signature(old_order: tuple[str, ...], renamed: Mapping[str, str] = RENAMED):
    """Decorate ``__init__(self, dim, *, num_..., ...)`` to accept the old spellings too.

    Parameters
    ----------
    old_order : tuple of str
        The previous positional order, e.g. ``("n_components", "dim", "covariance")``.
    renamed : mapping of str to str
        Old keyword names to new ones.

    The rule: two or more positional arguments, or one together with ``dim=``, are the old
    order; an old keyword is renamed. Each warns with ``FutureWarning`` naming the new spelling.
    """

    def decorate(init: F) -> F:
        @functools.wraps(init)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
            cls = type(self).__name__
            kwargs = _rename_keywords(cls, kwargs, renamed)
            if len(args) >= 2 or (len(args) == 1 and "dim" in kwargs):
                kwargs = _legacy_positional(cls, old_order, args, kwargs, renamed)
                args = ()
            init(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def renamed_attribute(old: str, new: str) -> property:
    """A property ``old`` that reads and writes ``new``, with a ``FutureWarning``."""

    def message(self: Any) -> str:
        return f"{type(self).__name__}.{old} is deprecated; use .{new}."

    def fget(self: Any) -> Any:
        warnings.warn(message(self), FutureWarning, stacklevel=2)
        return getattr(self, new)

    def fset(self: Any, value: Any) -> None:
        warnings.warn(message(self), FutureWarning, stacklevel=2)
        setattr(self, new, value)

    return property(fget, fset, doc=f"Deprecated alias of ``{new}``.")
