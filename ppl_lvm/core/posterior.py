"""Draws from, and where available exact probabilities of, p(z | x): :class:`Posterior`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .arviz_bridge import to_inference_data
from .data import Data, Mask, num_data
from .rng import seeded

if TYPE_CHECKING:
    import arviz

__all__ = ["Posterior"]


@dataclass(frozen=True, eq=False)
class Posterior:
    """Draws from, and where available exact probabilities of, p(z | x).

    Attributes
    ----------
    engine : str
        Name of the engine that produced it.
    samples : Mapping[str, torch.Tensor]
        Latent site name to draws: shape ``(S, N, ...)`` for a local site, ``(S, ...)`` for a
        global one.
    log_weights : torch.Tensor of shape (S, N) or (S,), or None
        Unnormalised log importance weights of the draws: per datum ``(S, N)`` when every latent
        site is local, jointly ``(S,)`` otherwise. None means the draws are equally weighted.
    probs : Mapping[str, torch.Tensor]
        Exact posterior probabilities of finite discrete sites, shape ``(N, num_states)``.
    x : torch.Tensor of shape (N, ...), or dict of such tensors that share N
        The data conditioned on (masked-out entries filled, see
        :func:`~ppl_lvm.core.checks.check_data`).
    mask : torch.Tensor of x's shape, dict of such masks for some keys of x, or None
        Which entries of ``x`` were observed.
    local_sites : tuple of str
        The names in ``samples`` that are one-per-datum.
    log_lik : torch.Tensor of shape (S, N) or None
        Pointwise log-likelihood log p(x_n | draw s) over the observed entries of x_n, what
        ArviZ's ``log_likelihood`` group and ``az.loo`` need. Local discrete latents that the
        engine sums out exactly are marginalised: all of them under ``Enumeration``, and the
        sites the story marks with ``infer={"enumerate": "parallel"}`` (a mixture's label)
        under ``SVI`` and, when they are the story's only latents, ``ImportanceSampling``. So
        for a mixture it is log Σ_k π_k p(x_n | k, θ) with θ the drawn globals (bayesian=True)
        or the point estimates, which makes it the same for every draw. Every other latent
        (continuous z of a VAE or LinearGaussian, a guide-drawn binary code) is conditioned on
        its draw: log p(x_n | z_sn, θ_s).
    log_p : torch.Tensor of shape (S, N) or (S,), or None
        log p(x, z) of each draw, with the summed-out sites of ``log_lik`` summed out here too:
        per datum ``(S, N)`` when every latent site is local, jointly over the data (global
        sites included) ``(S,)`` otherwise.
    log_q : torch.Tensor of shape (S, N) or (S,), or None
        log q(z | x) of each draw under the distribution that drew it (the guide, the
        proposal, or for ``Enumeration`` the exact posterior), shaped like ``log_p``. The log
        importance weight of a draw relative to the exact posterior is ``log_p - log_q``.
    """

    engine: str
    samples: Mapping[str, torch.Tensor]
    x: Data
    mask: Mask = None
    log_weights: torch.Tensor | None = None
    probs: Mapping[str, torch.Tensor] = field(default_factory=dict)
    local_sites: tuple[str, ...] = ()
    log_lik: torch.Tensor | None = None
    log_p: torch.Tensor | None = None
    log_q: torch.Tensor | None = None

    def __post_init__(self) -> None:
        sizes = {v.shape[0] for v in self.samples.values()}
        if len(sizes) > 1:
            raise ValueError(f"every site needs the same number of draws, got sizes {sizes}.")
        if self.log_weights is not None:
            s = self.num_samples
            lw = self.log_weights
            per_datum = lw.dim() == 2
            if lw.shape[0] != s or lw.dim() not in (1, 2):
                raise ValueError(
                    f"log_weights must have shape (S,) or (S, N) with S={s}, got {tuple(lw.shape)}."
                )
            globals_ = [k for k in self.samples if k not in self.local_sites]
            if per_datum and globals_:
                raise ValueError(
                    f"per-datum log_weights (S, N) cannot weight global sites {globals_}; "
                    "pass joint log_weights of shape (S,)."
                )
        self._check_draw_scores()

    def _check_draw_scores(self) -> None:
        """Shapes of log_lik, log_p and log_q against S draws and N data."""
        s, n = self.num_samples, num_data(self.x)
        if self.log_lik is not None and tuple(self.log_lik.shape) != (s, n):
            raise ValueError(
                f"log_lik must have shape (S, N) = {(s, n)}, got {tuple(self.log_lik.shape)}."
            )
        for name in ("log_p", "log_q"):
            value = getattr(self, name)
            if value is None:
                continue
            if tuple(value.shape) not in ((s,), (s, n)):
                raise ValueError(
                    f"{name} must have shape (S,) or (S, N) with S={s}, N={n}, got "
                    f"{tuple(value.shape)}."
                )
            if self.log_weights is not None and self.log_weights.dim() == 2 and value.dim() == 1:
                raise ValueError(
                    f"per-datum log_weights (S, N) resample each datum on its own, so {name} "
                    "must be per datum too, shape (S, N)."
                )

    @property
    def num_samples(self) -> int:
        """Number of draws S: of the sites, or, for a story with no latent site, the rows of
        its scores (each of them scores the data alone)."""
        if self.samples:
            return next(iter(self.samples.values())).shape[0]
        rows = (self.log_weights, self.log_lik, self.log_p, self.log_q)
        return next((v.shape[0] for v in rows if v is not None), 0)

    def normalized_weights(self) -> torch.Tensor | None:
        """Self-normalised importance weights, summing to one over draws; shape of log_weights."""
        if self.log_weights is None:
            return None
        return torch.softmax(self.log_weights, dim=0)

    def resample(self, num_samples: int | None = None, seed: int | None = 0) -> Posterior:
        """Sampling-importance-resampling: equally weighted draws from the weighted ones.

        Parameters
        ----------
        num_samples : int, optional
            Draws to return; defaults to S.
        seed : int or None
            Seed of the multinomial draws.

        Returns
        -------
        Posterior
            A posterior with ``log_weights=None``; ``log_lik``, ``log_p`` and ``log_q`` are
            gathered with the draws, so they still score each (resampled) draw.
        """
        if self.log_weights is None:
            return self
        return self.take(self.resample_index(num_samples, seed))

    def resample_index(self, num_samples: int | None = None, seed: int | None = 0) -> torch.Tensor:
        """Multinomial draw indices by the normalised weights.

        Returns
        -------
        torch.Tensor of shape (S',) for joint weights or (S', N) for per-datum weights
        """
        if self.log_weights is None:
            raise ValueError("these draws are unweighted; there is nothing to resample by.")
        n_out = num_samples or self.num_samples
        w = self.normalized_weights()
        with seeded(seed):
            if w.dim() == 1:
                return torch.multinomial(w, n_out, replacement=True)  # (S',)
            return torch.multinomial(w.T, n_out, replacement=True).T  # (S', N)

    def take(self, idx: torch.Tensor) -> Posterior:
        """The unweighted posterior of draws ``idx``: (S',) joint or (S', N) per datum."""

        def pick(v: torch.Tensor | None) -> torch.Tensor | None:
            if v is None:
                return None
            if idx.dim() == 1:
                return v[idx]
            gather = idx.reshape(idx.shape + (1,) * (v.dim() - 2))
            return torch.gather(v, 0, gather.expand(idx.shape[:1] + tuple(v.shape[1:])))

        return Posterior(
            engine=self.engine,
            samples={k: pick(v) for k, v in self.samples.items()},
            x=self.x,
            mask=self.mask,
            log_weights=None,
            probs=self.probs,
            local_sites=self.local_sites,
            log_lik=pick(self.log_lik),
            log_p=pick(self.log_p),
            log_q=pick(self.log_q),
        )

    def to_arviz(self, *, resample: bool = True, seed: int | None = 0) -> arviz.InferenceData:
        """Convert to an ``arviz.InferenceData``; see
        :func:`ppl_lvm.core.arviz_bridge.to_inference_data` for the groups.

        Parameters
        ----------
        resample : bool
            Weighted draws (``log_weights`` set) are resampled first (:meth:`resample`), since
            every ArviZ statistic (``summary``, ``ess``, ``rhat``, ``loo``) treats draws as
            equally weighted. False exports the weighted draws as they are.
        seed : int or None
            Seed of that resampling.
        """
        return to_inference_data(self, resample=resample, seed=seed)

    def __str__(self) -> str:
        sites = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.samples.items())
        weighted = "weighted" if self.log_weights is not None else "unweighted"
        exact = f"; exact probs for {list(self.probs)}" if self.probs else ""
        return f"Posterior({self.engine}: {self.num_samples} {weighted} draws of {sites}{exact})"
