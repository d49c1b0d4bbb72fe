"""What every record kind shares, and how a request's path reaches a value inside one.

Kept at the package top, below the analyses and the Jupyter layer, so that both can use
it without importing each other.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Protocol, Tuple

#: ``(value, expression) -> summary``; ``(mapping, expression) -> {name: summary}``
Summarize = Callable[[Any, str], Dict[str, Any]]
RawStack = List[Tuple[str, int, str]]


class Record(Protocol):
    """What every record kind in the capture store has (call, hit, attention, stack).

    The store, the kernel service and the analyses use only these members, so a new
    kind is a class that implements them; none of them branches on ``kind``.
    """

    @property
    def id(self) -> Any: ...

    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> Any: ...

    @property
    def qualname(self) -> Any: ...

    @property
    def file(self) -> Any: ...

    @property
    def line(self) -> Any: ...

    @property
    def time(self) -> Any: ...

    @property
    def thread(self) -> Any: ...

    @property
    def locals(self) -> Dict[str, Any] | None: ...

    @property
    def raw_stack(self) -> RawStack: ...

    def value_parts(self) -> Tuple[str, ...]:
        """The attributes a request's path may start with (``["locals", "x"]``)."""
        ...

    def held_values(self) -> Iterable[Any]:
        """The values the record keeps alive (what the store's byte budget counts)."""
        ...

    def brief_fields(self) -> Dict[str, Any]:
        """This kind's own fields in a capture-list row (besides id, name, time, ...)."""
        ...

    def describe(self, root: str, one: Summarize, many: Summarize) -> Dict[str, Any]:
        """This kind's own fields in the detail view; ``root`` reaches the record."""
        ...

    def origin(self) -> Any:
        """The breakpoint object that made this record, else None."""
        ...


class EventRecord:
    """Shared by the records of one moment (hits, attention, stacks): ``time``, ``line``,
    ``errors`` and their list/detail fields. Subclasses set the attributes."""

    id: int
    time: float
    line: int
    errors: List[Any]

    def value_parts(self) -> Tuple[str, ...]:
        return ("locals",)

    def held_values(self) -> Iterable[Any]:
        return list((getattr(self, "locals", None) or {}).values())

    def brief_fields(self) -> Dict[str, Any]:
        return {"errors": len(self.errors)}

    def describe(self, root: str, one: Summarize, many: Summarize) -> Dict[str, Any]:
        return {"errors": [{"action": e.action, "message": e.message} for e in self.errors]}

    def origin(self) -> Any:
        return None


class ProtocolError(Exception):
    """A request the kernel cannot serve; sent back as a structured error."""


def resolve(record: Record, path: List[Any]) -> Tuple[Any, str]:
    """The value at ``path`` (e.g. ``["locals", "attn", 0]``) and Python that reaches it."""
    parts = record.value_parts()
    if not path or path[0] not in parts:
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
