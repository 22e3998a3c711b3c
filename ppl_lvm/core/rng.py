"""Seeded, side-effect-free randomness: the same seed gives the same numbers, and a fit never
changes what the caller draws next."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["fork_rng", "resolve_seed", "seeded"]


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def resolve_seed(seed: int | None) -> int:
    """``seed`` as an int; None draws a fresh one from the operating system, so that a run
    asked to be random still records the seed that reproduces it."""
    if seed is None:
        return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {seed!r}.")
    return int(seed)


@contextlib.contextmanager
def fork_rng() -> Iterator[None]:
    """Run a block whose draws must not move the caller's torch random stream."""
    with torch.random.fork_rng(devices=_cuda_devices()):
        yield


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with a fixed seed without disturbing the caller's random state.

    ``seed=None`` leaves the global generators untouched. Otherwise torch's (CPU and CUDA),
    NumPy's and Python's generators are seeded inside the block and restored after it, so the
    same seed gives the same numbers and a fit never changes what the user draws next.
    """
    if seed is None:
        yield
        return
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {seed!r}.")
    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 (restoring the legacy global generator)
    devices = _cuda_devices()
    with torch.random.fork_rng(devices=devices):
        # what pyro.set_rng_seed does, minus torch.manual_seed's lazy CUDA seeding, which
        # records a stack trace (about 1.5 ms per call) even on machines without CUDA
        seed = int(seed)
        torch.default_generator.manual_seed(seed)
        if devices:
            torch.cuda.manual_seed_all(seed)
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002 (the legacy global generator that users seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002
