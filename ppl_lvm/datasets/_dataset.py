"""The :class:`Dataset` container: a data matrix with its mask, labels and image shape.

It checks its data on construction, and derives new data sets by selecting rows
(:meth:`Dataset.subset`), splitting them (:meth:`Dataset.split`), hiding entries in a
missingness pattern (:meth:`Dataset.with_missing`) and thresholding (:meth:`Dataset.binarize`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.checks import check_data

__all__ = ["Dataset", "check_fits_float32"]

_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def check_fits_float32(x: np.ndarray | torch.Tensor, what: str) -> None:
    """Refuse finite values that float32 cannot hold, before a cast would turn them into inf.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor of shape (N, D)
        Data about to be stored as float32.  NaN and inf are left to the other checks.
    what : str
        How to name ``x`` at the start of the message (``"x"``, or a file's quoted path).

    Raises
    ------
    ValueError
        If some finite ``|x|`` exceeds ``torch.finfo(torch.float32).max`` (about 3.4e38),
        naming how many, and the first one's value, row and column.
    """
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f" or np.finfo(x.dtype).max <= _FLOAT32_MAX:
            return  # integers and narrow floats always fit
        too_big = np.isfinite(x) & (np.abs(x) > _FLOAT32_MAX)
        if not too_big.any():
            return
        first = np.argwhere(too_big)[0]
    else:
        if not x.is_floating_point() or torch.finfo(x.dtype).max <= _FLOAT32_MAX:
            return
        too_big = torch.isfinite(x) & (x.abs() > _FLOAT32_MAX)
        if not too_big.any():
            return
        first = torch.nonzero(too_big)[0]
    row, col = (int(i) for i in first)
    count = int(too_big.sum())
    raise ValueError(
        f"{what} holds {count} finite value{'s' * (count != 1)} too large for float32 (|x| > "
        f"{_FLOAT32_MAX:.4g}), the first {float(x[row, col]):.4g} at (row {row}, column "
        f"{col}); stored as float32 such values become inf. Rescale the data (e.g. divide by "
        "a constant, or take logs) so that every value fits"
    )


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A data matrix with optional observation mask, labels and image shape.

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray
        Data, shape ``[N, D]``, floating point; stored as float32, so every finite value must
        fit in float32 (``|x| <= 3.4e38``).  NaN entries mark missing values when ``mask`` is
        None.  After construction, entries where the mask is False are
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
        If shapes disagree, an observed entry of ``x`` is NaN or infinite, or a finite one is
        too large for float32.
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
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype.itemsize < 4:
            # Half precision widens to float32 exactly; check_data refuses it because engines
            # cannot compute in it, but a data set is stored as float32 anyway.
            x = x.to(torch.float32)
        if isinstance(x, torch.Tensor) and x.dim() != 2:
            # a Dataset is a matrix, one row per datum (images keep their shape in image_shape)
            raise ValueError(
                f"x must have shape (N, D) with one row per datum, got shape {tuple(x.shape)}; "
                "flatten images with x.reshape(len(x), -1) and pass image_shape."
            )
        x, mask = check_data(x, mask, fill="zero")  # the documented contract: zeros
        check_fits_float32(x, "x")
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
