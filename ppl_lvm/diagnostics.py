"""All ArviZ glue lives here, so that moving from ArviZ 0.2x to 1.x touches this file alone.

No ArviZ release converts Pyro's SVI, importance-sampling or enumeration results
(``az.from_pyro`` takes MCMC only), so :func:`to_inference_data` builds the groups itself from
a :class:`~ppl_lvm.inference.Posterior`, or from several of them as chains.

On top of that bridge sit the diagnostics of the lecture:

- :func:`pareto_khat` and :func:`khat_summary`: PSIS k̂ of importance weights per datum, judged
  by ArviZ's own thresholds;
- :func:`amortization_gap`: ELBO, IWAE-K bound and exact log p(x) per datum, and their gaps;
- :func:`restart_rhat`: R-hat across independent restarts, which exposes label switching and
  local optima;
- :func:`choose_components`: PSIS-LOO and WAIC of Bayesian mixtures over the number of
  components, with a figure of elpd against K.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import arviz
    import pandas
    import xarray

    from ._typing import ModelLike
    from .inference.base import Engine, FitResult, Posterior

__all__ = [
    "AmortizationGap",
    "ComponentChoice",
    "KhatSummary",
    "RestartDiagnostics",
    "amortization_gap",
    "choose_components",
    "khat_summary",
    "loo_waic",
    "pareto_khat",
    "restart_rhat",
    "to_inference_data",
]

#: The four classes of Pareto k̂, best first, as ArviZ's ``ks_summary`` names them.
KHAT_LABELS = ("good", "ok", "bad", "very bad")

# Messages of the ArviZ warnings that the functions below turn into result fields.
_LOO_WARNING = "Estimated shape parameter of Pareto distribution is greater than"
_WAIC_WARNING = "For one or more samples the posterior variance of the log predictive"


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# ----------------------------------------------------------------------------------------------
# the bridge
def _equally_weighted(
    posterior: Posterior, resample: bool, seed: int | None
) -> tuple[Posterior, torch.Tensor | None]:
    """The draws to export, and the log importance weight of each: ``log_weights`` as they
    were before resampling, else log p - log q where both are known."""
    if posterior.log_weights is not None:
        if not resample:
            return posterior, posterior.log_weights
        idx = posterior._resample_index(None, seed)
        lw = posterior.log_weights
        lw = lw[idx] if idx.dim() == 1 else torch.gather(lw, 0, idx)
        return posterior._take(idx), lw
    if posterior.log_p is not None and posterior.log_q is not None:
        return posterior, posterior.log_p - posterior.log_q
    return posterior, None


def _check_chains(posteriors: Sequence[Posterior]) -> None:
    """Refuse chains that do not describe the same sites of the same data."""
    first = posteriors[0]
    for c, post in enumerate(posteriors[1:], start=1):
        if list(post.samples) != list(first.samples):
            raise ValueError(
                f"chain {c} has sites {list(post.samples)} but chain 0 has "
                f"{list(first.samples)}; every chain needs the same latent sites."
            )
        for name, value in post.samples.items():
            if value.shape != first.samples[name].shape:
                raise ValueError(
                    f"site '{name}' has shape {tuple(value.shape)} in chain {c} but "
                    f"{tuple(first.samples[name].shape)} in chain 0; every chain needs the same "
                    "number of draws (pass the same num_samples) and the same data."
                )
        same_mask = (post.mask is None) == (first.mask is None) and (
            post.mask is None or torch.equal(post.mask.cpu(), first.mask.cpu())
        )
        if (
            post.x.shape != first.x.shape
            or not torch.equal(post.x.cpu(), first.x.cpu())
            or not same_mask
        ):
            raise ValueError(
                f"chain {c} conditions on other data than chain 0; chains are runs of one "
                "model on the same x and mask."
            )
        for name in ("log_lik", "log_p", "log_q"):
            a, b = getattr(first, name), getattr(post, name)
            if (a is None) != (b is None) or (a is not None and a.shape != b.shape):
                raise ValueError(
                    f"{name} is {'missing' if b is None else tuple(b.shape)} in chain {c} but "
                    f"{'missing' if a is None else tuple(a.shape)} in chain 0; build every "
                    "chain with the same engine."
                )


def _stack(values: Sequence[torch.Tensor]) -> np.ndarray:
    """(chain, draw, ...) as float64 (or the draws' own integer type)."""
    arr = np.stack([_numpy(v) for v in values])
    return arr.astype(np.float64) if np.issubdtype(arr.dtype, np.floating) else arr


def to_inference_data(
    posterior: Posterior | Sequence[Posterior],
    *,
    resample: bool = True,
    seed: int | None = 0,
) -> arviz.InferenceData:
    """Convert one :class:`~ppl_lvm.inference.Posterior`, or several as chains, to
    ``arviz.InferenceData``.

    Groups
    ------
    posterior
        Every latent site: ``(chain, draw, datum, ...)`` for a local site and
        ``(chain, draw, ...)`` for a global one. One chain per posterior given; chains are
        independent runs (restarts, seeds) of one model on the same data.
    log_likelihood
        ``x``: the pointwise log p(x_n | draw), ``(chain, draw, datum)``, where the engine
        provides it (``Posterior.log_lik``: discrete labels summed out, continuous latents
        conditioned on their draw). ``az.loo`` and ``az.waic`` read it.
    sample_stats
        ``log_p`` and ``log_q``, the log p(x, z) and log q(z | x) of each draw, and
        ``log_weight``, its log importance weight relative to the exact posterior: the
        posterior's ``log_weights`` (before resampling), else ``log_p - log_q``. Each is
        ``(chain, draw, datum)`` or ``(chain, draw)``. ArviZ never applies these weights.
    observed_data
        ``x`` as ``(datum, feature)``, with NaN at the entries the mask hides.

    Parameters
    ----------
    posterior : Posterior or sequence of Posterior
        A sequence becomes chains; its members need the same sites, shapes and data.
    resample : bool
        Weighted draws (``log_weights`` set, as ``ImportanceSampling`` gives) are resampled
        first (sampling-importance-resampling, :meth:`Posterior.resample`), because every
        ArviZ statistic, ``az.loo`` included, treats draws as equally weighted. With False the
        weighted draws are exported as they are, and only ``sample_stats.log_weight`` says
        how to weight them.
    seed : int or None
        Seed of that resampling; chain c uses ``seed + c``.

    Returns
    -------
    arviz.InferenceData

    Raises
    ------
    ValueError
        When the chains differ in sites, shapes, data or in which scores they carry.
    """
    import arviz as az

    from .inference.base import Posterior

    posteriors = [posterior] if isinstance(posterior, Posterior) else list(posterior)
    if not posteriors or not all(isinstance(p, Posterior) for p in posteriors):
        raise ValueError("to_inference_data needs a Posterior or a non-empty list of them.")
    exported = [
        _equally_weighted(p, resample, None if seed is None else seed + c)
        for c, p in enumerate(posteriors)
    ]
    chains = [p for p, _ in exported]
    _check_chains(chains)
    weights = [w for _, w in exported]
    if any(w is None for w in weights) != all(w is None for w in weights):
        raise ValueError("some chains carry log weights and others do not; use one engine.")
    first = chains[0]
    local = set(first.local_sites)

    post_vars, post_dims = {}, {}
    for name in first.samples:
        arr = _stack([p.samples[name] for p in chains])
        lead = 3 if name in local else 2  # chain, draw (, datum)
        post_vars[name] = arr
        post_dims[name] = (["datum"] if name in local else []) + [
            f"{name}_dim_{i}" for i in range(arr.ndim - lead)
        ]
    groups = {"posterior": az.dict_to_dataset(post_vars, dims=post_dims)}

    if first.log_lik is not None:
        groups["log_likelihood"] = az.dict_to_dataset(
            {"x": _stack([p.log_lik for p in chains])}, dims={"x": ["datum"]}
        )

    stats = {}
    for name, values in (
        ("log_p", [p.log_p for p in chains]),
        ("log_q", [p.log_q for p in chains]),
        ("log_weight", weights),
    ):
        if values[0] is not None:
            stats[name] = _stack(values)
    if stats:
        groups["sample_stats"] = az.dict_to_dataset(
            stats, dims={k: ["datum"] if v.ndim == 3 else [] for k, v in stats.items()}
        )

    x = _numpy(first.x).astype(np.float64)
    if first.mask is not None:
        x = np.where(_numpy(first.mask), x, np.nan)
    groups["observed_data"] = az.dict_to_dataset(
        {"x": x}, dims={"x": ["datum", "feature"]}, default_dims=[]
    )
    return az.InferenceData(**groups)


# ----------------------------------------------------------------------------------------------
# Pareto k̂
def pareto_khat(log_weights: torch.Tensor) -> torch.Tensor:
    """Pareto k̂ of importance weights per datum, from ArviZ's PSIS.

    Parameters
    ----------
    log_weights : torch.Tensor of shape (K, N)
        Unnormalised log importance weights of K particles for each of N data.

    Returns
    -------
    torch.Tensor of shape (N,)
        The fitted generalized-Pareto shape of each datum's weight tail: below about 0.7 the
        estimate is reliable (Vehtari et al. 2024); above it, the proposal misses mass. Judge
        them with :func:`khat_summary`.
    """
    import arviz as az

    lw = log_weights.detach().to(torch.float64).cpu().numpy().T  # ArviZ wants (..., samples)
    with warnings.catch_warnings():
        # ArviZ warns when a tail is too short to fit; k̂ is then inf or NaN, which we return
        warnings.filterwarnings("ignore", message=".*Pareto.*")
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        _, khat = az.psislw(lw)
    return torch.as_tensor(np.asarray(khat, dtype=np.float64)).reshape(-1)


def _good_k(num_samples: int) -> float:
    """ArviZ's sample-size-dependent bound on a good k̂, min(1 - 1/log10(S), 0.7), exactly as
    ``arviz.loo`` computes it (its ``good_k``)."""
    return min(1 - 1 / np.log10(num_samples), 0.7)


@dataclass(frozen=True, eq=False)
class KhatSummary:
    """Pareto k̂ per datum, classified by ArviZ's thresholds.

    The classes are those of ArviZ's ``ks_summary`` (good, ok, bad, very bad at edges 0.5,
    0.7 and 1), with its fixed 0.7 replaced by the sample-size-dependent ``good_k`` =
    min(1 - 1/log10(S), 0.7) that ``arviz.loo`` warns above and its printout counts with.
    Bins are half-open, [lower, upper), as ArviZ's histogram counts them: good below
    min(0.5, good_k), ok below good_k, bad below 1, very bad from 1. For S ≥ 2154 draws the
    edges are ks_summary's 0.5, 0.7, 1; fewer draws narrow "ok" (empty for S ≤ 100). An
    undefined k̂ (NaN: the tail was too short to fit) counts as very bad.

    Attributes
    ----------
    khat : numpy.ndarray of shape (N,)
    labels : numpy.ndarray of shape (N,), str
        The class of each datum.
    counts : Mapping[str, int]
        Data per class, in the order good, ok, bad, very bad.
    good_k : float
        The edge between "ok" and "bad" (ArviZ's ``good_k``).
    ok_k : float
        The edge between "good" and "ok", min(0.5, good_k).
    num_samples : int
        S, the draws behind each k̂.
    """

    khat: np.ndarray
    labels: np.ndarray
    counts: Mapping[str, int]
    good_k: float
    ok_k: float
    num_samples: int

    @property
    def max(self) -> float:
        """The largest k̂ (NaN counts as +inf)."""
        k = np.where(np.isnan(self.khat), np.inf, self.khat)
        return float(k.max()) if k.size else float("nan")

    @property
    def reliable(self) -> bool:
        """Whether every k̂ is good or ok, so that every importance-sampling estimate holds."""
        return self.counts["bad"] + self.counts["very bad"] == 0

    @property
    def table(self) -> pandas.DataFrame:
        """Count and percentage per class, indexed by k̂ range as ``arviz.ks_summary`` does."""
        import pandas as pd

        n = max(1, len(self.khat))
        ranges = [
            f"[-Inf, {self.ok_k:.2f})",
            f"[{self.ok_k:.2f}, {self.good_k:.2f})",
            f"[{self.good_k:.2f}, 1)",
            "[1, Inf]",
        ]
        return pd.DataFrame(
            {
                "label": list(KHAT_LABELS),
                "count": [self.counts[k] for k in KHAT_LABELS],
                "pct": [100 * self.counts[k] / n for k in KHAT_LABELS],
            },
            index=ranges,
        )

    def __str__(self) -> str:
        return (
            f"Pareto k̂ of {len(self.khat)} data from S={self.num_samples} draws:\n"
            + self.table.to_string()
        )


def khat_summary(khat: torch.Tensor | np.ndarray, num_samples: int) -> KhatSummary:
    """Classify per-datum Pareto k̂ as good, ok, bad or very bad by ArviZ's thresholds.

    Parameters
    ----------
    khat : torch.Tensor or numpy.ndarray of shape (N,)
        k̂ per datum, e.g. ``Evidence.khat`` of ``ImportanceSampling(proposal="guide")``
        (the guide judged as a proposal), :func:`pareto_khat`, or ``az.loo(...).pareto_k``.
    num_samples : int
        S, the draws (particles) each k̂ was fitted to; it sets ArviZ's ``good_k``.

    Returns
    -------
    KhatSummary

    Examples
    --------
    >>> s = khat_summary(np.array([0.1, 0.6, 0.8, 1.5]), num_samples=4000)
    >>> s.labels.tolist()
    ['good', 'ok', 'bad', 'very bad']
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}.")
    k = _numpy(khat) if isinstance(khat, torch.Tensor) else np.asarray(khat)
    k = k.astype(np.float64).reshape(-1)
    good_k = float(_good_k(num_samples))
    ok_k = min(0.5, good_k)
    # half-open bins as np.histogram counts them in ArviZ; NaN fails every comparison, so it
    # falls through to "very bad"
    labels = np.select(
        [k < ok_k, k < good_k, k < 1.0], list(KHAT_LABELS[:3]), default=KHAT_LABELS[3]
    )
    counts = {name: int((labels == name).sum()) for name in KHAT_LABELS}
    return KhatSummary(
        khat=k, labels=labels, counts=counts, good_k=good_k, ok_k=ok_k, num_samples=num_samples
    )


# ----------------------------------------------------------------------------------------------
# the amortisation gap
@dataclass(frozen=True, eq=False)
class AmortizationGap:
    """ELBO, IWAE-K bound and exact log p(x) per datum, on the same K guide particles.

    ``exact - elbo`` is the inference gap KL(q(z | x_n) ‖ p(z | x_n)): the approximation gap
    of the guide's family plus the amortisation gap of sharing one encoder across data
    (Cremer, Li & Duvenaud 2018). ``iwae - elbo`` is how much of it K importance-weighted
    particles recover.

    Attributes
    ----------
    elbo : torch.Tensor of shape (N,)
        The ELBO per datum, averaged over the K particles.
    iwae : torch.Tensor of shape (N,)
        The IWAE-K bound log (1/K) Σ_k w_k on the same particles, so ``iwae >= elbo``.
    exact : torch.Tensor of shape (N,) or None
        log p(x_n), from the model's ``exact_log_evidence`` or from ``Enumeration``; None
        when neither exists.
    num_particles : int
        K.
    exact_source : str or None
        Where ``exact`` came from.
    """

    elbo: torch.Tensor
    iwae: torch.Tensor
    exact: torch.Tensor | None
    num_particles: int
    exact_source: str | None = None

    @property
    def inference_gap(self) -> torch.Tensor | None:
        """exact - elbo, shape (N,)."""
        return None if self.exact is None else self.exact - self.elbo

    @property
    def iwae_gap(self) -> torch.Tensor | None:
        """exact - iwae, shape (N,)."""
        return None if self.exact is None else self.exact - self.iwae

    @property
    def iwae_gain(self) -> torch.Tensor:
        """iwae - elbo, shape (N,)."""
        return self.iwae - self.elbo

    def means(self) -> dict[str, float]:
        """Mean per datum of every bound and gap (NaN where there is no exact value)."""
        nan = float("nan")
        out = {
            "elbo": float(self.elbo.mean()),
            "iwae": float(self.iwae.mean()),
            "exact": nan if self.exact is None else float(self.exact.mean()),
        }
        out["inference_gap"] = out["exact"] - out["elbo"]
        out["iwae_gap"] = out["exact"] - out["iwae"]
        out["iwae_gain"] = out["iwae"] - out["elbo"]
        return out

    def __str__(self) -> str:
        m = self.means()
        exact = "" if self.exact is None else f", exact {m['exact']:.4f} ({self.exact_source})"
        gaps = (
            ""
            if self.exact is None
            else f"; gap exact-ELBO {m['inference_gap']:.4f}, exact-IWAE {m['iwae_gap']:.4f}"
        )
        return (
            f"AmortizationGap(mean per datum over N={len(self.elbo)}: ELBO {m['elbo']:.4f}, "
            f"IWAE-{self.num_particles} {m['iwae']:.4f}{exact}{gaps})"
        )


def amortization_gap(
    model: ModelLike,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    num_particles: int = 100,
    seed: int | None = 0,
) -> AmortizationGap:
    """ELBO, IWAE-K and exact log p(x) per datum under the model's current guide.

    The two bounds come from ``SVI(objective="elbo")`` and ``SVI(objective="iwae")``'s
    ``log_evidence`` with the same seed, hence on the same K particles; the exact value from
    the model's ``exact_log_evidence`` (LinearGaussian, BinaryLatentFactors) or else from
    ``Enumeration().log_evidence`` when that engine accepts the story.

    Parameters
    ----------
    model : LatentVariableModel or (model_fn, guide_fn) pair
        A story with a guide q(z | x) over local latents.
    x : torch.Tensor of shape (N, D)
    mask : torch.Tensor of shape (N, D), bool, optional
    num_particles : int
        K, guide particles per datum for both bounds.
    seed : int or None

    Returns
    -------
    AmortizationGap

    Raises
    ------
    UnsupportedModelError
        From SVI, when the story has no guide, global latents, or enumerated discrete sites
        (a mixture's ELBO with its label summed out is already exact).
    """
    from .inference import SVI, Enumeration
    from .inference.base import UnsupportedModelError
    from .models.base import as_model

    lvm = as_model(model)
    elbo = SVI("elbo").log_evidence(lvm, x, mask, num_particles=num_particles, seed=seed)
    iwae = SVI("iwae").log_evidence(lvm, x, mask, num_particles=num_particles, seed=seed)
    exact, source = None, None
    if hasattr(lvm, "exact_log_evidence"):
        exact = lvm.exact_log_evidence(x, mask).detach()
        source = f"{lvm.name}.exact_log_evidence"
    else:
        try:
            exact = Enumeration().log_evidence(lvm, x, mask).per_datum
            source = "Enumeration"
        except UnsupportedModelError:
            pass  # continuous local latents: no exact value to compare with
    return AmortizationGap(
        elbo=elbo.per_datum,
        iwae=iwae.per_datum,
        exact=None if exact is None else exact.to(elbo.per_datum.dtype),
        num_particles=num_particles,
        exact_source=source,
    )


# ----------------------------------------------------------------------------------------------
# R-hat across restarts
def _rhat(data: Any) -> Any:
    """``az.rhat``; a quantity constant across every draw of every chain has no R-hat (NaN),
    and ArviZ's 0/0 warning for it is expected."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        warnings.filterwarnings("ignore", "divide by zero encountered", RuntimeWarning)
        return az.rhat(data)


def _nanmax(values: np.ndarray) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    return float(finite.max()) if finite.size else float("nan")


@dataclass(frozen=True, eq=False)
class RestartDiagnostics:
    """R-hat across independent restarts of one model, each restart a chain.

    Attributes
    ----------
    idata : arviz.InferenceData
        The restarts' posteriors as chains.
    rhat : xarray.Dataset
        ``az.rhat`` of every posterior variable (rank-normalised split R-hat; NaN where a
        quantity never varies, e.g. a label that every restart and draw agrees on).
    max_rhat : Mapping[str, float]
        The largest R-hat of each variable over its elements.
    log_lik : numpy.ndarray of shape (chains,)
        Each restart's mean pointwise log-likelihood per datum (NaN without one): unlike the
        draws it does not change when components are relabelled.
    log_lik_rhat : float
        R-hat of the total log-likelihood per draw across restarts; NaN when it is constant
        within each restart (point estimates), where ``log_lik`` is compared with ``tol``.
    verdict : str
        "agree" (no variable above ``threshold``), "label switching" (draws disagree but the
        restarts fit equally well: the same solution with permuted components) or "local
        optima" (the restarts' log-likelihoods differ).
    threshold : float
    fits : tuple of FitResult
    seeds : tuple of int
    """

    idata: arviz.InferenceData
    rhat: xarray.Dataset
    max_rhat: Mapping[str, float]
    log_lik: np.ndarray
    log_lik_rhat: float
    verdict: str
    threshold: float
    fits: tuple[FitResult, ...] = field(default=())
    seeds: tuple[int, ...] = field(default=())

    @property
    def flagged(self) -> tuple[str, ...]:
        """Variables whose largest R-hat exceeds ``threshold``."""
        return tuple(k for k, v in self.max_rhat.items() if v > self.threshold)

    def __str__(self) -> str:
        rows = ", ".join(f"{k} {v:.3f}" for k, v in self.max_rhat.items())
        return (
            f"RestartDiagnostics({len(self.log_lik)} restarts: {self.verdict}; max R-hat "
            f"{rows}; threshold {self.threshold})"
        )


def restart_rhat(
    make_model: Callable[[], ModelLike],
    x: torch.Tensor,
    engine: Engine,
    seeds: Sequence[int],
    mask: torch.Tensor | None = None,
    *,
    fit_kwargs: Mapping[str, Any] | None = None,
    num_samples: int = 1000,
    threshold: float = 1.01,
    tol: float = 1e-2,
) -> RestartDiagnostics:
    """Fit one fresh model per seed, and compare the restarts' posteriors with R-hat.

    Each restart is a chain: ``make_model()`` builds it, ``engine.fit(model, x, mask,
    seed=seed, **fit_kwargs)`` fits it and ``engine.posterior(model, x, mask,
    num_samples=num_samples, seed=seed)`` draws from it. Restarts that found the same
    solution give draws from one distribution (R-hat near 1). A mixture whose restarts label
    the components differently gives R-hat far above 1 for its labels and component
    parameters while the label-free log-likelihood agrees: label switching. Different
    log-likelihoods mean different local optima.

    Parameters
    ----------
    make_model : callable
        ``make_model() -> model``, a new unfitted model per call (e.g. ``lambda:
        GaussianMixture(3, 2, bayesian=True)`` with SVI, or a point-estimate mixture with
        ``Enumeration`` and ``fit_kwargs={"method": "em"}``).
    x : torch.Tensor of shape (N, D)
    engine : Engine
    seeds : sequence of int
        One restart per seed; at least two.
    mask : torch.Tensor of shape (N, D), bool, optional
    fit_kwargs : mapping, optional
        Extra arguments of ``engine.fit`` (``steps=``, ``method=``, ``progress=``, ...).
    num_samples : int
        S, draws per restart.
    threshold : float
        R-hat above which a variable is flagged (1.01, Vehtari et al. 2021).
    tol : float
        For point estimates, whose log-likelihood is constant within a restart: the largest
        difference of mean log-likelihood per datum between restarts that still counts as
        one optimum.

    Returns
    -------
    RestartDiagnostics
    """
    seeds = tuple(seeds)
    if len(seeds) < 2:
        raise ValueError(f"R-hat compares restarts: give at least two seeds, got {seeds}.")
    fit_kwargs = dict(fit_kwargs or {})
    fits, posteriors = [], []
    for seed in seeds:
        model = make_model()
        fits.append(engine.fit(model, x, mask, seed=seed, **fit_kwargs))
        posteriors.append(engine.posterior(model, x, mask, num_samples=num_samples, seed=seed))
    idata = to_inference_data(posteriors)
    rhat = _rhat(idata)
    max_rhat = {name: _nanmax(rhat[name].values) for name in rhat.data_vars}

    ll_rhat = float("nan")
    if "log_likelihood" in idata.groups():
        ll = idata.log_likelihood["x"].values  # (chain, draw, datum)
        log_lik = ll.mean(axis=(1, 2))
        total = ll.sum(-1)  # (chain, draw)
        if np.all(total.std(axis=1) == 0):
            local_optima = bool(log_lik.max() - log_lik.min() > tol)
        else:
            ll_rhat = float(_rhat(total))
            local_optima = bool(ll_rhat > threshold)
    else:
        log_lik = np.full(len(seeds), np.nan)
        local_optima = False
    flagged = any(v > threshold for v in max_rhat.values())
    verdict = "local optima" if local_optima else ("label switching" if flagged else "agree")
    return RestartDiagnostics(
        idata=idata,
        rhat=rhat,
        max_rhat=max_rhat,
        log_lik=log_lik,
        log_lik_rhat=ll_rhat,
        verdict=verdict,
        threshold=threshold,
        fits=tuple(fits),
        seeds=seeds,
    )


# ----------------------------------------------------------------------------------------------
# LOO and WAIC over the number of components
def loo_waic(idata: arviz.InferenceData) -> dict[str, float | bool]:
    """PSIS-LOO and WAIC of an InferenceData with a ``log_likelihood`` group, as numbers.

    ArviZ's warnings (a k̂ above ``good_k``; a posterior variance of the log predictive
    density above 0.4) become the flags ``loo_warning`` and ``waic_warning``.

    Parameters
    ----------
    idata : arviz.InferenceData
        Equally weighted draws of the parameters, e.g. from :func:`to_inference_data`.

    Returns
    -------
    dict
        ``elpd_loo``, ``se``, ``p_loo``, ``elpd_waic``, ``se_waic``, ``p_waic``, ``max_khat``,
        ``good_k``, ``loo_warning``, ``waic_warning``.
    """
    import arviz as az

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _LOO_WARNING, UserWarning)
        loo = az.loo(idata, pointwise=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _WAIC_WARNING, UserWarning)
        waic = az.waic(idata)
    return {
        "elpd_loo": float(loo["elpd_loo"]),
        "se": float(loo["se"]),
        "p_loo": float(loo["p_loo"]),
        "elpd_waic": float(waic["elpd_waic"]),
        "se_waic": float(waic["se"]),
        "p_waic": float(waic["p_waic"]),
        "max_khat": float(np.max(loo["pareto_k"].values)),
        "good_k": float(loo["good_k"]),
        "loo_warning": bool(loo["warning"]),
        "waic_warning": bool(waic["warning"]),
    }


@dataclass(frozen=True, eq=False)
class ComponentChoice:
    """PSIS-LOO and WAIC per number of components.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per K with ``K``, ``elpd_loo``, ``se``, ``p_loo``, ``elpd_waic``,
        ``se_waic``, ``p_waic``, ``max_khat``, ``good_k``, ``loo_warning``,
        ``waic_warning``.
    best : int
        The K of largest ``elpd_loo``.
    path : pathlib.Path or None
        The figure of elpd against K, when a path was given.
    idata : Mapping[int, arviz.InferenceData]
        Each K's draws.
    fits : Mapping[int, FitResult]
    """

    table: pandas.DataFrame
    best: int
    path: Path | None
    idata: Mapping[int, arviz.InferenceData]
    fits: Mapping[int, FitResult]

    def __str__(self) -> str:
        cols = ["K", "elpd_loo", "se", "p_loo", "elpd_waic", "max_khat"]
        return f"ComponentChoice(best K={self.best})\n" + self.table[cols].to_string(index=False)


def choose_components(
    make_model: Callable[[int], ModelLike],
    x: torch.Tensor,
    ks: Sequence[int],
    engine: Engine,
    mask: torch.Tensor | None = None,
    *,
    fit_kwargs: Mapping[str, Any] | None = None,
    num_samples: int = 1000,
    seed: int = 0,
    path: str | os.PathLike | None = None,
) -> ComponentChoice:
    """Compare mixtures with K components by PSIS-LOO and WAIC, and plot elpd against K.

    For each K, ``make_model(K)`` builds a Bayesian mixture (``bayesian=True``: LOO needs
    draws of the parameters), ``engine.fit(model, x, mask, seed=seed, **fit_kwargs)`` fits
    its guide, and ``engine.posterior`` draws S parameter sets θ_s. The pointwise
    log-likelihood log Σ_k π_k p(x_n | k, θ_s), the labels summed out, goes to ``az.loo``
    and ``az.waic``. The draws are the guide's, treated as posterior draws; k̂ above
    ``good_k`` (column ``max_khat``, flag ``loo_warning``) says where that fails.

    Parameters
    ----------
    make_model : callable
        ``make_model(K) -> model`` with global latent sites, e.g. ``lambda k:
        GaussianMixture(k, D, bayesian=True)``.
    x : torch.Tensor of shape (N, D)
    ks : sequence of int
        The numbers of components to compare.
    engine : Engine
        An engine that fits and draws global latents: ``SVI(objective="elbo")``.
    mask : torch.Tensor of shape (N, D), bool, optional
    fit_kwargs : mapping, optional
        Extra arguments of ``engine.fit`` (``steps=``, ``progress=``, ...).
    num_samples : int
        S, parameter draws per K.
    seed : int
        Seed of every fit and draw.
    path : path-like, optional
        Where to save the PNG of elpd (LOO and WAIC, ± one standard error) against K.

    Returns
    -------
    ComponentChoice

    Raises
    ------
    ValueError
        Before any fit, when ``ks`` is empty or a model has no global latent sites (point
        estimates give the same log-likelihood in every draw, so LOO has nothing to leave out).
    """
    import pandas as pd

    from .models.base import as_model

    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("ks is empty; pass the numbers of components to compare, e.g. [1, 2, 3].")
    fit_kwargs = dict(fit_kwargs or {})
    models = {k: as_model(make_model(k)) for k in ks}
    for k, lvm in models.items():
        sites = lvm.sites(x[:2], None if mask is None else mask[:2])
        if not any(s.latent and not s.local for s in sites.values()):
            raise ValueError(
                f"make_model({k}) gave {lvm.name} without global latent sites: with point "
                "estimates every draw has the same log-likelihood and LOO reduces to the "
                "training fit. Build the mixtures with bayesian=True and fit them with SVI."
            )
    rows, idatas, fits = [], {}, {}
    for k, lvm in models.items():
        fits[k] = engine.fit(lvm, x, mask, seed=seed, **fit_kwargs)
        post = engine.posterior(lvm, x, mask, num_samples=num_samples, seed=seed)
        if post.log_lik is None:
            raise ValueError(
                f"{engine.name}.posterior gave no pointwise log-likelihood for K={k}; LOO "
                "needs one."
            )
        idatas[k] = to_inference_data(post, seed=seed)
        rows.append({"K": k, **loo_waic(idatas[k])})
    table = pd.DataFrame(rows)
    best = int(table.loc[table["elpd_loo"].idxmax(), "K"])
    out_path = None
    if path is not None:
        from .plots import elpd_curve

        out_path = elpd_curve(
            table["K"].to_numpy(),
            table["elpd_loo"].to_numpy(),
            table["se"].to_numpy(),
            path,
            waic=table["elpd_waic"].to_numpy(),
            waic_se=table["se_waic"].to_numpy(),
        )
    return ComponentChoice(table=table, best=best, path=out_path, idata=idatas, fits=fits)
