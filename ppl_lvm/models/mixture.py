"""Shallow latent-variable models: finite mixtures with one discrete label per datum.

z_n ~ Categorical(π), x_n | z_n = k ~ p_k(x): Gaussian (diag, full or spherical covariance),
Bernoulli (binary pixels) or Categorical (DNA letters). The posterior p(z_n | x_n) clusters the
data. The code lives in :mod:`.mixture_base`, :mod:`.gaussian_mixture` and
:mod:`.discrete_mixture`; this module gathers the public names.
"""

from .discrete_mixture import BernoulliMixture, CategoricalMixture
from .gaussian_mixture import GaussianMixture
from .mixture_base import MixtureModel, kmeans_plusplus

__all__ = [
    "BernoulliMixture",
    "CategoricalMixture",
    "GaussianMixture",
    "MixtureModel",
    "kmeans_plusplus",
]
