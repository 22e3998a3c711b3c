"""Shared test set-up: a clean Pyro state and validation on, before every test."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def clean_pyro_state():
    """Every test starts with an empty param store, validation on and a fixed seed."""
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def float64():
    """Run a test in float64, for comparisons against exact answers; restores the default."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
