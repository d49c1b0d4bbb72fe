"""Python 3.12+ backend: ``sys.monitoring`` events enabled only on targeted code.

Code objects named by a callable get local events (``set_local_events``), so nothing
else in the process pays anything. Name/file pattern scopes turn on the global
``PY_START`` event once; each code object is classified the first time it runs and
``DISABLE`` switches the event off for code that does not match. ``PY_UNWIND`` (an
exception leaving a frame) can only be enabled globally; it is on only while some
capture wants it, or since some code's exits were watched (until the live set next
changes), and costs one callback per frame an exception passes through.
"""

from __future__ import annotations

import sys
from types import CodeType
from typing import Any, Dict

from .. import events as ev
from ..plan import PlanSource, is_busy, notify_exit, run_handlers

TOOL_NAME = "nopdb_lab"
#: tool ids tried in order: 3 and 4 are unassigned by PEP 669, then the rest
PREFERRED_TOOL_IDS = (4, 3, 2, 5, 1, 0)


class MonitoringBackend:
    """Instrument exactly the code objects the dispatcher's plans name."""

    name = "sys.monitoring"

    def __init__(self) -> None:
        self.mon: Any = sys.monitoring  # type: ignore[attr-defined]
        self.E = self.mon.events
        self.tool_id: int | None = None
        #: the plans' local events per instrumented code object
        self._instrumented: Dict[CodeType, int] = {}
        self._dispatcher: PlanSource | None = None
        self._disabled_since_apply = False
        self._global_mask = 0
        #: code objects whose exits were watched: their PY_RETURN is never DISABLEd (a
        #: disabled location would stay so when they are watched again)
        self._exit_codes: set[CodeType] = set()
        #: PY_UNWIND is on for watched exits (switching a global event re-instruments
        #: all running code, so it stays on until the live set next changes)
        self._unwind_for_exits = False

    # -- lifecycle ----------------------------------------------------------------
    def _acquire(self) -> int:
        if self.tool_id is not None:
            return self.tool_id
        for tool_id in PREFERRED_TOOL_IDS:
            if self.mon.get_tool(tool_id) is None:
                self.mon.use_tool_id(tool_id, TOOL_NAME)
                break
        else:
            used = {i: self.mon.get_tool(i) for i in range(6)}
            raise RuntimeError(
                "nopdb_lab cannot trace: every sys.monitoring tool id is taken "
                f"({used}); free one with sys.monitoring.free_tool_id()"
            )
        events = self.E
        register = self.mon.register_callback
        register(tool_id, events.PY_START, self._on_start)
        register(tool_id, events.PY_RESUME, self._on_resume)
        register(tool_id, events.PY_RETURN, self._on_return)
        register(tool_id, events.PY_YIELD, self._on_yield)
        register(tool_id, events.PY_UNWIND, self._on_unwind)
        register(tool_id, events.LINE, self._on_line)
        self.tool_id = tool_id
        return tool_id

    def release(self) -> None:
        """Remove every instrumentation and give the tool id back."""
        if self.tool_id is None:
            return
        tool_id = self.tool_id
        self.mon.set_events(tool_id, 0)
        self._global_mask = 0
        self._unwind_for_exits = False
        for code in set(self._instrumented) | self._exit_codes:
            self.mon.set_local_events(tool_id, code, 0)
        self._instrumented.clear()
        self._exit_codes.clear()
        for event in (
            self.E.PY_START,
            self.E.PY_RESUME,
            self.E.PY_RETURN,
            self.E.PY_YIELD,
            self.E.PY_UNWIND,
            self.E.LINE,
        ):
            self.mon.register_callback(tool_id, event, None)
        self.mon.free_tool_id(tool_id)
        self.tool_id = None
        self._dispatcher = None

    def apply(self, dispatcher: PlanSource) -> None:
        """Instrument according to the dispatcher's current plans."""
        tool_id = self._acquire()
        self._dispatcher = dispatcher
        wanted = {code: self._mask(plan.events) for code, plan in dispatcher.exact.items()}
        for code in list(self._instrumented):
            if code not in wanted:
                self.mon.set_local_events(tool_id, code, self._local_mask(code, 0))
                del self._instrumented[code]
        for code, mask in wanted.items():
            self.mon.set_local_events(tool_id, code, self._local_mask(code, mask))
            self._instrumented[code] = mask
        for code in dispatcher.exit_watchers:
            if code not in wanted:
                self.mon.set_local_events(tool_id, code, self._local_mask(code, 0))
        self._unwind_for_exits = bool(dispatcher.exit_watchers)
        self._set_global_events()
        if self._disabled_since_apply:
            # Locations switched off by DISABLE may be wanted by the new plans.
            self.mon.restart_events()
            self._disabled_since_apply = False

    def watch_exits(self, code: CodeType, on: bool) -> None:
        """Report the exits of ``code``'s frames (``PY_RETURN`` here, ``PY_UNWIND``
        globally), or stop."""
        if self.tool_id is None:
            return
        if on:
            self._exit_codes.add(code)
            if not self._unwind_for_exits:
                self._unwind_for_exits = True
                self._set_global_events()
        self.mon.set_local_events(
            self.tool_id, code, self._local_mask(code, self._instrumented.get(code, 0))
        )

    def _local_mask(self, code: CodeType, plan_mask: int) -> int:
        dispatcher = self._dispatcher
        if dispatcher is not None and code in dispatcher.exit_watchers:
            return plan_mask | self.E.PY_RETURN
        return plan_mask

    def _set_global_events(self) -> None:
        dispatcher = self._dispatcher
        if self.tool_id is None or dispatcher is None:
            return
        mask = 0
        if dispatcher.patterns:
            mask |= self.E.PY_START
        if dispatcher.wants_unwind or self._unwind_for_exits:
            mask |= self.E.PY_UNWIND
        if mask != self._global_mask:
            self.mon.set_events(self.tool_id, mask)
            self._global_mask = mask

    def _mask(self, wanted: frozenset[str]) -> int:
        events = self.E
        mask = 0
        if ev.CALL in wanted:
            mask |= events.PY_START
        if ev.RESUME in wanted:
            mask |= events.PY_RESUME
        if ev.RETURN in wanted:
            mask |= events.PY_RETURN
        if ev.YIELD in wanted:
            mask |= events.PY_YIELD
        if ev.LINE in wanted:
            mask |= events.LINE
        return mask

    def _plan(self, code: CodeType) -> Any:
        dispatcher = self._dispatcher
        if dispatcher is None:
            return None
        plan = dispatcher.plans.get(code)
        if plan is None and dispatcher.patterns:
            plan = dispatcher.classify(code)
            if plan.handlers and self.tool_id is not None:
                mask = self._mask(plan.events)
                self.mon.set_local_events(self.tool_id, code, self._local_mask(code, mask))
                self._instrumented[code] = mask
        return plan

    def _disable(self) -> Any:
        self._disabled_since_apply = True
        return self.mon.DISABLE

    # -- callbacks (hot path: keep them short) -------------------------------------
    def _on_start(self, code: CodeType, offset: int) -> Any:
        plan = self._plan(code)
        if plan is None or ev.CALL not in plan.events:
            return self._disable()
        if not is_busy():
            run_handlers(sys._getframe(1), ev.CALL, None, plan)
        return None

    def _on_resume(self, code: CodeType, offset: int) -> Any:
        plan = self._plan(code)
        if plan is None or ev.RESUME not in plan.events:
            return self._disable()
        if not is_busy():
            run_handlers(sys._getframe(1), ev.RESUME, None, plan)
        return None

    def _on_return(self, code: CodeType, offset: int, retval: Any) -> Any:
        dispatcher = self._dispatcher
        if dispatcher is not None:
            watchers = dispatcher.exit_watchers.get(code)
            if watchers:
                notify_exit(sys._getframe(1), watchers)
        plan = self._plan(code)
        if plan is None or ev.RETURN not in plan.events:
            return None if code in self._exit_codes else self._disable()
        if not is_busy():
            run_handlers(sys._getframe(1), ev.RETURN, retval, plan)
        return None

    def _on_yield(self, code: CodeType, offset: int, value: Any) -> Any:
        plan = self._plan(code)
        if plan is None or ev.YIELD not in plan.events:
            return self._disable()
        if not is_busy():
            run_handlers(sys._getframe(1), ev.YIELD, value, plan)
        return None

    def _on_unwind(self, code: CodeType, offset: int, exc: BaseException) -> Any:
        dispatcher = self._dispatcher
        if dispatcher is None:
            return None
        watchers = dispatcher.exit_watchers.get(code)
        if watchers:
            notify_exit(sys._getframe(1), watchers)
        plan = dispatcher.plans.get(code)
        if plan is None or ev.UNWIND not in plan.events or is_busy():
            return None
        run_handlers(sys._getframe(1), ev.UNWIND, exc, plan)
        return None

    def _on_line(self, code: CodeType, line: int) -> Any:
        plan = self._plan(code)
        if plan is None or ev.LINE not in plan.events:
            return self._disable()
        if plan.lines is not None and line not in plan.lines:
            return self._disable()
        if not is_busy():
            run_handlers(sys._getframe(1), ev.LINE, None, plan)
        return None
