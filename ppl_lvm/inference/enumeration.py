"""Exact inference by enumerating the discrete latents: ``Enumeration``.

log p(x_n) = log Σ_z p(x_n, z) is computed exactly, per datum, by enumerating every local
discrete site in parallel (Pyro's ``poutine.enum``) and contracting the factors with variable
elimination (the operations of :mod:`ppl_lvm.inference._enumops`). Built-in mixtures declare a
direct tensor path (``EnumeratedLogJoint``), which gives the same numbers without tracing, and
closed-form M-steps for EM (``ClosedFormMStep``).

Pyro's handlers mean what they mean under ``TraceEnum_ELBO`` (:mod:`._contract`): a
``poutine.scale`` multiplies each datum's log-sum, a datum masked out with ``poutine.mask`` or
``obs_mask`` contributes nothing, and a chain written with ``pyro.markov`` needs only the states
live at one step (Pyro's enumeration recycles its dims), not H^T.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Literal

import torch
from sklearn.exceptions import ConvergenceWarning
from tqdm.auto import tqdm

from .._typing import ModelLike
from ..core.checks import check_choice, check_positive_int, refuse_all_masked
from ..core.data import num_data, take_rows, zeros
from ..core.errors import UnsupportedModelError
from ..core.posterior import Posterior
from ..core.results import Evidence, FitResult
from ..core.rng import resolve_seed, seeded
from ..models.base import DATA_PLATE, LatentVariableModel, SiteInfo, discrete_state_count
from ..models.capabilities import (
    ClosedFormMStep,
    EnumeratedLogJoint,
    Initializable,
    has,
)
from . import _loop
from ._enumops import (
    enum_trace,
    enumerated_states,
    exact_draws,
    exact_log_marginal,
    joint_log_marginal,
    replayed_posterior,
    site_marginals,
    state_values,
    twice,
)
from .base import Engine, with_guide

__all__ = ["Enumeration"]


def _log_prob_of(probs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """log p of the drawn states ``idx`` (S, N, *inner plates) under the marginals ``probs``
    (N, *inner plates, K), summed over inner plates: (S, N)."""
    lp = probs.log().expand(idx.shape + probs.shape[-1:]).gather(-1, idx.unsqueeze(-1))
    return lp.squeeze(-1).reshape(idx.shape[0], idx.shape[1], -1).sum(-1)


def _may_recycle(sites: dict[str, SiteInfo]) -> bool:
    """Whether enumeration may hold fewer states at once than the joint space: several
    discrete sites (a pyro.markov chain), or a site whose elements sit in inner plates."""
    discrete = [s for s in sites.values() if s.latent and s.local and s.discrete]
    return len(discrete) > 1 or any(
        s.elements_per_datum > math.prod(s.event_shape) for s in discrete
    )


def _format_states(sites: dict[str, SiteInfo], total: int) -> str:
    parts = [
        f"{s.num_states}^{s.elements_per_datum}" if s.elements_per_datum > 1 else f"{s.num_states}"
        for s in sites.values()
        if s.latent and s.local and s.discrete
    ]
    return f"{' × '.join(parts)} = {total:,} joint states per datum"


def _coupled(sites: dict[str, SiteInfo]) -> bool:
    """Whether a global site (a discrete latent, or an observation outside the data plate)
    couples the data, so that log p(x) is one joint sum."""
    return any(not s.local for s in sites.values())


def _no_guide(x, mask=None) -> None:
    """Every latent is enumerated: nothing to propose."""


class Enumeration(Engine):
    """Exact inference over local discrete latents: exact log p(x), p(z | x), EM and gradients.

    Parameters
    ----------
    max_states : int
        The largest joint discrete space per datum it will sum; a larger one is refused before
        any work, with its size in the message.

    Examples
    --------
    >>> from ppl_lvm import datasets, models, inference
    >>> ds = datasets.load("digits")
    >>> gmm = models.GaussianMixture(dim=64, num_components=10)
    >>> fit = inference.Enumeration().fit(gmm, ds.x, method="em", seed=0)
    >>> ev = inference.Enumeration().log_evidence(gmm, ds.x)
    >>> ev.kind
    'exact'
    """

    name = "Enumeration"
    evidence_kind = "exact"
    handles_continuous_local = False
    alternatives_for_continuous = ("ImportanceSampling(proposal='prior')",)
    options = ("max_states",)

    def __init__(self, max_states: int = 2**16):
        self.max_states = check_positive_int("max_states", max_states)

    # -- refusals --------------------------------------------------------------------------
    def check_supported(self, model: LatentVariableModel, sites: dict[str, SiteInfo]) -> None:
        super().check_supported(model, sites)
        continuous = [s.name for s in sites.values() if s.latent and not s.discrete]
        if continuous:
            raise UnsupportedModelError(
                f"Enumeration sums discrete latents exactly, and story '{model.name}' has "
                f"continuous latent sites {continuous}, which no sum covers. Estimate log p(x) "
                "with ImportanceSampling(proposal='prior'), or bound it by variational "
                "inference with a guide that has spread."
            )
        infinite = [
            s.name for s in sites.values() if s.latent and s.discrete and s.num_states is None
        ]
        if infinite:
            raise UnsupportedModelError(
                f"Enumeration needs a finite support, and sites {infinite} have none; estimate "
                "log p(x) with ImportanceSampling(proposal='prior')."
            )
        total = discrete_state_count(sites)
        if total is not None and total > self.max_states and not _may_recycle(sites):
            raise UnsupportedModelError(
                f"the joint discrete space of story '{model.name}' has "
                f"{_format_states(sites, total)}, more than max_states={self.max_states:,} "
                "that Enumeration will sum; estimate log p(x) with ImportanceSampling or bound "
                "it with SVI instead."
            )

    def prepare(self, model, x, mask=None):
        """As :meth:`Engine.prepare`; a story with several discrete sites (or sites in inner
        plates) whose joint space exceeds ``max_states`` is then traced once more and refused
        only if enumeration must hold that many states at once: a chain written with
        ``pyro.markov`` needs only the states live at one step."""
        lvm, x, mask, sites = super().prepare(model, x, mask)
        declared = lvm.declared_subsample(x, mask)
        if declared is not None:
            raise UnsupportedModelError(
                f"story '{lvm.name}' declares subsample_size={declared} in plate "
                f"'{lvm.data_plate}', and Enumeration sums every datum in one pass; remove "
                "subsample_size (pyro.plate(..., len(x)) as ind keeps x[ind] working, and "
                "SVI.fit(batch_size=B) still minibatches through the plate's indices), or "
                "estimate log p(x) with ImportanceSampling, which takes the story as it is."
            )
        total = discrete_state_count(sites)
        if total is not None and total > self.max_states:
            live = enumerated_states(lvm, x, mask, sites)
            if live > self.max_states:
                raise UnsupportedModelError(
                    f"story '{lvm.name}' needs {live:,} joint discrete states at once per "
                    f"datum ({_format_states(sites, total)} in all), more than max_states="
                    f"{self.max_states:,} that Enumeration will sum. If its sites form a chain, "
                    "write the loop with pyro.markov, so that each step holds only the states "
                    "live at once; otherwise estimate log p(x) with ImportanceSampling or bound "
                    "it with SVI."
                )
        return lvm, x, mask, sites

    def log_evidence(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int | None = 0,
    ) -> Evidence:
        """Exact log p(x_n) per datum, with every local discrete latent summed out.

        Parameters
        ----------
        model : LatentVariableModel, (model_fn, guide_fn) or model function
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        seed : int or None
            Ignored: the sum is exact. Every engine takes one, so callers need not ask.

        Returns
        -------
        Evidence
            ``kind="exact"``, ``per_datum`` of shape (N,), ``stderr`` zeros.
        """
        lvm, x, mask, sites = self.prepare(model, x, mask)
        if _coupled(sites):
            with torch.no_grad():
                total = joint_log_marginal(lvm, x, mask)
            return Evidence(
                per_datum=None,
                joint=total,
                num_data=num_data(x),
                kind="exact",
                engine=self.name,
                stderr=torch.zeros_like(total),
            )
        with torch.no_grad():
            per = exact_log_marginal(lvm, x, mask)
        return Evidence(
            per_datum=per.detach(), kind="exact", engine=self.name, stderr=torch.zeros_like(per)
        )

    def posterior(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        num_samples: int = 1000,
        seed: int | None = 0,
        temperature: Literal[0, 1] = 1,
    ) -> Posterior:
        """Exact p(z | x): probabilities of each discrete site, and joint draws.

        Parameters
        ----------
        model, x, mask
            As for :meth:`log_evidence`.
        num_samples : int
            S, draws per datum.
        temperature : {0, 1}
            1 draws from p(z | x) (forward filtering, backward sampling); 0 gives the MAP
            assignment (Viterbi) in every draw.
        seed : int or None

        Returns
        -------
        Posterior
            ``probs[site]`` of shape (N, num_states) for each site with a finite scalar support
            ((N, *inner plates, num_states) for a site in plates nested in the data plate),
            ``samples[site]`` of shape (S, N, ...), and ``log_lik`` (S, N): the exact log p(x_n)
            in every row, since every latent is summed out and the parameters are fixed. With
            one latent site, ``log_q`` (S, N) is the exact log p(z_n | x_n) of each draw and
            ``log_p = log_q + log_lik`` its log p(x_n, z_n); with several they are None.
        """
        if temperature not in (0, 1):
            raise ValueError(f"temperature must be 0 (MAP) or 1 (sampling), got {temperature!r}.")
        check_positive_int("num_samples", num_samples)
        lvm, x, mask, sites = self.prepare(model, x, mask)
        if _coupled(sites):
            # a global discrete site: exact joint draws of every site, the locals summed out
            # of log_lik given each draw of the globals
            with torch.no_grad(), seeded(seed):
                out = replayed_posterior(with_guide(lvm, _no_guide), x, mask, sites, num_samples)
            return Posterior(engine=self.name, x=x, mask=mask, **out)
        local = tuple(s.name for s in sites.values() if s.latent)
        with torch.no_grad(), seeded(seed):
            if has(lvm, EnumeratedLogJoint):
                with lvm.scoped():
                    log_joint = lvm.enumerate_log_joint(x, mask)  # (N, K)
                log_px = torch.logsumexp(log_joint, -1)  # (N,)
                probs = torch.softmax(log_joint, -1)
                if temperature == 0:
                    z = probs.argmax(-1).expand(num_samples, -1)
                else:
                    z = torch.distributions.Categorical(probs=probs).sample((num_samples,))
                log_p = log_joint.T.gather(0, z)  # (S, N): log p(x_n, z_sn)
                return Posterior(
                    engine=self.name,
                    samples={lvm.label_site: z},
                    x=x,
                    mask=mask,
                    probs={lvm.label_site: probs},
                    local_sites=local,
                    log_lik=log_px.expand(num_samples, -1),
                    log_p=log_p,
                    log_q=log_p - log_px,
                )
            single = num_data(x) == 1
            if single:  # see _log_marginal: a data plate of size 1 is packed away
                x, mask = twice(x, mask)
            tr = enum_trace(lvm, x, mask)  # also refuses unsound structure
            marginals = site_marginals(tr, num_data(x), getattr(lvm, "data_plate", DATA_PLATE))
            probs = {k: p for k, (p, site) in marginals.items() if not site["fn"].event_shape}
            joint_sites = [k for k, (_, site) in marginals.items() if site["fn"].event_shape]
            log_px = exact_log_marginal(lvm, x, mask)  # (N,)
            log_q = None
            if not marginals:
                # no latent site: nothing to draw; each of the S rows scores the data alone
                samples, log_q = {}, zeros(x, num_samples, num_data(x))
            elif not joint_sites:
                samples = exact_draws(lvm, x, mask, num_samples, temperature)
                (name, (p, site)), *others = marginals.items()
                if not others and samples[name].shape == (num_samples, *p.shape[:-1]):
                    # one scalar site (per datum, or per element of inner plates, which are
                    # independent given x_n): its marginals give the joint posterior
                    states = state_values(site)  # (num_states,)
                    idx = (samples[name].unsqueeze(-1) == states).to(p.dtype).argmax(-1)
                    log_q = _log_prob_of(p, idx)  # (S, N)
            elif len(marginals) == 1:
                # one vector-valued site: draw its joint state index from the exact marginal
                p, site = marginals[joint_sites[0]]
                if temperature == 0:
                    idx = p.argmax(-1).expand(num_samples, *p.shape[:-1])
                else:
                    idx = torch.distributions.Categorical(probs=p).sample((num_samples,))
                samples = {joint_sites[0]: state_values(site)[idx]}  # (S, N, *event)
                log_q = _log_prob_of(p, idx)  # (S, N)
            else:
                raise UnsupportedModelError(
                    f"joint posterior draws of several discrete sites, some with event dims "
                    f"({joint_sites}), are not supported; Enumeration().log_evidence still "
                    "works, and ImportanceSampling gives weighted draws."
                )
        log_lik = log_px.expand(num_samples, -1)  # (S, N)
        if single:
            x, mask = take_rows(x, slice(0, 1)), take_rows(mask, slice(0, 1))
            probs = {k: v[:1] for k, v in probs.items()}
            samples = {k: v[:, :1] for k, v in samples.items()}
            log_lik = log_lik[:, :1]
            log_q = None if log_q is None else log_q[:, :1]
        return Posterior(
            engine=self.name,
            samples=samples,
            x=x,
            mask=mask,
            probs=probs,
            local_sites=local,
            log_lik=log_lik,
            log_p=None if log_q is None else log_q + log_lik,
            log_q=log_q,
        )

    def fit(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seed: int | None = 0,
        progress: bool = False,
        method: Literal["em", "gradient"] = "em",
        max_steps: int = 200,
        tol: float = 1e-3,
        lr: float = 0.05,
        initialize: bool = True,
    ) -> FitResult:
        """Maximise the exact log-likelihood, by EM or by gradient ascent.

        Parameters
        ----------
        model : LatentVariableModel, (model_fn, guide_fn) or model function
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        method : {"em", "gradient"}
            "em": E-step by enumeration, closed-form M-step (built-in mixtures). "gradient":
            Adam on the exact marginal log-likelihood (any story this engine accepts).
        seed : int
            Seeds initialisation; restart r of the model's ``num_init`` uses ``seed + r``.
        max_steps : int
            EM iterations or gradient steps per restart.
        tol : float
            Stop when the mean log-likelihood per datum changes by less than this between two
            steps (scikit-learn's criterion). Not converging within ``max_steps`` raises a
            ``ConvergenceWarning``.
        lr : float
            Adam's learning rate (``method="gradient"``).
        initialize : bool
            Run the model's ``initialize`` first (k-means for a mixture); False starts from
            the current parameters (e.g. ones given with ``set_parameters``).
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        FitResult
            ``history`` holds the exact mean log-likelihood per datum at each step (for EM, of
            the parameters the E-step used), ``info["restarts"]`` each restart's final value.
        """
        check_choice("method", method, ("em", "gradient"))
        check_positive_int("max_steps", max_steps)
        lvm, x, mask, _ = self.prepare(model, x, mask)
        refuse_all_masked(mask, x)
        seed = resolve_seed(seed)
        if method == "em" and not has(lvm, ClosedFormMStep):
            raise UnsupportedModelError(
                f"EM needs closed-form M-steps, which story '{lvm.name}' does not provide; use "
                "method='gradient'."
            )
        can_init = initialize and has(lvm, Initializable)
        n_init = lvm.num_init if can_init and has(lvm, ClosedFormMStep) else 1
        t0 = time.perf_counter()
        best = None
        restarts = []
        for r in range(n_init):
            if can_init:
                lvm.initialize(x, mask, seed + r)
            # both methods are deterministic given the start; only initialize draws, and it
            # has its own generator seeded with seed + r
            if method == "em":
                history, converged = self._em(lvm, x, mask, max_steps, tol, progress)
            else:
                history, converged = self._gradient(lvm, x, mask, max_steps, tol, lr, progress)
            with torch.no_grad():
                final = float(exact_log_marginal(lvm, x, mask).mean())
            restarts.append(final)
            if best is None or final > best[0]:
                best = (final, copy.deepcopy(lvm.state_dict()), history, converged)
        final, state, history, converged = best
        lvm.load_state_dict(state)
        if not converged:
            warnings.warn(
                f"Enumeration.fit({method}) did not converge in {max_steps} steps: the last "
                f"change exceeded tol={tol}; raise max_steps or tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return FitResult(
            engine=self.name,
            objective="log_likelihood",
            history=torch.tensor(history, dtype=torch.float64),
            seconds=time.perf_counter() - t0,
            num_steps=len(history),
            converged=converged,
            seed=seed,
            info={"method": method, "restarts": restarts, "final": final},
        )

    @staticmethod
    def _check_finite(value: float, step: int, method: str) -> None:
        """Stop EM at a non-finite log-likelihood, naming the step."""
        if not math.isfinite(value):
            raise FloatingPointError(
                f"Enumeration.fit({method}): the log-likelihood became {value} at step {step}; "
                "the parameters of the last finite step were kept. Check the data scale, or "
                "raise reg_covar / eps."
            )

    def _em(self, lvm, x, mask, max_steps, tol, progress) -> tuple[list[float], bool]:
        history: list[float] = []
        converged = False
        with torch.no_grad(), lvm.scoped():
            stats = lvm.data_statistics(x, mask)
            bar = tqdm(range(max_steps), desc="EM", disable=not progress, leave=False)
            for step in bar:
                log_joint = lvm.enumerate_log_joint(x, mask, stats)  # (N, K)
                log_px = torch.logsumexp(log_joint, -1, keepdim=True)
                ll = float(log_px.mean())
                self._check_finite(ll, step, "em")
                resp = torch.exp(log_joint - log_px)
                lvm.m_step(x, mask, resp, stats)
                if history and abs(ll - history[-1]) < tol:
                    history.append(ll)
                    converged = True
                    break
                history.append(ll)
                bar.set_postfix(loglik=f"{ll:.4f}")
        return history, converged

    def _gradient(self, lvm, x, mask, max_steps, tol, lr, progress) -> tuple[list[float], bool]:
        params = lvm.trainable_parameters()
        if not params:
            raise UnsupportedModelError(
                f"story '{lvm.name}' has no parameters to fit; declare them with pyro.param or "
                "as module parameters."
            )

        def nan_message(value: float, step: int, good: int) -> str:
            return (
                f"Enumeration.fit(gradient): the log-likelihood became {value} at step {step}; "
                "the parameters of the last finite step were kept. Check the data scale, or "
                "raise reg_covar / eps."
            )

        loop = _loop.run(
            lambda idx: exact_log_marginal(lvm, x, mask).mean(),
            model=lvm,
            params=params,
            optimizer=torch.optim.Adam(params, lr=lr),
            schedule=_loop.Schedule(
                num_data=num_data(x),
                batch_size=None,
                total_steps=max_steps,
                tol=tol,
                snapshot_every=1,
            ),
            seed=0,
            nan_message=nan_message,
            progress=progress,
            desc="gradient",
            postfix="loglik",
        )
        return loop.history, loop.converged
