"""The one weighting routine: log p(x, z) and log q(z | x) per particle and per datum.

Importance sampling, the IWAE objective, Pareto k̂ and the ArviZ export all start here. The K
particles are an outer ``pyro.plate`` placed left of every plate the story uses, so one batched
pass of guide and model scores all of them; there is no Python loop over particles.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Literal

import pyro
import pyro.poutine as poutine
import torch

from .._typing import ModelLike
from ..core.checks import check_data
from ..core.data import all_observed, num_data, reference, take_rows, zeros
from ..core.logweights import LogWeights
from ..core.memory import check_fits, chunk_rows, current_budget
from ..models._subsample import DataIndices
from ..models.base import DATA_PLATE, LatentVariableModel, SiteInfo, sample_sites
from ..models.capabilities import ParticleLogWeights, has
from ..models.story import as_model
from ._modelguide import check_model_guide, refuse_ignored_mask

__all__ = [
    "NO_BROADCAST",
    "PARTICLE_PLATE",
    "check_model_guide",
    "concat_log_weights",
    "joint_over_data",
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
    rows: torch.Tensor | None = None,
) -> LogWeights:
    """Score K particles for every datum in one vectorised pass.

    Particles are drawn from the proposal (the guide q(z | x), or the prior p(z)) under an outer
    ``pyro.plate`` of size K, the model is replayed on them, and every site's log-density is
    summed to one number per particle and datum. Masked-out entries of ``x`` are zero-filled and
    excluded by the model's ``.mask(mask)``.

    Parameters
    ----------
    model : LatentVariableModel, (model_fn, guide_fn) pair, or model function
        The story. Where it broadcasts over a leading particle dimension, which Pyro's plates
        arrange for code that indexes from the right (``x[..., i]``, ``@``, ``.unsqueeze(-1)``,
        ``Vindex``), one vectorised pass scores every particle; where it does not (plain
        ``locs[assignment]`` on a global, ``.view(-1)``), the particles run one at a time,
        K times slower, and the result's ``path`` says "per-particle".
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
    rows : torch.Tensor of shape (B,), int64, optional
        Score only these data: ``x`` and ``mask`` are then the whole data set, and the data
        plate's subsample indices are set to ``rows`` (Pyro's own subsampling, so per-datum
        parameters see their own rows); the weights are (K, B), unscaled.

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
    if rows is not None and has(lvm, ParticleLogWeights):  # a tensor path takes the rows
        x, mask, rows = take_rows(x, rows), take_rows(mask, rows), None
    n = num_data(x) if rows is None else len(rows)
    model_fn, guide_fn = lvm.model, lvm.guide
    if rows is not None:
        model_fn = DataIndices(lvm.data_plate, rows, num_data(x))(lvm.model)
        guide_fn = DataIndices(lvm.data_plate, rows, num_data(x))(lvm.guide)

    if fast and proposal == "guide" and has(lvm, ParticleLogWeights):
        if validate:
            check_model_guide(lvm.sites(x, mask), lvm.sites(x, mask, "guide"))
        with lvm.scoped():
            out = lvm.particle_log_weights(x, mask, num_particles)
        if out is not None:
            return out
    with lvm.scoped():
        if max_plate_nesting is None or validate:
            # the model's own look at these data (kept for the engine call) unless the
            # minibatch's indices change what the story does
            model_tr0 = (
                lvm.trace(x, mask) if rows is None else poutine.trace(model_fn).get_trace(x, mask)
            )
            rank = plate_nesting(model_tr0)
            if proposal == "guide":
                guide_tr0 = (
                    lvm.trace(x, mask, "guide")
                    if rows is None
                    else poutine.trace(guide_fn).get_trace(x, mask)
                )
                rank = max(rank, plate_nesting(guide_tr0))
        else:
            rank = max_plate_nesting
        if validate:
            model_sites = lvm.sites(x, mask)
            if proposal == "guide":
                check_model_guide(model_sites, lvm.sites(x, mask, "guide"))
            if not all_observed(mask):
                refuse_ignored_mask(model_tr0, isinstance(mask, Mapping))
        rank += 1  # the particle dim
    fns = (model_fn, guide_fn, rows, n)
    try:
        return _scored_pass(lvm, x, mask, num_particles, proposal, rank, fns, vectorised=True)
    except (ValueError, RuntimeError) as err:  # Pyro's plate check, or torch's broadcasting
        if not any(sign in str(err) for sign in NO_BROADCAST):
            raise
    # the story does not broadcast over a leading particle dim (plain indexing such as
    # locs[assignment], or weights.expand((N,) + weights.shape)): the documented slower path,
    # one pass per particle under no particle plate
    parts = [
        _scored_pass(lvm, x, mask, 1, proposal, rank, fns, vectorised=False)
        for _ in range(num_particles)
    ]
    return dataclasses.replace(concat_log_weights(parts), path="per-particle")


#: What a failed vectorised pass says when the story does not broadcast over particles: Pyro's
#: plate check, and :func:`site_log_prob`'s own.
NO_BROADCAST = (
    "Shape mismatch inside plate",
    "does not broadcast over the leading particle",
    "must match the size of tensor",
    "objects cannot be broadcast to a single shape",
    "Value is not broadcastable with batch_shape",
)


def _scored_pass(
    lvm: LatentVariableModel,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    num_particles: int,
    proposal: str,
    rank: int,
    fns: tuple,
    vectorised: bool,
) -> LogWeights:
    """One pass of guide and model over K particles, scored per particle and datum: under the
    particle plate (``vectorised``), or a single particle (K = 1) with no plate at all.
    ``fns`` is (model, guide, the minibatch's rows or None, the data scored)."""
    model_fn, guide_fn, rows, n = fns
    with lvm.scoped():
        particles = (
            pyro.plate(PARTICLE_PLATE, num_particles, dim=-rank)
            if vectorised
            else contextlib.nullcontext()
        )
        if proposal == "guide":
            with particles:
                guide_tr = poutine.trace(guide_fn).get_trace(x, mask)
            with particles:
                model_tr = poutine.trace(poutine.replay(model_fn, trace=guide_tr)).get_trace(
                    x, mask
                )
            guide_tr.compute_log_prob()
        else:
            with particles:
                model_tr = poutine.trace(model_fn).get_trace(x, mask)
            guide_tr = None
        model_tr.compute_log_prob()

    # a subsampled plate scales its sites by N / B; a datum's weight is unscaled
    subsampled = 1.0 if rows is None else num_data(x) / n
    zeros_local = zeros(x, num_particles, n)
    zeros_global = zeros(x, num_particles)
    log_p, log_q, log_lik, log_q_score = zeros_local, zeros_local, zeros_local, None
    g_log_p, g_log_q = zeros_global, zeros_global
    samples: dict[str, torch.Tensor] = {}
    local_sites: list[str] = []
    coupled = False

    for name, site in sample_sites(model_tr):
        lp, local = site_log_prob(site, rank, num_particles, n, lvm.data_plate)
        lp = lp / subsampled if local and rows is not None else lp
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
            lq = lq / subsampled if local and rows is not None else lq
            if local:
                log_q = log_q + lq
                if not getattr(site["fn"], "has_rsample", False):
                    log_q_score = lq if log_q_score is None else log_q_score + lq
            else:
                coupled = True  # a global latent, or an auxiliary vector over all data
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
        coupled=coupled,
    )


def joint_over_data(
    lvm: LatentVariableModel, sites: dict[str, SiteInfo], x, mask, *, guide: bool = True
) -> bool:
    """Whether one particle's weight covers the whole data set rather than one datum: the story
    has a global latent site, or (with ``guide``) the guide puts the density of local sites on
    an auxiliary vector over all data (``AutoDiagonalNormal``). Every engine decides by this."""
    if any(s.latent and not s.local for s in sites.values()):
        return True
    return guide and bool(lvm.guide_structure(x, mask).global_auxiliary)


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
        path=first.path,
        coupled=first.coupled,
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

    A story whose data plate declares its own ``subsample_size`` B is scored B data at a time
    through the plate's indices (the last chunk takes the last B rows and keeps the new ones),
    so that every datum is covered once.

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
    declared = model.declared_subsample(x, mask)
    rows = rows if declared is None else declared
    first = True
    for start in range(0, n, rows):
        sl = slice(start, min(start + rows, n))
        if declared is None and rows >= n:  # all of them: the very tensors, whose look is kept
            xb, mb, idx = x, mask, None
        elif declared is None:
            xb, mb, idx = take_rows(x, sl), take_rows(mask, sl), None
        else:  # the plate takes exactly B indices: the last chunk overlaps the one before
            xb, mb, begin = x, mask, min(start, n - declared)
            idx = torch.arange(begin, begin + declared, device=reference(x).device)
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
                    rows=idx,
                )
            )
            first = False
        lw = concat_log_weights(parts, keep_samples)
        if idx is not None and sl.stop - sl.start < declared:
            lw = _last_data(lw, sl.stop - sl.start)
        yield sl, lw


def _last_data(lw: LogWeights, m: int) -> LogWeights:
    """The weights of the last ``m`` data of a chunk (K, B) -> (K, m); globals unchanged."""

    def cut(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[:, -m:]

    samples = {k: v[:, -m:] if k in lw.local_sites else v for k, v in lw.samples.items()}
    return dataclasses.replace(
        lw,
        log_p=cut(lw.log_p),
        log_q=cut(lw.log_q),
        log_lik=cut(lw.log_lik),
        log_q_score=cut(lw.log_q_score),
        samples=samples,
    )
