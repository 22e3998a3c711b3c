"""Parsers of the formats :func:`~ppl_lvm.datasets.from_file` reads: .npy, .npz, CSV, MNIST IDX.

Each parser takes a file's bytes (already gunzipped) and its path, used only in messages, and
returns a numpy array.  Every failure is a ``ValueError`` that names the path and the format the
file was expected to have (:data:`EXPECTED`), whatever the underlying library raised.

.npy data (alone or inside an .npz) are parsed here from their header rather than with
``numpy.load``: given bytes that are not an array, ``numpy.load`` falls back to unpickling and,
refused, advises loading the file unsafely, which no message of ours may do.  Reading the header
first also refuses object, complex and text dtypes before any payload is touched, so nothing is
ever unpickled.
"""

from __future__ import annotations

import csv
import io
import math
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

__all__ = [
    "EXPECTED",
    "IDX_TYPES",
    "looks_like_idx",
    "parse_csv",
    "parse_idx",
    "parse_npy",
    "parse_npz",
]

# What each format should hold; every message about a bad file ends in one of these, so the
# user learns what the reader wanted as well as what it found.
EXPECTED: dict[str, str] = {
    "npy": "a .npy array of numbers (as written by numpy.save)",
    "npz": "an .npz with a float array (as written by numpy.savez)",
    "csv": "a CSV of numbers (comma-separated, with an optional header row)",
    "idx": "an MNIST IDX file (magic 00 00 <type> <ndim>, big-endian sizes, then the values)",
}

IDX_TYPES: dict[int, tuple[str, str]] = {
    0x08: (">u1", "uint8"),
    0x09: (">i1", "int8"),
    0x0B: (">i2", "int16"),
    0x0C: (">i4", "int32"),
    0x0D: (">f4", "float32"),
    0x0E: (">f8", "float64"),
}

_NPY_MAGIC = b"\x93NUMPY"
_NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip

# Per dtype kind that cannot become a float32 matrix: what it is, and what to do instead.
_REFUSED_KINDS: dict[str, str] = {
    "c": "complex numbers, which a real float32 matrix cannot hold; save the real part "
    "(x.real), the modulus (abs(x)) or both parts as columns (numpy.hstack([x.real, x.imag]))",
    "O": "Python objects, which would have to be unpickled, and pickled data are never "
    "loaded; save a numeric array instead (numpy.save(path, x.astype(float)))",
    "U": "text; convert it to numbers first (x.astype(float))",
    "S": "bytes strings; convert them to numbers first (x.astype(float))",
    "V": "structured records; save one numeric field, or the fields stacked as columns",
    "M": "dates; convert them to numbers first (e.g. days since a start date)",
    "m": "time spans; convert them to numbers first (e.g. x / numpy.timedelta64(1, 's'))",
}


def _bad(where: str, fmt: str, reason: str) -> ValueError:
    return ValueError(f"{where!r} is not {EXPECTED[fmt]}: {reason}")


@contextmanager
def _library_errors(where: str, fmt: str, what: str) -> Iterator[None]:
    """Turn whatever a library raises on corrupt bytes into one ``ValueError`` naming the file.

    numpy's header reader and ``zipfile`` raise a dozen unrelated types on damaged input
    (``ValueError``, ``SyntaxError``, ``tokenize.TokenError``, ``UnicodeDecodeError``,
    ``EOFError``, ``zlib.error``, ``zipfile.BadZipFile``, ...); to the user each means the same
    thing, so the guarded blocks hold only library calls on the file's bytes.
    """
    try:
        yield
    except MemoryError:
        raise  # not a property of the file
    except Exception as err:
        detail = f"{type(err).__name__}: {err}"
        if "pickle" in detail.lower():
            # numpy's message then advises trusting the file and switching unpickling on; never
            # pass on that advice, not even as the chained cause.
            raise _bad(where, fmt, what) from None
        raise _bad(where, fmt, f"{what} ({detail})") from err


def _check_dtype(dtype: np.dtype, where: str, fmt: str, subject: str) -> None:
    """Refuse a dtype that is not bool, integer or real floating point, before any payload."""
    if dtype.kind in "biuf":
        return
    advice = _REFUSED_KINDS.get(dtype.kind, "convert it to a numeric array first")
    raise _bad(where, fmt, f"{subject} holds dtype {dtype}: {advice}")


# --------------------------------------------------------------------------------------------
# .npy and .npz
# --------------------------------------------------------------------------------------------


def parse_npy(
    data: bytes, where: str, *, fmt: str = "npy", member: str | None = None
) -> np.ndarray:
    """Parse the bytes of a .npy file without ever unpickling.

    Parameters
    ----------
    data : bytes
        The whole file.
    where : str
        Its path, for messages.
    fmt : {"npy", "npz"}, default "npy"
        The format the user gave, for messages (an .npz member is a .npy file).
    member : str, optional
        The array's name inside an .npz, for messages.

    Returns
    -------
    numpy.ndarray
        The array, of a bool, integer or real floating dtype (a read-only view of ``data``).

    Raises
    ------
    ValueError
        If the bytes are not a .npy array, the header is damaged, the payload is shorter than
        the header declares, or the dtype is complex, object, text, structured or a date.
    """
    subject = "it" if member is None else f"its array {member!r}"
    header = "its .npy header" if member is None else f"the .npy header of its array {member!r}"
    if not data.startswith(_NPY_MAGIC):
        raise _bad(
            where,
            fmt,
            f"{subject} does not start with the .npy magic string {_NPY_MAGIC!r} (it starts "
            f"with {data[:6]!r}). Pickled files are never loaded; write the data with "
            "numpy.save(path, x)",
        )
    stream = io.BytesIO(data)
    with _library_errors(where, fmt, f"{header} cannot be read"):
        version = np.lib.format.read_magic(stream)
        if version not in _NPY_VERSIONS:
            raise ValueError(f"unknown .npy format version {version}")
        # Versions 2.0 and 3.0 share the header layout; 3.0 only allows UTF-8 field names,
        # which belong to structured dtypes that are refused below anyway.
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    _check_dtype(dtype, where, fmt, subject)
    if any(size < 0 for size in shape):
        raise _bad(where, fmt, f"{header} declares a negative size, shape {shape}")
    count = math.prod(shape)
    offset = stream.tell()
    expected, found = count * dtype.itemsize, len(data) - offset
    # Fewer bytes than declared is a truncated file; more is tolerated, as numpy.load does,
    # since arrays appended to one open file by repeated numpy.save calls look like that.
    if found < expected:
        raise _bad(
            where,
            fmt,
            f"{header} declares shape {shape} of {dtype} = {expected} bytes but only {found} "
            "bytes follow it; the file is truncated or corrupt",
        )
    if count == 0:
        return np.empty(shape, dtype=dtype)  # frombuffer cannot start at the buffer's end
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran_order else "C")


def parse_npz(data: bytes, where: str, key: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse an .npz archive: the data array and, if stored, its labels.

    Parameters
    ----------
    data : bytes
        The whole file.
    where : str
        Its path, for messages.
    key : str, optional
        Name of the data array; else ``"x"``, else the only array that is not labels.

    Returns
    -------
    x : numpy.ndarray
        The data array.
    labels : numpy.ndarray or None
        The array named ``"labels"`` (or ``"y"``) when it is not the data array.
    """
    if not data.startswith(_ZIP_MAGIC):
        raise _bad(
            where,
            "npz",
            f"it is not a zip archive (it starts with {data[:4]!r}, not b'PK\\x03\\x04'), "
            "and numpy.savez writes one",
        )
    with _library_errors(where, "npz", "its zip directory cannot be read"):
        archive = zipfile.ZipFile(io.BytesIO(data))
    with archive:
        # numpy.savez stores array "x" as member "x.npy"; other members are not arrays.
        members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
        keys = list(members)
        if not keys:
            raise _bad(where, "npz", "it holds no .npy arrays")
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
        x = _npz_member(archive, members[chosen], where, chosen)
        labels = None
        if label_key is not None and label_key != chosen:
            labels = _npz_member(archive, members[label_key], where, label_key)
    return x, labels


def _npz_member(archive: zipfile.ZipFile, name: str, where: str, key: str) -> np.ndarray:
    with _library_errors(where, "npz", f"its array {key!r} cannot be extracted"):
        raw = archive.read(name)
    return parse_npy(raw, where, fmt="npz", member=key)


# --------------------------------------------------------------------------------------------
# MNIST IDX
# --------------------------------------------------------------------------------------------


def looks_like_idx(data: bytes) -> bool:
    """Whether ``data`` starts with an IDX magic number (for files without a known name)."""
    return len(data) >= 4 and data[:2] == b"\0\0" and data[2] in IDX_TYPES and data[3] >= 1


def parse_idx(data: bytes, where: str) -> np.ndarray:
    """Parse an MNIST IDX file: magic ``00 00 TT NN``, NN big-endian uint32 sizes, the values.

    Parameters
    ----------
    data : bytes
        The whole file.
    where : str
        Its path, for messages.

    Returns
    -------
    numpy.ndarray
        The array in native byte order, of the dtype the type code ``TT`` names.
    """
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_TYPES:
        magic = data[:4].hex(" ")
        codes = ", ".join(f"0x{k:02X} ({v[1]})" for k, v in IDX_TYPES.items())
        raise _bad(
            where,
            "idx",
            f"it has bad IDX magic number {magic}; an IDX file starts with two zero bytes, a "
            f"type code ({codes}) and the number of dimensions",
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise _bad(
            where,
            "idx",
            f"its IDX header declares {ndim} dimensions, which needs {header} header bytes, "
            f"but the file holds {len(data)} bytes",
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype_code, dtype_name = IDX_TYPES[data[2]]
    dtype = np.dtype(dtype_code)
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        shape = " × ".join(str(s) for s in dims)
        raise _bad(
            where,
            "idx",
            f"its IDX header says {shape} {dtype_name} values = {expected} bytes but the file "
            f"holds {found} bytes (after the {header}-byte header); the file is truncated or "
            "corrupt",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def _parse_float(text: str) -> float | None:
    """Cell value, NaN for a missing cell, or None when the text is not a number."""
    text = text.strip()
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _ends_empty(row: list[str]) -> bool:
    """Whether ``row`` ends in an empty field, as when its line ends with the delimiter."""
    return len(row) > 1 and row[-1].strip() == ""


def _trailing_hint(row: list[str], line: int) -> str:
    if _ends_empty(row):
        return f"; line {line} ends with a trailing delimiter ',' (remove it)"
    return ""


def parse_csv(data: bytes, where: str) -> np.ndarray:
    """Parse a numeric CSV with an optional header row; empty or ``nan`` cells become NaN.

    Parameters
    ----------
    data : bytes
        The whole file.
    where : str
        Its path, for messages.

    Returns
    -------
    numpy.ndarray
        float64, shape ``[rows, columns]``.

    Raises
    ------
    ValueError
        If the text is not UTF-8, rows differ in length, a cell outside the header is not a
        number, no data row is left, or every line ends with a trailing delimiter (which would
        add a phantom column with no value in any row).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _bad(where, "csv", f"it is not UTF-8 text ({err})") from err
    reader = csv.reader(io.StringIO(text))
    rows: list[list[float]] = []
    width = width_line = first_data_line = 0
    width_hint = ""
    header_last = ""  # the last header name: a named column may legitimately be all missing
    every_line_trails = True
    first = True
    try:
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and row[0].strip() == ""):
                continue  # blank lines carry no data
            values = [_parse_float(cell) for cell in row]
            if first:
                first = False
                width, width_line, width_hint = len(row), line, _trailing_hint(row, line)
                # The first row is a header when it holds text and not a single number (empty
                # names are allowed); a row mixing numbers and text is data with a bad cell.
                is_text = [v is None for v in values]
                is_blank = [cell.strip() == "" for cell in row]
                if any(is_text) and all(t or b for t, b in zip(is_text, is_blank, strict=True)):
                    header_last = row[-1].strip()
                    continue
            if len(row) != width:
                longer = _trailing_hint(row, line) if len(row) > width else width_hint
                raise _bad(
                    where,
                    "csv",
                    f"line {line} has {len(row)} columns but line {width_line} has {width}; "
                    f"every row needs the same number of comma-separated fields{longer}",
                )
            for col, (value, cell) in enumerate(zip(values, row, strict=True), start=1):
                if value is None:
                    raise _bad(
                        where,
                        "csv",
                        f"line {line}, column {col} holds {cell!r}, which is not a number; "
                        "use an empty field or 'nan' for a missing value",
                    )
            first_data_line = first_data_line or line
            every_line_trails = every_line_trails and _ends_empty(row)
            rows.append(values)  # type: ignore[arg-type]
    except csv.Error as err:
        reason = f"line {reader.line_num} cannot be split into fields ({err})"
        raise _bad(where, "csv", reason) from err
    if not rows:
        raise ValueError(f"{where!r} is empty: it holds no data rows; expected {EXPECTED['csv']}")
    if every_line_trails and not header_last:
        # "1,2,3," read literally has a fourth column missing in every row: a phantom that
        # would silently widen D, so it is refused rather than guessed away.
        raise _bad(
            where,
            "csv",
            f"line {first_data_line} ends with a trailing delimiter ',' and so does every "
            f"data line, which would add a column {width} with no value in any row; remove the "
            "delimiter at the end of each line",
        )
    return np.array(rows, dtype=np.float64)
