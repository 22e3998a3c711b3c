"""Diagnostics of the lecture, as workflows that run engines, over the ArviZ bridge.

- :func:`~ppl_lvm.core.arviz_bridge.to_inference_data`, :func:`khat_summary` and
  :func:`loo_waic` (re-exported here from the bridge): ArviZ conversion and the statistics read
  from it;
- :func:`pareto_khat` (from :mod:`ppl_lvm.core.stats`): PSIS k̂ of importance weights per datum;
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

from ._typing import ModelLike
from .core.arviz_bridge import (
    KHAT_LABELS,
    KhatSummary,
    LooWaic,
    khat_summary,
    loo_waic,
    to_inference_data,
)
from .core.data import take_rows
from .core.errors import UnsupportedModelError
from .core.results import FitResult
from .core.stats import pareto_khat
from .inference import SVI, Engine, Enumeration
from .models.capabilities import ExactEvidence, has
from .models.story import as_model
from .plots import elpd_curve

if TYPE_CHECKING:
    import arviz
    import pandas
    import xarray

__all__ = [
    "KHAT_LABELS",
    "AmortizationGap",
    "ComponentChoice",
    "KhatSummary",
    "LooWaic",
    "RestartDiagnostics",
    "amortization_gap",
    "choose_components",
    "khat_summary",
    "loo_waic",
    "pareto_khat",
    "restart_rhat",
    "to_inference_data",
]


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
    lvm = as_model(model)
    elbo = SVI("elbo").log_evidence(lvm, x, mask, num_particles=num_particles, seed=seed)
    iwae = SVI("iwae").log_evidence(lvm, x, mask, num_particles=num_particles, seed=seed)
    exact, source = None, None
    if has(lvm, ExactEvidence):
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
        GaussianMixture(2, num_components=3, bayesian=True)`` with SVI, or a point-estimate
        mixture with ``Enumeration`` and ``fit_kwargs={"method": "em"}``).
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
        GaussianMixture(D, num_components=k, bayesian=True)``.
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

    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("ks is empty; pass the numbers of components to compare, e.g. [1, 2, 3].")
    fit_kwargs = dict(fit_kwargs or {})
    models = {k: as_model(make_model(k)) for k in ks}
    for k, lvm in models.items():
        sites = lvm.sites(take_rows(x, slice(0, 2)), take_rows(mask, slice(0, 2)))
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
        rows.append({"K": k, **loo_waic(idatas[k]).as_dict()})
    table = pd.DataFrame(rows)
    best = int(table.loc[table["elpd_loo"].idxmax(), "K"])
    out_path = None
    if path is not None:
        out_path = elpd_curve(
            table["K"].to_numpy(),
            table["elpd_loo"].to_numpy(),
            table["se"].to_numpy(),
            path,
            waic=table["elpd_waic"].to_numpy(),
            waic_se=table["se_waic"].to_numpy(),
        )
    return ComponentChoice(table=table, best=best, path=out_path, idata=idatas, fits=fits)
