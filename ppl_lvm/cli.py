"""The ``ppl-lvm`` command.

``ppl-lvm demo`` is the main job on the embedded data; ``ppl-lvm datasets`` lists the built-in
data sets. A bad argument gets one clear line on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["example_arguments", "main"]


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, r)) for r in rows]
    return "\n".join(out)


def _describe(ds) -> tuple[str, ...]:
    classes = "-" if ds.labels is None else str(int(ds.labels.unique().numel()))
    shape = "-" if ds.image_shape is None else "x".join(map(str, ds.image_shape))
    lo, hi = float(ds.x.min()), float(ds.x.max())
    return (ds.name, f"{len(ds):,}", str(ds.dim), shape, classes, f"[{lo:.3g}, {hi:.3g}]")


def cmd_datasets(args: argparse.Namespace) -> int:
    from . import datasets

    rows = [_describe(datasets.load(name)) for name in datasets.KNOWN]
    print(_table(rows, ("name", "N", "D", "image", "classes", "range")))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The lecture end to end on the embedded data, written up as an HTML report.

    A mixture on the digits, a VAE on mnist5k, the comparison of estimators of log p(x), and
    the completion of missing halves; figures, tables, the report and the InferenceData
    (NetCDF) go to ``--out``.
    """
    import torch

    from . import datasets, plots
    from .report import Report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    report = Report("ppl-lvm demo: latent-variable models on the embedded data")
    loaded = {name: datasets.load(name) for name in datasets.KNOWN}
    header = ("name", "N", "D", "image", "classes", "range")
    rows = [_describe(d) for d in loaded.values()]
    print("ppl-lvm demo: the embedded data sets\n")
    print(_table(rows, header))
    report.heading("The data")
    report.table(rows, header)

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
    seconds = time.perf_counter() - t0
    report.text(f"Run with seed {args.seed} in {seconds:.1f} s.")
    path = report.write(out / "report.html")
    print("\nfigures:")
    for f in figures:
        print(f"  {f}")
    print(f"report: {path}\ndone in {seconds:.1f} s")
    return 0


def example_arguments(doc: str | None, argv: Sequence[str] | None) -> argparse.Namespace:
    """The options every script in ``examples/`` takes: ``--quick``, ``--out``, ``--seed``.

    Parameters
    ----------
    doc : str or None
        The script's module docstring; its first line describes the script in ``--help``.
    argv : sequence of str or None
        Arguments; None reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke run)")
    parser.add_argument("--out", default="examples_out", help="folder for the figures")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser.parse_args(argv)


def _demo_mixture(ds, out: Path, args: argparse.Namespace, report):
    """A 10-component Gaussian mixture on the digits: exact EM, log-likelihood, purity, and
    the exact posterior over labels exported to ArviZ (NetCDF)."""
    from . import plots
    from .inference import Enumeration
    from .metrics import cluster_purity
    from .models import GaussianMixture

    x = ds.x.double()
    # a variance floor of 0.01 keeps always-blank border pixels from dominating the likelihood
    gmm = GaussianMixture(10, ds.dim, "diag", reg_covar=1e-2, n_init=2 if args.quick else 5)
    gmm = gmm.double()
    engine = Enumeration()
    fit = engine.fit(gmm, x, method="em", seed=args.seed, max_steps=500)
    mean_ll = engine.log_evidence(gmm, x).mean
    post = engine.posterior(gmm, x, num_samples=100 if args.quick else 500, seed=args.seed)
    clusters = post.probs["z"].argmax(-1)
    purity = cluster_purity(clusters, ds.labels)
    text = (
        f"mixture of 10 diagonal Gaussians on the digits (exact EM, best of {gmm.n_init} "
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

    from . import plots
    from .inference import SVI, ImportanceSampling
    from .models import VAE

    x, x_test = (train.x > 0.5).float(), (test.x[:200] > 0.5).float()
    epochs = 2 if args.quick else 15
    vae = VAE(784, 20, (400,), "bernoulli")
    svi = SVI(objective="meanfield", lr=1e-3, batch_size=100)
    fit = svi.fit(vae, x, epochs=epochs, seed=args.seed, progress=False, device=args.device)
    vae.to("cpu")
    elbo = svi.log_evidence(vae, x_test, seed=args.seed)
    k = 100 if args.quick else 1000
    est = ImportanceSampling("guide", num_particles=k).log_evidence(vae, x_test, seed=args.seed)
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
        samples = vae.sample(20)
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
    from .comparison import compare
    from .inference import SVI, ImportanceSampling

    k = 200 if args.quick else 2000
    report.heading("Comparing estimators of log p(x)")
    mixture = compare(
        gmm,
        x[:100],
        engines=[
            "enumeration",
            ImportanceSampling("uniform", num_particles=k),
            ImportanceSampling("prior", num_particles=k),
        ],
        seed=args.seed,
        out=out / "compare_mixture",
        title="log p(x) of 100 digits under the mixture",
    )
    k_vae = k // 2  # each VAE particle costs a decoder pass
    deep = compare(
        vae,
        x_vae[:50],
        engines=[
            ImportanceSampling("prior", num_particles=k_vae),
            ImportanceSampling("guide", num_particles=k_vae),
            SVI(objective="elbo", num_particles=10),
            SVI(objective="iwae", num_particles=k_vae),
        ],
        seed=args.seed,
        out=out / "compare_vae",
        title="log p(x) of 50 test digits under the VAE",
    )
    print("\nestimators of log p(x), 100 digits under the digits mixture:")
    print(mixture)
    print("\nestimators of log p(x), 50 test digits under the VAE:")
    print(deep)
    report.text(
        "Exact enumeration over the 10 labels against importance sampling with the uniform "
        "and the prior proposal (the lecture's naive Monte Carlo), on the same 100 digits."
    )
    report.raw_table(mixture.to_html())
    report.figure(mixture.figure, "per-digit mean with ±2 standard errors; the line is exact")
    report.text(
        "On the VAE no exact value exists; z drawn from the prior almost never explains a "
        "digit, so that estimate falls far below the ones that use the encoder, whatever its "
        "standard error says. The ELBO and the IWAE bound are lower bounds."
    )
    report.raw_table(deep.to_html())
    report.figure(deep.figure, "per-digit mean with ±2 standard errors")
    return [mixture.figure, deep.figure]


def _demo_complete(train, test, out: Path, args: argparse.Namespace, report) -> list[Path]:
    """Exact completion of the missing top halves with a Gaussian mixture on mnist5k."""
    import warnings

    import torch

    from . import plots
    from .completion import complete
    from .inference import Enumeration
    from .models import GaussianMixture

    n_test = 100 if args.quick else 500
    x, x_test = train.x, test.x[:n_test]
    hidden = test.subset(slice(0, n_test)).with_missing("top_half")
    k = 5 if args.quick else 20
    gmm = GaussianMixture(k, x.shape[1], "diag", reg_covar=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # capped EM steps
        Enumeration().fit(gmm, x, method="em", seed=args.seed, max_steps=30)
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


# -- fit / compare / complete / diagnose ----------------------------------------------------

#: Built-in stories for ``--model``: name -> (description, factory(dataset, args)).
BUILTIN_MODELS: dict[str, str] = {
    "gmm": "GaussianMixture, diagonal covariance (--components)",
    "gmm-full": "GaussianMixture, full covariance (--components)",
    "bernoulli-mixture": "BernoulliMixture for 0/1 data (--components)",
    "categorical-mixture": "CategoricalMixture for coded data (--components)",
    "vae": "VAE 400 hidden units, Bernoulli for 0/1 data else Gaussian (--latent)",
    "ppca": "LinearGaussian, probabilistic PCA (--latent)",
    "binary-features": "BinaryLatentFactors for 0/1 data (--latent)",
}

#: ``--engine`` names and what they run.
ENGINES = ("enumeration", "elbo", "meanfield", "iwae", "is-guide", "is-prior", "is-uniform")


def _load_data(args: argparse.Namespace):
    from . import datasets

    if args.data in datasets.KNOWN:
        ds = datasets.load(args.data)
    elif Path(args.data).exists():
        ds = datasets.from_file(args.data)
    else:
        raise ValueError(
            f"--data {args.data!r} is neither a built-in data set ({', '.join(datasets.KNOWN)}) "
            "nor an existing file (.npy, .npz, .csv or MNIST IDX)."
        )
    if args.binarize:
        ds = ds.binarize()
    if args.limit:
        ds = ds.subset(slice(0, args.limit))
    return ds


def _make_model(args: argparse.Namespace, ds):
    """A built-in story sized to the data, or a user's ``module:attribute``."""
    from . import models

    name, k, latent, d = args.model, args.components, args.latent, ds.dim
    binary = bool(((ds.x == 0) | (ds.x == 1)).all())
    if name == "gmm":
        return models.GaussianMixture(k, d, "diag", reg_covar=1e-2)
    if name == "gmm-full":
        return models.GaussianMixture(k, d, "full", reg_covar=1e-2)
    if name == "bernoulli-mixture":
        return models.BernoulliMixture(k, d)
    if name == "categorical-mixture":
        return models.CategoricalMixture(k, d, int(ds.x.max()) + 1)
    if name == "vae":
        likelihood = "bernoulli" if binary else "gaussian"
        return models.VAE(d, latent, (400,), likelihood, mask_input=ds.mask is not None)
    if name == "ppca":
        return models.LinearGaussian(d, latent)
    if name == "binary-features":
        return models.BinaryLatentFactors(d, latent)
    if ":" in name:
        return _user_model(name, ds)
    raise ValueError(
        f"--model {name!r} is not a built-in ({', '.join(BUILTIN_MODELS)}) nor "
        "'module:attribute' naming your own story."
    )


def _user_model(spec: str, ds):
    """``module:attr``: a LatentVariableModel, a (model, guide) pair, or a factory taking the
    Dataset; the module is imported from the current directory or the Python path."""
    import importlib
    import inspect

    from .models.base import LatentVariableModel, as_model

    module_name, _, attr = spec.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(
            f"--model {spec!r}: cannot import module {module_name!r} ({err})."
        ) from None
    if not hasattr(module, attr):
        raise ValueError(f"--model {spec!r}: module {module_name!r} has no attribute {attr!r}.")
    obj = getattr(module, attr)
    if isinstance(obj, LatentVariableModel | tuple):
        return as_model(obj)
    if callable(obj) and len(inspect.signature(obj).parameters) == 1:
        return as_model(obj(ds))
    return as_model(obj)


def _engine(name: str, args: argparse.Namespace):
    from .inference import SVI, Enumeration, ImportanceSampling

    if name == "enumeration":
        return Enumeration()
    if name in ("elbo", "meanfield", "iwae"):
        k = 1 if name != "iwae" else 20
        return SVI(objective=name, num_particles=k, lr=args.lr, batch_size=100)
    if name.startswith("is-"):
        return ImportanceSampling(name[3:], num_particles=args.particles)
    raise ValueError(f"--engine {name!r} is unknown; choose from {', '.join(ENGINES)}.")


def _default_engine(model) -> str:
    return "enumeration" if hasattr(model, "m_step") and not model.bayesian else "meanfield"


def _fit(model, ds, args: argparse.Namespace, engine_name: str | None = None):
    """Fit with ``--engine`` (or the model's natural engine), or load ``--load``."""
    import torch

    if args.load:
        model.sites(ds.x[:2], None if ds.mask is None else ds.mask[:2], "guide")
        model.load_state_dict(torch.load(args.load, map_location="cpu", weights_only=True))
        return None
    mb = None if ds.mask is None else ds.mask[:2]
    model.sites(ds.x[:2], mb, "guide" if model.has_guide else "model")
    if not model.trainable_parameters():
        print(f"{model.name} has no parameters to learn; using it as written")
        return None
    name = engine_name or _default_engine(model)
    engine = _engine(name, args)
    if name == "enumeration":
        method = "em" if hasattr(model, "m_step") else "gradient"
        return engine.fit(model, ds.x, ds.mask, method=method, seed=args.seed, progress=False)
    if name.startswith("is-"):
        from .inference import SVI

        engine = SVI("iwae", num_particles=20, lr=args.lr)
    return engine.fit(
        model, ds.x, ds.mask, epochs=args.epochs, seed=args.seed, progress=True, device=args.device
    )


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit a story to data and save its parameters."""
    import torch

    ds = _load_data(args)
    model = _make_model(args, ds)
    fit = _fit(model, ds, args, args.engine)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu")
    torch.save(model.state_dict(), out / "model.pt")
    print(fit)
    print(f"parameters saved to {out / 'model.pt'} (reload with --load)")
    return 0


def _fitted(args: argparse.Namespace):
    """The data and the story, fitted (or loaded with ``--load``) and back on the CPU."""
    ds = _load_data(args)
    model = _make_model(args, ds)
    _fit(model, ds, args)
    model.to("cpu")
    return ds, model


def cmd_compare(args: argparse.Namespace) -> int:
    """Fit (or load), then compare estimators of log p(x) on the data."""
    from .comparison import compare

    ds, model = _fitted(args)
    names = args.engine.split(",") if args.engine else list(ENGINES)
    result = compare(
        model,
        ds.x[: args.num_eval],
        None if ds.mask is None else ds.mask[: args.num_eval],
        engines=[_engine(n, args) for n in names],
        seed=args.seed,
        out=args.out,
        title=f"{model.name} on {ds.name}",
    )
    print(result)
    print(f"figure: {result.figure}")
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    """Fit (or load), hide entries (unless the data already miss some), and complete them."""
    import numpy as np
    import torch

    from . import plots
    from .completion import complete

    ds = _load_data(args)
    model = _make_model(args, ds)
    truth = None
    if ds.mask is None:
        pattern = "top_half" if ds.image_shape is not None else "random"
        train, test = ds.split(test_size=min(len(ds) // 5, 500), seed=args.seed)
        hidden = test.with_missing(pattern, seed=args.seed)
        truth = test.x
    else:
        train = hidden = ds
    _fit(model, train, args)
    model.to("cpu")
    done = complete(model, hidden.x, hidden.mask, num_samples=args.samples, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(
        out / "completions.npz",
        samples=done.samples.numpy(),
        mean=done.mean.numpy(),
        mask=done.mask.numpy(),
    )
    print(
        f"completed {int((~done.mask).sum()):,} missing entries of {len(done.x):,} data "
        f"({done.method}); saved to {out / 'completions.npz'}"
    )
    if truth is not None:
        print(f"RMSE of the single imputation against the hidden values: {done.rmse(truth):.4f}")
    if ds.image_shape is not None:
        n = min(8, len(done.x))
        rows = [done.x[:n], *done.samples[: min(3, args.samples), :n], done.mean[:n]]
        images = torch.stack(rows, 1).reshape(-1, ds.dim)
        fig = plots.image_grid(
            images,
            ds.image_shape,
            out / "completions.png",
            ncols=len(rows),
            suptitle="observed, sampled completions, their mean",
        )
        print(f"figure: {fig}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Fit (or load), draw the posterior with ``--engine``, export it to ArviZ, and report."""
    from .inference import Enumeration, ImportanceSampling

    ds, model = _fitted(args)
    x = ds.x[: args.num_eval]
    mask = None if ds.mask is None else ds.mask[: args.num_eval]
    name = args.engine or ("enumeration" if _default_engine(model) == "enumeration" else "is-guide")
    engine = _engine(name, args)
    # importance sampling's draws are its particles; the ArviZ export resamples them
    draws = engine.num_particles if isinstance(engine, ImportanceSampling) else args.samples
    post = engine.posterior(model, x, mask, num_samples=draws, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "posterior.nc"
    post.to_arviz().to_netcdf(str(path))
    print(post)
    print(f"InferenceData written to {path}")
    if isinstance(engine, ImportanceSampling):
        from .diagnostics import khat_summary

        ev = engine.log_evidence(model, x, mask, seed=args.seed)
        print(khat_summary(ev.khat, engine.num_particles))
    elif isinstance(engine, Enumeration):
        ev = engine.log_evidence(model, x, mask)
        print(f"exact mean log p(x): {ev.mean:.3f} nats per datum")
    if not isinstance(engine, Enumeration) and model.has_guide and not hasattr(model, "m_step"):
        # a guide over continuous or sampled latents: how far is the ELBO from the evidence?
        from .diagnostics import amortization_gap

        means = amortization_gap(model, x, mask, num_particles=100, seed=args.seed).means()
        print(
            "amortisation gap (nats per datum): "
            + ", ".join(f"{k} {v:.3f}" for k, v in means.items() if v is not None)
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, exposed for tests and documentation."""
    parser = argparse.ArgumentParser(
        prog="ppl-lvm", description="Latent-variable models on Pyro: fit, compare, complete."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = sub.add_parser("demo", help="the main job on the embedded data (HTML report)")
    demo.add_argument("--out", default="demo_out", help="folder for the report (default demo_out)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quick", action="store_true", help="tiny settings, for smoke tests")
    demo.add_argument("--device", default=None, help="train the VAE there, e.g. cuda")
    demo.set_defaults(func=cmd_demo)
    ds = sub.add_parser("datasets", help="list the built-in data sets")
    ds.set_defaults(func=cmd_datasets)
    models_help = "; ".join(f"{k}: {v}" for k, v in BUILTIN_MODELS.items())
    for name, func, helptext in (
        ("fit", cmd_fit, "fit a story to data and save its parameters"),
        ("compare", cmd_compare, "compare estimators of log p(x) (table and figure)"),
        ("complete", cmd_complete, "complete missing entries"),
        ("diagnose", cmd_diagnose, "posterior draws to ArviZ NetCDF, with k-hat"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument(
            "--model", required=True, help=f"a built-in ({models_help}) or module:attribute"
        )
        p.add_argument("--data", required=True, help="a built-in data set or a file")
        engine_help = (
            "comma-separated engines to compare"
            if name == "compare"
            else "the engine (default: EM for mixtures, mean-field SVI otherwise)"
        )
        p.add_argument("--engine", default=None, help=f"{engine_help}: {', '.join(ENGINES)}")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--out", default=f"{name}_out", help="output folder")
        p.add_argument("--device", default=None, help="train there, e.g. cuda")
        p.add_argument("--components", type=int, default=10, help="mixture components K")
        p.add_argument("--latent", type=int, default=10, help="latent dimension L")
        p.add_argument("--epochs", type=int, default=10, help="SVI epochs (default 10)")
        p.add_argument("--lr", type=float, default=1e-3, help="SVI learning rate")
        p.add_argument("--particles", type=int, default=1000, help="importance particles")
        p.add_argument("--samples", type=int, default=100, help="posterior or completion draws")
        p.add_argument("--num-eval", type=int, default=200, help="data to evaluate on")
        p.add_argument("--limit", type=int, default=None, help="use only the first N data")
        p.add_argument("--binarize", action="store_true", help="threshold the data at 0.5")
        p.add_argument("--load", default=None, help="parameters saved by `ppl-lvm fit`")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ppl-lvm`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"ppl-lvm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ppl-lvm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
