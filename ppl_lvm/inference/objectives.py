"""The objectives SVI maximises, one class each; the training loop never changes for a new one.

- :class:`Elbo`: E_q[log p(x, z) - log q(z | x)], with ``num_particles`` vectorised particles
  (Pyro's ``Trace_ELBO``, or ``TraceEnum_ELBO`` when the story marks discrete sites for
  enumeration; a built-in model's own tensor path otherwise);
- :class:`MeanField`: the same bound with the KL term in closed form where one exists
  (``TraceMeanField_ELBO``, or the model's declared ``AnalyticKL`` / ``MeanFieldTerms``);
- :class:`Iwae`: the importance-weighted bound log (1/K) Σ_k w_k from the shared weighting
  routine, with a VIMCO score-function term for guide sites that cannot be reparameterised, or,
  with ``estimator="dreg"``, the doubly reparameterised gradient of Tucker et al. (2018).

Each gives a differentiable estimate of the full-data objective per datum for a minibatch
(:meth:`Objective.step`) and the per-datum bound on held-out data (:meth:`Objective.per_datum`).
Adding an objective is a subclass here and an entry in :data:`OBJECTIVES`.
"""

from __future__ import annotations

import weakref
from typing import ClassVar, Literal

import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from pyro.infer.elbo import ELBO
from pyro.poutine.messenger import Messenger

from ..core.data import num_data as rows_of  # `num_data` is N here, an argument
from ..core.data import take_rows
from ..core.errors import UnsupportedModelError
from ..core.logweights import LogWeights
from ..core.stats import iwae_bound
from ..models._subsample import DataIndices
from ..models.base import GuideStructure, LatentVariableModel, SiteInfo
from ..models.capabilities import (
    AnalyticKL,
    DetachableGuide,
    MeanFieldTerms,
    ParticleLogWeights,
    has,
)
from ._leanelbo import NotLean, lean_elbo
from ._weights import NO_BROADCAST, log_weights

__all__ = ["OBJECTIVES", "Elbo", "Iwae", "MeanField", "Objective", "refuse_per_datum_weights"]

Estimator = Literal["standard", "dreg"]


class _ScaleLocal(Messenger):
    """Scales every site inside the data plate by N / B, for minibatches."""

    def __init__(self, scale: float, data_plate: str):
        super().__init__()
        self.scale = scale
        self.data_plate = data_plate

    def _process_message(self, msg):
        if any(f.name == self.data_plate for f in msg["cond_indep_stack"]):
            msg["scale"] = self.scale * msg["scale"]


def _enumerated(sites: dict[str, SiteInfo]) -> bool:
    return any(s.latent and s.enumerate == "parallel" for s in sites.values())


class Objective:
    """A bound on log p(x) that SVI maximises.

    Parameters
    ----------
    num_particles : int
        K, vectorised particles per datum per step.
    estimator : {"standard", "dreg"}
        The gradient estimator (only :class:`Iwae` has a second one).
    """

    #: The name SVI knows it by.
    name: ClassVar[str] = "objective"
    #: The Pyro loss of the traced path (stories with no tensor path of their own).
    pyro_loss: ClassVar[type[ELBO]] = Trace_ELBO
    #: Whether each step needs the particles' weights even on the traced path.
    needs_weights: ClassVar[bool] = False

    def __init__(self, num_particles: int, estimator: Estimator = "standard"):
        self.num_particles = num_particles
        self.estimator = estimator
        # False once a story has failed to broadcast over a leading particle dim
        self._vectorise = True
        # stories that need Pyro's full Trace_ELBO on every step (see _leanelbo)
        self._not_lean: weakref.WeakSet = weakref.WeakSet()

    def check_supported(self, model: LatentVariableModel, sites: dict[str, SiteInfo]) -> None:
        """Refuse, before any work, a story this objective cannot handle."""

    def check_proposal(
        self, model: LatentVariableModel, sites: dict[str, SiteInfo], guide: GuideStructure
    ) -> None:
        """Refuse, before any work, a guide this objective cannot use."""

    @staticmethod
    def enumerated(sites: dict[str, SiteInfo]) -> bool:
        """Whether the story marks local discrete sites for parallel enumeration."""
        return _enumerated(sites)

    # -- one minibatch ----------------------------------------------------------------------
    def has_direct_step(self, lvm: LatentVariableModel) -> bool:
        """Whether :meth:`direct_step` may have a fast path for ``lvm`` (asked first, so that a
        story without one does not enter its parameter scope twice a step)."""
        return False

    def direct_step(
        self, lvm: LatentVariableModel, xb: torch.Tensor, mb: torch.Tensor | None, scale: float
    ) -> torch.Tensor | None:
        """A step from a declared fast path, summed over the batch and scaled; None if none."""
        return None

    def surrogate(
        self,
        lvm: LatentVariableModel,
        lw: LogWeights,
        xb: torch.Tensor,
        mb: torch.Tensor | None,
        scale: float,
    ) -> torch.Tensor:
        """The full-data objective from particle weights, with score terms where needed."""
        raise NotImplementedError

    def step(
        self,
        lvm: LatentVariableModel,
        xb: torch.Tensor,
        mb: torch.Tensor | None,
        num_data: int,
        rank: int,
        enumerated: bool,
        indices: torch.Tensor | None = None,
        lean: bool = False,
    ) -> torch.Tensor:
        """A differentiable estimate of the full-data objective divided by N (a scalar).

        Parameters
        ----------
        xb, mb : torch.Tensor of shape (B, D)
            The minibatch and its mask; with ``indices``, the whole data set (N, D).
        num_data : int
            N; every local site is scaled by N / B.
        rank : int
            Plate dims the story uses.
        enumerated : bool
            Whether the story enumerates discrete sites (Pyro's ``TraceEnum_ELBO`` then).
        indices : torch.Tensor of shape (B,), optional
            The minibatch as the data plate's subsample indices (Pyro's own subsampling, which
            also scales by N / B): model and guide see all of ``xb`` and pick their rows.
        lean : bool
            Where the traced path would run Pyro's ``Trace_ELBO`` with one particle, accumulate
            the same ELBO without trace objects when every guide site is reparameterised
            (:mod:`._leanelbo`); SVI asks for it after a first step through Pyro has checked
            the story.
        """
        scale = num_data / (rows_of(xb) if indices is None else len(indices))
        if not enumerated and indices is None and self.has_direct_step(lvm):
            with lvm.scoped():
                direct = self.direct_step(lvm, xb, mb, scale)
            if direct is not None:
                return direct / num_data
        if self.needs_weights or (has(lvm, ParticleLogWeights) and not enumerated):
            with lvm.scoped():
                lw = log_weights(
                    lvm, xb, mb, num_particles=self.num_particles, validate=False,
                    max_plate_nesting=rank, rows=indices,
                )  # fmt: skip
                if indices is not None:
                    xb, mb = take_rows(xb, indices), take_rows(mb, indices)
                return self.surrogate(lvm, lw, xb, mb, scale) / num_data
        k = self.num_particles
        loss_cls = TraceEnum_ELBO if enumerated else self.pyro_loss
        # with indices the plate itself scales by N / B
        scaler = (
            _ScaleLocal(scale, lvm.data_plate)
            if indices is None
            else DataIndices(lvm.data_plate, indices, num_data)
        )
        model, guide = scaler(lvm.model), scaler(lvm.guide)
        if lean and k == 1 and loss_cls is Trace_ELBO and lvm not in self._not_lean:
            try:
                with lvm.scoped():
                    return lean_elbo(model, guide, xb, mb) / num_data
            except NotLean:
                # a score-function term or a site the guide does not draw: Pyro from now on
                self._not_lean.add(lvm)
        try:
            vectorise = k > 1 and self._vectorise
            loss = loss_cls(num_particles=k, vectorize_particles=vectorise, max_plate_nesting=rank)
            with lvm.scoped():
                value = loss.differentiable_loss(model, guide, xb, mb)
        except (ValueError, RuntimeError) as err:
            if not vectorise or not any(sign in str(err) for sign in NO_BROADCAST):
                raise
            # a story that does not broadcast over a leading particle dim: Pyro's own loop
            # over the particles (the weighting routine's slower path), from now on
            self._vectorise = False
            loss = loss_cls(num_particles=k, vectorize_particles=False, max_plate_nesting=rank)
            with lvm.scoped():
                value = loss.differentiable_loss(model, guide, xb, mb)
        return -value / num_data

    # -- evaluation -------------------------------------------------------------------------
    @staticmethod
    def bound_of(weights: torch.Tensor) -> torch.Tensor:
        """The bound from K particles' log weights: (K, N) -> (N,), or joint (K,) -> ()."""
        return weights.mean(0)

    def bound(
        self, lvm: LatentVariableModel, lw: LogWeights, xb: torch.Tensor, mb: torch.Tensor | None
    ) -> torch.Tensor:
        """The per-datum bound from particle weights, shape (B,)."""
        return lw.local.mean(0)

    def per_datum(
        self,
        lvm: LatentVariableModel,
        lw: LogWeights,
        xb: torch.Tensor,
        mb: torch.Tensor | None,
        num_data: int,
    ) -> torch.Tensor:
        """The bound for each datum of a chunk from its particles' weights, shape (B,), with the
        global terms shared equally among all ``num_data`` data so that the total is the bound."""
        with lvm.scoped():
            per = self.bound(lvm, lw, xb, mb)
        return per + (lw.global_log_p - lw.global_log_q).mean() / num_data


def refuse_per_datum_weights(
    engine: str, model: LatentVariableModel, sites: dict[str, SiteInfo], guide: GuideStructure
) -> None:
    """Importance weights need a proposal with spread. (A guide whose density is joint over the
    data, ``AutoDiagonalNormal``'s one vector, is weighed jointly: one weight per particle for
    the whole data set.)"""
    if guide.point_mass:
        raise UnsupportedModelError(
            f"{engine} weighs particles by p(x, z) / q(z | x), and the guide of story "
            f"'{model.name}' is a point mass at sites {list(guide.point_mass)} (AutoDelta): every "
            "particle is the same and the weights say nothing about log p(x). Use a guide with "
            "spread (AutoNormal), or ImportanceSampling(proposal='prior')."
        )


def _score_term(reward: torch.Tensor, log_q_score: torch.Tensor) -> torch.Tensor:
    """Score-function term with a leave-one-out baseline, which keeps it unbiased (K >= 2)."""
    reward = reward.detach()
    k = reward.shape[0]
    baseline = (reward.sum(0, keepdim=True) - reward) / (k - 1) if k > 1 else 0.0
    return ((reward - baseline) * log_q_score).mean(0)


class Elbo(Objective):
    """The evidence lower bound."""

    name = "elbo"

    def surrogate(self, lvm, lw, xb, mb, scale):
        per = lw.local.mean(0)
        if lw.log_q_score is not None:
            per = per + _score_term(lw.local, lw.log_q_score)
        return scale * per.sum() + (lw.global_log_p - lw.global_log_q).mean()


class MeanField(Elbo):
    """The ELBO with its KL term in closed form where the model declares one."""

    name = "meanfield"
    pyro_loss = TraceMeanField_ELBO

    def has_direct_step(self, lvm):
        return has(lvm, MeanFieldTerms)

    def direct_step(self, lvm, xb, mb, scale):
        if not has(lvm, MeanFieldTerms):
            return None
        # the leanest step: E_q log p(x | z) and the closed-form KL from one encoder pass
        log_lik, kl = lvm.meanfield_terms(xb, mb, self.num_particles)
        return scale * (log_lik.mean(0) - kl).sum()

    def surrogate(self, lvm, lw, xb, mb, scale):
        if not has(lvm, AnalyticKL):
            return super().surrogate(lvm, lw, xb, mb, scale)
        per = lw.log_lik.mean(0) - lvm.analytic_kl(xb, mb)
        if lw.log_q_score is not None:
            # with the KL in closed form only the likelihood is left to the score term
            per = per + _score_term(lw.log_lik, lw.log_q_score)
        return scale * per.sum() + (lw.global_log_p - lw.global_log_q).mean()

    def bound(self, lvm, lw, xb, mb):
        if has(lvm, AnalyticKL):
            return lw.log_lik.mean(0) - lvm.analytic_kl(xb, mb)
        return super().bound(lvm, lw, xb, mb)


def vimco_signal(local: torch.Tensor) -> torch.Tensor:
    """VIMCO's per-particle learning signal (Mnih & Rezende 2016), shape (K, N), detached.

    Each particle's baseline replaces its own log-weight by the mean of the others.
    """
    k = local.shape[0]
    if k < 2:
        raise UnsupportedModelError(
            "the IWAE objective with discrete guide sites needs num_particles >= 2 (VIMCO's "
            "leave-one-out baseline)."
        )
    local = local.detach()
    loo_mean = (local.sum(0, keepdim=True) - local) / (k - 1)  # (K, N)
    bound = iwae_bound(local)  # (N,)
    out = torch.empty_like(local)
    for j in range(k):  # K is small for training; each baseline is one logsumexp
        replaced = local.clone()
        replaced[j] = loo_mean[j]
        out[j] = bound - iwae_bound(replaced)
    return out


def dreg_surrogate(lw: LogWeights) -> torch.Tensor:
    """Per-datum IWAE bound whose gradient is the DReG estimator, shape (N,).

    With log q evaluated at detached guide parameters, the surrogate Σ_k w̃_k log w_k has the
    IWAE gradient for the model's parameters and the path term Σ_k w̃_k ∂log w_k/∂z_k ∂z_k/∂φ
    for the guide's; a hook on each z_k turns w̃_k into w̃_k², the doubly reparameterised
    form (Tucker et al. 2018, eq. 6). Its value is the bound itself.
    """
    local = lw.local  # (K, N)
    w = torch.softmax(local.detach(), 0)
    for z in lw.samples.values():
        if z.requires_grad:
            z.register_hook(lambda g, w=w: g * w.reshape(*w.shape, *([1] * (g.dim() - 2))))
    path = (w * local).sum(0)
    return iwae_bound(local).detach() + path - path.detach()


class Iwae(Objective):
    """The importance-weighted bound of Burda et al. (2016), per datum."""

    name = "iwae"
    needs_weights = True

    def check_proposal(self, model, sites, guide):
        refuse_per_datum_weights("the IWAE bound", model, sites, guide)

    @staticmethod
    def bound_of(weights: torch.Tensor) -> torch.Tensor:
        return iwae_bound(weights)

    def check_supported(self, model, sites):
        if self.estimator == "dreg" and not has(model, DetachableGuide):
            raise UnsupportedModelError(
                f"estimator='dreg' needs a reparameterised guide whose log q can be evaluated "
                f"with its parameters detached, and story '{model.name}' does not declare one "
                "(models.capabilities.DetachableGuide); use estimator='standard'."
            )

    def has_direct_step(self, lvm):
        return self.estimator == "dreg"

    def direct_step(self, lvm, xb, mb, scale):
        if self.estimator != "dreg":
            return None
        lw = lvm.particle_log_weights(xb, mb, self.num_particles, stop_q_grad=True)
        return scale * dreg_surrogate(lw).sum()

    def surrogate(self, lvm, lw, xb, mb, scale):
        if lw.has_global_latents:
            # one weight per particle for the whole data set: the joint bound (exact with the
            # full batch; SVI.fit refuses minibatches for it)
            joint = lw.global_log_p - lw.global_log_q + scale * lw.local.sum(-1)
            return iwae_bound(joint)
        per = iwae_bound(lw.local)
        if lw.log_q_score is not None:
            per = per + (vimco_signal(lw.local) * lw.log_q_score).sum(0)
        return scale * per.sum()

    def bound(self, lvm, lw, xb, mb):
        return iwae_bound(lw.local)


#: Objectives by the name ``SVI(objective=...)`` takes.
OBJECTIVES: dict[str, type[Objective]] = {"elbo": Elbo, "meanfield": MeanField, "iwae": Iwae}
