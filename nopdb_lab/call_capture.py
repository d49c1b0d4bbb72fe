"""``capture_call`` / ``capture_calls`` results: one CallInfo per finished call.

A call is one activation of the function: for a generator or coroutine that is from
its first start to its final return (or exception), not one record per ``yield`` as
NoPdb's settrace-based version produces; the yielded values are kept in
``CallInfo.yields``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from types import FrameType
from typing import Any, Callable, Dict, List

from .analysis import gradients
from .call_info import CallInfo, StackNode, next_id, qualified_name, stack_node
from .context import HandlerHost, NoPdbContextManager
from .tracing import events as ev
from .tracing import observers
from .tracing.dispatch import Handler
from .tracing.frame_locals import read_locals
from .tracing.plan import weak_callback
from .tracing.scope import Scope

CAPTURE_EVENTS = frozenset({ev.CALL, ev.RETURN, ev.YIELD, ev.UNWIND})


class BaseCallCapture:
    """Turns call/return events of matching frames into :class:`CallInfo` objects."""

    def _init_capture(
        self,
        snapshot: Callable[[Any], Any] | None,
        grads: "frozenset[str] | bool" = False,
        grad_device: Any = None,
    ) -> None:
        self._pending: Dict[FrameType, CallInfo] = {}
        self._pending_lock = threading.Lock()
        self._snapshot = snapshot
        self._grads = grads
        self._grad_device = grad_device

    def _copy(self, value: Any) -> Any:
        return value if self._snapshot is None else self._snapshot(value)

    def _callback(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == ev.CALL:
            self._on_call(frame)
            return
        with self._pending_lock:
            result = self._pending.get(frame)
            if result is None:
                return  # the call started before this capture was enabled
            if event == ev.YIELD:
                result.yields.append(self._copy(arg))
                return
            del self._pending[frame]
        live_locals = read_locals(frame)
        result.locals = self._copy(live_locals)
        result.globals = frame.f_globals
        collector = getattr(result, "_grad_collector", None)
        if collector is not None:  # hook the live tensors, not the snapshot copies
            gradients.watch_values(collector, self._grads, "locals", live_locals)
            if event == ev.RETURN:
                gradients.watch_values(
                    collector, self._grads, "return_value", {"return_value": arg}
                )
            gradients.finish(collector, self._grads, set(live_locals) | set(result.args or ()))
        if event == ev.RETURN:
            result.return_value = self._copy(arg)
        else:
            result.exception = arg
        result.end_time = time.time()
        self._update_result(result)
        observers.publish(result)

    def _on_call(self, frame: FrameType) -> None:
        code = frame.f_code
        result = CallInfo()
        result.id = next_id()
        result.start_time = time.time()
        result.name = code.co_name
        result.file = code.co_filename
        result.lineno = code.co_firstlineno
        result.qualname = qualified_name(code, frame)
        result._stack_node = stack_node(frame, self._known_node)
        result.thread = threading.current_thread().name
        f_locals = frame.f_locals
        nargs = code.co_argcount + code.co_kwonlyargcount
        names = list(code.co_varnames[:nargs])
        flags = code.co_flags
        if flags & 0x04:  # *args
            names.append(code.co_varnames[nargs])
            nargs += 1
        if flags & 0x08:  # **kwargs
            names.append(code.co_varnames[nargs])
        result.args = OrderedDict(
            (name, self._copy(f_locals[name])) for name in names if name in f_locals
        )
        if self._grads is not False:
            collector = gradients.begin(
                result, ("args", "locals", "return_value"), self._snapshot, self._grad_device
            )
            live_args = {name: f_locals[name] for name in names if name in f_locals}
            gradients.watch_values(collector, self._grads, "args", live_args)
        with self._pending_lock:
            self._pending[frame] = result

    def _known_node(self, frame: FrameType) -> StackNode | None:
        """The stack node of an outer frame whose call is being recorded (recursion)."""
        pending = self._pending.get(frame)
        node = None if pending is None else pending._stack_node
        if node is None:
            return None
        return (node[0], node[1], frame.f_lineno, node[3])

    def _update_result(self, result: CallInfo) -> None:
        raise NotImplementedError

    def disable(self) -> None:  # drop half-finished calls with the handler
        super().disable()  # type: ignore[misc]
        with self._pending_lock:
            self._pending.clear()


def _capture_handler(scope: Scope, callback: Callable[[FrameType, str, Any], None]) -> Handler:
    return Handler(scope=scope, events=CAPTURE_EVENTS, callback=callback)


class CallCapture(BaseCallCapture, NoPdbContextManager, CallInfo):
    """A :class:`CallInfo` describing the last matching call to finish; a context manager."""

    def __init__(
        self,
        nopdb: HandlerHost,
        scope: Scope,
        snapshot: Callable[[Any], Any] | None = None,
        grads: "frozenset[str] | bool" = False,
        grad_device: Any = None,
    ) -> None:
        CallInfo.__init__(self)
        self._init_capture(snapshot, grads, grad_device)
        self.scope = scope
        NoPdbContextManager.__init__(
            self, nopdb, _capture_handler(scope, weak_callback(self._callback))
        )

    def _update_result(self, result: CallInfo) -> None:
        self.__dict__.update(result.__dict__)


class CallListCapture(BaseCallCapture, NoPdbContextManager, List[CallInfo]):
    """A list of :class:`CallInfo`, one per matching call, in the order they finished."""

    def __init__(
        self,
        nopdb: HandlerHost,
        scope: Scope,
        snapshot: Callable[[Any], Any] | None = None,
        grads: "frozenset[str] | bool" = False,
        grad_device: Any = None,
    ) -> None:
        list.__init__(self)
        self._init_capture(snapshot, grads, grad_device)
        self.scope = scope
        NoPdbContextManager.__init__(
            self, nopdb, _capture_handler(scope, weak_callback(self._callback))
        )

    def _update_result(self, result: CallInfo) -> None:
        self.append(result)
