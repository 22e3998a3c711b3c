"""Complete the missing top half of MNIST digits, and learn from digits with missing pixels.

The probability of a partially observed digit is a sum over all of its completions, and the
completions come from the same posterior: p(x_top | x_bottom) = Σ_z p(z | x_bottom) p(x_top | z).
Two models do this here.

- A full-covariance Gaussian mixture, exactly: p(z | x_bottom) by enumeration, then each
  component's Gaussian conditional of the top half given the bottom. Its covariance floor
  (``reg_covar``) is chosen by completion RMSE on a validation split of the training digits.
- A VAE whose encoder sees the zero-filled digit and its mask (MIWAE), trained by the IWAE
  bound on the training digits with and without their top half; completions by importance
  resampling with the encoder as proposal, and the weighted mean as the single imputation.

Both are scored by the pixel RMSE of the single imputation on held-out digits whose top half
was removed, against mean imputation and scikit-learn's KNNImputer (k = 5) trained on the same
digits. A second VAE and a diagonal mixture are trained on digits with half of their pixels
missing at random, to show that learning from incomplete data works too.

Figure: rows of held-out digits: the observed bottom half, sampled completions from each model,
their single imputations, and the truth.

Run ``python examples/missing_pixels.py [--quick] [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from ppl_lvm import complete, datasets, plots
from ppl_lvm.cli import example_arguments
from ppl_lvm.inference import SVI, Enumeration
from ppl_lvm.models import VAE, GaussianMixture


def fit_mixture(
    x: torch.Tensor, k: int, steps: int, seed: int, reg_covar: float
) -> GaussianMixture:
    """A full-covariance mixture by EM; reg_covar keeps the always-blank border pixels finite."""
    gmm = GaussianMixture(x.shape[1], num_components=k, covariance="full", reg_covar=reg_covar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a capped number of EM steps may stop short of tol
        Enumeration().fit(gmm, x, method="em", seed=seed, max_steps=steps)
    return gmm


def choose_reg_covar(
    train: datasets.Dataset, k: int, steps: int, seed: int, candidates: tuple[float, ...]
) -> tuple[float, dict[float, float]]:
    """Pick the covariance floor by completion RMSE on a validation split of the training
    digits (the test digits are never looked at); returns it and every candidate's RMSE."""
    fit_part, val = train.split(test_size=max(1, len(train) // 8), seed=seed)
    hidden = val.with_missing("top_half")
    scores = {}
    for reg in candidates:
        gmm = fit_mixture(fit_part.x, k, steps, seed, reg)
        scores[reg] = complete(gmm, hidden.x, hidden.mask, num_samples=1, seed=seed).rmse(val.x)
    return min(scores, key=scores.get), scores


def fit_miwae(train: datasets.Dataset, epochs: int, seed: int) -> VAE:
    """A VAE with the mask as an encoder input, trained by IWAE-5 on the digits as given and on
    the same digits without their top half, so the encoder meets the test-time pattern."""
    halved = train.with_missing("top_half")
    xa = torch.cat([train.x, halved.x])
    seen = torch.ones_like(train.x, dtype=torch.bool) if train.mask is None else train.mask
    ma = torch.cat([seen, halved.mask])
    torch.manual_seed(seed)
    # grey intensities are not 0/1 draws: the continuous Bernoulli is a density on [0, 1]
    vae = VAE(train.dim, 20, (400,), "continuous_bernoulli", mask_input=True)
    SVI("iwae", num_particles=5, lr=1e-3, batch_size=100).fit(
        vae, xa, ma, epochs=epochs, seed=seed, progress=False
    )
    return vae


def knn_rmse(x_train, x_test, mask) -> float:
    """scikit-learn's KNNImputer (k = 5), fitted on the training digits."""
    from sklearn.impute import KNNImputer

    filled = KNNImputer(n_neighbors=5).fit(x_train.numpy())
    out = torch.as_tensor(filled.transform(torch.where(mask, x_test, torch.nan).numpy()))
    return float((out - x_test)[~mask].pow(2).mean().sqrt())


def main(argv: list[str] | None = None) -> dict:
    """Fit, complete, score and draw.

    Returns
    -------
    dict
        ``rmse`` (a dict: mean imputation, KNN, mixture, VAE, and the VAE trained on 50%-missing
        digits), ``ess_median`` (the VAE's importance sampling), ``num_train``, ``num_test``,
        ``seconds`` and ``figures``.
    """
    args = example_arguments(__doc__, argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    ds = datasets.load("mnist5k")
    train, test = ds.split(test_size=1000, seed=args.seed)
    if args.quick:
        train, test = train.subset(slice(0, 1000)), test.subset(slice(0, 200))
    epochs, em_steps, k = (10, 5, 3) if args.quick else (60, 30, 10)
    particles = 200 if args.quick else 2000
    x, x_test = train.x, test.x
    mask = test.with_missing("top_half").mask
    observed = torch.where(mask, x_test, torch.nan)  # what a user would hold

    candidates = (0.01, 0.1) if args.quick else (0.01, 0.03, 0.1, 0.3)
    reg, val_scores = choose_reg_covar(train, k, em_steps, args.seed, candidates)
    gmm = fit_mixture(x, k, em_steps, args.seed, reg)
    by_gmm = complete(gmm, observed, mask, num_samples=3, seed=args.seed)
    vae = fit_miwae(train, epochs, args.seed)
    by_vae = complete(vae, observed, mask, num_samples=3, num_particles=particles, seed=args.seed)
    # learning from incomplete digits: half of every training digit's pixels missing at random
    half = train.with_missing("random", 0.5, seed=args.seed)
    vae_mcar = fit_miwae(half, epochs, args.seed)
    # a diagonal mixture learns from the incomplete digits by exact EM in seconds (a full one
    # would factorise a 784-dimensional block per digit and component at every step)
    gmm_mcar = GaussianMixture(train.dim, num_components=k, covariance="diag", reg_covar=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Enumeration().fit(gmm_mcar, half.x, half.mask, method="em", seed=args.seed, max_steps=100)
    by_gmm_mcar = complete(gmm_mcar, observed, mask, num_samples=1, seed=args.seed)
    by_mcar = complete(
        vae_mcar, observed, mask, num_samples=1, num_particles=particles, seed=args.seed
    )
    mean_fill = torch.where(mask, x_test, x.mean(0))
    rmse = {
        "mean imputation": float((mean_fill - x_test)[~mask].pow(2).mean().sqrt()),
        "KNNImputer (k=5)": knn_rmse(x, x_test, mask),
        f"Gaussian mixture (full, K={k}, reg_covar {reg:g})": by_gmm.rmse(x_test),
        "VAE (MIWAE)": by_vae.rmse(x_test),
        "VAE trained on 50%-missing digits": by_mcar.rmse(x_test),
        f"diagonal mixture (K={k}) trained on 50%-missing digits": by_gmm_mcar.rmse(x_test),
    }

    n_show = 8
    rows = [
        torch.where(mask[:n_show], x_test[:n_show], 0.0),
        *by_gmm.samples[:, :n_show],
        by_gmm.mean[:n_show],
        *by_vae.sample_means[:, :n_show],
        by_vae.mean[:n_show],
        x_test[:n_show],
    ]
    labels = (
        ["observed"]
        + [f"GMM draw {i + 1}" for i in range(3)]
        + ["GMM mean"]
        + [f"VAE draw {i + 1}" for i in range(3)]
        + ["VAE mean", "truth"]
    )
    images = torch.stack(rows, 1).reshape(-1, ds.dim).clamp(0, 1)  # digit by digit
    shown_mask = torch.ones(len(images), ds.dim, dtype=torch.bool)
    shown_mask[:: len(rows)] = mask[0]  # the first column shows what was hidden
    figures = [
        plots.image_grid(
            images,
            ds.image_shape,
            out / "missing_pixels_completions.png",
            ncols=len(rows),
            titles=labels + [""] * (len(images) - len(labels)),
            suptitle="completing the top half: one held-out digit per row",
            mask=shown_mask,
        )
    ]
    seconds = time.perf_counter() - t0
    print(
        f"mnist5k: {len(x)} training digits, {len(x_test)} test digits with the top half "
        f"removed; pixel RMSE of the single imputation on the missing half:"
    )
    for name, value in rmse.items():
        print(f"  {name:36s} {value:.4f}")
    print(
        "  mixture's covariance floor chosen on a validation split of the training digits: "
        + ", ".join(f"{r:g} -> {v:.4f}" for r, v in val_scores.items())
    )
    print(f"  VAE importance sampling: median ESS {float(by_vae.ess.median()):.1f} of {particles}")
    print(f"  {seconds:.1f} s; figure in {out}")
    return {
        "rmse": rmse,
        "ess_median": float(by_vae.ess.median()),
        "reg_covar": reg,
        "validation_rmse": val_scores,
        "num_particles": particles,
        "num_train": len(x),
        "num_test": len(x_test),
        "seconds": seconds,
        "figures": figures,
    }


if __name__ == "__main__":
    main()
