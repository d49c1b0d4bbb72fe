"""The comm service and its bootstrap: the capture store behind a Jupyter comm.

The front end runs ``import nopdb_lab.jupyter as s; s.start()`` silently in the kernel,
then opens a comm on target :data:`TARGET`. A request goes: comm -> validation against
the schema (:mod:`.protocol`) -> the op table (:mod:`.ops`) -> store and analyses ->
wire encoding (:mod:`.wire`) -> reply. Store and breakpoint events are batched
(:mod:`.batching`). Messages are described in ``protocol.schema.json`` and
``docs/protocol.md``; tensors travel as binary buffers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List

from ..capture_store import CaptureStore, Eviction, store
from ..tracing.dispatch import DISPATCHER, paused
from . import interrupts, wire
from .batching import EventBatcher
from .breakpoint_manager import BreakpointManager
from .interrupts import interrupted_message
from .ops import OPS
from .protocol import PROTOCOL_VERSION, validate_request
from .wire import brief

TARGET = "nopdb_lab"

log = logging.getLogger("nopdb_lab")
_services: List["CommService"] = []
_manager: BreakpointManager | None = None


def breakpoint_manager() -> BreakpointManager:
    """The kernel's front-end breakpoints (created on first use)."""
    global _manager
    if _manager is None:
        _manager = BreakpointManager(store)
        wire.breakpoint_id = _manager.id_of
    return _manager


def start() -> str:
    """Enable the store and register the comm target (idempotent); returns the target."""
    from comm import get_comm_manager

    store.enable()
    manager = get_comm_manager()
    if TARGET not in getattr(manager, "targets", {}):
        manager.register_target(TARGET, _on_comm_open)
        _flush_after_each_cell()
    return TARGET


def _flush_after_each_cell() -> None:
    """Around each cell: trace the cell's thread; after it, activate breakpoints whose
    cell now ran and send batched events."""
    shell = _ipython()
    if shell is not None:
        shell.events.register("pre_execute", _before_cell)
        shell.events.register("post_execute", _after_cell)


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _before_cell() -> None:
    # breakpoints may have been set from a comm handler on another thread; before 3.12
    # tracing reaches a running thread only if it installs the tracer itself
    DISPATCHER.adopt_current_thread()


def _after_cell() -> None:
    with paused():
        if _manager is not None:
            _manager.after_cell()
        flush_all()


def flush_all() -> None:
    """Send every service's pending events now."""
    for service in list(_services):
        service.events.flush()


def _on_comm_open(comm: Any, open_msg: Dict[str, Any]) -> None:
    _services.append(CommService(comm, store))


def _where_sent(data: Any, subshell_id: str | None) -> str | None:
    return subshell_id


class CommService:
    """Serves one front-end comm: answers requests, pushes store events (batched)."""

    def __init__(self, comm: Any, record_store: CaptureStore) -> None:
        self.comm = comm
        self.store = record_store
        self.breakpoints = breakpoint_manager()
        self._changed_breakpoints: set[str] = set()
        self._changed_lock = threading.Lock()
        self.events = EventBatcher(self._send, latest=self._breakpoint_events)
        # the comm's own handle_msg runs IPython's pre/post_execute hooks around the
        # callback, where a stop-button interrupt would drop the request unanswered or stop
        # a hook half-way; this one runs them with interrupts held (see .interrupts)
        comm.handle_msg = self._handle_msg
        # ipykernel >= 7.4 sends a comm's incoming messages to the subshell it last sent
        # from (for widgets that wait for a reply), whatever subshell the front end chose:
        # after one request served in a subshell, main-shell requests would go there too,
        # and nowhere once that subshell is deleted. Requests here never answer a message
        # the kernel sent, so each goes where the front end sent it.
        comm._reply_subshell_for = _where_sent
        comm.on_close(self._on_close)
        record_store.add_listener(self._on_store_event)
        self.breakpoints.add_listener(self._on_breakpoints_changed)

    def _on_close(self, msg: Dict[str, Any]) -> None:
        self.store.remove_listener(self._on_store_event)
        self.breakpoints.remove_listener(self._on_breakpoints_changed)
        self.events.close()
        if self in _services:
            _services.remove(self)

    def _send(self, data: Dict[str, Any], buffers: List[bytes] | None = None) -> None:
        self.comm.send({"v": PROTOCOL_VERSION, **data}, buffers=buffers)

    def _on_store_event(self, kind: str, payload: Any) -> None:
        if kind == "added":
            self.events.push({"event": "captures_added", "captures": [brief(payload, self.store)]})
        elif kind == "evicted":
            assert isinstance(payload, Eviction)
            self.events.push(
                {"event": "captures_evicted", "ids": list(payload.ids), "message": str(payload)}
            )
        elif kind == "updated":  # a gradient arrived: the row's marker and size changed
            self.events.push(
                {"event": "captures_updated", "captures": [brief(payload, self.store)]}
            )
        elif kind == "deleted":
            self.events.push({"event": "captures_deleted", "ids": list(payload)})

    def _on_breakpoints_changed(self, ids: List[str]) -> None:
        with self._changed_lock:  # hits may come from any thread
            self._changed_breakpoints.update(ids)
        self.events.poke()

    def _breakpoint_events(self) -> List[Dict[str, Any]]:
        with self._changed_lock:
            ids, self._changed_breakpoints = self._changed_breakpoints, set()
        states = self.breakpoints.states(ids) if ids else []
        return [{"event": "breakpoints_changed", "breakpoints": states}] if states else []

    def _handle_msg(self, msg: Dict[str, Any]) -> None:
        """One comm message, as ``comm.BaseComm.handle_msg`` handles it (IPython's
        ``pre_execute`` and ``post_execute`` around it), with interrupts held except
        while the op runs: every request gets its answer, and no interrupt reaches the
        kernel's message loop."""
        try:
            with interrupts.handling():
                shell = _ipython()
                if shell is not None:
                    shell.events.trigger("pre_execute")
                with paused():
                    self._serve(msg["content"]["data"])
                if shell is not None:
                    shell.events.trigger("post_execute")
        except KeyboardInterrupt:
            pass  # held interrupts are never raised here; a last guard for the message loop

    def _serve(self, data: Any) -> None:
        """Answer one request; every message gets a reply, malformed ones a structured error."""
        request_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(request_id, str):
            request_id = None
        try:
            with interrupts.interruptible():
                op, args = validate_request(data)
                result, buffers = OPS[op](self, **args)
            self.events.flush()  # what the request changed is pushed before its answer
            self._send({"re": request_id, "ok": True, "result": result}, buffers)
        except Exception as exc:
            # KeyError's str() is the repr of its argument; show the message itself
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            error: Dict[str, Any] = {"type": type(exc).__name__, "message": message}
            field = getattr(exc, "field", "")
            if field:
                error["field"] = field
            self._send({"re": request_id, "ok": False, "error": error})
        except KeyboardInterrupt:
            # the stop button while the request ran: still answer (the front end would
            # wait forever), and do not let the interrupt into the kernel's message loop
            asked: Any = data.get("op") if isinstance(data, dict) else None
            error = {"type": "Interrupted", "message": interrupted_message(asked)}
            self._send({"re": request_id, "ok": False, "error": error})
