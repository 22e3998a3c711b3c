"""Exact inference by enumerating the discrete latents: ``Enumeration``.

log p(x_n) = log Σ_z p(x_n, z) is computed exactly, per datum, by enumerating every local
discrete site in parallel (Pyro's ``poutine.enum``) and contracting the factors with variable
elimination (``pyro.ops.contract``, the machinery behind ``TraceEnum_ELBO``). Built-in mixtures
take a direct tensor path instead (``enumerate_log_joint``), which gives the same numbers
without tracing, and have closed-form M-steps for EM.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections import OrderedDict
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import config_enumerate, infer_discrete
from pyro.ops import packed
from pyro.ops.contract import contract_to_tensor
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from sklearn.exceptions import ConvergenceWarning
from tqdm.auto import tqdm

from .._typing import ModelLike
from ..core.errors import UnsupportedModelError
from ..core.posterior import Posterior
from ..core.results import Evidence, FitResult
from ..core.rng import seeded
from ..models.base import (
    DATA_PLATE,
    LatentVariableModel,
    SiteInfo,
    discrete_state_count,
    sample_sites,
)
from ._weights import plate_nesting
from .base import Engine

__all__ = ["Enumeration"]


# ----------------------------------------------------------------------------------------------
# joint enumeration of discrete sites with event dims (e.g. z in {0,1}^L as one site)
class _JointSupport(dist.TorchDistribution):
    """Wraps a discrete distribution with event dims so that its whole joint support can be
    enumerated: every one of S^E joint values of the event, S states per element."""

    has_enumerate_support = True

    def __init__(self, base: dist.Distribution):
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(value)

    def sample(self, sample_shape=()):
        return self.base.sample(sample_shape)

    def expand(self, batch_shape, _instance=None):
        return _JointSupport(self.base.expand(batch_shape))

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        element = _innermost(self.base)
        states = element.enumerate_support(expand=False).reshape(-1)  # (S,)
        n_el = math.prod(self.event_shape)
        grid = torch.cartesian_prod(*([states] * n_el)) if n_el > 1 else states.unsqueeze(-1)
        grid = grid.reshape((-1,) + (1,) * len(self.batch_shape) + tuple(self.event_shape))
        if expand:
            grid = grid.expand((-1,) + tuple(self.batch_shape) + tuple(self.event_shape))
        return grid


def _innermost(fn: Any) -> Any:
    while isinstance(fn, dist.Independent | dist.MaskedDistribution | dist.ExpandedDistribution):
        fn = fn.base_dist
    return fn


class _JointSupportMessenger(Messenger):
    """Lets ``config_enumerate`` see discrete latent sites that have event dims."""

    def _process_message(self, msg):
        fn = msg["fn"]
        if (
            msg["type"] == "sample"
            and not msg["is_observed"]
            and not site_is_subsample(msg)
            and len(fn.event_shape) > 0
            and fn.support.is_discrete
            and not getattr(fn, "has_enumerate_support", False)
            and getattr(_innermost(fn), "has_enumerate_support", False)
        ):
            msg["fn"] = _JointSupport(fn)


def _enumerable(fn):
    """The story with every discrete latent site enumerated in parallel."""
    return config_enumerate(_JointSupportMessenger()(fn), default="parallel")


def _ordinal(site: dict) -> frozenset:
    return frozenset(f.name for f in site["cond_indep_stack"] if f.vectorized)


def _format_states(sites: dict[str, SiteInfo], total: int) -> str:
    parts = [
        f"{s.num_states}^{s.elements_per_datum}" if s.elements_per_datum > 1 else f"{s.num_states}"
        for s in sites.values()
        if s.latent and s.local and s.discrete
    ]
    return f"{' × '.join(parts)} = {total:,} joint states per datum"


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
    >>> gmm = models.GaussianMixture(n_components=10, dim=64)
    >>> fit = inference.Enumeration().fit(gmm, ds.x, method="em", seed=0)
    >>> ev = inference.Enumeration().log_evidence(gmm, ds.x)
    >>> ev.kind
    'exact'
    """

    name = "Enumeration"
    evidence_kind = "exact"
    handles_continuous_local = False
    alternatives_for_continuous = ("ImportanceSampling", "SVI")

    def __init__(self, max_states: int = 2**16):
        if isinstance(max_states, bool) or not isinstance(max_states, int) or max_states < 1:
            raise ValueError(f"max_states must be a positive int, got {max_states!r}.")
        self.max_states = max_states

    def __repr__(self) -> str:
        return f"Enumeration(max_states={self.max_states:,})"

    # -- refusals --------------------------------------------------------------------------
    def check_supported(self, model: LatentVariableModel, sites: dict[str, SiteInfo]) -> None:
        super().check_supported(model, sites)
        global_latents = [s.name for s in sites.values() if s.latent and not s.local]
        if global_latents:
            raise UnsupportedModelError(
                f"Enumeration sums local discrete latents exactly, but story '{model.name}' has "
                f"global latent sites {global_latents}; with priors on the globals log p(x) has "
                "no exact sum. Use SVI or ImportanceSampling, or point estimates "
                "(bayesian=False)."
            )
        global_obs = [s.name for s in sites.values() if s.observed and not s.local]
        if global_obs:
            raise UnsupportedModelError(
                f"Enumeration scores log p(x_n) per datum, but observed sites {global_obs} sit "
                f"outside plate '{DATA_PLATE}'; put every observation in the data plate."
            )
        infinite = [
            s.name for s in sites.values() if s.latent and s.discrete and s.num_states is None
        ]
        if infinite:
            raise UnsupportedModelError(
                f"Enumeration needs a finite support, and sites {infinite} have none; use "
                "ImportanceSampling or SVI."
            )
        total = discrete_state_count(sites)
        if total is not None and total > self.max_states:
            raise UnsupportedModelError(
                f"the joint discrete space of story '{model.name}' has "
                f"{_format_states(sites, total)}, more than max_states={self.max_states:,} "
                "that Enumeration will sum; estimate log p(x) with ImportanceSampling or bound "
                "it with SVI instead."
            )

    @staticmethod
    def _fast(model: LatentVariableModel) -> bool:
        return hasattr(model, "enumerate_log_joint") and not getattr(model, "bayesian", False)

    # -- the exact per-datum marginal ------------------------------------------------------
    def _enum_trace(self, model: LatentVariableModel, x, mask) -> poutine.Trace:
        rank = plate_nesting(model.trace(x, mask))
        fn = poutine.enum(_enumerable(model.model), first_available_dim=-(rank + 1))
        with model.scoped():
            tr = poutine.trace(fn).get_trace(x, mask)
        tr.compute_log_prob()
        tr.pack_tensors()
        self._check_dependencies(tr)
        return tr

    @staticmethod
    def _check_dependencies(tr: poutine.Trace) -> None:
        """Refuse a site that depends on an enumerated variable from a plate it is not in.

        Parallel enumeration gives a site inside a plate one enumerated value shared across
        the plate; a site outside the plate that uses it would be summed as if all plate
        members took the same value, which is silently wrong.
        """
        owner = {}
        for name, site in sample_sites(tr):
            sym = site["infer"].get("_enumerate_symbol")
            if sym is not None:
                owner[sym] = (name, _ordinal(site))
        for name, site in sample_sites(tr):
            dims = getattr(site["packed"]["log_prob"], "_pyro_dims", "")
            for sym in dims:
                if sym in owner:
                    src, src_ord = owner[sym]
                    outside = sorted(src_ord - _ordinal(site))
                    if outside:
                        raise UnsupportedModelError(
                            f"site '{name}' depends on the enumerated site '{src}' but sits "
                            f"outside its plate(s) {outside}; summing that by enumeration is "
                            "wrong (each plate member has its own value). Move the site into "
                            "the plate, or use ImportanceSampling."
                        )

    def _log_marginal(self, model: LatentVariableModel, x, mask) -> torch.Tensor:
        """log p(x_n), shape (N,), differentiable in the model's parameters."""
        if self._fast(model):
            with model.scoped():
                return torch.logsumexp(model.enumerate_log_joint(x, mask), -1)
        if x.shape[0] == 1:
            # Pyro packs away dims of size 1, the data plate's included; score a copy beside it
            x, mask = _twice(x, mask)
            return self._log_marginal(model, x, mask)[:1]
        tr = self._enum_trace(model, x, mask)
        factors, sum_dims, data = _factors(tr)
        out = contract_to_tensor(factors, sum_dims, target_ordinal=data)
        out = packed.unpack(out, tr.symbol_to_dim)
        return out.reshape(-1).expand(x.shape[0])

    # -- public API ------------------------------------------------------------------------
    def log_evidence(
        self, model: ModelLike, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> Evidence:
        """Exact log p(x_n) per datum, with every local discrete latent summed out.

        Parameters
        ----------
        model : LatentVariableModel, (model_fn, guide_fn) or model function
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional

        Returns
        -------
        Evidence
            ``kind="exact"``, ``per_datum`` of shape (N,), ``stderr`` zeros.
        """
        lvm, x, mask, _ = self.prepare(model, x, mask)
        with torch.no_grad():
            per = self._log_marginal(lvm, x, mask)
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
        temperature: Literal[0, 1] = 1,
        seed: int | None = 0,
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
            ``probs[site]`` of shape (N, num_states) for each site with a finite scalar support,
            ``samples[site]`` of shape (S, N, ...), and ``log_lik`` (S, N): the exact log p(x_n)
            in every row, since every latent is summed out and the parameters are fixed. With
            one latent site, ``log_q`` (S, N) is the exact log p(z_n | x_n) of each draw and
            ``log_p = log_q + log_lik`` its log p(x_n, z_n); with several they are None.
        """
        if temperature not in (0, 1):
            raise ValueError(f"temperature must be 0 (MAP) or 1 (sampling), got {temperature!r}.")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}.")
        lvm, x, mask, sites = self.prepare(model, x, mask)
        local = tuple(s.name for s in sites.values() if s.latent)
        with torch.no_grad(), seeded(seed):
            if self._fast(lvm):
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
            single = x.shape[0] == 1
            if single:  # see _log_marginal: a data plate of size 1 is packed away
                x, mask = _twice(x, mask)
            tr = self._enum_trace(lvm, x, mask)  # also refuses unsound structure
            marginals = _site_marginals(tr, x.shape[0])
            probs = {k: p for k, (p, site) in marginals.items() if not site["fn"].event_shape}
            joint_sites = [k for k, (_, site) in marginals.items() if site["fn"].event_shape]
            log_px = self._log_marginal(lvm, x, mask)  # (N,)
            log_q = None
            if not joint_sites:
                samples = self._draws(lvm, x, mask, num_samples, temperature)
                (name, (p, site)), *others = marginals.items()
                if not others and samples[name].shape == (num_samples, x.shape[0]):
                    # one scalar site per datum: its marginal is the joint posterior
                    states = self._state_values(site)  # (num_states,)
                    idx = (samples[name].unsqueeze(-1) == states).to(p.dtype).argmax(-1)
                    log_q = p.log().T.gather(0, idx)  # (S, N)
            elif len(marginals) == 1:
                # one vector-valued site: draw its joint state index from the exact marginal
                p, site = marginals[joint_sites[0]]
                if temperature == 0:
                    idx = p.argmax(-1).expand(num_samples, -1)
                else:
                    idx = torch.distributions.Categorical(probs=p).sample((num_samples,))
                samples = {joint_sites[0]: self._state_values(site)[idx]}  # (S, N, *event)
                log_q = p.log().T.gather(0, idx)  # (S, N)
            else:
                raise UnsupportedModelError(
                    f"joint posterior draws of several discrete sites, some with event dims "
                    f"({joint_sites}), are not supported; Enumeration().log_evidence still "
                    "works, and ImportanceSampling gives weighted draws."
                )
        log_lik = log_px.expand(num_samples, -1)  # (S, N)
        if single:
            x = x[:1]
            mask = None if mask is None else mask[:1]
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

    @staticmethod
    def _state_values(site: dict) -> torch.Tensor:
        """The enumerated values of a site, one row per state: (S, *event)."""
        v = site["value"]
        ev = len(site["fn"].event_shape)
        states = v.shape[site["infer"]["_enumerate_dim"] - ev]
        return v.reshape((states, -1) + tuple(v.shape[v.dim() - ev :]))[:, 0]

    def _draws(self, lvm, x, mask, num_samples, temperature) -> dict[str, torch.Tensor]:
        rank = plate_nesting(lvm.trace(x, mask))

        def replicated(x, mask):
            with pyro.plate("_draws", num_samples, dim=-(rank + 1)):
                return lvm.model(x, mask)

        sampler = infer_discrete(
            _enumerable(replicated), first_available_dim=-(rank + 2), temperature=temperature
        )
        with lvm.scoped():
            tr = poutine.trace(sampler).get_trace(x, mask)
        out = {}
        for name, site in sample_sites(tr):
            if site["is_observed"]:
                continue
            v = site["value"]
            ev = len(site["fn"].event_shape)
            v = v.reshape((1,) * (rank + 1 - (v.dim() - ev)) + tuple(v.shape))
            v = v.expand((num_samples,) + tuple(v.shape[1:]))
            v = v.movedim(rank, 1)  # (S, N, other plates..., event)
            for d in reversed(range(2, rank + 1)):
                if v.shape[d] == 1:
                    v = v.squeeze(d)
            out[name] = v
        return out

    def fit(
        self,
        model: ModelLike,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        method: Literal["em", "gradient"] = "em",
        seed: int = 0,
        max_steps: int = 200,
        tol: float = 1e-3,
        lr: float = 0.05,
        initialize: bool = True,
        progress: bool = False,
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
            Seeds initialisation; restart r of ``model.n_init`` uses ``seed + r``.
        max_steps : int
            EM iterations or gradient steps per restart.
        tol : float
            Stop when the mean log-likelihood per datum changes by less than this between two
            steps (scikit-learn's criterion). Not converging within ``max_steps`` raises a
            ``ConvergenceWarning``.
        lr : float
            Adam's learning rate (``method="gradient"``).
        initialize : bool
            Run the model's k-means++ ``initialize`` first; False starts from the current
            parameters (e.g. ones given with ``set_parameters``).
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        FitResult
            ``history`` holds the exact mean log-likelihood per datum at each step (for EM, of
            the parameters the E-step used), ``info["restarts"]`` each restart's final value.
        """
        if method not in ("em", "gradient"):
            raise ValueError(f"method must be 'em' or 'gradient', got {method!r}.")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}.")
        lvm, x, mask, _ = self.prepare(model, x, mask)
        if method == "em" and not (self._fast(lvm) and hasattr(lvm, "m_step")):
            raise UnsupportedModelError(
                f"EM needs closed-form M-steps, which story '{lvm.name}' does not provide; use "
                "method='gradient'."
            )
        if hasattr(lvm, "_validate_values"):
            lvm._validate_values(x, mask)
        can_init = initialize and hasattr(lvm, "initialize")
        n_init = getattr(lvm, "n_init", 1) if can_init else 1
        t0 = time.perf_counter()
        best = None
        restarts = []
        for r in range(n_init):
            if can_init:
                lvm.initialize(x, mask, seed + r)
            # both methods are deterministic given the start; only initialize draws, and it
            # has its own generator seeded with seed + r
            step = self._em if method == "em" else self._gradient
            history, converged = step(lvm, x, mask, max_steps, tol, lr, progress)
            with torch.no_grad():
                final = float(self._log_marginal(lvm, x, mask).mean())
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
        if not math.isfinite(value):
            raise FloatingPointError(
                f"Enumeration.fit({method}): the log-likelihood became {value} at step {step}; "
                "the parameters of the last finite step were kept. Check the data scale, or "
                "raise reg_covar / eps."
            )

    def _em(self, lvm, x, mask, max_steps, tol, lr, progress) -> tuple[list[float], bool]:
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
        optim = torch.optim.Adam(params, lr=lr)
        history: list[float] = []
        converged = False
        last_good = [p.detach().clone() for p in params]
        bar = tqdm(range(max_steps), desc="gradient", disable=not progress, leave=False)
        for step in bar:
            optim.zero_grad(set_to_none=True)
            ll = self._log_marginal(lvm, x, mask).mean()
            value = ll.detach().item()
            if not math.isfinite(value):
                with torch.no_grad():
                    for p, good in zip(params, last_good, strict=True):
                        p.copy_(good)
                self._check_finite(value, step, "gradient")
            (-ll).backward()
            for p, good in zip(params, last_good, strict=True):
                good.copy_(p.detach())
            optim.step()
            if history and abs(value - history[-1]) < tol:
                history.append(value)
                converged = True
                break
            history.append(value)
            bar.set_postfix(loglik=f"{value:.4f}")
        return history, converged


def _twice(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The single datum and a copy of it: (2, D)."""
    return x.expand(2, -1), None if mask is None else mask.expand(2, -1)


def _factors(tr: poutine.Trace) -> tuple[OrderedDict, set, frozenset]:
    """Packed log-factors by plate ordinal, the enumerated dims, and the data plate ordinal."""
    factors: OrderedDict = OrderedDict()
    for _, site in sample_sites(tr):
        ordinal = frozenset(
            tr.plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized
        )
        factors.setdefault(ordinal, []).append(site["packed"]["log_prob"])
    sum_dims = {
        site["infer"]["_enumerate_symbol"]
        for _, site in sample_sites(tr)
        if site["infer"].get("_enumerate_symbol") is not None
    }
    return factors, sum_dims, frozenset({tr.plate_to_symbol[DATA_PLATE]})


def _site_marginals(tr: poutine.Trace, num_data: int) -> dict[str, tuple[torch.Tensor, Any]]:
    """For each enumerated site: p(site = s | x_n), shape (N, S), and its enumerated values."""
    factors, sum_dims, data = _factors(tr)
    out = {}
    for name, site in sample_sites(tr):
        sym = site["infer"].get("_enumerate_symbol")
        if sym is None:
            continue
        logits = contract_to_tensor(factors, sum_dims, target_ordinal=data, target_dims={sym})
        logits = packed.unpack(logits, tr.symbol_to_dim)
        logits = logits.movedim(site["infer"]["_enumerate_dim"], -1)  # (..., N, S)
        logits = logits.reshape(-1, logits.shape[-2], logits.shape[-1])[0]
        logits = logits.expand(num_data, logits.shape[-1])
        out[name] = (torch.softmax(logits, -1), site)
    return out


def _contract_sites(
    tr: poutine.Trace, names: list[str], sum_dims: set, target: frozenset
) -> torch.Tensor | None:
    """log of the product of the named sites' factors, enumerated dims summed out, contracted
    to the plates of ``target`` and unpacked (None when ``names`` is empty)."""
    if not names:
        return None
    factors: OrderedDict = OrderedDict()
    for name in names:
        site = tr.nodes[name]
        ordinal = frozenset(
            tr.plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized
        )
        factors.setdefault(ordinal, []).append(site["packed"]["log_prob"])
    out = contract_to_tensor(factors, sum_dims, target_ordinal=target)
    return packed.unpack(out, tr.symbol_to_dim)


def _as_particle_data(value: torch.Tensor, rank: int, num_particles: int, num_data: int):
    """An unpacked (..., S, 1, ..., N) tensor of ``rank`` dims as (S, N)."""
    value = value.reshape((1,) * (rank - value.dim()) + tuple(value.shape))
    value = value.reshape(value.shape[0], -1, value.shape[-1])[:, 0]
    return value.expand(num_particles, num_data)


def replayed_posterior(
    lvm: LatentVariableModel,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    sites: dict[str, SiteInfo],
    num_samples: int,
    budget: int = 2**24,
) -> dict[str, Any]:
    """Guide draws, with the story's enumerated local sites drawn from their exact conditional
    and summed out of the scores; the shared path of ``SVI.posterior`` for stories with global
    latents or enumerated discrete sites (mixtures).

    S draws of the guide (globals, and any local sites it proposes) are made under an outer
    particle plate; the model is replayed on them with every site it marks for enumeration
    enumerated in parallel. Contracting the factors gives, per draw and datum, log p(x_n, z_n |
    θ_s) with the enumerated sites summed out; ``infer_discrete`` draws those sites from their
    exact conditional given the draw. The data are processed in chunks that share the same
    global draws.

    Parameters
    ----------
    lvm : LatentVariableModel
    x : torch.Tensor of shape (N, D), masked entries zero-filled
    mask : torch.Tensor of shape (N, D) or None
    sites : dict of str to SiteInfo
        The model's site metadata.
    num_samples : int
        S.
    budget : int
        Numbers per enumerated tensor (S x states x chunk x D) a chunk may hold.

    Returns
    -------
    dict
        ``samples`` (S, ...) for globals and (S, N, ...) for local sites, ``local_sites``,
        ``log_lik`` (S, N), and ``log_p``, ``log_q``: (S, N) when every site is local, (S,)
        (summed over the data, global sites included) otherwise.
    """
    from ._weights import PARTICLE_PLATE, _particle_value, _reduce

    s_draws = max(2, num_samples)  # a particle plate of size 1 would be packed away too
    n, d = x.shape
    states = 1
    for info in sites.values():
        if info.latent and info.local and info.enumerate == "parallel" and info.num_states:
            states *= info.num_states**info.elements_per_datum
    chunk = max(1, min(n, budget // max(1, s_draws * d * states)))
    first_x = x[:chunk]
    first_m = None if mask is None else mask[:chunk]
    rank = max(
        plate_nesting(lvm.trace(first_x, first_m)),
        plate_nesting(lvm.trace(first_x, first_m, "guide")),
    )
    prank = rank + 1  # with the particle dim
    particles = pyro.plate(PARTICLE_PLATE, s_draws, dim=-prank)
    global_guide = None
    global_log_p = global_log_q = x.new_zeros(s_draws)
    has_global = any(not info.local for info in sites.values())
    samples: dict[str, list[torch.Tensor]] = {}
    log_lik, local_log_p, local_log_q = [], [], []
    local_sites: list[str] = []
    for start in range(0, n, chunk):
        xb = x[start : start + chunk]
        mb = None if mask is None else mask[start : start + chunk]
        nb = xb.shape[0]
        if nb == 1:  # Pyro packs away dims of size 1, the data plate's included: score a copy
            xb, mb = _twice(xb, mb)
        guide = lvm.guide if global_guide is None else poutine.replay(lvm.guide, global_guide)
        with lvm.scoped(), particles:
            guide_tr = poutine.trace(guide).get_trace(xb, mb)
        guide_tr.compute_log_prob()

        def replayed(x, mask, guide_tr=guide_tr):
            with particles:
                return poutine.replay(lvm.model, trace=guide_tr)(x, mask)

        enumerated = poutine.enum(_enumerable(replayed), first_available_dim=-(prank + 1))
        with lvm.scoped():
            model_tr = poutine.trace(enumerated).get_trace(xb, mb)
        model_tr.compute_log_prob()
        model_tr.pack_tensors()
        target = frozenset(
            {model_tr.plate_to_symbol[PARTICLE_PLATE], model_tr.plate_to_symbol[DATA_PLATE]}
        )
        sum_dims = set()
        local, local_latent = [], []
        for name, site in sample_sites(model_tr):
            sym = site["infer"].get("_enumerate_symbol")
            if sym is not None:
                sum_dims.add(sym)
            if any(f.name == DATA_PLATE for f in site["cond_indep_stack"]):
                local.append(name)
                if not site["is_observed"]:
                    local_latent.append(name)
            elif global_guide is None:
                global_log_p = global_log_p + _reduce(site, prank, s_draws, xb.shape[0])[0]
        # a site with a single state leaves no enumerated dim after packing: nothing to draw
        single_state = [
            name
            for name, site in sample_sites(model_tr)
            if site["infer"].get("_enumerate_symbol") is not None
            and site["infer"]["_enumerate_symbol"] not in site["packed"]["log_prob"]._pyro_dims
        ]
        draws_tr = None
        if len(single_state) < len(sum_dims):
            sampler = infer_discrete(_enumerable(replayed), first_available_dim=-(prank + 1))
            with lvm.scoped():
                draws_tr = poutine.trace(sampler).get_trace(xb, mb)
        joint = _contract_sites(model_tr, local, sum_dims, target)
        prior = _contract_sites(model_tr, local_latent, sum_dims, target)
        joint = _as_particle_data(joint, prank, s_draws, xb.shape[0])
        prior = 0.0 if prior is None else _as_particle_data(prior, prank, s_draws, xb.shape[0])
        log_lik.append((joint - prior)[:, :nb])
        local_log_p.append(joint[:, :nb])
        lq = x.new_zeros(s_draws, xb.shape[0])
        for _, site in sample_sites(guide_tr):
            if site["is_observed"]:
                continue
            part, is_local = _reduce(site, prank, s_draws, xb.shape[0])
            if is_local:
                lq = lq + part
            elif global_guide is None:
                global_log_q = global_log_q + part
        local_log_q.append(lq[:, :nb])
        if global_guide is None:
            local_sites = local_latent
            for name, site in sample_sites(model_tr):
                if not site["is_observed"] and name not in local:
                    samples[name] = [_particle_value(site, prank, False)]
        for name in local_latent:
            if name in single_state:
                site = model_tr.nodes[name]
                event = tuple(site["fn"].event_shape)
                v = site["value"].reshape((-1, *event))[0].expand(s_draws, nb, *event)
            else:
                v = _particle_value(draws_tr.nodes[name], prank, True)[:, :nb]
            samples.setdefault(name, []).append(v)
            # later chunks replay these global draws, so every datum sees the same θ_s
            global_guide = poutine.Trace()
            for name, site in guide_tr.nodes.items():
                if site["type"] == "sample" and not any(
                    f.name == DATA_PLATE for f in site["cond_indep_stack"]
                ):
                    global_guide.add_node(name, **site)
    s = num_samples
    merged = {k: (torch.cat(v, 1) if k in local_sites else v[0])[:s] for k, v in samples.items()}
    log_p, log_q = torch.cat(local_log_p, 1), torch.cat(local_log_q, 1)
    if has_global:
        log_p = global_log_p + log_p.sum(-1)
        log_q = global_log_q + log_q.sum(-1)
    return {
        "samples": merged,
        "local_sites": tuple(local_sites),
        "log_lik": torch.cat(log_lik, 1)[:s],
        "log_p": log_p[:s],
        "log_q": log_q[:s],
    }
