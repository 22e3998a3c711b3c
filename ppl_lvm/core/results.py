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
    """log p(x) of a data set, per datum where it factorises, and how much to trust it.

    ``total`` is always the joint log evidence log p(x_1, ..., x_N). Where the story has no
    global latent site, the data are independent given the parameters and the evidence
    factorises: ``per_datum`` holds log p(x_n) and ``total`` is its sum. Where a global latent
    couples the data (a prior on a mixture's means, a global discrete switch), log p(x) does
    not split into per-datum terms: ``per_datum`` is ``None`` and ``joint`` holds the total,
    with ``stderr``, ``ess`` and ``khat`` as 0-dim tensors of that one number.

    Attributes
    ----------
    per_datum : torch.Tensor of shape (N,) or None
        log p(x_n) (kind ``"exact"``), a lower bound on it (``"lower_bound"``) or an estimate
        (``"estimate"``), over the observed entries of each datum; None when the evidence does
        not factorise over data.
    kind : {"exact", "lower_bound", "estimate"}
    engine : str
        Name of the engine that produced it.
    stderr : torch.Tensor of shape (N,) or (), or None
        Monte Carlo standard error of each entry of ``per_datum`` (of ``joint`` when
        ``per_datum`` is None); zero for exact values.
    ess : torch.Tensor of shape (N,) or (), or None
        Effective sample size of the importance weights behind each entry.
    khat : torch.Tensor of shape (N,) or (), or None
        Pareto k̂ of those weights (ArviZ's PSIS).
    num_particles : int or None
        Particles per datum (per data set, for a joint evidence) behind each Monte Carlo entry.
    joint : torch.Tensor of shape () or None
        log p(x_1, ..., x_N) when ``per_datum`` is None; ignored otherwise (must be None).
    num_data : int or None
        N; taken from ``per_datum`` when it is given, required with ``joint``.
    """

    per_datum: torch.Tensor | None
    kind: EvidenceKind
    engine: str
    stderr: torch.Tensor | None = None
    ess: torch.Tensor | None = None
    khat: torch.Tensor | None = None
    num_particles: int | None = None
    joint: torch.Tensor | None = None
    num_data: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVIDENCE_KINDS:
            raise ValueError(f"Evidence.kind must be one of {EVIDENCE_KINDS}, got {self.kind!r}.")
        if (self.per_datum is None) == (self.joint is None):
            raise ValueError(
                "Evidence needs exactly one of per_datum (N,), where the evidence factorises "
                "over data, and joint (), where a global latent couples the data."
            )
        if self.per_datum is not None:
            if self.per_datum.dim() != 1:
                raise ValueError(
                    f"Evidence.per_datum must have shape (N,), got {tuple(self.per_datum.shape)}."
                )
            if self.num_data not in (None, self.per_datum.shape[0]):
                raise ValueError(
                    f"Evidence.num_data={self.num_data} but per_datum has "
                    f"{self.per_datum.shape[0]} entries."
                )
            object.__setattr__(self, "num_data", self.per_datum.shape[0])
            shape = self.per_datum.shape
        else:
            if self.joint.dim() != 0:
                raise ValueError(f"Evidence.joint must be 0-dim, got {tuple(self.joint.shape)}.")
            if not isinstance(self.num_data, int) or self.num_data < 1:
                raise ValueError(
                    f"a joint Evidence needs num_data, a positive int; got {self.num_data!r}."
                )
            shape = self.joint.shape
        for name in ("stderr", "ess", "khat"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(
                    f"Evidence.{name} must have the shape of "
                    f"{'per_datum' if self.per_datum is not None else 'joint'} {tuple(shape)}, "
                    f"got {tuple(value.shape)}."
                )

    @property
    def factorises(self) -> bool:
        """Whether the evidence splits into per-datum terms (no global latent couples data)."""
        return self.per_datum is not None

    @property
    def total(self) -> float:
        """log p(x) of the whole data set: the joint, or the sum over data."""
        if self.per_datum is None:
            return float(self.joint)
        return float(self.per_datum.sum())

    @property
    def mean(self) -> float:
        """Average log p(x) per datum: ``total / N``."""
        return self.total / self.num_data

    @property
    def total_stderr(self) -> float | None:
        """Standard error of :attr:`total` (the data being independent, where it factorises)."""
        if self.stderr is None:
            return None
        return float(self.stderr.pow(2).sum().sqrt())

    def __len__(self) -> int:
        return self.num_data

    def __str__(self) -> str:
        err = "" if self.total_stderr is None else f" ± {format_number(self.total_stderr)}"
        how = "per datum" if self.factorises else "joint, no per-datum split"
        return (
            f"Evidence({self.kind} by {self.engine}: total {format_number(self.total)}{err}, "
            f"mean {format_number(self.mean)} per datum over N={len(self)}; {how})"
        )
