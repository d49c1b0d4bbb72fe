"""The process-wide registry of live handlers, and per-code dispatch plans.

Captures and breakpoints register :class:`Handler` objects. The dispatcher answers,
once per code object, which handlers can fire there and for which events
(:class:`CodePlan`), and it asks the tracing backend to instrument exactly those code
objects. Handlers whose scope names a callable are known up front; handlers whose
scope is a name or file pattern are matched lazily, the first time a code object runs.
"""

from __future__ import annotations

import logging
import pathlib
import threading
from types import CodeType
from typing import Dict, List, Tuple

from . import events as ev
from .backends import create_backend
from .plan import (
    EMPTY_PLAN_HANDLERS,
    Backend,
    Callback,
    CodePlan,
    ExitCallback,
    Handler,
    LineResolver,
    is_busy,
    paused,
    run_handlers,
)

__all__ = [
    "DISPATCHER",
    "Backend",
    "Callback",
    "CodePlan",
    "Dispatcher",
    "ExitCallback",
    "Handler",
    "LineResolver",
    "is_busy",
    "paused",
    "run_handlers",
]

log = logging.getLogger("nopdb_lab")

# nopdb_lab/ itself: pattern scopes never match the package's own code
_PACKAGE_ROOT = str(pathlib.Path(__file__).resolve().parent.parent)


class Dispatcher:
    """Holds the live handlers and computes :class:`CodePlan` objects for the backend."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._live: Dict[int, Handler] = {}
        self.exact: Dict[CodeType, CodePlan] = {}
        self.patterns: Tuple[Handler, ...] = ()
        self.plans: Dict[CodeType, CodePlan] = {}
        self.wants_unwind = False
        #: bumped whenever the live set changes; backends holding per-frame plans
        #: compare it to drop plans that went stale
        self.generation = 0
        #: replaced, never changed in place: the backends read it on every exit event
        self.exit_watchers: Dict[CodeType, Tuple[ExitCallback, ...]] = {}
        self._backend: Backend | None = None

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

    def watch_exits(self, code: CodeType, callback: ExitCallback) -> None:
        """Call ``callback(frame)`` when a frame of ``code`` returns or unwinds.

        For frames that are running now: the backend enables the events at once (on
        3.12+ a local ``PY_RETURN`` for ``code`` and the global ``PY_UNWIND``; before,
        the frame's local tracer sees them). Costs nothing once unwatched, apart from
        ``PY_UNWIND``, which stays on until the live set next changes.
        """
        with self._lock:
            current = self.exit_watchers.get(code, ())
            if callback in current:
                return
            self.exit_watchers = {**self.exit_watchers, code: current + (callback,)}
            if self._live and self._backend is not None:
                self._backend.watch_exits(code, True)

    def unwatch_exits(self, code: CodeType, callback: ExitCallback) -> None:
        """Stop calling ``callback`` for exits of ``code``'s frames."""
        with self._lock:
            current = self.exit_watchers.get(code, ())
            if callback not in current:
                return
            rest = tuple(c for c in current if c is not callback)
            watchers = dict(self.exit_watchers)
            if rest:
                watchers[code] = rest
            else:
                del watchers[code]
            self.exit_watchers = watchers
            if not rest and self._backend is not None:
                self._backend.watch_exits(code, False)

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

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = create_backend()
        return self._backend

    @property
    def live_handlers(self) -> Tuple[Handler, ...]:
        return tuple(self._live.values())


DISPATCHER = Dispatcher()
