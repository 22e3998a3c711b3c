"""``ppl-lvm demo``: the lecture end to end on the embedded data, as an HTML report.

Every engine is built by its registered name (:func:`ppl_lvm.inference.create`), with the demo's
settings as overrides.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .commands import DATASET_HEADER, describe, table

__all__ = ["cmd_demo"]


def cmd_demo(args: argparse.Namespace) -> int:
    """The lecture end to end on the embedded data, written up as an HTML report.

    A mixture on the digits, a VAE on mnist5k, the comparison of estimators of log p(x), and
    the completion of missing halves; figures, tables, the report and the InferenceData
    (NetCDF) go to ``--out``.
    """
    import torch

    from .. import datasets, plots
    from ..report import Report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    report = Report("ppl-lvm demo: latent-variable models on the embedded data")
    loaded = {name: datasets.load(name) for name in datasets.KNOWN}
    rows = [describe(d) for d in loaded.values()]
    print("ppl-lvm demo: the embedded data sets\n")
    print(table(rows, DATASET_HEADER))
    report.heading("The data")
    report.table(rows, DATASET_HEADER)

    mnist = loaded["mnist5k"]
    train, test = mnist.split(test_size=1000, seed=args.seed)
    print(f"\nmnist5k split: {len(train):,} train / {len(test):,} test (seed {args.seed})")
    hidden = test.with_missing("top_half")
    n_show = 10 if args.quick else 30
    figures = [
        plots.image_grid(
            test.x[:n_show],
            mnist.image_shape,
            out / "mnist_samples.png",
            titles=[str(int(v)) for v in test.labels[:n_show]],
            suptitle="mnist5k test digits",
        ),
        plots.image_grid(
            hidden.x[:n_show],
            mnist.image_shape,
            out / "mnist_top_half_missing.png",
            mask=hidden.mask[:n_show],
            suptitle="the same digits, top half missing",
        ),
        plots.scatter2d(
            loaded["toy2d"].x,
            out / "toy2d.png",
            title="toy2d: x ~ N(σ(Az+c), diag(s² exp(σ(Bz+d))))",
        ),
        plots.image_grid(
            loaded["faces"].x[::20],
            loaded["faces"].image_shape,
            out / "faces.png",
            ncols=10,
            suptitle="lfw_subset: faces (top) and non-faces",
        ),
    ]
    for f in figures:
        report.figure(f, f.stem.replace("_", " "))
    mixture_fig, gmm, digits_x = _demo_mixture(loaded["digits"], out, args, report)
    figures.append(mixture_fig)
    vae_figures, vae, vae_test = _demo_vae(train, test, out, args, report)
    figures += vae_figures
    figures += _demo_compare(gmm, digits_x, vae, vae_test, out, args, report)
    figures += _demo_complete(train, test, out, args, report)
    figures += _demo_complete_models(train, test, vae, out, args, report)
    seconds = time.perf_counter() - t0
    report.text(f"Run with seed {args.seed} in {seconds:.1f} s.")
    path = report.write(out / "report.html")
    print("\nfigures:")
    for f in figures:
        print(f"  {f}")
    print(f"report: {path}\ndone in {seconds:.1f} s")
    return 0


def _demo_mixture(ds, out: Path, args: argparse.Namespace, report):
    """A 10-component Gaussian mixture on the digits: exact EM, log-likelihood, purity, and
    the exact posterior over labels exported to ArviZ (NetCDF)."""
    from .. import inference, plots
    from ..metrics import cluster_purity
    from ..models import GaussianMixture

    x = ds.x.double()
    # a variance floor of 0.01 keeps always-blank border pixels from dominating the likelihood
    restarts = 2 if args.quick else 5
    gmm = GaussianMixture(
        dim=ds.dim, num_components=10, covariance="diag", reg_covar=1e-2, num_init=restarts
    )
    gmm = gmm.double()
    engine = inference.create("enumeration")
    fit = engine.fit(gmm, x, method="em", seed=args.seed, max_steps=500)
    mean_ll = engine.log_evidence(gmm, x).mean
    post = engine.posterior(gmm, x, num_samples=100 if args.quick else 500, seed=args.seed)
    clusters = post.probs["z"].argmax(-1)
    purity = cluster_purity(clusters, ds.labels)
    text = (
        f"mixture of 10 diagonal Gaussians on the digits (exact EM, best of {restarts} "
        f"restarts, {fit.num_steps} steps, {fit.seconds:.2f} s): exact mean log p(x) = "
        f"{mean_ll:.2f} nats per image; cluster purity {purity:.3f}"
    )
    print("\n" + text)
    netcdf = out / "digits_mixture_posterior.nc"
    post.to_arviz().to_netcdf(str(netcdf))
    report.heading("A mixture of Gaussians on the digits")
    report.text(f"{text}. The exact posterior over labels is saved as ArviZ NetCDF: {netcdf.name}.")
    fig = plots.cluster_means(
        gmm.means_,
        ds.image_shape,
        clusters,
        ds.labels,
        out / "digits_mixture_means.png",
        suptitle=f"digits: 10 Gaussian components, purity {purity:.2f}",
    )
    report.figure(fig, "component means, labelled by the majority digit of each cluster")
    return fig, gmm, x


def _demo_vae(train, test, out: Path, args: argparse.Namespace, report):
    """A VAE on binarised mnist5k: mean-field SVI, test ELBO and importance estimate."""
    import torch

    from .. import inference, plots
    from ..models import VAE

    x, x_test = (train.x > 0.5).float(), (test.x[:200] > 0.5).float()
    epochs = 2 if args.quick else 15
    vae = VAE(784, 20, (400,), "bernoulli")
    svi = inference.create("meanfield", lr=1e-3, batch_size=100)
    fit = svi.fit(vae, x, epochs=epochs, seed=args.seed, progress=False, device=args.device)
    vae.to("cpu")
    elbo = svi.log_evidence(vae, x_test, seed=args.seed)
    k = 100 if args.quick else 1000
    est = inference.create("is-guide", num_particles=k).log_evidence(vae, x_test, seed=args.seed)
    text = (
        f"VAE 784-400-20 on binarised mnist5k, {epochs} epochs of mean-field SVI "
        f"({fit.seconds:.1f} s): on {len(x_test)} test digits the ELBO is {elbo.mean:.2f} and "
        f"the {k}-particle importance estimate of log p(x) is {est.mean:.2f} ± "
        f"{est.total_stderr / len(x_test):.2f} nats per digit (median k̂ "
        f"{float(est.khat.median()):.2f})"
    )
    print("\n" + text)
    report.heading("A variational autoencoder on mnist5k")
    report.text(text + ".")
    with torch.no_grad():
        recon = vae.reconstruct(x_test[:10])
        samples = vae.sample(20).x
    figs = [
        plots.image_grid(
            torch.cat([x_test[:10], recon]),
            train.image_shape,
            out / "vae_reconstructions.png",
            ncols=10,
            suptitle="test digits (top) and their reconstructions",
        ),
        plots.image_grid(
            samples, train.image_shape, out / "vae_samples.png", suptitle="samples from the VAE"
        ),
    ]
    captions = ("reconstructions", "samples z ~ N(0, I) through the decoder")
    for f, cap in zip(figs, captions, strict=True):
        report.figure(f, cap)
    return figs, vae, x_test


def _demo_compare(gmm, x, vae, x_vae, out: Path, args: argparse.Namespace, report) -> list[Path]:
    """The estimators of log p(x) side by side: on the digits mixture, where enumeration gives
    the truth, and on the VAE, where naive Monte Carlo from the prior fails."""
    from .. import inference
    from ..comparison import compare

    k = 200 if args.quick else 2000
    report.heading("Comparing estimators of log p(x)")
    mixture = compare(
        gmm,
        x[:100],
        engines=[
            inference.create("enumeration"),
            inference.create("is-uniform", num_particles=k),
            inference.create("is-prior", num_particles=k),
        ],
        seed=args.seed,
        out=out / "compare_mixture",
        title="log p(x) of 100 digits under the mixture",
    )
    k_vae = k // 2  # each VAE particle costs a decoder pass
    ais = inference.AnnealedImportanceSampling(
        "guide", num_steps=20 if args.quick else 300, num_chains=4, num_leapfrog=2
    )
    deep = compare(
        vae,
        x_vae[:50],
        engines=[
            inference.create("is-prior", num_particles=k_vae),
            inference.create("is-guide", num_particles=k_vae),
            inference.create("elbo", num_particles=10),
            inference.create("iwae", num_particles=k_vae),
            ais,
        ],
        seed=args.seed,
        out=out / "compare_vae",
        title="log p(x) of 50 test digits under the VAE",
    )
    # how far AIS with these settings can be trusted: its bracket on digits simulated from
    # the VAE (bidirectional Monte Carlo)
    bracket = ais.bracket(vae, 10 if args.quick else 50, seed=args.seed)
    gap = float(bracket.gap) / len(bracket.x)
    print("\nestimators of log p(x), 100 digits under the digits mixture:")
    print(mixture)
    print("\nestimators of log p(x), 50 test digits under the VAE:")
    print(deep)
    print(f"AIS bracket on {len(bracket.x)} simulated digits: gap {gap:.2f} nats per digit")
    report.text(
        "Exact enumeration over the 10 labels against importance sampling with the uniform "
        "and the prior proposal (the lecture's naive Monte Carlo), on the same 100 digits."
    )
    report.raw_table(mixture.to_html())
    report.figure(mixture.figure, "per-digit mean with ±2 standard errors; the line is exact")
    report.text(
        "On the VAE no exact value exists; z drawn from the prior almost never explains a "
        "digit, so that estimate falls far below the ones that use the encoder, whatever its "
        "standard error says. The ELBO and the IWAE bound are lower bounds. Annealed "
        f"importance sampling ({ais.label}, HMC moves from the encoder's proposal to the "
        "posterior) is an estimate whose bias shrinks with T; on "
        f"{len(bracket.x)} digits simulated from the VAE its bidirectional bracket spans "
        f"{gap:.2f} nats per digit (lower {bracket.lower.total / len(bracket.x):.2f}, upper "
        f"{bracket.upper.total / len(bracket.x):.2f}): the truth lies within that of the "
        "forward estimate on data like these."
    )
    report.raw_table(deep.to_html())
    report.figure(deep.figure, "per-digit mean with ±2 standard errors")
    return [mixture.figure, deep.figure]


def _demo_complete(train, test, out: Path, args: argparse.Namespace, report) -> list[Path]:
    """Exact completion of the missing top halves with a Gaussian mixture on mnist5k."""
    import warnings

    import torch

    from .. import inference, plots
    from ..completion import complete
    from ..models import GaussianMixture

    n_test = 100 if args.quick else 500
    x, x_test = train.x, test.x[:n_test]
    hidden = test.subset(slice(0, n_test)).with_missing("top_half")
    k = 5 if args.quick else 20
    gmm = GaussianMixture(dim=x.shape[1], num_components=k, covariance="diag", reg_covar=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # capped EM steps
        inference.create("enumeration").fit(gmm, x, method="em", seed=args.seed, max_steps=30)
    done = complete(gmm, hidden.x, hidden.mask, num_samples=3, seed=args.seed)
    rmse = done.rmse(x_test)
    mean_fill = float((x.mean(0) - x_test)[~hidden.mask].pow(2).mean().sqrt())
    text = (
        f"top halves of {n_test} test digits completed exactly by a {k}-component diagonal "
        f"Gaussian mixture: pixel RMSE {rmse:.3f}, against {mean_fill:.3f} for the training mean"
    )
    print("\n" + text)
    report.heading("Completing missing halves")
    report.text(text + ".")
    n_show = 8
    rows = [hidden.x[:n_show], *done.samples[:, :n_show], done.mean[:n_show], x_test[:n_show]]
    images = torch.stack(rows, 1).reshape(-1, x.shape[1]).clamp(0, 1)
    fig = plots.image_grid(
        images,
        train.image_shape,
        out / "completions.png",
        ncols=len(rows),
        suptitle="observed half, three sampled completions, their mean, the truth",
    )
    report.figure(fig, "one test digit per row")
    return [fig]


def _demo_complete_models(train, test, vae, out: Path, args: argparse.Namespace, report):
    """The top halves of binarised test digits completed by every kind of model: a Bernoulli
    mixture (exact), the VAE from its guide and with test-time inference, and an
    autoregressive model (exact, bottom-first), with the pixel RMSE and the seconds each took."""
    import warnings

    import torch

    from .. import inference, plots
    from ..completion import complete
    from ..models import Autoregressive, BernoulliMixture

    n_test = 30 if args.quick else 200
    x = (train.x > 0.5).to(train.x.dtype)
    x_test = (test.x[:n_test] > 0.5).to(test.x.dtype)
    mask = test.subset(slice(0, n_test)).with_missing("top_half").mask
    t0 = time.perf_counter()
    mixture = BernoulliMixture(784, num_components=5 if args.quick else 30, eps=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # capped EM steps
        inference.create("enumeration").fit(mixture, x, method="em", seed=args.seed, max_steps=30)
    fit_mixture = time.perf_counter() - t0
    t0 = time.perf_counter()
    ar = Autoregressive(784, (64,) if args.quick else (300,), 4, image_shape=train.image_shape)
    inference.SVI(lr=3e-3, batch_size=100).fit(
        ar.ensemble(), x, epochs=1 if args.quick else 10, seed=args.seed, progress=False
    )
    fit_ar = time.perf_counter() - t0
    particles = 100 if args.quick else 1000
    runs = [
        ("Bernoulli mixture (EM)", mixture, {}, fit_mixture),
        ("VAE, importance resampling from its guide", vae, {"method": "guide"}, 0.0),
        ("VAE, test-time inference (auto)", vae, {"method": "auto"}, 0.0),
        ("autoregressive MADE, 4 orderings", ar, {}, fit_ar),
    ]
    rows, means = [], []
    for name, model, options, fit_s in runs:
        t0 = time.perf_counter()
        done = complete(
            model, x_test, mask, num_samples=1, num_particles=particles, seed=args.seed, **options
        )
        rows.append([name, done.method, f"{done.rmse(x_test):.3f}", f"{fit_s:.1f}",
                     f"{time.perf_counter() - t0:.1f}"])  # fmt: skip
        means.append(done.mean)
    mean_fill = float((x.mean(0) - x_test)[~mask].pow(2).mean().sqrt())
    header = ["model", "how", "pixel RMSE", "fit (s)", "complete (s)"]
    print(f"\ntop halves of {n_test} binarised test digits (mean imputation {mean_fill:.3f}):")
    print(table(rows, header))
    report.heading("Completing missing halves: the models compared")
    report.text(
        f"The top halves of {n_test} binarised test digits, completed by each model; pixel "
        f"RMSE of the single imputation E[x_top | x_bottom] (mean imputation: {mean_fill:.3f})."
    )
    report.table(rows, header)
    n_show = 6
    shown = [torch.where(mask[:n_show], x_test[:n_show], 0.0), *(m[:n_show] for m in means)]
    images = torch.stack([*shown, x_test[:n_show]], 1).reshape(-1, 784)
    fig = plots.image_grid(
        images,
        train.image_shape,
        out / "completions_by_model.png",
        ncols=len(shown) + 1,
        suptitle="observed half; mixture, VAE (guide), VAE (auto), MADE; truth",
    )
    report.figure(fig, "one binarised test digit per row")
    return [fig]
