"""Completing the top half of held-out digits with a VAE: test-time inference against KNN.

Issue 15's study: ``complete`` on a VAE trained on complete digits resampled from the guide fed
a zero-filled image (median ESS 2 of 1,000) and lost to scikit-learn's KNNImputer(5). This
benchmark measures, in one run, on the split of ``bench_missing`` (mnist5k,
``split(test_size=1000, seed=0)``: 4,000 training digits, 1,000 test digits with their top
half removed), binarized and grey:

- a ``VAE(784, 20, (400,))`` trained on the complete training digits (IWAE-5, 30 epochs;
  Bernoulli on binarized digits, the continuous Bernoulli on grey ones, a density on [0, 1]);
- its completions by ``complete(..., method=...)``: ``"guide"`` (importance resampling from
  the zero-filled guide, what ``complete`` did before) and ``"auto"`` (HMC, started from the
  guide's particles, where the guide's k̂ exceeds 0.7) on all test digits, ``"refine"`` (a
  refined per-datum Gaussian proposal for every digit) likewise, and the MCMC methods
  ``"hmc"`` (200 steps of 10 leapfrog steps) and ``"mwg"`` (500 steps), 4 chains each, on the
  first ``MCMC_DIGITS``;
- the baselines fitted to the same training digits: KNNImputer(5), the best mixture
  (``BernoulliMixture`` K=50 by EM on binarized digits; a full-covariance ``GaussianMixture``
  K=10 on grey ones, its floor chosen as in ``examples/missing_pixels.py``), mean imputation.

A last binarized row answers whether learning from incomplete digits costs accuracy: MIWAE
(the encoder also sees the mask) trained on the training digits with half their pixels missing
at random, completed with ``"auto"``.

Rows: pixel RMSE of each single imputation over the missing half, against KNN on the same
digits (target <= 1 for the VAE with ``"auto"``, reported for the others), the seconds each
took, and log p(x_o) with its median SE and the share of digits whose k̂ stays above 0.7.
"""

from __future__ import annotations

import time
import warnings

import torch

from ppl_lvm import complete, datasets
from ppl_lvm.inference import SVI, Enumeration
from ppl_lvm.models import VAE, BernoulliMixture
from tests._helpers import load_example

MCMC_DIGITS = 200
#: MCMC steps per chain (4 chains): HMC's 10 leapfrog steps each cost a gradient pass.
MCMC_STEPS = {"hmc": 200, "mwg": 500}


def _rmse(mean: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    return float((mean - truth)[~mask].pow(2).mean().sqrt())


def _row(name, value, knn, seconds, target=float("inf"), **extra) -> dict:
    return {
        "name": name,
        "ours_s": value,
        "baseline": "KNNImputer (k=5)",
        "baseline_s": knn,
        "ratio": value / knn,
        "target": target,
        "unit": "rmse",
        "seconds": seconds,
        **extra,
    }


def _one(kind: str, quick: bool) -> list[dict]:
    example = load_example("missing_pixels")
    ds = datasets.load("mnist5k", binarize=kind == "binarized")
    train, test = ds.split(test_size=1000, seed=0)
    epochs, particles, steps = (30, 1000, 300)
    mcmc = MCMC_DIGITS
    if quick:
        train, test = train.subset(slice(0, 500)), test.subset(slice(0, 40))
        epochs, particles, steps, mcmc = 2, 100, 20, 10
    x, xt = train.x, test.x
    mask = test.with_missing("top_half").mask
    observed = torch.where(mask, xt, torch.nan)
    rows = []
    t0 = time.perf_counter()
    knn = example.knn_rmse(x, xt, mask)
    knn_s = time.perf_counter() - t0
    knn_mcmc = example.knn_rmse(x, xt[:mcmc], mask[:mcmc])
    mean_fill = _rmse(torch.where(mask, xt, x.mean(0)), xt, mask)
    rows.append(_row(f"{kind}: mean imputation", mean_fill, knn, 0.0))

    t0 = time.perf_counter()
    if kind == "binarized":
        mixture = BernoulliMixture(ds.dim, num_components=50 if not quick else 5, eps=1e-3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Enumeration().fit(mixture, x, method="em", seed=0, max_steps=100)
        label = "BernoulliMixture K=50 (EM), exact"
    else:
        k, em_steps = (10, 30) if not quick else (2, 3)
        reg, _ = example.choose_reg_covar(train, k, em_steps, 0, (0.03, 0.1))
        mixture = example.fit_mixture(x, k, em_steps, 0, reg)
        label = f"GaussianMixture full K={k} (reg_covar {reg:g}), exact"
    by_mixture = complete(mixture, observed, mask, num_samples=1, seed=0)
    rows.append(_row(f"{kind}: {label}", by_mixture.rmse(xt), knn, time.perf_counter() - t0))

    torch.manual_seed(0)
    likelihood = "bernoulli" if kind == "binarized" else "continuous_bernoulli"
    vae = VAE(ds.dim, 20, (400,), likelihood)
    t0 = time.perf_counter()
    SVI("iwae", num_particles=5, lr=1e-3, batch_size=100).fit(
        vae, x, epochs=epochs, seed=0, progress=False
    )
    train_s = time.perf_counter() - t0
    for method in ("guide", "auto", "refine", "hmc", "mwg"):
        n = len(xt) if method in ("guide", "auto", "refine") else mcmc
        t0 = time.perf_counter()
        done = complete(
            vae, observed[:n], mask[:n], num_samples=1, num_particles=particles,
            method=method, refine_steps=steps, num_steps=MCMC_STEPS.get(method, 500), seed=0,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        extra = {"num_digits": n, "train_seconds": train_s, "method_used": done.method}
        if done.log_evidence is not None:
            extra |= {
                "log_p_observed_mean": float(done.log_evidence.mean()),
                "stderr_median": float(done.stderr.median()),
                "ess_median": float(done.ess.median()),
                "khat_above_0.7": float((~(done.khat <= 0.7)).float().mean()),
            }
        if done.accept is not None:
            extra["accept_mean"] = float(done.accept.mean())
        rows.append(
            _row(
                f"{kind}: VAE (complete training digits), complete(method='{method}'), {n} digits",
                done.rmse(xt[:n]),
                knn if n == len(xt) else knn_mcmc,
                seconds,
                target=1.0 if method == "auto" else float("inf"),
                knn_seconds=knn_s,
                **extra,
            )
        )
    if kind == "binarized":
        rows.append(_incomplete_training(train, observed, mask, xt, knn, epochs, particles, steps))
    return rows


def _incomplete_training(train, observed, mask, xt, knn, epochs, particles, steps) -> dict:
    """MIWAE (Mattei & Frellsen 2019): a VAE whose encoder also sees the mask, trained by IWAE-5
    on the training digits with half of their pixels missing at random, then completed with
    the same test-time inference: does learning from incomplete digits cost accuracy?"""
    half = train.with_missing("random", 0.5, seed=0)
    torch.manual_seed(0)
    miwae = VAE(train.dim, 20, (400,), "bernoulli", mask_input=True)
    t0 = time.perf_counter()
    SVI("iwae", num_particles=5, lr=1e-3, batch_size=100).fit(
        miwae, half.x, half.mask, epochs=epochs, seed=0, progress=False
    )
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = complete(
        miwae, observed, mask, num_samples=1, num_particles=particles, method="auto",
        refine_steps=steps, seed=0,
    )  # fmt: skip
    return _row(
        "binarized: MIWAE trained on 50%-missing digits, complete(method='auto')",
        done.rmse(xt),
        knn,
        time.perf_counter() - t0,
        train_seconds=train_s,
        method_used=done.method,
        log_p_observed_mean=float(done.log_evidence.mean()),
    )


def run(quick: bool = False) -> list[dict]:
    """The binarized rows, then the grey ones."""
    torch.set_num_threads(2)
    return _one("binarized", quick) + _one("grey", quick)
