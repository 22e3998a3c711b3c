"""Enumeration operations shared by the engines: parallel enumeration of discrete latents
(Pyro's ``poutine.enum``), contraction of the factors by variable elimination
(``pyro.ops.contract``, the machinery behind ``TraceEnum_ELBO``), exact marginals and draws, and
guide draws with enumerated sites summed out (:func:`replayed_posterior`).

``Enumeration`` is built on them; ``SVI.posterior`` and ``ImportanceSampling.posterior`` use them
too, so no engine calls another.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import config_enumerate, infer_discrete
from pyro.ops import packed
from pyro.ops.contract import contract_to_tensor
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
from ._contract import live_state_count, log_marginal, marginals
from ._weights import PARTICLE_PLATE, particle_value, plate_nesting, site_log_prob

__all__ = [
    "check_dependencies",
    "enum_trace",
    "enumerated_states",
    "exact_draws",
    "exact_log_marginal",
    "replayed_posterior",
    "site_marginals",
    "state_values",
    "twice",
]


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


def check_dependencies(tr: poutine.Trace) -> None:
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
    budget: int | None = None,
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
    budget : int, optional
        Numbers per enumerated tensor (S x states x chunk x D) a chunk may hold; defaults to
        the memory budget in force (:mod:`ppl_lvm.core.memory`).

    Returns
    -------
    dict
        ``samples`` (S, ...) for globals and (S, N, ...) for local sites, ``local_sites``,
        ``log_lik`` (S, N), and ``log_p``, ``log_q``: (S, N) when every site is local, (S,)
        (summed over the data, global sites included) otherwise.
    """
    s_draws = max(2, num_samples)  # a particle plate of size 1 would be packed away too
    plate = _data_plate(lvm)
    n = num_data(x)
    states = 1
    for info in sites.values():
        if info.latent and info.local and info.enumerate == "parallel" and info.num_states:
            states *= info.num_states**info.elements_per_datum
    chunk = chunk_rows(n, s_draws * states * lvm.working_width(x), budget)
    first_x = take_rows(x, slice(0, chunk))
    first_m = take_rows(mask, slice(0, chunk))
    rank = max(
        plate_nesting(lvm.trace(first_x, first_m)),
        plate_nesting(lvm.trace(first_x, first_m, "guide")),
    )
    prank = rank + 1  # with the particle dim
    particles = pyro.plate(PARTICLE_PLATE, s_draws, dim=-prank)
    global_guide = None
    global_log_p = global_log_q = zeros(x, s_draws)
    has_global = any(not info.local for info in sites.values())
    samples: dict[str, list[torch.Tensor]] = {}
    log_lik, local_log_p, local_log_q = [], [], []
    local_sites: list[str] = []
    for start in range(0, n, chunk):
        xb = take_rows(x, slice(start, start + chunk))
        mb = take_rows(mask, slice(start, start + chunk))
        nb = num_data(xb)
        if nb == 1:  # Pyro packs away dims of size 1, the data plate's included: score a copy
            xb, mb = twice(xb, mb)
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
            {model_tr.plate_to_symbol[PARTICLE_PLATE], model_tr.plate_to_symbol[plate]}
        )
        sum_dims = set()
        local, local_latent = [], []
        for name, site in sample_sites(model_tr):
            sym = site["infer"].get("_enumerate_symbol")
            if sym is not None:
                sum_dims.add(sym)
            if any(f.name == plate for f in site["cond_indep_stack"]):
                local.append(name)
                if not site["is_observed"]:
                    local_latent.append(name)
            elif global_guide is None:
                global_log_p = global_log_p + site_log_prob(site, prank, s_draws, num_data(xb))[0]
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
        joint = _as_particle_data(joint, prank, s_draws, num_data(xb))
        prior = 0.0 if prior is None else _as_particle_data(prior, prank, s_draws, num_data(xb))
        log_lik.append((joint - prior)[:, :nb])
        local_log_p.append(joint[:, :nb])
        lq = zeros(x, s_draws, num_data(xb))
        for _, site in sample_sites(guide_tr):
            if site["is_observed"]:
                continue
            part, is_local = site_log_prob(site, prank, s_draws, num_data(xb))
            if is_local:
                lq = lq + part
            elif global_guide is None:
                global_log_q = global_log_q + part
        local_log_q.append(lq[:, :nb])
        if global_guide is None:
            local_sites = local_latent
            for name, site in sample_sites(model_tr):
                if not site["is_observed"] and name not in local:
                    samples[name] = [particle_value(site, prank, False)]
        for name in local_latent:
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
