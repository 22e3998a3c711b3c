"""A user's own story: :func:`from_functions`, :class:`FunctionModel`, and what every engine
does with what it is handed (:func:`as_model`, :func:`conform_data`)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .._typing import ModelLike, StoryFn
from ..core.data import Data, entries, map_tensors
from ._params import params_mode
from ._subsample import install_autoguide_plates
from .base import DATA_PLATE, LatentVariableModel

__all__ = ["FunctionModel", "as_model", "conform_data", "from_functions"]


def _mask_parameter(fn: Callable) -> str:
    """How ``fn`` takes the mask: ``"named"`` (a parameter called mask), ``"keywords"`` (only
    through ``**kwargs``, as Pyro's autoguides forward them) or ``"none"``. Never by position:
    a second parameter such as ``num_components`` is the story's own."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return "keywords"
    if "mask" in params:
        return "named"
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return "keywords"
    return "none"


class FunctionModel(LatentVariableModel):
    """A user's story made of plain functions; build one with :func:`from_functions`."""

    # the user's functions run as Pyro runs them, in global-parameter mode (see _call)
    local_module_params = False

    def __init__(
        self,
        model_fn: StoryFn,
        guide_fn: StoryFn | None = None,
        name: str | None = None,
        *,
        data_plate: str = DATA_PLATE,
        story_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        if not callable(model_fn):
            raise TypeError(f"model_fn must be callable, got {type(model_fn).__name__}.")
        if guide_fn is not None and not callable(guide_fn):
            raise TypeError(f"guide_fn must be callable or None, got {type(guide_fn).__name__}.")
        if not isinstance(data_plate, str) or not data_plate:
            raise TypeError(f"data_plate must be a plate's name (a str), got {data_plate!r}.")
        # registered as plain submodules (their parameters are this model's), not adopted as
        # Pyro submodules: an autoguide already run, e.g. trained with pyro.infer.SVI, keeps its
        # own Pyro context (adopting it is an AssertionError in Pyro)
        torch.nn.Module.__setattr__(self, "model_fn", model_fn)
        torch.nn.Module.__setattr__(self, "guide_fn", guide_fn)
        self.has_guide = guide_fn is not None
        self.data_plate = data_plate
        self.story_kwargs = dict(story_kwargs or {})
        self._name = name or getattr(model_fn, "__name__", "story")
        self.accepts_dict_data = True
        self.masked_fill = "observed"
        self._model_mask = _mask_parameter(model_fn)
        self._guide_mask = "none" if guide_fn is None else _mask_parameter(guide_fn)
        # an autoguide's per-datum parameters then follow the minibatch's indices
        install_autoguide_plates(self, data_plate)

    def _call(self, fn: StoryFn, how: str, role: str, x: torch.Tensor, mask: Any) -> Any:
        kwargs = dict(self.story_kwargs)
        if how == "named" or (how == "keywords" and mask is not None):
            kwargs["mask"] = mask
        elif mask is not None:
            raise ValueError(
                f"the {role} function {getattr(fn, '__name__', fn)!r} takes no mask (it has no "
                "parameter named `mask`), but a mask was given; add a `mask=None` parameter and "
                "wrap the likelihood with .mask(mask). The mask is never passed by position."
            )
        # The user's functions run as Pyro runs them, in global-parameter mode (inside the
        # store that scoped() gives this model alone): a PyroModule the story calls but does not
        # own, such as the GMM tutorial's AutoDelta inside full_guide, was built in that mode
        # and has no local parameter state to enter.
        with params_mode(False):
            return fn(x, **kwargs)

    def model(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        return self._call(self.model_fn, self._model_mask, "model", x, mask)

    def guide(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        if self.guide_fn is None:
            raise ValueError(
                f"story '{self._name}' has no guide; pass guide_fn to from_functions, or use an "
                "engine that needs none (Enumeration, or ImportanceSampling(proposal='prior'))."
            )
        return self._call(self.guide_fn, self._guide_mask, "guide", x, mask)

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        guide = getattr(self.guide_fn, "__name__", None)
        return f"FunctionModel(model={self._name!r}, guide={guide!r})"


def from_functions(
    model_fn: StoryFn,
    guide_fn: StoryFn | None = None,
    *,
    name: str | None = None,
    data_plate: str = DATA_PLATE,
    **story_kwargs: Any,
) -> FunctionModel:
    """Wrap a user's Pyro model (and optional guide) functions as a :class:`LatentVariableModel`.

    Parameters
    ----------
    model_fn : callable
        ``model_fn(x, mask=None)``; one-per-datum sites go in ``pyro.plate("data", len(x))``.
        A function of ``x`` alone is accepted for fully observed data. ``x`` is what the user
        passed the engine: a tensor (N, ...) or, as is, a dict of tensors that share N (images
        and labels, sequences and lengths), with ``mask`` None, a bool tensor, or a dict of
        masks for some keys. A masked entry holds a value some datum has (the first fully
        observed one's), never NaN and never outside a discrete observation's support.
    guide_fn : callable, optional
        ``guide_fn(x, mask=None)`` with a sample site for every latent site of the model.
    name : str, optional
        Name used in messages; defaults to ``model_fn.__name__``.
    data_plate : str
        The name of the story's plate over data points ("data" by default).
    **story_kwargs
        Extra keyword arguments that reach both model and guide on every call, as Pyro passes
        them (``num_components=3``). The mask reaches a story only through a parameter named
        ``mask``, never by position.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x, mask=None):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0).expand([len(x)]), obs=x[:, 0])
    >>> story = from_functions(model)
    >>> story.sites(torch.zeros(3, 1))["z"].local
    True
    """
    return FunctionModel(
        model_fn, guide_fn, name=name, data_plate=data_plate, story_kwargs=story_kwargs
    )


def conform_data(model: LatentVariableModel, x: Data) -> Data:
    """``x`` checked against the model: its width against ``model.dim``, and the dtype of its
    floating entries against the model's parameters, to which they are cast with one warning
    (integer entries of a dict, labels and lengths, stay as they are).

    Raises
    ------
    TypeError
        When ``x`` is a dict and the model takes one tensor (the built-in models).
    ValueError
        When the model fixes D and ``x`` has another number of features; the message names both.
    """
    if isinstance(x, Mapping) and not model.accepts_dict_data:
        raise TypeError(
            f"{model.name} takes x as one tensor of shape (N, D), not a dict (keys {list(x)}); "
            "pass the one tensor it models, or write a story over the dict with "
            "ppl_lvm.models.from_functions."
        )
    if (
        model.dim is not None
        and isinstance(x, torch.Tensor)
        and x.dim() == 2
        and x.shape[1] != model.dim
    ):
        raise ValueError(
            f"x has D={x.shape[1]} features per datum but {model.name} was built for "
            f"dim={model.dim}; pass data of shape (N, {model.dim}) or build the model for "
            f"dim={x.shape[1]}."
        )
    ref = next(iter(model.parameters()), None)
    if ref is None or not ref.is_floating_point():
        return x
    cast = [k for k, v in entries(x) if v.is_floating_point() and v.dtype != ref.dtype]
    if cast:
        first = entries(x)[0][1] if cast[0] is None else x[cast[0]]
        what = "x" if cast[0] is None else f"x[{cast[0]!r}]"
        warnings.warn(
            f"{what} is {first.dtype} but {model.name}'s parameters are {ref.dtype}; {what} was "
            f"cast to {ref.dtype}. Cast one to match the other (x.to({ref.dtype}), or "
            "model.to(x.dtype)) to silence this.",
            UserWarning,
            stacklevel=3,
        )
        x = map_tensors(lambda v: v.to(ref.dtype) if v.is_floating_point() else v, x)
    return x


def as_model(obj: ModelLike) -> LatentVariableModel:
    """Coerce what a user hands an engine into a :class:`LatentVariableModel`.

    Accepts a ``LatentVariableModel``, a ``(model_fn, guide_fn)`` pair, or a model function.
    """
    if isinstance(obj, LatentVariableModel):
        return obj
    if isinstance(obj, tuple):
        if len(obj) != 2:
            raise TypeError(
                f"a story given as a tuple must be (model_fn, guide_fn), got {len(obj)} items."
            )
        return from_functions(obj[0], obj[1])
    if callable(obj) and not isinstance(obj, torch.nn.Module):
        return from_functions(obj)
    raise TypeError(
        f"expected a LatentVariableModel, a (model_fn, guide_fn) pair or a model function, got "
        f"{type(obj).__name__}; wrap your functions with ppl_lvm.models.from_functions."
    )
