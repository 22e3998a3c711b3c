"""Cluster handwritten digits with a Gaussian mixture fitted by exact EM.

A mixture is the shallowest latent-variable model: each image picks a hidden component
z ~ Categorical(π) and is then drawn from that component, x | z = k ~ N(μ_k, diag σ²_k).
Clustering is inference: the posterior p(z | x) says which component explains an image, and
its MAP value is the cluster. The labels are never shown to the model; they are used only
afterwards, to measure how well the unsupervised clusters line up with the ten digits.

Run ``python examples/mixture_digits.py [--quick] [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from sklearn.metrics import adjusted_rand_score

from ppl_lvm import datasets, plots
from ppl_lvm.cli import example_arguments
from ppl_lvm.inference import Enumeration
from ppl_lvm.metrics import cluster_majority, cluster_purity
from ppl_lvm.models import GaussianMixture

# Pixels take 17 grey levels in [0, 1]. A variance floor of 0.01 (a standard deviation of
# about 1.6 levels) stops a component from explaining an always-blank border pixel with a
# near-zero variance, a spike that would otherwise dominate the likelihood and the clusters.
REG_COVAR = 1e-2


def main(argv: list[str] | None = None) -> dict:
    """Fit the mixture, report purity and log-likelihood, draw the cluster means.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; None reads ``sys.argv``.

    Returns
    -------
    dict
        ``purity``, ``ari``, ``mean_log_lik`` (exact mean log p(x_n) in nats), ``n_init``,
        ``num_data``, ``cluster_sizes``, ``majority``, ``seconds`` and ``figures`` (paths).
    """
    args = example_arguments(__doc__, argv)
    t0 = time.perf_counter()
    ds = datasets.load("digits")
    # float64: the log-densities of 64 pixels with small variances are large numbers, and EM's
    # convergence test compares them to 1e-3
    x = ds.x.double()
    k = 10
    # restarts matter: EM finds a local optimum, and the fit keeps the best restart's likelihood
    n_init = 2 if args.quick else 10
    gmm = GaussianMixture(
        ds.dim, num_components=k, covariance="diag", reg_covar=REG_COVAR, num_init=n_init
    ).double()
    engine = Enumeration()
    fit = engine.fit(gmm, x, method="em", seed=args.seed, max_steps=500)
    mean_ll = engine.log_evidence(gmm, x).mean
    # temperature=0 gives the MAP cluster argmax_k p(z_n = k | x_n) of every image
    clusters = engine.posterior(gmm, x, num_samples=1, temperature=0).samples["z"][0]
    pur = cluster_purity(clusters, ds.labels)
    ari = float(adjusted_rand_score(ds.labels.numpy(), clusters.numpy()))
    majority = cluster_majority(clusters, ds.labels, k)
    sizes = torch.bincount(clusters, minlength=k).tolist()

    fig = plots.cluster_means(
        gmm.means_,
        ds.image_shape,
        clusters,
        ds.labels,
        Path(args.out) / "digits_cluster_means.png",
        suptitle=(
            f"Means of a 10-component Gaussian mixture on digits: "
            f"mean log p(x) = {mean_ll:.1f} nats/image, purity {pur:.2f}"
        ),
    )
    seconds = time.perf_counter() - t0

    print(
        f"digits: {len(ds)} images, K={k} diagonal Gaussians, best of {n_init} EM restarts "
        f"({fit.num_steps} steps)"
    )
    print(f"  mean exact log-likelihood {mean_ll:.2f} nats/image")
    # the purity of putting every image in one cluster: the share of the commonest digit
    baseline = float(torch.bincount(ds.labels).max()) / len(ds)
    print(
        f"  purity {pur:.3f} (one cluster for all: {baseline:.3f}), adjusted Rand index {ari:.3f}"
    )
    print(f"  majority digit of each cluster: {majority}, sizes {sizes}")
    print(f"  {seconds:.1f} s; figure {fig}")
    return {
        "purity": pur,
        "ari": ari,
        "mean_log_lik": mean_ll,
        "n_init": n_init,
        "num_data": len(ds),
        "cluster_sizes": sizes,
        "majority": majority,
        "seconds": seconds,
        "figures": [fig],
    }


if __name__ == "__main__":
    main()
