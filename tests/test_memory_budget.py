"""One memory budget: passes are sized before they allocate, chunked over data and particles,
and a pass whose smallest piece cannot fit is refused clearly."""

from __future__ import annotations

import pytest
import torch

import ppl_lvm
from ppl_lvm import models
from ppl_lvm.core import memory
from ppl_lvm.inference import SVI, Enumeration, ImportanceSampling, _weights


@pytest.fixture
def passes(monkeypatch):
    """Record (particles, data) of every vectorised pass of the weighting routine."""
    seen: list[tuple[int, int]] = []
    original = _weights.log_weights

    def recording(model, x, mask=None, *, num_particles, **kw):
        seen.append((num_particles, x.shape[0]))
        return original(model, x, mask, num_particles=num_particles, **kw)

    monkeypatch.setattr(_weights, "log_weights", recording)
    return seen


def test_the_budget_comes_from_argument_scope_environment_or_memory(monkeypatch):
    """Argument beats `with memory_budget`, which beats PPL_LVM_MEMORY_BUDGET, which beats the
    default (a share of available memory, at most 2^26)."""
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    assert 2**20 <= memory.current_budget() <= memory.DEFAULT_BUDGET
    monkeypatch.setenv(memory.ENV_VAR, "5000")
    assert memory.current_budget() == 5000
    with ppl_lvm.memory_budget(7000):
        assert memory.current_budget() == 7000
        assert memory.current_budget(9000) == 9000
    monkeypatch.setenv(memory.ENV_VAR, "lots")
    with pytest.raises(ValueError, match="PPL_LVM_MEMORY_BUDGET='lots' is not a positive"):
        memory.current_budget()


def test_importance_sampling_chunks_particles_within_the_budget(passes):
    """K particles of one wide datum that exceed the budget are drawn in chunks; each pass fits,
    and the estimate agrees with the unchunked one within their standard errors."""
    torch.manual_seed(0)
    vae = models.VAE(20, 2, (400,), "gaussian")  # one particle of one datum: 400 numbers
    x = torch.randn(3, 20)
    budget = 400 * 250  # 250 particles per pass
    chunked = ImportanceSampling("guide", 1000, memory_budget=budget).log_evidence(vae, x, seed=0)
    assert passes and all(k * n * 400 <= budget for k, n in passes)
    assert sum(k for k, n in passes if n == 1) == 3 * 1000  # one datum at a time, 4 passes each
    whole = ImportanceSampling("guide", 1000).log_evidence(vae, x, seed=1)
    se = (chunked.stderr**2 + whole.stderr**2).sqrt()
    assert torch.all((chunked.per_datum - whole.per_datum).abs() < 5 * se)


def test_a_particle_that_cannot_fit_is_refused_before_any_work():
    """When one particle of one datum exceeds the budget, the error names both and the fix."""
    vae = models.VAE(20, 2, (400,), "gaussian")
    with pytest.raises(MemoryError, match=r"needs 400 numbers in one pass, more than the memory"):
        ImportanceSampling("guide", 10, memory_budget=100).log_evidence(vae, torch.zeros(2, 20))
    with ppl_lvm.memory_budget(100), pytest.raises(MemoryError, match="memory budget of 100"):
        SVI().log_evidence(vae, torch.zeros(2, 20))


def test_enumeration_of_binary_features_is_chunked_over_data():
    """L=16 features (65,536 states) on 64-pixel data: the traced sum is chunked to the budget
    and equals the model's own exact path."""
    torch.manual_seed(0)
    bin16 = models.BinaryLatentFactors(64, 16).double()
    x = (torch.rand(12, 64, dtype=torch.float64) > 0.5).double()
    with ppl_lvm.memory_budget(2**16 * 64 * 4):  # four data per pass
        ev = Enumeration().log_evidence(bin16, x)
    torch.testing.assert_close(ev.per_datum, bin16.exact_log_evidence(x), rtol=0, atol=1e-8)
    with ppl_lvm.memory_budget(2**16), pytest.raises(MemoryError, match="enumerating one datum"):
        Enumeration().log_evidence(bin16, x)
