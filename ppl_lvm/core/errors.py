"""The exceptions every layer raises; each message names the problem and the fix."""

from __future__ import annotations

__all__ = ["ModelGuideMismatchError", "UnsupportedModelError"]


class UnsupportedModelError(ValueError):
    """An engine was given a story it cannot handle. The message names the site and the engine
    to use instead."""


class ModelGuideMismatchError(ValueError):
    """A model and guide disagree on their latent sites, supports or shapes."""
