"""All ArviZ glue lives here, so that moving from ArviZ 0.2x to 1.x touches this file alone.

No ArviZ release converts Pyro's SVI, importance-sampling or enumeration results
(``az.from_pyro`` takes MCMC only), so :func:`to_inference_data` builds the groups itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import arviz

    from .inference.base import Posterior

__all__ = ["pareto_khat", "to_inference_data"]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def to_inference_data(posterior: Posterior) -> arviz.InferenceData:
    """Convert a :class:`~ppl_lvm.inference.Posterior` to ``arviz.InferenceData``.

    Groups
    ------
    posterior
        Every latent site, with one chain: ``(chain=1, draw=S, datum=N, ...)`` for a local site
        and ``(chain=1, draw=S, ...)`` for a global one.
    sample_stats
        ``log_weight``, the unnormalised log importance weights, when the draws are weighted:
        ``(chain, draw, datum)`` or ``(chain, draw)``.
    observed_data
        ``x`` as ``(datum, feature)``, with NaN at the entries the mask hides.

    Parameters
    ----------
    posterior : Posterior

    Returns
    -------
    arviz.InferenceData
    """
    import arviz as az

    posterior_vars = {}
    dims = {}
    for name, value in posterior.samples.items():
        arr = _numpy(value)[None]  # (chain=1, draw, ...)
        posterior_vars[name] = arr
        extra = [
            f"{name}_dim_{i}" for i in range(arr.ndim - (3 if name in posterior.local_sites else 2))
        ]
        dims[name] = (["datum"] if name in posterior.local_sites else []) + extra
    x = _numpy(posterior.x).astype(float)
    if posterior.mask is not None:
        x = np.where(_numpy(posterior.mask), x, np.nan)
    groups = {
        "posterior": posterior_vars,
        "observed_data": {"x": x},
    }
    dims["x"] = ["datum", "feature"]
    if posterior.log_weights is not None:
        lw = _numpy(posterior.log_weights)[None]
        groups["sample_stats"] = {"log_weight": lw}
        dims["log_weight"] = ["datum"] if lw.ndim == 3 else []
    return az.from_dict(**groups, dims=dims)


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
        estimate is reliable (Vehtari et al. 2024); above it, the proposal misses mass.
    """
    import warnings

    import arviz as az

    lw = log_weights.detach().to(torch.float64).cpu().numpy().T  # ArviZ wants (..., samples)
    with warnings.catch_warnings():
        # ArviZ warns when a tail is too short to fit; k̂ is then inf or NaN, which we return
        warnings.filterwarnings("ignore", message=".*Pareto.*")
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        _, khat = az.psislw(lw)
    return torch.as_tensor(np.asarray(khat, dtype=np.float64)).reshape(-1)
