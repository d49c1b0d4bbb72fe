"""Values stacked across captures: every layer's attention in one tensor.

``stack_captures(store, id, path)`` takes the value at ``path`` in capture ``id`` and the
same value in every other stored capture of the same function and kind, oldest first, and
stacks them along a new leading dimension (the layers, for one forward pass through a
stack of identical blocks). When the stacked maps are attention-shaped (…×N×N with rows
summing to 1), the record also holds their rollout, with heads fused by mean (``rollout``),
max (``rollout_max``) and min (``rollout_min``). The result is itself a record in the
store, so the capture browser lists it and the heatmap viewer opens it (layer × head grid).
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Dict, Iterable, List

from ..call_info import RawStack, next_id, stack_summary
from ..records import EventRecord, ProtocolError, Record, resolve
from ..tracing import observers
from .attention_lazy import LazyStack, is_lazy


class StackRecord(EventRecord):
    """Values of one path stacked over several captures of one function.

    Attributes: ``id``, ``kind`` (``"stack"``), ``qualname``, ``source_ids`` (the captures
    stacked, oldest first), ``path``, ``locals`` (``{"stacked": tensor, "rollout": tensor
    or None}``, plus ``rollout_max``/``rollout_min`` for attention), ``time``, ``thread``,
    ``stack`` (of the first capture).
    """

    kind = "stack"

    def __init__(self, first: Record, source_ids: List[int], path: List[Any], values: Any):
        self.id = next_id()
        self.time = time.time()
        self.name = first.name
        self.qualname = first.qualname
        self.file = first.file
        self.line = first.line or 0
        self.thread = threading.current_thread().name
        self.source_ids = source_ids
        self.path = path
        self.locals: Dict[str, Any] = values
        self.errors: List[Any] = []
        self.raw_stack: RawStack = list(first.raw_stack)

    def held_values(self) -> Iterable[Any]:
        return list((self.locals or {}).values())

    @property
    def stack(self) -> traceback.StackSummary:
        return stack_summary(self.raw_stack)

    def __repr__(self) -> str:
        shape = tuple(getattr(self.locals.get("stacked"), "shape", ()))
        return (
            f"StackRecord(id={self.id}, {self.qualname}, sources={len(self.source_ids)}, {shape})"
        )


def stack_captures(record_store: Any, record_id: int, path: List[Any]) -> StackRecord:
    """Stack ``path`` over every stored capture like ``record_id`` (see the module doc)."""
    import torch

    first = record_store[record_id]
    peers = [
        r
        for r in record_store
        if r.kind == first.kind and r.qualname == first.qualname and r.file == first.file
    ]
    values = []
    ids = []
    reference, _ = resolve(first, path)
    shape = tuple(getattr(reference, "shape", ()))
    if not shape:
        raise ProtocolError(
            f"{path} of capture {record_id} is not a tensor or array with dimensions"
        )
    for record in peers:
        try:
            value, _ = resolve(record, path)
        except ProtocolError:
            continue
        if tuple(getattr(value, "shape", ())) != shape:
            continue
        values.append(value if is_lazy(value) else torch.as_tensor(value).detach())
        ids.append(record.id)
    if len(values) < 2:
        raise ProtocolError(
            f"only one capture of {first.qualname} has {path} with shape {list(shape)}; "
            "nothing to stack"
        )
    if any(is_lazy(v) for v in values):  # lazy attention maps: stacked and rolled out lazily
        return _stack_lazy(first, ids, path, values)
    device = values[0].device
    stacked = torch.stack([v.to(device) for v in values])
    result = StackRecord(first, ids, list(path), {"stacked": stacked, "rollout": None})
    if _looks_like_attention(stacked):
        from .attention import attention_rollout

        maps = list(stacked if stacked.dim() >= 4 else stacked.unsqueeze(1))  # L×(B×)H×N×N
        result.locals["rollout"] = attention_rollout(maps, head_fusion="mean")
        result.locals["rollout_max"] = attention_rollout(maps, head_fusion="max")
        result.locals["rollout_min"] = attention_rollout(maps, head_fusion="min")
    observers.publish(result)
    return result


def _stack_lazy(first: Any, ids: List[int], path: List[Any], values: List[Any]) -> StackRecord:
    """Lazy attention maps stacked as a :class:`LazyStack` (L×B×H×Nq×Nk, nothing
    materialised); rollouts are streamed over row blocks (square maps only)."""
    from .attention import attention_rollout

    stacked = LazyStack(values)
    result = StackRecord(first, ids, list(path), {"stacked": stacked, "rollout": None})
    if stacked.shape[-1] == stacked.shape[-2]:
        for key, fusion in (("rollout", "mean"), ("rollout_max", "max"), ("rollout_min", "min")):
            result.locals[key] = attention_rollout(values, head_fusion=fusion)
    observers.publish(result)
    return result


def _looks_like_attention(stacked: Any) -> bool:
    """Square last two dims with rows that sum to 1 (probabilities)."""
    import torch

    if stacked.dim() < 3 or stacked.shape[-1] != stacked.shape[-2]:
        return False
    if not stacked.is_floating_point():
        return False
    sums = stacked.float().sum(-1)
    return bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3))
