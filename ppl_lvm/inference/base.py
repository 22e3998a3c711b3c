"""The engine contract and the results every engine returns.

An engine answers three questions about any model/guide pair it can handle: ``fit`` learns the
parameters, ``log_evidence`` gives log p(x) per datum (exactly, as a bound, or as an estimate) and
``posterior`` describes p(z | x). An engine that cannot handle a story says so with
:class:`UnsupportedModelError` before doing any work.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from .._typing import ModelLike
from .._utils import check_data
from ..models.base import LatentVariableModel, SiteInfo, as_model

if TYPE_CHECKING:
    import arviz

__all__ = [
    "Engine",
    "Evidence",
    "FitResult",
    "ModelGuideMismatchError",
    "Posterior",
    "UnsupportedModelError",
]

EvidenceKind = Literal["exact", "lower_bound", "estimate"]
_KINDS = ("exact", "lower_bound", "estimate")


class UnsupportedModelError(ValueError):
    """An engine was given a story it cannot handle. The message names the site and the engine
    to use instead."""


class ModelGuideMismatchError(ValueError):
    """A model and guide disagree on their latent sites, supports or shapes."""


def _fmt(value: float) -> str:
    return f"{value:,.4f}" if abs(value) < 1e6 else f"{value:.4e}"


@dataclass(frozen=True, eq=False)
class FitResult:
    """What a fit did.

    Attributes
    ----------
    engine : str
        Name of the engine that fitted.
    objective : str
        What was maximised, e.g. ``"elbo"``, ``"iwae"``, ``"log_likelihood"``.
    history : torch.Tensor of shape (num_steps,)
        The objective per datum after each step (higher is better).
    seconds : float
        Wall time of the fit.
    num_steps : int
        Optimisation or EM steps taken.
    converged : bool or None
        Whether a convergence criterion was met; None when the engine has none.
    seed : int or None
        The seed the fit ran with.
    info : Mapping[str, Any]
        Engine-specific extras (restarts, checkpoints, ...).
    """

    engine: str
    objective: str
    history: torch.Tensor
    seconds: float
    num_steps: int
    converged: bool | None = None
    seed: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> float:
        """The last value of the objective (NaN when no step ran)."""
        return float(self.history[-1]) if len(self.history) else float("nan")

    def __str__(self) -> str:
        conv = "" if self.converged is None else f", converged={self.converged}"
        return (
            f"FitResult({self.engine}, {self.objective}: {_fmt(self.final)} per datum after "
            f"{self.num_steps} steps in {self.seconds:.2f} s{conv})"
        )


@dataclass(frozen=True, eq=False)
class Evidence:
    """log p(x) per datum, and how much to trust it.

    Attributes
    ----------
    per_datum : torch.Tensor of shape (N,)
        log p(x_n) (kind ``"exact"``), a lower bound on it (``"lower_bound"``) or an estimate
        (``"estimate"``), over the observed entries of each datum.
    kind : {"exact", "lower_bound", "estimate"}
    engine : str
        Name of the engine that produced it.
    stderr : torch.Tensor of shape (N,) or None
        Monte Carlo standard error of each entry of ``per_datum``; zero for exact values.
    ess : torch.Tensor of shape (N,) or None
        Effective sample size of the importance weights behind each entry.
    khat : torch.Tensor of shape (N,) or None
        Pareto k̂ of those weights (ArviZ's PSIS).
    num_particles : int or None
        Particles per datum behind each Monte Carlo entry.
    """

    per_datum: torch.Tensor
    kind: EvidenceKind
    engine: str
    stderr: torch.Tensor | None = None
    ess: torch.Tensor | None = None
    khat: torch.Tensor | None = None
    num_particles: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Evidence.kind must be one of {_KINDS}, got {self.kind!r}.")
        if self.per_datum.dim() != 1:
            raise ValueError(
                f"Evidence.per_datum must have shape (N,), got {tuple(self.per_datum.shape)}."
            )
        for name in ("stderr", "ess", "khat"):
            value = getattr(self, name)
            if value is not None and value.shape != self.per_datum.shape:
                raise ValueError(
                    f"Evidence.{name} must have the shape of per_datum "
                    f"{tuple(self.per_datum.shape)}, got {tuple(value.shape)}."
                )

    @property
    def total(self) -> float:
        """log p(x) of the whole data set: the sum over data."""
        return float(self.per_datum.sum())

    @property
    def mean(self) -> float:
        """Average log p(x_n) per datum."""
        return float(self.per_datum.mean())

    @property
    def total_stderr(self) -> float | None:
        """Standard error of :attr:`total`, the data being independent."""
        if self.stderr is None:
            return None
        return float(self.stderr.pow(2).sum().sqrt())

    def __len__(self) -> int:
        return self.per_datum.shape[0]

    def __str__(self) -> str:
        err = "" if self.total_stderr is None else f" ± {_fmt(self.total_stderr)}"
        return (
            f"Evidence({self.kind} by {self.engine}: total {_fmt(self.total)}{err}, "
            f"mean {_fmt(self.mean)} per datum over N={len(self)})"
        )


@dataclass(frozen=True, eq=False)
class Posterior:
    """Draws from, and where available exact probabilities of, p(z | x).

    Attributes
    ----------
    engine : str
        Name of the engine that produced it.
    samples : Mapping[str, torch.Tensor]
        Latent site name to draws: shape ``(S, N, ...)`` for a local site, ``(S, ...)`` for a
        global one.
    log_weights : torch.Tensor of shape (S, N) or (S,), or None
        Unnormalised log importance weights of the draws: per datum ``(S, N)`` when every latent
        site is local, jointly ``(S,)`` otherwise. None means the draws are equally weighted.
    probs : Mapping[str, torch.Tensor]
        Exact posterior probabilities of finite discrete sites, shape ``(N, num_states)``.
    x : torch.Tensor of shape (N, D)
        The data conditioned on (masked-out entries zero-filled).
    mask : torch.Tensor of shape (N, D) or None
        Which entries of ``x`` were observed.
    local_sites : tuple of str
        The names in ``samples`` that are one-per-datum.
    log_lik : torch.Tensor of shape (S, N) or None
        Pointwise log-likelihood log p(x_n | draw s) over the observed entries of x_n, what
        ArviZ's ``log_likelihood`` group and ``az.loo`` need. Local discrete latents that the
        engine sums out exactly are marginalised: all of them under ``Enumeration``, and the
        sites the story marks with ``infer={"enumerate": "parallel"}`` (a mixture's label)
        under ``SVI`` and, when they are the story's only latents, ``ImportanceSampling``. So
        for a mixture it is log Σ_k π_k p(x_n | k, θ) with θ the drawn globals (bayesian=True)
        or the point estimates, which makes it the same for every draw. Every other latent
        (continuous z of a VAE or LinearGaussian, a guide-drawn binary code) is conditioned on
        its draw: log p(x_n | z_sn, θ_s).
    log_p : torch.Tensor of shape (S, N) or (S,), or None
        log p(x, z) of each draw, with the summed-out sites of ``log_lik`` summed out here too:
        per datum ``(S, N)`` when every latent site is local, jointly over the data (global
        sites included) ``(S,)`` otherwise.
    log_q : torch.Tensor of shape (S, N) or (S,), or None
        log q(z | x) of each draw under the distribution that drew it (the guide, the
        proposal, or for ``Enumeration`` the exact posterior), shaped like ``log_p``. The log
        importance weight of a draw relative to the exact posterior is ``log_p - log_q``.
    """

    engine: str
    samples: Mapping[str, torch.Tensor]
    x: torch.Tensor
    mask: torch.Tensor | None = None
    log_weights: torch.Tensor | None = None
    probs: Mapping[str, torch.Tensor] = field(default_factory=dict)
    local_sites: tuple[str, ...] = ()
    log_lik: torch.Tensor | None = None
    log_p: torch.Tensor | None = None
    log_q: torch.Tensor | None = None

    def __post_init__(self) -> None:
        sizes = {v.shape[0] for v in self.samples.values()}
        if len(sizes) > 1:
            raise ValueError(f"every site needs the same number of draws, got sizes {sizes}.")
        if self.log_weights is not None:
            s = self.num_samples
            lw = self.log_weights
            per_datum = lw.dim() == 2
            if lw.shape[0] != s or lw.dim() not in (1, 2):
                raise ValueError(
                    f"log_weights must have shape (S,) or (S, N) with S={s}, got {tuple(lw.shape)}."
                )
            globals_ = [k for k in self.samples if k not in self.local_sites]
            if per_datum and globals_:
                raise ValueError(
                    f"per-datum log_weights (S, N) cannot weight global sites {globals_}; "
                    "pass joint log_weights of shape (S,)."
                )
        self._check_draw_scores()

    def _check_draw_scores(self) -> None:
        """Shapes of log_lik, log_p and log_q against S draws and N data."""
        s, n = self.num_samples, self.x.shape[0]
        if self.log_lik is not None and tuple(self.log_lik.shape) != (s, n):
            raise ValueError(
                f"log_lik must have shape (S, N) = {(s, n)}, got {tuple(self.log_lik.shape)}."
            )
        for name in ("log_p", "log_q"):
            value = getattr(self, name)
            if value is None:
                continue
            if tuple(value.shape) not in ((s,), (s, n)):
                raise ValueError(
                    f"{name} must have shape (S,) or (S, N) with S={s}, N={n}, got "
                    f"{tuple(value.shape)}."
                )
            if self.log_weights is not None and self.log_weights.dim() == 2 and value.dim() == 1:
                raise ValueError(
                    f"per-datum log_weights (S, N) resample each datum on its own, so {name} "
                    "must be per datum too, shape (S, N)."
                )

    @property
    def num_samples(self) -> int:
        """Number of draws S."""
        return next(iter(self.samples.values())).shape[0] if self.samples else 0

    def normalized_weights(self) -> torch.Tensor | None:
        """Self-normalised importance weights, summing to one over draws; shape of log_weights."""
        if self.log_weights is None:
            return None
        return torch.softmax(self.log_weights, dim=0)

    def resample(self, num_samples: int | None = None, seed: int | None = 0) -> Posterior:
        """Sampling-importance-resampling: equally weighted draws from the weighted ones.

        Parameters
        ----------
        num_samples : int, optional
            Draws to return; defaults to S.
        seed : int or None
            Seed of the multinomial draws.

        Returns
        -------
        Posterior
            A posterior with ``log_weights=None``; ``log_lik``, ``log_p`` and ``log_q`` are
            gathered with the draws, so they still score each (resampled) draw.
        """
        if self.log_weights is None:
            return self
        return self._take(self._resample_index(num_samples, seed))

    def _resample_index(self, num_samples: int | None, seed: int | None) -> torch.Tensor:
        """Multinomial draw indices by the normalised weights: (S',) or (S', N)."""
        from .._utils import seeded

        n_out = num_samples or self.num_samples
        w = self.normalized_weights()
        with seeded(seed):
            if w.dim() == 1:
                return torch.multinomial(w, n_out, replacement=True)  # (S',)
            return torch.multinomial(w.T, n_out, replacement=True).T  # (S', N)

    def _take(self, idx: torch.Tensor) -> Posterior:
        """The unweighted posterior of draws ``idx`` ((S',) joint or (S', N) per datum)."""

        def pick(v: torch.Tensor | None) -> torch.Tensor | None:
            if v is None:
                return None
            if idx.dim() == 1:
                return v[idx]
            gather = idx.reshape(idx.shape + (1,) * (v.dim() - 2))
            return torch.gather(v, 0, gather.expand(idx.shape[:1] + tuple(v.shape[1:])))

        return Posterior(
            engine=self.engine,
            samples={k: pick(v) for k, v in self.samples.items()},
            x=self.x,
            mask=self.mask,
            log_weights=None,
            probs=self.probs,
            local_sites=self.local_sites,
            log_lik=pick(self.log_lik),
            log_p=pick(self.log_p),
            log_q=pick(self.log_q),
        )

    def to_arviz(self, *, resample: bool = True, seed: int | None = 0) -> arviz.InferenceData:
        """Convert to an ``arviz.InferenceData``; see
        :func:`ppl_lvm.diagnostics.to_inference_data` for the groups.

        Parameters
        ----------
        resample : bool
            Weighted draws (``log_weights`` set) are resampled first (:meth:`resample`), since
            every ArviZ statistic (``summary``, ``ess``, ``rhat``, ``loo``) treats draws as
            equally weighted. False exports the weighted draws as they are.
        seed : int or None
            Seed of that resampling.
        """
        from ..diagnostics import to_inference_data

        return to_inference_data(self, resample=resample, seed=seed)

    def __str__(self) -> str:
        sites = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.samples.items())
        weighted = "weighted" if self.log_weights is not None else "unweighted"
        exact = f"; exact probs for {list(self.probs)}" if self.probs else ""
        return f"Posterior({self.engine}: {self.num_samples} {weighted} draws of {sites}{exact})"


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

    def prepare(
        self, model: ModelLike, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[LatentVariableModel, torch.Tensor, torch.Tensor | None, dict[str, SiteInfo]]:
        """Coerce the story, validate the data and check this engine can handle the story.

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
        """
        lvm = as_model(model)
        x, mask = check_data(x, mask)
        sites = lvm.sites(x, mask)
        self.check_supported(lvm, sites)
        return lvm, x, mask, sites

    def check_supported(self, model: LatentVariableModel, sites: dict[str, SiteInfo]) -> None:
        """Raise :class:`UnsupportedModelError` if this engine cannot handle the story."""
        if self.needs_guide and not model.has_guide:
            raise UnsupportedModelError(
                f"{self.name} needs a guide, and story '{model.name}' has none; pass guide_fn "
                "to ppl_lvm.models.from_functions."
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
        self, model: ModelLike, x: torch.Tensor, mask: torch.Tensor | None = None, *, seed: int = 0
    ) -> FitResult:
        """Learn the story's parameters from ``x`` (N, D)."""

    @abc.abstractmethod
    def log_evidence(
        self, model: ModelLike, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> Evidence:
        """log p(x_n) for each datum of ``x`` (N, D), over its observed entries."""

    @abc.abstractmethod
    def posterior(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        num_samples: int = 1000,
    ) -> Posterior:
        """p(z | x) for each datum of ``x`` (N, D)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
