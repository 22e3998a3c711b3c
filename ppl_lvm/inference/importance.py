"""Importance sampling: ``ImportanceSampling``, from naive Monte Carlo to a learned proposal.

log p(x_n) = log E_{q(z)}[p(x_n, z) / q(z)] is estimated by the log of the mean importance
weight over K particles drawn from a proposal q:

- ``"uniform"``: z uniform over a finite latent space (the lecture's naive Monte Carlo,
  p(x) ≈ |Z| · mean_j p(x, z_j)); it works in theory, not in practice, since most z explain
  nothing;
- ``"prior"``: z ~ p(z), so each weight is the likelihood p(x | z); where the story marks
  discrete sites ``infer={"enumerate": "parallel"}`` and has other latents (a mixture's
  label under global weights and means), only those others are drawn and the marked sites
  are summed exactly inside each weight (Rao–Blackwellised);
- ``"guide"``: z ~ q(z | x), the story's (learned) guide;
- ``"refined"``: for a deep model (``LatentLogJoint``), each datum's own Gaussian, started at
  the guide and fitted to its observed entries (:func:`~ppl_lvm.inference.testtime.refine`):
  the guide fed a zero-filled datum proposes poorly for the observed part alone.

Every estimate comes with its delta-method standard error in log space, the effective sample
size and ArviZ's Pareto k̂ of the weights. Particles go through the shared weighting routine in
one vectorised pass per chunk of data.
"""

from __future__ import annotations

import os
from typing import Literal

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch

from .._typing import ModelLike
from ..core.checks import check_choice, check_positive_int
from ..core.data import num_data, take_rows, zeros
from ..core.errors import UnsupportedModelError
from ..core.logweights import LogWeights
from ..core.memory import check_fits, current_budget
from ..core.posterior import Posterior
from ..core.results import Evidence, FitResult
from ..core.rng import resolve_seed, seeded
from ..core.stats import log_mean_weight, pareto_khat
from ..models.base import (
    LatentVariableModel,
    SiteInfo,
    discrete_state_count,
)
from ..models.capabilities import LatentLogJoint, has
from ._enumops import exact_log_marginal, replayed_posterior
from ._fitting import fit_by_gradient, gradient_fit_result
from ._priorguide import check_prior_draws, sums_enumerated
from ._weights import concat_log_weights, joint_over_data, log_weights, log_weights_in_chunks
from .base import Engine, with_guide
from .objectives import Iwae, refuse_per_datum_weights
from .testtime import infer_latents

#: The largest joint discrete space whose exact log p(x_n) a posterior's log_lik sums
#: (Enumeration's default ``max_states``).
_EXACT_LOG_LIK_STATES = 2**16

__all__ = ["ImportanceSampling", "log_mean_weight"]  # log_mean_weight: from core.stats

Proposal = Literal["guide", "prior", "uniform", "refined"]


def _uniform_guide(sites: dict[str, SiteInfo], data_plate: str, model=None):
    """A guide drawing every local latent site uniformly from its finite support, masked as the
    model masks the site (a site that ``obs_mask`` makes latent only where a value is missing
    scores nothing where it is observed, so its draw must not score there either)."""
    latents = [s for s in sites.values() if s.latent]
    for s in latents:
        if not s.local or not s.discrete or s.num_states is None:
            kind = "continuous" if not s.discrete else "global or infinite"
            raise UnsupportedModelError(
                f"the uniform proposal needs a finite latent space, and site '{s.name}' is "
                f"{kind} ({s.distribution}); use proposal='prior' or 'guide'."
            )
        if s.distribution not in ("Bernoulli", "Categorical"):
            raise UnsupportedModelError(
                f"the uniform proposal draws Bernoulli and Categorical sites; site '{s.name}' "
                f"is {s.distribution}. Use proposal='prior' or 'guide'."
            )

    def site_masks(x, mask) -> dict:
        if model is None:
            return {}
        # the model's own masks at these data, from a run hidden from every outer handler
        with poutine.block():
            trace = poutine.trace(model).get_trace(x, mask)
        return {s.name: trace.nodes[s.name]["mask"] for s in latents if s.name in trace.nodes}

    def guide(x, mask=None):
        n = num_data(x)
        masks = site_masks(x, mask)
        with pyro.plate(data_plate, n, dim=-1):
            for s in latents:
                # batch dims other than the data plate's, then the event
                shape = tuple(s.batch_shape[:-1]) + tuple(s.event_shape)
                if s.distribution == "Bernoulli":
                    d = dist.Bernoulli(zeros(x).add(0.5))
                else:
                    d = dist.Categorical(logits=zeros(x, s.num_states))
                d = d.expand((*shape[: len(shape) - len(s.event_shape)], n, *s.event_shape))
                if masks.get(s.name) is not None:
                    d = d.mask(masks[s.name])
                if s.event_shape:
                    d = d.to_event(len(s.event_shape))
                pyro.sample(s.name, d)

    return guide


class ImportanceSampling(Engine):
    """log p(x_n) estimates by importance sampling, with standard error, ESS and Pareto k̂.

    Parameters
    ----------
    proposal : {"guide", "prior", "uniform", "refined"}
        Where particles come from (see the module docstring).
    refine_steps : int
        Adam steps of each datum's refined proposal (``proposal="refined"`` only).
    num_particles : int
        K, particles per datum.
    chunk_size : int or None
        Data per vectorised pass; None sizes passes by the memory budget: data are chunked so
        that K particles × data × the story's ``working_width`` fit, and a datum whose K
        particles do not fit has them drawn in chunks.
    memory_budget : int or None
        Elements (not bytes) a pass may hold; None uses the budget in force
        (:mod:`ppl_lvm.core.memory`).

    Examples
    --------
    >>> from ppl_lvm import datasets, models, inference
    >>> x = datasets.load("digits").x
    >>> gmm = models.GaussianMixture(64, num_components=3)
    >>> ev = inference.ImportanceSampling("prior", num_particles=100).log_evidence(gmm, x[:5])
    >>> ev.kind, ev.stderr.shape
    ('estimate', torch.Size([5]))
    """

    name = "ImportanceSampling"
    evidence_kind = "estimate"
    options = ("proposal", "num_particles", "chunk_size", "memory_budget", "refine_steps")

    def __init__(
        self,
        proposal: Proposal = "guide",
        num_particles: int = 1000,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        refine_steps: int = 300,
    ):
        check_choice("proposal", proposal, ("guide", "prior", "uniform", "refined"))
        self.refine_steps = check_positive_int("refine_steps", refine_steps)
        check_positive_int("num_particles", num_particles)
        check_positive_int("memory_budget", memory_budget, allow_none=True)
        check_positive_int("chunk_size", chunk_size, allow_none=True)
        self.proposal = proposal
        self.num_particles = num_particles
        self.chunk_size = chunk_size
        self.memory_budget = memory_budget
        self.needs_guide = proposal in ("guide", "refined")

    @property
    def label(self) -> str:
        return f"IS {self.proposal}, K={self.num_particles}"

    def check_proposal(self, model, sites, guide) -> None:
        refuse_per_datum_weights("ImportanceSampling(proposal='guide')", model, sites, guide)

    def _story(self, lvm: LatentVariableModel, sites) -> tuple[LatentVariableModel, str]:
        """The model with the proposal this engine uses, and the routine's proposal mode."""
        if self.proposal == "uniform":
            guide = _uniform_guide(sites, lvm.data_plate, lvm.model)
            return with_guide(lvm, guide), "guide"
        return lvm, self.proposal

    def _weights(self, lvm, sites, x, mask, validate: bool, keep_samples: bool = True):
        story, mode = self._story(lvm, sites)
        for _, lw in log_weights_in_chunks(
            story,
            x,
            mask,
            num_particles=self.num_particles,
            proposal=mode,
            rows_per_chunk=self.chunk_size,
            budget=self.memory_budget,
            validate=validate,
            keep_samples=keep_samples,
        ):
            yield lw

    def _route(self, lvm, sites, x, mask) -> str:
        """How the weights are formed: "summed" (the guide, or the prior, leaves sites the
        story marks for enumeration, summed inside each weight), "joint" (a global latent, or
        a guide density joint over the data, couples the data: one weight per particle for the
        whole data set) or "per_datum"."""
        if self.proposal == "guide":
            guide = lvm.sites(x, mask, "guide")
            left = [s.name for s in sites.values() if s.latent and s.name not in guide]
            if left and all(sites[n].enumerate == "parallel" for n in left):
                return "summed"
        elif self.proposal == "prior" and sums_enumerated(sites):
            check_prior_draws(lvm, x, mask, sites)
            return "summed"
        joint = joint_over_data(lvm, sites, x, mask, guide=self.proposal == "guide")
        return "joint" if joint else "per_datum"

    def _joint_weights(self, lvm, sites, x, mask, route: str, keep_samples: bool = False):
        """K particles' weights when they do not split over data: a LogWeights of the whole
        data set (particles in chunks within the memory budget), or for "summed" the dict of
        :func:`replayed_posterior`."""
        if route == "summed":
            proposal = "prior" if self.proposal == "prior" else "guide"
            return replayed_posterior(
                lvm, x, mask, sites, self.num_particles, self.memory_budget, proposal, keep_samples
            )
        story, mode = self._story(lvm, sites)
        width = story.working_width(x) * num_data(x)
        check_fits(width, f"one particle of all data of story '{lvm.name}'", self.memory_budget)
        per_pass = max(1, min(self.num_particles, current_budget(self.memory_budget) // width))
        parts = []
        for k0 in range(0, self.num_particles, per_pass):
            lw = log_weights(
                story,
                x,
                mask,
                num_particles=min(per_pass, self.num_particles - k0),
                proposal=mode,
                validate=k0 == 0,
            )
            parts.append(lw)
        return concat_log_weights(parts, keep_samples)

    def log_evidence(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int | None = 0,
        khat: bool = True,
    ) -> Evidence:
        """Estimate log p(x_n) for each datum over its observed entries.

        Parameters
        ----------
        model : LatentVariableModel, (model_fn, guide_fn) pair, or model function
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        seed : int or None
        khat : bool
            Fit ArviZ's Pareto k̂ to each datum's weights (a few ms per thousand data).

        Returns
        -------
        Evidence
            ``kind="estimate"`` with ``per_datum``, ``stderr``, ``ess`` and ``khat``, each (N,).
        """
        lvm, x, mask, sites = self.prepare(model, x, mask)
        if self.proposal == "refined":
            return self._refined_evidence(lvm, x, mask, seed)
        route = self._route(lvm, sites, x, mask)
        if route != "per_datum":
            with torch.no_grad(), seeded(seed):
                out = self._joint_weights(lvm, sites, x, mask, route)
            w = out["log_p"] - out["log_q"] if isinstance(out, dict) else out.joint
            # (K,) joint weights: one estimate for the data set, its error bars 0-dim
            per = w.dim() == 2
            est, se, ess = (v if per else v[0] for v in log_mean_weight(w if per else w[:, None]))
            k_hat = pareto_khat(w if per else w[:, None]) if khat else None
            return Evidence(
                per_datum=est if per else None,
                joint=None if per else est,
                num_data=num_data(x),
                kind="estimate",
                engine=self.name,
                stderr=se,
                ess=ess,
                khat=None if k_hat is None else (k_hat if per else k_hat[0]).to(est.dtype),
                num_particles=self.num_particles,
            )
        parts: list[tuple[torch.Tensor, ...]] = []
        with torch.no_grad(), seeded(seed):
            for lw in self._weights(lvm, sites, x, mask, validate=True, keep_samples=False):
                est, se, ess = log_mean_weight(lw.local)
                k_hat = pareto_khat(lw.local) if khat else None
                parts.append((est, se, ess, k_hat))
        cat = [torch.cat([p[i] for p in parts]) for i in range(3)]
        return Evidence(
            per_datum=cat[0],
            kind="estimate",
            engine=self.name,
            stderr=cat[1],
            ess=cat[2],
            khat=torch.cat([p[3] for p in parts]).to(cat[0].dtype) if khat else None,
            num_particles=self.num_particles,
        )

    def _refined_evidence(self, lvm, x, mask, seed) -> Evidence:
        self._refuse_refined(lvm, "log_evidence")
        seen = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
        with seeded(seed), lvm.scoped():
            draws = infer_latents(
                lvm, x, seen, "refine", num_particles=self.num_particles,
                refine_steps=self.refine_steps,
            )  # fmt: skip
        return Evidence(
            per_datum=draws.log_evidence,
            kind="estimate",
            engine=self.name,
            stderr=draws.stderr,
            ess=draws.ess,
            khat=draws.khat.to(draws.log_evidence.dtype),
            num_particles=self.num_particles,
        )

    def _refuse_refined(self, lvm, what: str) -> None:
        if what != "log_evidence" or not has(lvm, LatentLogJoint):
            raise UnsupportedModelError(
                f"ImportanceSampling(proposal='refined').{what} needs a deep model with "
                f"log p(x_o, z) at any z (LatentLogJoint); {lvm.name} "
                + ("has none" if what == "log_evidence" else "is not estimated that way")
                + ": use proposal='guide', AnnealedImportanceSampling, or for draws of the "
                "missing entries ppl_lvm.complete(model, x, mask, method='refine')."
            )

    def posterior(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        num_samples: int | None = None,
        seed: int | None = 0,
    ) -> Posterior:
        """Weighted draws from the proposal; ``.resample()`` turns them into unweighted ones.

        Parameters
        ----------
        num_samples : int, optional
            Ignored unless given, when it must equal ``num_particles`` (the draws are the
            particles).

        Returns
        -------
        Posterior
            ``samples[site]`` of shape (K, N, ...), ``log_weights`` of shape (K, N), and
            ``log_p``, ``log_q`` and ``log_lik`` (K, N) with ``log_weights = log_p - log_q``.
            ``log_lik`` is log p(x_n | z_kn) given each particle, except when every latent site
            of the story is marked for enumeration (a mixture's label): it is then the exact
            log p(x_n) in every row, the label summed out (as ``Enumeration`` computes it), or
            the conditional one where the joint space has more than 2^16 states.
        """
        if num_samples is not None and num_samples != self.num_particles:
            raise ValueError(
                f"the draws are the particles: num_samples={num_samples} differs from "
                f"num_particles={self.num_particles}; build ImportanceSampling(num_particles="
                f"{num_samples}), or call .resample(num_samples) on the result."
            )
        lvm, x, mask, sites = self.prepare(model, x, mask)
        if self.proposal == "refined":
            self._refuse_refined(lvm, "posterior")
        if self.proposal == "refined":
            return self._refined_evidence(lvm, x, mask, seed)
        route = self._route(lvm, sites, x, mask)
        if route != "per_datum":
            with torch.no_grad(), seeded(seed):
                out = self._joint_weights(lvm, sites, x, mask, route, keep_samples=True)
            if isinstance(out, dict):
                return Posterior(
                    engine=self.name, x=x, mask=mask, log_weights=out["log_p"] - out["log_q"], **out
                )
            return Posterior(
                engine=self.name,
                samples=out.samples,
                x=x,
                mask=mask,
                log_weights=out.joint,
                local_sites=out.local_sites,
                log_lik=out.log_lik,
                log_p=out.joint_log_p,
                log_q=out.joint_log_q,
            )
        with torch.no_grad(), seeded(seed):
            chunks: list[LogWeights] = list(self._weights(lvm, sites, x, mask, validate=True))
        samples = {k: torch.cat([c.samples[k] for c in chunks], 1) for k in chunks[0].samples}
        log_p = torch.cat([c.log_p for c in chunks], 1)
        log_q = torch.cat([c.log_q for c in chunks], 1)
        log_lik = None
        if all(c.log_lik is not None for c in chunks):
            log_lik = torch.cat([c.log_lik for c in chunks], 1)
        latents = [info for info in sites.values() if info.latent]
        states = discrete_state_count(sites)
        enumerable = states is not None and states <= _EXACT_LOG_LIK_STATES
        if latents and enumerable and all(info.enumerate == "parallel" for info in latents):
            with torch.no_grad():
                exact = exact_log_marginal(lvm, x, mask)  # (N,)
            log_lik = exact.to(log_p.dtype).expand(log_p.shape)
        return Posterior(
            engine=self.name,
            samples=samples,
            x=x,
            mask=mask,
            log_weights=log_p - log_q,
            local_sites=chunks[0].local_sites,
            log_lik=log_lik,
            log_p=log_p,
            log_q=log_q,
        )

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
        lr: float = 1e-3,
        optimizer: str = "adam",
        batch_size: int | None = 100,
        validation: torch.Tensor | tuple | None = None,
        eval_every: int = 1,
        patience: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
        resume: str | os.PathLike | None = None,
        initialize: bool = True,
        device: str | torch.device | None = None,
    ) -> FitResult:
        """Maximise the importance-weighted (IWAE) bound with this engine's K particles.

        The proposal is what is learned, so it must be the guide. The loop and the arguments
        are those of :meth:`SVI.fit <ppl_lvm.inference.SVI.fit>` with ``objective="iwae"``,
        plus the optimiser's ``lr``, ``optimizer`` and ``batch_size``.
        """
        if self.proposal != "guide":
            raise UnsupportedModelError(
                f"fitting maximises the importance-weighted bound of a learned proposal; "
                f"proposal='{self.proposal}' has nothing to learn. Use proposal='guide'."
            )
        objective = Iwae(self.num_particles)
        lvm, x, mask, sites = self.prepare(model, x, mask)
        seed = resolve_seed(seed)
        objective.check_supported(lvm, sites)

        def validate(lvm: LatentVariableModel, vx: torch.Tensor, vm: torch.Tensor | None) -> float:
            per = []
            with torch.no_grad(), lvm.scoped():
                chunks = log_weights_in_chunks(
                    lvm, vx, vm, num_particles=self.num_particles, keep_samples=False
                )
                for rows, lw in chunks:
                    per.append(
                        objective.per_datum(
                            lvm, lw, take_rows(vx, rows), take_rows(vm, rows), num_data(vx)
                        )
                    )
            return float(torch.cat(per).mean())

        loop, info, seconds = fit_by_gradient(
            objective,
            lvm,
            x,
            mask,
            sites,
            engine=self.name,
            label="ImportanceSampling.fit",
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            validate=validate,
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
        return gradient_fit_result(self.name, "iwae", loop, seconds, seed, info)
