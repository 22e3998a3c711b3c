"""Tests for ppl_lvm.datasets: the real loaders, the simulations, file reading and Dataset."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ppl_lvm import datasets as ds
from ppl_lvm.datasets import Dataset, from_file, load

# --------------------------------------------------------------------------------------------
# Real data, each loaded once per module
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load("digits")


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load("mnist5k")


@pytest.fixture(scope="module")
def faces() -> Dataset:
    return load("faces")


@pytest.fixture(scope="module")
def dna_snp() -> Dataset:
    return load("dna")


@pytest.fixture(scope="module")
def dna_acgt() -> Dataset:
    return load("dna", encoding="acgt")


@pytest.fixture(scope="module")
def toy2d() -> Dataset:
    return load("toy2d", n=2000, seed=0)


def _check_basic(data: Dataset, n: int, d: int, image_shape: tuple[int, int] | None) -> None:
    assert data.x.shape == (n, d)
    assert data.x.dtype == torch.float32
    assert data.mask is None
    assert data.image_shape == image_shape
    assert len(data) == n and data.dim == d


def test_digits(digits: Dataset) -> None:
    """digits is 1,797 × 64 in [0, 1] with 10 labelled classes and 8×8 images."""
    _check_basic(digits, 1797, 64, (8, 8))
    assert digits.x.min() == 0.0 and digits.x.max() == 1.0
    assert digits.labels is not None and digits.labels.dtype == torch.int64
    assert digits.num_classes == 10
    assert sorted(digits.labels.unique().tolist()) == list(range(10))


def test_mnist5k(mnist5k: Dataset) -> None:
    """mnist5k is 5,000 × 784 in [0, 1] with 10 classes and 28×28 images."""
    _check_basic(mnist5k, 5000, 784, (28, 28))
    assert mnist5k.x.min() == 0.0 and mnist5k.x.max() == 1.0
    assert mnist5k.num_classes == 10
    # Every digit is well represented (about 500 each).
    assert mnist5k.labels is not None
    assert torch.bincount(mnist5k.labels).min() > 400


def test_mnist5k_binarize(mnist5k: Dataset) -> None:
    """binarize=True gives only 0/1 pixels, equal to thresholding the scaled data at 0.5."""
    binary = load("mnist5k", binarize=True)
    assert set(binary.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(binary.x, (mnist5k.x > 0.5).float())
    assert torch.equal(binary.labels, mnist5k.labels)


def test_faces(faces: Dataset) -> None:
    """faces is 200 × 625 in [0, 1]: the first 100 rows are faces (1), the last 100 not (0)."""
    _check_basic(faces, 200, 625, (25, 25))
    assert faces.x.min() >= 0.0 and faces.x.max() <= 1.0
    assert faces.labels is not None
    assert torch.equal(faces.labels[:100], torch.ones(100, dtype=torch.int64))
    assert torch.equal(faces.labels[100:], torch.zeros(100, dtype=torch.int64))


def test_dna_shapes_and_values(dna_snp: Dataset, dna_acgt: Dataset) -> None:
    """Both dna encodings cover the same samples and sites with values in their alphabets."""
    n = 3 * 50
    assert dna_snp.x.shape[0] == n and dna_snp.x.dtype == torch.float32
    assert dna_acgt.x.shape == dna_snp.x.shape
    assert 100 <= dna_snp.dim <= 2000
    assert set(dna_snp.x.unique().tolist()) == {0.0, 1.0}
    assert set(dna_acgt.x.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert dna_acgt.info["num_categories"] == 4 and dna_acgt.info["alphabet"] == "ACGT"
    assert dna_snp.info["encoding"] == "snp" and dna_acgt.info["encoding"] == "acgt"
    # Every kept site varies in both encodings.
    for x in (dna_snp.x, dna_acgt.x):
        assert bool((x != x[:1]).any(0).all())
    # Samples carrying the same nucleotide carry the same snp value, at every site.
    for j in range(dna_snp.dim):
        for code in dna_acgt.x[:, j].unique():
            assert dna_snp.x[dna_acgt.x[:, j] == code, j].unique().numel() == 1
    assert torch.equal(dna_snp.labels, dna_acgt.labels)
    assert torch.equal(torch.bincount(dna_snp.labels), torch.full((3,), 50))
    assert dna_snp.info["positions"] == dna_acgt.info["positions"]
    for key in (
        "n_populations",
        "samples_per_population",
        "population_size",
        "migration_rate",
        "sequence_length",
        "recombination_rate",
        "mutation_rate",
        "seed",
    ):
        assert key in dna_snp.info


def test_dna_reproducible(dna_snp: Dataset) -> None:
    """The same seed gives identical dna data; another seed gives different data."""
    again = load("dna", seed=dna_snp.info["seed"])
    assert torch.equal(again.x, dna_snp.x) and torch.equal(again.labels, dna_snp.labels)
    other = load("dna", seed=dna_snp.info["seed"] + 1)
    assert other.x.shape != dna_snp.x.shape or not torch.equal(other.x, dna_snp.x)


def test_dna_options() -> None:
    """Population count and sample size options shape the labels; bad options are rejected."""
    small = load("dna", n_populations=2, samples_per_population=10, seed=7)
    assert torch.equal(torch.bincount(small.labels), torch.tensor([10, 10]))
    with pytest.raises(ValueError, match="'snp' or 'acgt'"):
        load("dna", encoding="rna")
    with pytest.raises(ValueError, match="1 <= seed"):
        load("dna", seed=0)


def test_dna_populations_separable(dna_snp: Dataset) -> None:
    """Mean Hamming distance within a population is well below that between populations."""
    x, pop = dna_snp.x, dna_snp.labels
    dist = (x[:, None, :] != x[None, :, :]).float().mean(-1)
    same = pop[:, None] == pop[None, :]
    off_diagonal = ~torch.eye(len(pop), dtype=torch.bool)
    within = dist[same & off_diagonal].mean()
    between = dist[~same].mean()
    assert within < 0.5 * between


def test_toy2d_shape_and_reproducible(toy2d: Dataset) -> None:
    """toy2d is [n, 2] float32 with the latents in info, and the seed fixes the draws."""
    _check_basic(toy2d, 2000, 2, None)
    assert toy2d.info["z"].shape == (2000, 2)
    assert toy2d.info["params"] == ds.TOY2D
    again = load("toy2d", n=2000, seed=0)
    assert torch.equal(again.x, toy2d.x)
    assert not torch.equal(load("toy2d", n=2000, seed=1).x, toy2d.x)
    x, z = ds.sample_toy2d(2000, 0)
    assert torch.equal(x, toy2d.x) and torch.equal(z, toy2d.info["z"])


def test_toy2d_matches_generative_process(toy2d: Dataset) -> None:
    """The mean of x agrees with a Monte-Carlo mean of sigmoid(Az + c) within 4 standard errors.

    The standard error combines the sampling error of the 2,000 data points (using the
    empirical variance of x) and of the 200,000 Monte-Carlo draws; 4 SE per coordinate makes a
    false alarm about 1 in 8,000.
    """
    x = toy2d.x.double()
    generator = torch.Generator().manual_seed(12345)
    z = torch.randn(200_000, 2, generator=generator, dtype=torch.float64)
    a, _, c, _ = ds.TOY2D.as_tensors(dtype=torch.float64)
    mc = torch.sigmoid(z @ a.T + c)
    se = (x.var(0) / len(x) + mc.var(0) / len(mc)).sqrt()
    assert torch.all((x.mean(0) - mc.mean(0)).abs() < 4 * se)
    # Given the true latents, the standardised residuals are standard normal: their mean is
    # within 4 SE (1 / sqrt(n)) of 0 and their standard deviation within 10% of 1.
    mean, var = ds.toy2d_mean_and_variance(toy2d.info["z"].double())
    residual = (x - mean) / var.sqrt()
    assert torch.all(residual.mean(0).abs() < 4 / math.sqrt(len(x)))
    assert torch.all((residual.std(0) - 1).abs() < 0.1)


def test_toy2d_mean_and_variance_formula() -> None:
    """toy2d_mean_and_variance is sigmoid(Az+c) and noise_scale² · exp(sigmoid(Bz+d))."""
    params = ds.Toy2DParams(
        A=((1.0, 0.0), (0.0, 1.0)), B=((0.0, 0.0), (0.0, 0.0)), c=(0.0, 0.0), d=(0.0, 0.0)
    )
    mean, var = ds.toy2d_mean_and_variance(torch.zeros(3, 4, 2), params)
    assert mean.shape == var.shape == (3, 4, 2)
    assert torch.allclose(mean, torch.full((3, 4, 2), 0.5))
    assert torch.allclose(var, torch.full((3, 4, 2), params.noise_scale**2 * math.exp(0.5)))


def test_unknown_name_lists_known() -> None:
    """An unknown name raises ValueError listing every known name and pointing to from_file."""
    with pytest.raises(ValueError, match="unknown data set 'digitz'") as err:
        load("digitz")
    for name in ds.KNOWN:
        assert name in str(err.value)
    assert "from_file" in str(err.value)


def test_unknown_option_names_loader() -> None:
    """An option a loader does not take raises TypeError naming the loader and its options."""
    with pytest.raises(TypeError, match="load_toy2d takes: n, seed, params"):
        load("toy2d", size=10)


def test_require_names_extra() -> None:
    """A missing optional package raises ImportError naming the data extra."""
    with pytest.raises(ImportError, match=r"pip install 'ppl-lvm\[data\]'"):
        ds._require("ppl_lvm_no_such_module", "a test")


# --------------------------------------------------------------------------------------------
# from_file
# --------------------------------------------------------------------------------------------

_IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C}
_IDX_CODES |= {np.float32: 0x0D, np.float64: 0x0E}


def _idx_bytes(array: np.ndarray) -> bytes:
    code = _IDX_CODES[array.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def idx_pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)
    image_path = tmp_path / "train-images-idx3-ubyte"
    label_path = tmp_path / "train-labels-idx1-ubyte"
    image_path.write_bytes(_idx_bytes(images))
    label_path.write_bytes(_idx_bytes(labels))
    return image_path, label_path, images, labels


def test_npy_2d_round_trip(tmp_path: Path) -> None:
    """A 2-D .npy comes back as float32 [N, D], named after the file, with its source."""
    array = np.arange(12, dtype=np.float64).reshape(4, 3)
    path = tmp_path / "table.npy"
    np.save(path, array)
    data = from_file(path, labels=np.array([0, 1, 0, 1]))
    assert torch.equal(data.x, torch.tensor(array, dtype=torch.float32))
    assert data.name == "table" and data.info["source"] == str(path)
    assert data.image_shape is None and data.mask is None
    assert data.labels.tolist() == [0, 1, 0, 1]


def test_npy_3d_round_trip(tmp_path: Path) -> None:
    """A 3-D .npy [N, H, W] is flattened to [N, H*W] with image_shape (H, W)."""
    array = np.random.default_rng(1).random((5, 2, 3)).astype(np.float32)
    path = tmp_path / "imgs.npy"
    np.save(path, array)
    data = from_file(path)
    assert data.image_shape == (2, 3)
    assert torch.equal(data.x, torch.from_numpy(array.reshape(5, 6)))


def test_npz_with_labels(tmp_path: Path) -> None:
    """An .npz with x and labels yields both; key= picks another array."""
    path = tmp_path / "arch.npz"
    x = np.ones((3, 2))
    np.savez(path, x=x, labels=np.array([2, 0, 1]), other=np.zeros((3, 4)))
    data = from_file(path)
    assert data.x.shape == (3, 2) and data.labels.tolist() == [2, 0, 1]
    assert from_file(path, key="other").x.shape == (3, 4)
    path_y = tmp_path / "single.npz"
    np.savez(path_y, data=x, y=np.array([1, 1, 0]))
    assert from_file(path_y).labels.tolist() == [1, 1, 0]


def test_npz_ambiguous_keys(tmp_path: Path) -> None:
    """An .npz with several candidate arrays and no key raises ValueError listing the keys."""
    path = tmp_path / "two.npz"
    np.savez(path, a=np.ones((2, 2)), b=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\['a', 'b'\].*key="):
        from_file(path)
    with pytest.raises(ValueError, match="no array 'c'"):
        from_file(path, key="c")


def test_csv_without_header(tmp_path: Path) -> None:
    """A headerless numeric CSV is read row by row."""
    path = tmp_path / "plain.csv"
    path.write_text("1,2,3\n4.5,-6,7e-1\n")
    data = from_file(path)
    expected = torch.tensor([[1, 2, 3], [4.5, -6, 0.7]], dtype=torch.float32)
    assert torch.equal(data.x, expected) and data.mask is None and data.name == "plain"


def test_csv_with_header_and_missing(tmp_path: Path) -> None:
    """A header row is skipped; empty and nan cells set the mask and are zeroed in x."""
    path = tmp_path / "holes.csv"
    path.write_text("a,b,c\n1,,3\nnan,5,NaN\n\n7,8,9\n")
    data = from_file(path)
    assert data.x.shape == (3, 3)
    expected_mask = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(data.mask, expected_mask)
    assert not torch.isnan(data.x).any()
    assert torch.equal(data.x, torch.tensor([[1.0, 0, 3], [0, 5, 0], [7, 8, 9]]))
    assert data.observed_fraction == pytest.approx(6 / 9)


def test_csv_ragged(tmp_path: Path) -> None:
    """A CSV row with the wrong column count names the line and both counts."""
    path = tmp_path / "ragged.csv"
    path.write_text("x,y\n1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="line 3 has 3 columns but line 1 has 2"):
        from_file(path)


def test_csv_non_numeric(tmp_path: Path) -> None:
    """A non-numeric CSV cell outside the header names its line, column and text."""
    path = tmp_path / "text.csv"
    path.write_text("1,2\n3,oops\n")
    with pytest.raises(ValueError, match="line 2, column 2 holds 'oops'"):
        from_file(path)


@pytest.mark.parametrize("content", ["", "a,b\n", "\n\n"])
def test_csv_empty(tmp_path: Path, content: str) -> None:
    """A CSV with no data rows (0 bytes, header only, or blank) is reported as empty."""
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match="is empty"):
        from_file(path)


def test_npy_empty(tmp_path: Path) -> None:
    """A .npy with zero rows is reported as empty."""
    path = tmp_path / "none.npy"
    np.save(path, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="is empty"):
        from_file(path)


def test_idx_round_trip(idx_pair: tuple[Path, Path, np.ndarray, np.ndarray]) -> None:
    """IDX3 uint8 images come back scaled to [0, 1] with image_shape; IDX1 labels attach."""
    image_path, label_path, images, labels = idx_pair
    data = from_file(image_path, labels=label_path)
    assert data.x.shape == (6, 12) and data.image_shape == (4, 3)
    assert torch.allclose(data.x, torch.tensor(images.reshape(6, 12) / 255.0, dtype=torch.float32))
    assert data.labels.tolist() == labels.tolist()
    assert data.name == "train-images-idx3-ubyte"


def test_idx_gzip_round_trip(
    tmp_path: Path, idx_pair: tuple[Path, Path, np.ndarray, np.ndarray]
) -> None:
    """Gzipped IDX files give the same data as the uncompressed ones."""
    image_path, label_path, _, _ = idx_pair
    gz_images = tmp_path / "t10k-images-idx3-ubyte.gz"
    gz_labels = tmp_path / "t10k-labels.idx1-ubyte.gz"
    gz_images.write_bytes(gzip.compress(image_path.read_bytes()))
    gz_labels.write_bytes(gzip.compress(label_path.read_bytes()))
    plain = from_file(image_path, labels=label_path)
    packed = from_file(gz_images, labels=gz_labels)
    assert torch.equal(plain.x, packed.x) and torch.equal(plain.labels, packed.labels)
    assert packed.name == "t10k-images-idx3-ubyte"


def test_idx_other_dtypes_and_magic_detection(tmp_path: Path) -> None:
    """A 2-D float64 IDX with no known extension is found by its magic and keeps its values."""
    array = np.array([[1.5, -2.0], [3.25, 4.0], [0.0, 1e3]])
    path = tmp_path / "matrix.bin"
    path.write_bytes(_idx_bytes(array))
    data = from_file(path)
    assert torch.equal(data.x, torch.tensor(array, dtype=torch.float32))
    ints = tmp_path / "ints.idx"
    ints.write_bytes(_idx_bytes(np.array([[-3, 300]], dtype=np.int16)))
    assert from_file(ints).x.tolist() == [[-3.0, 300.0]]


def test_idx_labels_file_as_data(idx_pair: tuple[Path, Path, np.ndarray, np.ndarray]) -> None:
    """A 1-D IDX passed as data is rejected with a hint to pass it as labels=."""
    _, label_path, _, _ = idx_pair
    with pytest.raises(ValueError, match="labels file; pass it as labels="):
        from_file(label_path)


def test_idx_truncated(tmp_path: Path) -> None:
    """An IDX payload shorter than its header promises names both byte counts."""
    path = tmp_path / "cut-idx3-ubyte"
    path.write_bytes(_idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))[:-5])
    with pytest.raises(ValueError, match=r"IDX header says .* = 18 bytes but the file holds 13"):
        from_file(path)


def test_idx_bad_magic(tmp_path: Path) -> None:
    """An IDX-named file without the IDX magic number is rejected."""
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x07")
    with pytest.raises(ValueError, match="bad IDX magic number"):
        from_file(path)


def test_idx_zero_bytes(tmp_path: Path) -> None:
    """A 0-byte IDX file is reported as empty."""
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        from_file(path)


def test_label_length_mismatch(idx_pair: tuple[Path, Path, np.ndarray, np.ndarray]) -> None:
    """Labels of the wrong length are rejected with both counts."""
    image_path, _, _, _ = idx_pair
    with pytest.raises(ValueError, match="has 2 labels but the data have 6 rows"):
        from_file(image_path, labels=np.array([0, 1]))


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    """A missing path raises FileNotFoundError; an unknown format lists the supported ones."""
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        from_file(tmp_path / "nope.csv")
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match=r"supported formats are \.npy, \.npz, \.csv"):
        from_file(path)


# --------------------------------------------------------------------------------------------
# Dataset methods and validation
# --------------------------------------------------------------------------------------------


def _tagged(n: int = 20, d: int = 4) -> Dataset:
    """Rows whose first entry is their original index, so they can be traced after shuffling."""
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, d)
    mask = torch.rand(n, d, generator=torch.Generator().manual_seed(3)) > 0.2
    mask[:, 0] = True
    return Dataset(
        x=x,
        mask=mask,
        labels=torch.arange(n) % 3,
        image_shape=(2, d // 2),
        name="tagged",
        info={"k": 1},
    )


def test_split_sizes_disjoint_deterministic() -> None:
    """split gives disjoint covering parts of the requested sizes, fixed by the seed."""
    data = _tagged()
    train, test = data.split(5, seed=4)
    assert (len(train), len(test)) == (15, 5)
    train_ids, test_ids = train.x[:, 0].long(), test.x[:, 0].long()
    assert set(train_ids.tolist()).isdisjoint(test_ids.tolist())
    assert sorted(train_ids.tolist() + test_ids.tolist()) == list(range(20))
    assert train.name == "tagged[train]" and test.name == "tagged[test]"
    # Masks and labels travel with their rows; the rest is kept.
    assert torch.equal(test.mask, data.mask[test_ids])
    assert torch.equal(test.labels, data.labels[test_ids])
    assert test.image_shape == (2, 2) and test.info["k"] == 1
    again_train, again_test = data.split(5, seed=4)
    assert torch.equal(again_test.x, test.x) and torch.equal(again_train.x, train.x)
    _, other_test = data.split(5, seed=5)
    assert not torch.equal(other_test.x, test.x)
    _, quarter = data.split(0.25)
    assert len(quarter) == 5


@pytest.mark.parametrize("size", [0, 20, 0.0, 1.0, 0.99])
def test_split_empty_side(size: float) -> None:
    """A test size that leaves either part empty is rejected."""
    with pytest.raises(ValueError, match="test_size"):
        _tagged().split(size)


def test_split_keeps_toy2d_latents_aligned(toy2d: Dataset) -> None:
    """Per-row info (the toy2d latents) is split along with the rows."""
    train, test = toy2d.split(0.1, seed=2)
    for part in (train, test):
        assert part.info["z"].shape == (len(part), 2)
        mean, _ = ds.toy2d_mean_and_variance(part.info["z"])
        # Noise is at most 0.05 * e**0.5 < 0.09 per coordinate, so 0.5 is > 5 SDs.
        assert ((part.x - mean).abs() < 0.5).all()


def test_with_missing_top_half(digits: Dataset) -> None:
    """top_half hides exactly the top floor(H/2) rows of each 8×8 image."""
    hidden = digits.with_missing("top_half")
    mask = hidden.mask.reshape(-1, 8, 8)
    assert not mask[:, :4, :].any() and mask[:, 4:, :].all()
    assert (hidden.x.reshape(-1, 8, 8)[:, :4, :] == 0).all()
    assert torch.equal(hidden.x.reshape(-1, 8, 8)[:, 4:], digits.x.reshape(-1, 8, 8)[:, 4:])
    odd = Dataset(x=torch.ones(2, 15), image_shape=(5, 3)).with_missing("top_half")
    assert odd.mask.reshape(2, 5, 3)[:, :, 0].tolist() == [[False, False, True, True, True]] * 2


def test_with_missing_random_fraction() -> None:
    """random hides a fraction of entries within 4 binomial standard errors of frac."""
    n, d, frac = 200, 50, 0.3
    data = Dataset(x=torch.ones(n, d)).with_missing("random", frac=frac, seed=1)
    se = math.sqrt(frac * (1 - frac) / (n * d))  # about 0.0046
    assert abs((1 - data.observed_fraction) - frac) < 4 * se
    same = Dataset(x=torch.ones(n, d)).with_missing("random", frac=frac, seed=1)
    assert torch.equal(same.mask, data.mask)


def test_with_missing_ands_existing_mask() -> None:
    """The new missingness pattern is ANDed with the mask already present."""
    data = _tagged()
    hidden = data.with_missing("random", frac=0.5, seed=0)
    assert not (hidden.mask & ~data.mask).any()
    assert hidden.observed_fraction < data.observed_fraction
    both = data.with_missing("top_half")
    assert torch.equal(both.mask, data.mask & torch.tensor([False, False, True, True]))


def test_with_missing_errors() -> None:
    """top_half without image_shape and unknown patterns raise helpful ValueErrors."""
    flat = Dataset(x=torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"needs image_shape.*'random'"):
        flat.with_missing("top_half")
    with pytest.raises(ValueError, match="known patterns: 'top_half', 'random'"):
        flat.with_missing("left_half")


def test_binarize() -> None:
    """binarize thresholds x strictly above the threshold to 1.0 and keeps masked entries 0."""
    data = Dataset(x=torch.tensor([[0.2, 0.5, 0.9], [float("nan"), 0.7, 0.1]]))
    binary = data.binarize(0.5)
    assert binary.x.tolist() == [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert torch.equal(binary.mask, data.mask)
    assert binary.binarize(-1.0).x[1, 0] == 0.0


def test_construction_converts_and_derives_mask() -> None:
    """numpy float64 becomes float32; NaN marks missing entries, which are zeroed."""
    x = np.array([[1.0, np.nan], [3.0, 4.0]])
    data = Dataset(x=x, labels=np.array([0, 1], dtype=np.int32))
    assert data.x.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert data.mask.tolist() == [[True, False], [True, True]]
    assert data.x.tolist() == [[1.0, 0.0], [3.0, 4.0]]
    assert np.isnan(x[0, 1])  # the caller's array is left alone
    assert len(data) == 2 and data.dim == 2 and data.info == {}


def test_validation_errors() -> None:
    """Bad shapes, dtypes and NaN in observed entries raise errors that say what to fix."""
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 3\) but x has shape \(3, 4\)"):
        Dataset(x=x, mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        Dataset(x=x, mask=torch.ones(3, 4))
    nan_x = x.clone()
    nan_x[1, 2] = nan_x[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"2 observed entries .* first at \(row 1, column 2\)"):
        Dataset(x=nan_x, mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"must have shape \(N, D\)"):
        Dataset(x=torch.zeros(3, 2, 2))
    with pytest.raises(TypeError, match="floating point"):
        Dataset(x=torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[3\]"):
        Dataset(x=x, labels=torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="holds 6 pixels but each row of x has D = 4"):
        Dataset(x=x, image_shape=(2, 3))


def test_repr_summarises() -> None:
    """repr shows name, N, D, image shape, classes and observed fraction, not tensors."""
    text = repr(_tagged())
    for part in ("'tagged'", "N=20", "D=4", "image_shape=(2, 2)", "classes=3", "observed="):
        assert part in text
    assert "tensor" not in text and str(_tagged()) == text
