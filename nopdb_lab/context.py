"""The enable/disable/context-manager behaviour shared by captures and breakpoints."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from .tracing.dispatch import Handler

T = TypeVar("T", bound="NoPdbContextManager")


class Handle:
    """Returned by :meth:`NoPdb.add_callback`; pass it to :meth:`NoPdb.remove_callback`."""


class HandlerHost(Protocol):
    """What a capture or breakpoint needs of its :class:`~nopdb_lab.NoPdb`.

    A protocol rather than an import of ``nopdb``: ``nopdb`` builds captures and
    breakpoints, so importing it back from here would make an import cycle.
    """

    @property
    def started(self) -> bool: ...

    def stop(self) -> None: ...

    def remove_callback(self, handle: Handle) -> None: ...

    def _ensure_started(self) -> None: ...

    def _add_handler(self, handler: Handler, owner: Any = None) -> Handle: ...


class NoPdbContextManager:
    """Registers one handler with a :class:`NoPdb`; ``with`` starts tracing if needed.

    As in NoPdb, the object is enabled on creation; it fires while its NoPdb instance is
    started. Used as a context manager it starts that instance for the block (if it was
    not started) and disables itself on exit, also when the block raises.
    """

    def __init__(self, nopdb: HandlerHost, handler: Handler) -> None:
        self._nopdb = nopdb
        self._handler = handler
        self._was_started = False
        self._entered = False
        self._handle: "Handle" | None = None
        self.enable()

    def enable(self) -> None:
        """(Re-)register this object's handler."""
        if self._handle is None:
            self._handle = self._nopdb._add_handler(self._handler, owner=self)

    def disable(self) -> None:
        """Unregister; nothing more is recorded until :meth:`enable`."""
        if self._handle is not None:
            self._nopdb.remove_callback(self._handle)
            self._handle = None

    @property
    def enabled(self) -> bool:
        return self._handle is not None

    def __enter__(self: T) -> T:
        if self._entered:
            # a nested ``with`` on the same object would overwrite what the outer one
            # must restore on exit, and leave its NoPdb started (and tracing) forever
            raise RuntimeError(
                f"{type(self).__name__} is already in use by a `with` block; "
                "create a new capture or breakpoint for the inner block"
            )
        self._was_started = self._nopdb.started
        try:
            self._nopdb._ensure_started()
        except BaseException:
            self.disable()  # e.g. no tracing backend available: leave nothing behind
            raise
        self.enable()
        self._entered = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._entered = False
        try:
            self.disable()
        finally:
            if self._nopdb.started and not self._was_started:
                self._nopdb.stop()
