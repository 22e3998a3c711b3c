"""Type aliases shared across ppl-lvm's public signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import torch

#: A Pyro stochastic function over ``(x, mask=None)``: a model or a guide.
StoryFn = Callable[..., Any]

#: Anything an engine accepts as a generative story: a built-in model, a
#: ``(model_fn, guide_fn)`` pair, or a bare model function.
ModelLike = Union["LatentVariableModel", tuple[StoryFn, StoryFn | None], StoryFn]  # noqa: F821

#: A data matrix, float ``[N, D]``.
Tensor = torch.Tensor
