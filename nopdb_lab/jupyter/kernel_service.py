"""The kernel side of the JupyterLab extension: the capture store behind a Jupyter comm.

The front end runs ``import nopdb_lab.kernel_service as s; s.start()`` silently in the
kernel, then opens a comm on target :data:`TARGET`. Requests, responses and pushed events
are described in ``docs/protocol.md``; tensors travel as binary buffers.
"""

from __future__ import annotations

import linecache
import logging
import platform
import sys
import threading
from typing import Any, Callable, Dict, List, Tuple

from .._version import __version__
from ..analysis.attention import attention_capture_active
from ..analysis.heatmap import slice_2d
from ..analysis.stacking import stack_captures
from ..analysis.summary import is_array, is_tensor, summarize
from ..capture_store import CaptureStore, Eviction, store
from ..records import ProtocolError, resolve
from ..tracing.backends import backend_name
from ..tracing.dispatch import DISPATCHER, paused
from .breakpoint_manager import BreakpointManager, is_cell_file
from .source_lookup import locate
from .user_values import evaluate_image, evaluate_labels, user_namespace

TARGET = "nopdb_lab"
PROTOCOL_VERSION = 1
MAX_TENSOR_BYTES = 64 << 20
#: Pushed events are batched: at most one message per interval and per this many captures,
#: so a loop that captures 10,000 calls stays far below the server's iopub rate limit.
BATCH_INTERVAL_S = 0.1
MAX_BATCH = 1000

log = logging.getLogger("nopdb_lab")
_services: List["CommService"] = []
_manager: BreakpointManager | None = None


def breakpoint_manager() -> BreakpointManager:
    """The kernel's front-end breakpoints (created on first use)."""
    global _manager
    if _manager is None:
        _manager = BreakpointManager(store)
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


# -- describing records -------------------------------------------------------------------
def brief(record: Any, record_store: CaptureStore) -> Dict[str, Any]:
    """One row of the capture list."""
    out: Dict[str, Any] = {
        "id": record.id,
        "kind": record.kind,
        "name": record.name,
        "qualname": record.qualname,
        "file": record.file,
        "thread": record.thread,
        "nbytes": record_store.size_of(record.id),
    }
    if record.kind != "call":  # a breakpoint hit, or an attention record
        out.update(time=record.time, line=record.line, errors=len(record.errors))
        if record.kind == "hit" and _manager is not None:
            out["breakpoint"] = _manager.id_of(record.breakpoint)
    else:
        out.update(
            time=record.start_time,
            line=record.lineno,
            end_time=record.end_time,
            exception=None if record.exception is None else repr(record.exception),
        )
    return out


def detail(record: Any, record_store: CaptureStore) -> Dict[str, Any]:
    """Everything the capture view shows: summaries of every value, the stack, errors.

    Each summary also carries ``expression``: Python that reaches the value.
    """
    root = f"nopdb_lab.store[{record.id}]"
    out = brief(record, record_store)
    out["locals"] = _summaries(record.locals, f"{root}.locals")
    out["stack"] = [{"file": f, "line": n, "name": name} for f, n, name in record.raw_stack]
    if record.kind != "call":
        out["errors"] = [{"action": e.action, "message": e.message} for e in record.errors]
        if record.kind == "hit":
            out["evals"] = _summaries(record.evals, f"{root}.evals")
    else:
        out["args"] = _summaries(record.args, f"{root}.args")
        out["return_value"] = {
            **summarize(record.return_value),
            "expression": f"{root}.return_value",
        }
    return out


def _summaries(values: Dict[str, Any] | None, expression: str) -> Dict[str, Any]:
    return {
        k: {**summarize(v), "expression": f"{expression}[{k!r}]"} for k, v in (values or {}).items()
    }


def children(value: Any, expression: str) -> List[Dict[str, Any]] | None:
    """Summaries of a container's items (lazy expansion, at most 200), with expressions.

    Only keys that JSON carries as themselves (str, int) are listed by key; other dict
    keys are shown by position.
    """
    if isinstance(value, dict):
        items = list(value.items())[:200]
    elif isinstance(value, (list, tuple)):
        items = list(enumerate(value))[:200]
    else:
        return None
    out = []
    for key, item in items:
        summary = summarize(item)
        if isinstance(key, (str, int)) and not isinstance(key, bool):
            summary["expression"] = f"{expression}[{key!r}]"
        else:
            key = repr(key)
        out.append({"key": key, "summary": summary})
    return out


def source_text(file: str) -> str:
    """The source of ``file`` as the kernel sees it (also notebook cells, via linecache)."""
    lines = linecache.getlines(file)
    if not lines and file.startswith("<frozen ") and file.endswith(">"):
        # frozen stdlib modules (runpy, importlib._bootstrap) name no file in their code
        # but their module knows the file it was frozen from (when the stdlib is on disk)
        module = sys.modules.get(file[len("<frozen ") : -1])
        origin = getattr(module, "__file__", None)
        lines = linecache.getlines(origin) if isinstance(origin, str) else []
    if not lines:
        raise ProtocolError(f"no source available for {file!r}")
    return "".join(lines)


def tensor_payload(value: Any, index: List[int], dtype: str) -> Tuple[Dict[str, Any], bytes]:
    """Meta and raw bytes of ``value[index]`` as float32/float16/uint8 (C order)."""
    import numpy as np

    if dtype not in ("float32", "float16", "uint8"):
        raise ProtocolError(f"dtype must be float32, float16 or uint8, not {dtype!r}")
    if is_tensor(value):
        t = value.detach()
        for i in index:
            t = t[i]
        if t.dtype.is_complex:
            raise ProtocolError("complex tensors cannot be sent; take .abs() or .real first")
        array = t.to("cpu").float().numpy() if dtype != "uint8" else t.to("cpu").numpy()
    elif is_array(value):
        array = value[tuple(index)] if index else value
    else:
        raise ProtocolError(f"the value is a {type(value).__name__}, not a tensor or array")
    out = np.ascontiguousarray(array, dtype=np.dtype(dtype))
    if out.nbytes > MAX_TENSOR_BYTES:
        raise ProtocolError(
            f"slice of shape {list(out.shape)} is {out.nbytes / 1e6:.0f} MB; "
            f"index leading dimensions to stay under {MAX_TENSOR_BYTES >> 20} MB"
        )
    return {"shape": list(out.shape), "dtype": dtype}, out.tobytes()


class EventBatcher:
    """Collects pushed events and sends them merged, at most every ``interval`` seconds.

    Consecutive events of one kind become one message (``captures_added`` with a list of
    briefs, ``captures_evicted``/``captures_deleted`` with all ids), so the order between
    additions and removals is kept. Captures made in any thread may queue events; a timer
    thread sends them, and :func:`flush_all` sends them at the end of each cell.

    ``latest`` builds the events that only need their newest value (breakpoint states
    and hit counts): :meth:`poke` asks for them, and they are sent after the queued ones.
    """

    def __init__(
        self,
        send: Callable[[Dict[str, Any]], None],
        interval: float = BATCH_INTERVAL_S,
        max_batch: int = MAX_BATCH,
        latest: Callable[[], List[Dict[str, Any]]] | None = None,
    ) -> None:
        self._send = send
        self._interval = interval
        self._max_batch = max_batch
        self._latest = latest
        self._pending: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def push(self, event: Dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(event)
            self._schedule()

    def poke(self) -> None:
        """Have ``latest`` consulted at the next flush."""
        with self._lock:
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self._interval, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> None:
        with paused(), self._lock:
            pending, self._pending = self._pending, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for message in merge_events(pending, self._max_batch):
                self._send(message)
            for message in self._latest() if self._latest is not None else []:
                self._send(message)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._pending = []


def merge_events(events: List[Dict[str, Any]], max_batch: int) -> List[Dict[str, Any]]:
    """Merge runs of same-kind events (see :class:`EventBatcher`)."""
    merged: List[Dict[str, Any]] = []
    for event in events:
        last = merged[-1] if merged else None
        name = event["event"]
        if last is not None and last["event"] == name:
            if name == "captures_added" and len(last["captures"]) < max_batch:
                last["captures"].extend(event["captures"])
                continue
            if name in ("captures_evicted", "captures_deleted"):
                last["ids"] = last["ids"] + event["ids"]
                if "message" in event:
                    last["message"] = event["message"]
                continue
        copy = dict(event)
        if "captures" in copy:
            copy["captures"] = list(copy["captures"])  # extended later; keep the input intact
        merged.append(copy)
    return merged


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
        with paused():
            self._serve(msg["content"]["data"])

    def _serve(self, data: Dict[str, Any]) -> None:
        request_id = data.get("id")
        try:
            if data.get("v") != PROTOCOL_VERSION:
                raise ProtocolError(
                    f"protocol version {data.get('v')!r} is not supported "
                    f"(this kernel speaks {PROTOCOL_VERSION}); update nopdb-lab"
                )
            handler = getattr(self, f"op_{data.get('op')}", None)
            if handler is None:
                raise ProtocolError(f"unknown request {data.get('op')!r}")
            result, buffers = handler(**(data.get("args") or {}))
            self.events.flush()  # what the request changed is pushed before its answer
            self._send({"re": request_id, "ok": True, "result": result}, buffers)
        except Exception as exc:
            # KeyError's str() is the repr of its argument; show the message itself
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            self._send(
                {
                    "re": request_id,
                    "ok": False,
                    "error": {"type": type(exc).__name__, "message": message},
                }
            )

    # -- requests ---------------------------------------------------------------------
    def op_hello(self) -> Tuple[Dict[str, Any], None]:
        return {
            "protocol": PROTOCOL_VERSION,
            "version": __version__,
            "backend": backend_name(),
            "python": platform.python_version(),
            "attention_capture": attention_capture_active(),
            "store": {
                "count": len(self.store),
                "nbytes": self.store.nbytes,
                "budget": self.store.budget,
            },
        }, None

    def op_list(self) -> Tuple[Dict[str, Any], None]:
        return {"captures": [brief(r, self.store) for r in self.store]}, None

    def op_get(self, id: int) -> Tuple[Dict[str, Any], None]:
        return detail(self.store[id], self.store), None

    def op_value(self, id: int, path: List[Any]) -> Tuple[Dict[str, Any], None]:
        value, expression = resolve(self.store[id], path)
        return {
            "summary": summarize(value),
            "expression": expression,
            "children": children(value, expression),
        }, None

    def op_tensor(
        self, id: int, path: List[Any], index: List[int] | None = None, dtype: str = "float32"
    ) -> Tuple[Dict[str, Any], List[bytes]]:
        value, expression = resolve(self.store[id], path)
        meta, raw = tensor_payload(value, list(index or []), dtype)
        return {**meta, "expression": expression}, [raw]

    def op_source(self, file: str) -> Tuple[Dict[str, Any], None]:
        text = source_text(file)
        return {"file": file, "text": text, "cell": is_cell_file(file, text)}, None

    def op_heatmap(
        self,
        id: int,
        path: List[Any],
        rows_dim: int = -2,
        cols_dim: int = -1,
        index: Dict[str, int] | None = None,
        max_size: int = 512,
        reduce: str = "max",
        mean_dims: List[int] | None = None,
        grid_dims: List[int] | None = None,
    ) -> Tuple[Dict[str, Any], List[bytes]]:
        value, expression = resolve(self.store[id], path)
        fixed = {int(dim): int(i) for dim, i in (index or {}).items()}
        meta, plane = slice_2d(
            value, rows_dim, cols_dim, fixed, max_size, reduce, mean_dims or (), grid_dims or ()
        )
        return {**meta, "expression": expression}, [plane.tobytes()]

    def op_stack(self, id: int, path: List[Any]) -> Tuple[Dict[str, Any], None]:
        record = stack_captures(self.store, id, path)
        return brief(record, self.store), None

    def op_attention_capture(self, enabled: bool) -> Tuple[Dict[str, Any], None]:
        from ..analysis.attention import start_attention_capture, stop_attention_capture

        try:
            (start_attention_capture if enabled else stop_attention_capture)()
        except ImportError:
            raise ProtocolError("capturing attention needs torch in this kernel") from None
        return {"enabled": attention_capture_active()}, None

    def op_image(self, expression: str) -> Tuple[Dict[str, Any], List[bytes]]:
        meta, raw = evaluate_image(expression, user_namespace())
        return meta, [raw]

    def op_labels(self, expression: str) -> Tuple[Dict[str, Any], None]:
        return {"labels": evaluate_labels(expression, user_namespace())}, None

    def op_delete(self, id: int) -> Tuple[Dict[str, Any], None]:
        self.store.delete(id)
        return {}, None

    def op_clear(self) -> Tuple[Dict[str, Any], None]:
        self.store.clear()
        return {}, None

    def op_breakpoint_set(self, breakpoint: Dict[str, Any]) -> Tuple[Dict[str, Any], None]:
        return self.breakpoints.set(breakpoint), None

    def op_breakpoint_remove(self, id: str) -> Tuple[Dict[str, Any], None]:
        self.breakpoints.remove(id)
        return {}, None

    def op_breakpoint_sync(
        self, breakpoints: List[Dict[str, Any]], owner: str = ""
    ) -> Tuple[Dict[str, Any], None]:
        return {"breakpoints": self.breakpoints.sync(breakpoints, owner)}, None

    def op_breakpoint_list(self) -> Tuple[Dict[str, Any], None]:
        return {"breakpoints": self.breakpoints.states()}, None

    def op_locate(self, name: str) -> Tuple[Dict[str, Any], None]:
        return locate(name, user_namespace()), None

    def op_set_budget(self, nbytes: int) -> Tuple[Dict[str, Any], None]:
        self.store.set_budget(nbytes)
        return {"budget": self.store.budget}, None
