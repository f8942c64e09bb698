"""Modules that are also their main function (``dinokit.cluster(...)``, ``dinokit.search(...)``).

A function bound under the module's own name in ``dinokit`` would hide the module from
``import dinokit.cluster``; making the module object callable keeps both working.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Make ``sys.modules[module_name](...)`` call ``function(...)``."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

    module = sys.modules[module_name]
    _CallableModule.__doc__ = module.__doc__
    module.__class__ = _CallableModule
