"""What every record kind shares, and how a request's path reaches a value inside one.

Kept at the package top, below the analyses and the Jupyter layer, so that both can use
it without importing each other.
"""

from __future__ import annotations

from typing import Any, List, Tuple


class ProtocolError(Exception):
    """A request the kernel cannot serve; sent back as a structured error."""


def resolve(record: Any, path: List[Any]) -> Tuple[Any, str]:
    """The value at ``path`` (e.g. ``["locals", "attn", 0]``) and Python that reaches it."""
    parts = ("args", "locals", "return_value", "yields", "evals")
    if not path or path[0] not in parts or not hasattr(record, path[0]):
        raise ProtocolError(
            f"path must start with one of {', '.join(parts)} that capture #{record.id} has: {path}"
        )
    value = getattr(record, path[0])
    expression = f"nopdb_lab.store[{record.id}].{path[0]}"
    for step in path[1:]:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProtocolError(f"no item {step!r} at {expression}: {exc}") from None
        expression += f"[{step!r}]"
    return value, expression
