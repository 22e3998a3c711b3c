"""The ArviZ bridge: every conversion to ArviZ, and the statistics read from ArviZ objects.

No ArviZ release converts Pyro's SVI, importance-sampling or enumeration results
(``az.from_pyro`` takes MCMC only), so :func:`to_inference_data` builds the groups itself from a
:class:`~ppl_lvm.core.posterior.Posterior`, or from several of them as chains. Moving from ArviZ
0.2x to 1.x touches this file (and :func:`ppl_lvm.core.stats.pareto_khat`) alone.

It sits in the bottom layer beside the results it converts, because
``Posterior.to_arviz()`` is part of the public contract and a result may not import upwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data import entries, mask_entry

if TYPE_CHECKING:
    import arviz
    import pandas

    from .posterior import Posterior

__all__ = [
    "KHAT_LABELS",
    "KhatSummary",
    "LooWaic",
    "khat_summary",
    "loo_waic",
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
        idx = posterior.resample_index(None, seed)
        lw = posterior.log_weights
        lw = lw[idx] if idx.dim() == 1 else torch.gather(lw, 0, idx)
        return posterior.take(idx), lw
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
        if not (_same_data(post.x, first.x) and _same_data(post.mask, first.mask)):
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
        ``x`` as ``(datum, feature)``, with NaN at the entries the mask hides; for a dict ``x``
        one variable per key, each ``(datum, <key>_dim_0, ...)``.

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
    import arviz as az  # imported on use: ArviZ takes a second to import

    # a Posterior is no Sequence; isinstance on Sequence keeps this module free of posterior.py
    posteriors = list(posterior) if isinstance(posterior, Sequence) else [posterior]
    try:
        exported = [
            _equally_weighted(p, resample, None if seed is None else seed + c)
            for c, p in enumerate(posteriors)
        ]
    except AttributeError:
        exported = []
    if not exported:
        raise ValueError("to_inference_data needs a Posterior or a non-empty list of them.")
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

    observed, dims = {}, {}
    for key, value in entries(first.x):
        name = "x" if key is None else str(key)
        x = _numpy(value).astype(np.float64)
        m = mask_entry(first.mask, key)
        if m is not None:
            x = np.where(_numpy(m), x, np.nan)
        observed[name] = x
        # the keys of a dict have trailing shapes of their own, so each its own dim names
        if key is None and x.ndim == 2:
            trailing = ["feature"]
        else:
            trailing = [f"{name}_dim_{i}" for i in range(x.ndim - 1)]
        dims[name] = ["datum", *trailing]
    groups["observed_data"] = az.dict_to_dataset(observed, dims=dims, default_dims=[])
    return az.InferenceData(**groups)


def _same_data(a, b) -> bool:
    """Whether two chains' data (or masks) are the same: keys, shapes and every value."""
    if (a is None) != (b is None):
        return False
    if a is None:
        return True
    ea, eb = entries(a), entries(b)
    return [k for k, _ in ea] == [k for k, _ in eb] and all(
        u.shape == v.shape and torch.equal(u.cpu(), v.cpu())
        for (_, u), (_, v) in zip(ea, eb, strict=True)
    )


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


@dataclass(frozen=True)
class LooWaic:
    """PSIS-LOO and WAIC of one set of draws, with ArviZ's warnings as flags.

    Attributes
    ----------
    elpd_loo, se, p_loo : float
        ``az.loo``'s expected log pointwise predictive density, its standard error and the
        effective number of parameters.
    elpd_waic, se_waic, p_waic : float
        The same from ``az.waic``.
    max_khat : float
        The largest Pareto k̂ of the leave-one-out weights.
    good_k : float
        ArviZ's sample-size-dependent bound above which ``az.loo`` warns.
    loo_warning, waic_warning : bool
        Whether ArviZ warned (a k̂ above ``good_k``; a posterior variance of the log
        predictive density above 0.4).
    max_fitted_khat : float
        The largest finite k̂: ArviZ gives inf or NaN where a datum's tail could not be fitted
        (few distinct log-likelihood values among the draws, as under a discrete posterior of
        few states), which is "undiagnosed", not "infinitely bad". NaN when no datum was fitted.
    num_unfitted : int
        How many data have such a non-finite k̂.
    """

    elpd_loo: float
    se: float
    p_loo: float
    elpd_waic: float
    se_waic: float
    p_waic: float
    max_khat: float
    good_k: float
    loo_warning: bool
    waic_warning: bool
    max_fitted_khat: float
    num_unfitted: int

    def as_dict(self) -> dict[str, float | bool]:
        """The fields as a dict, in order (a table row)."""
        return asdict(self)


def loo_waic(idata: arviz.InferenceData) -> LooWaic:
    """PSIS-LOO and WAIC of an InferenceData with a ``log_likelihood`` group, as numbers.

    ArviZ's warnings (a k̂ above ``good_k``; a posterior variance of the log predictive
    density above 0.4) become the flags ``loo_warning`` and ``waic_warning``.

    Parameters
    ----------
    idata : arviz.InferenceData
        Equally weighted draws of the parameters, e.g. from :func:`to_inference_data`.

    Returns
    -------
    LooWaic
    """
    import arviz as az

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _LOO_WARNING, UserWarning)
        loo = az.loo(idata, pointwise=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _WAIC_WARNING, UserWarning)
        waic = az.waic(idata)
    k = np.asarray(loo["pareto_k"].values, dtype=np.float64)
    fitted = k[np.isfinite(k)]
    return LooWaic(
        **{
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
            "max_fitted_khat": float(fitted.max()) if fitted.size else float("nan"),
            "num_unfitted": int(k.size - fitted.size),
        }
    )
