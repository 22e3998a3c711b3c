"""The ``ppl-lvm`` command.

``ppl-lvm demo`` is the main job on the embedded data; ``ppl-lvm datasets`` lists the built-in
data sets; ``fit``, ``compare``, ``complete`` and ``diagnose`` run a story on data. Engines come
from the one registry (:func:`ppl_lvm.inference.available`), stories from
:data:`ppl_lvm.cli.stories.BUILTIN_MODELS`; ``--help`` lists both as they are at the call. A bad
argument, an unreadable file or a failed command gets one clear line on stderr and exit
status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from .checks import (
    DATA_FORMATS,
    Parser,
    check_arguments,
    non_negative_seed,
    one_line,
    positive_float,
    positive_int,
)
from .commands import cmd_compare, cmd_complete, cmd_datasets, cmd_diagnose, cmd_fit
from .demo import cmd_demo
from .stories import BUILTIN_MODELS, USER_MODEL_RULE, register_model

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


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; each option's default appended to its help, unless
    it has none (None, False) or its help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            return text
        if "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _listing(title: str, entries: dict[str, str]) -> str:
    """``title`` over one ``name  description`` line per entry (kept unwrapped in --help)."""
    if not entries:
        return f"{title}\n  (none registered)"
    width = max(map(len, entries))
    return "\n".join([title, *(f"  {k:<{width}}  {v}" for k, v in entries.items())])


#: One example per subcommand, for its --help.
EXAMPLES = {
    "demo": "ppl-lvm demo --quick --out demo_out",
    "datasets": "ppl-lvm datasets",
    "fit": "ppl-lvm fit --model gmm --data digits --components 10 --out fit_out",
    "compare": "ppl-lvm compare --model gmm --data digits --load fit_out/model.pt "
    "--engine enumeration,is-prior",
    "complete": "ppl-lvm complete --model vae --data mnist5k --binarize --epochs 5",
    "diagnose": "ppl-lvm diagnose --model ppca --data digits --engine is-guide",
}


def _epilog(command: str) -> str:
    from .. import datasets, inference

    engines = {name: inference.spec(name).label for name in inference.available()}
    models = {name: entry.description for name, entry in BUILTIN_MODELS.items()}
    return "\n\n".join(
        [
            f"example:\n  {EXAMPLES[command]}",
            f"data (--data): {', '.join(datasets.KNOWN)}\n  or a {DATA_FORMATS}; NaN "
            "marks a missing entry",
            _listing("models (--model), or module:attribute naming your own story:", models),
            "\n".join(
                textwrap.wrap(
                    USER_MODEL_RULE + ".", 92, initial_indent="  ", subsequent_indent="  "
                )
            ),
            _listing("engines (--engine), from ppl_lvm.inference.available():", engines),
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, exposed for tests and documentation; it reads the engine and model
    registries as they are now. Its errors are one line (see :class:`checks.Parser`)."""
    parser = Parser(
        prog="ppl-lvm",
        description="Latent-variable models on Pyro: fit, compare, complete.",
        epilog="run `ppl-lvm COMMAND --help` for a command's options, data, models and engines",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    seed_help = "random seed of everything: initialisation, fitting, splits and draws"
    count = positive_int()
    demo = sub.add_parser(
        "demo",
        help="the main job on the embedded data (HTML report)",
        description="The lecture end to end on the embedded data: a mixture on the digits, a\n"
        "VAE on mnist5k, estimators of log p(x) compared, missing halves completed;\n"
        "figures, tables, report.html and NetCDF go to --out.",
        epilog=f"example:\n  {EXAMPLES['demo']}",
        formatter_class=_HelpFormatter,
    )
    demo.add_argument("--out", default="demo_out", help="folder for the report")
    demo.add_argument("--seed", type=non_negative_seed, default=0, help=seed_help)
    demo.add_argument("--quick", action="store_true", help="tiny settings, for smoke tests")
    demo.add_argument("--device", default=None, help="train the VAE there, e.g. cuda")
    demo.set_defaults(func=cmd_demo)
    ds = sub.add_parser(
        "datasets",
        help="list the built-in data sets",
        description="List the built-in data sets: name, size, image shape, classes, range.",
        epilog=f"example:\n  {EXAMPLES['datasets']}",
        formatter_class=_HelpFormatter,
    )
    ds.set_defaults(func=cmd_datasets)
    for name, func, helptext in (
        ("fit", cmd_fit, "fit a story to data and save its parameters"),
        ("compare", cmd_compare, "compare estimators of log p(x) (table and figure)"),
        ("complete", cmd_complete, "complete missing entries"),
        ("diagnose", cmd_diagnose, "posterior draws to ArviZ NetCDF, with k-hat"),
    ):
        p = sub.add_parser(
            name,
            help=helptext,
            description=f"{helptext[0].upper()}{helptext[1:]}.",
            epilog=_epilog(name),
            formatter_class=_HelpFormatter,
        )
        p.add_argument(
            "--model",
            required=True,
            help="a built-in story, or module:attribute naming your own: a model, a (model, "
            "guide) pair, a model function f(x, mask=None), or a factory whose first "
            "parameter is named ds or dataset, called with the Dataset (rule below)",
        )
        p.add_argument("--data", required=True, help="a built-in data set or a file (below)")
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
        p.add_argument("--seed", type=non_negative_seed, default=0, help=seed_help)
        p.add_argument("--out", default=f"{name}_out", help="output folder (created if missing)")
        p.add_argument("--device", default=None, help="train there, e.g. cuda (default: cpu)")
        p.add_argument("--components", type=count, default=10, help="mixture components K")
        p.add_argument("--latent", type=count, default=10, help="latent dimension L")
        p.add_argument("--epochs", type=count, default=10, help="SVI epochs")
        p.add_argument(
            "--lr",
            type=positive_float,
            default=None,
            help="learning rate of the engines that take one (default: each engine's own)",
        )
        p.add_argument(
            "--particles",
            type=count,
            default=None,
            help="num_particles of the evaluating engines, and of the one `fit --engine` "
            "names, where they take it (default: each engine's own)",
        )
        p.add_argument("--samples", type=count, default=100, help="posterior or completion draws")
        if name == "complete":
            p.add_argument(
                "--method",
                default="auto",
                choices=("auto", "guide", "refine", "mwg", "hmc"),
                help="test-time inference of a deep model: auto refines each datum's proposal "
                "where the guide's k-hat > 0.7; guide, refine, mwg (Metropolis-within-Gibbs) "
                "or hmc by name. Other models complete exactly or by their own procedure",
            )
        p.add_argument("--num-eval", type=count, default=200, help="data to evaluate on")
        p.add_argument(
            "--limit",
            type=positive_int("; leave --limit out to use every row"),
            default=None,
            help="use only the first N data (default: all)",
        )
        p.add_argument("--binarize", action="store_true", help="threshold the data at 0.5")
        p.add_argument("--load", default=None, help="parameters saved by `ppl-lvm fit` (model.pt)")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ppl-lvm`` console script; returns the exit status.

    Every failure is one line on stderr, ``ppl-lvm COMMAND: error: ...``, with status 2:
    argparse's (raised as SystemExit(2), as ``--help`` raises SystemExit(0)), the checks made
    before any work (:func:`checks.check_arguments`), and whatever the command raises; an
    exception nobody expected says it is a bug. Ctrl-C gives status 130. ``--seed`` seeds
    every generator (torch, NumPy, Python) for the whole command, network initialisation
    included.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"ppl-lvm {args.command}"
    try:
        check_arguments(args)
        from ..core.rng import seeded

        with seeded(getattr(args, "seed", None)):
            return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError, EOFError) as err:
        message = one_line(err) or type(err).__name__
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return 2
    except Exception as err:  # the last resort: one line, never a traceback
        message = f"{type(err).__name__}: {one_line(err)}".rstrip(": ")
        print(
            f"{prefix}: error: unexpected {message}; this is a bug; please report it with the "
            "command line",
            file=sys.stderr,
        )
        return 2
