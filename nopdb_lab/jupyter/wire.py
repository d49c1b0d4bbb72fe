"""Wire encoding: records, values and tensors as the protocol's JSON and binary buffers."""

from __future__ import annotations

import linecache
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

from ..analysis.summary import check_payload_size, is_array, is_tensor, summarize
from ..capture_store import CaptureStore
from ..records import ProtocolError, Record
from .gradient_ops import grad_marker, gradients_section

if TYPE_CHECKING:
    from ..analysis.attention import AttentionRecord
    from ..analysis.stacking import StackRecord
    from ..breakpoint import BreakpointHit
    from ..call_info import CallInfo

    def _every_kind_is_a_record(
        call: CallInfo, hit: BreakpointHit, attention: AttentionRecord, stack: StackRecord
    ) -> List[Record]:
        """mypy checks here that each record kind implements the Record protocol."""
        return [call, hit, attention, stack]


MAX_TENSOR_BYTES = 64 << 20

#: The kernel's breakpoint manager's id lookup, set by the service when it starts
#: (a hit's ``breakpoint`` field names the front-end breakpoint that fired).
breakpoint_id: Callable[[Any], str | None] | None = None


def brief(record: Record, record_store: CaptureStore) -> Dict[str, Any]:
    """One row of the capture list."""
    out: Dict[str, Any] = {
        "id": record.id,
        "kind": record.kind,
        "name": record.name,
        "qualname": record.qualname,
        "file": record.file,
        "thread": record.thread,
        "nbytes": record_store.size_of(record.id),
        "time": record.time,
        "line": record.line,
        **record.brief_fields(),
    }
    marker = grad_marker(record)
    if marker is not None:
        out["grads"] = marker
    origin = record.origin()
    if origin is not None and breakpoint_id is not None:
        out["breakpoint"] = breakpoint_id(origin)
    bundle = getattr(record, "bundle", None)
    if bundle:  # loaded from a capture bundle
        out["bundle"] = bundle
        out["original_id"] = getattr(record, "original_id", None)
    return out


def detail(record: Record, record_store: CaptureStore) -> Dict[str, Any]:
    """Everything the capture view shows: summaries of every value, the stack, errors.

    Each summary also carries ``expression``: Python that reaches the value.
    """
    root = f"nopdb_lab.store[{record.id}]"
    out = brief(record, record_store)
    out["locals"] = _summaries(record.locals, f"{root}.locals")
    out["stack"] = [{"file": f, "line": n, "name": name} for f, n, name in record.raw_stack]
    out.update(record.describe(root, _summary, _summaries))
    gradients = gradients_section(record)
    if gradients is not None:
        out["gradients"] = gradients
    return out


def _summary(value: Any, expression: str) -> Dict[str, Any]:
    return {**summarize(value), "expression": expression}


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
    if is_tensor(value) or is_array(value):
        try:  # from the shapes alone: refuse before copying anything
            check_payload_size(value, index, dtype, MAX_TENSOR_BYTES)
        except (ValueError, IndexError) as exc:
            raise ProtocolError(str(exc)) from None
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


def heatmap_reply(
    value: Any,
    expression: str,
    rows_dim: int,
    cols_dim: int,
    index: Dict[str, int] | None,
    max_size: int,
    reduce: str,
    mean_dims: List[int] | None,
    grid_dims: List[int] | None,
    region: Dict[str, int] | None,
) -> Tuple[Dict[str, Any], List[bytes]]:
    """The ``heatmap`` reply (also ``probe_heatmap``'s): the pooled 2-D slice of ``value``
    (``index`` keyed by the dimension as a string, as it travels) and its float32 bytes."""
    from ..analysis.heatmap import slice_2d

    fixed = {int(dim): int(i) for dim, i in (index or {}).items()}
    meta, plane = slice_2d(
        value,
        rows_dim,
        cols_dim,
        fixed,
        max_size,
        reduce,
        mean_dims or (),
        grid_dims or (),
        region,
    )
    return {**meta, "expression": expression}, [plane.tobytes()]
