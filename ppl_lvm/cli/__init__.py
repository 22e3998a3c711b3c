"""The ``ppl-lvm`` command.

``ppl-lvm demo`` is the main job on the embedded data; ``ppl-lvm datasets`` lists the built-in
data sets; ``fit``, ``compare``, ``complete`` and ``diagnose`` run a story on data. Engines come
from the one registry (:func:`ppl_lvm.inference.available`), stories from
:data:`ppl_lvm.cli.stories.BUILTIN_MODELS`; ``--help`` lists both as they are at the call. A bad
argument gets one clear line on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .commands import cmd_compare, cmd_complete, cmd_datasets, cmd_diagnose, cmd_fit
from .demo import cmd_demo
from .stories import BUILTIN_MODELS, register_model

__all__ = ["BUILTIN_MODELS", "build_parser", "example_arguments", "main", "register_model"]


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


def _listing(title: str, entries: dict[str, str]) -> str:
    """``title`` over one ``name  description`` line per entry (kept unwrapped in --help)."""
    if not entries:
        return f"{title}\n  (none registered)"
    width = max(map(len, entries))
    return "\n".join([title, *(f"  {k:<{width}}  {v}" for k, v in entries.items())])


def _epilog() -> str:
    from .. import inference

    engines = {name: inference.spec(name).label for name in inference.available()}
    models = {name: entry.description for name, entry in BUILTIN_MODELS.items()}
    return "\n\n".join(
        [
            _listing("models (--model), or module:attribute naming your own story:", models),
            _listing("engines (--engine), from ppl_lvm.inference.available():", engines),
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, exposed for tests and documentation; it reads the engine and model
    registries as they are now."""
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
    epilog = _epilog()
    for name, func, helptext in (
        ("fit", cmd_fit, "fit a story to data and save its parameters"),
        ("compare", cmd_compare, "compare estimators of log p(x) (table and figure)"),
        ("complete", cmd_complete, "complete missing entries"),
        ("diagnose", cmd_diagnose, "posterior draws to ArviZ NetCDF, with k-hat"),
    ):
        p = sub.add_parser(
            name,
            help=helptext,
            description=helptext,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--model", required=True, help="a built-in story (listed below) or module:attribute"
        )
        p.add_argument("--data", required=True, help="a built-in data set or a file")
        if name == "compare":
            engine_help = "comma-separated engines to compare (default: all registered)"
            metavar = "NAME[,NAME...]"
        else:
            engine_help = (
                "the engine (default: EM where the model has a closed-form M-step, "
                "mean-field SVI otherwise)"
            )
            metavar = "NAME"
        p.add_argument(
            "--engine", default=None, metavar=metavar, help=f"{engine_help}; listed below"
        )
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--out", default=f"{name}_out", help="output folder")
        p.add_argument("--device", default=None, help="train there, e.g. cuda")
        p.add_argument("--components", type=int, default=10, help="mixture components K")
        p.add_argument("--latent", type=int, default=10, help="latent dimension L")
        p.add_argument("--epochs", type=int, default=10, help="SVI epochs (default 10)")
        p.add_argument(
            "--lr",
            type=float,
            default=None,
            help="learning rate of the engines that take one (default: each engine's own)",
        )
        p.add_argument(
            "--particles",
            type=int,
            default=None,
            help="num_particles of the evaluating engines, and of the one `fit --engine` "
            "names, where they take it (default: each engine's own)",
        )
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
