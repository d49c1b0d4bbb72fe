"""The comm service and its bootstrap: the capture store behind a Jupyter comm.

The front end runs ``import nopdb_lab.jupyter as s; s.start()`` silently in the kernel,
then opens a comm on target :data:`TARGET`. A request goes: comm -> validation against
the schema (:mod:`.protocol`) -> the op table (:mod:`.ops`) -> store and analyses ->
wire encoding (:mod:`.wire`) -> reply. Store and breakpoint events are batched
(:mod:`.batching`). Messages are described in ``protocol.schema.json`` and
``docs/protocol.md``; tensors travel as binary buffers.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any, Dict, Iterator, List

from ..capture_store import CaptureStore, Eviction, store
from ..tracing.dispatch import DISPATCHER, paused
from . import wire
from .batching import EventBatcher
from .breakpoint_manager import BreakpointManager
from .interrupts import interrupted_message, served, serving
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
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.events.register("pre_execute", _before_cell)
        shell.events.register("post_execute", _after_cell)


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


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Let the stop button interrupt a request: SIGINT raises ``KeyboardInterrupt`` here.

    ipykernel ignores SIGINT between messages and turns it on around each handler, but
    not for a comm message it dispatches while another message is still in flight (its
    "concurrent" path). The service turns it on itself, on the main thread (the only one
    Python delivers signals to), and puts back what was there. A request served in a
    kernel subshell (JupyterLab >= 4.6 sends comm messages through one) runs in another
    thread, which SIGINT does not reach: the front end then runs
    :func:`~nopdb_lab.jupyter.interrupt_requests` on the main shell
    (:mod:`.interrupts`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        if previous is not None:  # None: a handler set from C, which cannot be put back
            signal.signal(signal.SIGINT, previous)


class CommService:
    """Serves one front-end comm: answers requests, pushes store events (batched)."""

    def __init__(self, comm: Any, record_store: CaptureStore) -> None:
        self.comm = comm
        self.store = record_store
        self.breakpoints = breakpoint_manager()
        self._changed_breakpoints: set[str] = set()
        self._changed_lock = threading.Lock()
        self.events = EventBatcher(self._send, latest=self._breakpoint_events)
        comm.on_msg(self._on_msg)
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

    def _on_msg(self, msg: Dict[str, Any]) -> None:
        token = serving()
        try:
            with paused(), _interruptible():
                self._serve(msg["content"]["data"])
        except KeyboardInterrupt:
            # an interrupt that arrived as the request was being answered: it has its
            # reply, and the interrupt must not reach the kernel's message loop
            pass
        finally:
            served(token)

    def _serve(self, data: Any) -> None:
        """Answer one request; every message gets a reply, malformed ones a structured error."""
        request_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(request_id, str):
            request_id = None
        try:
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
