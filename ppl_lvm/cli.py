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
    """Load the embedded data, describe it and draw it."""
    from . import datasets, plots

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    loaded = {name: datasets.load(name) for name in datasets.KNOWN}
    print("ppl-lvm demo: the embedded data sets\n")
    print(
        _table(
            [_describe(d) for d in loaded.values()], ("name", "N", "D", "image", "classes", "range")
        )
    )
    print()

    mnist = loaded["mnist5k"]
    train, test = mnist.split(test_size=1000, seed=args.seed)
    print(f"mnist5k split: {len(train):,} train / {len(test):,} test (seed {args.seed})")
    hidden = test.with_missing("top_half")
    print(
        f"top half hidden in the test digits: {1 - hidden.observed_fraction:.1%} of pixels missing"
    )

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
    figures.append(_demo_mixture(loaded["digits"], out, args))
    print("\nfigures:")
    for f in figures:
        print(f"  {f}")
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
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


def _demo_mixture(ds, out: Path, args: argparse.Namespace) -> Path:
    """A 10-component Gaussian mixture on the digits: exact EM, log-likelihood, purity."""
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
    clusters = engine.posterior(gmm, x, num_samples=1, temperature=0).samples["z"][0]
    purity = cluster_purity(clusters, ds.labels)
    print(
        f"\nmixture of 10 diagonal Gaussians on the digits (exact EM, best of {gmm.n_init} "
        f"restarts, {fit.num_steps} steps, {fit.seconds:.2f} s):\n"
        f"  exact mean log p(x) = {mean_ll:.2f} nats per image; cluster purity {purity:.3f}"
    )
    return plots.cluster_means(
        gmm.means_,
        ds.image_shape,
        clusters,
        ds.labels,
        out / "digits_mixture_means.png",
        suptitle=f"digits: 10 Gaussian components, purity {purity:.2f}",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, exposed for tests and documentation."""
    parser = argparse.ArgumentParser(
        prog="ppl-lvm", description="Latent-variable models on Pyro: fit, compare, complete."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = sub.add_parser("demo", help="the main job on the embedded data")
    demo.add_argument("--out", default="demo_out", help="folder for figures (default demo_out)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quick", action="store_true", help="tiny settings, for smoke tests")
    demo.set_defaults(func=cmd_demo)
    ds = sub.add_parser("datasets", help="list the built-in data sets")
    ds.set_defaults(func=cmd_datasets)
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
