"""Data that cannot be right is refused clearly, and every file error names the path.

Each test writes a bad file (or builds a bad array) and checks the error's type and that its
message names the problem, the place (path, line, row and column) and the fix or the format
the file should have.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from ppl_lvm.core.checks import check_data
from ppl_lvm.datasets import Dataset, from_file

PACKAGE = Path(__file__).resolve().parents[1] / "ppl_lvm"

# Words of numpy's advice to load a file unsafely; no message of ours may carry them.
UNSAFE_ADVICE = ("allow_pickle", "unsafe", "trust", "pickle.load")


def _raises(path: Path, expected: str, *, err: type[Exception] = ValueError) -> str:
    """from_file(path) raises ``err`` naming the path and the expected format; the message."""
    with pytest.raises(err) as info:
        from_file(path)
    message = str(info.value)
    assert str(path) in message, message
    assert expected in message, message
    return message


def _no_unsafe_advice(error: BaseException) -> None:
    """Neither the error nor any exception its traceback shows tells the user to unpickle."""
    seen: BaseException | None = error
    while seen is not None:
        text = str(seen).lower()
        assert not any(word in text for word in UNSAFE_ADVICE), text
        # the chain Python prints: the cause, else the context unless `from None` hid it
        hidden = seen.__suppress_context__
        seen = seen.__cause__ or (None if hidden else seen.__context__)


def _npy_header(header: str, version: int = 1) -> bytes:
    """The bytes of a .npy file's magic string and header, with no payload."""
    raw = header.encode("latin1")
    size = struct.pack("<H", len(raw)) if version == 1 else struct.pack("<I", len(raw))
    return b"\x93NUMPY" + bytes([version, 0]) + size + raw


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


# --------------------------------------------------------------------------------------------
# 1. Finite values that overflow float32
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda a: a, torch.from_numpy], ids=["numpy", "torch"])
def test_dataset_refuses_values_that_overflow_float32(make: Callable) -> None:
    """1e300 would be stored as inf; the error names the count, row, column and the fix."""
    x = np.array([[1.0, 2.0], [3.0, 1e300], [-1e300, 0.0]])
    with pytest.raises(ValueError, match="too large for float32") as info:
        Dataset(x=make(x))
    message = str(info.value)
    assert "holds 2 finite values" in message
    assert "the first 1e+300 at (row 1, column 1)" in message
    assert "Rescale the data" in message


def test_dataset_keeps_the_largest_float32_and_ignores_masked_overflow() -> None:
    """The float32 maximum itself fits; a masked-out 1e300 is blanked, not refused."""
    big = float(torch.finfo(torch.float32).max)
    data = Dataset(x=np.array([[big, -big]]))
    assert torch.isfinite(data.x).all()
    masked = Dataset(x=np.array([[1e300, 1.0]]), mask=np.array([[False, True]]))
    assert masked.x.tolist() == [[0.0, 1.0]]


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_from_file_refuses_values_that_overflow_float32(tmp_path: Path, suffix: str) -> None:
    """A file holding 1e300 is refused with its path, the first row and column, and the fix."""
    path = tmp_path / f"huge{suffix}"
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, -1e300]])
    if suffix == ".npy":
        np.save(path, x)
    else:
        path.write_text("1,2,3\n4,5,-1e300\n")
    message = _raises(path, "too large for float32")
    assert "(row 1, column 2)" in message and "Rescale" in message


def test_from_file_refuses_infinite_values_naming_the_path(tmp_path: Path) -> None:
    """inf in a file is bad data, not a missing value; the message says how to mark those."""
    path = tmp_path / "inf.csv"
    path.write_text("1,2\n3,inf\n")
    message = _raises(path, "(row 1, column 1)")
    assert "infinite" in message and "NaN" in message


# --------------------------------------------------------------------------------------------
# 2. CSV lines ending with the delimiter
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line",
    [("1,2,3,\n4,5,6,\n", 1), ("a,b,c,\n1,2,3,\n4,5,6,\n", 2), ("\n7,\n8,\n", 2)],
    ids=["plain", "header", "one-column"],
)
def test_csv_trailing_delimiter_is_refused(tmp_path: Path, text: str, line: int) -> None:
    """`1,2,3,` on every line would add a phantom all-missing column; it is refused."""
    path = tmp_path / "trailing.csv"
    path.write_text(text)
    message = _raises(path, "CSV of numbers")
    assert f"line {line} ends with a trailing delimiter" in message


def test_csv_trailing_delimiter_on_some_lines_is_named(tmp_path: Path) -> None:
    """When only some lines end with the delimiter, the ragged-row error says which."""
    path = tmp_path / "some.csv"
    path.write_text("1,2,3\n4,5,6,\n")
    message = _raises(path, "line 2 has 4 columns but line 1 has 3")
    assert "line 2 ends with a trailing delimiter" in message
    path.write_text("1,2,3,\n4,5,6\n")
    assert "line 1 ends with a trailing delimiter" in _raises(path, "CSV of numbers")


def test_csv_named_empty_column_and_missing_last_values_are_kept(tmp_path: Path) -> None:
    """A last column the header names, or one missing in some rows only, is real data."""
    path = tmp_path / "named.csv"
    path.write_text("a,b,c\n1,2,\n4,5,\n")
    data = from_file(path)
    assert data.x.shape == (2, 3) and not data.mask[:, 2].any()
    path.write_text("1,2,\n4,5,6\n")
    data = from_file(path)
    assert data.mask.tolist() == [[True, True, False], [True, True, True]]


# --------------------------------------------------------------------------------------------
# 3. Complex, object and text arrays
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array, dtype, advice",
    [
        (np.array([[1 + 2j, 3.0]]), "complex128", "x.real"),
        (np.array([[1.0, "a"]], dtype=object), "object", "pickled data are never loaded"),
        (np.array([["1.5", "2"]]), "<U3", "x.astype(float)"),
        (np.zeros((2, 2), dtype=[("a", "<f8")]), "[('a', '<f8')]", "structured"),
    ],
    ids=["complex", "object", "str", "structured"],
)
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_non_real_arrays_are_refused(
    tmp_path: Path, suffix: str, array: np.ndarray, dtype: str, advice: str
) -> None:
    """Such arrays are not cast silently (nor unpickled): the dtype, path and fix are named."""
    path = tmp_path / f"odd{suffix}"
    if suffix == ".npy":
        np.save(path, array)
        expected = ".npy array"
    else:
        np.savez(path, x=array)
        expected = ".npz with a float array"
    with warnings.catch_warnings():
        # numpy's ComplexWarning used to be the only sign of a silent cast
        warnings.simplefilter("error")
        message = _raises(path, expected)
    assert f"dtype {dtype}" in message and advice in message
    if suffix == ".npz":
        assert "array 'x'" in message


def test_unused_odd_npz_member_is_never_read(tmp_path: Path) -> None:
    """Only the chosen arrays are parsed, so an unrelated object array does no harm."""
    path = tmp_path / "mixed.npz"
    np.savez(path, x=np.ones((2, 2)), notes=np.array(["a", None], dtype=object))
    assert from_file(path).x.shape == (2, 2)


# --------------------------------------------------------------------------------------------
# 4. Corrupt, truncated and misplaced files
# --------------------------------------------------------------------------------------------


def test_random_bytes_npy_never_suggests_unpickling(tmp_path: Path) -> None:
    """numpy.load calls random bytes pickled data and suggests loading them unsafely; we don't."""
    path = tmp_path / "noise.npy"
    path.write_bytes(np.random.default_rng(0).bytes(200))
    with pytest.raises(ValueError) as info:
        from_file(path)
    message = str(info.value)
    assert str(path) in message and "is not a .npy array" in message
    assert "Pickled files are never loaded" in message
    _no_unsafe_advice(info.value)


def test_pickled_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    """A real pickled (object) .npy is refused from its header, with no unsafe advice."""
    path = tmp_path / "objects.npy"
    np.save(path, np.array([[{"a": 1}]], dtype=object))
    with pytest.raises(ValueError, match="pickled data are never loaded") as info:
        from_file(path)
    assert str(path) in str(info.value)
    _no_unsafe_advice(info.value)


def test_oversized_npy_header_hides_numpys_unsafe_advice(tmp_path: Path) -> None:
    """numpy refuses a huge header by advising to trust the file; that advice is dropped."""
    path = tmp_path / "header.npy"
    path.write_bytes(_npy_header("{" + " " * 20000 + "}", version=2))
    with pytest.raises(ValueError) as info:
        from_file(path)
    assert str(path) in str(info.value) and ".npy array" in str(info.value)
    _no_unsafe_advice(info.value)


def _valid_npy() -> bytes:
    stream = io.BytesIO()
    np.save(stream, np.arange(12.0).reshape(3, 4))
    return stream.getvalue()


def _valid_npz() -> bytes:
    stream = io.BytesIO()
    np.savez(stream, x=np.arange(12.0).reshape(3, 4))
    return stream.getvalue()


# case -> (file name, writer of its bytes, a phrase the message must hold)
_CORRUPT: dict[str, tuple[str, Callable[[], bytes], str]] = {
    # numpy's header parser raises tokenize.TokenError on an unclosed header
    "npy-header-token": (
        "a.npy",
        lambda: _npy_header("{'descr': '<f8', 'shape': (3,"),
        "header cannot be read",
    ),
    "npy-header-not-dict": ("a.npy", lambda: _npy_header("[1, 2]\n"), ".npy array"),
    "npy-bad-descr": (
        "a.npy",
        lambda: _npy_header("{'descr': 'nonsense', 'fortran_order': False, 'shape': (1,)}\n"),
        ".npy array",
    ),
    "npy-negative-shape": (
        "a.npy",
        lambda: _npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 2)}\n"),
        ".npy array",
    ),
    "npy-truncated": ("a.npy", lambda: _valid_npy()[:-9], "truncated"),
    "npy-version": ("a.npy", lambda: b"\x93NUMPY\x07\x00" + b"\0" * 20, "version"),
    "npy-magic-only": ("a.npy", lambda: b"\x93NUMPY", ".npy array"),
    "gz-not-gzip": ("a.csv.gz", lambda: b"\x1f\x8b" + b"not really gzip", "gzip"),
    "gz-truncated": ("a.csv.gz", lambda: gzip.compress(b"1,2\n3,4\n" * 50)[:-12], "gunzip"),
    "npz-not-zip": ("a.npz", lambda: b"this is no zip archive", "not a zip archive"),
    "npz-corrupt-zip": ("a.npz", lambda: b"PK\x03\x04" + b"\x00" * 40, "zip directory"),
    "npz-corrupt-member": (
        "a.npz",
        lambda: _valid_npz().replace(b"\x93NUMPY", b"\x93NUMPX"),
        "cannot be extracted",
    ),
    "npz-empty-zip": ("a.npz", lambda: b"PK\x05\x06" + b"\0" * 18, "holds no .npy arrays"),
    "idx-bad-magic": ("a-idx3-ubyte", lambda: b"\x01\x02\x08\x01\0\0\0\x01\x07", "magic"),
    "idx-wrong-length": (
        "a-idx3-ubyte",
        lambda: _idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8)) + b"extra",
        "= 18 bytes but the file holds 23",
    ),
    "idx-short-header": ("a.idx", lambda: b"\0\0\x08\x03\0\0", "header bytes"),
    "csv-not-utf8": ("a.csv", lambda: b"1,2\n\xff\xfe,3\n", "not UTF-8"),
    "csv-huge-field": ("a.csv", lambda: b"1," + b"2" * 200_000 + b"\n", "cannot be split"),
    "empty-npy": ("a.npy", lambda: b"", "is empty"),
}
_FORMAT_OF = {
    "npy": ".npy array",
    "npz": ".npz with a float array",
    "csv": "CSV of numbers",
    "idx": "MNIST IDX",
}


@pytest.mark.parametrize("case", list(_CORRUPT))
def test_corrupt_files_raise_value_error_with_path_and_format(tmp_path: Path, case: str) -> None:
    """Whatever the library raises (TokenError, BadGzipFile, EOFError, BadZipFile, ...), the
    user gets a ValueError naming the path, what is wrong and the format expected."""
    name, write, detail = _CORRUPT[case]
    path = tmp_path / name
    path.write_bytes(write())
    fmt = "idx" if "idx" in name else name.split(".")[1]
    message = _raises(path, _FORMAT_OF[fmt])
    assert detail in message, message


def test_directory_is_a_value_error_naming_path_and_format(tmp_path: Path) -> None:
    """A directory given as the data file is a ValueError, not an IsADirectoryError."""
    path = tmp_path / "images.npz"
    path.mkdir()
    message = _raises(path, ".npz with a float array")
    assert "is a directory" in message


def test_missing_file_names_path_and_format(tmp_path: Path) -> None:
    """A missing path stays a FileNotFoundError, now with the format it should have."""
    _raises(tmp_path / "train-images-idx3-ubyte", "MNIST IDX", err=FileNotFoundError)


def test_labels_file_errors_name_the_labels_path(tmp_path: Path) -> None:
    """A broken labels file is reported under its own path."""
    data_path, label_path = tmp_path / "x.npy", tmp_path / "labels.npy"
    np.save(data_path, np.ones((3, 2)))
    label_path.write_bytes(b"garbage bytes")
    with pytest.raises(ValueError, match=re.escape(str(label_path))):
        from_file(data_path, labels=label_path)


def test_every_prefix_of_valid_files_is_read_or_refused_with_a_value_error(
    tmp_path: Path,
) -> None:
    """Truncating a valid .npy, .npz, gzipped CSV or IDX at any byte gives a file that is read
    or refused with a ValueError naming the path, never another exception."""
    files = {
        "v.npy": _valid_npy(),
        "v.npz": _valid_npz(),
        "v.csv.gz": gzip.compress(b"a,b\n1,2\n3,nan\n"),
        "v-idx3-ubyte": _idx_bytes(np.arange(12, dtype=np.uint8).reshape(2, 3, 2)),
    }
    for name, full in files.items():
        path = tmp_path / name
        for end in range(len(full)):
            path.write_bytes(full[:end])
            try:
                from_file(path)
            except ValueError as err:
                assert str(path) in str(err), (name, end, str(err))
                _no_unsafe_advice(err)


def test_flipped_bytes_in_headers_give_only_value_errors(tmp_path: Path) -> None:
    """Every single-byte corruption of the first 128 bytes is read or refused clearly."""
    rng = np.random.default_rng(1)
    for name, full in {"f.npy": _valid_npy(), "f.npz": _valid_npz()}.items():
        path = tmp_path / name
        for position in range(min(128, len(full))):
            corrupt = bytearray(full)
            corrupt[position] = int(rng.integers(256))
            path.write_bytes(bytes(corrupt))
            try:
                from_file(path)
            except ValueError as err:
                assert str(path) in str(err), (name, position, str(err))
                _no_unsafe_advice(err)


def test_random_bytes_give_only_value_errors(tmp_path: Path) -> None:
    """Property: any bytes under any supported name are read or refused with a ValueError that
    names the path (needs hypothesis; skipped without it)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    names = ["h.npy", "h.npz", "h.csv", "h.idx", "h.csv.gz", "h.npy.gz"]
    prefixes = [b"", b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"\x1f\x8b\x08\x00", b"\0\0\x08\x02"]

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(
        name=st.sampled_from(names), prefix=st.sampled_from(prefixes), body=st.binary()
    )
    def check(name: str, prefix: bytes, body: bytes) -> None:
        path = tmp_path / name
        path.write_bytes(prefix + body)
        try:
            from_file(path)
        except ValueError as err:
            assert str(path) in str(err)
            _no_unsafe_advice(err)

    check()


def test_no_module_turns_unpickling_on() -> None:
    """No source file of the package loads pickles through numpy."""
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "allow_pickle=True" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


# --------------------------------------------------------------------------------------------
# 5. check_data: float dtypes the engines cannot compute in
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_check_data_refuses_half_precision(dtype: torch.dtype) -> None:
    """float16 and bfloat16 are refused naming the dtype and the fix, x.float()."""
    with pytest.raises(TypeError, match=re.escape(str(dtype)) + r".*x\.float\(\)"):
        check_data(torch.zeros(3, 2, dtype=dtype))


def test_check_data_refuses_half_precision_numpy() -> None:
    """A float16 numpy array is refused the same way."""
    with pytest.raises(TypeError, match=r"torch\.float16.*x\.float\(\)"):
        check_data(np.zeros((3, 2), dtype=np.float16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_check_data_keeps_single_and_double(dtype: torch.dtype) -> None:
    """float32 and float64 pass unchanged, dtype included."""
    x, mask = check_data(torch.ones(2, 2, dtype=dtype))
    assert x.dtype == dtype and mask is None


def test_dataset_widens_half_precision_to_float32() -> None:
    """A Dataset stores float32 anyway, so half-precision input is widened exactly."""
    data = Dataset(x=torch.tensor([[0.5, float("nan")]], dtype=torch.float16))
    assert data.x.dtype == torch.float32
    assert data.x.tolist() == [[0.5, 0.0]] and data.mask.tolist() == [[True, False]]
