"""Annealing for :class:`~ppl_lvm.inference.ais.AnnealedImportanceSampling`: the path of
densities, the HMC transitions, and one annealing run, vectorised over chains and data.

The path is geometric, from the proposal q0 (the prior p(z), or the guide q(z | x)) to the
posterior:

    log γ_β(z) = log q0(z) + β [log p(x, z) - log q0(z)],      β from 0 to 1.

The chain state is the proposal's own sample sites (the model's latent sites for the prior;
for a guide, its sites other than point masses, so ``AutoNormal``'s unconstrained auxiliary
draws and the ``Delta`` sites they drive stay one change of variables). HMC moves them in
unconstrained space, ``biject_to(support)``, with the log-Jacobian in the potential. Every
(chain, datum) pair is its own group, with its own step size and Metropolis test, where the
evidence factorises; where it does not (a global latent, a guide density over all data), every
chain is one group over the whole data set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from torch.distributions import biject_to

from ..core.data import num_data
from ..models.base import LatentVariableModel, _base_distribution, sample_sites
from ._weights import PARTICLE_PLATE, particle_value, site_log_prob

__all__ = ["HMC", "Path", "anneal", "hmc_move", "is_point", "schedule"]


def schedule(num_steps: int, kind: str = "sigmoid", delta: float = 4.0) -> torch.Tensor:
    """The inverse temperatures β_0 = 0 < β_1 < ... < β_T = 1, shape (T + 1,), float64.

    ``"sigmoid"`` spaces them as Grosse et al. (2015): β̃_t = σ(δ (2t/T - 1)), rescaled to run
    from 0 to 1, which puts more steps near both ends; ``"linear"`` spaces them evenly.
    """
    t = torch.arange(num_steps + 1, dtype=torch.float64)
    if kind == "linear":
        return t / num_steps
    s = torch.sigmoid(delta * (2 * t / num_steps - 1))
    return (s - s[0]) / (s[-1] - s[0])


class _SetValues(Messenger):
    """Sets the named sample sites to given values (as ``poutine.replay`` does: they stay
    latent, and a site the story draws from them follows)."""

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg: dict) -> None:
        value = self.values.get(msg["name"])
        if value is not None and not msg["is_observed"]:
            msg["value"], msg["done"] = value, True


@dataclass
class Path:
    """The annealing path of one story on one set of data.

    Parameters
    ----------
    lvm : LatentVariableModel
    x : data (rows to score), mask : its mask or None
    proposal : {"prior", "guide"}
    num_chains : int
        C.
    rank : int
        Plate dims the story uses; the chains are a plate at dim -(rank + 1).
    joint : bool
        Whether one chain covers the whole data set (groups (C,)) rather than one datum
        (groups (C, N)).
    """

    lvm: LatentVariableModel
    x: object
    mask: object
    proposal: str
    num_chains: int
    rank: int
    joint: bool

    def __post_init__(self) -> None:
        self.n = num_data(self.x)
        self.dims = self.rank + 1  # with the chains' plate
        self.layout: dict[str, tuple[int | None, object]] = {}

    # -- the proposal's draws -------------------------------------------------------------
    def _chains(self):
        return pyro.plate(PARTICLE_PLATE, self.num_chains, dim=-self.dims)

    def initial(self) -> dict[str, torch.Tensor]:
        """C draws of the state from q0, as the story's sites hold them (chains at dim 0)."""
        fn = self.lvm.model if self.proposal == "prior" else self.lvm.guide
        with self.lvm.scoped(), self._chains():
            tr = poutine.trace(fn).get_trace(self.x, self.mask)
        state = {}
        for name, site in sample_sites(tr):
            if site["is_observed"] or is_point(site):
                continue
            data_dim = next(
                (f.dim for f in site["cond_indep_stack"] if f.name == self.lvm.data_plate), None
            )
            self.layout[name] = (data_dim, site["fn"].support, site["cond_indep_stack"])
            state[name] = site["value"].detach()
        return state

    # -- densities --------------------------------------------------------------------------
    def _group(self, name: str, log_prob: torch.Tensor, stack) -> torch.Tensor:
        lp, local = site_log_prob(
            {"name": name, "log_prob": log_prob, "cond_indep_stack": stack},
            self.dims,
            self.num_chains,
            self.n,
            self.lvm.data_plate,
        )
        if self.joint:
            return lp.sum(-1) if local else lp
        if not local:
            raise RuntimeError(
                f"site '{name}' lies outside the data plate, so the evidence does not split "
                "over data; the path must be joint."
            )
        return lp

    def log_densities(
        self, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """At ``state``, per group ((C, N) or (C,)): the log-density of the state under q0, the
        log ratio log r = log p(x, z) - log q0(z), and log p(x | z).

        For a guide whose point-mass sites follow auxiliary draws (``AutoNormal``), the state is
        the auxiliary draws: its density leaves out the ``Delta`` sites' log-Jacobians, which
        log r keeps (so that r is the importance weight of z, and γ_1 is the posterior of the
        state)."""
        shape = (self.num_chains,) if self.joint else (self.num_chains, self.n)
        zero = torch.zeros(shape, dtype=next(iter(state.values())).dtype)
        log_state, log_q, log_p, log_lik = zero, zero, zero, zero
        with self.lvm.scoped(), self._chains():
            fn = self.lvm.model if self.proposal == "prior" else self.lvm.guide
            first = poutine.trace(_SetValues(state)(fn)).get_trace(self.x, self.mask)
            model_tr = (
                first
                if self.proposal == "prior"
                else poutine.trace(poutine.replay(self.lvm.model, trace=first)).get_trace(
                    self.x, self.mask
                )
            )
        first.compute_log_prob()
        if model_tr is not first:
            model_tr.compute_log_prob()
        for name, site in sample_sites(model_tr):
            lp = self._group(name, site["log_prob"], site["cond_indep_stack"])
            log_p = log_p + lp
            if site["is_observed"]:
                log_lik = log_lik + lp
        for name, site in sample_sites(first):
            if site["is_observed"]:
                continue
            lq = self._group(name, site["log_prob"], site["cond_indep_stack"])
            log_q = log_q + lq
            if name in state:
                log_state = log_state + lq
        self.last_trace = model_tr
        return log_state, log_p - log_q, log_lik

    def samples(self) -> tuple[dict[str, torch.Tensor], tuple[str, ...], torch.Tensor]:
        """Of the last :meth:`log_densities` call: the model's latent values, (C, N, ...) for
        local sites and (C, ...) for global ones; the local sites' names; and log p(x_n | z)
        per chain and datum, (C, N), from the observed sites in the data plate."""
        out, local_sites = {}, []
        log_lik = None
        for name, site in sample_sites(self.last_trace):
            if site["is_observed"]:
                lp, local = site_log_prob(
                    site, self.dims, self.num_chains, self.n, self.lvm.data_plate
                )
                if local:
                    log_lik = lp if log_lik is None else log_lik + lp
                continue
            local = any(f.name == self.lvm.data_plate for f in site["cond_indep_stack"])
            out[name] = particle_value(site, self.dims, local, self.lvm.data_plate).detach()
            if local:
                local_sites.append(name)
        return out, tuple(local_sites), log_lik

    # -- unconstrained space --------------------------------------------------------------
    def to_unconstrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: biject_to(self.layout[k][1]).inv(v) for k, v in state.items()}

    def constrain(self, u: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The state for unconstrained ``u`` and the log-Jacobian of that map, per group."""
        state, log_det = {}, None
        for name, value in u.items():
            _, support, stack = self.layout[name]
            t = biject_to(support)
            z = t(value)
            ldj = self._group(name, t.log_abs_det_jacobian(value, z), stack)
            state[name] = z
            log_det = ldj if log_det is None else log_det + ldj
        return state, log_det

    def per_group(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """Sum an elementwise tensor shaped like ``u[name]`` over everything but its group."""
        _, support, stack = self.layout[name]
        event = biject_to(support).domain.event_dim
        summed = tensor.sum(tuple(range(-event, 0))) if event else tensor
        return self._group(name, summed, stack)

    def broadcast(self, name: str, group: torch.Tensor) -> torch.Tensor:
        """A per-group tensor, (C, N) or (C,), shaped to broadcast against ``u[name]`` (whose
        batch dims are the plates', the chains' at dim 0, under the chains' plate)."""
        data_dim, support, _ = self.layout[name]
        event = biject_to(support).domain.event_dim
        shape = [1] * self.dims
        shape[0] = self.num_chains
        if not self.joint:
            shape[self.dims + data_dim] = self.n
        return group.reshape(shape + [1] * event)


def is_point(site: dict) -> bool:
    """Whether a site is a ``Delta``: a value that follows the state (``AutoNormal``'s sites
    driven by auxiliary draws), or a point mass that the proposal checks refuse."""
    return type(_base_distribution(site["fn"])).__name__ == "Delta"


# -- HMC and the annealing run ----------------------------------------------------------------
@dataclass
class HMC:
    """Hamiltonian Monte Carlo moves with a unit mass matrix and per-group step sizes.

    Parameters
    ----------
    num_leapfrog : int
        L, leapfrog steps per move.
    step_size : float
        The initial step size of every group.
    adapt : bool
        Scale each group's step size by 1.02 after a move accepted with probability above
        ``target_accept`` and by 0.98 otherwise (Wu et al. 2017). A group's step size depends
        only on its own chain's past, so the chains stay independent.
    target_accept : float
    """

    num_leapfrog: int = 10
    step_size: float = 0.05
    adapt: bool = True
    target_accept: float = 0.65


def _log_gamma(path: Path, u: dict[str, torch.Tensor], beta: float):
    """log γ_β of the unconstrained state (the bijection's log-Jacobian included), with log r
    and log p(x | z); per group."""
    state, log_det = path.constrain(u)
    log_state, log_r, log_lik = path.log_densities(state)
    return log_state + beta * log_r + log_det, log_r, log_lik


def _grad(path: Path, u: dict[str, torch.Tensor], beta: float):
    u = {k: v.detach().requires_grad_(True) for k, v in u.items()}
    with torch.enable_grad():
        lg, log_r, log_lik = _log_gamma(path, u, beta)
        # groups are independent: the gradient of the sum is each group's own gradient
        grads = torch.autograd.grad(lg.sum(), list(u.values()))
    return lg.detach(), dict(zip(u, grads, strict=True)), log_r.detach(), log_lik.detach()


def _kinetic(path: Path, p: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(0.5 * path.per_group(k, v.pow(2)) for k, v in p.items())


def hmc_move(path: Path, hmc: HMC, u, beta: float, eps: torch.Tensor):
    """One HMC move at β for every group; returns the new state, its log r and log-likelihood,
    and the acceptance probabilities (per group)."""
    lg0, g0, log_r0, lik0 = _grad(path, u, beta)
    # a jittered step keeps the trajectory length from resonating with the target's scale
    jittered = eps * (0.5 + torch.rand_like(eps))
    step = {k: path.broadcast(k, jittered) for k in u}
    p0 = {k: torch.randn_like(v) for k, v in u.items()}
    q = dict(u)
    p = {k: p0[k] + 0.5 * step[k] * g0[k] for k in u}
    for i in range(hmc.num_leapfrog):
        q = {k: q[k] + step[k] * p[k] for k in u}
        lg1, g1, log_r1, lik1 = _grad(path, q, beta)
        scale = 1.0 if i < hmc.num_leapfrog - 1 else 0.5
        p = {k: p[k] + scale * step[k] * g1[k] for k in u}
    log_accept = (lg1 - _kinetic(path, p)) - (lg0 - _kinetic(path, p0))
    log_accept = torch.nan_to_num(log_accept, nan=-math.inf)
    accept_prob = log_accept.clamp(max=0.0).exp()
    accept = torch.rand_like(accept_prob) < accept_prob
    new = {k: torch.where(path.broadcast(k, accept), q[k].detach(), u[k]) for k in u}
    return (
        new,
        torch.where(accept, log_r1, log_r0),
        torch.where(accept, lik1, lik0),
        accept_prob,
    )


def anneal(
    path: Path,
    betas: Sequence[float] | torch.Tensor,
    hmc: HMC,
    start: dict[str, torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """One annealing run along ``betas`` (b_0, ..., b_T), vectorised over chains and data.

    From z_0 (drawn from q0 when ``start`` is None), for s = 1..T: the log weight gains
    (b_s - b_{s-1}) log r(z_{s-1}) with log r = log p(x, z) - log q0(z), and z_s is an HMC move
    that leaves γ_{b_s} invariant. Forward (b from 0 to 1), E[w] = p(x); backward from an
    exact posterior draw (b from 1 to 0), E[w] = 1 / p(x).

    Returns
    -------
    log_w : torch.Tensor of shape (C, N) or (C,)
    state : dict of str to torch.Tensor
        The final state (the proposal's sites).
    log_lik : torch.Tensor of shape (C, N) or (C,)
        log p(x | z) at the final state.
    accept : torch.Tensor of shape (C, N) or (C,)
        The mean acceptance probability of each group's moves.
    """
    betas = [float(b) for b in betas]
    state = path.initial() if start is None else start
    u = path.to_unconstrained(state)
    with torch.no_grad():
        _, log_r, log_lik = _log_gamma(path, u, betas[0])
    eps = torch.full_like(log_r, hmc.step_size)
    log_w = torch.zeros_like(log_r)
    accept_sum = torch.zeros_like(log_r)
    for s in range(1, len(betas)):
        log_w = log_w + (betas[s] - betas[s - 1]) * log_r
        # the first look above ran with Pyro's validation as the user set it; the moves skip
        # its per-site checks (a non-finite proposal is rejected by the Metropolis test)
        with pyro.validation_enabled(False):
            u, log_r, log_lik, prob = hmc_move(path, hmc, u, betas[s], eps)
        accept_sum = accept_sum + prob
        if hmc.adapt:
            # each chain adapts on its own acceptance only, so the chains stay independent and
            # the spread of their weights is an honest standard error
            eps = eps * torch.where(prob > hmc.target_accept, 1.02, 0.98)
        if progress is not None:
            progress(s)
    with torch.no_grad():
        final, _ = path.constrain(u)
        path.log_densities(final)  # the model's values at the final state, for samples()
    moves = max(1, len(betas) - 1)
    return log_w, final, log_lik, accept_sum / moves
