"""Minibatches through Pyro's own subsampling: the data plate's ``subsample`` indices.

A ``pyro.plate(name, N, subsample_size=B)`` draws its indices at a ``"sample"`` site named after
the plate whose distribution is ``pyro.poutine.subsample_messenger._Subsample``.
:class:`DataIndices` sets that site's value, so that a story handed the full data sees the rows
the engine chose: ``x[ind]`` in the story picks them, a ``pyro.param(..., event_dim=...)`` inside
the plate (and an autoguide's per-datum parameters) is sliced to them by the plate itself, and
the plate scales every site inside it by N / B.
"""

from __future__ import annotations

from typing import Any

import pyro
import torch
from pyro.infer.autoguide import AutoGuide
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.subsample_messenger import _Subsample

__all__ = ["DataIndices", "declared_subsample", "install_autoguide_plates"]


class DataIndices(Messenger):
    """Sets the indices of the plate named ``plate`` (of size ``num_data``) to ``indices``.

    Parameters
    ----------
    plate : str
        The data plate's name.
    indices : torch.Tensor of shape (B,), int64
        The rows of the minibatch, in the order the story will see them.
    num_data : int
        N, the size the plate must declare.
    """

    def __init__(self, plate: str, indices: torch.Tensor, num_data: int):
        super().__init__()
        self.plate = plate
        self.indices = indices
        self.num_data = num_data
        #: How many times the indices were set: 0 when the story has no such plate.
        self.used = 0

    def _process_message(self, msg: Any) -> None:
        if (
            msg["type"] == "sample"
            and msg["name"] == self.plate
            and isinstance(msg["fn"], _Subsample)
            and msg["value"] is None
        ):
            if int(msg["fn"].size) != self.num_data:
                raise ValueError(
                    f"plate '{self.plate}' has size {msg['fn'].size} but x has {self.num_data} "
                    f"rows; size the data plate with len(x): pyro.plate('{self.plate}', len(x))."
                )
            msg["value"] = self.indices
            self.used += 1


def _active(plate: str) -> DataIndices | None:
    for messenger in reversed(_PYRO_STACK):
        if isinstance(messenger, DataIndices) and messenger.plate == plate:
            return messenger
    return None


class _IndexedPlates:
    """An autoguide's ``create_plates``: under :class:`DataIndices`, the data plate at the size of
    the indices it sets (an autoguide otherwise fixes the subsample size of its first trace and
    refuses any other); elsewhere nothing, so that the autoguide builds its plates as usual."""

    def __init__(self, guide: AutoGuide, plate: str):
        # a plain attribute, not a submodule: the autoguide owns this object
        self.__dict__["_guide"] = guide
        self.plate = plate

    def __call__(self, *args: Any, **kwargs: Any) -> list:
        active = _active(self.plate)
        frame = getattr(self.__dict__["_guide"], "_prototype_frames", {}).get(self.plate)
        if active is None or frame is None:
            return []
        return [
            pyro.plate(
                self.plate, active.num_data, dim=frame.dim, subsample_size=len(active.indices)
            )
        ]


def install_autoguide_plates(module: torch.nn.Module, plate: str) -> None:
    """Let every Pyro autoguide inside ``module`` follow :class:`DataIndices` on ``plate``.

    Uses the autoguide's own hook for subsampling, ``create_plates``; one the user set is left
    alone, as are the parts of an ``AutoGuideList`` (their list creates the plates).
    """
    for sub in module.modules():
        if isinstance(sub, AutoGuide) and sub.master is None and sub.create_plates is None:
            sub.create_plates = _IndexedPlates(sub, plate)


def declared_subsample(trace: Any, plate: str, num_data: int) -> int | None:
    """The ``subsample_size`` a story's data plate declares in ``trace`` (its frames have size B
    and full size N), or None when the plate takes all ``num_data`` rows."""
    for site in trace.nodes.values():
        for frame in site.get("cond_indep_stack", ()):
            if frame.name == plate and frame.full_size == num_data and frame.size != num_data:
                return int(frame.size)
    return None
