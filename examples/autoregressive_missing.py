"""An autoregressive model with a missing top half: p(x_bottom) exactly, and by sampling.

The lecture asks: if the top half of a training digit is missing and the model is an
autoregressive p(x) (a PixelCNN, here a MADE), what is p(X = x̄) of the observed half? "Need to
consider all possible ways to complete the image": p(x_bottom) = Σ_{x_top} p(x_bottom, x_top),
a sum over 2^392 completions of a 28 x 28 digit.

An autoregressive model trained for several orderings (``models.Autoregressive``, order-agnostic
training through ``SVI`` on its ordering ensemble) has a shortcut: ordering 1 (reverse raster)
visits the bottom rows first, so its marginal p_1(x_bottom) is a product of its first 392
conditionals, exact. This script uses that exact value as the truth and estimates the same sum,
log p_1(x_bottom), by importance sampling with K completions x_top^k ~ q:

- **uniform**: each top pixel a fair coin (the lecture's naive Monte Carlo,
  p ≈ 2^392 · mean_k p_1(x_bottom, x_top^k)); nearly every completion is noise that explains
  nothing, and the estimate sits hundreds of nats low, with a standard error that hides it;
- **prior**: the top half from the model itself, ignoring the observed bottom: the raster
  ordering visits the top rows first, so its draws of the top half have the exact density
  p_0(x_top); they look like digits, but rarely like the one whose bottom we see;
- **own conditional**: x_top ~ p_1(x_top | x_bottom), ordering 1 run on from the observed bottom:
  the posterior itself, so every weight equals p_1(x_bottom) and one particle is exact.

Figures: the estimates ± 2 standard errors against K with the exact value as a line, for two
held-out digits; and drawn completions of held-out digits (exact draws from p_1(x_top |
x_bottom)), with the single imputation E[x_top | x_bottom] and the truth. The script also
reports log p_0(x_bottom) of the canonical (raster) joint, estimated with the own-conditional
proposal: the orderings' joints are different models, and the gap says how far they disagree.

Measured (seed 0, 15 epochs on 4,000 digits, about a minute on one core): at K = 3,000 the
uniform estimates sit about 1,700 nats below the exact values with a standard error of 1; the
prior's sit 1.5 and 4.7 nats below with standard errors of 0.9 and 0.6; the own conditional is
exact from K = 1; and the raster joint's log p_0(x_bottom) differs from p_1's by about 4 nats.

Run ``python examples/autoregressive_missing.py [--quick] [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ppl_lvm import datasets, models, plots
from ppl_lvm.cli import example_arguments
from ppl_lvm.core.rng import seeded
from ppl_lvm.core.stats import log_mean_weight
from ppl_lvm.inference import SVI

PROPOSALS = ("uniform", "prior", "own conditional")
COLOURS = {"uniform": "tab:red", "prior": "tab:orange", "own conditional": "tab:blue"}


def completions(
    ar: models.Autoregressive, x: torch.Tensor, mask: torch.Tensor, proposal: str, k: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """K completions of each datum from a proposal, and their log q: (K, N, D), (K, N)."""
    if proposal == "uniform":
        with seeded(seed):
            coins = torch.bernoulli(torch.full((k, *x.shape), 0.5, dtype=x.dtype))
        draws = torch.where(mask, x, coins)
        log_q = -(~mask).sum(-1).to(x.dtype) * math.log(2)
        return draws, log_q.expand(k, -1)
    # raster order visits the top first: q = p_0(x_top); reverse raster: q = p_1(x_top | x_bottom)
    ordering = 0 if proposal == "prior" else 1
    draws, _, log_q = ar.sample_missing(x, mask, k, ordering=ordering, seed=seed)
    return draws, log_q


def estimate(ar, x, mask, proposal: str, k: int, seed: int, target: int = 1):
    """Estimate and standard error of log p_target(x_o) per datum, each (N,)."""
    draws, log_q = completions(ar, x, mask, proposal, k, seed)
    with torch.no_grad():
        log_p = ar.log_prob(draws.reshape(-1, x.shape[1]), target).reshape(log_q.shape)
    est, se, _ = log_mean_weight(log_p - log_q)
    return est, se


def draw_panel(ax, counts, rows: dict, exact: float, title: str) -> None:
    """Estimates ± 2 standard errors against K, with the exact value as a line, for the
    proposals in ``rows``."""
    for j, prop in enumerate(rows):
        vals = np.array(rows[prop])
        # one particle has no standard error (it is inf): drawn without a bar
        vals[:, 1] = np.where(np.isfinite(vals[:, 1]), vals[:, 1], 0.0)
        shift = 1.0 + 0.08 * (j - 1)  # spread the markers so that the error bars stay legible
        ax.errorbar(
            np.array(counts) * shift,
            vals[:, 0],
            yerr=2 * vals[:, 1],
            marker="o",
            ms=3,
            capsize=2,
            color=COLOURS[prop],
            label=prop,
        )
    ax.axhline(exact, color="black", lw=1, ls="--", label="exact (bottom-first ordering)")
    ax.set_xscale("log")
    ax.set_xlabel("completions K")
    ax.set_ylabel("estimate of log p(x_bottom)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def train(ds: datasets.Dataset, hidden: tuple[int, ...], epochs: int, seed: int):
    """Order-agnostic training: SVI on the ordering ensemble trains all 8 orderings."""
    ar = models.Autoregressive(ds.dim, hidden, 8, image_shape=ds.image_shape, seed=seed)
    fit = SVI(lr=3e-3, batch_size=100).fit(
        ar.ensemble(), ds.x, epochs=epochs, seed=seed, progress=False
    )
    return ar, fit


def main(argv: list[str] | None = None) -> dict:
    """Train, estimate log p(x_bottom) three ways against the exact value, complete, draw.

    Returns
    -------
    dict
        ``counts`` (K), ``exact`` (log p_1(x_bottom) per shown digit), ``estimates``
        (proposal -> per digit a list of (estimate, SE) per K), ``p0`` (per digit, the
        estimate and SE of log p_0(x_bottom)), ``completion_rmse``, ``num_train``,
        ``seconds`` and ``figures``.
    """
    args = example_arguments(__doc__, argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    ds = datasets.load("mnist5k", binarize=True)
    train_set, test = ds.split(test_size=1000, seed=args.seed)
    if args.quick:
        train_set, test = train_set.subset(slice(0, 600)), test.subset(slice(0, 100))
    hidden, epochs = ((64,), 3) if args.quick else ((500,), 15)
    counts = [1, 10, 100, 1000] if args.quick else [1, 10, 100, 1000, 3000]
    ar, fit = train(train_set, hidden, epochs, args.seed)
    hidden_test = test.with_missing("top_half")
    x, mask = test.x, hidden_test.mask

    # the exact value: the bottom-first ordering covers a missing top half
    shown = slice(0, 2)
    exact_ev = ar.observed_log_evidence(x[shown], mask[shown])
    assert set(exact_ev.method) == {"exact"}
    exact = exact_ev.per_datum.tolist()
    rows: dict[str, list[list[tuple[float, float]]]] = {p: [[], []] for p in PROPOSALS}
    for prop in PROPOSALS:
        for i, k in enumerate(counts):
            est, se = estimate(ar, x[shown], mask[shown], prop, k, args.seed + i)
            for n in range(2):
                rows[prop][n].append((float(est[n]), float(se[n])))
    # the canonical joint's answer, by the own-conditional proposal: the orderings disagree
    p0_est, p0_se = estimate(
        ar, x[shown], mask[shown], "own conditional", counts[-1], args.seed, target=0
    )

    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for n in range(2):
        title = f"held-out digit {n + 1}, top half missing: log p_1(x_bottom) = {exact[n]:.1f}"
        draw_panel(axes[0, n], counts, {p: rows[p][n] for p in PROPOSALS}, exact[n], title)
        # the same, without the uniform proposal, whose error dwarfs the others'
        close = {p: rows[p][n] for p in PROPOSALS[1:]}
        draw_panel(axes[1, n], counts, close, exact[n], "zoom: the prior and the posterior")
    fig.suptitle("a sum over 2^392 completions: three proposals against the exact value")
    curve = out / "autoregressive_evidence.png"
    curve.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(curve, dpi=110)

    # completions: exact draws from p_1(x_top | x_bottom) and the single imputation
    done = ar.complete_own(x, mask, 3, seed=args.seed)
    rmse = float((done.mean - x)[~mask].pow(2).mean().sqrt())
    n_show = 6
    rows_img = [torch.where(mask[:n_show], x[:n_show], 0.0)]
    rows_img += [*done.samples[:, :n_show], done.mean[:n_show], x[:n_show]]
    labels = ["observed", "draw 1", "draw 2", "draw 3", "mean", "truth"]
    images = torch.stack(rows_img, 1).reshape(-1, ds.dim)
    shown_mask = torch.ones(len(images), ds.dim, dtype=torch.bool)
    shown_mask[:: len(rows_img)] = mask[0]  # the first column shows what was hidden
    grid = plots.image_grid(
        images,
        ds.image_shape,
        out / "autoregressive_completions.png",
        ncols=len(rows_img),
        titles=labels + [""] * (len(images) - len(labels)),
        suptitle="exact completions through the bottom-first ordering",
        mask=shown_mask,
    )
    seconds = time.perf_counter() - t0
    print(
        f"Autoregressive (MADE {hidden}, 8 orderings) trained on {len(train_set)} binarized "
        f"digits for {epochs} epochs; top half of held-out digits missing"
    )
    for n in range(2):
        print(f"  digit {n + 1}: exact log p_1(x_bottom) = {exact[n]:.2f}")
        for prop in PROPOSALS:
            est, se = rows[prop][n][-1]
            print(f"    {prop:16s} K={counts[-1]:>6}: {est:9.2f} ± {se:.2f}")
        print(
            f"    log p_0(x_bottom) of the raster joint: {float(p0_est[n]):.2f} ± "
            f"{float(p0_se[n]):.2f}"
        )
    print(f"  completion RMSE of the mean on {len(x)} digits: {rmse:.4f}")
    print(f"  {seconds:.1f} s; figures in {out}")
    return {
        "counts": counts,
        "exact": exact,
        "estimates": rows,
        "p0": [(float(p0_est[n]), float(p0_se[n])) for n in range(2)],
        "completion_rmse": rmse,
        "num_train": len(train_set),
        "train_final": fit.final,
        "seconds": seconds,
        "figures": [curve, grid],
    }


if __name__ == "__main__":
    main()
