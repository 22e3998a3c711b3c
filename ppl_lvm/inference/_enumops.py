"""Enumeration operations shared by the engines: parallel enumeration of discrete latents
(Pyro's ``poutine.enum``), contraction of the factors by variable elimination
(``pyro.ops.contract``, the machinery behind ``TraceEnum_ELBO``), exact marginals and draws, and
guide draws with enumerated sites summed out (:func:`replayed_posterior`).

``Enumeration`` is built on them; ``SVI.posterior`` and ``ImportanceSampling.posterior`` use them
too, so no engine calls another.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Literal

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import infer_discrete
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

from ..core.data import Data, Mask, num_data, take_rows, zeros
from ..core.errors import UnsupportedModelError
from ..core.memory import check_fits, chunk_rows
from ..models.base import (
    DATA_PLATE,
    LatentVariableModel,
    SiteInfo,
    discrete_state_count,
    sample_sites,
)
from ..models.capabilities import EnumeratedLogJoint, has
from ._contract import (
    as_particle_data,
    as_particles,
    check_dependencies,
    contract_sites,
    live_state_count,
    log_marginal,
    marginals,
)
from ._jointsupport import enumerable as _enumerable
from ._priorguide import drawn_sites, prior_draws
from ._weights import (
    NO_BROADCAST,
    PARTICLE_PLATE,
    joint_over_data,
    particle_value,
    plate_nesting,
    site_log_prob,
)

__all__ = [
    "enum_trace",
    "enumerated_states",
    "exact_draws",
    "exact_log_marginal",
    "joint_log_marginal",
    "replayed_posterior",
    "site_marginals",
    "state_values",
    "twice",
]


class _UnmaskedLatents(Messenger):
    """Drops a ``poutine.mask`` from latent sites. ``TraceEnum_ELBO`` scores an enumerated site
    by its unmasked log-prob (a masked datum's latent keeps its prior), but ``infer_discrete``
    masks it; without the mask the draws follow the marginals and sums of this module."""

    def _process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"] and not site_is_subsample(msg):
            msg["mask"] = None


def _data_plate(model: Any) -> str:
    return getattr(model, "data_plate", DATA_PLATE)


def _ordinal(site: dict) -> frozenset:
    return frozenset(f.name for f in site["cond_indep_stack"] if f.vectorized)


def enum_trace(model: LatentVariableModel, x, mask) -> poutine.Trace:
    """The model traced with every discrete latent enumerated in parallel, log-probs packed;
    refuses unsound structure (:func:`check_dependencies`)."""
    rank = plate_nesting(model.trace(x, mask))
    fn = poutine.enum(_enumerable(model.model), first_available_dim=-(rank + 1))
    with model.scoped():
        tr = poutine.trace(fn).get_trace(x, mask)
    # as TraceEnum_ELBO: a plate's subsample site is no factor (under a tensor poutine.scale
    # it would carry a log-prob that no plate dim explains)
    tr = prune_subsample_sites(tr)
    tr.compute_log_prob()
    tr.pack_tensors()
    check_dependencies(tr)
    return tr


def exact_log_marginal(
    model: LatentVariableModel, x, mask, *, budget: int | None = None
) -> torch.Tensor:
    """log p(x_n) with every local discrete latent summed out, shape (N,), differentiable in the
    model's parameters; the model's declared ``EnumeratedLogJoint`` path where it has one.

    The traced path holds states × data × the story's ``working_width`` numbers, so the data are
    summed in chunks that fit the memory budget (the sum factorises over data: every latent is
    local), and a story whose one datum does not fit is refused before any work.
    """
    if has(model, EnumeratedLogJoint):
        with model.scoped():
            return torch.logsumexp(model.enumerate_log_joint(x, mask), -1)
    states = enumerated_states(model, x, mask)
    per_datum = states * model.working_width(x)
    check_fits(per_datum, f"enumerating one datum of story '{model.name}'", budget)
    n = num_data(x)
    rows = chunk_rows(n, per_datum, budget)
    if rows < n:
        parts = [
            _marginal_pass(model, take_rows(x, sl), take_rows(mask, sl))
            for sl in (slice(i, i + rows) for i in range(0, n, rows))
        ]
        return torch.cat(parts)
    return _marginal_pass(model, x, mask)


def joint_log_marginal(
    model: LatentVariableModel, x, mask, *, budget: int | None = None
) -> torch.Tensor:
    """log p(x_1, ..., x_N) of a story whose global discrete sites (or observations outside the
    data plate) couple the data: every discrete site summed out in one pass, as
    ``TraceEnum_ELBO`` sums it; a 0-dim tensor."""
    need = enumerated_states(model, x, mask) * model.working_width(x) * num_data(x)
    check_fits(need, f"enumerating all data of story '{model.name}' at once", budget)
    tr = enum_trace(model, x, mask)
    total = contract_sites(tr, None, (), num_data(x), _data_plate(model))
    return zeros(x) if total is None else total.reshape(())


def _marginal_pass(model: LatentVariableModel, x, mask) -> torch.Tensor:
    """One contraction of the enumerated factors for the data ``x`` (n, D): (n,)."""
    if num_data(x) == 1:
        # Pyro packs away dims of size 1, the data plate's included; score a copy beside it
        x, mask = twice(x, mask)
        return _marginal_pass(model, x, mask)[:1]
    tr = enum_trace(model, x, mask)
    return log_marginal(tr, num_data(x), _data_plate(model))


def enumerated_states(model: LatentVariableModel, x, mask, sites=None) -> int:
    """The joint states per datum that enumeration holds at once: the product over the local
    discrete sites, or, where that is large and there are several sites, the most that are
    live at once (per ``pyro.markov`` step, :func:`~._contract.live_state_count`)."""
    sites = model.sites(x, mask) if sites is None else sites
    total = discrete_state_count(sites) or 1
    several = sum(1 for s in sites.values() if s.latent and s.local and s.discrete) > 1
    inner = any(
        s.latent and s.local and s.discrete and s.elements_per_datum > math.prod(s.event_shape)
        for s in sites.values()
    )
    if total <= 1024 or not (several or inner):
        return total
    return min(total, live_state_count(model.trace(x, mask), sites, _data_plate(model)))


def state_values(site: dict) -> torch.Tensor:
    """The enumerated values of a site, one row per state: (S, *event)."""
    v = site["value"]
    ev = len(site["fn"].event_shape)
    states = v.shape[site["infer"]["_enumerate_dim"] - ev]
    return v.reshape((states, -1) + tuple(v.shape[v.dim() - ev :]))[:, 0]


def exact_draws(lvm, x, mask, num_samples: int, temperature: int) -> dict[str, torch.Tensor]:
    """S joint draws of every discrete latent from p(z | x) (``temperature=1``, forward
    filtering, backward sampling) or its MAP value (0), per site (S, N, ...)."""
    rank = plate_nesting(lvm.trace(x, mask))

    def replicated(x, mask):
        with pyro.plate("_draws", num_samples, dim=-(rank + 1)):
            return lvm.model(x, mask)

    sampler = infer_discrete(
        _UnmaskedLatents()(_enumerable(replicated)),
        first_available_dim=-(rank + 2),
        temperature=temperature,
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
        plates = {f.dim for f in site["cond_indep_stack"] if f.vectorized}
        for d in reversed(range(2, rank + 1)):
            if v.shape[d] == 1 and d - 2 - rank not in plates:
                v = v.squeeze(d)
        out[name] = v
    return out


def twice(x: Data, mask: Mask) -> tuple[Data, Mask]:
    """The single datum and a copy of it: (2, ...), every tensor of a dict alike."""
    rows = torch.zeros(2, dtype=torch.long)
    return take_rows(x, rows), take_rows(mask, rows)


def site_marginals(
    tr: poutine.Trace, num_data: int, data_plate: str = DATA_PLATE
) -> dict[str, tuple[torch.Tensor, Any]]:
    """For each enumerated site: p(site = s | x_n) and the site, shape (N, S), or
    (N, *inner plates, S) for a site inside plates nested in the data plate."""
    return marginals(tr, num_data, data_plate)


def _with_global_draws(
    guide_tr: poutine.Trace, draws_tr: poutine.Trace | None, global_: set[str], plate: str
) -> poutine.Trace:
    """The guide's draws and the enumerated global sites' exact draws, as one trace to replay."""
    fixed = poutine.Trace()
    for name, site in guide_tr.nodes.items():
        if site["type"] == "sample":
            fixed.add_node(name, **site)
    if draws_tr is not None:
        for name in global_:
            site = draws_tr.nodes.get(name)
            if site is not None and not site["is_observed"] and name not in fixed.nodes:
                fixed.add_node(name, **site)
    return fixed


def replayed_posterior(
    lvm: LatentVariableModel,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    sites: dict[str, SiteInfo],
    num_samples: int,
    budget: int | None = None,
    proposal: Literal["guide", "prior"] = "guide",
    keep_samples: bool = True,
) -> dict[str, Any]:
    """Guide (or prior) draws, with the story's enumerated local sites drawn from their exact
    conditional and summed out of the scores; the shared path of ``SVI.posterior`` for stories
    with global latents or enumerated discrete sites (mixtures).

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
    budget : int, optional
        Numbers per enumerated tensor (S x states x chunk x D) a chunk may hold; defaults to
        the memory budget in force (:mod:`ppl_lvm.core.memory`).
    proposal : {"guide", "prior"}
        Where the draws come from: the guide, or the model's own prior over the latent sites
        it does not mark for parallel enumeration (:mod:`._priorguide`; a drawn site must not
        depend on a marked one, which ``check_prior_draws`` verifies first). The weights are
        then Rao–Blackwellised prior importance weights: log p(x | draw), the marked sites
        summed.
    keep_samples : bool
        Draw the enumerated sites and return the draws; False (an evidence alone) skips the
        exact draws, and ``samples`` is empty.

    Returns
    -------
    dict
        ``samples`` (S, ...) for globals and (S, N, ...) for local sites, ``local_sites``,
        ``log_lik`` (S, N), and ``log_p``, ``log_q``: (S, N) when every site is local, (S,)
        (summed over the data, global sites included) otherwise.
    """
    declared = lvm.declared_subsample(x, mask)
    if declared is not None:
        raise UnsupportedModelError(
            f"story '{lvm.name}' declares subsample_size={declared} in plate '{lvm.data_plate}'"
            ", and draws that share the global latents take every datum in one pass; remove "
            "subsample_size for the posterior (pyro.plate(..., len(x)) as ind keeps x[ind] "
            "working, and SVI.fit(batch_size=B) still minibatches through the plate's indices)."
        )
    try:
        return _replayed(lvm, x, mask, sites, num_samples, budget, True, proposal, keep_samples)
    except (ValueError, RuntimeError) as err:
        if not any(sign in str(err) for sign in NO_BROADCAST):
            raise
    # the story does not broadcast over a leading particle dim: one draw at a time, each with
    # its own global draws (the weighting routine's documented slower path)
    parts = [
        _replayed(lvm, x, mask, sites, 1, budget, False, proposal, keep_samples)
        for _ in range(num_samples)
    ]
    return {
        "samples": {k: torch.cat([p["samples"][k] for p in parts]) for k in parts[0]["samples"]},
        "local_sites": parts[0]["local_sites"],
        **{k: torch.cat([p[k] for p in parts]) for k in ("log_lik", "log_p", "log_q")},
    }


def _replayed(
    lvm, x, mask, sites, num_samples: int, budget, vectorised: bool, proposal: str, draws: bool
) -> dict[str, Any]:
    """:func:`replayed_posterior` under a particle plate of S draws (``vectorised``), or one
    draw with no particle plate at all."""
    # a particle plate of size 1 would be packed away too
    s_draws = max(2, num_samples) if vectorised else 1
    plate = _data_plate(lvm)
    n = num_data(x)
    states = 1
    for info in sites.values():
        if info.latent and info.local and info.enumerate == "parallel" and info.num_states:
            states *= info.num_states**info.elements_per_datum
    prior = proposal == "prior"
    proposed = drawn_sites(sites) if prior else set(lvm.sites(x, mask, "guide"))
    # a global latent the guide leaves to enumeration couples the data: one pass over them all
    coupled = any(
        info.latent and not info.local and info.name not in proposed for info in sites.values()
    )
    chunk = n if coupled else chunk_rows(n, s_draws * states * lvm.working_width(x), budget)
    first_x = take_rows(x, slice(0, chunk))
    first_m = take_rows(mask, slice(0, chunk))
    rank = plate_nesting(lvm.trace(first_x, first_m))
    if not prior:
        rank = max(rank, plate_nesting(lvm.trace(first_x, first_m, "guide")))
    prank = rank + 1  # with the particle dim
    particles = (
        pyro.plate(PARTICLE_PLATE, s_draws, dim=-prank) if vectorised else contextlib.nullcontext()
    )
    global_guide = None
    global_log_p = global_log_q = zeros(x, s_draws)
    # a global latent, or a guide density joint over the data (AutoDiagonalNormal's one
    # vector), makes the scores joint: (S,)
    has_global = joint_over_data(lvm, sites, x, mask, guide=not prior)
    samples: dict[str, list[torch.Tensor]] = {}
    log_lik, local_log_p, local_log_q = [], [], []
    local_sites: list[str] = []
    for start in range(0, n, chunk):
        xb = take_rows(x, slice(start, start + chunk))
        mb = take_rows(mask, slice(start, start + chunk))
        nb = num_data(xb)
        if nb == 1:  # Pyro packs away dims of size 1, the data plate's included: score a copy
            xb, mb = twice(xb, mb)
        source = lvm.model if prior else lvm.guide
        guide = source if global_guide is None else poutine.replay(source, global_guide)
        with lvm.scoped(), particles:
            guide_tr = poutine.trace(guide).get_trace(xb, mb)
        if prior:  # the model's own draws, kept to the sites it does not mark to enumerate
            guide_tr = prior_draws(guide_tr, proposed)
        guide_tr.compute_log_prob()

        def replayed(x, mask, guide_tr=guide_tr):
            with particles:
                return poutine.replay(lvm.model, trace=guide_tr)(x, mask)

        enumerated = poutine.enum(_enumerable(replayed), first_available_dim=-(prank + 1))
        with lvm.scoped():
            model_tr = poutine.trace(enumerated).get_trace(xb, mb)
        model_tr.compute_log_prob()
        model_tr.pack_tensors()
        sum_dims = set()
        local, local_latent, global_ = set(), [], set()
        for name, site in sample_sites(model_tr):
            sym = site["infer"].get("_enumerate_symbol")
            if sym is not None:
                sum_dims.add(sym)
            if any(f.name == plate for f in site["cond_indep_stack"]):
                local.add(name)
                if not site["is_observed"]:
                    local_latent.append(name)
            else:
                global_.add(name)
        keep = (PARTICLE_PLATE, plate)
        if coupled:
            # a global site summed by enumeration couples the data: the joint, in one pass
            total = contract_sites(model_tr, None, (PARTICLE_PLATE,), num_data(xb), plate)
            global_log_p = as_particles(total, prank, s_draws)
        elif global_guide is None and global_:
            part = contract_sites(model_tr, global_, (PARTICLE_PLATE,), num_data(xb), plate)
            global_log_p = as_particles(part, prank, s_draws)
        # a site with a single state leaves no enumerated dim after packing: nothing to draw
        single_state = [
            name
            for name, site in sample_sites(model_tr)
            if site["infer"].get("_enumerate_symbol") is not None
            and site["infer"]["_enumerate_symbol"] not in site["packed"]["log_prob"]._pyro_dims
        ]
        draws_tr = None
        # the exact draws are needed for the samples, and to score a coupled story's log_lik
        if (draws or coupled) and len(single_state) < len(sum_dims):
            sampler = infer_discrete(_enumerable(replayed), first_available_dim=-(prank + 1))
            with lvm.scoped():
                draws_tr = poutine.trace(sampler).get_trace(xb, mb)
        scored_tr = model_tr
        if coupled:
            # log p(x_n | draw): the model again, its global sites fixed at the draws
            fixed = _with_global_draws(guide_tr, draws_tr, global_, plate)

            def given(x, mask, fixed=fixed):
                with particles:
                    return poutine.replay(lvm.model, trace=fixed)(x, mask)

            given_fn = poutine.enum(_enumerable(given), first_available_dim=-(prank + 1))
            with lvm.scoped():
                scored_tr = poutine.trace(given_fn).get_trace(xb, mb)
            scored_tr.compute_log_prob()
            scored_tr.pack_tensors()
        joint = contract_sites(scored_tr, local, keep, num_data(xb), plate)
        prior = contract_sites(scored_tr, set(local_latent), keep, num_data(xb), plate)
        joint = zeros(x) if joint is None else joint
        joint = as_particle_data(joint, prank, s_draws, num_data(xb))
        prior = 0.0 if prior is None else as_particle_data(prior, prank, s_draws, num_data(xb))
        log_lik.append((joint - prior)[:, :nb])
        local_log_p.append(zeros(x, s_draws, nb) if coupled else joint[:, :nb])
        lq = zeros(x, s_draws, num_data(xb))
        for _, site in sample_sites(guide_tr):
            if site["is_observed"]:
                continue
            part, is_local = site_log_prob(site, prank, s_draws, num_data(xb), plate)
            if is_local:
                lq = lq + part
            elif global_guide is None:
                global_log_q = global_log_q + part
        local_log_q.append(lq[:, :nb])
        if global_guide is None:
            local_sites = local_latent
            for name, site in sample_sites(model_tr) if draws else ():
                if not site["is_observed"] and name not in local:
                    if site["infer"].get("_enumerate_symbol") is not None:
                        # an enumerated global: its exact draw given the guide's
                        site = site if draws_tr is None else draws_tr.nodes[name]
                    samples[name] = [particle_value(site, prank, False)]
        for name in local_latent if draws else ():
            if name in single_state:
                site = model_tr.nodes[name]
                event = tuple(site["fn"].event_shape)
                v = site["value"].reshape((-1, *event))[0].expand(s_draws, nb, *event)
            elif model_tr.nodes[name]["infer"].get("_enumerate_symbol") is None:
                # a local site the guide proposes (a continuous z): its replayed draw
                v = particle_value(guide_tr.nodes[name], prank, True, plate)[:, :nb]
            else:
                v = particle_value(draws_tr.nodes[name], prank, True, plate)[:, :nb]
            samples.setdefault(name, []).append(v)
        if global_guide is None:
            # later chunks replay these global draws, so every datum sees the same θ_s (also
            # when the story has no local latent at all)
            global_guide = poutine.Trace()
            for gname, site in guide_tr.nodes.items():
                if site["type"] == "sample" and not any(
                    f.name == plate for f in site["cond_indep_stack"]
                ):
                    global_guide.add_node(gname, **site)
    s = num_samples
    merged = {k: (torch.cat(v, 1) if k in local_sites else v[0])[:s] for k, v in samples.items()}
    log_p, log_q = torch.cat(local_log_p, 1), torch.cat(local_log_q, 1)
    if has_global or coupled:
        log_p = global_log_p + log_p.sum(-1)
        log_q = global_log_q + log_q.sum(-1)
    return {
        "samples": merged,
        "local_sites": tuple(local_sites),
        "log_lik": torch.cat(log_lik, 1)[:s],
        "log_p": log_p[:s],
        "log_q": log_q[:s],
    }
