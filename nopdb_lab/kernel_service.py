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
from typing import Any, Dict, List, Tuple

from . import __version__
from .backends import backend_name
from .capture_store import CaptureStore, Eviction, store
from .summary import is_array, is_tensor, summarize

TARGET = "nopdb_lab"
PROTOCOL_VERSION = 1
MAX_TENSOR_BYTES = 64 << 20

log = logging.getLogger("nopdb_lab")
_services: List["CommService"] = []


class ProtocolError(Exception):
    """A request the kernel cannot serve; sent back as a structured error."""


def start() -> str:
    """Enable the store and register the comm target (idempotent); returns the target."""
    from comm import get_comm_manager

    store.enable()
    manager = get_comm_manager()
    if TARGET not in getattr(manager, "targets", {}):
        manager.register_target(TARGET, _on_comm_open)
    return TARGET


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
    if record.kind == "hit":
        out.update(time=record.time, line=record.line, errors=len(record.errors))
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
    if record.kind == "hit":
        out["errors"] = [{"action": e.action, "message": e.message} for e in record.errors]
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


def resolve(record: Any, path: List[Any]) -> Tuple[Any, str]:
    """The value at ``path`` (e.g. ``["locals", "attn", 0]``) and Python that reaches it."""
    if not path or path[0] not in ("args", "locals", "return_value", "yields"):
        raise ProtocolError(f"path must start with args, locals, return_value or yields: {path}")
    value = getattr(record, path[0])
    expression = f"nopdb_lab.store[{record.id}].{path[0]}"
    for step in path[1:]:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProtocolError(f"no item {step!r} at {expression}: {exc}") from None
        expression += f"[{step!r}]"
    return value, expression


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


class CommService:
    """Serves one front-end comm: answers requests, pushes store events."""

    def __init__(self, comm: Any, record_store: CaptureStore) -> None:
        self.comm = comm
        self.store = record_store
        comm.on_msg(self._on_msg)
        comm.on_close(self._on_close)
        record_store.add_listener(self._on_store_event)

    def _on_close(self, msg: Dict[str, Any]) -> None:
        self.store.remove_listener(self._on_store_event)
        if self in _services:
            _services.remove(self)

    def _send(self, data: Dict[str, Any], buffers: List[bytes] | None = None) -> None:
        self.comm.send({"v": PROTOCOL_VERSION, **data}, buffers=buffers)

    def _on_store_event(self, kind: str, payload: Any) -> None:
        if kind == "added":
            self._send({"event": "capture_added", "capture": brief(payload, self.store)})
        elif kind == "evicted":
            assert isinstance(payload, Eviction)
            self._send({"event": "captures_evicted", "ids": payload.ids, "message": str(payload)})
        elif kind == "deleted":
            self._send({"event": "captures_deleted", "ids": payload})

    def _on_msg(self, msg: Dict[str, Any]) -> None:
        data = msg["content"]["data"]
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
        return {"file": file, "text": source_text(file)}, None

    def op_delete(self, id: int) -> Tuple[Dict[str, Any], None]:
        self.store.delete(id)
        return {}, None

    def op_clear(self) -> Tuple[Dict[str, Any], None]:
        self.store.clear()
        return {}, None

    def op_set_budget(self, nbytes: int) -> Tuple[Dict[str, Any], None]:
        self.store.set_budget(nbytes)
        return {"budget": self.store.budget}, None
