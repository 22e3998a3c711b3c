"""The one weighting routine: log p(x, z) and log q(z | x) per particle and per datum.

Importance sampling, the IWAE objective, Pareto k̂ and the ArviZ export all start here. The K
particles are an outer ``pyro.plate`` placed left of every plate the story uses, so one batched
pass of guide and model scores all of them; there is no Python loop over particles.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

import pyro
import pyro.poutine as poutine
import torch
from torch.distributions import constraints

from .._typing import ModelLike
from ..core.checks import check_data
from ..core.data import all_observed, num_data, take_rows, zeros
from ..core.errors import ModelGuideMismatchError
from ..core.logweights import LogWeights
from ..core.memory import check_fits, chunk_rows, current_budget
from ..models.base import DATA_PLATE, LatentVariableModel, SiteInfo, sample_sites
from ..models.capabilities import ParticleLogWeights, has
from ..models.story import as_model

__all__ = [
    "PARTICLE_PLATE",
    "check_model_guide",
    "concat_log_weights",
    "log_weights",
    "log_weights_in_chunks",
    "particle_value",
    "plate_nesting",
    "site_log_prob",
]

#: Name of the outer plate that vectorises particles.
PARTICLE_PLATE = "_particles"


def plate_nesting(trace: poutine.Trace) -> int:
    """How many batch dims a trace's sample sites use: the max over sites of plate depth and
    batch rank. Particles go one dim to the left of that."""
    depth = 0
    for _, site in sample_sites(trace):
        for frame in site["cond_indep_stack"]:
            if frame.vectorized and frame.dim is not None:
                depth = max(depth, -frame.dim)
        depth = max(depth, len(site["fn"].batch_shape))
    return depth


def _support_key(support: constraints.Constraint) -> tuple[str, bool]:
    # to_event wraps a support in `independent`; what matters is the underlying set.
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return type(support).__name__, bool(support.is_discrete)


def check_model_guide(model_sites: dict[str, SiteInfo], guide_sites: dict[str, SiteInfo]) -> None:
    """Refuse a model/guide pair whose latent sites, supports or shapes disagree.

    Raises
    ------
    ModelGuideMismatchError
        Naming the sites: latent model sites the guide never samples, guide sites the model does
        not have (or observes), and shared sites whose support, event shape or batch shape
        differ.
    """
    latent = {k for k, v in model_sites.items() if not v.observed}
    proposed = {k for k, v in guide_sites.items() if not v.observed}
    problems = []
    missing = [k for k in model_sites if k in latent - proposed]
    extra = [k for k in guide_sites if k in proposed - latent]
    if missing:
        problems.append(f"model latent sites with no guide site: {missing}")
    if extra:
        observed = [k for k in extra if k in model_sites]
        unknown = [k for k in extra if k not in model_sites]
        if unknown:
            problems.append(f"guide sites the model does not have: {unknown}")
        if observed:
            problems.append(f"guide samples sites the model observes: {observed}")
    for name in latent & proposed:
        m, g = model_sites[name], guide_sites[name]
        # an autoguide's Delta carries a value already transformed into the model's support
        if g.distribution != "Delta" and _support_key(m.support) != _support_key(g.support):
            problems.append(
                f"site '{name}': the model's support is {m.support} ({m.distribution}) but the "
                f"guide proposes from {g.support} ({g.distribution})"
            )
        if m.event_shape != g.event_shape:
            problems.append(
                f"site '{name}': event shape {m.event_shape} in the model, {g.event_shape} in "
                "the guide (check .to_event)"
            )
        elif m.local != g.local or torch.broadcast_shapes(m.batch_shape, g.batch_shape) != tuple(
            m.batch_shape
        ):
            problems.append(
                f"site '{name}': batch shape {m.batch_shape} in the model, {g.batch_shape} in the "
                "guide (is the site in the data plate in both?)"
            )
    if problems:
        raise ModelGuideMismatchError(
            "the model and guide do not match: " + "; ".join(problems) + ". Every latent site "
            "of the model needs one guide site of the same name, support and shape."
        )


def _refuse_ignored_mask(trace: poutine.Trace, by_key: bool) -> None:
    """A mask was given and hides something: every observed site must honour it, or, for a
    dict ``x`` (whose mask covers some keys, so some sites rightly ignore it), at least one."""
    observed = [site for _, site in sample_sites(trace) if site["is_observed"]]
    ignoring = [site["name"] for site in observed if not _honours_mask(site)]
    if ignoring and (not by_key or len(ignoring) == len(observed)):
        raise ValueError(
            f"a mask was given but observed site '{ignoring[0]}' ignores it, so missing "
            "entries would be scored as if observed; wrap its distribution with .mask(mask) "
            "(before .to_event), or pass obs_mask= to pyro.sample."
        )


def _honours_mask(site: dict) -> bool:
    if site.get("mask") is not None:
        return True
    fn = site["fn"]
    while fn is not None:
        # a distribution that scores observed entries only declares it with `handles_mask`
        if type(fn).__name__ == "MaskedDistribution" or getattr(fn, "handles_mask", False):
            return True
        fn = getattr(fn, "base_dist", None)
    return False


def site_log_prob(
    site: dict, rank: int, num_particles: int, num_data: int, data_plate: str = DATA_PLATE
) -> tuple[torch.Tensor, bool]:
    """Sum a site's log-prob over every dim but particles and data: (K, N) or (K,)."""
    lp = site["log_prob"]
    if not torch.is_tensor(lp):
        lp = torch.as_tensor(lp)
    if lp.dim() > rank:
        raise ValueError(
            f"site '{site['name']}' has log-prob shape {tuple(lp.shape)}, with batch dims no "
            "plate declares; declare them with pyro.plate or move them to the event with "
            ".to_event()."
        )
    lp = lp.reshape((1,) * (rank - lp.dim()) + tuple(lp.shape))
    # Each batch dim must belong to a plate of this site; a dim that holds something else means
    # the story mixed the particle dim into another plate's position and would be summed wrongly.
    sizes = {rank + f.dim: f.size for f in site["cond_indep_stack"] if f.vectorized}
    expected = tuple(sizes.get(d, 1) for d in range(rank))
    # a plate of size -1 (``pyro.plate("data")`` with no size) takes its size by broadcasting
    if any(
        have not in (1, want) and want != -1 for have, want in zip(lp.shape, expected, strict=True)
    ):
        raise ValueError(
            f"site '{site['name']}' has log-prob shape {tuple(lp.shape)} where its plates allow "
            f"{expected}: the story does not broadcast over the leading particle dimension. "
            "Index from the right (x[..., i], .sum(-1, keepdim=True)) so that extra leading "
            "dims pass through."
        )
    dims = [f.dim for f in site["cond_indep_stack"] if f.name == data_plate]
    local = bool(dims)
    keep = (0, rank + dims[0]) if local else (0,)
    inner = tuple(d for d in range(rank) if d not in keep)
    if inner:
        lp = lp.sum(inner)
    target = (num_particles, num_data) if local else (num_particles,)
    return lp.expand(target), local


def particle_value(
    site: dict, rank: int, local: bool, data_plate: str = DATA_PLATE
) -> torch.Tensor:
    """A site's value as (K, N, ...) for a local site or (K, ...) for a global one."""
    v = site["value"]
    # the value, not fn.batch_shape: a replayed site keeps the guide's particle-shaped value
    nb = v.dim() - len(site["fn"].event_shape)
    v = v.reshape((1,) * (rank - nb) + tuple(v.shape))
    if local:
        # the data plate's dim (-1 unless the story puts it elsewhere) becomes dim 1
        dim = next((f.dim for f in site["cond_indep_stack"] if f.name == data_plate), -1)
        v = v.movedim(rank + dim, 1)
    start = 2 if local else 1
    # plates of size one that the site does not use would only clutter the draws
    for d in reversed(range(start, rank)):
        if v.shape[d] == 1:
            v = v.squeeze(d)
    return v


def log_weights(
    model: ModelLike,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    num_particles: int,
    proposal: Literal["guide", "prior"] = "guide",
    validate: bool = True,
    max_plate_nesting: int | None = None,
    fast: bool = True,
) -> LogWeights:
    """Score K particles for every datum in one vectorised pass.

    Particles are drawn from the proposal (the guide q(z | x), or the prior p(z)) under an outer
    ``pyro.plate`` of size K, the model is replayed on them, and every site's log-density is
    summed to one number per particle and datum. Masked-out entries of ``x`` are zero-filled and
    excluded by the model's ``.mask(mask)``.

    Parameters
    ----------
    model : LatentVariableModel, (model_fn, guide_fn) pair, or model function
        The story. It must broadcast over a leading particle dimension, which Pyro's plates
        arrange for code that indexes from the right (``x[..., i]``, ``@``, ``.unsqueeze(-1)``).
    x : torch.Tensor of shape (N, D)
    mask : torch.Tensor of shape (N, D), dtype bool, optional
        True where an entry is observed.
    num_particles : int
        K, the particles per datum.
    proposal : {"guide", "prior"}
        Where the particles come from. With ``"prior"``, log_q is the prior log-density of the
        latents, so each weight reduces to log p(x | z).
    validate : bool
        Check the model/guide pair and the mask handling first (one ordinary trace of each).
    max_plate_nesting : int, optional
        Plate dims the story uses; given together with ``validate=False``, the routine skips
        its preliminary traces and runs only the vectorised pass.
    fast : bool
        Use the model's declared ``ParticleLogWeights`` path when it has one (built-in models
        compute the same numbers with plain tensor code); False forces the Pyro trace path.

    Returns
    -------
    LogWeights
        ``log_p`` and ``log_q`` of shape (K, N), global parts of shape (K,), and the particles.

    Raises
    ------
    ModelGuideMismatchError
        When the guide's latent sites do not match the model's.
    ValueError
        When ``x`` or ``mask`` is malformed, or a mask is given but an observed site ignores it.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x, mask=None):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])
    >>> def guide(x, mask=None):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x[:, 0] / 2, 0.5**0.5))
    >>> lw = log_weights((model, guide), torch.randn(5, 1), num_particles=100)
    >>> lw.local.shape
    torch.Size([100, 5])
    """
    if not isinstance(num_particles, int) or isinstance(num_particles, bool) or num_particles < 1:
        raise ValueError(f"num_particles must be a positive int, got {num_particles!r}.")
    if proposal not in ("guide", "prior"):
        raise ValueError(f"proposal must be 'guide' or 'prior', got {proposal!r}.")
    lvm: LatentVariableModel = as_model(model)
    x, mask = check_data(x, mask, fill=lvm.masked_fill)
    n = num_data(x)

    if fast and proposal == "guide" and has(lvm, ParticleLogWeights):
        if validate:
            check_model_guide(lvm.sites(x, mask), lvm.sites(x, mask, "guide"))
        with lvm.scoped():
            out = lvm.particle_log_weights(x, mask, num_particles)
        if out is not None:
            return out
    with lvm.scoped():
        if max_plate_nesting is None or validate:
            model_tr0 = poutine.trace(lvm.model).get_trace(x, mask)
            rank = plate_nesting(model_tr0)
            if proposal == "guide":
                guide_tr0 = poutine.trace(lvm.guide).get_trace(x, mask)
                rank = max(rank, plate_nesting(guide_tr0))
        else:
            rank = max_plate_nesting
        if validate:
            model_sites = lvm.sites(x, mask)
            if proposal == "guide":
                check_model_guide(model_sites, lvm.sites(x, mask, "guide"))
            if not all_observed(mask):
                _refuse_ignored_mask(model_tr0, isinstance(mask, Mapping))
        rank += 1  # the particle dim
        particles = pyro.plate(PARTICLE_PLATE, num_particles, dim=-rank)
        if proposal == "guide":
            with particles:
                guide_tr = poutine.trace(lvm.guide).get_trace(x, mask)
            with particles:
                model_tr = poutine.trace(poutine.replay(lvm.model, trace=guide_tr)).get_trace(
                    x, mask
                )
            guide_tr.compute_log_prob()
        else:
            with particles:
                model_tr = poutine.trace(lvm.model).get_trace(x, mask)
            guide_tr = None
        model_tr.compute_log_prob()

    zeros_local = zeros(x, num_particles, n)
    zeros_global = zeros(x, num_particles)
    log_p, log_q, log_lik, log_q_score = zeros_local, zeros_local, zeros_local, None
    g_log_p, g_log_q = zeros_global, zeros_global
    samples: dict[str, torch.Tensor] = {}
    local_sites: list[str] = []

    for name, site in sample_sites(model_tr):
        lp, local = site_log_prob(site, rank, num_particles, n, lvm.data_plate)
        if local:
            log_p = log_p + lp
            if site["is_observed"]:
                log_lik = log_lik + lp
        else:
            g_log_p = g_log_p + lp
        if not site["is_observed"]:
            samples[name] = particle_value(site, rank, local, lvm.data_plate)
            if local:
                local_sites.append(name)
            if proposal == "prior" and not site["infer"].get("is_auxiliary", False):
                if local:
                    log_q = log_q + lp
                else:
                    g_log_q = g_log_q + lp
    if guide_tr is not None:
        for _, site in sample_sites(guide_tr):
            if site["is_observed"]:
                continue
            lq, local = site_log_prob(site, rank, num_particles, n, lvm.data_plate)
            if local:
                log_q = log_q + lq
                if not getattr(site["fn"], "has_rsample", False):
                    log_q_score = lq if log_q_score is None else log_q_score + lq
            else:
                g_log_q = g_log_q + lq
    return LogWeights(
        log_p=log_p,
        log_q=log_q,
        global_log_p=g_log_p,
        global_log_q=g_log_q,
        samples=samples,
        local_sites=tuple(local_sites),
        log_lik=log_lik,
        log_q_score=log_q_score,
    )


def concat_log_weights(parts: list[LogWeights], keep_samples: bool = True) -> LogWeights:
    """Particle chunks of the same data, joined along the particle dim (K = Σ K_i)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else torch.cat(values, 0)

    samples = {k: torch.cat([p.samples[k] for p in parts], 0) for k in first.samples}
    return LogWeights(
        log_p=cat("log_p"),
        log_q=cat("log_q"),
        global_log_p=cat("global_log_p"),
        global_log_q=cat("global_log_q"),
        samples=samples if keep_samples else {},
        local_sites=first.local_sites,
        log_lik=cat("log_lik"),
        log_q_score=cat("log_q_score"),
    )


def log_weights_in_chunks(
    model: LatentVariableModel,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    num_particles: int,
    proposal: Literal["guide", "prior"] = "guide",
    rows_per_chunk: int | None = None,
    budget: int | None = None,
    validate: bool = False,
    keep_samples: bool = True,
) -> Iterator[tuple[slice, LogWeights]]:
    """:func:`log_weights` over chunks of data, and of particles, within the memory budget.

    One particle of one datum needs ``model.working_width(x)`` numbers; the data are chunked so
    that K particles × rows × width stays within the budget, and when one datum's K particles do
    not fit, its particles are drawn in chunks and joined.

    Parameters
    ----------
    model : LatentVariableModel
    x : torch.Tensor of shape (N, D)
    mask : torch.Tensor of shape (N, D) or None
    num_particles : int
        K.
    proposal : {"guide", "prior"}
    rows_per_chunk : int, optional
        Data per pass, overriding the budget's choice (particles are then not chunked).
    budget : int, optional
        Elements per pass; defaults to the budget in force (:mod:`ppl_lvm.core.memory`).
    validate : bool
        Check the model/guide pair on the first pass.
    keep_samples : bool
        Keep the particles themselves (False spares their memory when only weights are needed).

    Yields
    ------
    rows : slice
        The data of the chunk.
    LogWeights
        Of K particles for those data: ``log_p``, ``log_q`` (K, n), ...

    Raises
    ------
    MemoryError
        When one particle of one datum exceeds the budget.
    """
    width = model.working_width(x)
    check_fits(width, f"one particle of one datum of story '{model.name}'", budget)
    limit = current_budget(budget)
    per_pass = num_particles if rows_per_chunk is not None else min(num_particles, limit // width)
    n = num_data(x)
    rows = rows_per_chunk or chunk_rows(n, per_pass * width, budget)
    first = True
    for start in range(0, n, rows):
        sl = slice(start, min(start + rows, n))
        xb, mb = take_rows(x, sl), take_rows(mask, sl)
        parts = []
        for k0 in range(0, num_particles, per_pass):
            parts.append(
                log_weights(
                    model,
                    xb,
                    mb,
                    num_particles=min(per_pass, num_particles - k0),
                    proposal=proposal,
                    validate=validate and first,
                )
            )
            first = False
        yield sl, concat_log_weights(parts, keep_samples)
