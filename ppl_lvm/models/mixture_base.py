"""The finite mixtures' common part: weights π, a local label ``z`` and the Pyro story.

z_n ~ Categorical(π), x_n | z_n = k ~ p_k(x). Each family (:mod:`.gaussian_mixture`,
:mod:`.discrete_mixture`) supplies p_k. Besides the Pyro ``model``/``guide`` pair that every
engine accepts, a mixture declares the capabilities of :mod:`.capabilities`:

- :class:`ClosedFormMStep` (with :class:`EnumeratedLogJoint`): log p(x_n, z_n = k), shape
  (N, K), by plain matrix products, and the closed-form EM update, exact also when entries are
  missing (their expected sufficient statistics come from the current parameters);
- :class:`Initializable`: k-means (k-means++ seeds, then Lloyd's iterations), then one
  M-step from the hard assignments, as scikit-learn's ``init_params="kmeans"``;
- :class:`ValueValidation`: observed values in the family's support;
- :class:`ExactCompletion`: draws of the missing entries given the observed ones.

With ``bayesian=True`` the parameters have priors and no point value, so the first three exact
paths are switched off (:meth:`MixtureModel.capability_enabled`) and engines use the story.
"""

from __future__ import annotations

import abc
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch.distributions import transform_to

from ..core.checks import check_positive_int
from ._legacy import legacy_signature, renamed_attribute
from .base import DATA_PLATE, LatentVariableModel
from .capabilities import (
    ClosedFormMStep,
    EnumeratedLogJoint,
    ExactCompletion,
    Initializable,
    ValueValidation,
)

__all__ = ["MixtureModel", "kmeans_lloyd", "kmeans_plusplus"]


def _observed(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mask as x's dtype: 1 where observed, 0 where missing; ones when mask is None."""
    return torch.ones_like(x) if mask is None else mask.to(x.dtype)


def _keep_observed(values: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``values`` where missing, the data's own entries where observed."""
    return torch.where(mask, x, values)


def _fill_column_means(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Missing entries replaced by their column's observed mean (``x`` itself when no mask)."""
    if mask is None:
        return x
    m = mask.to(x.dtype)
    return torch.where(mask, x, (x * m).sum(0) / m.sum(0).clamp(min=1))


def kmeans_plusplus(
    x: torch.Tensor, mask: torch.Tensor | None, n_clusters: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): indices of ``n_clusters`` rows of ``x``.

    Each new centre is a datum drawn with probability proportional to its squared distance
    from the nearest centre so far. Missing entries are filled with their column's observed
    mean first, so distances are defined.

    Parameters
    ----------
    x : torch.Tensor of shape (N, D)
    mask : torch.Tensor of shape (N, D) or None
    n_clusters : int
    generator : torch.Generator

    Returns
    -------
    torch.Tensor of shape (n_clusters,), int64
    """
    n = x.shape[0]
    if n < n_clusters:
        raise ValueError(f"cannot seed {n_clusters} components from only {n} data points.")
    x = _fill_column_means(x, mask)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    closest = (x - x[first]).pow(2).sum(-1)  # (N,)
    for _ in range(1, n_clusters):
        total = closest.sum()
        if total <= 0:  # every point coincides with a centre: fall back to uniform picks
            probs = torch.ones_like(closest)
        else:
            probs = closest / total
        idx = int(torch.multinomial(probs, 1, generator=generator))
        chosen.append(idx)
        closest = torch.minimum(closest, (x - x[idx]).pow(2).sum(-1))
    return torch.tensor(chosen, dtype=torch.long)


def kmeans_lloyd(
    x: torch.Tensor, mask: torch.Tensor | None, centres: torch.Tensor, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means iterations from ``centres``: each datum's nearest centre, then each
    centre moved to the mean of its members, until no label changes or ``max_iter`` passes.

    Distances count each datum's observed entries only. A centre moves to the mean of the
    observed entries of its members, coordinate by coordinate, and keeps its value where none
    of them is observed. A centre left without members jumps to the datum farthest from its
    own centre, as scikit-learn's ``KMeans`` relocates empty clusters, so no component starts
    empty while there are enough distinct data. Deterministic: nothing is drawn.

    Parameters
    ----------
    x : torch.Tensor of shape (N, D), masked entries zero-filled
    mask : torch.Tensor of shape (N, D) or None
    centres : torch.Tensor of shape (K, D)
        The starting centres, e.g. the rows :func:`kmeans_plusplus` picks.
    max_iter : int
        Most assignment steps.

    Returns
    -------
    labels : torch.Tensor of shape (N,), int64
        Each datum's nearest final centre.
    centres : torch.Tensor of shape (K, D)
    """
    k = centres.shape[0]
    m = _observed(x, mask)
    mx = m * x
    sq = (mx * x).sum(-1, keepdim=True)  # (N, 1)

    def squared_distances(c: torch.Tensor) -> torch.Tensor:
        """Σ_d m_nd (x_nd - c_kd)² as matrix products, shape (N, K)."""
        return sq - 2 * mx @ c.T + m @ c.pow(2).T

    centres = centres.to(x.dtype).clone()
    labels = None
    for _ in range(max(1, int(max_iter))):
        dist2 = squared_distances(centres)
        new = dist2.argmin(-1)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        onehot = torch.nn.functional.one_hot(labels, k).to(x.dtype)  # (N, K)
        seen = onehot.T @ m  # (K, D): members observing each coordinate
        moved = torch.where(seen > 0, (onehot.T @ mx) / seen.clamp(min=1), centres)
        empty = onehot.sum(0) == 0
        if bool(empty.any()):
            own = dist2.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (N,)
            far = own.topk(int(empty.sum())).indices
            moved[empty] = torch.where(m[far] > 0, x[far], centres[labels[far]])
        centres = moved
    else:  # the cap was reached: label by the final centres
        labels = squared_distances(centres).argmin(-1)
    return labels, centres


def _select(param: torch.Tensor, z: torch.Tensor, event_dim: int) -> torch.Tensor:
    """Component ``z`` of ``param``: shape (*batch, K, *event) -> (*broadcast(batch, z), *event).

    Plain indexing when the parameters have no batch dims (point estimates, or globals drawn
    once); a gather when globals were drawn per particle, so each particle uses its own.
    """
    k_dim = param.dim() - event_dim - 1
    if k_dim == 0:
        return param[z]
    event = param.shape[k_dim + 1 :]
    batch = torch.broadcast_shapes(param.shape[:k_dim], z.shape)
    p = param.expand(batch + param.shape[k_dim:])
    idx = z.expand(batch).reshape(batch + (1,) * (1 + event_dim)).expand(batch + (1,) + event)
    return p.gather(len(batch), idx).squeeze(len(batch))


class MixtureModel(
    LatentVariableModel,
    ClosedFormMStep,
    Initializable,
    ValueValidation,
    ExactCompletion,
):
    """Base of the finite mixtures: weights π, a local label ``z`` and a component family.

    Parameters
    ----------
    dim : int
        D, the number of features per datum.
    num_components : int
        K, the number of components (keyword-only).
    bayesian : bool
        False (default): the global parameters are point estimates (module parameters). True:
        they get priors, and the guide is a mean-field posterior over them (``AutoNormal`` on the
        globals), so that posteriors over parameters exist for diagnostics.
    num_init : int
        Restarts of :meth:`initialize` that an engine's ``fit`` runs; it keeps the restart with
        the best exact likelihood.
    """

    static_structure = True
    #: The one local discrete site, summed out exactly by enumeration.
    label_site = "z"
    #: Most Lloyd's iterations that :meth:`initialize` runs after k-means++ seeding.
    kmeans_max_iter = 100

    #: Deprecated spellings (FutureWarning): ``n_components``, ``n_init``.
    n_components = renamed_attribute("n_components", "num_components")
    n_init = renamed_attribute("n_init", "num_init")

    @legacy_signature(("n_components", "dim"))
    def __init__(self, dim: int, *, num_components: int, bayesian: bool = False, num_init: int = 1):
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.num_components = check_positive_int("num_components", num_components)
        self.num_init = check_positive_int("num_init", num_init)
        self.bayesian = bool(bayesian)
        self.weight_logits = PyroParam(torch.zeros(self.num_components))
        self._auto_guide = None

    def capability_enabled(self, capability: type) -> bool:
        """The exact paths need point estimates: off for ``bayesian=True``, whose parameters
        have a posterior, so engines then run the Pyro story."""
        if self.bayesian and capability in (EnumeratedLogJoint, ClosedFormMStep, ExactCompletion):
            return False
        return super().capability_enabled(capability)

    # -- what subclasses provide ---------------------------------------------------------------
    def _global_priors(self) -> dict[str, dist.Distribution]:
        """Priors of the component parameters (bayesian=True); event shapes cover each array."""
        raise NotImplementedError

    def _point_globals(self) -> dict[str, torch.Tensor]:
        """The component parameters as point estimates."""
        raise NotImplementedError

    def _likelihood(
        self, params: dict[str, torch.Tensor], z: torch.Tensor, x: torch.Tensor, mask
    ) -> dist.Distribution:
        """p(x_n | z_n) as a distribution with event shape (D,) and batch shape of z."""
        raise NotImplementedError

    @abc.abstractmethod
    def component_log_prob(
        self, x: torch.Tensor, mask: torch.Tensor | None, stats: Any = None
    ) -> torch.Tensor:
        """log p(x_n | z_n = k) over the observed entries, shape (N, K). Direct tensor path.

        ``stats`` is what :meth:`data_statistics` returned for the same ``x`` and ``mask``.
        """

    def data_statistics(self, x: torch.Tensor, mask: torch.Tensor | None) -> Any:
        """Features of the data that every EM iteration reuses; computed once per fit."""
        return None

    def validate_values(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Check that observed entries lie in the family's support (any real, by default)."""

    # -- the Pyro story ------------------------------------------------------------------------
    @property
    def weights(self) -> torch.Tensor:
        """Mixture weights π, shape (K,)."""
        return torch.softmax(self.weight_logits, -1)

    def _globals(self) -> dict[str, torch.Tensor]:
        if not self.bayesian:
            return {"weights": self.weights, **self._point_globals()}
        k = self.num_components
        conc = torch.ones(k, dtype=self.weight_logits.dtype, device=self.weight_logits.device)
        out = {"weights": pyro.sample("weights", dist.Dirichlet(conc))}
        for name, prior in self._global_priors().items():
            out[name] = pyro.sample(name, prior)
        return out

    def model(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """z_n ~ Categorical(π); x_n | z_n ~ component z_n, over the observed entries.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D)
        mask : torch.Tensor of shape (N, D), bool, optional
        """
        params = self._globals()
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            z = pyro.sample(
                self.label_site,
                dist.Categorical(params["weights"]),
                infer={"enumerate": "parallel"},
            )
            pyro.sample("x", self._likelihood(params, z, x, mask), obs=x)

    def guide(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Point estimates: nothing to sample, z is summed out. Bayesian: q over the globals."""
        if not self.bayesian:
            return
        if self._auto_guide is None:
            from pyro.infer.autoguide import AutoNormal

            hide = {self.label_site}
            globals_only = pyro.poutine.block(self.model, hide_fn=lambda m: m["name"] in hide)
            self._auto_guide = AutoNormal(globals_only, init_scale=0.05)
        self._auto_guide(x, mask)

    # -- direct tensor path --------------------------------------------------------------------
    def enumerate_log_joint(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, stats: Any = None
    ) -> torch.Tensor:
        """log p(x_n, z_n = k) = log π_k + log p(x_n | z_n = k), shape (N, K).

        Only for point estimates (``bayesian=False``); ``x`` (N, D) with masked entries
        zero-filled; ``stats`` optionally from :meth:`data_statistics`.
        """
        log_w = torch.log_softmax(self.weight_logits, -1)
        return log_w + self.component_log_prob(x, mask, stats)

    def _posterior_draws(
        self, x: torch.Tensor, mask: torch.Tensor, num_samples: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z_n | x_n,obs), shape (N, K), and S labels drawn from it, shape (S, N)."""
        post = torch.softmax(self.enumerate_log_joint(x, mask), -1)
        z = torch.multinomial(post, num_samples, replacement=True).T
        return post, z

    def _assign(self, name: str, value: torch.Tensor) -> None:
        """Write a constrained value into a PyroParam's unconstrained storage, in place."""
        constraint = self._pyro_params[name][0]
        unconstrained = getattr(self, name + "_unconstrained")
        with torch.no_grad():
            unconstrained.copy_(transform_to(constraint).inv(value))

    def _set_weights(self, weights: torch.Tensor) -> None:
        with torch.no_grad():
            self.weight_logits_unconstrained.copy_(weights.clamp(min=1e-300).log())

    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None, seed: int) -> None:
        """k-means, then one M-step from its hard assignments (scikit-learn's ``"kmeans"``).

        k-means++ seeds (:func:`kmeans_plusplus`), Lloyd's iterations to convergence
        (:func:`kmeans_lloyd`, at most :attr:`kmeans_max_iter`) on the family's features
        (one-hot codes for a categorical mixture), the labels as responsibilities, then
        :meth:`m_step`. With missing entries, a first M-step on the data completed with the
        cluster centres sets the parameters that the exact M-step then uses for the missing
        entries' expectations, so the start depends on ``x``, ``mask`` and ``seed`` only.
        Deterministic per seed: the draws use their own generator, never the global one.

        Parameters
        ----------
        x : torch.Tensor of shape (N, D), masked entries zero-filled
        mask : torch.Tensor of shape (N, D) or None
        seed : int
        """
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        xf = self._features(x)
        mf = None if mask is None else self._feature_mask(mask)
        # the seeding draws on the CPU generator; Lloyd's draws nothing and runs where x is
        seeds = kmeans_plusplus(xf.cpu(), None if mf is None else mf.cpu(), self.num_components, g)
        # the seeds' missing entries start at their column's observed mean, as in the seeding
        start = _fill_column_means(xf, mf)[seeds.to(xf.device)]
        labels, centres = kmeans_lloyd(xf, mf, start, self.kmeans_max_iter)
        resp = torch.nn.functional.one_hot(labels, self.num_components).to(x.dtype)
        # a little mass everywhere keeps every component alive for the first M-step
        resp = resp + 1e-3
        resp = resp / resp.sum(-1, keepdim=True)
        if mask is not None:
            filled = self._from_features(centres[labels]).to(x.dtype)
            self.m_step(_keep_observed(filled, x, mask), None, resp)
        self.m_step(x, mask, resp)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _feature_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask

    def _from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Data values nearest to points of the feature space (the inverse of ``_features``)."""
        return features

    @property
    def name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_components={self.num_components}"
            + (", bayesian=True" if self.bayesian else "")
            + (f", num_init={self.num_init}" if self.num_init != 1 else "")
        )
