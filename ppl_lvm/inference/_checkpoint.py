"""Checkpoints of the training loop: tensors and plain values, with metadata saying what they
belong to.

A checkpoint is written with ``torch.save`` and read with ``torch.load(weights_only=True)``, so a
file that holds anything but tensors, numbers, strings, lists and dicts (a crafted pickle, a
``torch.save`` of an object) is refused before any of it runs. Its ``meta`` records the model's
class and parameter shapes, a fingerprint of the data, the objective, batch size, optimiser and
seed; resuming with anything else is an error that names the field.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from ..core.data import entries, num_data

__all__ = ["FORMAT", "check_writable", "data_fingerprint", "describe", "load", "save"]

#: The ``meta["format"]`` of every checkpoint this package writes.
FORMAT = "ppl-lvm checkpoint"
VERSION = 1

#: Entries every checkpoint holds besides ``meta``.
_FIELDS = (
    "model",
    "optimizer",
    "torch_rng",
    "batch_rng",
    "step",
    "history",
    "perm",
    "pos",
    "validation",
    "best_value",
    "best_state",
    "stale",
)


def data_fingerprint(x: torch.Tensor, mask: torch.Tensor | None) -> str:
    """A short hash of the data and mask: shape, dtype and every byte."""
    h = hashlib.blake2b(digest_size=16)
    for key, v in entries(x):
        prefix = "" if key is None else f"{key}:"
        h.update(f"{prefix}{tuple(v.shape)}|{v.dtype}".encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    for key, m in entries(mask) if mask is not None else ():
        h.update(b"" if key is None else f"mask {key}:".encode())
        h.update(m.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def describe(
    model: torch.nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    **settings: Any,
) -> dict[str, Any]:
    """The metadata a checkpoint of this fit carries (and a resume must match).

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor of shape (N, D)
    mask : torch.Tensor of shape (N, D) or None
    **settings
        What else the run depends on: ``objective``, ``num_particles``, ``batch_size``,
        ``optimizer``, ``seed``, ...; values must be str, int, float, bool or None.
    """
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": {k: list(v.shape) for k, v in model.state_dict().items()},
        "num_data": num_data(x),
        "data": data_fingerprint(x, mask),
    }
    meta.update(settings)
    return meta


def check_writable(path: str | os.PathLike) -> Path:
    """Refuse, before any training, a checkpoint path that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"checkpoint={str(path)!r} is a directory; give a file path such as "
            f"{str(path / 'fit.pt')!r}."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(path.name + ".tmp")
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"checkpoint={str(path)!r} cannot be written ({err.strerror or err}); choose a "
            "writable file path."
        ) from None
    return path


def save(path: Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``state`` and ``meta`` atomically: a crash mid-write never leaves a broken file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"meta": meta, **state}, tmp)
    tmp.replace(path)


def load(
    path: str | os.PathLike, expected: dict[str, Any], device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint and check that it belongs to this run.

    Parameters
    ----------
    path : path-like
    expected : dict
        The metadata of this run (:func:`describe`); every key must match.
    device : torch.device or str

    Raises
    ------
    FileNotFoundError
        When there is no file.
    ValueError
        For a directory, a truncated, foreign or crafted file (nothing in it is run), a file
        missing a field, or one whose metadata differs from this run's, naming the field.
    """
    path = Path(path)
    where = f"resume={str(path)!r}"
    if not path.exists():
        raise FileNotFoundError(f"{where}: no such checkpoint file.")
    if path.is_dir():
        raise ValueError(f"{where} is a directory; give the checkpoint file written by fit.")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # every failure of torch.load means the same to the user
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise ValueError(
            f"{where} is not a readable ppl-lvm checkpoint ({type(err).__name__}: {reason}). "
            "It may be truncated, or not written by fit(checkpoint=...); checkpoints hold "
            "tensors and plain values only, and anything else is refused without being run."
        ) from None
    meta = state.get("meta") if isinstance(state, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{where} is not a ppl-lvm checkpoint: it carries no ppl-lvm metadata. Resume "
            "from a file written by fit(checkpoint=...)."
        )
    missing = [k for k in _FIELDS if k not in state]
    if missing:
        raise ValueError(f"{where} is incomplete: it lacks {missing}; start afresh.")
    for key, want in expected.items():
        have = meta.get(key)
        if have != want:
            if key == "parameters" and isinstance(have, dict):
                diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
                have, want = {k: have.get(k) for k in diff[:3]}, {k: want.get(k) for k in diff[:3]}
            raise ValueError(
                f"{where} belongs to another run: its {key} is {have!r} but this fit's is "
                f"{want!r}. Resume with the same model, data and settings, or train afresh "
                "without resume=."
            )
    return state
