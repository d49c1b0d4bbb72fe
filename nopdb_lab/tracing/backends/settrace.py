"""Python 3.10/3.11 backend: a lean ``sys.settrace`` function that chains.

CPython before 3.12 has no per-code-object events, so a global trace function sees
every Python call. Ours does one dictionary lookup per call and returns at once for
code that no handler targets, so no local tracer (and no per-line cost) is installed
outside targeted frames. Whatever trace function was installed before (coverage, a
debugger) keeps receiving every event: ours calls it first and combines the local
tracers. Threads started while tracing is active are traced too (``threading.settrace``);
threads already running when tracing starts are not, since CPython < 3.12 has no public
API to reach them, unless they call :meth:`SettraceBackend.adopt_thread` (the kernel
service does so before each cell).
"""

from __future__ import annotations

import dis
import sys
import threading
from types import CodeType, FrameType
from typing import Any, Callable

from .. import events as ev
from ..plan import CodePlan, PlanSource, is_busy, run_handlers

# what sys.gettrace() returns: ours, or any other tool's (typeshed types those with
# literal event names, so the loose signature is the one both fit)
TraceFunc = Callable[..., Any]

_RETURN_OPS = frozenset(dis.opmap[n] for n in ("RETURN_VALUE", "RETURN_CONST") if n in dis.opmap)
_YIELD_OPS = frozenset(dis.opmap[n] for n in ("YIELD_VALUE",) if n in dis.opmap)
_YIELD_FROM = dis.opmap.get("YIELD_FROM", -1)  # 3.10 suspends on YIELD_FROM for await


def _exit_kind(frame: FrameType, exception_lasti: int) -> str:
    """Whether a 'return' event is a real return, a yield, or an exception unwinding.

    ``exception_lasti`` is where the frame's last 'exception' event happened (-1 if
    none): an exception thrown into a suspended generator is reported at its yield.
    """
    code = frame.f_code.co_code
    lasti = frame.f_lasti
    op = code[lasti] if 0 <= lasti < len(code) else -1
    if op in _RETURN_OPS:
        return ev.RETURN
    suspended = op in _YIELD_OPS or (
        _YIELD_FROM >= 0 and lasti + 2 < len(code) and code[lasti + 2] == _YIELD_FROM
    )
    if suspended and lasti != exception_lasti:
        return ev.YIELD
    return ev.UNWIND


class FrameTracer:
    """The local trace function of one targeted frame."""

    __slots__ = ("plan", "exception", "exception_lasti")

    def __init__(self, plan: CodePlan) -> None:
        self.plan = plan
        self.exception: BaseException | None = None
        self.exception_lasti = -1

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        plan = self.plan
        if event == "line":
            if plan.lines is None or frame.f_lineno in plan.lines:
                if not is_busy():
                    run_handlers(frame, ev.LINE, None, plan)
        elif event == "exception":
            self.exception = arg[1]
            self.exception_lasti = frame.f_lasti
        elif event == "return":
            kind = _exit_kind(frame, self.exception_lasti)
            if kind == ev.UNWIND:
                arg = self.exception
            self.exception = None
            self.exception_lasti = -1
            if kind in plan.events and not is_busy():
                run_handlers(frame, kind, arg, plan)
        return self


class ChainedTracer:
    """Runs our local tracer and another tool's, each keeping its own continuation."""

    __slots__ = ("ours", "theirs")

    def __init__(self, ours: TraceFunc | None, theirs: TraceFunc | None) -> None:
        self.ours = ours
        self.theirs = theirs

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        if self.theirs is not None:
            self.theirs = self.theirs(frame, event, arg)
        if self.ours is not None:
            self.ours = self.ours(frame, event, arg)
        if self.ours is None and self.theirs is None:
            return None
        return self


def _our_tracer(local: Any) -> FrameTracer | None:
    if isinstance(local, FrameTracer):
        return local
    if isinstance(local, ChainedTracer) and isinstance(local.ours, FrameTracer):
        return local.ours
    return None


class SettraceBackend:
    """Install one chaining global trace function while any handler is live."""

    name = "sys.settrace"

    def __init__(self) -> None:
        self._dispatcher: PlanSource | None = None
        self._installed = False
        self._chained: TraceFunc | None = None
        self._previous_thread_hook: TraceFunc | None = None
        self.trace_global = self._make_global()

    def _make_global(self) -> TraceFunc:
        backend = self

        def trace_global(frame: FrameType, event: str, arg: Any) -> Any:
            chained = backend._chained
            theirs = chained(frame, event, arg) if chained is not None else None
            dispatcher = backend._dispatcher
            if dispatcher is None:
                # Tracing was stopped while this thread still had us installed.
                if sys.gettrace() is trace_global:
                    sys.settrace(chained)
                return theirs
            code = frame.f_code
            plan = dispatcher.plans.get(code)
            if plan is None:
                if not dispatcher.patterns:
                    return theirs
                plan = dispatcher.classify(code)
            if not plan.handlers:
                return theirs
            ours = backend._enter(frame, plan, theirs is not None)
            if ours is None:
                return theirs
            if theirs is None:
                return ours
            return ChainedTracer(ours, theirs)

        return trace_global

    def _enter(self, frame: FrameType, plan: CodePlan, chained: bool) -> FrameTracer | None:
        previous = _our_tracer(frame.f_trace)
        resumed = previous is not None
        event = ev.RESUME if resumed else ev.CALL
        if event in plan.events and not is_busy():
            run_handlers(frame, event, None, plan)
        if plan.events <= {ev.CALL, ev.RESUME} and not code_is_generator(frame.f_code):
            return None
        # Line events cost; ask for them only if we or a chained tool need them.
        frame.f_trace_lines = chained or ev.LINE in plan.events
        return previous if previous is not None else FrameTracer(plan)

    # -- lifecycle ----------------------------------------------------------------
    def apply(self, dispatcher: PlanSource) -> None:
        self._dispatcher = dispatcher
        if self._installed:
            if sys.gettrace() is not self.trace_global:
                self._install_here()
            return
        self._chained = sys.gettrace()
        if self._chained is self.trace_global:
            self._chained = None
        self._previous_thread_hook = threading.gettrace()
        sys.settrace(self.trace_global)
        threading.settrace(self.trace_global)
        self._installed = True

    def adopt_thread(self) -> None:
        """Trace the calling thread too, if it was running before tracing started.

        A Jupyter kernel may set breakpoints from a comm handler on one thread while
        cells run on another; the kernel service calls this before each cell.
        """
        if not self._installed or sys.gettrace() is self.trace_global:
            return
        current = sys.gettrace()
        if current is not None:
            self._chained = current
        sys.settrace(self.trace_global)

    def _install_here(self) -> None:
        current = sys.gettrace()
        if current is not self.trace_global:
            # Another tool took over this thread after we started: chain behind it.
            self._chained = current
            sys.settrace(self.trace_global)

    def release(self) -> None:
        if not self._installed:
            return
        self._dispatcher = None
        if sys.gettrace() is self.trace_global:
            sys.settrace(self._chained)
        if threading.gettrace() is self.trace_global:
            threading.settrace(self._previous_thread_hook)
        self._installed = False


def code_is_generator(code: CodeType) -> bool:
    """Whether ``code`` is a generator, coroutine or async generator body."""
    return bool(code.co_flags & (0x20 | 0x80 | 0x200))
