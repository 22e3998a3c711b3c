"""An autoregressive model of binary images whose missing pixels are its latent variables:
``Autoregressive``.

p(x) = Π_d p(x_d | x_<d), each conditional a Bernoulli whose logit comes from a MADE network
(Germain et al. 2015). There is no latent z for complete data; the latent variables are the
pixels nobody saw. The lecture's question, "suppose some pixel values are missing at train time
(the top half); what is p(X = x̄) of a training image?", is answered by summing over all ways
to complete the image: p(x_o) = Σ_{x_m} p(x_o, x_m).

The network is trained for R orderings at once (order-agnostic, Uria et al. 2014): ordering 0
is raster order, the model's canonical joint p_0; ordering 1 is reverse raster, which visits
the bottom row first; the others are random. Each ordering σ defines a valid joint
p_σ(x) = Π_i p(x_σ(i) | x_σ(<i)). The orderings' joints are different models (they agree only
as far as training made them), and the story's joint is p_0.

Where an ordering σ puts every observed pixel before every missing one (the bottom-first
ordering, for a missing top half), the marginal p_σ(x_o) is exact, a product of σ's first
conditionals, and p_σ(x_m | x_o) is drawn exactly by running σ on; otherwise p_0(x_o) is
estimated by importance sampling over completions drawn from the model's own conditionals
(:mod:`._ar_missing`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from ..core.checks import check_data, check_positive_int, refuse_values
from ..core.densities import bernoulli_log_prob
from ..core.logweights import LogWeights
from ..core.rng import seeded
from . import _ar_missing
from ._ar_ensemble import OrderingEnsemble
from ._ar_missing import ObservedEvidence
from ._made import MADE, default_orderings
from .base import DATA_PLATE, LatentVariableModel
from .capabilities import (
    CompletionDraws,
    Generative,
    Initializable,
    ModelSample,
    OwnCompletion,
    ParticleLogWeights,
    ValueValidation,
)
from .story import conform_data

__all__ = ["Autoregressive", "ObservedEvidence"]


class Autoregressive(
    LatentVariableModel,
    ParticleLogWeights,
    OwnCompletion,
    Initializable,
    ValueValidation,
    Generative,
):
    """A MADE autoregressive model of binary pixels over R orderings; missing pixels are latent.

    Capabilities: ParticleLogWeights, OwnCompletion, Initializable, ValueValidation, Generative.

    **The story.** Inside ``pyro.plate("data", N)`` the pixels are sample sites ``x_0``, ...,
    ``x_{D-1}`` in raster order, each Bernoulli given the pixels before it under ordering 0.
    With a mask each pixel is observed with ``obs_mask``, so that a missing pixel is a latent
    site ``x_d_unobserved``: ``Enumeration`` sums every completion exactly (2^D of them, for
    tiny images), and the guide draws the missing pixels from the model's own conditionals
    under one ordering (:meth:`proposal_ordering`), for ``ImportanceSampling("guide")`` and
    SVI. Without a mask there is no latent site, and every engine's log-evidence is the exact
    log p_0(x).

    **Training** runs through the toolkit's one training loop:

    - ``SVI().fit(model.ensemble(), x)``: order-agnostic maximum likelihood on complete data.
      :meth:`ensemble` is the story "σ uniform over the R orderings, then x ~ p_σ"; with the
      uniform guide its ELBO is E_σ[log p_σ(x)], the order-agnostic objective of Uria et al.
      (2014), a lower bound on the ensemble's log (1/R) Σ_σ p_σ(x). A random ordering is drawn
      for each datum at each step, and all R orderings learn.
    - ``SVI().fit(model, x)``: maximum likelihood of p_0 alone.
    - ``SVI("iwae", num_particles=K).fit(model, x, mask)``: incomplete data, by the
      importance-weighted bound on log p_0(x_o) with K completions from the guide.

    Parameters
    ----------
    dim : int
        D, binary pixels per datum.
    hidden : sequence of int
        Hidden layer widths of the MADE; ``()`` keeps only the direct connection (a fully
        visible sigmoid belief net). Sampling is fastest with at most one hidden layer.
    num_orderings : int
        R >= 2 trained orderings: raster, reverse raster, then R - 2 random ones.
    image_shape : (int, int), optional
        (H, W) with H * W = D: raster order is row by row, ordering 1 bottom row first.
    seed : int
        Seeds the random orderings and the initial weights (never the caller's stream).

    Attributes
    ----------
    made : MADE
        The network, shared by every ordering (and by :meth:`ensemble`); its masks and
        per-ordering biases are described in :mod:`._made`.

    Examples
    --------
    >>> ar = Autoregressive(dim=9, hidden=(16,), num_orderings=4)
    >>> x = torch.zeros(2, 9)
    >>> ar.log_prob(x).shape
    torch.Size([2])
    >>> top_missing = torch.arange(9).expand(2, 9) >= 3
    >>> ar.observed_log_evidence(x, top_missing).method
    ('exact', 'exact')
    """

    static_structure = True

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (500,),
        num_orderings: int = 8,
        *,
        image_shape: tuple[int, int] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        hidden = tuple(hidden)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be positive ints, got {hidden}.")
        if check_positive_int("num_orderings", num_orderings) < 2:
            raise ValueError(
                f"num_orderings must be at least 2 (raster and reverse raster), got "
                f"{num_orderings}."
            )
        if image_shape is not None:
            image_shape = tuple(int(s) for s in image_shape)
            if len(image_shape) != 2 or math.prod(image_shape) != dim:
                raise ValueError(
                    f"image_shape {image_shape} does not hold dim={dim} pixels; give (H, W) "
                    f"with H * W = {dim}, or leave it out."
                )
        self.hidden, self.image_shape, self.seed = hidden, image_shape, int(seed)
        self.made = MADE(dim, hidden, default_orderings(dim, num_orderings, seed), seed)

    @property
    def num_orderings(self) -> int:
        """R, the trained orderings."""
        return self.made.num_orderings

    @property
    def orderings_(self) -> torch.Tensor:
        """The orderings, shape (R, D): row r lists the pixels in ordering r's order (a copy)."""
        return self.made.orderings.clone()

    def working_width(self, x: torch.Tensor) -> int:
        """Per particle and datum: the completed datum, its logits and the widest layer."""
        return 2 * self.dim + max(self.hidden, default=0)

    # -- checks ------------------------------------------------------------------------------
    def validate_values(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` unless every observed entry of ``x`` (N, D) is 0 or 1."""
        refuse_values(
            x,
            mask,
            x.eq(0).logical_or_(x.eq(1)),
            model="Autoregressive",
            expected="binary pixels (0 or 1)",
            fix="binarize it first, e.g. Dataset.binarize(0.5) or (x > 0.5).float().",
        )

    def _checked(
        self, x: torch.Tensor, mask: torch.Tensor | None, *, need_mask: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, D) checked and zero-filled, and a bool mask (all True when None)."""
        if need_mask and mask is None:
            raise ValueError("a completion needs a mask (True = observed) saying what to fill.")
        x, mask = check_data(x, mask, fill="zero")
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"Autoregressive takes x of shape (N, D={self.dim}), got {shape}; flatten "
                "images with x.reshape(len(x), -1)."
            )
        x = conform_data(self, x)
        self.validate_values(x, mask)
        return x, torch.ones_like(x, dtype=torch.bool) if mask is None else mask

    def _ordering(self, ordering: int) -> int:
        if isinstance(ordering, bool) or not isinstance(ordering, int):
            raise TypeError(f"ordering must be an int, got {ordering!r}.")
        if not 0 <= ordering < self.num_orderings:
            raise ValueError(
                f"ordering must be in [0, {self.num_orderings}) (num_orderings="
                f"{self.num_orderings}: 0 raster, 1 reverse raster), got {ordering}."
            )
        return ordering

    # -- densities ------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, ordering: int = 0) -> torch.Tensor:
        """log p_σ(x) = Σ_i log p(x_σ(i) | x_σ(<i)) of complete data, exactly, shape (N,).

        Parameters
        ----------
        x : torch.Tensor of shape (N, D), binary
        ordering : int
            σ; 0 is the model's joint.
        """
        x, _ = self._checked(x, None)
        return bernoulli_log_prob(self.made(x, self._ordering(ordering)), x).sum(-1)

    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None, seed: int) -> None:
        """Start every output bias at the logit of its pixel's observed mean, so that training
        starts from independent pixels with the right frequencies. ``x`` (N, D), zero-filled."""
        self.validate_values(x, mask)
        m = torch.ones_like(x) if mask is None else mask.to(x.dtype)
        p = ((x * m).sum(0) / m.sum(0).clamp(min=1)).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.made.out_bias.copy_(torch.logit(p))

    # -- the Pyro story ---------------------------------------------------------------------
    def _logit(self, columns: list[torch.Tensor], n: int, d: int, ordering: int) -> torch.Tensor:
        """The logit of pixel d given ``columns`` (the pixels in index order, each (..., N));
        the network never reads those at or after d in the ordering."""
        if not columns:  # the first pixel reads nothing
            return self.made(self.made.direct.new_zeros(n, self.dim), ordering)[..., d]
        shape = torch.broadcast_shapes((n,), *(c.shape for c in columns))
        known = torch.stack([c.expand(shape) for c in columns], -1)  # (..., N, len(columns))
        known = F.pad(known, (0, self.dim - known.shape[-1]))  # (..., N, D)
        return self.made(known, ordering)[..., d]

    def model(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """x_d ~ Bernoulli(σ(logit_d(x_<d))) for d = 0, ..., D - 1, inside the data plate.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
            Missing pixels become the latent sites ``x_d_unobserved`` (Pyro's ``obs_mask``).
        """
        self.validate_values(x, mask)
        n = x.shape[0]
        columns: list[torch.Tensor] = []
        with pyro.plate(DATA_PLATE, n, dim=-1):
            for d in range(self.dim):
                # the data were checked; validating each enumerated copy would cost a pass
                fn = dist.Bernoulli(logits=self._logit(columns, n, d, 0), validate_args=False)
                obs_mask = None if mask is None else mask[:, d]
                columns.append(pyro.sample(f"x_{d}", fn, obs=x[:, d], obs_mask=obs_mask))

    def guide(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """The missing pixels from the model's own conditionals under one ordering.

        x_d_unobserved ~ p_σ(x_d | the pixels before d in σ), in σ's order, with the observed
        pixels clamped and σ = :meth:`proposal_ordering` of the mask. Where σ covers a datum
        this is the exact conditional p_σ(x_m | x_o); for p_0's evidence it is a proposal.
        Without a mask there is nothing to draw.
        """
        if mask is None:
            return
        n = x.shape[0]
        ordering = self.proposal_ordering(mask)
        columns = list(x.unbind(-1))
        with pyro.plate(DATA_PLATE, n, dim=-1):
            for d in self.made.orderings[ordering].tolist():
                logit = self._logit(columns, n, d, ordering)
                q = dist.Bernoulli(logits=logit, validate_args=False).mask(~mask[:, d])
                value = pyro.sample(f"x_{d}_unobserved", q)
                columns[d] = torch.where(mask[:, d], x[:, d], value)

    # -- orderings and missing pixels --------------------------------------------------------
    def covering_orderings(self, mask: torch.Tensor) -> torch.Tensor:
        """Per datum, the first ordering that visits all observed pixels of ``mask`` (N, D)
        before all missing ones (0 when ordering 0 does), or -1 where none does: (N,) int64."""
        return _ar_missing.covering_orderings(self._mask(mask), self.made.orderings)

    def proposal_ordering(self, mask: torch.Tensor) -> int:
        """The ordering whose conditionals the guide draws from, for a batch of masks (N, D).

        The one with the fewest observed pixels left unseen by the missing pixels' conditionals
        (:func:`._ar_missing.inversions`, summed over the batch), ties to the lower index: a
        covering ordering where one covers every datum. One ordering for the whole batch,
        because the guide's sites are drawn in one order for all data.
        """
        counts = _ar_missing.inversions(self._mask(mask), self.made.orderings).sum(0)
        return int(counts.argmin())

    def _mask(self, mask: torch.Tensor) -> torch.Tensor:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
            raise TypeError(
                f"mask must be a bool tensor of shape (N, {self.dim}) (True = observed), got "
                f"{getattr(mask, 'dtype', type(mask).__name__)}."
            )
        if mask.shape[1] != self.dim:
            raise ValueError(
                f"mask has {mask.shape[1]} columns but the model has dim={self.dim}; give a "
                f"mask of shape (N, {self.dim})."
            )
        return mask.to(self.made.orderings.device)

    def particle_log_weights(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        num_particles: int,
        z: torch.Tensor | None = None,
    ) -> LogWeights:
        """log p_0(x_o, x_m) and log q(x_m | x_o) for K completions from the guide.

        The numbers of the traced model/guide pair, from one network pass for the draws' log q
        and one for log p_0 (the draws cost O(H) a pixel). The draws are discrete, so log q is
        also ``log_q_score``, for the engines' score-function terms.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, or None
        num_particles : int
            K.
        z : torch.Tensor of shape (K, N, D), optional
            Completions to score instead of drawing new ones (observed entries are the data's).

        Returns
        -------
        LogWeights
            ``log_p``, ``log_q``, ``log_lik`` (the observed pixels' terms) of shape (K, N);
            ``samples["x_d_unobserved"]`` (K, N) for every pixel d when there is a mask.
        """
        self.validate_values(x, mask)
        ordering = None if mask is None else self.proposal_ordering(mask)
        return _ar_missing.story_log_weights(self.made, x, mask, num_particles, ordering, z)

    @torch.no_grad()
    def observed_log_evidence(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        num_particles: int = 1000,
        seed: int | None = 0,
    ) -> ObservedEvidence:
        """log p(x_o) of each datum over its observed pixels: exact where an ordering allows.

        - **exact**, where a trained ordering σ puts every observed pixel of the datum before
          every missing one (ordering 1, reverse raster, for a missing top half; ordering 0
          for complete data): log p_σ(x_o) = Σ_{d observed} log p_σ(x_d | the observed pixels
          before d). This is the marginal of *that ordering's* joint p_σ, which is p_0 only
          for σ = 0; the orderings' joints agree only as far as training made them agree.
        - **importance sampling** otherwise: an estimate of log p_0(x_o) =
          log Σ_{x_m} p_0(x_o, x_m) by K completions drawn from the model's own conditionals
          under the ordering closest to covering the datum (see :meth:`proposal_ordering`,
          here chosen per datum), weighted by p_0(x_o, x_m) / q(x_m | x_o), with the
          delta-method standard error, the effective sample size and Pareto k̂
          (:mod:`ppl_lvm.core.stats`).

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
            Binary; entries where ``mask`` is False are never read (NaN is fine).
        mask : torch.Tensor of shape (N, D), bool, optional
            True = observed; None means complete data (exact log p_0(x)).
        num_particles : int
            K, completions per estimated datum.
        seed : int or None
            Seeds the draws without moving the caller's random stream.

        Returns
        -------
        ObservedEvidence
            ``per_datum``, ``stderr``, ``method`` ("exact" or "importance sampling") and
            ``ordering`` per datum, and the :class:`~ppl_lvm.core.results.Evidence`.
        """
        x, mask = self._checked(x, mask)
        k = check_positive_int("num_particles", num_particles)
        with seeded(seed):
            return _ar_missing.observed_log_evidence(self.made, x, mask, k)

    @torch.no_grad()
    def complete_own(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        num_samples: int,
        *,
        num_particles: int = 1000,
        seed: int | None = None,
    ) -> CompletionDraws:
        """Completions of the missing pixels, exact where an ordering allows.

        - **exact**, where a trained ordering σ puts every observed pixel first: S independent
          draws from p_σ(x_m | x_o) by running σ on. ``sample_means`` are the conditional
          probabilities p_σ(x_d = 1 | the path before d) along each draw, and ``mean`` their
          average over the S draws, a Rao-Blackwellised estimate of E_σ[x_m | x_o] (its first
          missing pixel is exact with any S).
        - **importance resampling** otherwise, for the target p_0(x_m | x_o): K completions from
          the own-conditional proposal of :meth:`observed_log_evidence`, S of them resampled
          by weight. The latent here is the completion itself, so ``sample_means`` are the
          draws, and ``mean`` is the self-normalised weighted mean of the K completions.

        Parameters
        ----------
        x, mask : torch.Tensor of shape (N, D)
            The data, and True where observed.
        num_samples, num_particles : int
            S, completions per datum; K, proposals per datum for importance resampling.
        seed : int or None
            Seeds the draws; None draws from torch's global generator.

        Returns
        -------
        CompletionDraws
            ``(samples (S, N, D), sample_means (S, N, D), mean (N, D), method, ess)``: method
            per datum ("exact" or "importance resampling"); ess (N,), NaN where exact, or None
            when every datum was exact. Observed entries are always the data's own.
        """
        x, mask = self._checked(x, mask, need_mask=True)
        s = check_positive_int("num_samples", num_samples)
        k = check_positive_int("num_particles", num_particles)
        with seeded(seed):
            return _ar_missing.complete_own(self.made, x, mask, s, k)

    @torch.no_grad()
    def sample_missing(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        num_samples: int,
        *,
        ordering: int,
        seed: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw the missing pixels from ordering σ's own conditionals, observed pixels clamped.

        q_σ(x_m | x_o) = Π_{d missing} p_σ(x_d | the pixels before d in σ). When σ puts every
        observed pixel first this is the exact conditional p_σ(x_m | x_o); when it puts every
        missing pixel first it is the marginal p_σ(x_m), which ignores the observations (the
        "prior" proposal: raster order for a missing top half).

        Parameters
        ----------
        x, mask : torch.Tensor of shape (N, D)
            The data, and True where observed.
        num_samples, ordering : int
            S draws per datum, from ordering σ.
        seed : int or None

        Returns
        -------
        samples : torch.Tensor of shape (S, N, D)
        probs : torch.Tensor of shape (S, N, D)
            p_σ(x_d = 1 | the path before d) at the missing pixels, the data elsewhere.
        log_q : torch.Tensor of shape (S, N)
            log q_σ(x_m | x_o) of each draw.
        """
        x, mask = self._checked(x, mask, need_mask=True)
        s = check_positive_int("num_samples", num_samples)
        with seeded(seed):
            return _ar_missing.propose(self.made, x, mask, self._ordering(ordering), s)

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, seed: int | None = None, ordering: int = 0
    ) -> ModelSample:
        """Ancestral draws of whole images from p_σ (p_0 by default).

        Returns
        -------
        ModelSample
            ``x`` of shape (S, D) and ``z`` of shape (S, 0): complete data have no latent.
        """
        s = check_positive_int("num_samples", num_samples)
        ref = self.made.direct
        x = ref.new_zeros(s, self.dim)
        with seeded(seed):
            draws, _ = self.made.sample(
                x, torch.zeros_like(x, dtype=torch.bool), self._ordering(ordering)
            )
        return ModelSample(draws, ref.new_zeros(s, 0))

    def ensemble(self) -> OrderingEnsemble:
        """The order-agnostic training story, sharing this model's network.

        σ_n ~ Uniform{0, ..., R - 1}, x_n ~ p_σn, with the uniform guide: its ELBO is
        E_σ[log p_σ(x)] (``SVI().fit(model.ensemble(), x)`` trains all R orderings), and its
        exact evidence is the ensemble's log (1/R) Σ_σ p_σ(x) (``Enumeration``).
        """
        return OrderingEnsemble(self.made)

    def extra_repr(self) -> str:
        shape = "" if self.image_shape is None else f", image_shape={self.image_shape}"
        return (
            f"dim={self.dim}, hidden={self.hidden}, num_orderings={self.num_orderings}"
            f"{shape}, seed={self.seed}"
        )
