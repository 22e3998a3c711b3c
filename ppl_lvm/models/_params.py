"""Where a model's ``pyro.param`` statements find their values: Pyro's parameter mode and the
global store outside a model's own scope (:meth:`LatentVariableModel.scoped`)."""

from __future__ import annotations

import contextlib

import pyro
import torch
from pyro.poutine.messenger import Messenger
from torch.distributions import transform_to

__all__ = ["OuterParams", "params_mode"]


def params_mode(local: bool) -> contextlib.AbstractContextManager:
    """``pyro.settings.context(module_local_params=local)``, or nothing when that is already the
    mode (a setting changed and restored on every call of a story adds up over a fit)."""
    if pyro.settings.get("module_local_params") == local:
        return contextlib.nullcontext()
    return pyro.settings.context(module_local_params=local)


class OuterParams(Messenger):
    """Starts a ``pyro.param`` that the scoped store lacks from a copy of its value in the store
    outside the scope (``outer``: that store's state), as Pyro's global store would give it."""

    def __init__(self, outer: dict) -> None:
        super().__init__()
        self.outer = outer

    def _pyro_param(self, msg: dict) -> None:
        name, store = msg["name"], pyro.get_param_store()
        if name in store or name not in self.outer["params"]:
            return
        constraint = self.outer["constraints"][name]
        with torch.no_grad():
            value = transform_to(constraint)(self.outer["params"][name]).clone()
        store.setdefault(name, value, constraint)
