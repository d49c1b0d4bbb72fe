"""The process-wide registry of live handlers, and per-code dispatch plans.

Captures and breakpoints register :class:`Handler` objects. The dispatcher answers,
once per code object, which handlers can fire there and for which events
(:class:`CodePlan`), and it asks the tracing backend to instrument exactly those code
objects. Handlers whose scope names a callable are known up front; handlers whose
scope is a name or file pattern are matched lazily, the first time a code object runs.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import threading
import weakref
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Tuple

from . import events as ev
from .scope import Scope

log = logging.getLogger("nopdb_lab")

Callback = Callable[[FrameType, str, Any], None]
LineResolver = Callable[[CodeType], FrozenSet[int] | None]

_PACKAGE_ROOT = str(pathlib.Path(__file__).resolve().parent)


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


def weak_callback(method: Callback) -> Callback:
    """A handler callback that calls a bound method without keeping its object alive.

    A capture or breakpoint holds its handler, and a handler holding the object back
    would make a reference cycle: the capture and everything it captured (GPU tensors
    included) would then be freed only when the cyclic garbage collector runs. While
    the object is enabled its NoPdb keeps it alive; once it is disabled and the user
    drops it, it is freed at once.
    """
    ref = weakref.WeakMethod(method)  # type: ignore[arg-type]

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


class Dispatcher:
    """Holds the live handlers and computes :class:`CodePlan` objects for the backend."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._live: Dict[int, Handler] = {}
        self.exact: Dict[CodeType, CodePlan] = {}
        self.patterns: Tuple[Handler, ...] = ()
        self.plans: Dict[CodeType, CodePlan] = {}
        self.wants_unwind = False
        self._backend: Any = None
        #: bumped whenever the live set changes; backends holding per-frame plans
        #: compare it to drop plans that went stale
        self.generation = 0

    # -- registration -------------------------------------------------------------
    def adopt_current_thread(self) -> None:
        """Make sure the calling thread is traced (per-thread backends only)."""
        with self._lock:
            backend = self._backend
            if self._live and backend is not None and hasattr(backend, "adopt_thread"):
                backend.adopt_thread()

    def set_live(self, handler: Handler, live: bool) -> None:
        """Add or remove a handler from the live set and re-instrument."""
        with self._lock:
            was_live = id(handler) in self._live
            # before re-instrumenting: a removed handler fires no more after this line
            handler.live = live
            if live:
                self._live[id(handler)] = handler
            else:
                self._live.pop(id(handler), None)
            try:
                self._rebuild()
            except BaseException:
                # e.g. no sys.monitoring tool id is free: leave things as they were
                if was_live:
                    self._live[id(handler)] = handler
                else:
                    self._live.pop(id(handler), None)
                handler.live = was_live
                self._rebuild()
                raise

    def _rebuild(self) -> None:
        self.generation += 1
        by_code: Dict[CodeType, List[Handler]] = {}
        patterns: List[Handler] = []
        for h in self._live.values():
            code = h.scope.code
            if code is not None:
                if h.scope.match_code(code):
                    by_code.setdefault(code, []).append(h)
            else:
                patterns.append(h)
        self.patterns = tuple(patterns)
        exact = {}
        for code, hs in by_code.items():
            exact[code] = CodePlan(code, tuple(hs) + self._matching_patterns(code))
        self.exact = exact
        # Plans of pattern-matched code are recomputed lazily from now on.
        self.plans = dict(exact)
        self.wants_unwind = any(ev.UNWIND in h.events for h in self._live.values())
        backend = self.backend()
        if self._live:
            backend.apply(self)
        else:
            backend.release()

    def _matching_patterns(self, code: CodeType) -> Tuple[Handler, ...]:
        if not self.patterns or code.co_filename.startswith(_PACKAGE_ROOT):
            return EMPTY_PLAN_HANDLERS
        return tuple(h for h in self.patterns if h.scope.match_code(code))

    def classify(self, code: CodeType) -> CodePlan:
        """The plan for a code object seen for the first time (pattern scopes)."""
        with self._lock:
            plan = self.plans.get(code)
            if plan is None:
                plan = CodePlan(code, self._matching_patterns(code))
                self.plans[code] = plan
            return plan

    def backend(self) -> Any:
        if self._backend is None:
            from .backends import create_backend

            self._backend = create_backend()
        return self._backend

    @property
    def live_handlers(self) -> Tuple[Handler, ...]:
        return tuple(self._live.values())


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


DISPATCHER = Dispatcher()
