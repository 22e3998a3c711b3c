"""Binary latent features: ``BinaryLatentFactors``.

Each datum switches on a subset of L features, z ∈ {0,1}^L with z_l ~ Bernoulli(π_l), and each
feature adds its column of W to the logits of D binary pixels: x | z ~ Bernoulli(σ(W z + b)).
Unlike a mixture, where a datum picks one of K prototypes, here it combines several, so L
features describe 2^L patterns; the price is a posterior over 2^L joint states per datum.

``z`` is one vector-valued site, ``Bernoulli(π).to_event(1)``, so ``Enumeration`` sums its
2^L joint states exactly (up to its ``max_states``, 2^16 by default) and refuses L = 30 with
"2^30 = 1,073,741,824 joint states per datum" before any work. For larger L, the amortised
guide q(z | x) = Bernoulli(σ(MLP(x))).to_event(1) gives SVI and importance sampling a proposal;
its samples are discrete, so gradients of its parameters need a score-function term, which
the engines add from ``LogWeights.log_q_score``. The Pyro story and the direct tensor path
come from :class:`~.amortized.AmortizedLVM`, given the three Bernoulli families.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_data, check_positive_int, refuse_values
from ..core.densities import bernoulli_log_prob
from ..core.memory import row_slices
from .amortized import AmortizedLVM
from .capabilities import ExactEvidence, Initializable, ValueValidation

__all__ = ["BinaryLatentFactors"]


class BinaryLatentFactors(AmortizedLVM, ExactEvidence, Initializable, ValueValidation):
    """Binary latent features: z_l ~ Bernoulli(π_l), x | z ~ Bernoulli(σ(W z + b)).

    Capabilities: ParticleLogWeights, ExactEvidence, Observation, Initializable,
    ValueValidation, Generative.

    Parameters
    ----------
    dim : int
        D, binary entries per datum (784 pixels for MNIST).
    num_features : int
        L, the number of binary features; a datum's joint latent space has 2^L states.
    hidden : sequence of int
        Hidden layer widths of the guide's encoder MLP; ``()`` makes it logistic regression.

    Attributes
    ----------
    W : torch.nn.Parameter of shape (D, L)
        Feature l adds column W[:, l] to the logits of the pixels when it is on.
    b : torch.nn.Parameter of shape (D,)
        Pixel logits with every feature off.
    prior_logits : torch.nn.Parameter of shape (L,)
        logit π_l. Learned, one per feature: how often a feature is used is part of what the
        model learns (a rare stroke and a common one), and the exact likelihood and the ELBO
        both have gradients for it. ``set_parameters`` fixes it at any value, e.g. 0 for π = ½.
    encoder : torch.nn.Sequential
        The guide's MLP, from the data to the L logits of q(z_l = 1 | x).

    Notes
    -----
    Entries where the mask is False are left out of the likelihood. The encoder reads each
    entry as 2x - 1 (±1) with missing entries at 0, so a missing pixel counts as neither on
    nor off.

    Examples
    --------
    >>> model = BinaryLatentFactors(dim=784, num_features=10)
    >>> model.exact_log_evidence(torch.zeros(2, 784)).shape
    torch.Size([2])
    """

    def __init__(self, dim: int, num_features: int, hidden: Sequence[int] = (128,)):
        super().__init__(
            check_positive_int("dim", dim), check_positive_int("num_features", num_features)
        )
        self.num_features = self.latent_dim
        hidden = tuple(hidden)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be positive ints, got {hidden}.")
        self.hidden = hidden
        # a fixed generator: constructing a model must not consume the caller's random stream
        g = torch.Generator().manual_seed(0)
        self.W = nn.Parameter(0.1 * torch.randn(dim, num_features, generator=g))
        self.b = nn.Parameter(torch.zeros(dim))
        self.prior_logits = nn.Parameter(torch.zeros(num_features))
        sizes = (dim, *hidden, num_features)
        layers: list[nn.Module] = []
        for i, (a, c) in enumerate(itertools.pairwise(sizes)):
            layer = nn.Linear(a, c)
            bound = 1 / a**0.5  # PyTorch's default uniform range, drawn from g
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=g)
                layer.bias.uniform_(-bound, bound, generator=g)
            layers.append(layer)
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.encoder = nn.Sequential(*layers)

    # -- fitted values ---------------------------------------------------------------------------
    @property
    def loadings_(self) -> torch.Tensor:
        """W, shape (D, L): column l is feature l's contribution to the pixel logits (a copy)."""
        return self.W.detach().clone()

    @property
    def bias_(self) -> torch.Tensor:
        """b, the pixel logits with every feature off, shape (D,) (a copy)."""
        return self.b.detach().clone()

    @property
    def feature_probs_(self) -> torch.Tensor:
        """π, each feature's prior probability of being on, shape (L,)."""
        return torch.sigmoid(self.prior_logits.detach())

    def set_parameters(
        self,
        W: torch.Tensor,
        b: torch.Tensor,
        feature_probs: torch.Tensor | float = 0.5,
    ) -> BinaryLatentFactors:
        """Set W (D, L), b (D,) and π (L,) or a scalar in (0, 1); returns self.

        The guide is left as it is.
        """
        ref = self.W
        W, b, probs = (
            torch.as_tensor(v, dtype=ref.dtype, device=ref.device) for v in (W, b, feature_probs)
        )
        d, k = self.dim, self.num_features
        probs = probs.expand(k) if probs.dim() == 0 else probs
        if W.shape != (d, k) or b.shape != (d,) or probs.shape != (k,):
            raise ValueError(
                f"expected W {(d, k)}, b {(d,)} and feature_probs {(k,)} or a scalar, got "
                f"{tuple(W.shape)}, {tuple(b.shape)} and {tuple(probs.shape)}."
            )
        if not bool(((probs > 0) & (probs < 1)).all()):
            raise ValueError(
                f"feature_probs must lie strictly between 0 and 1, got {probs.tolist()}."
            )
        with torch.no_grad():
            self.W.copy_(W)
            self.b.copy_(b)
            self.prior_logits.copy_(torch.logit(probs))
        return self

    def validate_values(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` unless every observed entry of ``x`` is 0 or 1.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
            True where observed; unobserved entries may hold anything.
        """
        refuse_values(
            x,
            mask,
            x.eq(0).logical_or_(x.eq(1)),
            model="BinaryLatentFactors",
            expected="binary data (0 or 1)",
            fix="binarize it first, e.g. Dataset.binarize(0.5) or (x > 0.5).float().",
        )

    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None, seed: int) -> None:
        """Start b at the logit of each pixel's observed mean, W small and random, π = ½.

        With W near 0 the model starts as independent pixels with the right frequencies, so
        training spends its steps on the features rather than on the background.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D), masked entries zero-filled
        mask : torch.Tensor of shape (N, D) or None
        seed : int
            Seeds W.
        """
        self.validate_values(x, mask)
        m = torch.ones_like(x) if mask is None else mask.to(x.dtype)
        # clamped so that an always-off border pixel gets a finite logit (about -6.9)
        p = ((x * m).sum(0) / m.sum(0).clamp(min=1)).clamp(1e-3, 1 - 1e-3)
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(self.dim, self.num_features, generator=g, dtype=x.dtype)
        self.set_parameters(0.1 * noise.to(x.device), torch.logit(p), 0.5)

    # -- the guide's encoder --------------------------------------------------------------------
    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of q(z_l = 1 | x_n), shape (N, L)."""
        signed = 2 * x - 1
        if mask is not None:
            signed = signed * mask.to(x.dtype)
        return self.encoder(signed)

    # -- the distributions --------------------------------------------------------------------
    def prior_distribution(self, num_data: int, like: torch.Tensor) -> dist.Distribution:
        """p(z) = Bernoulli(π).to_event(1): batch shape (num_data,), event shape (L,)."""
        prior = dist.Bernoulli(logits=self.prior_logits).expand([num_data, self.num_features])
        return prior.to_event(1)

    def guide_distribution(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dist.Distribution:
        """q(z_n | x_n) = Bernoulli(σ(MLP(x_n))).to_event(1): discrete draws, so the direct path
        returns log q as ``log_q_score`` for the score-function term the engines add."""
        return dist.Bernoulli(logits=self.encode(x, mask)).to_event(1)

    def likelihood_distribution(self, z: torch.Tensor) -> dist.Distribution:
        """p(x_nd | z) = Bernoulli(σ(W z + b)_d) per entry."""
        # the model checked the values; validating every enumerated copy would cost a pass
        return dist.Bernoulli(logits=z @ self.W.T + self.b, validate_args=False)

    def states(self) -> torch.Tensor:
        """Every joint value of z, shape (2^L, L); row s holds the binary digits of s."""
        ref = self.W
        s = torch.arange(2**self.num_features, device=ref.device)
        bits = torch.arange(self.num_features, device=ref.device)
        return ((s.unsqueeze(-1) >> bits) & 1).to(ref.dtype)

    def state_log_joint(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, max_states: int = 2**16
    ) -> torch.Tensor:
        """log p(x_n, z_n = s) for every joint state s of :meth:`states`, shape (N, 2^L).

        A direct tensor path, the same numbers as ``Enumeration`` with two matrix products:
        log p(x_n | s) = (m_n ⊙ x_n) · η_s - m_n · softplus(η_s) with η_s = W s + b.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        max_states : int
            Refuse a model with more joint states than this, as ``Enumeration`` does.
        """
        x, mask = check_data(x, mask)
        total = 2**self.num_features
        if total > max_states:
            raise ValueError(
                f"num_features={self.num_features} gives 2^{self.num_features} = {total:,} joint "
                f"states per datum, more than max_states={max_states:,}; raise max_states, or "
                "bound log p(x) with SVI or estimate it with ImportanceSampling."
            )
        self.validate_values(x, mask)
        states = self.states()
        eta = states @ self.W.T + self.b  # (S, D)
        log_prior = bernoulli_log_prob(self.prior_logits, states).sum(-1)  # (S,)
        soft = F.softplus(eta)  # (S, D)
        if mask is None:
            return x @ eta.T - soft.sum(-1) + log_prior
        m = mask.to(x.dtype)
        return (m * x) @ eta.T - m @ soft.T + log_prior

    @torch.no_grad()
    def exact_log_evidence(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, max_states: int = 2**16
    ) -> torch.Tensor:
        """log p(x_n) = log Σ_s p(x_n, z = s) over all 2^L states, shape (N,), no gradient.

        Computed in chunks of data within the memory budget (:mod:`ppl_lvm.core.memory`);
        :meth:`state_log_joint` gives the differentiable joint.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        max_states : int
            As for :meth:`state_log_joint`.
        """
        out = []
        for rows in row_slices(x.shape[0], 2**self.num_features * self.dim):
            xb, mb = x[rows], None if mask is None else mask[rows]
            out.append(torch.logsumexp(self.state_log_joint(xb, mb, max_states=max_states), -1))
        return torch.cat(out)

    @torch.no_grad()
    def exact_feature_probs(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, max_states: int = 2**16
    ) -> torch.Tensor:
        """p(z_nl = 1 | x_n), the exact posterior probability of each feature, shape (N, L).

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        max_states : int
            As for :meth:`state_log_joint`.
        """
        states = self.states()
        out = []
        for rows in row_slices(x.shape[0], 2**self.num_features * self.dim):
            xb, mb = x[rows], None if mask is None else mask[rows]
            post = torch.softmax(self.state_log_joint(xb, mb, max_states=max_states), -1)
            out.append(post @ states)
        return torch.cat(out)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_features={self.num_features}, hidden={self.hidden}"
