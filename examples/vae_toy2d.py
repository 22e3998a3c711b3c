"""Fit the lecture's 2-D VAE to draws from a known process and compare the learned density.

The data come from x | z ~ N(σ(Az + c), s² diag(exp(σ(Bz + d)))) with z ~ N(0, I_2) and known
θ = (A, B, c, d) (``datasets.TOY2D``): a curved, corner-heavy density in the unit square, "a
mixture of an infinite number of Gaussians". A ``ToyVAE`` with the same decoder form and an
amortised encoder is fitted by SVI on the importance-weighted (IWAE) bound. With a
two-dimensional latent, p_θ(x) = ∫ p(z) p_θ(x | z) dz can be taken by quadrature on a grid of
z, so the learned density is compared with the true one exactly, without any bound: as the
mean log-density of held-out points, and as contour plots over the unit square. A single 2-D
Gaussian fitted to the data is the naive baseline. The learned θ need not equal the true one
(rotating z leaves p(x) unchanged), only the density should.

Run ``python examples/vae_toy2d.py [--quick] [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ppl_lvm import datasets, plots
from ppl_lvm.cli import example_arguments
from ppl_lvm.inference import SVI
from ppl_lvm.models import ToyVAE

# z-grid points per axis for the quadrature. The integrand is smooth in z: with the true θ,
# 80, 100 and 200 points per axis all agree with the default 400 to 1e-4 nats on the held-out
# points (measured), and 100 costs a sixteenth of 400.
QUADRATURE_GRID = 100


def gaussian_log_density(train: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, covariance) of one full-covariance Gaussian fitted to ``train``, (N,)."""
    mvn = torch.distributions.MultivariateNormal(train.mean(0), torch.cov(train.T))
    return mvn.log_prob(x)


def main(argv: list[str] | None = None) -> dict:
    """Fit the ToyVAE, compare held-out log-densities and draw the true and learned densities.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; None reads ``sys.argv``.

    Returns
    -------
    dict
        Mean held-out log-densities in nats, ``true_log_density``, ``learned_log_density``
        and ``gaussian_log_density`` (the baseline), ``test_iwae`` (the IWAE-1000 bound of
        the fitted model, below its exact ``learned_log_density``), ``num_train``,
        ``num_test``, ``epochs``, ``seconds`` and ``figures`` (paths).
    """
    args = example_arguments(__doc__, argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    ds = datasets.load("toy2d")  # 2,000 draws of the true process
    train, test = ds.split(test_size=500, seed=args.seed)
    x, x_test = train.x, test.x
    epochs = 25 if args.quick else 200

    torch.manual_seed(args.seed)  # the encoder's initial weights
    model = ToyVAE()
    # IWAE-20: a tighter bound than the ELBO, so the decoder is not pulled towards densities
    # whose posterior happens to be easy for a Gaussian q(z | x) to match
    svi = SVI(objective="iwae", num_particles=20, lr=0.02, batch_size=100)
    fit = svi.fit(model, x, epochs=epochs, seed=args.seed, progress=False)

    truth = ToyVAE.from_params(datasets.TOY2D)
    true_ld = float(truth.exact_log_evidence(x_test, num_grid=QUADRATURE_GRID).mean())
    learned_ld = float(model.exact_log_evidence(x_test, num_grid=QUADRATURE_GRID).mean())
    gauss_ld = float(gaussian_log_density(x, x_test).mean())
    test_iwae = svi.log_evidence(model, x_test, num_particles=1000, seed=args.seed).mean

    # the unit square with a margin: the means σ(·) lie in (0, 1) and the noise adds ~0.1
    ticks = torch.linspace(-0.15, 1.15, 40 if args.quick else 100)
    gy, gx = torch.meshgrid(ticks, ticks, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    # every x-grid point costs a whole z-grid, so the quick picture uses a coarser one
    num_grid = 80 if args.quick else QUADRATURE_GRID
    true_grid = truth.exact_log_evidence(grid, num_grid=num_grid)
    learned_grid = model.exact_log_evidence(grid, num_grid=num_grid)
    panels = {
        f"true p(x): {true_ld:.2f} nats held out": true_grid,
        f"learned p(x): {learned_ld:.2f} nats held out": learned_grid,
    }
    figure = plots.density_contours(
        ticks,
        ticks,
        {title: v.reshape(len(ticks), len(ticks)) for title, v in panels.items()},
        out / "toy2d_density.png",
        points=x,
        # the density is spread over the whole square: 6 nats below the peak cover the data
        levels=15,
        floor=6.0,
        suptitle=f"toy2d: true and ToyVAE densities (IWAE-20 SVI, {epochs} epochs)",
    )
    seconds = time.perf_counter() - t0

    print(
        f"toy2d: {len(x)} training / {len(x_test)} held-out points; ToyVAE by IWAE-20 SVI, "
        f"{epochs} epochs ({fit.num_steps} steps, {fit.seconds:.1f} s)"
    )
    print("  mean held-out log-density (exact, by quadrature over z):")
    print(f"    true process      {true_ld:7.3f} nats")
    print(f"    fitted ToyVAE     {learned_ld:7.3f} nats  (its IWAE-1000 bound {test_iwae:.3f})")
    print(f"    one 2-D Gaussian  {gauss_ld:7.3f} nats")
    print(f"  {seconds:.1f} s; figure {figure}")
    return {
        "true_log_density": true_ld,
        "learned_log_density": learned_ld,
        "gaussian_log_density": gauss_ld,
        "test_iwae": test_iwae,
        "num_train": len(x),
        "num_test": len(x_test),
        "epochs": epochs,
        "seconds": seconds,
        "figures": [figure],
    }


if __name__ == "__main__":
    main()
