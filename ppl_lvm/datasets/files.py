"""Reading a data matrix from a file: ``.npy``, ``.npz``, ``.csv`` and MNIST IDX, gzipped or not."""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._dataset import Dataset

__all__ = ["from_file"]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

_IDX_TYPES: dict[int, tuple[str, str]] = {
    0x08: (">u1", "uint8"),
    0x09: (">i1", "int8"),
    0x0B: (">i2", "int16"),
    0x0C: (">i4", "int32"),
    0x0D: (">f4", "float32"),
    0x0E: (">f8", "float64"),
}
_IDX_NAME = re.compile(r"(\.idx|idx\d+-ubyte)$")
_SUPPORTED = (
    ".npy, .npz, .csv, MNIST IDX (.idx, *-idx1-ubyte, *-idx3-ubyte, ...), "
    "each optionally gzip-compressed (.gz)"
)


def _read_bytes(path: Path) -> bytes:
    """Whole file contents, gunzipped when the file starts with the gzip magic 1f 8b."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory; pass the path of a data file")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if not data:
        raise ValueError(f"{str(path)!r} is empty")
    return data


def _looks_like_idx(data: bytes) -> bool:
    return len(data) >= 4 and data[:2] == b"\0\0" and data[2] in _IDX_TYPES and data[3] >= 1


def _format_of(path: Path, data: bytes) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for ext in (".npy", ".npz", ".csv"):
        if name.endswith(ext):
            return ext[1:]
    if _IDX_NAME.search(name) or _looks_like_idx(data):
        return "idx"
    raise ValueError(f"cannot tell the format of {str(path)!r}: supported formats are {_SUPPORTED}")


def _stem(path: Path) -> str:
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for ext in (".npy", ".npz", ".csv", ".idx"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def _read_idx(data: bytes, path: Path) -> np.ndarray:
    """Parse an MNIST IDX file: magic ``00 00 TT NN``, NN big-endian uint32 sizes, data."""
    where = str(path)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
        magic = data[:4].hex(" ")
        codes = ", ".join(f"0x{k:02X} ({v[1]})" for k, v in _IDX_TYPES.items())
        raise ValueError(
            f"{where!r} has bad IDX magic number {magic}: an IDX file starts with two zero "
            f"bytes, a type code ({codes}) and the number of dimensions"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(
            f"{where!r}: IDX header declares {ndim} dimensions, which needs {header} header "
            f"bytes, but the file holds {len(data)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype_code, dtype_name = _IDX_TYPES[data[2]]
    dtype = np.dtype(dtype_code)
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        shape = " × ".join(str(s) for s in dims)
        raise ValueError(
            f"{where!r}: IDX header says {shape} {dtype_name} values = {expected} bytes but "
            f"the file holds {found} bytes (after the {header}-byte header); the file is "
            "truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def _parse_float(text: str) -> float | None:
    """Cell value, NaN for a missing cell, or None when the text is not a number."""
    text = text.strip()
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _read_csv(data: bytes, path: Path) -> np.ndarray:
    """Numeric CSV with an optional header row; empty or nan cells become NaN."""
    where = str(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where!r} is not UTF-8 text, so it cannot be read as CSV") from err
    reader = csv.reader(io.StringIO(text))
    rows: list[list[float]] = []
    width = 0
    width_line = 0
    first = True
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and row[0].strip() == ""):
            continue  # blank lines carry no data
        values = [_parse_float(cell) for cell in row]
        if first:
            first = False
            width, width_line = len(row), line
            # The first row is a header when it holds text and not a single number (empty
            # names are allowed); a row mixing numbers and text is data with a bad cell.
            is_text = [v is None for v in values]
            is_blank = [cell.strip() == "" for cell in row]
            if any(is_text) and all(t or b for t, b in zip(is_text, is_blank, strict=True)):
                continue
        if len(row) != width:
            raise ValueError(
                f"{where!r}: line {line} has {len(row)} columns but line {width_line} has "
                f"{width}; every row needs the same number of comma-separated fields"
            )
        for col, (value, cell) in enumerate(zip(values, row, strict=True), start=1):
            if value is None:
                raise ValueError(
                    f"{where!r}: line {line}, column {col} holds {cell!r}, which is not a "
                    "number; use an empty field or 'nan' for a missing value"
                )
        rows.append(values)  # type: ignore[arg-type]
    if not rows:
        raise ValueError(f"{where!r} is empty: it holds no data rows")
    return np.array(rows, dtype=np.float64)


def _read_npz(data: bytes, path: Path, key: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    where = str(path)
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        keys = list(archive.files)
        label_key = next((k for k in ("labels", "y") if k in keys), None)
        if key is not None:
            if key not in keys:
                raise ValueError(f"{where!r} has no array {key!r}; its arrays are {keys}")
            chosen = key
        elif "x" in keys:
            chosen = "x"
        else:
            candidates = [k for k in keys if k not in ("labels", "y")]
            if len(candidates) != 1:
                raise ValueError(
                    f"{where!r} holds arrays {keys} and none is called 'x'; pass key=... to "
                    "choose the data array"
                )
            chosen = candidates[0]
        x = archive[chosen]
        labels = archive[label_key] if label_key is not None and label_key != chosen else None
    return x, labels


def _read_array(path: Path, key: str | None = None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Array (and labels stored alongside it, for .npz) plus the detected format."""
    data = _read_bytes(path)
    fmt = _format_of(path, data)
    labels = None
    if fmt == "idx":
        array = _read_idx(data, path)
    elif fmt == "csv":
        array = _read_csv(data, path)
    elif fmt == "npy":
        array = np.load(io.BytesIO(data), allow_pickle=False)
    else:
        array, labels = _read_npz(data, path, key)
    return array, labels, fmt


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
        A 2-D array ``[N, D]``, or 3-D ``[N, H, W]`` (flattened; ``image_shape = (H, W)``).
    ``.npz``
        The array named ``key``, else ``"x"``, else the only array; an array named
        ``"labels"`` (or ``"y"``) becomes the labels.
    ``.csv``
        Comma-separated numbers, optionally under one header row of column names.  Empty
        fields and ``nan`` mark missing values; blank lines are skipped.
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
        For an empty, malformed or unsupported file, with the reason and location.
    """
    path = Path(path)
    array, stored_labels, fmt = _read_array(path, key)
    where = str(path)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"{where!r} holds {array.dtype} data; only numeric arrays are supported")
    if array.ndim == 1:
        hint = (
            "it looks like a labels file; pass it as labels=... together with the image file"
            if fmt == "idx"
            else "reshape it to [N, D] (e.g. x[:, None] for one column), or pass it as labels=..."
        )
        raise ValueError(f"{where!r} holds a 1-D array of shape {array.shape}; {hint}")
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{where!r} holds an array of shape {array.shape}; expected [N, D] or [N, H, W]"
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
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
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
