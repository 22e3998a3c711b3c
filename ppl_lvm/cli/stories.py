"""The ``--model`` registry: built-in stories sized to the data, and a user's ``module:attr``.

Adding a story to the command is one call::

    from ppl_lvm.cli.stories import register_model
    register_model("my-model", lambda ds, args: MyModel(dim=ds.dim), "MyModel, my way")

after which ``--model my-model`` builds it and ``--help`` lists it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["BUILTIN_MODELS", "ModelEntry", "make_model", "register_model", "unregister_model"]

#: ``factory(dataset, args) -> LatentVariableModel``: a story sized to the data set.
ModelFactory = Callable[[Any, argparse.Namespace], Any]


class ModelEntry(NamedTuple):
    """One ``--model`` name: what it is, and how to build it."""

    #: One line for ``--help``, naming the options it reads (``--components``, ``--latent``).
    description: str
    #: ``factory(dataset, args)``: a fresh story sized to the data set.
    factory: ModelFactory


#: Stories for ``--model``: name -> (description, factory(dataset, args)), in registration order.
BUILTIN_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str, factory: ModelFactory, description: str, *, replace: bool = False
) -> ModelEntry:
    """Make a story available as ``--model name``.

    Parameters
    ----------
    name : str
        Non-empty, without spaces or ``:`` (which marks a user's ``module:attribute``).
    factory : callable
        ``factory(dataset, args)``: the Dataset and the parsed arguments to a new model.
    description : str
        One line for ``--help``.
    replace : bool
        Allow replacing an existing name.

    Raises
    ------
    ValueError
        For a malformed name or one already taken (without ``replace=True``).
    """
    if not isinstance(name, str) or not name or any(c in name for c in " :,\t\n"):
        raise ValueError(
            f"a model name must be non-empty, without spaces, ',' or ':'; got {name!r}."
        )
    if name in BUILTIN_MODELS and not replace:
        raise ValueError(f"a model named {name!r} is already registered; pass replace=True.")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}.")
    entry = ModelEntry(description, factory)
    BUILTIN_MODELS[name] = entry
    return entry


def unregister_model(name: str) -> None:
    """Remove ``--model name`` (a test's story, say); KeyError if absent."""
    if name not in BUILTIN_MODELS:
        raise KeyError(f"no model named {name!r} is registered; see BUILTIN_MODELS.")
    del BUILTIN_MODELS[name]


def _is_binary(ds) -> bool:
    return bool(((ds.x == 0) | (ds.x == 1)).all())


def _gmm(covariance: str) -> ModelFactory:
    def factory(ds, args: argparse.Namespace):
        from .. import models

        return models.GaussianMixture(
            dim=ds.dim, num_components=args.components, covariance=covariance, reg_covar=1e-2
        )

    return factory


def _bernoulli_mixture(ds, args: argparse.Namespace):
    from .. import models

    return models.BernoulliMixture(dim=ds.dim, num_components=args.components)


def _categorical_mixture(ds, args: argparse.Namespace):
    from .. import models

    return models.CategoricalMixture(
        dim=ds.dim, num_components=args.components, num_categories=int(ds.x.max()) + 1
    )


def _vae(ds, args: argparse.Namespace):
    from .. import models

    likelihood = "bernoulli" if _is_binary(ds) else "gaussian"
    return models.VAE(ds.dim, args.latent, (400,), likelihood, mask_input=ds.mask is not None)


def _ppca(ds, args: argparse.Namespace):
    from .. import models

    return models.LinearGaussian(ds.dim, args.latent)


def _binary_features(ds, args: argparse.Namespace):
    from .. import models

    return models.BinaryLatentFactors(ds.dim, args.latent)


def _conv_vae(ds, args: argparse.Namespace):
    from .. import models

    if ds.image_shape is None:
        raise ValueError(
            f"--model conv-vae needs images, and {ds.name!r} has no image shape; use --model vae."
        )
    likelihood = "bernoulli" if _is_binary(ds) else "gaussian"
    return models.ConvVAE(tuple(ds.image_shape), args.latent, likelihood=likelihood)


def _autoregressive(ds, args: argparse.Namespace):
    from .. import models

    if not _is_binary(ds):
        raise ValueError(
            f"--model ar models binary pixels, and {ds.name!r} holds other values; add "
            "--binarize (threshold at 0.5)."
        )
    shape = None if ds.image_shape is None else tuple(ds.image_shape)
    return models.Autoregressive(ds.dim, image_shape=shape)


register_model("gmm", _gmm("diag"), "GaussianMixture, diagonal covariance (--components)")
register_model("gmm-full", _gmm("full"), "GaussianMixture, full covariance (--components)")
register_model(
    "bernoulli-mixture", _bernoulli_mixture, "BernoulliMixture for 0/1 data (--components)"
)
register_model(
    "categorical-mixture",
    _categorical_mixture,
    "CategoricalMixture for coded data (--components)",
)
register_model("vae", _vae, "VAE 400 hidden units, Bernoulli for 0/1 data else Gaussian (--latent)")
register_model("ppca", _ppca, "LinearGaussian, probabilistic PCA (--latent)")
register_model("binary-features", _binary_features, "BinaryLatentFactors for 0/1 data (--latent)")
register_model("conv-vae", _conv_vae, "ConvVAE, a small convolutional VAE for images (--latent)")
register_model(
    "ar", _autoregressive, "Autoregressive (MADE, 8 orderings) for 0/1 pixels; missing = latent"
)


def make_model(args: argparse.Namespace, ds):
    """The story ``--model`` names, sized to ``ds``: a registered name or ``module:attribute``."""
    name = args.model
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name].factory(ds, args)
    if ":" in name:
        return _user_model(name, ds, args)
    raise ValueError(
        f"--model {name!r} is not a built-in ({', '.join(BUILTIN_MODELS)}) nor "
        "'module:attribute' naming your own story."
    )


#: The rule of ``--model module:attribute`` (also in ``--help``).
USER_MODEL_RULE = (
    "module:attribute names your own story in a module of the current folder or the Python "
    "path: a LatentVariableModel, a (model, guide) pair, a Pyro model function model(x, "
    "mask=None), or a factory: a function whose first parameter is named ds or dataset (or "
    "annotated Dataset), called as f(ds), or f(ds, args) when its second parameter is named "
    "args, that returns one of those"
)

#: First-parameter names that make a function a factory rather than a model function.
FACTORY_PARAMETERS = ("ds", "dataset")


def _factory_arity(obj: Any) -> int:
    """2 for ``f(ds, args)``, 1 for ``f(ds)``, 0 for anything that is not a factory."""
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return 0
    if not params:
        return 0
    first = params[0]
    annotation = first.annotation
    label = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if first.name not in FACTORY_PARAMETERS and label.rsplit(".", 1)[-1] != "Dataset":
        return 0
    return 2 if len(params) > 1 and params[1].name == "args" else 1


def _import(spec: str, module_name: str):
    """Import the user's module; any failure becomes one line naming the place to fix."""
    import traceback

    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    importlib.invalidate_caches()  # the file may be newer than the import system's listing
    where = f"--model {spec!r}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.split(".")[0] != err.name.split(".")[0]:
            raise ValueError(
                f"{where}: module {module_name!r} imports {err.name!r}, which is not "
                f"installed; install it or remove the import ({err})."
            ) from None
        raise ValueError(
            f"{where}: cannot import module {module_name!r} ({err}); put {module_name}.py "
            f"in the current folder ({Path.cwd()}) or on the Python path."
        ) from None
    except SyntaxError as err:
        raise ValueError(
            f"{where}: {err.filename}, line {err.lineno}: {type(err).__name__}: {err.msg}; "
            "fix the module."
        ) from None
    except SystemExit:
        raise ValueError(
            f"{where}: importing module {module_name!r} called sys.exit(); put its script "
            "part under `if __name__ == '__main__':`."
        ) from None
    except Exception as err:  # whatever the user's module raises is reported
        frames = traceback.extract_tb(err.__traceback__)
        at = f" at {frames[-1].filename}, line {frames[-1].lineno}" if frames else ""
        message = " ".join(str(err).split())
        raise ValueError(
            f"{where}: importing module {module_name!r} raised {type(err).__name__}: "
            f"{message}{at}; fix the module."
        ) from None


def _user_model(spec: str, ds, args: argparse.Namespace | None = None):
    """``module:attr`` to a story, by the rule of :data:`USER_MODEL_RULE`: a model, a pair, a
    model function, or a factory (first parameter ``ds``/``dataset`` or annotated Dataset)."""
    from ..models.base import LatentVariableModel
    from ..models.story import as_model

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--model {spec!r}: write module:attribute, e.g. mystory:pair.")
    module = _import(spec, module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(
            f"--model {spec!r}: module {module_name!r} has no attribute {attr!r}."
        ) from None
    if isinstance(obj, type):
        raise ValueError(
            f"--model {spec!r} names a class; name an instance, or a factory such as "
            f"`def make(ds): return {obj.__name__}(ds.dim, ...)`."
        )
    if isinstance(obj, LatentVariableModel | tuple):
        built, what = obj, f"{attr} is not a story"
    elif callable(obj) and _factory_arity(obj):
        what = f"the factory {attr}(ds{', args' if _factory_arity(obj) == 2 else ''})"
        try:
            built = obj(ds, args) if _factory_arity(obj) == 2 else obj(ds)
        except Exception as err:  # the user's factory: its message is the report
            message = " ".join(str(err).split())
            raise ValueError(
                f"--model {spec!r}: {what} raised {type(err).__name__}: {message}."
            ) from None
        what = f"what {what} returned is not a story"
    else:
        built, what = obj, f"{attr} is not a story"
    try:
        return as_model(built)
    except TypeError as err:
        raise ValueError(
            f"--model {spec!r}: {what}: {err} (or name a factory, whose first parameter is "
            "named ds or dataset; see --help)"
        ) from None
