"""Checks of the command line, made before any work, and one-line messages for what fails.

Every ``ppl-lvm`` failure is one line on stderr that names the fix, with exit status 2:
argparse's own errors (:class:`Parser`), the checks of :func:`check_arguments` (output folder,
device, engine names, ``--data`` and ``--load`` paths), unreadable files (:func:`unreadable`)
and, as a last resort, an unexpected exception (:func:`one_line`).
"""

from __future__ import annotations

import argparse
import gzip
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

__all__ = [
    "DATA_FORMATS",
    "Parser",
    "check_arguments",
    "check_device",
    "check_out",
    "escape_mathtext",
    "non_negative_seed",
    "one_line",
    "positive_float",
    "positive_int",
    "unreadable",
]

#: What ``--data`` reads, for messages.
DATA_FORMATS = ".npy, .npz, .csv or MNIST IDX file, optionally gzipped"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block): ``PROG: error: ...``,
    pointing at ``--help``, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def one_line(text: object) -> str:
    """``text`` as one line: its lines joined by spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


# -- argparse types ----------------------------------------------------------------------------


def positive_int(hint: str = "") -> Callable[[str], int]:
    """An argparse ``type=`` for a whole number >= 1; ``hint`` ends the message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"must be a whole number of at least 1, got {text!r}{hint}"
            )
        return value

    parse.__name__ = "positive_int"
    return parse


def positive_float(text: str) -> float:
    """An argparse ``type=`` for a finite number > 0 (a learning rate, say)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"must be a finite number above 0, e.g. 1e-3; got {text!r}"
        )
    return value


def non_negative_seed(text: str) -> int:
    """An argparse ``type=`` for a seed: a whole number from 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 0 to {2**32 - 1}, got {text!r}"
        )
    return value


# -- checks before any work --------------------------------------------------------------------


def check_out(out: str) -> None:
    """Refuse an ``--out`` that is, or lies under, an existing file (not a folder)."""
    path = Path(out)
    for where in (path, *path.parents):
        if where.exists():
            if where.is_dir():
                return
            if where == path:
                raise ValueError(
                    f"--out {out!r} is an existing file, not a folder; pass a folder name "
                    "(it is created if missing)"
                )
            raise ValueError(
                f"--out {out!r} lies under {str(where)!r}, which is a file, not a folder; "
                "pass a folder elsewhere"
            )


def check_device(name: str | None) -> None:
    """Refuse a ``--device`` that torch does not know or this machine does not have."""
    if name is None:
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ValueError(
            f"--device {name!r} is not a torch device ({one_line(err)}); use cpu, cuda, "
            "cuda:N or mps, or leave --device out to run on the CPU"
        ) from None
    fix = "; leave --device out to run on the CPU"
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name!r}: CUDA is not available on this machine{fix}")
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"--device {name!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}{fix}"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {name!r}: MPS is not available on this machine{fix}")
    elif device.type == "meta":
        raise ValueError(f"--device {name!r} holds no data, so nothing can train there{fix}")
    elif device.type != "cpu":
        try:
            torch.empty(1, device=device)
        except Exception as err:  # any backend's refusal becomes the message
            raise ValueError(
                f"--device {name!r} cannot be used here ({one_line(err)}){fix}"
            ) from None


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that can be checked before loading data or fitting: ``--out``,
    ``--device``, the ``--engine`` names, the form of ``--model``, and the ``--data`` and
    ``--load`` paths. Raises ValueError with the one-line message."""
    if getattr(args, "out", None) is not None:
        check_out(args.out)
    check_device(getattr(args, "device", None))
    if getattr(args, "model", None) is None:
        return  # demo, datasets
    from .. import datasets
    from .commands import engine_names
    from .stories import BUILTIN_MODELS

    engine_names(args, many=args.command == "compare")
    if args.model not in BUILTIN_MODELS and ":" not in args.model:
        raise ValueError(
            f"--model {args.model!r} is not a built-in ({', '.join(BUILTIN_MODELS)}) nor "
            "'module:attribute' naming your own story."
        )
    if args.data not in datasets.KNOWN:
        data = Path(args.data)
        if data.is_dir():
            raise ValueError(
                f"--data {args.data!r} is a folder; pass one data file in it ({DATA_FORMATS}) "
                f"or a built-in data set ({', '.join(datasets.KNOWN)})"
            )
        if not data.exists():
            raise ValueError(
                f"--data {args.data!r} is neither a built-in data set "
                f"({', '.join(datasets.KNOWN)}) nor an existing file ({DATA_FORMATS})."
            )
    if args.load:
        load = Path(args.load)
        if load.is_dir():
            raise ValueError(
                f"--load {args.load!r} is a folder; pass the model.pt file that "
                f"`ppl-lvm fit` wrote in it, e.g. --load {str(load / 'model.pt')!r}"
            )
        if not load.exists():
            raise ValueError(
                f"--load {args.load!r} does not exist; pass the model.pt file that "
                "`ppl-lvm fit` wrote"
            )


# -- messages ----------------------------------------------------------------------------------


def unreadable(flag: str, path: str, err: BaseException, expected: str) -> str:
    """One line saying why ``path`` (given as ``flag``) cannot be read and what is expected.

    The reason never recommends unsafe loading: a message from NumPy or torch that does (their
    advice to allow pickles, or ``weights_only=False``) is replaced by a plain description.
    """
    message = one_line(err)
    name = Path(path).name.lower()
    head = b""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        pass
    if name.endswith(".gz") and head != b"\x1f\x8b":
        reason = "its name ends in .gz but it is not gzip-compressed (no gzip header)"
    elif isinstance(err, gzip.BadGzipFile | zlib.error) or (
        head == b"\x1f\x8b" and isinstance(err, EOFError | OSError)
    ):
        reason = f"it is not a valid gzip file, or it is truncated ({message})"
    elif any(s in message for s in ("allow_pickle", "pickle.load", "weights_only", "unsafe")):
        # numpy's and torch's advice to load the file unsafely is never passed on
        reason = "it is corrupt, or not in that format"
    elif message and (repr(path) in message or repr(str(Path(path))) in message):
        # the reader's own message names the file and the problem
        said = any(s in message.lower() for s in (".npy", "format", "expected"))
        return f"{flag}: {message}" + ("" if said else f"; expected {expected}")
    elif isinstance(err, EOFError) or "EOF" in message or "truncat" in message.lower():
        reason = f"the file ends early: it is truncated or corrupt ({message})"
    else:
        reason = f"{type(err).__name__}: {message}" if message else type(err).__name__
    return f"{flag} {path!r} cannot be read: {reason}; expected {expected}"


def escape_mathtext(text: str) -> str:
    """User text for a matplotlib title: every ``$`` escaped, so a file name such as
    ``my$data.npy`` is printed, never parsed as mathtext."""
    return text.replace("\\$", "$").replace("$", "\\$")
