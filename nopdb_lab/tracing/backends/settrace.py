"""Python 3.10/3.11 backend: a lean ``sys.settrace`` function that chains.

CPython before 3.12 has no per-code-object events, so a global trace function sees
every Python call. Ours does one dictionary lookup per call and returns at once for
code that no handler targets, so no local tracer (and no per-line cost) is installed
outside targeted frames. Whatever trace function was installed before (coverage, a
debugger) keeps receiving every event: ours calls it first and combines the local
tracers (see :class:`SettraceBackend` for coverage's C tracer, which re-installs
itself). Threads started while tracing is active are traced too (``threading.settrace``,
after the thread hook installed before ours);
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
from ..plan import CodePlan, PlanSource, code_is_generator, is_busy, notify_exit, run_handlers

# what sys.gettrace() returns: ours, or any other tool's (typeshed types those with
# literal event names, so the loose signature is the one both fit)
TraceFunc = Callable[..., Any]

_RETURN_OPS = frozenset(dis.opmap[n] for n in ("RETURN_VALUE", "RETURN_CONST") if n in dis.opmap)
_YIELD_OPS = frozenset(dis.opmap[n] for n in ("YIELD_VALUE",) if n in dis.opmap)
_YIELD_FROM = dis.opmap.get("YIELD_FROM", -1)  # 3.10 suspends on YIELD_FROM for await


class _ThreadState(threading.local):
    #: this thread's global trace function of ours that CPython removed because an
    #: exception (a real Ctrl-C during an action) escaped a trace function
    lost: Any = None


_thread_state = _ThreadState()


def _run(frame: FrameType, event: str, arg: Any, plan: CodePlan) -> None:
    """run_handlers, noting our global trace function if an exception escapes.

    CPython removes a thread's trace function when an exception leaves it, and with it
    the tool we chain to (coverage). Only a real Ctrl-C gets out of a handler; the
    backend puts the chain back when tracing changes or ends (see ``_install_here``).
    """
    try:
        run_handlers(frame, event, arg, plan)
    except BaseException:
        current = sys.gettrace()
        if _is_ours(current):
            _thread_state.lost = current
        raise


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
    """The local trace function of one targeted frame.

    It keeps the plan it was made with only while the dispatcher's live set is
    unchanged: when a capture or breakpoint is removed, the next event of the frame
    fetches the current plan, and the tracer drops out of a frame nothing targets any
    more (so a removed breakpoint stops at once also in frames already running).
    """

    __slots__ = ("backend", "plan", "generation", "exception", "exception_lasti", "lines_forced")

    def __init__(self, backend: "SettraceBackend", plan: CodePlan, generation: int) -> None:
        self.backend = backend
        self.plan = plan
        self.generation = generation
        self.exception: BaseException | None = None
        self.exception_lasti = -1
        self.lines_forced = False

    def _refresh(self, frame: FrameType, dispatcher: PlanSource | None) -> CodePlan | None:
        """The frame's current plan after the live set changed (``None``: untargeted)."""
        if dispatcher is None:
            return None
        code = frame.f_code
        plan = dispatcher.plans.get(code)
        if plan is None and dispatcher.patterns:
            plan = dispatcher.classify(code)
        if plan is None or not plan.handlers:
            return None
        self.plan = plan
        self.generation = dispatcher.generation
        return plan

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        dispatcher = self.backend._dispatcher
        if dispatcher is not None and dispatcher.generation == self.generation:
            plan: CodePlan | None = self.plan
        else:
            plan = self._refresh(frame, dispatcher)
        if plan is None:
            if self.lines_forced:
                frame.f_trace_lines = False
            return None
        if event == "line":
            if self.exception_lasti != -1:
                # code ran after the exception: it was caught in this frame, so a later
                # 'return' at the same yield is a new yield, not the exception leaving
                self.exception_lasti = -1
                if self.lines_forced:
                    frame.f_trace_lines = False
                    self.lines_forced = False
            if plan.lines is None or frame.f_lineno in plan.lines:
                if not is_busy():
                    _run(frame, ev.LINE, None, plan)
        elif event == "exception":
            self.exception = arg[1]
            self.exception_lasti = frame.f_lasti
            if not frame.f_trace_lines and code_is_generator(frame.f_code):
                # only a line event tells "caught, then yielded again at this yield"
                # from "thrown in at this yield and left": watch lines until then
                frame.f_trace_lines = True
                self.lines_forced = True
        elif event == "return":
            kind = _exit_kind(frame, self.exception_lasti)
            if kind == ev.UNWIND:
                arg = self.exception
            self.exception = None
            self.exception_lasti = -1
            if kind != ev.YIELD and dispatcher is not None:
                watchers = dispatcher.exit_watchers.get(frame.f_code)
                if watchers:
                    notify_exit(frame, watchers)
            if kind in plan.events and not is_busy():
                _run(frame, kind, arg, plan)
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


def _is_ours(trace: Any) -> bool:
    return getattr(trace, "_nopdb_lab_global", False)


class SettraceBackend:
    """One chaining global trace function per thread while any handler is live.

    Each thread's global trace function calls the tool that was tracing that thread
    before (coverage.py gives every thread its own tracer) and combines its local
    tracer with ours. coverage's C tracer, called as a Python function for a 'call'
    event, re-installs itself as the thread's trace function (a speed-up of its own);
    the global function puts itself back at once, so both keep working. A thread started
    while tracing is active first runs the thread hook that was installed before ours
    (coverage's, which starts its tracer for the thread), then chains to what it set.
    """

    name = "sys.settrace"

    def __init__(self) -> None:
        self._dispatcher: PlanSource | None = None
        self._installed = False
        self._previous_thread_hook: TraceFunc | None = None
        self.thread_hook = self._make_thread_hook()

    def _make_global(self, chained: TraceFunc | None) -> TraceFunc:
        """The global trace function of one thread, chaining to ``chained``."""
        backend = self

        def trace_global(frame: FrameType, event: str, arg: Any) -> Any:
            # hot path: runs for every Python call in the thread; keep it inline
            if chained is not None:
                prior = frame.f_trace  # before the other tool's call may replace it
                theirs = chained(frame, event, arg)
                if sys.gettrace() is chained:  # coverage's C tracer re-installed itself
                    sys.settrace(trace_global)
            else:
                prior = theirs = None
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
            if chained is None:
                prior = frame.f_trace
            return backend._targeted(frame, prior, plan, dispatcher.generation, theirs)

        trace_global._nopdb_lab_global = True  # type: ignore[attr-defined]
        trace_global.chained = chained  # type: ignore[attr-defined]
        return trace_global

    def _make_thread_hook(self) -> TraceFunc:
        backend = self

        def thread_hook(frame: FrameType, event: str, arg: Any) -> Any:
            previous = backend._previous_thread_hook
            theirs = previous(frame, event, arg) if previous is not None else None
            current = sys.gettrace()  # what the previous hook installed for this thread
            chained = None if current is thread_hook or _is_ours(current) else current
            if backend._dispatcher is None:
                sys.settrace(chained)
                return theirs
            sys.settrace(backend._make_global(chained))
            return backend._call_event(frame, None, theirs)

        thread_hook._nopdb_lab_global = True  # type: ignore[attr-defined]
        return thread_hook

    def _call_event(self, frame: FrameType, prior: Any, theirs: TraceFunc | None) -> Any:
        """Our part of a 'call' event: run CALL/RESUME handlers, pick the local tracer."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            return theirs
        code = frame.f_code
        plan = dispatcher.plans.get(code)
        if plan is None:
            if not dispatcher.patterns:
                return theirs
            plan = dispatcher.classify(code)
        if not plan.handlers:
            return theirs
        return self._targeted(frame, prior, plan, dispatcher.generation, theirs)

    def _targeted(
        self,
        frame: FrameType,
        prior: Any,
        plan: CodePlan,
        generation: int,
        theirs: TraceFunc | None,
    ) -> Any:
        """A 'call' event in a frame some handler targets."""
        ours = self._enter(frame, prior, plan, generation, theirs is not None)
        if ours is None:
            return theirs
        if theirs is None:
            return ours
        return ChainedTracer(ours, theirs)

    def _enter(
        self, frame: FrameType, prior: Any, plan: CodePlan, generation: int, chained: bool
    ) -> FrameTracer | None:
        previous = _our_tracer(prior)
        resumed = previous is not None
        event = ev.RESUME if resumed else ev.CALL
        if event in plan.events and not is_busy():
            _run(frame, event, None, plan)
        if plan.events <= {ev.CALL, ev.RESUME} and not code_is_generator(frame.f_code):
            dispatcher = self._dispatcher
            if dispatcher is None or frame.f_code not in dispatcher.exit_watchers:
                return None  # (a watched exit needs the frame's 'return' event)
        # Line events cost; ask for them only if we or a chained tool need them.
        frame.f_trace_lines = chained or ev.LINE in plan.events
        if previous is not None:
            previous.plan = plan
            previous.generation = generation
            previous.lines_forced = False
            return previous
        return FrameTracer(self, plan, generation)

    # -- lifecycle ----------------------------------------------------------------
    def apply(self, dispatcher: PlanSource) -> None:
        self._dispatcher = dispatcher
        if self._installed:
            self._install_here()
            return
        self._previous_thread_hook = threading.gettrace()
        if _is_ours(self._previous_thread_hook):
            self._previous_thread_hook = None
        self._install_here()
        threading.settrace(self.thread_hook)
        self._installed = True

    def adopt_thread(self) -> None:
        """Trace the calling thread too, if it was running before tracing started.

        A Jupyter kernel may set breakpoints from a comm handler on one thread while
        cells run on another; the kernel service calls this before each cell.
        """
        if self._installed:
            self._install_here()

    def _install_here(self) -> None:
        current = sys.gettrace()
        lost, _thread_state.lost = _thread_state.lost, None
        if current is None and lost is not None:
            current = lost.chained  # CPython dropped our chain on a Ctrl-C: restore it
        if not _is_ours(current):
            # Another tool traces this thread (or took over after we started): chain to it.
            sys.settrace(self._make_global(current))

    def release(self) -> None:
        if not self._installed:
            return
        self._dispatcher = None
        current = sys.gettrace()
        lost, _thread_state.lost = _thread_state.lost, None
        if current is None and lost is not None:
            current = lost  # CPython dropped our chain on a Ctrl-C: give back what it held
        if _is_ours(current):
            sys.settrace(getattr(current, "chained", None))
        if threading.gettrace() is self.thread_hook:
            threading.settrace(self._previous_thread_hook)
        self._installed = False

    def watch_exits(self, code: CodeType, on: bool) -> None:
        """Nothing to switch: a frame's local tracer already sees its 'return' event.

        A frame gets a local tracer when it starts; for a code object traced only on
        calls, ``_enter`` keeps one when the call's handlers started watching its exits.
        """
