"""``ppl-lvm fit | compare | complete | diagnose | datasets``.

Every engine is built by name from the one registry, :mod:`ppl_lvm.inference.registry`;
every story from :data:`ppl_lvm.cli.stories.BUILTIN_MODELS` or a user's ``module:attribute``.
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import tokenize
import zipfile
import zlib
from pathlib import Path

from .checks import DATA_FORMATS, escape_mathtext, unreadable
from .stories import make_model

#: What the file readers raise for a file they cannot read.
_READ_ERRORS = (
    ValueError,
    TypeError,
    OSError,
    EOFError,
    KeyError,
    IndexError,
    pickle.UnpicklingError,
    gzip.BadGzipFile,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)

__all__ = [
    "cmd_compare",
    "cmd_complete",
    "cmd_datasets",
    "cmd_diagnose",
    "cmd_fit",
    "default_engine",
    "describe",
    "engine_names",
    "make_engine",
    "table",
]


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """Rows as aligned plain-text columns under ``header``."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, r)) for r in rows]
    return "\n".join(out)


#: Columns of :func:`describe`.
DATASET_HEADER = ("name", "N", "D", "image", "classes", "range")


def describe(ds) -> tuple[str, ...]:
    """One row of the data-set table: name, N, D, image shape, classes, value range."""
    classes = "-" if ds.labels is None else str(int(ds.labels.unique().numel()))
    shape = "-" if ds.image_shape is None else "x".join(map(str, ds.image_shape))
    lo, hi = float(ds.x.min()), float(ds.x.max())
    return (ds.name, f"{len(ds):,}", str(ds.dim), shape, classes, f"[{lo:.3g}, {hi:.3g}]")


def cmd_datasets(args: argparse.Namespace) -> int:
    """List the built-in data sets."""
    from .. import datasets

    rows = [describe(datasets.load(name)) for name in datasets.KNOWN]
    print(table(rows, DATASET_HEADER))
    return 0


# -- engines, from the one registry ------------------------------------------------------------


def engine_names(args: argparse.Namespace, *, many: bool) -> list[str] | None:
    """The registered names ``--engine`` gives (None when absent).

    Raises
    ------
    ValueError
        For a name the registry does not know (the message lists the registered ones), or
        several names where the command takes one.
    """
    from .. import inference

    if args.engine is None:
        return None
    names = [n.strip() for n in args.engine.split(",")]
    known = inference.available()
    for name in names:
        if name not in known:
            raise ValueError(
                f"--engine {name!r} is unknown; choose from {', '.join(known) or '(none)'}."
            )
    if len(names) > 1 and not many:
        raise ValueError(f"--engine takes one name here, got {len(names)}: {args.engine!r}.")
    return names


def make_engine(name: str, args: argparse.Namespace, *, particles: bool = True):
    """The registered engine ``name``, with ``--lr`` (and ``--particles``, unless
    ``particles=False``) as overrides where the engine's declared ``options`` take them."""
    from .. import inference

    given = {"lr": args.lr, "num_particles": args.particles if particles else None}
    overrides = {k: v for k, v in given.items() if v is not None}
    if not overrides:
        return inference.create(name)
    options = type(inference.create(name)).options
    return inference.create(name, **{k: v for k, v in overrides.items() if k in options})


def default_engine(model) -> str:
    """The registered name that fits ``model`` by default: exact EM where the model declares a
    closed-form M-step, mean-field SVI otherwise."""
    from ..models.capabilities import ClosedFormMStep, has

    return "enumeration" if has(model, ClosedFormMStep) else "meanfield"


# -- data and fitting ------------------------------------------------------------------------


def load_data(args: argparse.Namespace):
    """``--data`` (a built-in name or a file), ``--binarize``d and cut to ``--limit``.

    A file that cannot be read (corrupt, truncated, not the format its name says) is one
    ValueError naming the path and the formats expected.
    """
    from .. import datasets

    if args.data in datasets.KNOWN:
        ds = datasets.load(args.data)
    elif Path(args.data).is_file():
        try:
            ds = datasets.from_file(args.data)
        except _READ_ERRORS as err:
            expected = f"a {DATA_FORMATS}, or a built-in data set"
            raise ValueError(unreadable("--data", args.data, err, expected)) from None
    else:  # check_arguments refuses these first; kept for callers that skip it
        raise ValueError(
            f"--data {args.data!r} is neither a built-in data set ({', '.join(datasets.KNOWN)}) "
            f"nor an existing file ({DATA_FORMATS})."
        )
    if args.binarize:
        ds = ds.binarize()
    if args.limit:
        ds = ds.subset(slice(0, args.limit))
    return ds


#: What a parameter file saved by ``ppl-lvm fit`` holds besides the module's ``state_dict``:
#: the story's ``pyro.param`` values (constrained), under this prefix.
PARAM_PREFIX = "pyro.param:"


def materialise(model, ds) -> None:
    """Run the model and the guide once on two data, so that every parameter exists (a
    ``pyro.param`` statement creates its parameter on first use, in the model or the guide)."""
    x, mask = ds.x[:2], None if ds.mask is None else ds.mask[:2]
    if model.has_guide:
        model.sites(x, mask, "guide")
    model.sites(x, mask, "model")


def parameter_state(model) -> dict:
    """What ``fit`` saves: the module's ``state_dict`` and the story's own ``pyro.param``s."""
    import pyro

    state = dict(model.state_dict())
    with model.scoped():
        for name, value in pyro.get_param_store().items():
            state[PARAM_PREFIX + name] = value.detach().cpu().clone()
    return state


def load_parameters(model, path: str, args: argparse.Namespace) -> None:
    """Load ``--load`` into ``model`` (already materialised); a file that is not a parameter
    file, or holds another model's parameters, is one ValueError naming what was expected."""
    import pyro
    import torch

    expected = (
        "the model.pt that `ppl-lvm fit` writes, made with the same --model, --data and sizes"
    )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"--load {path!r} cannot be read: it is not a zip archive as torch.save writes, "
            f"or it is truncated; expected {expected}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a bad file
        raise ValueError(unreadable("--load", path, err, expected)) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"--load {path!r} holds a {type(state).__name__}, not a dictionary of tensors; "
            f"expected {expected}"
        )
    params = {k[len(PARAM_PREFIX) :]: v for k, v in state.items() if k.startswith(PARAM_PREFIX)}
    modules = {k: v for k, v in state.items() if not k.startswith(PARAM_PREFIX)}
    want = parameter_state(model)
    problems = [f"missing {k}" for k in want if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in want]
    problems += [
        f"{k} has shape {tuple(v.shape)}, not {tuple(want[k].shape)}"
        for k, v in state.items()
        if k in want and v.shape != want[k].shape
    ]
    if problems:
        listed = ", ".join(problems[:4]) + (
            f" and {len(problems) - 4} more" if problems[4:] else ""
        )
        raise ValueError(
            f"--load {path!r} does not fit --model {args.model} on this data ({listed}); "
            f"expected {expected}"
        )
    model.load_state_dict(modules)
    with model.scoped():
        store = pyro.get_param_store()
        for name, value in params.items():
            store[name] = value


def fit_or_load(model, ds, args: argparse.Namespace, engine_name: str | None = None):
    """Fit with ``engine_name`` (or the model's default engine), or load ``--load``.

    ``--particles`` reaches the training engine only when the user named it; an engine that
    estimates rather than bounds (importance sampling) learns its proposal through the
    registered ``"iwae"`` engine with 20 particles per step.
    """
    from .. import inference
    from ..models.capabilities import ClosedFormMStep, has

    materialise(model, ds)
    if args.load:
        load_parameters(model, args.load, args)
        return None
    if not model.trainable_parameters():
        print(f"{model.name} has no parameters to learn; using it as written")
        return None
    named = engine_name is not None
    engine = make_engine(engine_name or default_engine(model), args, particles=named)
    if engine.evidence_kind == "exact":
        method = "em" if has(model, ClosedFormMStep) else "gradient"
        return engine.fit(model, ds.x, ds.mask, method=method, seed=args.seed, progress=False)
    if engine.evidence_kind == "estimate":
        # importance sampling learns its proposal by the IWAE bound, 20 particles a step
        engine = make_engine("iwae", args, particles=False)
        engine = inference.create("iwae", num_particles=20, lr=engine.lr)
    return engine.fit(
        model, ds.x, ds.mask, epochs=args.epochs, seed=args.seed, progress=True, device=args.device
    )


def fitted(args: argparse.Namespace):
    """The data and the story, fitted (or loaded with ``--load``) and back on the CPU."""
    ds = load_data(args)
    model = make_model(args, ds)
    fit_or_load(model, ds, args)
    model.to("cpu")
    return ds, model


# -- the subcommands -------------------------------------------------------------------------


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit a story to data and save its parameters."""
    import torch

    names = engine_names(args, many=False)
    ds = load_data(args)
    model = make_model(args, ds)
    fit = fit_or_load(model, ds, args, names[0] if names else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu")
    torch.save(parameter_state(model), out / "model.pt")
    print(fit)
    print(f"parameters saved to {out / 'model.pt'} (reload with --load)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Fit (or load), then compare estimators of log p(x) on the data."""
    from .. import inference
    from ..comparison import compare

    names = engine_names(args, many=True) or list(inference.available())
    engines = [make_engine(n, args) for n in names]
    ds, model = fitted(args)
    result = compare(
        model,
        ds.x[: args.num_eval],
        None if ds.mask is None else ds.mask[: args.num_eval],
        engines=engines,
        seed=args.seed,
        out=args.out,
        title=escape_mathtext(f"{model.name} on {ds.name}"),
    )
    print(result)
    print(f"figure: {result.figure}")
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    """Fit (or load), hide entries (unless the data already miss some), and complete them."""
    import numpy as np
    import torch

    from .. import plots
    from ..completion import complete

    engine_names(args, many=False)  # validated; completion fits with the model's default
    ds = load_data(args)
    model = make_model(args, ds)
    truth = None
    if ds.mask is None:
        pattern = "top_half" if ds.image_shape is not None else "random"
        if len(ds) < 2:
            raise ValueError(
                f"complete hides entries of held-out rows, so it needs at least 2 rows, but "
                f"--data {args.data!r} has {len(ds)} (--limit {args.limit}); raise --limit"
            )
        # a fifth of the rows (at most 500, at least one) are hidden and completed
        test_size = max(1, min(len(ds) // 5, 500))
        train, test = ds.split(test_size=test_size, seed=args.seed)
        hidden = test.with_missing(pattern, seed=args.seed)
        truth = test.x
    else:
        train = hidden = ds
    try:
        fit_or_load(model, train, args)
    except ValueError as err:
        if truth is None or args.load:
            raise
        hint = f"; raise --limit (now {args.limit})" if args.limit else ""
        raise ValueError(
            f"{str(err).rstrip('.')} (complete fits on {len(train)} rows and holds out "
            f"{len(truth)} to hide and complete{hint})"
        ) from None
    model.to("cpu")
    done = complete(
        model,
        hidden.x,
        hidden.mask,
        num_samples=args.samples,
        num_particles=args.particles or 1000,
        method=args.method,
        seed=args.seed,
    )
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
    if done.log_evidence is not None:
        flagged = float((~(done.khat <= 0.7)).float().mean())
        print(
            f"log p(x_observed): mean {float(done.log_evidence.mean()):.2f} nats, median SE "
            f"{float(done.stderr.median()):.3f}, median ESS {float(done.ess.median()):.1f}; "
            f"k-hat > 0.7 for {flagged:.0%} of the data"
        )
    if done.accept is not None:
        print(f"MCMC acceptance: mean {float(done.accept.mean()):.3f}")
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


def _guided_continuous(model, x, mask) -> bool:
    """Whether the story has a guide over local latents, none of them enumerated: the stories
    whose ELBO differs from log p(x) by an amortisation gap."""
    if not model.has_guide:
        return False
    latent = [
        s for s in model.sites(x[:2], None if mask is None else mask[:2]).values() if s.latent
    ]
    return all(s.local and s.enumerate is None for s in latent)


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Fit (or load), draw the posterior with ``--engine``, export it to ArviZ, and report."""
    names = engine_names(args, many=False)
    ds, model = fitted(args)
    x = ds.x[: args.num_eval]
    mask = None if ds.mask is None else ds.mask[: args.num_eval]
    if names:
        name = names[0]
    else:  # exact where the model allows it, else the guide's draws weighed by importance
        name = "enumeration" if default_engine(model) == "enumeration" else "is-guide"
    engine = make_engine(name, args)
    # an estimating engine's draws are its particles (a declared option); the ArviZ export
    # resamples them
    resamples = engine.evidence_kind == "estimate" and "num_particles" in type(engine).options
    draws = engine.num_particles if resamples else args.samples
    post = engine.posterior(model, x, mask, num_samples=draws, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "posterior.nc"
    post.to_arviz().to_netcdf(str(path))
    print(post)
    print(f"InferenceData written to {path}")
    if engine.evidence_kind == "estimate":
        ev = engine.log_evidence(model, x, mask, seed=args.seed)
        if ev.khat is not None:
            from ..diagnostics import khat_summary

            print(khat_summary(ev.khat, ev.num_particles or draws))
    elif engine.evidence_kind == "exact":
        ev = engine.log_evidence(model, x, mask)
        print(f"exact mean log p(x): {ev.mean:.3f} nats per datum")
    if engine.evidence_kind != "exact" and _guided_continuous(model, x, mask):
        # a guide over continuous or sampled latents: how far is the ELBO from the evidence?
        from ..diagnostics import amortization_gap

        means = amortization_gap(model, x, mask, num_particles=100, seed=args.seed).means()
        print(
            "amortisation gap (nats per datum): "
            + ", ".join(f"{k} {v:.3f}" for k, v in means.items() if v is not None)
        )
    return 0
