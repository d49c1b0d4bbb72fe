"""Comm ops for the gradient-flow view: open a flow, query its links, close it.

A flow is opened from a list of capture ids (a function's captures with gradients), a
stack record (its source captures) or a flow the user displayed with ``display(flow)``
(its token in the view JSON). The :class:`~nopdb_lab.analysis.flow.GradientFlow` stays in
the kernel, cached per flow id (at most :data:`MAX_FLOWS`, oldest closed first), so that
moving the view's sliders re-queries the transitions it already computed instead of
recomputing them. Numbers travel as binary buffers: node gradients as float32, links as
int32 ``src``/``dst`` and float32 ``value``, strongest first (the client applies a
threshold to the links it holds without asking again: top-k then threshold is the same
set as threshold then top-k).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from typing import Any, Dict, List, Tuple

from ..analysis.display import ShowError, displayed_flow
from ..analysis.flow import FlowError, GradientFlow, MissingGradientError, gradient_flow
from ..records import ProtocolError

#: Flows kept open at once; opening another closes the least recently used one.
MAX_FLOWS = 8

_flows: "OrderedDict[str, GradientFlow]" = OrderedDict()
_counter = itertools.count(1)


def _node_spec(nodes: str, pool: int | None) -> Any:
    if nodes == "pool":
        if not pool or pool < 1:
            raise ProtocolError("nodes 'pool' needs a positive pool size")
        return ("pool", int(pool))
    return nodes


def _records_for(session: Any, ids: List[int] | None, stack: int | None) -> List[Any]:
    if (ids is None) == (stack is None):
        raise ProtocolError("flow_open needs exactly one of ids, stack or display")
    if stack is not None:
        record = session.store[stack]
        source_ids = getattr(record, "source_ids", None)
        if source_ids is None:
            raise ProtocolError(f"capture #{stack} is a {record.kind}, not a stack of captures")
        ids = list(source_ids)
    assert ids is not None
    if not ids:
        raise ProtocolError("flow_open: no capture ids given")
    records = [session.store[i] for i in ids]
    if not any(getattr(r, "grads", None) for r in records):
        raise ProtocolError(
            "these captures hold no gradients: capture with capture_calls(fn, grads=True) "
            "around the forward pass and call backward() inside it"
        )
    return records


def _floats(values: Any) -> bytes:
    import numpy as np

    return np.ascontiguousarray(np.asarray(values, dtype=np.float32)).tobytes()


def _layer_json(flow: GradientFlow, index: int, grads: Any, missing: str | None) -> Dict:
    layer = flow.layers[index]
    try:
        offsets = flow.offsets(index, 0)
        on_input: Dict[str, Any] | None = {k: list(v) for k, v in offsets.items()}
    except FlowError:
        on_input = None
    norm = None if grads is None else float(math.sqrt(float((grads.double() ** 2).sum())))
    return {
        "index": index,
        "name": str(layer["name"]),
        "origin": str(layer["origin"]),
        "shape": [int(s) for s in layer["shape"]],
        "nodes": int(layer["nodes"]),
        "grid": [int(s) for s in layer["grid"]],
        "node_kind": str(layer["node_kind"]),
        "feeds_next_call": bool(layer["feeds_next_call"]),
        "grad_norm": norm,
        "grads_missing": missing,
        "offsets_on_input": on_input,
    }


def describe_flow(flow_id: str, flow: GradientFlow) -> Tuple[Dict[str, Any], List[bytes]]:
    """Layers (network order), each layer's node gradients (one float32 buffer each,
    empty when that layer's gradient was not captured), then each layer's node values
    (its representation, one float32 buffer each)."""
    layers, buffers = [], []
    for index in range(len(flow.layers)):
        try:
            grads = flow.node_grads(index)
            missing = None
        except MissingGradientError as exc:
            grads, missing = None, str(exc)
        layers.append(_layer_json(flow, index, grads, missing))
        buffers.append(b"" if grads is None else _floats(grads.numpy()))
    buffers += [_floats(flow.node_values(index).numpy()) for index in range(len(flow.layers))]
    meta = {"flow": flow_id, "kind": flow.kind, "sample": flow.sample, "layers": layers}
    return meta, buffers


def _keep(flow: GradientFlow) -> str:
    flow_id = f"flow-{next(_counter)}"
    _flows[flow_id] = flow
    while len(_flows) > MAX_FLOWS:
        _flows.popitem(last=False)
    return flow_id


def _get(flow_id: str) -> GradientFlow:
    if flow_id not in _flows:
        raise ProtocolError(
            f"no open flow {flow_id!r} (closed, or one of more than {MAX_FLOWS} opened since): "
            "open it again"
        )
    _flows.move_to_end(flow_id)
    return _flows[flow_id]


def flow_open_op(
    session: Any,
    ids: List[int] | None = None,
    stack: int | None = None,
    display: str | None = None,
    nodes: str = "spatial",
    pool: int | None = None,
    kind: str = "gradient",
    sample: int | None = None,
) -> Tuple[Dict[str, Any], List[bytes]]:
    try:
        if display is not None:
            if ids is not None or stack is not None:
                raise ProtocolError("flow_open needs exactly one of ids, stack or display")
            flow = displayed_flow(display)
        else:
            records = _records_for(session, ids, stack)
            flow = gradient_flow(records, _node_spec(nodes, pool), kind, sample=sample)
    except (FlowError, ShowError) as exc:
        raise ProtocolError(str(exc)) from None
    return describe_flow(_keep(flow), flow)


def _region(box: List[int] | None) -> Tuple[int, ...] | None:
    return None if box is None else tuple(int(b) for b in box)


def flow_links_op(
    session: Any,
    flow: str,
    layer: int,
    top_k: int = 2000,
    threshold: float | None = None,
    src_region: List[int] | None = None,
    dst_region: List[int] | None = None,
    kind: str | None = None,
) -> Tuple[Dict[str, Any], List[bytes]]:
    gf = _get(flow)
    try:
        wire = gf.to_wire(
            layer,
            top_k,
            threshold,
            regions={"src": _region(src_region), "dst": _region(dst_region)},
            kind=kind,
        )
    except FlowError as exc:
        raise ProtocolError(str(exc)) from None

    def offsets(o: Dict[str, Any] | None) -> Dict[str, Any] | None:
        return None if o is None else {k: list(v) for k, v in o.items()}

    meta = {
        "flow": flow,
        "layer": int(wire["layer"]),
        "kind": str(wire["kind"]),
        "count": int(len(wire["src"])),
        "total_links": wire["total_links"],
        "grid": wire["grid"],
        "offsets": {k: offsets(v) for k, v in wire["offsets"].items()},
        "src_grads_missing": wire.get("src_grads_missing"),
        "dst_grads_missing": wire.get("dst_grads_missing"),
    }
    buffers = [
        wire["src"].tobytes(),
        wire["dst"].tobytes(),
        wire["value"].tobytes(),
        b"" if wire["src_grads"] is None else wire["src_grads"].tobytes(),
        b"" if wire["dst_grads"] is None else wire["dst_grads"].tobytes(),
    ]
    return meta, buffers


def flow_close_op(session: Any, flow: str) -> Tuple[Dict[str, Any], None]:
    return {"closed": _flows.pop(flow, None) is not None}, None


def open_flow(flow_id: str) -> GradientFlow:
    """The open flow ``flow_id`` (for tests and kernel expressions)."""
    return _get(flow_id)
