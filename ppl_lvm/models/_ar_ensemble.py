"""The order-agnostic training story of an autoregressive model: ``OrderingEnsemble``.

Uria, Murray & Larochelle (2014) train one network for many orderings by maximising
E_σ[log p_σ(x)] with σ drawn uniformly, and note that this is a lower bound on the log
likelihood of the ensemble p(x) = (1/R) Σ_σ p_σ(x). Written as a story, the bound is an ELBO:

    σ_n ~ Uniform{0, ..., R - 1},   x_n | σ_n ~ p_σn(x) = Π_i p(x_σn(i) | x_σn(<i)),

with the guide q(σ_n) = Uniform{0, ..., R - 1} (not the posterior p(σ | x)), so that
ELBO = E_q[log p(σ) + log p_σ(x) - log q(σ)] = E_σ[log p_σ(x)]. SVI maximises it with the
toolkit's one training loop, one ordering drawn per datum per step, and ``Enumeration`` gives
the ensemble's exact log-evidence. The story shares the network of the
:class:`~.autoregressive.Autoregressive` it came from, so training it trains that model.
"""

from __future__ import annotations

import math
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution

from ..core.checks import refuse_values
from ..core.densities import bernoulli_log_prob
from ..core.logweights import LogWeights
from ._made import MADE
from .base import DATA_PLATE, LatentVariableModel
from .capabilities import Initializable, ParticleLogWeights, ValueValidation

__all__ = ["OrderedBernoulli", "OrderingEnsemble"]


class OrderedBernoulli(TorchDistribution):
    """p_σ(x) over binary vectors, a MADE ordering per batch element: event shape (D,).

    Parameters
    ----------
    made : MADE
    ordering : torch.Tensor of int64
        σ per batch element; its shape is the batch shape.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.boolean, 1)
    has_enumerate_support = False

    def __init__(self, made: MADE, ordering: torch.Tensor, validate_args: bool | None = None):
        self.made, self.ordering = made, ordering
        super().__init__(ordering.shape, torch.Size([made.dim]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> OrderedBernoulli:
        return OrderedBernoulli(self.made, self.ordering.expand(batch_shape), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Σ_i log p(x_σ(i) | x_σ(<i)): value (..., D) -> broadcast with the batch shape."""
        return bernoulli_log_prob(self.made(value, self.ordering), value).sum(-1)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Ancestral draws, one ordering per batch element: sample_shape + batch + (D,)."""
        shape = torch.Size(sample_shape) + self.batch_shape
        flat = self.ordering.expand(shape).reshape(-1)
        ref = self.made.direct
        out = ref.new_zeros(flat.shape[0], self.made.dim)
        for r in flat.unique().tolist():
            rows = torch.nonzero(flat == r).squeeze(-1)
            blank = out[rows]
            out[rows], _ = self.made.sample(blank, torch.zeros_like(blank, dtype=torch.bool), r)
        return out.reshape(*shape, self.made.dim)


class OrderingEnsemble(LatentVariableModel, ParticleLogWeights, Initializable, ValueValidation):
    """σ ~ Uniform over R orderings, x ~ p_σ: order-agnostic training as an ELBO.

    Build it with :meth:`Autoregressive.ensemble`; it shares that model's network.
    Capabilities: ParticleLogWeights, Initializable, ValueValidation.

    Parameters
    ----------
    made : MADE
        The network, shared.

    Notes
    -----
    Complete data only: a masked pixel would need a sum over completions under every ordering.
    Train on incomplete data with ``SVI("iwae", num_particles=K).fit(model, x, mask)`` on the
    :class:`~.autoregressive.Autoregressive` itself.
    """

    static_structure = True

    def __init__(self, made: MADE):
        super().__init__()
        self.made = made
        self.dim = made.dim

    def working_width(self, x: torch.Tensor) -> int:
        return 2 * self.dim + max(self.made.hidden, default=0)

    def validate_values(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` unless every entry of ``x`` (N, D) is 0 or 1 and nothing is
        masked."""
        if mask is not None and not bool(mask.all()):
            raise ValueError(
                "the ordering ensemble scores complete data only; train on data with missing "
                "pixels with SVI(objective='iwae', num_particles=K).fit(model, x, mask) on the "
                "Autoregressive itself, or drop the incomplete rows."
            )
        refuse_values(
            x,
            None,
            x.eq(0).logical_or_(x.eq(1)),
            model="Autoregressive.ensemble()",
            expected="binary pixels (0 or 1)",
            fix="binarize it first, e.g. Dataset.binarize(0.5) or (x > 0.5).float().",
        )

    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None, seed: int) -> None:
        """Start every output bias at the logit of its pixel's mean (``x`` (N, D))."""
        self.validate_values(x, mask)
        p = x.mean(0).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.made.out_bias.copy_(torch.logit(p))

    def _uniform(self, like: torch.Tensor) -> dist.Categorical:
        return dist.Categorical(logits=like.new_zeros(self.made.num_orderings))

    def model(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """σ_n ~ Uniform{0, ..., R - 1}; x_n ~ p_σn. ``x`` (N, D) binary."""
        self.validate_values(x, mask)
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            ordering = pyro.sample("ordering", self._uniform(x))
            pyro.sample("x", OrderedBernoulli(self.made, ordering, validate_args=False), obs=x)

    def guide(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """q(σ_n) = Uniform{0, ..., R - 1}, whatever x_n: the order-agnostic objective."""
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            pyro.sample("ordering", self._uniform(x))

    def particle_log_weights(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        num_particles: int,
        z: torch.Tensor | None = None,
    ) -> LogWeights:
        """log p(σ, x_n) and log q(σ) for K orderings drawn per datum: each (K, N).

        ``log_q_score`` is None: q has no parameters, so its score-function term is zero.
        ``z`` (K, N), int64, scores given orderings.
        """
        self.validate_values(x, mask)
        k, n, r = num_particles, x.shape[0], self.made.num_orderings
        ordering = torch.randint(r, (k, n), device=x.device) if z is None else z
        log_lik = bernoulli_log_prob(self.made(x, ordering), x).sum(-1)  # (K, N)
        log_q = x.new_full(log_lik.shape, -math.log(r))
        zeros = x.new_zeros(log_lik.shape[0])
        return LogWeights(
            log_p=log_lik + log_q,
            log_q=log_q,
            global_log_p=zeros,
            global_log_q=zeros,
            samples={"ordering": ordering},
            local_sites=("ordering",),
            log_lik=log_lik,
        )

    @property
    def name(self) -> str:
        return "Autoregressive.ensemble()"

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_orderings={self.made.num_orderings}"
