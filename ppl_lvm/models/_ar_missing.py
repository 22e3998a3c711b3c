"""Missing pixels of an autoregressive model: which ordering covers a mask, log p(x_o) and
completions.

An ordering σ *covers* a datum when every observed pixel comes before every missing one in σ.
Then p_σ(x_o) is a product of σ's first conditionals, and p_σ(x_m | x_o) is drawn exactly by
running σ on. Otherwise log p_0(x_o) = log Σ_{x_m} p_0(x_o, x_m) is estimated by importance
sampling, with the missing pixels proposed by the model's own conditionals under the ordering
that comes closest to covering the datum (:func:`inversions`).

The functions take the model's :class:`~._made.MADE` network; :class:`~.autoregressive.
Autoregressive` checks the data and calls them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.densities import bernoulli_log_prob
from ..core.logweights import LogWeights
from ..core.memory import row_slices
from ..core.results import Evidence
from ..core.stats import log_mean_weight, pareto_khat
from ._made import MADE
from .capabilities import CompletionDraws

__all__ = [
    "EXACT",
    "IMPORTANCE",
    "ObservedEvidence",
    "complete_own",
    "covering_orderings",
    "inversions",
    "observed_log_evidence",
    "proposal_orderings",
    "propose",
    "story_log_weights",
]

#: What ``method`` says for a datum whose value is exact.
EXACT = "exact"
#: What ``method`` says for a datum whose value is an importance-sampling estimate.
IMPORTANCE = "importance sampling"


def inversions(mask: torch.Tensor, orderings: torch.Tensor) -> torch.Tensor:
    """For each datum and ordering, how far the ordering is from covering the datum.

    Parameters
    ----------
    mask : torch.Tensor of shape (N, D), bool
        True = observed.
    orderings : torch.Tensor of shape (R, D)

    Returns
    -------
    torch.Tensor of shape (N, R), int64
        The number of (missing pixel, observed pixel) pairs with the observed pixel later in
        the ordering: the observed pixels that the own-conditional proposal of a missing pixel
        does not look at, summed over the missing pixels. 0 exactly when the ordering covers
        the datum.
    """
    out = []
    for order in orderings:  # one ordering at a time: (N, D) rather than (N, R, D)
        seen = mask[:, order].long()  # in the ordering's visiting order
        later = seen.flip(-1).cumsum(-1).flip(-1) - seen  # observed pixels strictly after
        out.append(((1 - seen) * later).sum(-1))
    return torch.stack(out, -1)


def covering_orderings(mask: torch.Tensor, orderings: torch.Tensor) -> torch.Tensor:
    """The first ordering that covers each datum (ordering 0 when it does), or -1: (N,)."""
    covers = inversions(mask, orderings) == 0  # (N, R)
    first = covers.long().argmax(-1)  # the first True (0 where there is none)
    return torch.where(covers.any(-1), first, torch.full_like(first, -1))


def proposal_orderings(mask: torch.Tensor, orderings: torch.Tensor) -> torch.Tensor:
    """Each datum's proposal ordering: the fewest :func:`inversions`, ties to the lower: (N,)."""
    return inversions(mask, orderings).argmin(-1)  # argmin keeps the first of equal values


def propose(
    made: MADE, x: torch.Tensor, mask: torch.Tensor, ordering: int, num_particles: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """K completions of each datum from one ordering's own conditionals, and their log q.

    q_σ(x_m | x_o) = Π_{d missing} p_σ(x_d | the pixels before d in σ), observed pixels clamped.
    Draws carry no gradient; log q is recomputed in one network pass, so it carries the
    gradient of the network's parameters (the draws are discrete: a score-function term).

    Parameters
    ----------
    made : MADE
    x : torch.Tensor of shape (n, D)
        Masked entries hold anything (zero-filled).
    mask : torch.Tensor of shape (n, D), bool
    ordering : int
    num_particles : int
        K.

    Returns
    -------
    draws : torch.Tensor of shape (K, n, D)
        Completed data (observed entries kept).
    probs : torch.Tensor of shape (K, n, D)
        The proposal's p(x_d = 1 | ...) along each path at the missing entries, the data
        elsewhere.
    log_q : torch.Tensor of shape (K, n)
    """
    k, (n, d) = num_particles, x.shape
    xs, ms = x.expand(k, n, d).reshape(-1, d), mask.expand(k, n, d).reshape(-1, d)
    draws, probs = made.sample(xs, ms, ordering)
    per = bernoulli_log_prob(made(draws, ordering), draws)
    log_q = (per * (~ms).to(per.dtype)).sum(-1)
    return draws.reshape(k, n, d), probs.reshape(k, n, d), log_q.reshape(k, n)


def story_log_weights(
    made: MADE,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    num_particles: int,
    ordering: int | None,
    z: torch.Tensor | None = None,
) -> LogWeights:
    """The story's weights (see :meth:`Autoregressive.particle_log_weights`): K completions
    from ``ordering``'s proposal (or ``z``, (K, N, D)) scored under p_0; ``mask`` None: no
    latent site, every weight the exact log p_0(x)."""
    k, n = num_particles, x.shape[0]
    if mask is None:
        log_p = bernoulli_log_prob(made(x, 0), x).sum(-1).expand(k, n)
        zeros = x.new_zeros(k, n)
        return LogWeights(log_p, zeros, zeros[:, 0], zeros[:, 0], {}, (), log_lik=log_p)
    if z is None:
        draws, _, log_q = propose(made, x, mask, ordering, k)
    else:
        draws = torch.where(mask, x, z.to(x))
        per_q = bernoulli_log_prob(made(draws, ordering), draws)
        log_q = (per_q * (~mask).to(x.dtype)).sum(-1)
    per = bernoulli_log_prob(made(draws, 0), draws)  # (K, N, D)
    names = tuple(f"x_{d}_unobserved" for d in range(x.shape[1]))
    zeros = x.new_zeros(draws.shape[0])
    return LogWeights(
        log_p=per.sum(-1),
        log_q=log_q,
        global_log_p=zeros,
        global_log_q=zeros,
        samples={name: draws[..., d] for d, name in enumerate(names)},
        local_sites=names,
        log_lik=(per * mask.to(per.dtype)).sum(-1),
        log_q_score=log_q,  # discrete draws: the engines add a score-function term
    )


def _importance(
    made: MADE, x: torch.Tensor, mask: torch.Tensor, ordering: int, num_particles: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Completions from ``ordering``'s proposal and their log weights log p_0(x_o, x_m) - log q:
    draws (K, n, D) and weights (K, n)."""
    draws, _, log_q = propose(made, x, mask, ordering, num_particles)
    log_p = bernoulli_log_prob(made(draws, 0), draws).sum(-1)
    return draws, log_p - log_q


def _groups(orderings: torch.Tensor, rows: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """The data ``rows`` (indices) grouped by their ordering: [(ordering, indices), ...]."""
    chosen = orderings[rows]
    return [(int(r), rows[chosen == r]) for r in chosen.unique().tolist()]


def _chunks(rows: torch.Tensor, per_row: int):
    for part in row_slices(len(rows), per_row):
        yield rows[part]


@dataclass(frozen=True, eq=False)
class ObservedEvidence:
    """log p(x_o) per datum from :meth:`Autoregressive.observed_log_evidence`.

    Attributes
    ----------
    evidence : Evidence
        ``per_datum`` (N,), ``stderr`` (N,) (0 where exact), and, where some datum was
        estimated, ``ess`` and ``khat`` (N,) (NaN where exact: no weights); ``kind`` is
        ``"exact"`` when every datum is exact and ``"estimate"`` otherwise.
    method : tuple of str
        Per datum, ``"exact"`` (the marginal of the joint of the covering ordering p_σ, a
        product of conditionals) or ``"importance sampling"`` (an estimate of log p_0(x_o),
        the canonical joint's).
    ordering : torch.Tensor of shape (N,), int64
        Per datum, the ordering σ whose marginal p_σ(x_o) is exact, or the ordering whose
        conditionals proposed the completions.
    """

    evidence: Evidence
    method: tuple[str, ...]
    ordering: torch.Tensor

    @property
    def per_datum(self) -> torch.Tensor:
        """log p(x_o) per datum, shape (N,)."""
        return self.evidence.per_datum

    @property
    def stderr(self) -> torch.Tensor:
        """Standard errors, shape (N,): 0 for exact values."""
        return self.evidence.stderr

    @property
    def exact(self) -> torch.Tensor:
        """Which data have an exact value, bool (N,)."""
        return torch.tensor([m == EXACT for m in self.method], dtype=torch.bool)

    def __str__(self) -> str:
        count = sum(m == EXACT for m in self.method)
        rest = len(self.method) - count
        return f"ObservedEvidence({count} exact, {rest} by importance sampling; {self.evidence})"


def observed_log_evidence(
    made: MADE, x: torch.Tensor, mask: torch.Tensor, num_particles: int
) -> ObservedEvidence:
    """log p(x_o) for each datum (see :meth:`Autoregressive.observed_log_evidence`); ``x``
    (N, D) zero-filled, ``mask`` (N, D) bool. Draws use torch's global generator."""
    n, d = x.shape
    cover = covering_orderings(mask, made.orderings)
    best = proposal_orderings(mask, made.orderings)
    exact = cover >= 0
    est = x.new_zeros(n)
    se, ess, khat = x.new_zeros(n), x.new_full((n,), math.nan), x.new_full((n,), math.nan)
    observed = mask.to(x.dtype)
    for r, rows in _groups(cover, torch.nonzero(exact).squeeze(-1)):
        # σ covers these data: the observed pixels' conditionals see observed pixels only
        per = bernoulli_log_prob(made(x[rows], r), x[rows]) * observed[rows]
        est[rows] = per.sum(-1)
    width = num_particles * (d + max(made.hidden, default=0))
    for r, rows in _groups(best, torch.nonzero(~exact).squeeze(-1)):
        for part in _chunks(rows, width):
            _, local = _importance(made, x[part], mask[part], r, num_particles)
            est[part], se[part], ess[part] = log_mean_weight(local)
            khat[part] = pareto_khat(local).to(x)
    some = not bool(exact.all())
    evidence = Evidence(
        per_datum=est,
        kind="estimate" if some else "exact",
        engine="Autoregressive",
        stderr=se,
        ess=ess if some else None,
        khat=khat if some else None,
        num_particles=num_particles if some else None,
    )
    method = tuple(EXACT if e else IMPORTANCE for e in exact.tolist())
    return ObservedEvidence(evidence, method, torch.where(exact, cover, best))


def complete_own(
    made: MADE, x: torch.Tensor, mask: torch.Tensor, num_samples: int, num_particles: int
) -> CompletionDraws:
    """Completions of each datum (see :meth:`Autoregressive.complete_own`); ``x`` (N, D)
    zero-filled, ``mask`` (N, D) bool. Draws use torch's global generator."""
    n, d = x.shape
    s = num_samples
    cover = covering_orderings(mask, made.orderings)
    best = proposal_orderings(mask, made.orderings)
    exact = cover >= 0
    samples, sample_means = x.new_zeros(s, n, d), x.new_zeros(s, n, d)
    mean, ess = x.new_zeros(n, d), x.new_full((n,), math.nan)
    hidden = max(made.hidden, default=0)
    for r, rows in _groups(cover, torch.nonzero(exact).squeeze(-1)):
        for part in _chunks(rows, s * (d + hidden)):
            values, probs, _ = propose(made, x[part], mask[part], r, s)
            samples[:, part], sample_means[:, part] = values, probs
            # Rao-Blackwellised: E[x_d | x_o] = E[p_σ(x_d = 1 | the path before d)]
            mean[part] = probs.mean(0)
    for r, rows in _groups(best, torch.nonzero(~exact).squeeze(-1)):
        for part in _chunks(rows, num_particles * (d + hidden)):
            draws, local = _importance(made, x[part], mask[part], r, num_particles)
            w = torch.softmax(local, 0)  # (K, n)
            ess[part] = w.pow(2).sum(0).reciprocal()
            pick = torch.multinomial(w.T, s, replacement=True)  # (n, S)
            chosen = draws.gather(0, pick.T.unsqueeze(-1).expand(s, len(part), d))
            samples[:, part] = chosen
            # the latent is the completion itself, so E[x_m | z_s, x_o] is the draw; the
            # proposal's conditionals are not the target's, and averaging them would be biased
            sample_means[:, part] = chosen
            mean[part] = torch.einsum("kn,knd->nd", w, draws)
    method = tuple(EXACT if e else "importance resampling" for e in exact.tolist())
    return CompletionDraws(samples, sample_means, mean, method, None if exact.all() else ess)
