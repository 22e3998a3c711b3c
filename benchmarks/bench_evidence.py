"""How many components? The GMM tutorial with priors, K = 1..6: log evidence beside LOO.

Pyro's ``tutorial/source/gmm.ipynb`` model, as its author wrote it (``@config_enumerate``,
Dirichlet weights, a LogNormal scale, Normal locs in a components plate, the enumerated
``assignment``), on the tutorial's data ``[0., 1., 10., 11., 12.]``, for K = 1..6. Every
parameter has a prior, so log p(x) is the Bayesian evidence and couples the data.

- ``ppl_lvm.compare`` of the six stories with ``ImportanceSampling(proposal="prior")``: the
  continuous globals drawn from the prior, the assignments summed inside each weight; each
  story's joint log p(x) with its SE, the log Bayes factors, and PSIS-LOO (``elpd_loo``) of the
  same engine's posterior draws.
- The exact log evidence by brute force (every K^N assignment, the weights and locs in closed
  form, a converged quadrature over the scale: ``tests/stories/_exact.py``).
- The figure ``bench_out/gmm_evidence.png``: the evidence curve (estimate ± 2 SE, and exact)
  beside elpd_loo ± SE, against K.

The row's ratio is the largest |estimate - exact| / SE over K (target <= 3).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate

import ppl_lvm
from ppl_lvm import plots
from ppl_lvm.inference import ImportanceSampling

DATA = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0], dtype=torch.float64)


def tutorial_model(K: int):
    """The tutorial's model with K components (its code, K a closure instead of a global)."""

    @config_enumerate
    def model(data, mask=None):
        # Global variables.
        weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K, dtype=data.dtype)))
        scale = pyro.sample("scale", dist.LogNormal(data.new_tensor(0.0), 2.0))
        with pyro.plate("components", K):
            locs = pyro.sample("locs", dist.Normal(data.new_tensor(0.0), 10.0))

        with pyro.plate("data", len(data)):
            # Local variables.
            assignment = pyro.sample("assignment", dist.Categorical(weights))
            pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)

    return model


def _exact(k: int) -> float:
    path = Path(__file__).resolve().parents[1] / "tests" / "stories" / "_exact.py"
    spec = importlib.util.spec_from_file_location("_stories_exact", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.bayesian_gmm_1d(DATA, k, dirichlet=0.5, loc_scale=10.0, log_scale_sd=2.0)


def run(quick: bool = False) -> list[dict]:
    ks = range(1, 4) if quick else range(1, 7)
    particles = 500 if quick else 2000
    stories = {f"K={k}": tutorial_model(k) for k in ks}
    table = ppl_lvm.compare(
        stories, DATA, engines=[ImportanceSampling("prior", num_particles=particles)], seed=0
    )
    label = table.engines[0]
    est = [table.row(f"K={k}", label)["estimate"] for k in ks]
    se = [table.row(f"K={k}", label)["stderr"] for k in ks]
    loo = [table.row(f"K={k}", label)["elpd_loo"] for k in ks]
    loo_se = [table.row(f"K={k}", label)["loo_se"] for k in ks]
    exact = [_exact(k) for k in ks]

    out = Path(os.environ.get("BENCH_OUT", "bench_out"))
    plots.evidence_curve(
        list(ks),
        est,
        se,
        out / "gmm_evidence.png",
        exact=exact,
        elpd=loo,
        elpd_se=loo_se,
        title="GMM tutorial with priors, data [0, 1, 10, 11, 12]",
    )

    worst = max(abs(e - x) / s for e, x, s in zip(est, exact, se, strict=True))
    detail = ", ".join(
        f"K={k}: {e:.2f}±{s:.2f} (exact {x:.2f}, loo {lo:.2f})"
        for k, e, s, x, lo in zip(ks, est, se, exact, loo, strict=True)
    )
    return [
        {
            "name": f"GMM tutorial with priors, IS prior K={particles}, log p(x) vs exact by K "
            f"[{detail}]; ratio max |est - exact| / SE",
            "ours_s": worst,
            "baseline": "3 SE",
            "baseline_s": 3.0,
            "ratio": worst / 3.0,
            "target": 1.0,
            "unit": "SE",
            "best_k_evidence": list(ks)[max(range(len(est)), key=est.__getitem__)],
            "best_k_loo": list(ks)[max(range(len(loo)), key=lambda i: loo[i])]
            if all(map(math.isfinite, loo))
            else None,
        }
    ]
