"""Stochastic variational inference: ``SVI``.

Three objectives (:mod:`ppl_lvm.inference.objectives`) share the one training loop
(:mod:`ppl_lvm.inference._loop`):

- ``"elbo"``: the evidence lower bound, E_q[log p(x, z) - log q(z | x)];
- ``"meanfield"``: the same bound with the KL term in closed form where one exists;
- ``"iwae"``: the importance-weighted bound log (1/K) Σ_k w_k, with a VIMCO term for discrete
  guide sites, or ``estimator="dreg"``, the doubly reparameterised gradient.

Minibatches subsample the data plate and scale every local site by N / B, so each step is an
unbiased estimate of the full-data objective. A user's story gets them through Pyro's own
subsampling where it can (all of x, and the data plate's indices set to the minibatch, so that
per-datum parameters see their own rows; :mod:`ppl_lvm.inference._minibatch`), and a plate's own
``subsample_size`` is its minibatch size. Training shows a tqdm bar, checks every loss for
NaN, can stop early on a validation bound, and checkpoints so that a resumed run equals an
uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import torch
from pyro.poutine.util import site_is_subsample

from .._typing import ModelLike
from ..core.checks import check_choice, check_positive_int
from ..core.data import num_data, take_rows
from ..core.errors import UnsupportedModelError
from ..core.posterior import Posterior
from ..core.results import Evidence, FitResult
from ..core.rng import resolve_seed, seeded
from ..models.base import LatentVariableModel, SiteInfo, sample_sites
from . import _loop
from ._enumops import replayed_posterior
from ._fitting import fit_by_gradient, gradient_fit_result
from ._weights import joint_over_data, log_weights_in_chunks
from .base import Engine
from .objectives import OBJECTIVES, Objective

__all__ = ["SVI"]


def _is_one(scale: float | torch.Tensor) -> bool:
    return bool((torch.as_tensor(scale) == 1).all())


ObjectiveName = Literal["elbo", "meanfield", "iwae"]
Estimator = Literal["standard", "dreg"]


class SVI(Engine):
    """Variational inference with a guide q(z | x): ELBO, mean-field ELBO or IWAE bound.

    Parameters
    ----------
    objective : {"elbo", "meanfield", "iwae"}
    num_particles : int
        Particles per datum per step (K of the IWAE bound), vectorised.
    optimizer : {"adam", "adamw", "sgd", "rmsprop"} or callable
        A name, or a factory ``f(params, lr=...) -> torch.optim.Optimizer``.
    lr : float
        Learning rate.
    batch_size : int or None
        Minibatch size B; None uses the whole data set every step, in order. A story whose data
        plate declares ``subsample_size`` takes that size instead (with a warning if B differs).
    estimator : {"standard", "dreg"}
        The gradient estimator of the IWAE objective. "dreg" (doubly reparameterised; Tucker,
        Lawson, Gu & Maddison 2018) drops the score term of the guide's gradient and weights
        the path term by the squared normalised weights, which keeps the guide's gradient
        signal from vanishing as K grows. It has the same expectation as the standard
        estimator, needs a model that declares ``models.capabilities.DetachableGuide`` (a
        reparameterised guide whose log q can be evaluated at detached parameters, as the VAEs
        do), and leaves the model's gradient unchanged.

    Examples
    --------
    >>> from ppl_lvm import datasets, models, inference
    >>> ds = datasets.load("digits")
    >>> ppca = models.LinearGaussian(dim=64, latent_dim=5)
    >>> fit = inference.SVI(lr=0.01, batch_size=None).fit(ppca, ds.x, steps=50, progress=False)
    >>> inference.SVI().log_evidence(ppca, ds.x).kind
    'lower_bound'
    """

    name = "SVI"
    evidence_kind = "lower_bound"
    needs_guide = True
    options = ("objective", "num_particles", "optimizer", "lr", "batch_size", "estimator")

    def __init__(
        self,
        objective: ObjectiveName = "elbo",
        num_particles: int = 1,
        optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
        lr: float = 1e-3,
        batch_size: int | None = 100,
        estimator: Estimator = "standard",
    ):
        check_choice("objective", objective, tuple(OBJECTIVES))
        check_positive_int("num_particles", num_particles)
        check_positive_int("batch_size", batch_size, allow_none=True)
        if isinstance(optimizer, str):
            check_choice("optimizer", optimizer, tuple(_loop.OPTIMIZERS))
        elif not callable(optimizer):
            raise ValueError(f"optimizer must be a name or a callable, got {optimizer!r}.")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}.")
        check_choice("estimator", estimator, ("standard", "dreg"))
        if estimator == "dreg" and objective != "iwae":
            raise ValueError(
                "estimator='dreg' is a gradient of the IWAE bound; use it with objective='iwae'."
            )
        self.estimator = estimator
        self.objective = objective
        self.num_particles = num_particles
        self.optimizer = optimizer
        self.lr = float(lr)
        self.batch_size = batch_size
        self._objective: Objective = OBJECTIVES[objective](num_particles, estimator)

    @property
    def label(self) -> str:
        return f"SVI {self.objective}, K={self.num_particles}"

    def check_supported(self, model: LatentVariableModel, sites: dict[str, SiteInfo]) -> None:
        super().check_supported(model, sites)
        self._objective.check_supported(model, sites)

    def check_proposal(self, model, sites, guide) -> None:
        self._objective.check_proposal(model, sites, guide)

    # -- fit ---------------------------------------------------------------------------------
    def fit(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int | None = 0,
        progress: bool = True,
        epochs: int | None = None,
        steps: int | None = None,
        validation: torch.Tensor | tuple[torch.Tensor, torch.Tensor | None] | None = None,
        eval_every: int = 1,
        patience: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
        resume: str | os.PathLike | None = None,
        initialize: bool = True,
        device: str | torch.device | None = None,
    ) -> FitResult:
        """Maximise the objective by stochastic gradient ascent over minibatches.

        Parameters
        ----------
        model : LatentVariableModel, (model_fn, guide_fn) pair
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        seed : int or None
            Seeds the batch order and every particle draw; None draws a fresh seed, which the
            result records (``FitResult.seed``).
        progress : bool
            Show a tqdm progress bar.
        epochs, steps : int
            How long to train: ``epochs`` passes over the data or ``steps`` updates (exactly
            one of the two).
        validation : tensor (M, D) or (x_val, mask_val), optional
            Held-out data; its mean bound (this engine's objective, ``num_particles``) is
            computed every ``eval_every`` epochs and stored in ``info["validation"]``.
        eval_every : int
            Epochs between validation checks (steps, when training by ``steps``).
        patience : int, optional
            Stop after this many validation checks without improvement, and restore the best
            parameters. Needs ``validation``.
        checkpoint : path, optional
            Where to write a checkpoint (model, optimizer, random states, progress) every
            ``checkpoint_every`` steps, at the end and on Ctrl-C.
        resume : path, optional
            A checkpoint to continue from; with the same arguments the result equals an
            uninterrupted run.
        initialize : bool
            Run the model's declared ``Initializable.initialize(x, mask, seed)`` first (e.g.
            the output bias at the logit of the data mean); ignored when resuming.
        device : str or torch.device, optional
            Train there ("cuda" when available); the model is moved and stays there.

        Returns
        -------
        FitResult
            ``history``: the minibatch objective per datum at every step.
        """
        lvm, x, mask, sites = self.prepare(model, x, mask)
        minibatch = (self.batch_size or num_data(x)) < num_data(x)
        if self.objective == "iwae" and minibatch and joint_over_data(lvm, sites, x, mask):
            raise UnsupportedModelError(
                f"story '{lvm.name}' has global latent sites (or a guide density over all data), "
                "so its IWAE bound is one joint bound over all data, and a minibatch's is no "
                "unbiased estimate of it; use SVI(objective='iwae', batch_size=None), or "
                "objective='elbo' for minibatches."
            )
        seed = resolve_seed(seed)
        loop, info, seconds = fit_by_gradient(
            self._objective,
            lvm,
            x,
            mask,
            sites,
            engine=self.name,
            label=f"SVI {self.objective}",
            optimizer=self.optimizer,
            lr=self.lr,
            batch_size=self.batch_size,
            validate=self.mean_bound,
            seed=seed,
            progress=progress,
            epochs=epochs,
            steps=steps,
            validation=validation,
            eval_every=eval_every,
            patience=patience,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            initialize=initialize,
            device=device,
        )
        # a point-mass guide (AutoDelta) turns the ELBO into log p(x, ẑ): MAP, not a bound
        point_mass = bool(lvm.guide_structure(x, mask).point_mass)
        return gradient_fit_result(
            self.name, "map" if point_mass else self.objective, loop, seconds, seed, info
        )

    # -- evaluation ----------------------------------------------------------------------------
    def _per_datum(self, lvm: LatentVariableModel, x, mask, num_particles: int) -> torch.Tensor:
        out = []
        with lvm.scoped():
            chunks = log_weights_in_chunks(
                lvm, x, mask, num_particles=num_particles, keep_samples=False
            )
            for rows, lw in chunks:
                xb, mb = take_rows(x, rows), take_rows(mask, rows)
                per = self._objective.per_datum(lvm, lw, xb, mb, num_data(x))
                out.append(per.detach())
        return torch.cat(out)

    def mean_bound(self, lvm: LatentVariableModel, x, mask=None) -> float:
        """This engine's bound per datum on ``x`` (N, D), averaged: the validation score."""
        with torch.no_grad():
            return float(self._per_datum(lvm, x, mask, self.num_particles).mean())

    def log_evidence(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int | None = 0,
        num_particles: int | None = None,
    ) -> Evidence:
        """The per-datum lower bound: the ELBO, or the IWAE-K bound for ``objective="iwae"``.

        Parameters
        ----------
        model, x, mask
            As for :meth:`fit`; ``x`` (N, D).
        seed : int or None
        num_particles : int, optional
            Particles per datum; defaults to this engine's ``num_particles``.

        Returns
        -------
        Evidence
            ``kind="lower_bound"``, ``per_datum`` of shape (N,). Sites the story marks for
            enumeration are summed exactly inside each particle's weight, as ``TraceEnum_ELBO``
            does. A story with global latents has a bound on the joint log p(x) only:
            ``per_datum`` is None and ``joint`` holds it (with ``objective="iwae"``, the joint
            IWAE-K bound, K draws of the whole latent state).

        Raises
        ------
        UnsupportedModelError
            For a point-mass guide (``AutoDelta``), whose ELBO is a MAP objective, not a bound.
        """
        lvm, x, mask, sites = self.prepare(model, x, mask)
        point_mass = lvm.guide_structure(x, mask).point_mass
        if point_mass:
            raise UnsupportedModelError(
                f"the guide of story '{lvm.name}' is a point mass at {list(point_mass)} "
                "(AutoDelta): its ELBO is log p(x, ẑ), a MAP objective, not a bound on log p(x). "
                "Estimate log p(x) with ImportanceSampling(proposal='prior'), or fit a guide "
                "with spread (AutoNormal) for a bound."
            )
        k = self.num_particles if num_particles is None else num_particles
        if self.objective == "iwae":
            scaled = [
                name
                for name, site in sample_sites(lvm.trace(x, mask))
                if not site_is_subsample(site) and not _is_one(site["scale"])
            ]
            if scaled:
                raise UnsupportedModelError(
                    f"story '{lvm.name}' scales sites {scaled} with poutine.scale; a scaled "
                    "log-density is no likelihood, and the log-mean-exp of scaled weights bounds "
                    "nothing. Use SVI(objective='elbo'), whose scaled ELBO is what Pyro's "
                    "Trace_ELBO and TraceEnum_ELBO compute."
                )
        has_global = joint_over_data(lvm, sites, x, mask)
        if self._objective.enumerated(sites) or has_global:
            # guide draws with the enumerated sites summed exactly (TraceEnum_ELBO's meaning);
            # with a global latent the weights are joint over the data, (K,)
            with torch.no_grad(), seeded(seed):
                out = replayed_posterior(lvm, x, mask, sites, max(k, 2) if has_global else k)
            weights = out["log_p"] - out["log_q"]
            bound = self._objective.bound_of(weights)
            if weights.dim() == 1:
                return Evidence(
                    per_datum=None,
                    joint=bound,
                    num_data=num_data(x),
                    kind="lower_bound",
                    engine=self.name,
                    num_particles=weights.shape[0],
                )
            return Evidence(per_datum=bound, kind="lower_bound", engine=self.name, num_particles=k)
        with torch.no_grad(), seeded(seed):
            per = self._per_datum(lvm, x, mask, k)
        return Evidence(per_datum=per, kind="lower_bound", engine=self.name, num_particles=k)

    def posterior(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        num_samples: int = 1000,
        seed: int | None = 0,
    ) -> Posterior:
        """Draws from the guide q(z | x): ``samples[site]`` of shape (S, N, ...).

        Sites the story marks for enumeration (a mixture's label ``z``), which the guide does
        not propose, are drawn from their exact conditional p(z_n | x_n, θ_s) given each draw
        θ_s of the guide, and summed out of ``log_lik``, ``log_p`` and ``log_q``. Global sites
        have draws of shape (S, ...) shared by all data; ``log_p`` and ``log_q`` are then joint,
        shape (S,).

        Returns
        -------
        Posterior
            Equally weighted draws with ``log_lik`` (S, N), ``log_p`` and ``log_q``.
        """
        lvm, x, mask, sites = self.prepare(model, x, mask)
        has_global = any(s.latent and not s.local for s in sites.values())
        if self._objective.enumerated(sites) or has_global:
            with torch.no_grad(), seeded(seed):
                out = replayed_posterior(lvm, x, mask, sites, num_samples)
            return Posterior(engine=self.name, x=x, mask=mask, log_weights=None, **out)
        with torch.no_grad(), seeded(seed), lvm.scoped():
            samples: dict[str, list[torch.Tensor]] = {}
            scores: dict[str, list[torch.Tensor]] = {"log_lik": [], "log_p": [], "log_q": []}
            local: tuple[str, ...] = ()
            for _, lw in log_weights_in_chunks(lvm, x, mask, num_particles=num_samples):
                local = lw.local_sites
                for k, v in lw.samples.items():
                    samples.setdefault(k, []).append(v)
                scores["log_lik"].append(lw.log_lik)
                scores["log_p"].append(lw.log_p)
                scores["log_q"].append(lw.log_q)
        merged = {k: torch.cat(v, 1) if k in local else v[0] for k, v in samples.items()}
        return Posterior(
            engine=self.name,
            samples=merged,
            x=x,
            mask=mask,
            log_weights=None,
            local_sites=local,
            # a story's own tensor path may leave log_lik out
            **{
                k: None if any(t is None for t in v) else torch.cat(v, 1) for k, v in scores.items()
            },
        )
