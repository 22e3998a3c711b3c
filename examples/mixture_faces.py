"""Do faces and background patches separate in a Gaussian mixture? A look at K = 2 and K = 4.

A mixture is a shallow latent-variable model: each 25×25 image picks a hidden component
z ~ Categorical(π) and is drawn from it, x | z = k ~ N(μ_k, diag σ²_k). Clustering is the
posterior p(z | x). The model never sees the face / non-face labels; they are used afterwards to
ask whether the components it found on its own line up with them, and a few more components
than classes often line up better, since each class is itself varied.

Run ``python examples/mixture_faces.py [--quick] [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from sklearn.metrics import adjusted_rand_score

from ppl_lvm import datasets, plots
from ppl_lvm.cli import example_arguments
from ppl_lvm.inference import Enumeration
from ppl_lvm.metrics import cluster_purity
from ppl_lvm.models import GaussianMixture

# Pixel intensities lie in [0, 1]; a variance floor of 0.01 (a standard deviation of 0.1) keeps
# a component with few members from fitting near-zero variances to its flattest pixels, which
# would turn the clustering into a hunt for uniform patches. 625 dims and 200 images leave
# little data per variance, so the floor matters here.
REG_COVAR = 1e-2
COMPONENTS = (2, 4)


def fit_mixture(x: torch.Tensor, labels: torch.Tensor, k: int, n_init: int, seed: int) -> dict:
    """Fit a K-component diagonal Gaussian mixture by EM and score it against the labels.

    Parameters
    ----------
    x : torch.Tensor of shape (N, D), float64
    labels : torch.Tensor of shape (N,), 1 = face, 0 = non-face
    k, n_init, seed : int

    Returns
    -------
    dict
        ``purity``, ``ari``, ``mean_log_lik``, ``weights`` (K,), ``face_share`` (K,; NaN for
        an empty component), ``sizes`` (K,), ``means`` (K, D) and ``steps``.
    """
    gmm = GaussianMixture(
        x.shape[1], num_components=k, covariance="diag", reg_covar=REG_COVAR, num_init=n_init
    ).double()
    engine = Enumeration()
    fit = engine.fit(gmm, x, method="em", seed=seed, max_steps=500)
    # temperature=0: the MAP component of every image is its cluster
    clusters = engine.posterior(gmm, x, num_samples=1, temperature=0).samples["z"][0]
    sizes = torch.bincount(clusters, minlength=k)
    faces = torch.bincount(clusters, weights=labels.double(), minlength=k)
    return {
        "purity": cluster_purity(clusters, labels),
        "ari": float(adjusted_rand_score(labels.numpy(), clusters.numpy())),
        "mean_log_lik": engine.log_evidence(gmm, x).mean,
        "weights": gmm.weights_.tolist(),
        "face_share": (faces / sizes).tolist(),  # 0/0 = NaN marks an empty component
        "sizes": sizes.tolist(),
        "means": gmm.means_.float(),
        "steps": fit.num_steps,
    }


def main(argv: list[str] | None = None) -> dict:
    """Fit K = 2 and K = 4 mixtures, report how well they match face / non-face, draw means.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; None reads ``sys.argv``.

    Returns
    -------
    dict
        ``by_k``: for each K in (2, 4) a dict with ``purity``, ``ari``, ``mean_log_lik`` (exact
        mean log p(x_n) in nats), ``weights``, ``face_share``, ``sizes`` and ``steps``; also
        ``n_init``, ``num_data``, ``seconds`` and ``figures`` (paths).
    """
    args = example_arguments(__doc__, argv)
    t0 = time.perf_counter()
    ds = datasets.load("faces")
    # float64: 625 log-densities per image add up to hundreds of nats, and EM stops on 1e-3
    x = ds.x.double()
    # restarts matter: EM finds a local optimum; each restart here takes a few milliseconds
    n_init = 3 if args.quick else 20
    by_k = {k: fit_mixture(x, ds.labels, k, n_init, args.seed) for k in COMPONENTS}

    # one row: the K = 2 means, then the K = 4 means; two-line titles leave no room for a
    # suptitle in a one-row grid, so each title names its K
    images, titles = [], []
    for k, res in by_k.items():
        # faces-first order: the fit's component order is arbitrary (label switching)
        order = sorted(range(k), key=lambda c, r=res: -_nan_to(r["face_share"][c], -1.0))
        for c in order:
            images.append(res["means"][c])
            share = res["face_share"][c]
            faces = "empty" if share != share else f"{share:.0%} faces"
            titles.append(f"K={k}: π={res['weights'][c]:.2f}\n{faces}")
    fig = plots.image_grid(
        torch.stack(images).clamp(0, 1),
        ds.image_shape,
        Path(args.out) / "faces_component_means.png",
        ncols=len(images),
        titles=titles,
    )
    seconds = time.perf_counter() - t0

    print(f"faces: {len(ds)} images of 25×25, diagonal Gaussian mixtures, best of {n_init} EM runs")
    # the purity of putting every image in one cluster: the share of the larger class
    baseline = float(torch.bincount(ds.labels).max()) / len(ds)
    for k, res in by_k.items():
        shares = ", ".join(f"{s:.0%}" for s in res["face_share"])
        print(
            f"  K={k}: purity {res['purity']:.3f} (one cluster: {baseline:.2f}), "
            f"ARI {res['ari']:.3f}, mean log-lik {res['mean_log_lik']:.1f} nats/image, "
            f"faces per component {shares}"
        )
    print(f"  {seconds:.1f} s; figure {fig}")
    for res in by_k.values():
        del res["means"]  # a tensor, drawn above; the returned dict keeps plain numbers
    return {
        "by_k": by_k,
        "n_init": n_init,
        "num_data": len(ds),
        "seconds": seconds,
        "figures": [fig],
    }


def _nan_to(value: float, fill: float) -> float:
    """``value``, or ``fill`` where it is NaN (an empty component has no face share)."""
    return fill if value != value else value


if __name__ == "__main__":
    main()
