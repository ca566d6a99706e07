"""Modules that can be called as their main function (``rfmap.erf(model, inputs)``)."""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["make_callable"]


class _CallableModule(types.ModuleType):
    """A module whose call runs its main function (named by ``__rfmap_call__``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__dict__["__rfmap_call__"])(*args, **kwargs)


def make_callable(module_name: str, function_name: str) -> None:
    """Let ``module(...)`` run ``module.<function_name>(...)``.

    The module stays a module (``import rfmap.design`` binds the module to the name
    ``rfmap.design`` whatever the package exports), so calling it works however the
    name was reached.
    """
    module = sys.modules[module_name]
    module.__dict__["__rfmap_call__"] = function_name
    module.__class__ = _CallableModule
