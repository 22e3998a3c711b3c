"""Declared model capabilities: the optional fast paths and extras an engine may use.

A model declares a capability by subclassing its mixin and implementing its methods; engines ask
:func:`has` and never probe attributes. Every capability is an optimisation or an extra: the
Pyro model/guide pair stays the one correct path, and an engine without the capability runs it.

A model may switch a declared capability off per instance by overriding
:meth:`LatentVariableModel.capability_enabled` (a mixture with priors on its parameters,
``bayesian=True``, has no closed-form M-step even though its class declares one).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch

if TYPE_CHECKING:
    import pyro.distributions as dist

    from ..core.logweights import LogWeights

__all__ = [
    "AnalyticKL",
    "Capability",
    "ClosedFormMStep",
    "CompletionDraws",
    "DetachableGuide",
    "EnumeratedLogJoint",
    "ExactCompletion",
    "ExactEvidence",
    "Generative",
    "Initializable",
    "LatentLogJoint",
    "MeanFieldTerms",
    "ModelSample",
    "Observation",
    "OwnCompletion",
    "ParticleLogWeights",
    "ValueValidation",
    "has",
]


class Capability(abc.ABC):  # noqa: B024 (a marker base: the abstract methods live in subclasses)
    """Marker base class of every capability mixin."""


def has(model: Any, capability: type[Capability]) -> bool:
    """Whether ``model`` declares ``capability`` and has it switched on.

    Parameters
    ----------
    model : LatentVariableModel
    capability : type
        One of the mixins of this module.
    """
    return isinstance(model, capability) and bool(model.capability_enabled(capability))


class ParticleLogWeights(Capability):
    """A direct tensor path for the weighting routine: the same numbers as the traced pass,
    without Pyro's per-call overhead."""

    @abc.abstractmethod
    def particle_log_weights(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        num_particles: int,
        z: torch.Tensor | None = None,
    ) -> LogWeights:
        """log p(x_n, z) and log q(z | x_n) for K guide particles.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, or None
        num_particles : int
            K.
        z : torch.Tensor of shape (K, N, ...), optional
            Score these particles instead of drawing new ones.

        Returns
        -------
        LogWeights
            ``log_p``, ``log_q``, ``log_lik`` of shape (K, N) and the particles.
        """


class DetachableGuide(ParticleLogWeights):
    """A reparameterised guide whose log q can be evaluated at detached parameters, which the
    doubly reparameterised (DReG) gradient needs:
    ``particle_log_weights(..., stop_q_grad=True)``."""

    @abc.abstractmethod
    def particle_log_weights(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        num_particles: int,
        z: torch.Tensor | None = None,
        stop_q_grad: bool = False,
    ) -> LogWeights:
        """As :meth:`ParticleLogWeights.particle_log_weights`; with ``stop_q_grad`` the guide's
        outputs are detached inside log q, so its gradient flows only through z."""


class AnalyticKL(Capability):
    """KL(q(z | x_n) ‖ p(z)) in closed form."""

    @abc.abstractmethod
    def analytic_kl(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The KL per datum, shape (N,)."""


class MeanFieldTerms(AnalyticKL):
    """The two terms of the mean-field ELBO from one encoder pass, for the leanest SVI step."""

    @abc.abstractmethod
    def meanfield_terms(
        self, x: torch.Tensor, mask: torch.Tensor | None, num_particles: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """E_q log p(x | z) per particle and the closed-form KL.

        Returns
        -------
        log_lik : torch.Tensor of shape (K, N)
        kl : torch.Tensor of shape (N,)
        """


class ExactEvidence(Capability):
    """log p(x_n) in closed form or by an exact sum of the model's own."""

    @abc.abstractmethod
    def exact_log_evidence(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x_n) over the observed entries, shape (N,)."""


class EnumeratedLogJoint(Capability):
    """log p(x_n, z_n = s) for every state s of the model's one discrete local latent, as a
    tensor: the direct path of exact enumeration."""

    #: Name of the enumerated latent site.
    label_site: ClassVar[str] = "z"

    @abc.abstractmethod
    def enumerate_log_joint(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, stats: Any = None
    ) -> torch.Tensor:
        """log p(x_n, z_n = s), shape (N, S).

        ``stats`` comes from :meth:`ClosedFormMStep.data_statistics`, or is None.
        """


class ClosedFormMStep(EnumeratedLogJoint):
    """EM's M-step in closed form, given responsibilities."""

    #: Restarts of EM from different initialisations; the best is kept.
    num_init: int = 1

    @abc.abstractmethod
    def data_statistics(self, x: torch.Tensor, mask: torch.Tensor | None) -> Any:
        """Statistics of the data that every E- and M-step reuses (or None)."""

    @abc.abstractmethod
    def m_step(
        self, x: torch.Tensor, mask: torch.Tensor | None, resp: torch.Tensor, stats: Any = None
    ) -> None:
        """Set the parameters that maximise the expected log joint, ``resp`` (N, S)."""


class Initializable(Capability):
    """A data-dependent start for fitting (k-means for a mixture, the data mean as a bias)."""

    @abc.abstractmethod
    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None, seed: int) -> None:
        """Set a starting point from ``x`` (N, D), masked entries zero-filled."""


class ExactCompletion(Capability):
    """Draws from p(x_missing | x_observed) in closed form."""

    @abc.abstractmethod
    def complete_exact(
        self, x: torch.Tensor, mask: torch.Tensor, num_samples: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Completions of the unobserved entries.

        Returns
        -------
        samples : torch.Tensor of shape (S, N, D)
            Draws of every datum, observed entries kept.
        sample_means : torch.Tensor of shape (S, N, D)
            E[x_m | z_s, x_o] for the latent value behind each draw.
        mean : torch.Tensor of shape (N, D)
            The single imputation E[x_m | x_o].
        """


class CompletionDraws(NamedTuple):
    """What :meth:`OwnCompletion.complete_own` returns; unpacks as a 5-tuple."""

    #: torch.Tensor of shape (S, N, D): draws from p(x_m | x_o), observed entries kept.
    samples: torch.Tensor
    #: torch.Tensor of shape (S, N, D): a smooth picture of each draw (the model says which).
    sample_means: torch.Tensor
    #: torch.Tensor of shape (N, D): the single imputation E[x_m | x_o].
    mean: torch.Tensor
    #: tuple of str: per datum, "exact" or "importance resampling".
    method: tuple[str, ...]
    #: torch.Tensor of shape (N,) or None: ESS of the importance weights, NaN where a datum
    #: was completed exactly; None when every datum was.
    ess: torch.Tensor | None


class OwnCompletion(Capability):
    """Completions by the model's own procedure, exact for the data it can complete exactly and
    by importance resampling for the rest, decided per datum (an autoregressive model whose
    latent variables are the missing pixels themselves, so that neither ``ExactCompletion`` nor
    resampling a latent z through ``Observation`` describes it)."""

    @abc.abstractmethod
    def complete_own(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        num_samples: int,
        *,
        num_particles: int = 1000,
        seed: int | None = None,
    ) -> CompletionDraws:
        """S completions of each datum of ``x`` (N, D) where ``mask`` (N, D) is False; K =
        ``num_particles`` proposals per datum completed by importance resampling; ``seed=None``
        draws from torch's global generator."""


class Observation(Capability):
    """p(x | z) as a distribution, which completion by importance resampling draws from."""

    @abc.abstractmethod
    def observation(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z): batch shape ``z.shape[:-1]``, event shape (D,)."""


class LatentLogJoint(Capability):
    """log p(x_observed, z) at any real latent vector, and an amortised Gaussian start: what
    test-time inference on p(z | x_o) needs (per-datum refined proposals, Metropolis-within-
    Gibbs and HMC on z; :mod:`ppl_lvm.inference.testtime`)."""

    @abc.abstractmethod
    def log_joint(
        self, z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """log p(z) + log p(x_o | z) over the observed entries: z (..., N, L) -> (..., N);
        differentiable in z."""

    @abc.abstractmethod
    def guide_distribution(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dist.Distribution:
        """The amortised q(z_n | x_n) to start from: batch shape (N,), event shape (L,)."""


class ValueValidation(Capability):
    """A check that data values lie in the likelihood's support (0/1 pixels, category codes)."""

    @abc.abstractmethod
    def validate_values(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` naming the offending value and the fix."""


class ModelSample(NamedTuple):
    """Draws from a model: data and the latent values behind them."""

    #: torch.Tensor of shape (S, D): the data (or the decoder's mean, where asked for).
    x: torch.Tensor
    #: torch.Tensor of shape (S, ...): the latent value behind each draw.
    z: torch.Tensor


class Generative(Capability):
    """Draws of (x, z) from the model."""

    @abc.abstractmethod
    def sample(self, num_samples: int, *, seed: int | None = None) -> ModelSample:
        """S draws z ~ p(z), x ~ p(x | z), as :class:`ModelSample`."""
