"""The model contract: `LatentVariableModel`, `from_functions` and site metadata.

A generative story is a Pyro model/guide pair over a data plate named ``"data"`` at dim -1.
Engines never look inside a story beyond what :meth:`LatentVariableModel.sites` reports: which
sample sites are latent or observed, discrete or continuous, and local to the data plate or
global.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.nn import PyroModule
from pyro.poutine.util import site_is_subsample

from .._typing import ModelLike, StoryFn
from ..core.rng import fork_rng

__all__ = [
    "DATA_PLATE",
    "FunctionModel",
    "LatentVariableModel",
    "SiteInfo",
    "as_model",
    "conform_data",
    "discrete_state_count",
    "from_functions",
    "sample_sites",
]

#: Name of the plate over data points. Every story puts it at dim -1.
DATA_PLATE = "data"


@dataclass(frozen=True)
class SiteInfo:
    """What an engine needs to know about one sample site.

    Attributes
    ----------
    name : str
        The site's name.
    observed : bool
        True for a site conditioned on data (``obs=``).
    discrete : bool
        True when the site's support is discrete.
    local : bool
        True when the site sits inside the data plate, i.e. one value per datum.
    distribution : str
        Class name of the site's distribution, after unwrapping ``to_event``/``mask``/``expand``.
    support : torch.distributions.constraints.Constraint
        The site's support.
    batch_shape : tuple of int
        Batch shape as traced; for a local site it ends with N.
    event_shape : tuple of int
        Event shape.
    enumerate : str or None
        The site's ``infer["enumerate"]`` setting (``"parallel"``, ``"sequential"``) or None.
    num_states : int or None
        Number of values each scalar element can take, for a finite discrete support.
    elements_per_datum : int
        Scalar elements per datum: batch elements outside the data plate times event size.
    """

    name: str
    observed: bool
    discrete: bool
    local: bool
    distribution: str
    support: Any
    batch_shape: tuple[int, ...]
    event_shape: tuple[int, ...]
    enumerate: str | None
    num_states: int | None
    elements_per_datum: int

    @property
    def latent(self) -> bool:
        """True for a latent (unobserved) site."""
        return not self.observed


def _base_distribution(fn: Any) -> Any:
    # to_event, mask and expand wrap the distribution that says what the values are.
    # (not TransformedDistribution: LogNormal is its own family, not a Normal)
    wrappers = (
        dist.Independent,
        dist.MaskedDistribution,
        dist.ExpandedDistribution,
        torch.distributions.Independent,
    )
    while isinstance(fn, wrappers):
        fn = fn.base_dist
    return fn


def _num_states(fn: Any) -> int | None:
    base = _base_distribution(fn)
    if not base.support.is_discrete or not getattr(base, "has_enumerate_support", False):
        return None
    return int(base.enumerate_support(expand=False).shape[0])


def _site_info(site: dict, num_data: int) -> SiteInfo:
    fn = site["fn"]
    frames = [f for f in site["cond_indep_stack"] if f.vectorized]
    data_frames = [f for f in frames if f.name == DATA_PLATE]
    local = bool(data_frames)
    if local:
        frame = data_frames[0]
        if frame.dim != -1:
            raise ValueError(
                f"site '{site['name']}' sits in plate '{DATA_PLATE}' at dim {frame.dim}; "
                f"the data plate must be at dim -1: write pyro.plate('{DATA_PLATE}', N, dim=-1)."
            )
        if frame.size != num_data:
            raise ValueError(
                f"plate '{DATA_PLATE}' has size {frame.size} at site '{site['name']}' but x has "
                f"{num_data} rows; size the data plate with len(x)."
            )
    batch_shape = tuple(fn.batch_shape)
    event_shape = tuple(fn.event_shape)
    batch_numel = math.prod(batch_shape)
    per_datum = batch_numel // num_data if local and num_data else batch_numel
    return SiteInfo(
        name=site["name"],
        observed=bool(site["is_observed"]),
        discrete=bool(fn.support.is_discrete),
        local=local,
        distribution=type(_base_distribution(fn)).__name__,
        support=fn.support,
        batch_shape=batch_shape,
        event_shape=event_shape,
        enumerate=site["infer"].get("enumerate"),
        num_states=_num_states(fn),
        elements_per_datum=int(per_datum * math.prod(event_shape)),
    )


def sample_sites(trace: poutine.Trace) -> Iterator[tuple[str, dict]]:
    """The real sample sites of a trace, in order: no plate subsample sites."""
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site):
            yield name, site


def discrete_state_count(sites: dict[str, SiteInfo]) -> int | None:
    """Size of the joint space of the local discrete latents, per datum.

    Parameters
    ----------
    sites : dict of str to SiteInfo
        Site metadata from :meth:`LatentVariableModel.sites`.

    Returns
    -------
    int or None
        The exact product of ``num_states ** elements_per_datum`` over local discrete latent
        sites (a Python int, so 2^30 does not overflow), 1 when there are none, and None when
        some local discrete site has no finite support.
    """
    total = 1
    for info in sites.values():
        if info.observed or not info.local or not info.discrete:
            continue
        if info.num_states is None:
            return None
        total *= info.num_states**info.elements_per_datum
    return total


class _ModelMeta(type(PyroModule), abc.ABCMeta):
    """Pyro's module metaclass with ``ABCMeta``, so that a model can subclass the capability
    mixins of :mod:`ppl_lvm.models.capabilities`, whose methods are abstract."""


class LatentVariableModel(PyroModule, metaclass=_ModelMeta):
    """Base class of every generative story: a Pyro model and guide over ``(x, mask=None)``.

    Subclasses implement :meth:`model` and :meth:`guide`. Both take ``x`` of shape ``(N, D)``
    and an optional bool ``mask`` of the same shape (True = observed), and put everything that
    is one-per-datum inside ``pyro.plate("data", N, dim=-1)``. Entries of ``x`` where the mask is
    False are zero-filled by the engines and must not influence the likelihood: wrap the
    likelihood with ``.mask(mask)``.

    Parameters of a built-in model belong to the model object itself, never to Pyro's global
    parameter store, so two models in one process cannot share or clobber each other's values.
    Engines run every call inside :meth:`scoped` to guarantee that.
    """

    #: Whether :meth:`guide` is a real proposal q(z | x). A story built from a model function
    #: alone has none; engines that need one refuse it up front.
    has_guide: bool = True

    #: D, the features per datum, when the model fixes it (built-in models do); engines and
    #: workflows check data against it. None for a story that takes any width.
    dim: int | None = None

    #: True when the sites, plates and shapes depend only on the shapes of (x, mask), never on
    #: their values, so that :meth:`sites` may remember its answer per shape. Built-in models
    #: declare it; a user's story is re-traced every time.
    static_structure: bool = False

    def __init__(self, name: str = "") -> None:
        # Built in local-parameter mode so that submodules (networks, autoguides) called inside
        # scoped() find a parameter state of their own model, never Pyro's global store.
        with pyro.settings.context(module_local_params=True):
            super().__init__(name)

    def model(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        """The generative model p(x, z). ``x``: (N, D); ``mask``: (N, D) bool or None."""
        raise NotImplementedError(f"{type(self).__name__} must implement model(x, mask=None).")

    def guide(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        """The variational family q(z | x). ``x``: (N, D); ``mask``: (N, D) bool or None."""
        raise NotImplementedError(f"{type(self).__name__} must implement guide(x, mask=None).")

    def working_width(self, x: torch.Tensor) -> int:
        """Numbers the widest tensor of one model/guide pass holds per particle and datum.

        Engines divide the memory budget by it (times the enumerated states) to size their
        chunks before they allocate. The default is the width of one datum; a model with wider
        hidden layers says so.
        """
        return max(1, math.prod(x.shape[1:]))

    def capability_enabled(self, capability: type) -> bool:
        """Whether a capability this model's class declares holds for this instance; see
        :func:`ppl_lvm.models.capabilities.has`. True unless a subclass says otherwise."""
        return True

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        """Calling the module runs the model."""
        return self.model(x, mask)

    # ----------------------------------------------------------------------------------------
    # parameter ownership
    def _param_state(self) -> dict:
        state = self.__dict__.get("_ppl_param_state")
        if state is None:
            state = {"params": {}, "constraints": {}}
            self.__dict__["_ppl_param_state"] = state
        return state

    @contextlib.contextmanager
    def scoped(self) -> Iterator[None]:
        """Run model and guide calls with this model's own parameters.

        Module attributes (``PyroParam``, ``nn.Parameter``) stay local to the module, and any
        ``pyro.param`` statement in a user's function reads and writes a parameter store that
        belongs to this model alone.
        """
        with (
            pyro.settings.context(module_local_params=True),
            pyro.get_param_store().scope(self._param_state()),
        ):
            yield

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Unconstrained tensors to optimise: module parameters and the model's own ``pyro.param``s.

        Call after the model and guide have run once (for example after :meth:`sites`), since a
        ``pyro.param`` statement creates its parameter on first use.
        """
        params = list(self.parameters())
        seen = {id(p) for p in params}
        for value in self._param_state()["params"].values():
            if id(value) not in seen and value.requires_grad:
                params.append(value)
                seen.add(id(value))
        return params

    # ----------------------------------------------------------------------------------------
    # metadata
    def trace(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        which: Literal["model", "guide"] = "model",
    ) -> poutine.Trace:
        """One ordinary (unvectorised, unenumerated) trace of the model or the guide."""
        fn = self.model if which == "model" else self.guide
        # a look at the structure must not move the caller's random stream: the same seed has
        # to give the same numbers whether or not the metadata was already known
        with self.scoped(), fork_rng():
            return poutine.trace(fn).get_trace(x, mask)

    def sites(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        which: Literal["model", "guide"] = "model",
    ) -> dict[str, SiteInfo]:
        """Metadata of every sample site, in execution order.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), optional
        which : {"model", "guide"}

        Returns
        -------
        dict of str to SiteInfo
        """
        if which not in ("model", "guide"):
            raise ValueError(f"which must be 'model' or 'guide', got {which!r}.")
        if which == "guide" and not self.has_guide:
            raise ValueError(
                f"{self.name} has no guide. Pass guide_fn to from_functions, or use an engine "
                "that needs none (Enumeration, or ImportanceSampling with proposal='prior')."
            )
        key = (which, tuple(x.shape), x.dtype, x.device, mask is None)
        cache = self.__dict__.setdefault("_ppl_sites_cache", {})
        if self.static_structure and key in cache:
            return cache[key]
        tr = self.trace(x, mask, which)
        out = {
            name: _site_info(site, x.shape[0])
            for name, site in sample_sites(tr)
            if not site["infer"].get("is_auxiliary", False)
        }
        if self.static_structure:
            cache[key] = out
        return out

    @property
    def name(self) -> str:
        """A readable name for messages and reports."""
        return type(self).__name__


def _accepts_mask(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return True
    if any(p.kind == p.VAR_POSITIONAL for p in params.values()):
        return True
    return "mask" in params or len(params) >= 2


class FunctionModel(LatentVariableModel):
    """A user's story made of plain functions; build one with :func:`from_functions`."""

    def __init__(self, model_fn: StoryFn, guide_fn: StoryFn | None = None, name: str | None = None):
        super().__init__()
        if not callable(model_fn):
            raise TypeError(f"model_fn must be callable, got {type(model_fn).__name__}.")
        if guide_fn is not None and not callable(guide_fn):
            raise TypeError(f"guide_fn must be callable or None, got {type(guide_fn).__name__}.")
        self.model_fn = model_fn
        self.guide_fn = guide_fn
        self.has_guide = guide_fn is not None
        self._name = name or getattr(model_fn, "__name__", "story")
        self._model_mask = _accepts_mask(model_fn)
        self._guide_mask = guide_fn is not None and _accepts_mask(guide_fn)

    @staticmethod
    def _call(fn: StoryFn, takes_mask: bool, role: str, x: torch.Tensor, mask: Any) -> Any:
        if takes_mask:
            return fn(x, mask)
        if mask is not None:
            raise ValueError(
                f"the {role} function {getattr(fn, '__name__', fn)!r} takes no mask, but a mask "
                f"was given; add a `mask=None` parameter and wrap the likelihood with .mask(mask)."
            )
        return fn(x)

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
    model_fn: StoryFn, guide_fn: StoryFn | None = None, *, name: str | None = None
) -> FunctionModel:
    """Wrap a user's Pyro model (and optional guide) functions as a :class:`LatentVariableModel`.

    Parameters
    ----------
    model_fn : callable
        ``model_fn(x, mask=None)``; one-per-datum sites go in ``pyro.plate("data", len(x))``.
        A function of ``x`` alone is accepted for fully observed data.
    guide_fn : callable, optional
        ``guide_fn(x, mask=None)`` with a sample site for every latent site of the model.
    name : str, optional
        Name used in messages; defaults to ``model_fn.__name__``.

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
    return FunctionModel(model_fn, guide_fn, name=name)


def conform_data(model: LatentVariableModel, x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, D) checked against the model: its width against ``model.dim``, and its dtype
    against the model's parameters, to which it is cast with one warning.

    Raises
    ------
    ValueError
        When the model fixes D and ``x`` has another number of features; the message names both.
    """
    if model.dim is not None and x.dim() == 2 and x.shape[1] != model.dim:
        raise ValueError(
            f"x has D={x.shape[1]} features per datum but {model.name} was built for "
            f"dim={model.dim}; pass data of shape (N, {model.dim}) or build the model for "
            f"dim={x.shape[1]}."
        )
    ref = next(iter(model.parameters()), None)
    if ref is not None and ref.is_floating_point() and x.dtype != ref.dtype:
        warnings.warn(
            f"x is {x.dtype} but {model.name}'s parameters are {ref.dtype}; x was cast to "
            f"{ref.dtype}. Cast one to match the other (x.to({ref.dtype}), or model.to(x.dtype)) "
            "to silence this.",
            UserWarning,
            stacklevel=3,
        )
        x = x.to(ref.dtype)
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
