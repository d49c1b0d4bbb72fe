"""Compact, JSON-ready summaries of captured values (computed where the values live).

Tensors and arrays get shape, dtype, device and min/max/mean/std over their finite
values plus NaN/Inf counts; reductions run on the tensor's own device and only scalars
come back, so summarising a CUDA tensor copies nothing to the host and keeps no copy on
the device. Containers report their length (their items are summarised on request, by
path); other objects get a bounded ``repr``.
"""

from __future__ import annotations

import math
import reprlib
import sys
from typing import Any, Dict

_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 120
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 8
REPR_LIMIT = 200

Summary = Dict[str, Any]


def _float(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else float(x)


def is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def is_array(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)


def summarize(value: Any) -> Summary:
    """Summarise one value; never raises (a failing ``repr`` is reported as such)."""
    try:
        if is_tensor(value):
            return _tensor_summary(value)
        if is_array(value):
            return _array_summary(value)
        if isinstance(value, (list, tuple, dict, set, frozenset)):
            return {
                "type": type(value).__name__,
                "length": len(value),
                "class": _class_name(value),
            }
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
            return {"type": "scalar", "class": _class_name(value), "repr": _bounded_repr(value)}
        return {"type": "object", "class": _class_name(value), "repr": _truncate(repr(value))}
    except Exception as exc:  # a user object's __repr__ or __len__ may raise
        return {"type": "error", "class": _class_name(value), "repr": f"<{exc!r}>"}


def _class_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _truncate(text: str) -> str:
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


def _bounded_repr(value: Any) -> str:
    return _truncate(_repr.repr(value))


def _tensor_summary(t: Any) -> Summary:
    import torch

    out: Summary = {
        "type": "tensor",
        "class": "torch.Tensor",
        "shape": list(t.shape),
        "dtype": str(t.dtype).replace("torch.", ""),
        "device": str(t.device),
        "numel": t.numel(),
        "requires_grad": bool(t.requires_grad),
    }
    if t.numel() == 0 or t.is_sparse or t.dtype == torch.bool or t.is_complex():
        return out
    with torch.no_grad():
        x = t.detach()
        if not x.is_floating_point():
            x = x.to(torch.float64)
            out.update(nan=0, inf=0)
            finite = x
        else:
            nan = torch.isnan(x)
            inf = torch.isinf(x)
            n_nan, n_inf = int(nan.sum()), int(inf.sum())
            out.update(nan=n_nan, inf=n_inf)
            finite = x[~(nan | inf)] if n_nan or n_inf else x
            del nan, inf
        if finite.numel():
            acc = finite.to(torch.float64) if finite.dtype != torch.float64 else finite
            out.update(
                min=_float(acc.min().item()),
                max=_float(acc.max().item()),
                mean=_float(acc.mean().item()),
                std=_float(acc.std(unbiased=False).item()),
            )
            del acc
        del finite, x
    return out


def _array_summary(a: Any) -> Summary:
    import numpy as np

    out: Summary = {
        "type": "array",
        "class": "numpy.ndarray",
        "shape": list(a.shape),
        "dtype": str(a.dtype),
        "device": "cpu",
        "numel": int(a.size),
    }
    if a.size == 0 or not (np.issubdtype(a.dtype, np.number)) or np.iscomplexobj(a):
        return out
    x = a.astype(np.float64, copy=False)
    finite_mask = np.isfinite(x)
    out.update(nan=int(np.isnan(x).sum()), inf=int(np.isinf(x).sum()))
    finite = x[finite_mask] if not finite_mask.all() else x
    if finite.size:
        out.update(
            min=float(finite.min()),
            max=float(finite.max()),
            mean=float(finite.mean()),
            std=float(finite.std()),
        )
    return out


def value_nbytes(value: Any, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """Bytes a value keeps alive: tensor storages and array buffers (each counted once),
    looking two levels into lists, tuples and dicts; other objects count shallowly."""
    seen = _seen if _seen is not None else set()
    if is_tensor(value):
        try:
            storage = value.untyped_storage()
            key = storage.data_ptr()
            if key in seen:
                return 0
            seen.add(key)
            return int(storage.nbytes())
        except Exception:  # e.g. tensors without storage (meta, some subclasses)
            return int(value.element_size() * value.numel())
    if is_array(value):
        base = value.base if value.base is not None else value
        if id(base) in seen:
            return 0
        seen.add(id(base))
        return int(base.nbytes)
    if _depth < 2 and isinstance(value, (list, tuple)):
        return sum(value_nbytes(v, seen, _depth + 1) for v in value)
    if _depth < 2 and isinstance(value, dict):
        return sum(value_nbytes(v, seen, _depth + 1) for v in value.values())
    return 0
