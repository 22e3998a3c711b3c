"""The result of the weighting routine; it lives in the bottom layer so that models can build it
without importing the engines."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LogWeights"]


@dataclass(frozen=True, eq=False)
class LogWeights:
    """Log densities of K particles for N data, split into per-datum and global parts.

    Attributes
    ----------
    log_p : torch.Tensor of shape (K, N)
        log p(x_n, z_n) over the local sites: observed sites and local latent sites.
    log_q : torch.Tensor of shape (K, N)
        log q(z_n | x) over the local latent sites.
    global_log_p : torch.Tensor of shape (K,)
        log p of the global (non-plate) latent and observed sites.
    global_log_q : torch.Tensor of shape (K,)
        log q of the global latent sites.
    samples : dict of str to torch.Tensor
        The particles: ``(K, N, ...)`` for local sites, ``(K, ...)`` for global ones.
    local_sites : tuple of str
        Latent sites that are one-per-datum.
    log_lik : torch.Tensor of shape (K, N) or None
        log p(x_n | z_n): the observed local sites alone (part of ``log_p``).
    log_q_score : torch.Tensor of shape (K, N) or None
        The part of ``log_q`` from local guide sites that cannot be reparameterised (discrete
        ones); gradient estimators add a score-function term for it. None when every site is
        reparameterised.
    path : {"vectorised", "per-particle"}
        How the weighting routine ran: one pass with the particles as an outer plate, or, for a
        story that does not broadcast over a leading particle dim, one pass per particle.
    coupled : bool
        Whether a latent site outside the data plate was drawn or scored (a global latent of
        the model, or a guide's auxiliary vector over all data): the weights then do not split
        over data, and only :attr:`joint` is a weight.
    """

    log_p: torch.Tensor
    log_q: torch.Tensor
    global_log_p: torch.Tensor
    global_log_q: torch.Tensor
    samples: dict[str, torch.Tensor]
    local_sites: tuple[str, ...]
    log_lik: torch.Tensor | None = None
    log_q_score: torch.Tensor | None = None
    path: str = "vectorised"
    coupled: bool = False

    @property
    def local(self) -> torch.Tensor:
        """log p(x_n, z_n) - log q(z_n | x_n), shape (K, N)."""
        return self.log_p - self.log_q

    @property
    def joint_log_p(self) -> torch.Tensor:
        """log p(x, z) of the whole data set, shape (K,)."""
        return self.global_log_p + self.log_p.sum(-1)

    @property
    def joint_log_q(self) -> torch.Tensor:
        """log q(z | x) of the whole data set, auxiliary sites included, shape (K,)."""
        return self.global_log_q + self.log_q.sum(-1)

    @property
    def joint(self) -> torch.Tensor:
        """The whole-data-set log weight log p(x, z) - log q(z | x), shape (K,)."""
        return self.joint_log_p - self.joint_log_q

    @property
    def has_global_latents(self) -> bool:
        """Whether some latent site is global (the model's, or a guide's auxiliary vector), so
        that per-datum weights do not factorise."""
        return self.coupled or any(k not in self.local_sites for k in self.samples)

    @property
    def num_particles(self) -> int:
        """K."""
        return self.log_p.shape[0]
