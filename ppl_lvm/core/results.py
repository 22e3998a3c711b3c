"""The results every engine returns: :class:`FitResult` and :class:`Evidence`.

Plain frozen dataclasses with documented fields; they print well and depend on nothing but torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

__all__ = ["EVIDENCE_KINDS", "Evidence", "EvidenceKind", "FitResult", "format_number"]

EvidenceKind = Literal["exact", "lower_bound", "estimate"]
#: The kinds of number ``log_evidence`` can return.
EVIDENCE_KINDS = ("exact", "lower_bound", "estimate")


def format_number(value: float) -> str:
    """A number as tables print it: 4 decimals, or scientific beyond a million."""
    return f"{value:,.4f}" if abs(value) < 1e6 else f"{value:.4e}"


@dataclass(frozen=True, eq=False)
class FitResult:
    """What a fit did.

    Attributes
    ----------
    engine : str
        Name of the engine that fitted.
    objective : str
        What was maximised, e.g. ``"elbo"``, ``"iwae"``, ``"log_likelihood"``.
    history : torch.Tensor of shape (num_steps,)
        The objective per datum after each step (higher is better).
    seconds : float
        Wall time of the fit.
    num_steps : int
        Optimisation or EM steps taken.
    converged : bool or None
        Whether a convergence criterion was met; None when the engine has none.
    seed : int or None
        The seed the fit ran with.
    info : Mapping[str, Any]
        Engine-specific extras (restarts, checkpoints, ...).
    """

    engine: str
    objective: str
    history: torch.Tensor
    seconds: float
    num_steps: int
    converged: bool | None = None
    seed: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> float:
        """The last value of the objective (NaN when no step ran)."""
        return float(self.history[-1]) if len(self.history) else float("nan")

    def __str__(self) -> str:
        conv = "" if self.converged is None else f", converged={self.converged}"
        return (
            f"FitResult({self.engine}, {self.objective}: {format_number(self.final)} per datum "
            f"after "
            f"{self.num_steps} steps in {self.seconds:.2f} s{conv})"
        )


@dataclass(frozen=True, eq=False)
class Evidence:
    """log p(x) per datum, and how much to trust it.

    Attributes
    ----------
    per_datum : torch.Tensor of shape (N,)
        log p(x_n) (kind ``"exact"``), a lower bound on it (``"lower_bound"``) or an estimate
        (``"estimate"``), over the observed entries of each datum.
    kind : {"exact", "lower_bound", "estimate"}
    engine : str
        Name of the engine that produced it.
    stderr : torch.Tensor of shape (N,) or None
        Monte Carlo standard error of each entry of ``per_datum``; zero for exact values.
    ess : torch.Tensor of shape (N,) or None
        Effective sample size of the importance weights behind each entry.
    khat : torch.Tensor of shape (N,) or None
        Pareto k̂ of those weights (ArviZ's PSIS).
    num_particles : int or None
        Particles per datum behind each Monte Carlo entry.
    """

    per_datum: torch.Tensor
    kind: EvidenceKind
    engine: str
    stderr: torch.Tensor | None = None
    ess: torch.Tensor | None = None
    khat: torch.Tensor | None = None
    num_particles: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVIDENCE_KINDS:
            raise ValueError(f"Evidence.kind must be one of {EVIDENCE_KINDS}, got {self.kind!r}.")
        if self.per_datum.dim() != 1:
            raise ValueError(
                f"Evidence.per_datum must have shape (N,), got {tuple(self.per_datum.shape)}."
            )
        for name in ("stderr", "ess", "khat"):
            value = getattr(self, name)
            if value is not None and value.shape != self.per_datum.shape:
                raise ValueError(
                    f"Evidence.{name} must have the shape of per_datum "
                    f"{tuple(self.per_datum.shape)}, got {tuple(value.shape)}."
                )

    @property
    def total(self) -> float:
        """log p(x) of the whole data set: the sum over data."""
        return float(self.per_datum.sum())

    @property
    def mean(self) -> float:
        """Average log p(x_n) per datum."""
        return float(self.per_datum.mean())

    @property
    def total_stderr(self) -> float | None:
        """Standard error of :attr:`total`, the data being independent."""
        if self.stderr is None:
            return None
        return float(self.stderr.pow(2).sum().sqrt())

    def __len__(self) -> int:
        return self.per_datum.shape[0]

    def __str__(self) -> str:
        err = "" if self.total_stderr is None else f" ± {format_number(self.total_stderr)}"
        return (
            f"Evidence({self.kind} by {self.engine}: total {format_number(self.total)}{err}, "
            f"mean {format_number(self.mean)} per datum over N={len(self)})"
        )
