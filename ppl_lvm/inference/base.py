"""The engine contract: :class:`Engine`.

An engine answers three questions about any model/guide pair it can handle: ``fit`` learns the
parameters, ``log_evidence`` gives log p(x) per datum (exactly, as a bound, or as an estimate) and
``posterior`` describes p(z | x). An engine that cannot handle a story says so with
:class:`~ppl_lvm.core.errors.UnsupportedModelError` before doing any work. Every engine has the
same three signatures, so ``compare``, the CLI and the report call them alike.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from .._typing import ModelLike
from ..core.checks import check_data
from ..core.errors import UnsupportedModelError
from ..core.posterior import Posterior
from ..core.results import Evidence, EvidenceKind, FitResult
from ..models.base import GuideStructure, LatentVariableModel, SiteInfo
from ..models.story import as_model, conform_data, from_functions
from ..models.support import check_values

__all__ = ["Engine", "with_guide"]


class Engine(abc.ABC):
    """Base class of the inference engines.

    Subclasses declare what they can handle as class attributes, and every public method
    starts with :meth:`prepare`, which validates the data and refuses an unsupported story
    before any work is done.
    """

    #: Engine name used in results and messages.
    name: ClassVar[str] = "Engine"
    #: The kind of number ``log_evidence`` returns.
    evidence_kind: ClassVar[EvidenceKind] = "estimate"
    #: Whether local continuous latent sites can be handled.
    handles_continuous_local: ClassVar[bool] = True
    #: Whether local discrete latent sites can be handled.
    handles_discrete_local: ClassVar[bool] = True
    #: Whether the story must supply a guide.
    needs_guide: ClassVar[bool] = False
    #: Engines to suggest when this one refuses a continuous local site.
    alternatives_for_continuous: ClassVar[tuple[str, ...]] = ("ImportanceSampling", "SVI")
    #: The constructor's settings, in order; ``repr`` shows them and the registry's ``create``
    #: accepts them as overrides.
    options: ClassVar[tuple[str, ...]] = ()

    def prepare(
        self, model: ModelLike, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[LatentVariableModel, torch.Tensor, torch.Tensor | None, dict[str, SiteInfo]]:
        """Coerce the story, validate the data against it, and check this engine can handle it.

        The one place every engine entry point checks its input: the data's shape and values
        (:func:`~ppl_lvm.core.checks.check_data`), their dtype against the model's parameters
        (cast, with one warning), their width against the model's ``dim``, and every observed
        value against the support of its site (:func:`~ppl_lvm.models.support.check_values`).

        Returns
        -------
        model : LatentVariableModel
        x : torch.Tensor of shape (N, D), masked entries zero-filled
        mask : torch.Tensor of shape (N, D) or None
        sites : dict of str to SiteInfo
            The model's site metadata.

        Raises
        ------
        UnsupportedModelError
            Before any work, when the story has a site this engine cannot handle.
        ValueError
            For data the story cannot score, naming the problem and the fix.
        """
        lvm = as_model(model)
        x, mask = check_data(x, mask, fill=lvm.masked_fill)
        x = conform_data(lvm, x)
        sites = lvm.sites(x, mask)
        self.check_supported(lvm, sites)
        if self.needs_guide:
            self.check_proposal(lvm, sites, lvm.guide_structure(x, mask))
        check_values(lvm, x, mask)
        return lvm, x, mask, sites

    def check_proposal(  # noqa: B027 (a hook: most engines accept every guide)
        self, model: LatentVariableModel, sites: dict[str, SiteInfo], guide: GuideStructure
    ) -> None:
        """Raise :class:`UnsupportedModelError` if the guide cannot serve this engine (a point
        mass, or a density joint over the data where per-datum weights are needed)."""

    def check_supported(self, model: LatentVariableModel, sites: dict[str, SiteInfo]) -> None:
        """Raise :class:`UnsupportedModelError` if this engine cannot handle the story."""
        if self.needs_guide and not model.has_guide:
            raise UnsupportedModelError(
                f"{self!r} needs a guide, and story '{model.name}' has none; pass guide_fn "
                "to ppl_lvm.models.from_functions, or use an engine that needs none: "
                "ImportanceSampling(proposal='prior'), or Enumeration where every local latent "
                "is discrete."
            )
        for info in sites.values():
            if info.observed or not info.local:
                continue
            if not info.discrete and not self.handles_continuous_local:
                others = " or ".join(self.alternatives_for_continuous)
                raise UnsupportedModelError(
                    f"{self.name} cannot sum out the continuous local latent site "
                    f"'{info.name}' ({info.distribution}); use {others} for this story."
                )
            if info.discrete and not self.handles_discrete_local:
                raise UnsupportedModelError(
                    f"{self.name} cannot handle the discrete local latent site '{info.name}' "
                    f"({info.distribution}); use Enumeration or ImportanceSampling."
                )

    @abc.abstractmethod
    def fit(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int | None = 0,
        progress: bool = False,
        **options: Any,
    ) -> FitResult:
        """Learn the story's parameters from ``x`` (N, D); ``options`` are the engine's own
        (``epochs=``, ``method=``, ...), each documented by the subclass."""

    @abc.abstractmethod
    def log_evidence(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int | None = 0,
    ) -> Evidence:
        """log p(x_n) for each datum of ``x`` (N, D), over its observed entries; an exact
        engine ignores ``seed``."""

    @abc.abstractmethod
    def posterior(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        num_samples: int | None = 1000,
        seed: int | None = 0,
    ) -> Posterior:
        """p(z | x) for each datum of ``x`` (N, D)."""

    @property
    def label(self) -> str:
        """A short name that tells apart engines of one class, e.g. ``"IS prior, K=1000"``;
        tables and figures use it."""
        return self.name

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.options)
        return f"{type(self).__name__}({settings})"


def with_guide(owner: LatentVariableModel, guide_fn: Callable) -> LatentVariableModel:
    """``owner``'s model with another guide (an engine's own proposal): the model runs inside
    ``owner``'s parameter scope, so it keeps its parameters; the guide runs as it is."""
    story = from_functions(owner.model, guide_fn, name=owner.name, data_plate=owner.data_plate)
    return _Scoped(story, owner)


class _Scoped(LatentVariableModel):
    """A story whose calls run inside another model's parameter scope (the user's model)."""

    def __init__(self, story: LatentVariableModel, owner: LatentVariableModel):
        super().__init__()
        object.__setattr__(self, "_story", story)
        object.__setattr__(self, "_owner", owner)

    def model(self, x, mask=None):
        with self._owner.scoped():
            return self._story.model(x, mask)

    def guide(self, x, mask=None):
        return self._story.guide(x, mask)

    def working_width(self, x):
        return self._owner.working_width(x)

    @property
    def data_plate(self) -> str:
        return self._owner.data_plate

    @property
    def name(self) -> str:
        return self._owner.name
