"""Per-code dispatch plans and running handlers: what the backends call into.

Kept apart from :mod:`.dispatch` so that the backends import this module and the
dispatcher imports the backends, without an import cycle: the dispatcher passes
itself to :meth:`Backend.apply` as a :class:`PlanSource`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Protocol, Tuple

from . import events as ev
from .scope import Scope

log = logging.getLogger("nopdb_lab")

Callback = Callable[[FrameType, str, Any], None]
#: called with a frame of a watched code object that returned or unwound
ExitCallback = Callable[[FrameType], None]
LineResolver = Callable[[CodeType], FrozenSet[int] | None]


@dataclass(eq=False)
class Handler:
    """One callback, the events it wants and the scope it applies to.

    ``lines`` resolves, per code object, the line numbers whose LINE events the handler
    wants (``None``: every line).
    """

    scope: Scope
    events: FrozenSet[str]
    callback: Callback
    lines: LineResolver | None = None
    _line_cache: Dict[CodeType, FrozenSet[int] | None] = field(default_factory=dict)
    #: set by the dispatcher: a handler removed while a frame it planned for still runs
    #: is skipped at once (backends keep per-frame plans)
    live: bool = False

    def lines_for(self, code: CodeType) -> FrozenSet[int] | None:
        if self.lines is None:
            return None
        try:
            return self._line_cache[code]
        except KeyError:
            resolved = self._line_cache[code] = self.lines(code)
            return resolved


def code_is_generator(code: CodeType) -> bool:
    """Whether ``code`` is a generator, coroutine or async generator body."""
    return bool(code.co_flags & (0x20 | 0x80 | 0x200))


def weak_callback(method: Callback) -> Callback:
    """A handler callback that calls a bound method without keeping its object alive.

    A capture or breakpoint holds its handler, and a handler holding the object back
    would make a reference cycle: the capture and everything it captured (GPU tensors
    included) would then be freed only when the cyclic garbage collector runs. While
    the object is enabled its NoPdb keeps it alive; once it is disabled and the user
    drops it, it is freed at once.
    """
    ref = weakref.WeakMethod(method)

    def call(frame: FrameType, event: str, arg: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(frame, event, arg)

    return call


class CodePlan:
    """What can happen in one code object: its handlers and the union of their needs."""

    __slots__ = ("handlers", "events", "lines", "handler_lines")

    def __init__(self, code: CodeType, handlers: Tuple[Handler, ...]) -> None:
        handler_lines: List[FrozenSet[int] | None] = []
        kept: List[Handler] = []
        for h in handlers:
            lines = h.lines_for(code) if ev.LINE in h.events else None
            if ev.LINE in h.events and lines is not None and not lines and h.events <= {ev.LINE}:
                continue  # a line breakpoint whose line is not in this code object
            kept.append(h)
            handler_lines.append(lines)
        self.handlers: Tuple[Handler, ...] = tuple(kept)
        self.handler_lines = tuple(handler_lines)
        self.events: FrozenSet[str] = frozenset().union(*(h.events for h in kept))
        if ev.LINE in self.events:
            union: set[int] = set()
            every = False
            for h, lines in zip(kept, handler_lines, strict=True):
                if ev.LINE in h.events:
                    if lines is None:
                        every = True
                    else:
                        union |= lines
            self.lines: FrozenSet[int] | None = None if every else frozenset(union)
        else:
            self.lines = frozenset()


EMPTY_PLAN_HANDLERS: Tuple[Handler, ...] = ()

_busy = threading.local()


def is_busy() -> bool:
    """True while this thread runs a handler (tracing is paused for it)."""
    return getattr(_busy, "depth", 0) > 0


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Pause tracing in this thread, for nopdb_lab's own work (serving the front end).

    Without it, a breakpoint in a library that the kernel itself uses (``json.dumps``
    sends every message) would fire while its own hit is being reported.
    """
    _busy.depth = getattr(_busy, "depth", 0) + 1
    try:
        yield
    finally:
        _busy.depth -= 1


class PlanSource(Protocol):
    """What a backend reads from the dispatcher: the plans of the code to instrument."""

    exact: Dict[CodeType, CodePlan]
    patterns: Tuple[Handler, ...]
    plans: Dict[CodeType, CodePlan]
    wants_unwind: bool
    generation: int
    #: code objects whose frames' exits (a return, or an exception leaving) are reported
    exit_watchers: Dict[CodeType, Tuple[ExitCallback, ...]]

    def classify(self, code: CodeType) -> CodePlan: ...


class Backend(Protocol):
    """A tracing backend (``sys.monitoring`` or ``sys.settrace``).

    ``apply`` instruments exactly the code the dispatcher's plans name; ``release``
    stops tracing; ``watch_exits`` starts or stops reporting the exits of one code
    object's frames (to the dispatcher's ``exit_watchers``) while tracing. Per-thread
    backends also have ``adopt_thread``.
    """

    def apply(self, dispatcher: PlanSource) -> None: ...

    def release(self) -> None: ...

    def watch_exits(self, code: CodeType, on: bool) -> None: ...


def run_handlers(frame: FrameType, event: str, arg: Any, plan: CodePlan) -> None:
    """Call every handler of ``plan`` that wants ``event`` in ``frame``.

    A handler that raises is logged and skipped: the traced program never sees it.
    """
    _busy.depth = getattr(_busy, "depth", 0) + 1
    try:
        lineno = frame.f_lineno if event == ev.LINE else 0
        for handler, lines in zip(plan.handlers, plan.handler_lines, strict=True):
            if event not in handler.events or not handler.live:
                continue
            if event == ev.LINE and lines is not None and lineno not in lines:
                continue
            try:
                if handler.scope.match_instance(frame):
                    handler.callback(frame, event, arg)
            except Exception:  # never break the traced program
                log.exception("nopdb_lab: a %s handler for %s failed", event, handler.scope)
    finally:
        _busy.depth -= 1


def notify_exit(frame: FrameType, watchers: Tuple[ExitCallback, ...]) -> None:
    """Tell ``watchers`` that ``frame`` returned or unwound; errors are logged, not raised."""
    for watcher in watchers:
        try:
            watcher(frame)
        except Exception:  # never break the traced program
            log.exception("nopdb_lab: an exit watcher for %s failed", frame.f_code.co_name)
