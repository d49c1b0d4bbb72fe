"""Finding the source of anything importable by its dotted name.

``torch.nn.functional``, ``transformers.models.bert.modeling_bert.BertSelfAttention``,
``timm.models.vision_transformer.Attention.forward`` or a name from the notebook's
namespace (``model.encoder``, ``Attention.forward``) resolve to the file the kernel runs
and the line where the definition starts, so the front end can show it read-only and set
breakpoints in it.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
from types import ModuleType
from typing import Any, Dict

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class SourceLookupError(LookupError):
    """The name cannot be resolved to Python source; the message says why."""


def resolve_name(name: str, namespace: Dict[str, Any]) -> Any:
    """The object ``name`` names: from ``namespace``, the builtins, else by importing it."""
    name = name.strip()
    if not _DOTTED.fullmatch(name):
        raise SourceLookupError(f"{name!r} is not a dotted name like torch.nn.functional")
    parts = name.split(".")
    if parts[0] in namespace:
        obj, done = namespace[parts[0]], 1
    elif hasattr(builtins, parts[0]):
        obj, done = getattr(builtins, parts[0]), 1
    else:
        obj, done = _import_longest_prefix(parts)
    for index in range(done, len(parts)):
        try:
            obj = getattr(obj, parts[index])
        except AttributeError:
            owner = ".".join(parts[:index])
            raise SourceLookupError(f"{owner} has no attribute {parts[index]!r}") from None
    return obj


def _import_longest_prefix(parts: list[str]) -> tuple[ModuleType, int]:
    for end in range(len(parts), 0, -1):
        module_name = ".".join(parts[:end])
        try:
            return importlib.import_module(module_name), end
        except ModuleNotFoundError as exc:
            # only "this prefix does not exist" means: try a shorter one
            if exc.name is not None and module_name.startswith(exc.name):
                continue
            raise SourceLookupError(f"importing {module_name} failed: {exc}") from None
        except Exception as exc:
            raise SourceLookupError(
                f"importing {module_name} failed: {type(exc).__name__}: {exc}"
            ) from None
    raise SourceLookupError(f"no module named {parts[0]!r} in this kernel")


def _definition(obj: Any) -> Any:
    if isinstance(obj, property) and obj.fget is not None:
        obj = obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if inspect.ismethod(obj):
        obj = obj.__func__
    if callable(obj) and not inspect.isclass(obj):
        obj = inspect.unwrap(obj)
    if not (
        inspect.ismodule(obj)
        or inspect.isclass(obj)
        or inspect.isfunction(obj)
        or inspect.iscode(obj)
        or inspect.isbuiltin(obj)
        or inspect.isroutine(obj)
    ):
        obj = type(obj)  # an instance (a model, a layer): show its class
    return obj


def locate(name: str, namespace: Dict[str, Any]) -> Dict[str, Any]:
    """``{"name", "file", "line", "kind"}`` for the definition ``name`` names.

    Raises:
        SourceLookupError: a malformed name, a failed import, a missing attribute, or an
            object without Python source (a builtin or C extension).
    """
    target = _definition(resolve_name(name, namespace))
    kind = "module" if inspect.ismodule(target) else type(target).__name__
    try:
        file = inspect.getsourcefile(target)
    except TypeError:
        file = None
    if file is None:
        raise SourceLookupError(
            f"{name.strip()} ({kind}) has no Python source: it is built in or compiled"
        )
    line = 1
    if not inspect.ismodule(target):
        try:
            line = inspect.getsourcelines(target)[1]
        except (OSError, TypeError) as exc:
            raise SourceLookupError(f"cannot read the source of {name.strip()}: {exc}") from None
    return {"name": name.strip(), "file": file, "line": max(line, 1), "kind": kind}
