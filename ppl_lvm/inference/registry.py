"""The one engine registry: names to engine factories, read by ``compare``, the CLI and the report.

Built-in engines register themselves (in :mod:`ppl_lvm.inference`) under the names the CLI has
always used; a user's engine joins them with one call::

    from ppl_lvm import inference
    inference.register("my-engine", MyEngine, label="my engine, exact")
    inference.available()   # (..., "my-engine")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import Engine

__all__ = [
    "EngineSpec",
    "available",
    "create",
    "markdown_table",
    "register",
    "spec",
    "unregister",
]


@dataclass(frozen=True)
class EngineSpec:
    """One registered engine.

    Attributes
    ----------
    name : str
        The registry name (``--engine`` in the CLI, ``engines=[...]`` in ``compare``).
    factory : callable
        ``factory(**overrides) -> Engine``: a fresh engine with this name's settings.
    label : str
        A one-line description for help texts and tables.
    """

    name: str
    factory: Callable[..., Engine]
    label: str


_REGISTRY: dict[str, EngineSpec] = {}


def register(
    name: str,
    factory: Callable[..., Engine],
    *,
    label: str | None = None,
    replace: bool = False,
) -> EngineSpec:
    """Make an engine available under ``name``.

    Parameters
    ----------
    name : str
        Lower-case, no commas or spaces (it appears in ``--engine a,b``).
    factory : callable
        Called with no arguments for the default settings, or with keyword overrides of the
        engine's ``options``; returns a new :class:`Engine`.
    label : str, optional
        A description; defaults to the default engine's ``label``.
    replace : bool
        Allow replacing an existing name.

    Returns
    -------
    EngineSpec

    Raises
    ------
    ValueError
        For a malformed name, a name already taken (without ``replace=True``), or a factory
        that does not return an Engine.
    """
    if not isinstance(name, str) or not name or any(c in name for c in " ,\t\n"):
        raise ValueError(
            f"an engine name must be a non-empty string without spaces or commas, got {name!r}."
        )
    if name in _REGISTRY and not replace:
        raise ValueError(
            f"an engine named {name!r} is already registered; pick another name, or pass "
            "replace=True to register(...)."
        )
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}.")
    engine = factory()
    if not isinstance(engine, Engine):
        raise TypeError(
            f"factory for {name!r} returned {type(engine).__name__}, not an Engine subclass."
        )
    entry = EngineSpec(name=name, factory=factory, label=label or engine.label)
    _REGISTRY[name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (a test's engine, say); KeyError if absent."""
    if name not in _REGISTRY:
        raise KeyError(f"no engine named {name!r} is registered; see available().")
    del _REGISTRY[name]


def available() -> tuple[str, ...]:
    """Names of every registered engine, in registration order."""
    return tuple(_REGISTRY)


def spec(name: str) -> EngineSpec:
    """The registry entry of ``name``.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the registered ones.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown engine name {name!r}; use one of {list(_REGISTRY)}, or pass an Engine "
            "instance such as ImportanceSampling(proposal='prior', num_particles=5000)."
        )
    return _REGISTRY[name]


def create(name: str, **overrides: Any) -> Engine:
    """A fresh engine registered as ``name``, with optional overrides of its settings.

    Parameters
    ----------
    name : str
        A name from :func:`available`.
    **overrides
        Settings the engine's ``options`` list (``num_particles=``, ``lr=``, ...).

    Raises
    ------
    ValueError
        For an unknown name, or an override the engine does not take.
    """
    entry = spec(name)
    if not overrides:
        return entry.factory()
    options = type(entry.factory()).options
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ValueError(
            f"engine {name!r} takes no setting {unknown}; its settings are {list(options)}."
        )
    return entry.factory(**overrides)


def markdown_table() -> str:
    """The registered engines as a Markdown table (name, label, the kind of number
    ``log_evidence`` gives, description): the README's table is this text, and a test keeps the
    two equal."""
    lines = ["| name | engine | log_evidence | description |", "|---|---|---|---|"]
    for name, entry in _REGISTRY.items():
        engine = entry.factory()
        kind = engine.evidence_kind.replace("_", " ")
        lines.append(f"| `{name}` | {engine.label} | {kind} | {entry.label} |")
    return "\n".join(lines)
