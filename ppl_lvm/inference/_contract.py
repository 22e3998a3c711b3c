"""Exact sums over enumerated discrete latents with the meaning of Pyro's ``TraceEnum_ELBO``.

Pyro (``pyro/infer/traceenum_elbo.py``, ``_compute_model_factors``) splits an enumerated trace
into two kinds of term:

* **log-factors**, contracted by variable elimination (``pyro.ops.contract``): every enumerated
  site scored by its *unscaled, unmasked* log-prob, and every other site whose log-prob depends
  on an enumerated value scored with its mask applied *inside* the sum and no scale;
* **costs**, added as they are: the scaled and masked log-prob of every site that depends on no
  enumerated value.

The contracted log-factors are multiplied by one scale *outside* the sum, which every site in
them must share (``_get_common_scale``). So under ``poutine.scale(scale=s)`` a datum scores
s · log p(x_n), and under ``poutine.mask`` a masked-out datum scores 0. Pyro refuses any tensor
scale on log-factors; here every latent is local to the data plate, so the sum factorises over
data and a scale that differs per datum (and only per datum) is applied to each datum's sum.

Markov chains (``pyro.markov``) let Pyro's enumeration recycle dims; :func:`live_state_count`
counts the joint states live at once, per step, from the scopes ``poutine.markov`` records.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pyro.poutine as poutine
import torch
from opt_einsum import shared_intermediates
from pyro.ops import packed
from pyro.ops.contract import contract_to_tensor

from ..core.errors import UnsupportedModelError
from ..models.base import DATA_PLATE, SiteInfo, sample_sites

__all__ = [
    "Factors",
    "as_particle_data",
    "as_particles",
    "check_dependencies",
    "contract_sites",
    "live_state_count",
    "log_marginal",
    "marginals",
    "model_factors",
    "site_state_counts",
]


@dataclass
class Factors:
    """An enumerated trace's terms, as ``TraceEnum_ELBO`` forms them.

    Attributes
    ----------
    log_factors : OrderedDict of frozenset to list of packed tensors
        By plate ordinal: enumerated sites (unscaled, unmasked) and the sites that depend on
        them (masked, unscaled).
    costs : OrderedDict of frozenset to list of packed tensors
        By plate ordinal: scaled and masked log-probs of the sites that depend on no enumerated
        value.
    sum_dims : set of str
        The enumerated dims.
    data : frozenset
        The ordinal of the data plate.
    scale : float or torch.Tensor of shape (N,)
        The scale shared by the log-factors, applied outside the sum.
    """

    log_factors: OrderedDict
    costs: OrderedDict
    sum_dims: set
    data: frozenset
    scale: float | torch.Tensor


def _ordinal(tr: poutine.Trace, site: dict) -> frozenset:
    return frozenset(tr.plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized)


def _data_frame(site: dict, data_plate: str) -> Any:
    return next((f for f in site["cond_indep_stack"] if f.name == data_plate), None)


def _datum_scale(name: str, site: dict, data_plate: str, num_data: int) -> float | torch.Tensor:
    """A site's scale as a number, or per datum (N,); refuses one that varies along any other
    dim (inside one datum's enumerated component)."""
    scale = site["scale"]
    if not isinstance(scale, torch.Tensor) or scale.dim() == 0:
        return float(scale)
    frame = _data_frame(site, data_plate)
    if frame is None:
        rows = scale.reshape(-1, 1)  # one number for the whole site, or refused
    else:
        scale = scale.reshape((1,) * max(0, -frame.dim - scale.dim()) + tuple(scale.shape))
        rows = scale.movedim(frame.dim, -1).reshape(-1, scale.shape[frame.dim])
    if not torch.equal(rows, rows[:1].expand_as(rows)):
        raise UnsupportedModelError(
            f"site '{name}' has a poutine.scale that varies inside one datum (along a plate "
            f"other than '{data_plate}'). Enumeration applies a scale outside the sum over the "
            "enumerated values, as Pyro's TraceEnum_ELBO does, so it must be one number per "
            "datum for every enumerated site and every site that depends on one. Scale whole "
            "data, or use ImportanceSampling, which weighs each site by its own scale."
        )
    if rows.shape[1] == 1:
        return float(rows[0, 0])
    return rows[0].expand(num_data)


def _common_scale(
    scaled: list[tuple[str, dict]], data_plate: str, num_data: int
) -> float | torch.Tensor:
    """The one scale every log-factor shares (Pyro's ``_get_common_scale``), per datum."""
    values = [(name, _datum_scale(name, site, data_plate, num_data)) for name, site in scaled]
    if not values:
        return 1.0
    if all(isinstance(v, float) for _, v in values):
        if len({v for _, v in values}) == 1:
            return values[0][1]
    else:
        ref = next(v for _, v in values if isinstance(v, torch.Tensor))
        vectors = [torch.as_tensor(v, dtype=ref.dtype).expand(num_data) for _, v in values]
        if all(torch.equal(v, vectors[0]) for v in vectors):
            return vectors[0]
    shown = ", ".join(
        f"'{n}' {v:g}" if isinstance(v, float) else f"'{n}' per datum {v.tolist()[:4]}…"
        for n, v in values
    )
    raise UnsupportedModelError(
        "Enumeration applies poutine.scale outside the sum over enumerated values, as Pyro's "
        "TraceEnum_ELBO does (which raises 'Expected all enumerated sample sites to share a "
        "common poutine.scale'), so every enumerated site and every site that depends on one "
        f"must share one scale per datum; here the scales differ: {shown}. Put poutine.scale "
        "around the whole per-datum story, or use ImportanceSampling, which weighs each site "
        "by its own scale."
    )


def model_factors(tr: poutine.Trace, num_data: int, data_plate: str = DATA_PLATE) -> Factors:
    """Split a packed, enumerated trace into log-factors and costs as ``TraceEnum_ELBO`` does."""
    sum_dims = {
        site["infer"]["_enumerate_symbol"]
        for _, site in sample_sites(tr)
        if site["infer"].get("_enumerate_symbol") is not None
    }
    log_factors: OrderedDict = OrderedDict()
    costs: OrderedDict = OrderedDict()
    scaled: list[tuple[str, dict]] = []
    for name, site in sample_sites(tr):
        ordinal = _ordinal(tr, site)
        p = site["packed"]
        if site["infer"].get("_enumerate_dim") is not None:
            term = p["unscaled_log_prob"]
        elif sum_dims.isdisjoint(p["unscaled_log_prob"]._pyro_dims):
            costs.setdefault(ordinal, []).append(p["log_prob"])
            continue
        else:
            if "masked_log_prob" not in p:
                p["masked_log_prob"] = packed.scale_and_mask(p["unscaled_log_prob"], mask=p["mask"])
            term = p["masked_log_prob"]
        log_factors.setdefault(ordinal, []).append(term)
        scaled.append((name, site))
    data = frozenset({tr.plate_to_symbol[data_plate]})
    scale = _common_scale(scaled, data_plate, num_data)
    return Factors(log_factors, costs, sum_dims, data, scale)


def _per_datum(term: torch.Tensor, tr: poutine.Trace, num_data: int) -> torch.Tensor:
    return packed.unpack(term, tr.symbol_to_dim).reshape(-1).expand(num_data)


def log_marginal(tr: poutine.Trace, num_data: int, data_plate: str = DATA_PLATE) -> torch.Tensor:
    """log p(x_n) per datum, (N,): the log-factors contracted to the data plate and scaled, plus
    the costs; differentiable in the story's parameters."""
    f = model_factors(tr, num_data, data_plate)
    parts = []
    if f.log_factors:
        summed = contract_to_tensor(f.log_factors, f.sum_dims, target_ordinal=f.data)
        summed = _per_datum(summed, tr, num_data)
        if isinstance(f.scale, torch.Tensor) or f.scale != 1.0:
            summed = summed * f.scale
        parts.append(summed)
    if f.costs:
        parts.append(
            _per_datum(contract_to_tensor(f.costs, set(), target_ordinal=f.data), tr, num_data)
        )
    if not parts:
        return torch.zeros(num_data)
    return sum(parts[1:], parts[0])


def contract_sites(
    tr: poutine.Trace,
    names: set[str] | None,
    keep: tuple[str, ...],
    num_data: int,
    data_plate: str = DATA_PLATE,
) -> torch.Tensor | None:
    """The log of the named sites' joint, enumerated dims summed out as ``TraceEnum_ELBO`` sums
    them, over every plate but ``keep``; unpacked, None when no site is named.

    Parameters
    ----------
    tr : poutine.Trace
        Enumerated, log-probs computed and packed.
    names : set of str or None
        The sites whose terms to take (None: every sample site).
    keep : tuple of str
        The plates left in the result, e.g. the particle plate and the data plate; the others
        are summed over (a product of probabilities). A site outside a kept plate must not be
        named, for it would be counted once per member of that plate.
    num_data : int
        N, the data plate's size.
    data_plate : str

    Returns
    -------
    torch.Tensor or None
        Unpacked: size one but at the dims of the kept plates. The log-factors (enumerated
        sites unscaled and unmasked, the sites depending on them masked) are contracted and
        scaled by their one common scale outside the sum; the costs (sites depending on no
        enumerated value) are added scaled and masked.
    """
    f = model_factors(tr, num_data, data_plate)
    chosen = {n for n, _ in sample_sites(tr)} if names is None else names
    terms = {id(site["packed"][k]): n for n, site in sample_sites(tr) for k in site["packed"]}
    target = frozenset(tr.plate_to_symbol[p] for p in keep if p in tr.plate_to_symbol)

    def pick(groups: OrderedDict) -> OrderedDict:
        out: OrderedDict = OrderedDict()
        for ordinal, values in groups.items():
            mine = [v for v in values if terms.get(id(v)) in chosen]
            if mine:
                out[ordinal] = mine
        return out

    factors, costs = pick(f.log_factors), pick(f.costs)
    parts = []
    if factors:
        summed = packed.unpack(
            contract_to_tensor(factors, f.sum_dims, target_ordinal=target), tr.symbol_to_dim
        )
        scale = f.scale
        if isinstance(scale, torch.Tensor):
            dim = next(
                (fr.dim for _, s in sample_sites(tr) for fr in s["cond_indep_stack"]
                 if fr.name == data_plate),
                None,
            )  # fmt: skip
            if data_plate not in keep or dim is None:
                raise UnsupportedModelError(
                    "a poutine.scale that differs per datum cannot scale a sum that couples "
                    "the data (a global enumerated site); scale the whole story by one number."
                )
            scale = scale.reshape((-1,) + (1,) * (-dim - 1))
        parts.append(summed * scale if isinstance(scale, torch.Tensor) or scale != 1.0 else summed)
    if costs:
        parts.append(
            packed.unpack(contract_to_tensor(costs, set(), target_ordinal=target), tr.symbol_to_dim)
        )
    if not parts:
        return None
    return sum(parts[1:], parts[0])


def as_particle_data(value: torch.Tensor, rank: int, num_particles: int, num_data: int):
    """An unpacked tensor of ``rank`` dims whose only non-unit dims are the particles' (the
    leftmost) and the data plate's, wherever that plate sits ((S, 1, N) or (S, N, 1) with the
    data plate at dim -2, as in Pyro's HMM example), as (S, N)."""
    value = value.reshape((1,) * (rank - value.dim()) + tuple(value.shape))
    return value.reshape(value.shape[0], -1).expand(num_particles, num_data)


def as_particles(value: torch.Tensor | None, rank: int, num_particles: int) -> torch.Tensor:
    """An unpacked tensor of ``rank`` dims whose only non-unit dim is the particles' as (S,)."""
    if value is None:
        return torch.zeros(num_particles)
    value = value.reshape((1,) * (rank - value.dim()) + tuple(value.shape))
    return value.reshape(value.shape[0], -1)[:, 0].expand(num_particles)


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
            owner[sym] = (name, _plates_of(site))
    for name, site in sample_sites(tr):
        dims = getattr(site["packed"]["log_prob"], "_pyro_dims", "")
        for sym in dims:
            if sym in owner:
                src, src_ord = owner[sym]
                outside = sorted(src_ord - _plates_of(site))
                if outside:
                    raise UnsupportedModelError(
                        f"site '{name}' depends on the enumerated site '{src}' but sits "
                        f"outside its plate(s) {outside}; summing that by enumeration is "
                        "wrong (each plate member has its own value). Move the site into "
                        "the plate, or use ImportanceSampling."
                    )


def _plates_of(site: dict) -> frozenset:
    return frozenset(f.name for f in site["cond_indep_stack"] if f.vectorized)


def marginals(
    tr: poutine.Trace, num_data: int, data_plate: str = DATA_PLATE
) -> dict[str, tuple[torch.Tensor, dict]]:
    """For each enumerated site, p(site = s | x_n) and the site: (N, *inner plates, S), one dim
    per plate the site sits in besides the data plate, outermost first.

    As Pyro's ``TraceEnum_ELBO.compute_marginals``: the log-factors contracted to the site's own
    plates, no scale."""
    f = model_factors(tr, num_data, data_plate)
    out = {}
    with shared_intermediates() as cache:
        for name, site in sample_sites(tr):
            sym = site["infer"].get("_enumerate_symbol")
            if sym is None:
                continue
            logits = contract_to_tensor(
                f.log_factors,
                f.sum_dims,
                target_ordinal=_ordinal(tr, site),
                target_dims={sym},
                cache=cache,
            )
            logits = packed.unpack(logits, tr.symbol_to_dim)
            out[name] = (torch.softmax(_plates_last(logits, site, num_data, data_plate), -1), site)
    return out


def _plates_last(logits: torch.Tensor, site: dict, num_data: int, data_plate: str) -> torch.Tensor:
    """An unpacked marginal (..., S, plates...) as (N, *inner plates, S)."""
    enum_dim = site["infer"]["_enumerate_dim"]
    need = max(-enum_dim, logits.dim())
    logits = logits.reshape((1,) * (need - logits.dim()) + tuple(logits.shape))
    logits = logits.movedim(enum_dim, -1)  # plate dims d (right of the enum dim) now sit at d - 1
    frames = sorted((f for f in site["cond_indep_stack"] if f.vectorized), key=lambda f: f.dim)
    data = [f for f in frames if f.name == data_plate]
    inner = [f for f in frames if f.name != data_plate]
    keep = [logits.dim() + f.dim - 1 for f in data + inner] + [logits.dim() - 1]
    rest = [d for d in range(logits.dim()) if d not in keep]
    logits = logits.permute(rest + keep)
    logits = logits.reshape((-1,) + tuple(logits.shape[len(rest) :]))[0]
    sizes = ([num_data] if data else []) + [f.size for f in inner] + [logits.shape[-1]]
    return logits.expand(sizes)


# ----------------------------------------------------------------------------------------------
# how many joint states enumeration holds at once
def site_state_counts(
    tr: poutine.Trace, sites: dict[str, SiteInfo], data_plate: str = DATA_PLATE
) -> dict[str, int]:
    """States each local discrete latent site enumerates in one dim: its support to the power
    of its event size (joint support) and of batch elements no plate accounts for. Elements of
    an inner plate are enumerated in parallel, each on its own."""
    out = {}
    for name, site in sample_sites(tr):
        info = sites.get(name)
        if info is None or info.observed or not info.local or not info.discrete:
            continue
        if info.num_states is None:
            continue
        inner = math.prod(
            f.size for f in site["cond_indep_stack"] if f.vectorized and f.name != data_plate
        )
        out[name] = info.num_states ** max(1, info.elements_per_datum // max(1, inner))
    return out


def live_state_count(
    tr: poutine.Trace, sites: dict[str, SiteInfo], data_plate: str = DATA_PLATE
) -> int:
    """The most joint states of the local discrete latents that enumeration holds at once, per
    datum: the max over sites of the product of the states live there.

    A site outside every ``pyro.markov`` context keeps its dim for good (Pyro's enumeration
    never recycles it). A site inside one sees only the sites its ``_markov_scope`` names (the
    current and ``history`` previous steps), so a chain of T steps with H states costs H^2 per
    step rather than H^T.
    """
    size = site_state_counts(tr, sites, data_plate)
    held = 1  # sites without a Markov scope, seen so far
    best = 1
    for name, site in sample_sites(tr):
        if name not in sites:
            continue
        own = size.get(name, 1)
        scope = site["infer"].get("_markov_scope")
        if scope is None:
            held *= own
            best = max(best, held)
            continue
        live = held * own
        for other in scope:
            if other != name:
                live *= size.get(other, 1)
        best = max(best, live)
    return best
