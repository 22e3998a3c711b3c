"""The prior as a proposal that leaves the enumerated sites to be summed (Rao–Blackwellised
importance sampling).

``ImportanceSampling(proposal="prior")`` on a story that marks discrete sites
``infer={"enumerate": "parallel"}`` draws only the story's other latent sites from the prior
and sums the marked ones exactly inside each weight (:func:`~._enumops.replayed_posterior`).
The proposal density is then the prior density of the drawn sites alone, which holds only when
no drawn site depends on a marked one; :func:`check_prior_draws` refuses a story where one
does.
"""

from __future__ import annotations

import pyro.poutine as poutine

from ..core.errors import UnsupportedModelError
from ..models.base import LatentVariableModel, SiteInfo, sample_sites
from ._jointsupport import enumerable
from ._weights import plate_nesting

__all__ = ["check_prior_draws", "drawn_sites", "prior_draws", "sums_enumerated"]


def drawn_sites(sites: dict[str, SiteInfo]) -> set[str]:
    """The latent sites the prior proposal draws: those not marked for parallel enumeration."""
    return {s.name for s in sites.values() if s.latent and s.enumerate != "parallel"}


def sums_enumerated(sites: dict[str, SiteInfo]) -> bool:
    """Whether the prior proposal sums enumerated sites inside each weight: the story marks
    some latent sites for parallel enumeration and has others to draw. A story whose every
    latent is marked keeps plain prior draws (the lecture's naive Monte Carlo); its exact sum is
    ``Enumeration``'s."""
    marked = any(s.latent and s.enumerate == "parallel" for s in sites.values())
    return marked and bool(drawn_sites(sites))


def prior_draws(trace: poutine.Trace, drawn: set[str]) -> poutine.Trace:
    """The model's own trace kept to the drawn latent sites: the proposal's trace, whose
    log-probs are the prior density of the draws (their parents are drawn sites too)."""
    kept = poutine.Trace()
    for name, site in sample_sites(trace):
        if name in drawn and not site["is_observed"]:
            kept.add_node(name, **site)
    return kept


def check_prior_draws(lvm: LatentVariableModel, x, mask, sites: dict[str, SiteInfo]) -> None:
    """Refuse a story where a drawn latent site depends on a site marked for enumeration.

    One trace of the model replays a prior draw of the drawn sites with the marked sites
    enumerated in parallel, left of the story's plates; a drawn site whose distribution then
    has a batch dim there (of more than one state) changes with an enumerated value, so its
    prior is no density of the draws alone.

    Raises
    ------
    UnsupportedModelError
        Naming the drawn site, the enumerated site it depends on, and what accepts the story.
    """
    drawn = drawn_sites(sites)
    plain = lvm.trace(x, mask)
    rank = plate_nesting(plain)
    replayed = poutine.replay(lvm.model, trace=prior_draws(plain, drawn))
    fn = poutine.enum(enumerable(replayed), first_available_dim=-(rank + 1))
    with lvm.scoped():
        tr = poutine.trace(fn).get_trace(x, mask)
    latest: dict[int, str] = {}  # enumerated dim -> the last site enumerated there
    for name, site in sample_sites(tr):
        dim = site["infer"].get("_enumerate_dim")
        if dim is not None:
            latest[dim] = name
        if name not in drawn:
            continue
        shape = site["fn"].batch_shape  # (*enumerated dims, *plate dims)
        parents = [latest.get(d, "?") for d in range(-len(shape), -rank) if shape[d] > 1]
        if parents:
            on = ", ".join(f"'{p}'" for p in parents)
            raise UnsupportedModelError(
                f"importance sampling from the prior draws the latent site '{name}' "
                f"({sites[name].distribution}) and sums the sites story '{lvm.name}' marks for "
                f"enumeration inside each weight, but the prior of '{name}' depends on the "
                f"enumerated {on}, so it is no density of the draws alone. Give the story a "
                f"guide that proposes '{name}' and {on} and use "
                "ImportanceSampling(proposal='guide') or SVI(objective='elbo'), or drop the "
                f"enumerate mark of {on} to draw every latent from the prior."
            )
