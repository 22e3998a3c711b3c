"""Stochastic variational inference: ``SVI``.

Three objectives share one training loop:

- ``"elbo"``: the evidence lower bound, E_q[log p(x, z) - log q(z | x)], estimated with
  ``num_particles`` vectorised particles (Pyro's ``Trace_ELBO``, or ``TraceEnum_ELBO`` when the
  model marks discrete sites for enumeration; a built-in model's own tensor path otherwise);
- ``"meanfield"``: the same bound with the KL term in closed form where one exists
  (``TraceMeanField_ELBO``, or the model's ``analytic_kl``);
- ``"iwae"``: the importance-weighted bound log (1/K) Σ_k w_k from the shared weighting routine,
  with a VIMCO score-function term for guide sites that cannot be reparameterised, or, with
  ``estimator="dreg"``, the doubly reparameterised gradient of Tucker et al. (2018) for
  amortised Gaussian guides.

Minibatches subsample the data plate and scale every local site by N / B, so each step is an
unbiased estimate of the full-data objective. Training shows a tqdm bar, checks every loss for
NaN, can stop early on a validation bound, and checkpoints so that a resumed run equals an
uninterrupted one.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger
from tqdm.auto import tqdm

from .._typing import ModelLike
from ..core.checks import check_data
from ..core.errors import UnsupportedModelError
from ..core.posterior import Posterior
from ..core.results import Evidence, FitResult
from ..core.rng import seeded
from ..models.base import DATA_PLATE, LatentVariableModel, SiteInfo
from ._weights import LogWeights, log_weights, plate_nesting
from .base import Engine

__all__ = ["SVI"]

Objective = Literal["elbo", "meanfield", "iwae"]
Estimator = Literal["standard", "dreg"]
_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


class _ScaleLocal(Messenger):
    """Scales every site inside the data plate by N / B, for minibatches."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def _process_message(self, msg):
        if any(f.name == DATA_PLATE for f in msg["cond_indep_stack"]):
            msg["scale"] = self.scale * msg["scale"]


def iwae_bound(local: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k exp(local_k) per datum: ``local`` (K, N) -> (N,)."""
    return torch.logsumexp(local, 0) - math.log(local.shape[0])


def _vimco_signal(local: torch.Tensor) -> torch.Tensor:
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
        Minibatch size B; None uses the whole data set every step.
    estimator : {"standard", "dreg"}
        The gradient estimator of the IWAE objective. "dreg" (doubly reparameterised; Tucker,
        Lawson, Gu & Maddison 2018) drops the score term of the guide's gradient and weights
        the path term by the squared normalised weights, which keeps the guide's gradient
        signal from vanishing as K grows. It has the same expectation as the standard
        estimator, needs a reparameterised guide whose tensor path can detach log q
        (``particle_log_weights(..., stop_q_grad=True)``, as the VAEs have), and leaves the
        model's gradient unchanged.

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

    def __init__(
        self,
        objective: Objective = "elbo",
        num_particles: int = 1,
        optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
        lr: float = 1e-3,
        batch_size: int | None = 100,
        estimator: Estimator = "standard",
    ):
        if objective not in ("elbo", "meanfield", "iwae"):
            raise ValueError(f"objective must be 'elbo', 'meanfield' or 'iwae', got {objective!r}.")
        for label, value in (("num_particles", num_particles), ("batch_size", batch_size)):
            if value is None and label == "batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}.")
        if isinstance(optimizer, str) and optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(_OPTIMIZERS)} or a callable, got {optimizer!r}."
            )
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}.")
        if estimator not in ("standard", "dreg"):
            raise ValueError(f"estimator must be 'standard' or 'dreg', got {estimator!r}.")
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

    def __repr__(self) -> str:
        return (
            f"SVI(objective={self.objective!r}, num_particles={self.num_particles}, "
            f"optimizer={self.optimizer!r}, lr={self.lr}, batch_size={self.batch_size}, "
            f"estimator={self.estimator!r})"
        )

    # -- capabilities ----------------------------------------------------------------------
    def check_supported(self, model: LatentVariableModel, sites: dict[str, SiteInfo]) -> None:
        super().check_supported(model, sites)
        if self.objective == "iwae":
            globals_ = [s.name for s in sites.values() if s.latent and not s.local]
            if globals_:
                raise UnsupportedModelError(
                    f"the IWAE bound here is per datum, and story '{model.name}' has global "
                    f"latent sites {globals_}; use objective='elbo'."
                )
        if self.estimator == "dreg" and not _accepts(model, "particle_log_weights", "stop_q_grad"):
            raise UnsupportedModelError(
                f"estimator='dreg' needs a reparameterised guide whose log q can be evaluated "
                f"with its parameters detached, and story '{model.name}' has no "
                "particle_log_weights(..., stop_q_grad=True); use estimator='standard'."
            )

    @staticmethod
    def _enumerated(sites: dict[str, SiteInfo]) -> bool:
        return any(s.latent and s.enumerate == "parallel" for s in sites.values())

    @staticmethod
    def _fast(model: LatentVariableModel) -> bool:
        return hasattr(model, "particle_log_weights")

    # -- the objective on one batch --------------------------------------------------------
    def _step_objective(
        self,
        lvm: LatentVariableModel,
        xb: torch.Tensor,
        mb: torch.Tensor | None,
        num_data: int,
        rank: int,
        enumerated: bool,
    ) -> torch.Tensor:
        """A differentiable estimate of the full-data objective divided by N (a scalar)."""
        scale = num_data / xb.shape[0]
        k = self.num_particles
        if self.objective == "meanfield" and hasattr(lvm, "meanfield_terms") and not enumerated:
            # the leanest step: E_q log p(x | z) and the closed-form KL from one encoder pass
            with lvm.scoped():
                log_lik, kl = lvm.meanfield_terms(xb, mb, k)
            return scale * (log_lik.mean(0) - kl).sum() / num_data
        if self.estimator == "dreg":
            with lvm.scoped():
                lw = lvm.particle_log_weights(xb, mb, k, stop_q_grad=True)
            return scale * _dreg_surrogate(lw).sum() / num_data
        if self.objective == "iwae" or (self._fast(lvm) and not enumerated):
            with lvm.scoped():
                lw = log_weights(
                    lvm, xb, mb, num_particles=k, validate=False, max_plate_nesting=rank
                )
                return self._surrogate(lvm, lw, xb, mb, scale) / num_data
        elbo_cls = (
            TraceEnum_ELBO
            if enumerated
            else (TraceMeanField_ELBO if self.objective == "meanfield" else Trace_ELBO)
        )
        elbo = elbo_cls(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=rank)
        scaler = _ScaleLocal(scale)
        with lvm.scoped():
            loss = elbo.differentiable_loss(scaler(lvm.model), scaler(lvm.guide), xb, mb)
        return -loss / num_data

    def _surrogate(self, lvm, lw: LogWeights, xb, mb, scale: float) -> torch.Tensor:
        """Objective (with score-function terms where needed) for the whole data set."""
        local = lw.local  # (K, B)
        global_part = (lw.global_log_p - lw.global_log_q).mean()
        if self.objective == "iwae":
            per = iwae_bound(local)
            if lw.log_q_score is not None:
                per = per + (_vimco_signal(local) * lw.log_q_score).sum(0)
            return scale * per.sum()
        analytic = self.objective == "meanfield" and hasattr(lvm, "analytic_kl")
        if analytic:
            kl = lvm.analytic_kl(xb, mb)  # (B,)
            per = lw.log_lik.mean(0) - kl
        else:
            per = local.mean(0)
        if lw.log_q_score is not None:
            # score-function term for discrete guide sites; with the KL in closed form only the
            # likelihood is left to it. A leave-one-out baseline keeps it unbiased (K >= 2).
            reward = (lw.log_lik if analytic else local).detach()
            k = reward.shape[0]
            baseline = (reward.sum(0, keepdim=True) - reward) / (k - 1) if k > 1 else 0.0
            per = per + ((reward - baseline) * lw.log_q_score).mean(0)
        return scale * per.sum() + global_part

    # -- fit ---------------------------------------------------------------------------------
    def fit(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int = 0,
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
        progress: bool = True,
    ) -> FitResult:
        """Maximise the objective by stochastic gradient ascent over minibatches.

        Parameters
        ----------
        model : LatentVariableModel, (model_fn, guide_fn) pair
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        seed : int
            Seeds the batch order and every particle draw.
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
            ``checkpoint_every`` steps and at the end.
        resume : path, optional
            A checkpoint to continue from; with the same arguments the result equals an
            uninterrupted run.
        initialize : bool
            Call the model's ``initialize(x, mask, seed)`` first (e.g. the output bias at the
            logit of the data mean); ignored when resuming.
        device : str or torch.device, optional
            Train there ("cuda" when available); the model is moved and stays there.
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        FitResult
            ``history``: the minibatch objective per datum at every step.
        """
        if (epochs is None) == (steps is None):
            raise ValueError("give exactly one of epochs or steps, e.g. fit(..., epochs=20).")
        for label, value in (("epochs", epochs), ("steps", steps)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{label} must be a positive int, got {value!r}.")
        if patience is not None and validation is None:
            raise ValueError("patience needs validation data: fit(..., validation=x_val).")
        lvm, x, mask, sites = self.prepare(model, x, mask)
        dev = _resolve_device(device, x)
        if any(p.device != dev for p in lvm.parameters()):
            lvm.to(dev)
        x = x.to(dev)
        mask = None if mask is None else mask.to(dev)
        val = None
        if validation is not None:
            vx, vm = validation if isinstance(validation, tuple) else (validation, None)
            vx, vm = check_data(vx, vm)
            val = (vx.to(dev), None if vm is None else vm.to(dev))

        n = x.shape[0]
        batch = n if self.batch_size is None else min(self.batch_size, n)
        per_epoch = math.ceil(n / batch)
        total = steps if steps is not None else epochs * per_epoch
        enumerated = self._enumerated(sites)
        if self._fast(lvm) and not enumerated:
            rank = 1  # the model's own tensor path needs no plate bookkeeping
        else:
            mb0 = None if mask is None else mask[:batch]
            rank = max(
                plate_nesting(lvm.trace(x[:batch], mb0)),
                plate_nesting(lvm.trace(x[:batch], mb0, "guide")),
            )
        t0 = time.perf_counter()
        with seeded(seed):
            state = None
            if resume is not None:
                state = torch.load(resume, map_location=dev, weights_only=False)
                lvm.load_state_dict(state["model"])
            elif initialize and hasattr(lvm, "initialize"):
                lvm.initialize(x, mask, seed)
            # parameters exist once model and guide have run
            lvm.sites(x[:batch], None if mask is None else mask[:batch], "guide")
            params = lvm.trainable_parameters()
            if not params:
                raise UnsupportedModelError(
                    f"story '{lvm.name}' has no parameters to fit; declare them with "
                    "pyro.param or as module parameters."
                )
            optim = self._make_optimizer(params)
            gen = torch.Generator(device="cpu").manual_seed(seed)
            step, history, perm, pos = 0, [], torch.randperm(n, generator=gen), 0
            val_history: list[tuple[int, float]] = []
            best = (-math.inf, None)
            stale = 0
            if state is not None:
                optim.load_state_dict(state["optimizer"])
                torch.set_rng_state(state["torch_rng"])
                gen.set_state(state["batch_rng"])
                step, history, perm, pos = (
                    state["step"],
                    list(state["history"]),
                    state["perm"],
                    state["pos"],
                )
                val_history = list(state["validation"])
                best = (state["best_value"], state["best_state"])
                stale = state["stale"]
            # a snapshot every `snapshot_every` steps, not every step: copying every parameter
            # each step costs a few percent of a VAE step, for a rare event
            snapshot_every = 50
            last_good = [p.detach().clone() for p in params]
            good_step = step
            bar = tqdm(
                total=total,
                initial=step,
                desc=f"SVI {self.objective}",
                disable=not progress,
                leave=False,
            )
            stopped_early = False

            def save() -> None:  # reads the loop's current state when called
                self._save(
                    checkpoint, lvm, optim, gen, step, history, perm, pos, val_history, best, stale
                )

            try:
                while step < total:
                    if pos >= n:
                        perm, pos = torch.randperm(n, generator=gen), 0
                    idx = perm[pos : pos + batch].to(dev)
                    pos += batch
                    xb = x[idx]
                    mb = None if mask is None else mask[idx]
                    optim.zero_grad(set_to_none=True)
                    obj = self._step_objective(lvm, xb, mb, n, rank, enumerated)
                    value = obj.detach().item()
                    if not math.isfinite(value):
                        with torch.no_grad():
                            for p, good in zip(params, last_good, strict=True):
                                p.copy_(good)
                        raise FloatingPointError(
                            f"SVI.fit: the {self.objective} objective was {value} at step "
                            f"{step}; the parameters of step {good_step}, the last finite "
                            "snapshot, were restored. Lower lr, or check the data scale."
                        )
                    (-obj).backward()
                    if step % snapshot_every == 0 and step != good_step:
                        with torch.no_grad():
                            for p, good in zip(params, last_good, strict=True):
                                good.copy_(p)
                        good_step = step
                    optim.step()
                    history.append(value)
                    step += 1
                    bar.update(1)
                    if step % 20 == 0:
                        bar.set_postfix({self.objective: f"{value:.3f}"})
                    unit = per_epoch if epochs is not None else 1
                    if val is not None and step % (eval_every * unit) == 0:
                        v = self._mean_bound(lvm, *val)
                        val_history.append((step, v))
                        if v > best[0]:
                            best, stale = (v, copy.deepcopy(lvm.state_dict())), 0
                        else:
                            stale += 1
                        if patience is not None and stale >= patience:
                            stopped_early = True
                            break
                    if checkpoint is not None and step % checkpoint_every == 0:
                        save()
            except KeyboardInterrupt:
                # an interrupted run keeps its progress: resume=checkpoint continues it exactly
                if checkpoint is not None:
                    save()
                raise
            finally:
                bar.close()
            if checkpoint is not None:
                save()
            if stopped_early and best[1] is not None:
                lvm.load_state_dict(best[1])
        return FitResult(
            engine=self.name,
            objective=self.objective,
            history=torch.tensor(history, dtype=torch.float64),
            seconds=time.perf_counter() - t0,
            num_steps=step,
            converged=None,
            seed=seed,
            info={
                "validation": val_history,
                "stopped_early": stopped_early,
                "batch_size": batch,
                "epochs": step / per_epoch,
                "device": str(dev),
            },
        )

    def _make_optimizer(self, params) -> torch.optim.Optimizer:
        if isinstance(self.optimizer, str) and self.optimizer in ("adam", "adamw"):
            # the fused kernel updates every tensor in one pass: about a fifth of a VAE epoch on
            # CPU. Older torch, or parameters it cannot fuse, take the default implementation.
            try:
                return _OPTIMIZERS[self.optimizer](params, lr=self.lr, fused=True)
            except (RuntimeError, TypeError, ValueError):
                pass
        factory = _OPTIMIZERS[self.optimizer] if isinstance(self.optimizer, str) else self.optimizer
        return factory(params, lr=self.lr)

    @staticmethod
    def _save(path, lvm, optim, gen, step, history, perm, pos, val_history, best, stale) -> None:
        state = {
            "model": lvm.state_dict(),
            "optimizer": optim.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "batch_rng": gen.get_state(),
            "step": step,
            "history": history,
            "perm": perm,
            "pos": pos,
            "validation": val_history,
            "best_value": best[0],
            "best_state": best[1],
            "stale": stale,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)  # a crash mid-write never leaves a broken checkpoint

    # -- evaluation ----------------------------------------------------------------------------
    def _per_datum(
        self, lvm: LatentVariableModel, x, mask, num_particles: int, chunk: int
    ) -> torch.Tensor:
        out = []
        for start in range(0, x.shape[0], chunk):
            xb = x[start : start + chunk]
            mb = None if mask is None else mask[start : start + chunk]
            with lvm.scoped():
                lw = log_weights(lvm, xb, mb, num_particles=num_particles, validate=False)
            if self.objective == "iwae":
                per = iwae_bound(lw.local)
            elif self.objective == "meanfield" and hasattr(lvm, "analytic_kl"):
                with lvm.scoped():
                    per = lw.log_lik.mean(0) - lvm.analytic_kl(xb, mb)
            else:
                per = lw.local.mean(0)
            # a global term is shared equally among the data, so the total is the bound
            per = per + (lw.global_log_p - lw.global_log_q).mean() / x.shape[0]
            out.append(per.detach())
        return torch.cat(out)

    def _mean_bound(self, lvm, x, mask) -> float:
        with torch.no_grad():
            return float(self._per_datum(lvm, x, mask, self.num_particles, _chunk(x, 1)).mean())

    def log_evidence(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        num_particles: int | None = None,
        seed: int | None = 0,
    ) -> Evidence:
        """The per-datum lower bound: the ELBO, or the IWAE-K bound for ``objective="iwae"``.

        Parameters
        ----------
        model, x, mask
            As for :meth:`fit`; ``x`` (N, D).
        num_particles : int, optional
            Particles per datum; defaults to this engine's ``num_particles``.
        seed : int or None

        Returns
        -------
        Evidence
            ``kind="lower_bound"``, ``per_datum`` of shape (N,).
        """
        lvm, x, mask, sites = self.prepare(model, x, mask)
        if self._enumerated(sites):
            raise UnsupportedModelError(
                f"story '{lvm.name}' sums discrete sites by enumeration; its exact per-datum "
                "log p(x) comes from inference.Enumeration().log_evidence."
            )
        k = self.num_particles if num_particles is None else num_particles
        lvm.sites(x[:1], None if mask is None else mask[:1], "guide")
        with torch.no_grad(), seeded(seed):
            per = self._per_datum(lvm, x, mask, k, _chunk(x, k))
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
        if self._enumerated(sites) or has_global:
            from .enumeration import replayed_posterior

            with torch.no_grad(), seeded(seed):
                out = replayed_posterior(lvm, x, mask, sites, num_samples)
            return Posterior(engine=self.name, x=x, mask=mask, log_weights=None, **out)
        with torch.no_grad(), seeded(seed):
            samples: dict[str, list[torch.Tensor]] = {}
            scores: dict[str, list[torch.Tensor]] = {"log_lik": [], "log_p": [], "log_q": []}
            local: tuple[str, ...] = ()
            for start in range(0, x.shape[0], _chunk(x, num_samples)):
                xb = x[start : start + _chunk(x, num_samples)]
                mb = None if mask is None else mask[start : start + len(xb)]
                with lvm.scoped():
                    lw = log_weights(lvm, xb, mb, num_particles=num_samples, validate=False)
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


def _dreg_surrogate(lw: LogWeights) -> torch.Tensor:
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


def _accepts(obj: object, method: str, argument: str) -> bool:
    """Whether ``obj.method`` exists and takes the keyword ``argument``."""
    fn = getattr(obj, method, None)
    return fn is not None and argument in inspect.signature(fn).parameters


def _chunk(x: torch.Tensor, num_particles: int, budget: int = 2**24) -> int:
    """Data per chunk so that particles x data x features stays near ``budget`` numbers."""
    return max(1, min(x.shape[0], budget // max(1, num_particles * x.shape[1])))


def _resolve_device(device: str | torch.device | None, x: torch.Tensor) -> torch.device:
    if device is None:
        return x.device
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available here.")
    return dev
