"""Naive Monte Carlo works in theory, not in practice: three proposals for log p(x).

log p(x) = log Σ_z p(x, z). Drawing z uniformly gives p(x) ≈ |Z| · (1/k) Σ_j p(x, z_j), which is
unbiased but useless when almost every z explains nothing; drawing z from the prior is no
better in a large space; a learned proposal q(z | x) (the guide) puts its particles where the
posterior is. The figure plots each estimate with its standard error against the number of
particles, with the exact value from enumeration as a line: on a 10-component Gaussian mixture
(where every proposal copes), on binary latent features with L = 16 (65,536 joint states, sharp
known loadings, 64 pixels), and at L = 30, where the exact sum has 2^30 terms and only the
estimates remain.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from matplotlib.figure import Figure

from ppl_lvm import datasets, inference, models
from ppl_lvm.cli import example_arguments
from ppl_lvm.inference import Enumeration, ImportanceSampling, UnsupportedModelError

PROPOSALS = ("uniform", "prior", "guide")
COLOURS = {"uniform": "tab:red", "prior": "tab:orange", "guide": "tab:blue"}


def estimates(model, x, particle_counts, seed) -> dict[str, list[tuple[float, float]]]:
    """(estimate, standard error) of log p(x) for one datum, per proposal and particle count."""
    out = {}
    for prop in PROPOSALS:
        rows = []
        for i, k in enumerate(particle_counts):
            ev = ImportanceSampling(prop, num_particles=k).log_evidence(
                model, x, seed=seed + i, khat=False
            )
            rows.append((float(ev.per_datum[0]), float(ev.stderr[0])))
        out[prop] = rows
    return out


def draw_panel(ax, counts, est, exact, title) -> None:
    """Estimates ± 2 standard errors against K, with the exact value as a line."""
    for j, prop in enumerate(PROPOSALS):
        vals = np.array(est[prop])
        shift = 1.0 + 0.06 * (j - 1)  # spread the markers a little so error bars stay legible
        ax.errorbar(
            np.array(counts) * shift,
            vals[:, 0],
            yerr=2 * np.minimum(vals[:, 1], 1e3),
            marker="o",
            ms=3,
            capsize=2,
            color=COLOURS[prop],
            label=prop,
        )
    if exact is not None:
        ax.axhline(exact, color="black", lw=1, ls="--", label="exact (enumeration)")
    ax.set_xscale("log")
    ax.set_xlabel("particles K")
    ax.set_ylabel("estimate of log p(x)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def _exact_guide(model, x):
    """For the mixture: q(z | x) = p(z | x) from enumeration, the best proposal there is."""
    probs = Enumeration().posterior(model, x, num_samples=1).probs["z"]

    def guide(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Categorical(probs))

    return models.from_functions(model.model, guide, name="GaussianMixture")


def main(argv: list[str] | None = None) -> dict:
    """Run the three comparisons and save ``naive_monte_carlo.png``.

    Returns
    -------
    dict
        Per panel: the particle counts, the estimates and standard errors per proposal, the
        exact value where one exists; ``figures`` (paths) and ``seconds``.
    """
    args = example_arguments(__doc__, argv)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    counts = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]

    # 1. a Gaussian mixture on the digits: 10 states, every proposal copes
    digits = datasets.load("digits")
    gmm = models.GaussianMixture(64, num_components=10, covariance="diag", reg_covar=1e-2)
    Enumeration().fit(gmm, digits.x, method="em", seed=args.seed, max_steps=300)
    xg = digits.x[:1]
    gmm_exact = float(Enumeration().log_evidence(gmm, xg).per_datum[0])
    gmm_est = estimates(_exact_guide(gmm, xg), xg, counts, args.seed)

    # 2. binary latent features with known, sharp loadings: each datum's 64 pixels pin down
    # its features, so the posterior sits on a handful of the 2^L states. That is the regime
    # of the lecture, where a uniform or prior draw almost never lands on a state that
    # explains the datum. The guide is learned by SVI from data the model generated.
    results = {}
    for num_features in (16, 30):
        g = torch.Generator().manual_seed(args.seed)
        w = 3.0 * torch.randn(64, num_features, generator=g)
        blf = models.BinaryLatentFactors(64, num_features, hidden=(64,))
        blf.set_parameters(w, -0.5 * w.sum(-1), feature_probs=0.5)
        x_train, _ = blf.sample(1000 if args.quick else 3000, seed=args.seed)
        inference.SVI("iwae", num_particles=16, lr=3e-3, batch_size=100).fit(
            blf,
            x_train,
            epochs=3 if args.quick else 10,
            seed=args.seed,
            progress=False,
            initialize=False,
        )
        xb, _ = blf.sample(1, seed=args.seed + 1)
        try:
            exact = float(Enumeration().log_evidence(blf, xb).per_datum[0])
            refusal = None
        except UnsupportedModelError as err:
            exact, refusal = None, str(err)
        results[num_features] = {
            "exact": exact,
            "refusal": refusal,
            "estimates": estimates(blf, xb, counts, args.seed),
        }

    fig = Figure(figsize=(13, 4.2))
    axes = fig.subplots(1, 3)
    draw_panel(axes[0], counts, gmm_est, gmm_exact, "Gaussian mixture, K=10 states (digits)")
    draw_panel(
        axes[1],
        counts,
        results[16]["estimates"],
        results[16]["exact"],
        "binary features L=16 (64 pixels): 65,536 states",
    )
    draw_panel(
        axes[2],
        counts,
        results[30]["estimates"],
        None,
        "binary features L=30: 2^30 states, no exact value",
    )
    fig.suptitle("Naive Monte Carlo (uniform z) works in theory, not in practice")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "naive_monte_carlo.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    seconds = time.perf_counter() - t0

    print(f"log p(x) of one datum; estimates ± standard error at K = {counts[-1]:,}")
    panels = [
        ("mixture", gmm_exact, gmm_est),
        ("L=16", results[16]["exact"], results[16]["estimates"]),
        ("L=30", None, results[30]["estimates"]),
    ]
    for name, exact, est in panels:
        line = ", ".join(f"{p} {est[p][-1][0]:.1f} ± {est[p][-1][1]:.2f}" for p in PROPOSALS)
        truth = "not enumerable" if exact is None else f"{exact:.2f}"
        print(f"  {name}: exact {truth}; {line}")
    print(f"  at L=30 Enumeration says: {results[30]['refusal']}")
    print(f"  {seconds:.1f} s; figure {path}")
    return {
        "counts": counts,
        "mixture": {"exact": gmm_exact, "estimates": gmm_est},
        "binary16": results[16],
        "binary30": results[30],
        "figures": [path],
        "seconds": seconds,
    }


if __name__ == "__main__":
    main()
