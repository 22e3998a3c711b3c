"""Annealed importance sampling (Neal 2001) with HMC transitions, and its bidirectional bracket.

``AnnealedImportanceSampling`` estimates log p(x) by moving C independent chains from the
proposal (the prior, or the guide) to the posterior through ``num_steps`` intermediate densities
γ_β ∝ q0^(1-β) p(x, z)^β, HMC moves at each, accumulating importance weights on the way. Each
chain's weight is an unbiased estimate of p(x); their spread gives the standard error. The
chains are vectorised, and so are the data where the evidence factorises (Wu et al. 2017 for
VAEs); a story with global latents gets the joint log p(x_1..N).

``bracket`` is bidirectional Monte Carlo (Grosse et al. 2015, 2016): on data simulated from the
model, forward AIS from the proposal gives a stochastic lower bound and reverse AIS from the
simulated latents, an exact posterior draw, a stochastic upper bound. Their gap says how far
the forward estimate can be trusted on data like these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from .._typing import ModelLike
from ..core.checks import check_choice, check_positive_int
from ..core.data import num_data, take_rows
from ..core.errors import UnsupportedModelError
from ..core.memory import row_slices
from ..core.posterior import Posterior
from ..core.results import Evidence, FitResult
from ..core.rng import resolve_seed, seeded
from ..core.stats import log_mean_weight, pareto_khat
from ..models.base import LatentVariableModel, SiteInfo, sample_sites
from ..models.story import as_model
from ._anneal import HMC, Path, anneal, is_point, schedule
from ._fitting import fit_by_gradient, gradient_fit_result
from ._simulate import simulate, template
from ._weights import NO_BROADCAST, joint_over_data, plate_nesting
from .base import Engine
from .objectives import Elbo, refuse_per_datum_weights

__all__ = ["AnnealedImportanceSampling", "Bracket"]


@dataclass(frozen=True)
class Bracket:
    """Bidirectional Monte Carlo on simulated data.

    Attributes
    ----------
    x : torch.Tensor of shape (N, ...)
        The data simulated from the model.
    latents : dict of str to torch.Tensor
        The latent values that generated ``x``: an exact draw from p(z | x).
    lower : Evidence
        Forward AIS: E[log p̂(x)] <= log p(x), a stochastic lower bound.
    upper : Evidence
        Reverse AIS from ``latents``: a stochastic upper bound.
    """

    x: torch.Tensor
    latents: dict[str, torch.Tensor]
    lower: Evidence
    upper: Evidence

    @property
    def gap(self) -> torch.Tensor:
        """upper - lower of the total log evidence, in nats (0-dim)."""
        return self.upper.total - self.lower.total


class AnnealedImportanceSampling(Engine):
    """log p(x) by annealed importance sampling with HMC moves.

    Parameters
    ----------
    proposal : {"prior", "guide"}
        Where the chains start and the path begins: the prior p(z), or the guide q(z | x).
    num_steps : int
        T, the intermediate densities between proposal and posterior.
    num_chains : int
        C, independent chains per datum (per data set, where a global latent couples the
        data); the standard error comes from their spread.
    num_leapfrog : int
        Leapfrog steps per HMC move.
    step_size : float
        The initial leapfrog step size, adapted per chain and datum towards acceptance 0.65.
    schedule : {"sigmoid", "linear"}
        How the inverse temperatures are spaced (sigmoid: Grosse et al. 2015).
    memory_budget : int or None
        Elements a pass may hold; data are annealed in chunks that fit.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x, mask=None):
    ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
    >>> ais = AnnealedImportanceSampling(num_steps=50, num_chains=8)
    >>> ev = ais.log_evidence(model, torch.zeros(5))
    >>> ev.per_datum is None, ev.stderr.shape  # a global latent: one joint number
    (True, torch.Size([]))
    """

    name = "AnnealedImportanceSampling"
    evidence_kind = "estimate"
    handles_discrete_local = False
    alternatives_for_continuous = ("ImportanceSampling", "SVI")
    options = ("proposal", "num_steps", "num_chains", "num_leapfrog", "step_size", "schedule")

    def __init__(
        self,
        proposal: Literal["prior", "guide"] = "prior",
        num_steps: int = 200,
        num_chains: int = 16,
        num_leapfrog: int = 5,
        step_size: float = 0.05,
        schedule: Literal["sigmoid", "linear"] = "sigmoid",
        memory_budget: int | None = None,
    ):
        check_choice("proposal", proposal, ("prior", "guide"))
        check_choice("schedule", schedule, ("sigmoid", "linear"))
        for name, value in (
            ("num_steps", num_steps),
            ("num_chains", num_chains),
            ("num_leapfrog", num_leapfrog),
        ):
            check_positive_int(name, value)
        check_positive_int("memory_budget", memory_budget, allow_none=True)
        if not isinstance(step_size, int | float) or not step_size > 0:
            raise ValueError(f"step_size must be a positive number, got {step_size!r}.")
        self.proposal = proposal
        self.num_steps = num_steps
        self.num_chains = num_chains
        self.num_leapfrog = num_leapfrog
        self.step_size = float(step_size)
        self.schedule = schedule
        self.memory_budget = memory_budget
        self.needs_guide = proposal == "guide"

    @property
    def label(self) -> str:
        return f"AIS {self.proposal}, T={self.num_steps}, C={self.num_chains}"

    # -- what it accepts --------------------------------------------------------------------
    def check_supported(self, model: LatentVariableModel, sites: dict[str, SiteInfo]) -> None:
        latents = [info for info in sites.values() if info.latent]
        discrete = [info for info in latents if info.discrete]
        if discrete:
            # Enumeration only where it accepts the story: every latent discrete
            exact = (
                "Enumeration sums them exactly"
                if len(discrete) == len(latents)
                else "ImportanceSampling(proposal='prior') estimates log p(x) for any story"
            )
            raise UnsupportedModelError(
                f"{self.name} moves latents by HMC, and story '{model.name}' has discrete "
                f"latent sites {[i.name for i in discrete]} ({discrete[0].distribution}); "
                f"{exact}."
            )
        if not any(info.latent for info in sites.values()):
            raise UnsupportedModelError(
                f"story '{model.name}' has no latent site, so there is nothing to anneal; "
                "Enumeration gives its log p(x) exactly."
            )
        super().check_supported(model, sites)

    def check_proposal(self, model, sites, guide) -> None:
        refuse_per_datum_weights(
            "AnnealedImportanceSampling(proposal='guide')", model, sites, guide
        )

    # -- the runs ---------------------------------------------------------------------------
    def _betas(self) -> torch.Tensor:
        return schedule(self.num_steps, self.schedule)

    def _hmc(self) -> HMC:
        return HMC(num_leapfrog=self.num_leapfrog, step_size=self.step_size)

    def _joint(self, lvm, sites, x, mask) -> bool:
        # an observation outside the data plate couples the data as a global latent does
        return joint_over_data(lvm, sites, x, mask, guide=self.proposal == "guide") or any(
            not info.local for info in sites.values()
        )

    def _rank(self, lvm: LatentVariableModel, x, mask) -> int:
        rank = plate_nesting(lvm.trace(x, mask))
        if self.proposal == "guide":
            rank = max(rank, plate_nesting(lvm.trace(x, mask, "guide")))
        return rank

    def _runs(self, lvm, sites, x, mask, progress: bool, betas=None, start=None):
        """Annealing runs over the data (chunks of rows where the evidence factorises): yields
        (rows, log_w, path, log_lik, accept) per chunk."""
        betas = self._betas() if betas is None else betas
        joint = self._joint(lvm, sites, x, mask)
        rank = self._rank(lvm, x, mask)
        n = num_data(x)
        chunks = (
            [slice(0, n)]
            if joint
            else list(row_slices(n, self.num_chains * lvm.working_width(x), self.memory_budget))
        )
        bar = tqdm(total=len(chunks) * (len(betas) - 1), desc="AIS", disable=not progress)
        try:
            for rows in chunks:
                xs, ms = take_rows(x, rows), take_rows(mask, rows)
                path = Path(lvm, xs, ms, self.proposal, self.num_chains, rank, joint)
                try:
                    begin = None if start is None else start(path, rows)
                    log_w, _, log_lik, accept = anneal(
                        path, betas, self._hmc(), start=begin, progress=lambda s: bar.update(1)
                    )
                except (ValueError, RuntimeError) as err:
                    if not any(sign in str(err) for sign in NO_BROADCAST):
                        raise
                    raise UnsupportedModelError(
                        f"{self.name} moves its chains as one batch, a plate left of the "
                        f"story's plates, and story '{lvm.name}' does not broadcast over it "
                        f"({str(err).splitlines()[0]}). Index from the right (x[..., i], "
                        "z.unsqueeze(-1), Vindex), or use ImportanceSampling(proposal='prior')"
                        ", which scores such a story one particle at a time."
                    ) from err
                yield rows, log_w.detach(), path, log_lik, accept
        finally:
            bar.close()

    def _evidence(self, parts, n: int, khat: bool = True) -> Evidence:
        weights = [w for _, w, *_ in parts]
        if weights[0].dim() == 1:  # one weight per chain for the whole data set
            est, se, ess = (v[0] for v in log_mean_weight(weights[0][:, None]))
            k = pareto_khat(weights[0][:, None])[0].to(est.dtype) if khat else None
            return Evidence(
                per_datum=None,
                joint=est,
                num_data=n,
                kind="estimate",
                engine=self.name,
                stderr=se,
                ess=ess,
                khat=k,
                num_particles=self.num_chains,
            )
        w = torch.cat(weights, 1)  # (C, N)
        est, se, ess = log_mean_weight(w)
        return Evidence(
            per_datum=est,
            kind="estimate",
            engine=self.name,
            stderr=se,
            ess=ess,
            khat=pareto_khat(w).to(est.dtype) if khat else None,
            num_particles=self.num_chains,
        )

    def log_evidence(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int | None = 0,
        progress: bool = False,
    ) -> Evidence:
        """Estimate log p(x) by AIS: per datum where the evidence factorises, jointly where a
        global latent (or a guide density over all data) couples the data.

        Returns
        -------
        Evidence
            ``kind="estimate"``: ``per_datum`` (N,) with ``stderr``, ``ess`` and ``khat`` (N,)
            over the C chains; or ``joint`` () with 0-dim ones.
        """
        lvm, x, mask, sites = self.prepare(model, x, mask)
        with seeded(seed):
            parts = list(self._runs(lvm, sites, x, mask, progress))
        return self._evidence(parts, num_data(x))

    def posterior(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        num_samples: int | None = None,
        seed: int | None = 0,
        progress: bool = False,
    ) -> Posterior:
        """The chains' final states with their AIS weights, or unweighted draws resampled from
        them.

        Parameters
        ----------
        num_samples : int, optional
            None returns the C weighted chains; a number returns that many equally weighted
            draws, resampled by the weights (``Posterior.resample``).

        Returns
        -------
        Posterior
            ``samples[site]`` (C, N, ...) for local sites and (C, ...) for global ones,
            ``log_weights`` (C, N), or (C,) where the evidence is joint, and ``log_lik`` (C, N).
        """
        if num_samples is not None:
            check_positive_int("num_samples", num_samples)
        lvm, x, mask, sites = self.prepare(model, x, mask)
        samples: dict[str, list[torch.Tensor]] = {}
        weights, liks, local_sites = [], [], ()
        with seeded(seed):
            for _, log_w, path, _, _ in self._runs(lvm, sites, x, mask, progress):
                values, local_sites, log_lik = path.samples()
                for k, v in values.items():
                    samples.setdefault(k, []).append(v)
                weights.append(log_w)
                liks.append(log_lik)
        joint = weights[0].dim() == 1
        weighted = Posterior(
            engine=self.name,
            samples={k: v[0] if joint else torch.cat(v, 1) for k, v in samples.items()},
            x=x,
            mask=mask,
            log_weights=weights[0] if joint else torch.cat(weights, 1),
            local_sites=local_sites,
            log_lik=None if liks[0] is None else torch.cat(liks, 1),
        )
        if num_samples is None:
            return weighted
        return weighted.resample(num_samples, seed=None if seed is None else seed + 1)

    def fit(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int | None = 0,
        progress: bool = False,
        epochs: int | None = None,
        steps: int | None = None,
        lr: float = 1e-3,
        batch_size: int | None = 100,
    ) -> FitResult:
        """AIS evaluates and does not train: this fits the story's parameters and guide by the
        ELBO (the usual proposal for AIS from the guide), through the one training driver that
        ``SVI("elbo")`` uses.

        Parameters
        ----------
        epochs, steps : int
            Exactly one: passes over the data, or updates.
        lr : float
            Adam's learning rate.
        batch_size : int or None
            Data per minibatch; None uses all of them every step.

        Returns
        -------
        FitResult
            ``objective="elbo"``, ``history`` the minibatch ELBO per datum at every step.
        """
        lvm, x, mask, sites = self.prepare(model, x, mask)
        seed = resolve_seed(seed)
        loop, info, seconds = fit_by_gradient(
            Elbo(1),
            lvm,
            x,
            mask,
            sites,
            engine=self.name,
            label="AIS (ELBO fit)",
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
            epochs=epochs,
            steps=steps,
        )
        return gradient_fit_result(self.name, "elbo", loop, seconds, seed, info)

    # -- bidirectional Monte Carlo ----------------------------------------------------------
    def bracket(
        self,
        model: ModelLike,
        num_data: int,
        *,
        like: torch.Tensor | None = None,
        seed: int | None = 0,
        progress: bool = False,
    ) -> Bracket:
        """Simulate ``num_data`` data from the model and bracket their log evidence.

        The model is run with its observations released (``poutine.uncondition``): the latent
        values z* and the data x it draws are a joint draw, so z* is an exact draw from
        p(z | x). Forward AIS from the proposal gives a stochastic lower bound on log p(x);
        reverse AIS, annealing from z* back to the proposal, a stochastic upper bound.

        Parameters
        ----------
        model : LatentVariableModel or story
            With one observed site that holds the data.
        num_data : int
            N, data to simulate.
        like : torch.Tensor of shape (M, ...), optional
            Data whose rows have the shape of a datum (any M); built-in models with a ``dim``
            need none.
        seed : int or None
        progress : bool

        Returns
        -------
        Bracket
            ``x`` (N, ...), ``latents``, ``lower`` and ``upper`` (Evidence), and ``gap``.
        """
        check_positive_int("num_data", num_data)
        lvm = as_model(model)
        template_x = template(lvm, num_data, like)
        with seeded(seed):
            x, latents = simulate(lvm, template_x)
        lvm, x, _, sites = self.prepare(lvm, x, None)
        state_names = _state_names(self, lvm, x)
        missing = sorted(set(state_names) - set(latents))
        if missing:
            raise UnsupportedModelError(
                f"reverse AIS starts from the simulated latents, and the guide's sites "
                f"{missing} are not latent sites of story '{lvm.name}' (an autoguide's "
                "auxiliary draws); bracket with AnnealedImportanceSampling(proposal='prior')."
            )

        def start(path: Path, rows: slice) -> dict[str, torch.Tensor]:
            init = path.initial()  # the layout of the state under the chains' plate
            joint = path.joint
            out = {}
            for k, v in init.items():
                z = latents[k] if joint else _rows_of(latents[k], path, k, rows)
                out[k] = z.to(v.dtype).expand_as(v).clone()
            return out

        with seeded(None if seed is None else seed + 1):
            lower = self._evidence(list(self._runs(lvm, sites, x, None, progress)), num_data)
        reverse = torch.flip(self._betas(), [0])
        with seeded(None if seed is None else seed + 2):
            parts = list(self._runs(lvm, sites, x, None, progress, betas=reverse, start=start))
        # E[w] = 1 / p(x): log mean(w) estimates -log p(x), and minus it is the upper bound
        backward = self._evidence(parts, num_data, khat=False)
        upper = dataclasses.replace(
            backward,
            per_datum=None if backward.per_datum is None else -backward.per_datum,
            joint=None if backward.joint is None else -backward.joint,
        )
        return Bracket(x=x, latents=latents, lower=lower, upper=upper)


def _state_names(engine: AnnealedImportanceSampling, lvm: LatentVariableModel, x) -> list[str]:
    """The proposal's sites that make up a chain's state."""
    tr = lvm.trace(x, None, "model" if engine.proposal == "prior" else "guide")
    return [n for n, s in sample_sites(tr) if not s["is_observed"] and not is_point(s)]


def _rows_of(value: torch.Tensor, path: Path, name: str, rows: slice) -> torch.Tensor:
    """The rows ``rows`` of a local site's simulated value (its data dim, counted from the
    right of its batch dims)."""
    data_dim, support, _ = path.layout[name]
    pos = value.dim() - support.event_dim + data_dim
    return value.narrow(pos, rows.start, rows.stop - rows.start)
