"""Reading a data matrix from a file: ``.npy``, ``.npz``, ``.csv`` and MNIST IDX, gzipped or not.

This module finds the file, gunzips it and tells its format; the parsers live in
:mod:`._formats`.  Every problem with a file is a ``ValueError`` (``FileNotFoundError`` for a
missing path) that names the path and the format the file should have.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._dataset import Dataset, check_fits_float32
from ._formats import EXPECTED, looks_like_idx, parse_csv, parse_idx, parse_npy, parse_npz

__all__ = ["from_file"]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

_IDX_NAME = re.compile(r"(\.idx|idx\d+-ubyte)$")
_SUPPORTED = (
    ".npy, .npz, .csv, MNIST IDX (.idx, *-idx1-ubyte, *-idx3-ubyte, ...), "
    "each optionally gzip-compressed (.gz)"
)
_GZIP_MAGIC = b"\x1f\x8b"


def _format_by_name(path: Path) -> str | None:
    """The format the file name promises, looking through a trailing ``.gz``; None if unknown."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for ext in (".npy", ".npz", ".csv"):
        if name.endswith(ext):
            return ext[1:]
    return "idx" if _IDX_NAME.search(name) else None


def _expected(fmt: str | None) -> str:
    return EXPECTED[fmt] if fmt is not None else f"a data file ({_SUPPORTED})"


def _read_bytes(path: Path) -> bytes:
    """Whole file contents, gunzipped when the file starts with the gzip magic 1f 8b."""
    where, expected = str(path), _expected(_format_by_name(path))
    if not path.exists():
        raise FileNotFoundError(f"no such file: {where!r}; expected {expected}")
    if path.is_dir():
        raise ValueError(f"{where!r} is a directory, not a file; expected {expected}")
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            raise ValueError(
                f"{where!r} starts with the gzip magic bytes 1f 8b but cannot be gunzipped "
                f"({type(err).__name__}: {err}); it is truncated or corrupt. Expected "
                f"{expected}, optionally gzip-compressed"
            ) from err
    if not data:
        raise ValueError(f"{where!r} is empty (it holds no bytes); expected {expected}")
    return data


def _format_of(path: Path, data: bytes) -> str:
    fmt = _format_by_name(path)
    if fmt is None and looks_like_idx(data):
        fmt = "idx"
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r}: supported formats are {_SUPPORTED}"
        )
    return fmt


def _stem(path: Path) -> str:
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for ext in (".npy", ".npz", ".csv", ".idx"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def _read_array(path: Path, key: str | None = None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Array (and labels stored alongside it, for .npz) plus the detected format."""
    data = _read_bytes(path)
    fmt = _format_of(path, data)
    where = str(path)
    labels = None
    if fmt == "idx":
        array = parse_idx(data, where)
    elif fmt == "csv":
        array = parse_csv(data, where)
    elif fmt == "npy":
        array = parse_npy(data, where)
    else:
        array, labels = parse_npz(data, where, key)
    return array, labels, fmt


def _check_finite_or_missing(array: np.ndarray, where: str) -> None:
    """Refuse infinite values: NaN marks a missing entry, but inf can only be bad data."""
    if array.dtype.kind != "f":
        return
    infinite = np.isinf(array)
    if infinite.any():
        row, col = (int(i) for i in np.argwhere(infinite)[0])
        count = int(infinite.sum())
        raise ValueError(
            f"{where!r} holds {count} infinite value{'s' * (count != 1)}, the first at (row "
            f"{row}, column {col}); data must be finite. Mark a missing value as NaN (an empty "
            "CSV field or nan), or clean the data"
        )


def _as_labels(labels: Any, n: int, what: str) -> torch.Tensor:
    """1-D int64 labels of length n from a path or array."""
    if isinstance(labels, str | os.PathLike):
        array, _, _ = _read_array(Path(labels))
        what = f"labels file {str(labels)!r}"
    else:
        array = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{what} must hold one label per row (shape [N]), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
            raise ValueError(f"{what} must hold whole-number class labels (no NaN or fractions)")
    if len(array) != n:
        raise ValueError(f"{what} has {len(array)} labels but the data have {n} rows")
    return torch.from_numpy(array.astype(np.int64))


def from_file(
    path: str | os.PathLike,
    *,
    labels: str | os.PathLike | np.ndarray | None = None,
    image_shape: tuple[int, int] | None = None,
    key: str | None = None,
) -> Dataset:
    """Read a data matrix from a file.

    Formats, chosen by extension (a trailing ``.gz`` is looked through; gzip is recognised
    by its magic bytes), or by the IDX magic number for files without a known extension:

    ``.npy``
        A 2-D array ``[N, D]``, or 3-D ``[N, H, W]`` (flattened; ``image_shape = (H, W)``),
        of bools, integers or real floats.  Pickled (object) data are never loaded.
    ``.npz``
        The array named ``key``, else ``"x"``, else the only array; an array named
        ``"labels"`` (or ``"y"``) becomes the labels.
    ``.csv``
        Comma-separated numbers, optionally under one header row of column names.  Empty
        fields and ``nan`` mark missing values; blank lines are skipped.  Lines must not end
        with a trailing delimiter (``1,2,3,``), which would add a column with no values.
    MNIST IDX (``*.idx``, ``*-idx3-ubyte``, ``*.idx1-ubyte``, ...)
        2-D or 3-D arrays.  3-D uint8 data are pixel intensities and are divided by 255 to
        lie in [0, 1]; other data keep their values.

    NaN anywhere in the data marks a missing entry and sets the mask.

    Parameters
    ----------
    path : str or os.PathLike
        The data file.
    labels : str or os.PathLike or numpy.ndarray, optional
        Class labels, shape ``[N]``: an array, or a file (IDX1, ``.npy``, single-column
        ``.csv``).  Overrides labels stored in an ``.npz``.
    image_shape : tuple of int, optional
        ``(H, W)`` of each row; taken from the file for 3-D arrays.
    key : str, optional
        Name of the data array in an ``.npz`` archive.

    Returns
    -------
    Dataset
        ``x`` of shape ``[N, D]`` named after the file stem, with ``info["source"]`` the path.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For a directory, or an empty, corrupt, truncated, malformed or unsupported file, with
        the path, the reason and the expected format; for complex, object, text or structured
        arrays (pickled data are never loaded); for infinite values, or finite values too
        large for float32 (``|x| > 3.4e38``), naming the first one's row and column.
    """
    path = Path(path)
    array, stored_labels, fmt = _read_array(path, key)
    where = str(path)
    # The parsers return only bool, integer and real floating arrays: complex, object, text
    # and structured data are refused there, naming the dtype, before a payload is read.
    if array.ndim == 1:
        hint = (
            "it looks like a labels file; pass it as labels=... together with the image file"
            if fmt == "idx"
            else "reshape it to [N, D] (e.g. x[:, None] for one column), or pass it as labels=..."
        )
        raise ValueError(f"{where!r} holds a 1-D array of shape {array.shape}; {hint}")
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{where!r} holds an array of shape {array.shape}; expected {EXPECTED[fmt]} of "
            "shape [N, D] or [N, H, W]"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{where!r} is empty: its array of shape {array.shape} has no rows")
    if array.ndim == 3:
        n, h, w = array.shape
        if image_shape is not None and tuple(image_shape) != (h, w):
            raise ValueError(
                f"{where!r} holds {h}×{w} images but image_shape={tuple(image_shape)} was "
                "passed; leave image_shape out for 3-D data"
            )
        image_shape = (h, w)
        if fmt == "idx" and array.dtype == np.uint8:
            array = array / 255.0
        array = array.reshape(n, h * w)
    _check_finite_or_missing(array, where)
    check_fits_float32(array, repr(where))
    x_array = np.ascontiguousarray(array, dtype=np.float32)
    if not x_array.flags.writeable:
        # A float32 .npy comes back as a view of the file's bytes; torch wants its own copy.
        x_array = x_array.copy()
    x = torch.from_numpy(x_array)
    n = x.shape[0]
    if labels is not None:
        label_tensor = _as_labels(labels, n, "labels")
    elif stored_labels is not None:
        label_tensor = _as_labels(stored_labels, n, f"the labels stored in {where!r}")
    else:
        label_tensor = None
    return Dataset(
        x=x,
        labels=label_tensor,
        image_shape=image_shape,
        name=_stem(path),
        info={"source": where, "format": fmt},
    )
