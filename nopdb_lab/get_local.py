"""Visualizer-style ``get_local``: record one local variable of decorated functions.

Compatible with ``visualizer.get_local`` (``@get_local('attn_map')``, ``activate()``,
``cache``, ``clear()``), without its bytecode rewriting: decorating only registers the
function, so ``activate()`` works whenever it is called, also after the model's module
was imported. While active, the variable's value when the function returns is appended
to ``get_local.cache[func.__qualname__]`` (tensors as numpy arrays, like Visualizer).
"""

from __future__ import annotations

import logging
import sys
from types import FrameType
from typing import Any, Callable, ClassVar, Dict, List, Tuple, TypeVar

from .tracing import events as ev
from .tracing.dispatch import DISPATCHER, Handler
from .tracing.scope import Scope

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("nopdb_lab")


def _to_cache_value(value: Any) -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.numpy()
    return value


class get_local:  # noqa: N801 - the name is Visualizer's public API
    """Decorator recording local variable ``varname`` of the decorated function."""

    cache: ClassVar[Dict[str, List[Any]]] = {}
    is_activate: ClassVar[bool] = False
    _registered: ClassVar[List[Tuple[str, Callable[..., Any], str]]] = []
    _handlers: ClassVar[List[Handler]] = []

    def __init__(self, varname: str) -> None:
        if not isinstance(varname, str) or not varname.isidentifier():
            raise ValueError(f"get_local needs a variable name, got {varname!r}")
        self.varname = varname

    def __call__(self, func: F) -> F:
        Scope(func)  # fails now, with a clear message, for non-Python callables
        key = func.__qualname__
        type(self).cache.setdefault(key, [])
        entry = (key, func, self.varname)
        type(self)._registered.append(entry)
        if type(self).is_activate:
            type(self)._watch(entry)
        return func

    @classmethod
    def _watch(cls, entry: Tuple[str, Callable[..., Any], str]) -> None:
        key, func, varname = entry

        def record(frame: FrameType, event: str, arg: Any) -> None:
            try:
                value = frame.f_locals[varname]
            except KeyError:
                log.warning("get_local: %s returned without a local named %r", key, varname)
                return
            cls.cache.setdefault(key, []).append(_to_cache_value(value))

        handler = Handler(scope=Scope(func), events=frozenset({ev.RETURN}), callback=record)
        cls._handlers.append(handler)
        DISPATCHER.set_live(handler, True)

    @classmethod
    def activate(cls) -> None:
        """Start recording for every decorated function, past and future."""
        if cls.is_activate:
            return
        cls.is_activate = True
        for entry in cls._registered:
            cls._watch(entry)

    @classmethod
    def deactivate(cls) -> None:
        """Stop recording (the cache is kept)."""
        cls.is_activate = False
        for handler in cls._handlers:
            DISPATCHER.set_live(handler, False)
        cls._handlers.clear()

    @classmethod
    def clear(cls) -> None:
        """Empty every cached list (keys stay, as in Visualizer)."""
        for key in cls.cache:
            cls.cache[key] = []
