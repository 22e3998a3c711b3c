"""The check every weighting pass starts with: the guide proposes each latent site of the model
with a support inside the model's and the same shapes (:func:`check_model_guide`), and every
observed site honours a given mask (:func:`refuse_ignored_mask`)."""

from __future__ import annotations

import pyro.poutine as poutine
import torch

from ..core.errors import ModelGuideMismatchError
from ..models.base import SiteInfo, sample_sites
from ..models.support import support_inside

__all__ = ["check_model_guide", "refuse_ignored_mask"]


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
        if g.distribution != "Delta" and not support_inside(g.support, m.support):
            problems.append(
                f"site '{name}': the model's support is {m.support} ({m.distribution}) but the "
                f"guide proposes from {g.support} ({g.distribution}), which is not inside it"
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


def refuse_ignored_mask(trace: poutine.Trace, by_key: bool) -> None:
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
