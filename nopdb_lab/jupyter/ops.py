"""The op table: one function per request, named ``<op>_op``, taking the session first.

A new op is a function here, an entry in :data:`OPS` and a request/result pair in
``protocol.schema.json`` (``tests/test_protocol_contract.py`` checks they agree).
Arguments arrive already validated against the schema.
"""

from __future__ import annotations

import platform
from typing import Any, Callable, Dict, List, Protocol, Tuple

from .._version import __version__
from ..analysis.attention import attention_capture_active
from ..analysis.gradients import gradient_capture_active
from ..analysis.stacking import stack_captures
from ..analysis.summary import summarize
from ..capture_store import CaptureStore
from ..records import ProtocolError, resolve
from ..tracing.backends import backend_name
from .attention_ops import attention_sinks_op
from .breakpoint_manager import BreakpointManager, is_cell_file
from .bundle_ops import bundle_open_op, bundle_save_op, compare_op
from .flow_ops import flow_close_op, flow_links_op, flow_open_op
from .gradient_ops import gradient_capture_op, layer_strip_op, value_of
from .probe_ops import (
    probe_delta_op,
    probe_edit_op,
    probe_heatmap_op,
    probe_list_op,
    probe_reset_op,
    probe_undo_op,
)
from .protocol import PROTOCOL_VERSION
from .source_lookup import locate
from .user_values import evaluate_image, evaluate_labels, user_namespace
from .wire import brief, children, detail, heatmap_reply, source_text, tensor_payload

OpResult = Tuple[Dict[str, Any], List[bytes] | None]


class Session(Protocol):
    """What an op may use: the store and the kernel's breakpoints."""

    store: CaptureStore
    breakpoints: BreakpointManager


def hello_op(session: Session) -> Tuple[Dict[str, Any], None]:
    return {
        "protocol": PROTOCOL_VERSION,
        "version": __version__,
        "backend": backend_name(),
        "python": platform.python_version(),
        "attention_capture": attention_capture_active(),
        "gradient_capture": gradient_capture_active(),
        "store": {
            "count": len(session.store),
            "nbytes": session.store.nbytes,
            "budget": session.store.budget,
        },
    }, None


def list_op(session: Session) -> Tuple[Dict[str, Any], None]:
    return {"captures": [brief(r, session.store) for r in session.store]}, None


def get_op(session: Session, id: int) -> Tuple[Dict[str, Any], None]:
    return detail(session.store[id], session.store), None


def value_op(session: Session, id: int, path: List[Any]) -> Tuple[Dict[str, Any], None]:
    value, expression = resolve(session.store[id], path)
    return {
        "summary": summarize(value),
        "expression": expression,
        "children": children(value, expression),
    }, None


def tensor_op(
    session: Session,
    id: int,
    path: List[Any],
    index: List[int] | None = None,
    dtype: str = "float32",
) -> Tuple[Dict[str, Any], List[bytes]]:
    value, expression = resolve(session.store[id], path)
    meta, raw = tensor_payload(value, list(index or []), dtype)
    return {**meta, "expression": expression}, [raw]


def source_op(session: Session, file: str) -> Tuple[Dict[str, Any], None]:
    text = source_text(file)
    return {"file": file, "text": text, "cell": is_cell_file(file, text)}, None


def heatmap_op(
    session: Session,
    id: int,
    path: List[Any],
    rows_dim: int = -2,
    cols_dim: int = -1,
    index: Dict[str, int] | None = None,
    max_size: int = 512,
    reduce: str = "max",
    mean_dims: List[int] | None = None,
    grid_dims: List[int] | None = None,
    of: str = "value",
    region: Dict[str, int] | None = None,
) -> Tuple[Dict[str, Any], List[bytes]]:
    value, expression = value_of(session.store[id], path, of)
    return heatmap_reply(
        value,
        expression,
        rows_dim,
        cols_dim,
        index,
        max_size,
        reduce,
        mean_dims,
        grid_dims,
        region,
    )


def stack_op(session: Session, id: int, path: List[Any]) -> Tuple[Dict[str, Any], None]:
    record = stack_captures(session.store, id, path)
    return brief(record, session.store), None


def attention_capture_op(session: Session, enabled: bool) -> Tuple[Dict[str, Any], None]:
    from ..analysis.attention import start_attention_capture, stop_attention_capture

    try:
        (start_attention_capture if enabled else stop_attention_capture)()
    except ImportError:
        raise ProtocolError("capturing attention needs torch in this kernel") from None
    return {"enabled": attention_capture_active()}, None


def image_op(session: Session, expression: str) -> Tuple[Dict[str, Any], List[bytes]]:
    meta, raw = evaluate_image(expression, user_namespace())
    return meta, [raw]


def labels_op(session: Session, expression: str) -> Tuple[Dict[str, Any], None]:
    return {"labels": evaluate_labels(expression, user_namespace())}, None


def delete_op(session: Session, id: int) -> Tuple[Dict[str, Any], None]:
    session.store.delete(id)
    return {}, None


def clear_op(session: Session) -> Tuple[Dict[str, Any], None]:
    session.store.clear()
    return {}, None


def breakpoint_set_op(session: Session, breakpoint: Dict[str, Any]) -> Tuple[Dict[str, Any], None]:
    return session.breakpoints.set(breakpoint), None


def breakpoint_remove_op(session: Session, id: str) -> Tuple[Dict[str, Any], None]:
    session.breakpoints.remove(id)
    return {}, None


def breakpoint_sync_op(
    session: Session, breakpoints: List[Dict[str, Any]], owner: str = ""
) -> Tuple[Dict[str, Any], None]:
    return {"breakpoints": session.breakpoints.sync(breakpoints, owner)}, None


def breakpoint_list_op(session: Session) -> Tuple[Dict[str, Any], None]:
    return {"breakpoints": session.breakpoints.states()}, None


def locate_op(session: Session, name: str) -> Tuple[Dict[str, Any], None]:
    return locate(name, user_namespace()), None


def set_budget_op(session: Session, nbytes: int) -> Tuple[Dict[str, Any], None]:
    session.store.set_budget(nbytes)
    return {"budget": session.store.budget}, None


#: Every request the kernel serves: op name -> handler(session, **args).
OPS: Dict[str, Callable[..., OpResult]] = {
    "hello": hello_op,
    "list": list_op,
    "get": get_op,
    "value": value_op,
    "tensor": tensor_op,
    "source": source_op,
    "heatmap": heatmap_op,
    "stack": stack_op,
    "attention_capture": attention_capture_op,
    "attention_sinks": attention_sinks_op,
    "image": image_op,
    "labels": labels_op,
    "delete": delete_op,
    "clear": clear_op,
    "breakpoint_set": breakpoint_set_op,
    "breakpoint_remove": breakpoint_remove_op,
    "breakpoint_sync": breakpoint_sync_op,
    "breakpoint_list": breakpoint_list_op,
    "locate": locate_op,
    "set_budget": set_budget_op,
    "flow_open": flow_open_op,
    "flow_links": flow_links_op,
    "flow_close": flow_close_op,
    "gradient_capture": gradient_capture_op,
    "layer_strip": layer_strip_op,
    "probe_list": probe_list_op,
    "probe_edit": probe_edit_op,
    "probe_undo": probe_undo_op,
    "probe_reset": probe_reset_op,
    "probe_delta": probe_delta_op,
    "probe_heatmap": probe_heatmap_op,
}

OPS.update({"bundle_save": bundle_save_op, "bundle_open": bundle_open_op, "compare": compare_op})
