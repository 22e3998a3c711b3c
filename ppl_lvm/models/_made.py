"""MADE's masked layers over several orderings of the pixels.

MADE (Germain, Gregor, Murray & Larochelle 2015, "MADE: Masked Autoencoder for Distribution
Estimation") turns an ordinary MLP into an autoregressive model by zeroing weights: with an
ordering σ of the D inputs, the output for the pixel of rank i may depend only on the pixels of
ranks < i, so that one pass over a complete datum gives every conditional
p(x_σ(i) | x_σ(<i)) at once. Each hidden unit k gets a degree m(k) in {0, ..., D - 2}; it sees
the inputs of rank <= m(k), a unit of the next layer with degree m' sees units of degree <= m',
and an output of rank i sees hidden units of degree < i (and, through the direct connection,
inputs of rank < i).

Order-agnostic training (Uria, Murray & Larochelle 2014, "A Deep and Tractable Density
Estimator") fits one network for several orderings at once. Here the degrees live in *rank*
space, so the hidden-to-hidden masks are the same for every ordering and only the input, output
and direct masks change with σ: they are functions of σ's ranks, computed on the fly. One set of
weights serves all R orderings, so that they share what they learn; on top of it each ordering
has a learned bias on every hidden unit and every output. That is the same as feeding a one-hot
code of the ordering in use as an extra input connected to every unit, which keeps the network
autoregressive (the code is not a pixel), in the spirit of order-agnostic NADE and MADE, which
tell the network which ordering or mask it is computing under. Without it the marginal of the
first pixel of each ordering would have to be the same output bias for all orderings, which is
wrong for any pixel that is first in one ordering and last in another.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MADE", "default_orderings"]


def default_orderings(dim: int, num_orderings: int, seed: int) -> torch.Tensor:
    """The R trained orderings: raster, reverse raster, then random permutations.

    Parameters
    ----------
    dim : int
        D.
    num_orderings : int
        R >= 2.
    seed : int
        Seeds the random orderings 2, ..., R - 1 (a generator of its own).

    Returns
    -------
    torch.Tensor of shape (R, D), int64
        Row r lists the pixels in the order ordering r visits them: row 0 is ``0, ..., D - 1``
        (raster order, the model's canonical ordering), row 1 is ``D - 1, ..., 0`` (reverse
        raster: the bottom row first).
    """
    g = torch.Generator().manual_seed(int(seed))
    rows = [torch.arange(dim), torch.arange(dim).flip(0)]
    rows += [torch.randperm(dim, generator=g) for _ in range(num_orderings - 2)]
    return torch.stack(rows)


def _uniform(g: torch.Generator, *shape: int, bound: float) -> torch.Tensor:
    return (torch.rand(*shape, generator=g) * 2 - 1) * bound


class MADE(nn.Module):
    """Masked MLP whose outputs are the logits of p(x_d = 1 | the pixels before d in σ).

    Parameters
    ----------
    dim : int
        D, binary inputs.
    hidden : tuple of int
        Hidden layer widths; ``()`` leaves the direct connection alone (a fully visible
        sigmoid belief net).
    orderings : torch.Tensor of shape (R, D), int64
        Each row a permutation of ``range(D)``: the order in which that ordering visits pixels.
    seed : int
        Seeds the initial weights (a generator of its own, so that building a model never moves
        the caller's random stream).

    Attributes
    ----------
    orderings : torch.Tensor of shape (R, D)
        A buffer, as given.
    ranks : torch.Tensor of shape (R, D)
        ``ranks[r, d]``: the position of pixel d in ordering r.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...], orderings: torch.Tensor, seed: int):
        super().__init__()
        r, d = orderings.shape
        ranks = torch.empty_like(orderings)
        ranks.scatter_(1, orderings, torch.arange(d).expand(r, d).contiguous())
        self.register_buffer("orderings", orderings.clone())
        self.register_buffer("ranks", ranks)
        self.dim, self.hidden, self.num_orderings = d, tuple(hidden), r
        g = torch.Generator().manual_seed(int(seed))
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.order_biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise((d, *self.hidden)):
            bound = fan_in**-0.5  # PyTorch's default range for a linear layer
            self.weights.append(nn.Parameter(_uniform(g, fan_out, fan_in, bound=bound)))
            self.biases.append(nn.Parameter(_uniform(g, fan_out, bound=bound)))
            self.order_biases.append(nn.Parameter(torch.zeros(r, fan_out)))
        if self.hidden:
            last = self.hidden[-1]
            self.out_weight = nn.Parameter(_uniform(g, d, last, bound=last**-0.5))
        else:
            self.register_parameter("out_weight", None)
        self.direct = nn.Parameter(_uniform(g, d, d, bound=d**-0.5))
        self.out_bias = nn.Parameter(torch.zeros(d))
        self.out_order_bias = nn.Parameter(torch.zeros(r, d))

    # -- connectivity ------------------------------------------------------------------------
    def _degrees(self, width: int) -> torch.Tensor:
        """Degrees of a hidden layer's units, spread evenly over {0, ..., D - 2}: (width,)."""
        units = torch.arange(width, device=self.ranks.device)
        return units * max(self.dim - 1, 1) // width

    def masks(self, ordering: int) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor]:
        """The connectivity masks of one ordering, as 0/1 tensors of the weights' dtype.

        Returns
        -------
        layers : list of torch.Tensor
            (H_1, D), then (H_l, H_{l-1}) for each further hidden layer.
        out : torch.Tensor of shape (D, H_L) or None
            Hidden units to outputs (None without hidden layers).
        direct : torch.Tensor of shape (D, D)
            Inputs to outputs: pixel d' reaches output d iff rank(d') < rank(d).
        """
        dtype = self.direct.dtype
        # (the ranks' version: a loaded state dict rewrites them in place)
        key = (ordering, dtype, self.ranks.device, self.ranks._version)
        cache = self.__dict__.setdefault("_mask_cache", {})
        if key not in cache:  # they depend on the ordering alone, and a step asks R times
            cache[key] = self._masks(ordering, dtype)
        return cache[key]

    def _masks(self, ordering: int, dtype: torch.dtype):
        rank = self.ranks[ordering]  # (D,)
        layers, previous = [], rank
        for width in self.hidden:
            deg = self._degrees(width)
            layers.append((deg[:, None] >= previous[None, :]).to(dtype))
            previous = deg
        out = (rank[:, None] > previous[None, :]).to(dtype) if self.hidden else None
        direct = (rank[:, None] > rank[None, :]).to(dtype)
        return layers, out, direct

    # -- the network ---------------------------------------------------------------------------
    def _hidden(self, x: torch.Tensor, ordering: int, layers: list[torch.Tensor]) -> torch.Tensor:
        h = x
        for w, b, e, m in zip(self.weights, self.biases, self.order_biases, layers, strict=True):
            h = F.relu(F.linear(h, w * m, b + e[ordering]))
        return h

    def _forward_one(self, x: torch.Tensor, ordering: int) -> torch.Tensor:
        """Logits under one ordering: (B, D) -> (B, D)."""
        layers, out_mask, direct_mask = self.masks(ordering)
        bias = self.out_bias + self.out_order_bias[ordering]
        logits = F.linear(x, self.direct * direct_mask, bias)
        if self.hidden:
            h = self._hidden(x, ordering, layers)
            logits = logits + F.linear(h, self.out_weight * out_mask)
        return logits

    def forward(self, x: torch.Tensor, ordering: int | torch.Tensor) -> torch.Tensor:
        """Logits of p(x_d = 1 | pixels before d in the ordering), every d at once.

        Parameters
        ----------
        x : torch.Tensor of shape (..., D)
            Complete data (the logit of pixel d never reads pixels that come at or after d).
        ordering : int or torch.Tensor of int64
            One ordering for every row, or one per row, broadcastable with ``x.shape[:-1]``;
            rows are grouped by ordering, one masked pass per group.

        Returns
        -------
        torch.Tensor of shape broadcast(x.shape[:-1], ordering.shape) + (D,)
        """
        if not torch.is_tensor(ordering):
            lead = x.shape[:-1]
            return self._forward_one(x.reshape(-1, self.dim), int(ordering)).reshape(
                *lead, self.dim
            )
        batch = torch.broadcast_shapes(x.shape[:-1], ordering.shape)
        flat_x = x.expand(*batch, self.dim).reshape(-1, self.dim)
        flat_o = ordering.expand(batch).reshape(-1)
        values = flat_o.unique()
        if len(values) == 1:
            return self._forward_one(flat_x, int(values[0])).reshape(*batch, self.dim)
        out = flat_x.new_zeros(flat_x.shape)
        for r in values.tolist():
            rows = torch.nonzero(flat_o == r).squeeze(-1)
            out = out.index_copy(0, rows, self._forward_one(flat_x[rows], r))
        return out.reshape(*batch, self.dim)

    # -- ancestral sampling ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, x: torch.Tensor, observed: torch.Tensor, ordering: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the unobserved pixels one at a time in the ordering's order, observed ones kept.

        Each unobserved pixel d is drawn from p_σ(x_d | the pixels before d in σ): the observed
        ones there and those already drawn. Observed pixels that come after d in σ are not looked
        at, so when every observed pixel comes first the draws are exact conditional draws from
        p_σ(x_m | x_o), and when every observed pixel comes last they are draws of p_σ(x_m).
        Draws use torch's global generator (seed it with ``core.rng.seeded``).

        With at most one hidden layer each step costs O(H) per row rather than a network pass:
        the first layer's pre-activations are kept and updated with the one new pixel's column
        (the NADE trick, Larochelle & Murray 2011); deeper networks take one pass per step.

        Parameters
        ----------
        x : torch.Tensor of shape (B, D)
            Values at the observed entries (others are ignored).
        observed : torch.Tensor of shape (B, D), bool
        ordering : int

        Returns
        -------
        values : torch.Tensor of shape (B, D)
            ``x`` at the observed entries, draws elsewhere.
        probs : torch.Tensor of shape (B, D)
            p_σ(x_d = 1 | the pixels before d) along each row's path at the unobserved entries;
            the observed values elsewhere.
        """
        cur = torch.where(observed, x, torch.zeros((), dtype=x.dtype, device=x.device))
        probs = cur.clone()
        order = self.orderings[ordering]
        # only the ranks at which some row has something to draw need a step
        todo = (~observed)[:, order].any(0)
        steps = order[todo].tolist()
        if not steps:
            return cur, probs
        layers, out_mask, direct_mask = self.masks(ordering)
        direct = self.direct * direct_mask
        bias = self.out_bias + self.out_order_bias[ordering]
        shallow = len(self.hidden) <= 1
        if shallow and self.hidden:
            w1 = self.weights[0] * layers[0]  # (H, D)
            pre = F.linear(cur, w1, self.biases[0] + self.order_biases[0][ordering])  # (B, H)
            out_w = self.out_weight * out_mask  # (D, H)
        for d in steps:
            if not shallow:
                logit = self._forward_one(cur, ordering)[:, d]
            else:
                logit = cur @ direct[d] + bias[d]  # (B,)
                if self.hidden:
                    logit = logit + F.relu(pre) @ out_w[d]
            p = torch.sigmoid(logit)
            missing = ~observed[:, d]
            value = torch.where(missing, torch.bernoulli(p), cur[:, d])
            probs[:, d] = torch.where(missing, p, cur[:, d])
            if shallow and self.hidden:
                # the new pixel enters the units that may see it (the mask is in w1's column)
                pre = pre + (value - cur[:, d]).unsqueeze(-1) * w1[:, d]
            cur[:, d] = value
        return cur, probs

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, num_orderings={self.num_orderings}"
