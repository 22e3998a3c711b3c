"""An autoregressive model of binarized mnist5k: test NLL, and the top half completed exactly.

``models.Autoregressive(784, (500,), 8)``, a MADE over 8 orderings (raster, reverse raster and
6 random ones), trained order-agnostically by SVI on its ordering ensemble with early stopping
on 500 held-out training digits. The split is that of ``bench_missing`` and
``examples/missing_pixels.py``: ``datasets.load("mnist5k", binarize=True).split(test_size=1000,
seed=0)``, 4,000 training digits (3,500 fitted, 500 for early stopping) and 1,000 test digits.

Rows (reported, not targets, except the completion against mean imputation):

- the test NLL in nats of the canonical joint p_0 and of the 8-ordering ensemble
  log (1/8) Σ_σ p_σ(x) (exact, by ``Enumeration`` of the ordering), beside the published
  full-MNIST figures, for scale only: PixelCNN 81.3 (van den Oord et al. 2016), MADE ≈ 86.6
  (Germain et al. 2015), VAE ≈ 86.8. Those are fitted to 50,000 digits, not our 3,500, and
  scored on MNIST binarized by drawing each pixel; ``binarize=True`` thresholds at 0.5,
  which removes that noise and lowers every NLL, so the two are not comparable;
- the pixel RMSE of E[x_top | x_bottom] on the 1,000 test digits with their top half removed,
  exact through the bottom-first ordering (10 draws per digit, the conditional probabilities
  averaged), against mean imputation (target: below it);
- seconds: training, the test NLLs, and the completion.

Timings use one thread: on a shared two-core machine a second thread mostly waits.
"""

from __future__ import annotations

import time

import torch

from ppl_lvm import datasets, models
from ppl_lvm.inference import SVI, Enumeration

#: Published test NLLs on full binarized MNIST, in nats (for scale only).
PUBLISHED = {"PixelCNN": 81.3, "MADE": 86.6, "VAE": 86.8}


def _nats_row(name: str, ours: float, baseline: str, value: float, **extra) -> dict:
    return {
        "name": name,
        "ours_s": ours,
        "baseline": baseline,
        "baseline_s": value,
        "ratio": ours / value,
        "target": float("inf"),
        "unit": "nats",
        **extra,
    }


def run(quick: bool = False) -> list[dict]:
    """Train, score and complete; ``quick`` trains a small model on a few digits."""
    torch.set_num_threads(1)
    ds = datasets.load("mnist5k", binarize=True)
    train, test = ds.split(test_size=1000, seed=0)
    fit_part, val = train.split(test_size=500, seed=0)
    hidden, epochs = (500,), 60
    if quick:
        fit_part, val, test = fit_part.subset(slice(0, 500)), val.subset(slice(0, 100)), test
        hidden, epochs = (64,), 2
    ar = models.Autoregressive(ds.dim, hidden, 8, image_shape=ds.image_shape, seed=0)

    t0 = time.perf_counter()
    fit = SVI(lr=3e-3, batch_size=100).fit(
        ar.ensemble(), fit_part.x, epochs=epochs, validation=val.x, patience=5, progress=False
    )
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with torch.no_grad():
        nll0 = -float(ar.log_prob(test.x, 0).mean())
        nll_orderings = [-float(ar.log_prob(test.x, r).mean()) for r in range(8)]
    nll_ensemble = -Enumeration().log_evidence(ar.ensemble(), test.x).mean
    nll_s = time.perf_counter() - t0

    mask = test.with_missing("top_half").mask
    t0 = time.perf_counter()
    done = ar.complete_own(test.x, mask, 10, seed=0)
    complete_s = time.perf_counter() - t0
    assert set(done.method) == {"exact"}  # the bottom-first ordering covers every digit
    missing = ~mask
    rmse = float((done.mean - test.x)[missing].pow(2).mean().sqrt())
    mean_fill = torch.where(mask, test.x, train.x.mean(0))
    mean_rmse = float((mean_fill - test.x)[missing].pow(2).mean().sqrt())

    trained = (
        f"MADE {hidden}, 8 orderings, {fit.num_steps} steps ({fit.info['epochs']:.0f} epochs, "
        f"{'stopped early' if fit.info['stopped_early'] else 'all epochs'}) on "
        f"{len(fit_part)} digits"
    )
    common = {"trained": trained, "train_seconds": train_s, "nll_orderings": nll_orderings}
    return [
        _nats_row(
            f"test NLL of p_0 (raster ordering), {len(test)} digits; {trained}",
            nll0,
            "MADE, full MNIST (published)",
            PUBLISHED["MADE"],
            **common,
        ),
        _nats_row(
            f"test NLL of the 8-ordering ensemble, exact, {len(test)} digits",
            nll_ensemble,
            "PixelCNN, full MNIST (published)",
            PUBLISHED["PixelCNN"],
            vae_published=PUBLISHED["VAE"],
            **common,
        ),
        {
            "name": f"top-half completion RMSE, exact via the bottom-first ordering ({len(test)} "
            "test digits, S=10)",
            "ours_s": rmse,
            "baseline": "mean imputation",
            "baseline_s": mean_rmse,
            "ratio": rmse / mean_rmse,
            "target": 1.0,
            "unit": "rmse",
            "complete_seconds": complete_s,
        },
        {
            "name": f"seconds: order-agnostic training ({fit.num_steps} steps) vs the test NLLs",
            "ours_s": train_s,
            "baseline": "p_0, 8 orderings and the ensemble on 1,000 digits",
            "baseline_s": nll_s,
            "ratio": train_s / nll_s,
            "target": float("inf"),
            "unit": "s",
        },
        {
            "name": f"seconds: exact top-half completion of {len(test)} digits (S=10) vs training",
            "ours_s": complete_s,
            "baseline": "training",
            "baseline_s": train_s,
            "ratio": complete_s / train_s,
            "target": float("inf"),
            "unit": "s",
        },
    ]
