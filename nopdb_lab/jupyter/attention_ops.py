"""Attention views the kernel computes for the front end: the attention-sink grid.

``attention_sinks`` takes one attention record and sums up every record of its block (the
layers of one forward pass or one generation): per layer × head, the mean share of each
query's probability on the first ``k`` tokens. The result is a ``view`` record in the
store (counted against its budget), so the heatmap viewer opens it like any capture.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from ..analysis.attention_lazy import attention_sinks
from ..analysis.display import ViewRecord, publish_view
from ..records import ProtocolError


def block_records(store: Any, record: Any) -> List[Any]:
    """The attention records of ``record``'s block in the store, oldest (first layer)
    first; just ``record`` when it has no block (made before blocks were numbered)."""
    if getattr(record, "block", None) is None:
        return [record]
    return [
        r
        for r in store
        if getattr(r, "kind", None) == "attention" and getattr(r, "block", None) == record.block
    ]


def attention_sinks_op(session: Any, id: int, k: int = 1) -> Tuple[Dict[str, Any], None]:
    record = session.store[id]
    if getattr(record, "kind", None) != "attention":
        raise ProtocolError(
            f"capture #{id} is a {getattr(record, 'kind', '?')} record; the sink grid is "
            "computed from attention records (capture_attention or the Capture attention switch)"
        )
    if k < 1:
        raise ProtocolError(f"k must be at least 1 (the first k tokens), not {k}")
    records = block_records(session.store, record)
    n_keys = min(int(r.shape[-1]) for r in records)
    if k > n_keys:
        raise ProtocolError(f"k = {k} is more than the {n_keys} tokens the maps have")
    heads = {int(r.shape[1]) for r in records}
    if len(heads) != 1:  # e.g. an encoder-decoder's blocks differ: keep the record's own
        records = [r for r in records if int(r.shape[1]) == int(record.shape[1])]
    sinks = attention_sinks(records, k)
    layers = [r.module or f"#{r.id}" for r in records]
    first = "token 0" if k == 1 else f"tokens 0–{k - 1}"
    view = ViewRecord(
        sinks,
        f"attention sinks: share on {first}, {len(records)} layers × {sinks.shape[1]} heads",
        None,
    )
    view.file, view.line = record.file, record.line  # where the attention ran
    view.locals["layers"] = layers
    view.locals["records"] = [r.id for r in records]
    publish_view(view)
    return {
        "id": view.id,
        "path": ["locals", "value"],
        "expression": f"nopdb_lab.store[{view.id}].locals['value']",
        "shape": [int(n) for n in sinks.shape],
        "layers": layers,
        "records": [r.id for r in records],
        "k": k,
        "steps": max(int(r.steps) for r in records),
        "tokens": n_keys,
    }, None
