"""The model contract: `LatentVariableModel`, `from_functions` and site metadata.

A generative story is a Pyro model/guide pair over a data plate named ``"data"`` at dim -1.
Engines never look inside a story beyond what :meth:`LatentVariableModel.sites` reports: which
sample sites are latent or observed, discrete or continuous, and local to the data plate or
global.
"""

from __future__ import annotations

import abc
import contextlib
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.nn import PyroModule
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.util import site_is_subsample

from ..core.data import data_key, num_data, width
from ..core.rng import fork_rng
from ._params import OuterParams, params_mode
from ._subsample import declared_subsample

__all__ = [
    "DATA_PLATE",
    "GuideStructure",
    "LatentVariableModel",
    "SiteInfo",
    "discrete_state_count",
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


@dataclass(frozen=True)
class GuideStructure:
    """What kind of proposal a guide is.

    Attributes
    ----------
    point_mass : tuple of str
        Latent sites the guide fixes at a point (``AutoDelta``): a MAP fit, not a distribution
        that importance weights or bounds can use.
    global_auxiliary : tuple of str
        Auxiliary guide sites outside the data plate that carry the density of local latents
        (``AutoDiagonalNormal``'s one vector over every latent): their density is joint over
        the data, so per-datum weights would leave it out.
    """

    point_mass: tuple[str, ...] = ()
    global_auxiliary: tuple[str, ...] = ()


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


def _site_info(site: dict, num_data: int, data_plate: str = DATA_PLATE) -> SiteInfo:
    fn = site["fn"]
    frames = [f for f in site["cond_indep_stack"] if f.vectorized]
    data_frames = [f for f in frames if f.name == data_plate]
    local = bool(data_frames)
    rows = num_data
    if local:
        frame = data_frames[0]
        # a plate with its own subsample_size B (and full size N) is Pyro's minibatching; the
        # engines set its indices (models._subsample), so its sites are per datum all the same;
        # size -1: a plate with no size given, sized by broadcasting against the data
        if frame.size not in (num_data, -1) and (frame.full_size or frame.size) != num_data:
            raise ValueError(
                f"plate '{data_plate}' has size {frame.full_size or frame.size} at site "
                f"'{site['name']}' but x has {num_data} rows; size the data plate with len(x): "
                f"pyro.plate('{data_plate}', len(x)) (subsample_size=B may be added)."
            )
        rows = frame.size
    batch_shape = tuple(fn.batch_shape)
    event_shape = tuple(fn.event_shape)
    batch_numel = math.prod(batch_shape)
    per_datum = batch_numel // rows if local and rows else batch_numel
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


def _check_data_plate(model: Any, sites: dict[str, SiteInfo], trace: poutine.Trace, n: int) -> None:
    """Refuse a story whose one-per-datum plate goes by another name than the one it declares:
    its local sites would pass for global ones."""
    if any(s.local for s in sites.values()):
        return
    others = sorted(
        {
            f.name
            for _, site in sample_sites(trace)
            for f in site["cond_indep_stack"]
            if f.vectorized and f.size == n and f.name != model.data_plate
        }
    )
    if others:
        raise ValueError(
            f"story '{model.name}' has no plate named '{model.data_plate}', but plate(s) "
            f"{others} of size N={n}; name the data plate with from_functions(..., "
            f"data_plate={others[0]!r}), or rename the plate '{model.data_plate}'."
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


def _look_key(x: Any, mask: Any) -> tuple | None:
    """What identifies one look at the data: weak references to ``x`` and ``mask`` and their
    versions; None (no reuse) for dict data or inside a Pyro handler, which may change what
    the story does."""
    # the model's own parameter scope changes nothing the story does; any other handler may
    if any(not isinstance(m, OuterParams) for m in _PYRO_STACK) or not isinstance(x, torch.Tensor):
        return None
    if mask is not None and not isinstance(mask, torch.Tensor):
        return None
    refs = (weakref.ref(x), None if mask is None else weakref.ref(mask))
    return refs, (x._version, None if mask is None else mask._version)


def _same_look(old: tuple, new: tuple) -> bool:
    (x_old, m_old), versions_old = old
    (x_new, m_new), versions_new = new
    same_mask = m_old is None if m_new is None else (m_old is not None and m_old() is m_new())
    return x_old() is x_new() and same_mask and versions_old == versions_new


class LatentVariableModel(PyroModule, metaclass=_ModelMeta):
    """Base class of every generative story: a Pyro model and guide over ``(x, mask=None)``.

    Subclasses implement :meth:`model` and :meth:`guide`. Both take ``x`` of shape ``(N, D)``
    and an optional bool ``mask`` of the same shape (True = observed), and put everything that
    is one-per-datum inside ``pyro.plate("data", N, dim=-1)``. Entries of ``x`` where the mask is
    False are filled by the engines (zero-filled, see :attr:`masked_fill`) and must not
    influence the likelihood: wrap the likelihood with ``.mask(mask)``.

    Parameters of a built-in model belong to the model object itself, never to Pyro's global
    parameter store, so two models in one process cannot share or clobber each other's values.
    Engines run every call inside :meth:`scoped` to guarantee that.
    """

    #: Whether :meth:`guide` is a real proposal q(z | x). A story built from a model function
    #: alone has none; engines that need one refuse it up front.
    has_guide: bool = True

    #: The name of the story's plate over data points.
    data_plate: str = DATA_PLATE

    #: D, the features per datum, when the model fixes it (built-in models do); engines and
    #: workflows check data against it. None for a story that takes any width.
    dim: int | None = None

    #: True when the sites, plates and shapes depend only on the shapes of (x, mask), never on
    #: their values, so that :meth:`sites` may remember its answer per shape. Built-in models
    #: declare it; a user's story is re-traced every time.
    static_structure: bool = False

    #: Whether the story takes a dict ``x`` (tensors that share N, with a mask dict that mirrors
    #: it). A user's story does; the built-in models take one (N, D) tensor.
    accepts_dict_data: bool = False

    #: What the engines put in the masked-out entries of ``x`` before the model sees them
    #: (:func:`~ppl_lvm.core.checks.check_data`): 0 for the built-in models, whose encoders
    #: take zero-filled data; a value some datum has (``"observed"``) for a user's story, so a
    #: masked discrete observation stays inside its support (a one-hot label stays one-hot).
    masked_fill: Literal["observed", "zero"] = "zero"

    #: Pyro's parameter mode (``module_local_params``) that model and guide run in: local for
    #: the built-in models (their parameters live on the module); a user's story runs in Pyro's
    #: global mode, inside the store that :meth:`scoped` gives the model alone.
    local_module_params: bool = True

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
        chunks before they allocate. The default is the width of one datum (summed over the
        tensors of a dict ``x``); a model with wider hidden layers says so.
        """
        return width(x)

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
        belongs to this model alone. A name this store lacks but the store outside holds (a
        guide trained beforehand with plain ``pyro.infer.SVI``) starts from a copy of that
        value, as ``pyro.param`` would return it; the outside store is never written.
        """
        outer = pyro.get_param_store().get_state()
        with (
            params_mode(self.local_module_params),
            pyro.get_param_store().scope(self._param_state()),
            # (with nothing outside, nothing to start from: one handler less on every site)
            OuterParams(outer) if outer["params"] else contextlib.nullcontext(),
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
        # One engine call looks at the same data several times (sites, supports, plate depth,
        # subsampling); the look is the same each time, so the last one is kept, for these very
        # tensors unchanged (identity and version) and outside any Pyro handler.
        looks = self.__dict__.setdefault("_ppl_last_look", {})
        key = _look_key(x, mask)
        last = looks.get(which)
        if key is not None and last is not None and _same_look(last[0], key):
            return last[1]
        # a look at the structure must not move the caller's random stream: the same seed has
        # to give the same numbers whether or not the metadata was already known. Its own draws
        # come from a fixed stream, so that parameters a guide creates lazily on its first run
        # (Pyro's autoguides) start the same whatever the caller's state
        with self.scoped(), fork_rng():
            torch.default_generator.manual_seed(0)
            tr = poutine.trace(fn).get_trace(x, mask)
        if key is not None:
            looks[which] = (key, tr)
        return tr

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
        key = (which, data_key(x, mask))
        cache = self.__dict__.setdefault("_ppl_sites_cache", {})
        if self.static_structure and key in cache:
            return cache[key]
        tr = self.trace(x, mask, which)
        out = {
            name: _site_info(site, num_data(x), self.data_plate)
            for name, site in sample_sites(tr)
            if not site["infer"].get("is_auxiliary", False)
        }
        _check_data_plate(self, out, tr, num_data(x))
        if self.static_structure:
            cache[key] = out
        return out

    def declared_subsample(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> int | None:
        """B when the story's data plate declares its own ``subsample_size`` (Pyro's way to
        minibatch: ``pyro.plate("data", len(x), subsample_size=B) as ind``), None when it takes
        all of ``x``; engines then set the plate's indices, B data at a time. Built-in models
        (static structure) never declare one."""
        if self.static_structure:
            return None
        return declared_subsample(self.trace(x, mask), self.data_plate, num_data(x))

    def guide_structure(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> GuideStructure:
        """What kind of proposal the guide is, from one trace of it (cached per shape for a
        model whose structure is static); see :class:`GuideStructure`."""
        key = ("guide_structure", data_key(x, mask))
        cache = self.__dict__.setdefault("_ppl_sites_cache", {})
        if self.static_structure and key in cache:
            return cache[key]
        tr = self.trace(x, mask, "guide")
        auxiliary, point_mass = [], []
        for name, site in sample_sites(tr):
            if site["is_observed"]:
                continue
            local = any(f.name == self.data_plate for f in site["cond_indep_stack"])
            if site["infer"].get("is_auxiliary", False):
                if not local:
                    auxiliary.append(name)
            elif type(_base_distribution(site["fn"])).__name__ == "Delta":
                point_mass.append(name)
        has_aux = any(s["infer"].get("is_auxiliary", False) for _, s in sample_sites(tr))
        out = GuideStructure(
            # a Delta site that a continuous auxiliary variable drives (AutoDiagonalNormal's
            # reparameterisation) is a change of variables, not a point mass
            point_mass=() if has_aux else tuple(point_mass),
            global_auxiliary=tuple(auxiliary),
        )
        if self.static_structure:
            cache[key] = out
        return out

    @property
    def name(self) -> str:
        """A readable name for messages and reports."""
        return type(self).__name__
