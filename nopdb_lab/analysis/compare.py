"""Compare two captures of the same shape: ``nopdb.compare(a, b)``.

A clean and a patched run, two layers, a live capture and one loaded from a bundle: the
result is a new record of kind ``"compare"`` in the store, holding ``A − B``
(``locals["diff"]``) and the relative difference (``locals["relative"]``), so the capture
browser lists it and the heatmap viewer opens it like any other capture.

The relative difference is ``(A − B) / ((|A| + |B|) / 2)``, 0 where both are 0: it is
signed, bounded in [−2, 2] and defined everywhere, so a heatmap of it has no infinities
where B is zero (``(A − B) / |B|`` would). torch and numpy are imported inside functions.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Dict, Iterable, List, Tuple


class CompareRecord:
    """``A − B`` and their relative difference, as a store record.

    Attributes: ``id``, ``kind`` (``"compare"``), ``name``/``qualname`` (``"A − B"``,
    named after both sides), ``source_ids`` (the records compared, when records were
    given), ``sources`` (a description of each side), ``locals`` (``diff``, ``relative``,
    ``max_abs_diff``), ``time``, ``thread``, ``file``, ``line``, ``errors``, ``raw_stack``.
    """

    kind = "compare"

    def __init__(self, name_a: str, name_b: str, source_ids: List[int], values: Dict[str, Any]):
        from ..call_info import next_id

        self.id = next_id()
        self.time = time.time()
        self.name = f"{name_a} − {name_b}"
        self.qualname = self.name
        self.file = ""
        self.line = 0
        self.thread = threading.current_thread().name
        self.source_ids = source_ids
        self.sources = [name_a, name_b]
        self.locals: Dict[str, Any] = values
        self.errors: List[Any] = []
        self.raw_stack: List[Tuple[str, int, str]] = []

    @property
    def stack(self) -> traceback.StackSummary:
        return traceback.StackSummary.from_list([])

    # the Record protocol (records.py)
    def value_parts(self) -> Tuple[str, ...]:
        return ("locals",)

    def held_values(self) -> Iterable[Any]:
        return list(self.locals.values())

    def brief_fields(self) -> Dict[str, Any]:
        return {"errors": 0, "sources": list(self.source_ids)}

    def describe(self, root: str, one: Any, many: Any) -> Dict[str, Any]:
        return {"errors": [], "sources": list(self.sources)}

    def origin(self) -> Any:
        return None

    def __repr__(self) -> str:
        shape = tuple(getattr(self.locals.get("diff"), "shape", ()))
        return f"CompareRecord(id={self.id}, {self.name!r}, {shape})"


def _is_value(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _record_value(record: Any) -> Tuple[Any, str]:
    """The one value a record stands for: attention weights, a stack, or its only tensor."""
    label = f"#{record.id} {getattr(record, 'qualname', None) or getattr(record, 'name', '')}"
    kind = getattr(record, "kind", None)
    if kind == "attention":
        return record.weights, f"{label}.weights"
    if kind == "stack":
        return record.locals["stacked"], f"{label}.stacked"
    if kind == "compare":
        return record.locals["diff"], f"{label}.diff"
    found = []
    for part in ("return_value", "args", "locals", "evals"):
        holder = getattr(record, part, None)
        if part == "return_value":
            if _is_value(holder):
                found.append((holder, f"{label}.return_value"))
            continue
        for key, value in (holder or {}).items():
            if _is_value(value) and all(value is not f for f, _ in found):
                found.append((value, f"{label}.{key}"))
    if len(found) == 1:
        return found[0]
    names = ", ".join(n for _, n in found) or "none"
    raise ValueError(
        f"capture {label} holds {len(found)} tensors or arrays ({names}); pass "
        "(capture, 'name') to say which one to compare"
    )


def _resolve(side: Any, store: Any) -> Tuple[Any, str, int | None]:
    """``(value, label, record id)`` for one side of a comparison."""
    if isinstance(side, tuple) and side and not _is_value(side):
        head, *keys = side
        record = store[head] if isinstance(head, int) else head
        label = f"#{record.id} {getattr(record, 'qualname', '')}"
        value: Any = None
        first = keys[0] if keys else None
        for part in ("locals", "args", "evals"):
            holder = getattr(record, part, None) or {}
            if first in holder:
                value = holder[first]
                break
        else:
            if first == "return_value":
                value = record.return_value
            elif hasattr(record, str(first)):
                value = getattr(record, str(first))
            else:
                raise KeyError(f"capture {label} has no value named {first!r}")
        for key in keys[1:]:
            value = value[key]
        return value, label + "." + ".".join(str(k) for k in keys), record.id
    if isinstance(side, int) and not isinstance(side, bool):
        side = store[side]
    if hasattr(side, "kind") and hasattr(side, "id") and not _is_value(side):
        value, label = _record_value(side)
        return value, label, side.id
    if _is_value(side):
        return side, "value", None
    raise TypeError(
        f"compare takes tensors, arrays, captures, store ids or (capture, 'name'), got {side!r:.80}"
    )


def compare(a: Any, b: Any, *, store: Any = None) -> CompareRecord:
    """``A − B`` and their relative difference, added to the store as a new record.

    ``a`` and ``b`` are tensors or arrays, captures (attention records give their weights,
    stacks their stacked values, other captures their only tensor), store ids, or
    ``(capture or id, name, index...)`` to pick one value. They must have the same shape
    (a clear ``ValueError`` names both shapes otherwise). The result is computed in
    float32 (float64 if either side is float64), on ``a``'s device.
    """
    from ..capture_store import store as default_store

    target = default_store if store is None else store
    value_a, name_a, id_a = _resolve(a, target)
    value_b, name_b, id_b = _resolve(b, target)
    shape_a = tuple(getattr(value_a, "shape", ()))
    shape_b = tuple(getattr(value_b, "shape", ()))
    if shape_a != shape_b:
        raise ValueError(
            f"cannot compare {name_a} with shape {list(shape_a)} and {name_b} with shape "
            f"{list(shape_b)}: the shapes differ"
        )
    diff, relative = _difference(value_a, value_b)
    values = {"diff": diff, "relative": relative, "max_abs_diff": _max_abs(diff)}
    ids = [i for i in (id_a, id_b) if i is not None]
    record = CompareRecord(name_a, name_b, ids, values)
    target.add(record)
    return record


def _difference(a: Any, b: Any) -> Tuple[Any, Any]:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and (isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor)):
        ta = torch.as_tensor(a).detach()
        tb = torch.as_tensor(b).detach().to(ta.device)
        wide = torch.float64 if torch.float64 in (ta.dtype, tb.dtype) else torch.float32
        if ta.is_complex() or tb.is_complex():
            raise ValueError("compare works on real values; these are complex")
        ta, tb = ta.to(wide), tb.to(wide)
        diff = ta - tb
        scale = (ta.abs() + tb.abs()) / 2
        relative = torch.where(scale > 0, diff / torch.where(scale > 0, scale, 1), 0.0)
        return diff, relative
    import numpy as np

    na, nb = np.asarray(a), np.asarray(b)
    if np.iscomplexobj(na) or np.iscomplexobj(nb):
        raise ValueError("compare works on real values; these are complex")
    wide = np.float64 if np.float64 in (na.dtype, nb.dtype) else np.float32
    na, nb = na.astype(wide), nb.astype(wide)
    diff = na - nb
    scale = (np.abs(na) + np.abs(nb)) / 2
    relative = np.where(scale > 0, diff / np.where(scale > 0, scale, 1), 0.0).astype(wide)
    return diff, relative


def _max_abs(diff: Any) -> float:
    if diff.size == 0 if not hasattr(diff, "numel") else diff.numel() == 0:
        return 0.0
    return float(abs(diff).max())
