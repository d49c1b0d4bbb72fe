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
from typing import Any, Callable, Dict, Iterator, List, Tuple

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
        if getattr(value, "lazy_attention", False):  # a lazy attention map: never materialised
            return value.summary()
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


#: elements reduced at a time: a summary never allocates more than a few copies of this
#: many float64 values, whatever the size of the tensor or array it describes
CHUNK_ELEMENTS = 1 << 22


def _chunks(x: Any, size: int, contiguous: Callable[[Any], bool]) -> Iterator[Any]:
    """Flat pieces of ``x`` of at most ``size`` elements each, without copying ``x``.

    A contiguous value is cut into views of its flat buffer; a strided one is walked
    along its first axis (several rows at a time when rows are small), so a copy made
    to flatten a piece is never larger than ``size`` elements.
    """
    numel = int(x.numel()) if callable(getattr(x, "numel", None)) else int(x.size)
    if numel <= size or x.ndim == 0:
        yield x.reshape(-1)
        return
    if contiguous(x):
        flat = x.reshape(-1)  # a view
        for start in range(0, numel, size):
            yield flat[start : start + size]
        return
    row = numel // x.shape[0]
    if row > size:
        for i in range(x.shape[0]):
            yield from _chunks(x[i], size, contiguous)
        return
    step = max(1, size // max(row, 1))
    for start in range(0, x.shape[0], step):
        yield x[start : start + step].reshape(-1)


class _Moments:
    """min, max, mean and (population) std merged over chunks (Chan et al.'s update)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, n: int, low: float, high: float, mean: float, m2: float) -> None:
        if n == 0:
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total
        self.low = min(self.low, low)
        self.high = max(self.high, high)

    def as_dict(self) -> Summary:
        if self.n == 0:
            return {}
        return {
            "min": _float(self.low),
            "max": _float(self.high),
            "mean": _float(self.mean),
            "std": _float(math.sqrt(max(self.m2 / self.n, 0.0))),
        }


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
    floating = t.is_floating_point()
    n_nan = n_inf = 0
    moments = _Moments()
    with torch.no_grad():
        for piece in _chunks(t.detach(), CHUNK_ELEMENTS, lambda v: v.is_contiguous()):
            x = piece.to(torch.float64)  # one chunk's float64 copy, on the value's device
            if floating:
                finite_mask = torch.isfinite(x)
                n_bad = int(x.numel() - finite_mask.sum())
                if n_bad:
                    nan = int(torch.isnan(x).sum())
                    n_nan += nan
                    n_inf += n_bad - nan
                    x = x[finite_mask]
                del finite_mask
            if x.numel():
                mean = x.mean()
                moments.add(
                    int(x.numel()),
                    x.min().item(),
                    x.max().item(),
                    mean.item(),
                    float(((x - mean) ** 2).sum().item()),
                )
            del x
    out.update(nan=n_nan, inf=n_inf)
    out.update(moments.as_dict())
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
    floating = np.issubdtype(a.dtype, np.floating)
    n_nan = n_inf = 0
    moments = _Moments()
    contiguous = lambda v: bool(v.flags.c_contiguous)  # noqa: E731
    for piece in _chunks(a, CHUNK_ELEMENTS, contiguous):
        x = piece.astype(np.float64)  # one chunk's float64 copy
        if floating:
            finite_mask = np.isfinite(x)
            if not finite_mask.all():
                nan = int(np.isnan(x).sum())
                n_nan += nan
                n_inf += int(x.size - finite_mask.sum()) - nan
                x = x[finite_mask]
            del finite_mask
        if x.size:
            mean = float(x.mean())
            moments.add(
                int(x.size), float(x.min()), float(x.max()), mean, float(((x - mean) ** 2).sum())
            )
        del x
    out.update(nan=n_nan, inf=n_inf)
    out.update(moments.as_dict())
    return out


def payload_nbytes(value: Any, index: List[int], itemsize: int) -> int:
    """Bytes a ``tensor`` request for ``value[index]`` would send, computed from shapes
    only (indexing makes views), so a request over the limit is refused before any copy.

    Raises IndexError/TypeError for an index that does not fit the value.
    """
    view = value
    for i in index:
        view = view[i]
    numel = int(view.numel()) if is_tensor(view) else int(getattr(view, "size", 1))
    return numel * itemsize


def check_payload_size(value: Any, index: List[int], dtype: str, limit: int) -> None:
    """Raise ValueError, naming the slice and the limit, if ``value[index]`` sent as
    ``dtype`` would exceed ``limit`` bytes. The kernel service calls this before it
    converts or copies anything."""
    itemsize = {"float32": 4, "float16": 2, "uint8": 1}.get(dtype, 8)
    nbytes = payload_nbytes(value, index, itemsize)
    if nbytes > limit:
        view = value
        for i in index:
            view = view[i]
        raise ValueError(
            f"slice of shape {list(view.shape)} is {nbytes / 1e6:.0f} MB as {dtype}; "
            f"index leading dimensions to stay under {limit >> 20} MB"
        )


#: items of one container looked at when sizing it; the rest are estimated from them
SIZE_SAMPLE = 256


def _buffer_nbytes(array: Any) -> Tuple[int, int]:
    """(key, bytes) of the memory an ndarray keeps alive: its root array's buffer.

    A view keeps its whole base alive; an array over a foreign buffer (``np.memmap``'s
    ``mmap``, ``np.frombuffer(bytes)``) keeps that whole buffer alive.
    """
    import numpy as np

    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    owner = root.base
    if owner is None:
        return id(root), int(root.nbytes)
    try:
        with memoryview(owner) as view:
            return id(owner), int(view.nbytes)
    except TypeError:  # a buffer owner without the buffer protocol (e.g. a ctypes object)
        return id(owner), int(root.nbytes)


def value_nbytes(value: Any, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """An estimate of the bytes a kept reference to ``value`` holds.

    Tensor storages and array buffers count whole (each once, also when shared by views);
    strings, numbers and other objects count their own size; lists, tuples, sets and
    dicts count themselves and their items three levels deep (large ones from a sample
    of their items). Never raises: an object that cannot be sized counts its shallow size.
    """
    seen = _seen if _seen is not None else set()
    key = id(value)
    if key in seen:
        return 0
    seen.add(key)
    try:
        if is_tensor(value):
            try:
                storage = value.untyped_storage()
                storage_key = storage.data_ptr() or id(storage)
                if storage_key in seen:
                    return 0
                seen.add(storage_key)
                return int(storage.nbytes()) + sys.getsizeof(value)
            except Exception:  # tensors without storage (meta, some subclasses)
                return int(value.element_size() * value.numel())
        if is_array(value):
            buffer_key, nbytes = _buffer_nbytes(value)
            if buffer_key in seen and buffer_key != key:
                return sys.getsizeof(value) if value.base is not None else 0
            seen.add(buffer_key)
            return nbytes + (sys.getsizeof(value) if value.base is not None else 0)
        size = sys.getsizeof(value)
        if _depth >= 3:
            return size
        if isinstance(value, dict):
            items: Any = value.items()
            n = len(value)
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = value
            n = len(value)
        else:
            attrs = getattr(value, "__dict__", None)
            return size + (sys.getsizeof(attrs) if isinstance(attrs, dict) else 0)
        sampled = 0
        total = 0
        for item in items:
            if sampled == SIZE_SAMPLE:
                break
            if isinstance(item, tuple) and isinstance(value, dict):
                total += value_nbytes(item[0], seen, _depth + 1)
                total += value_nbytes(item[1], seen, _depth + 1)
            else:
                total += value_nbytes(item, seen, _depth + 1)
            sampled += 1
        if sampled and n > sampled:
            total = total * n // sampled
        return size + total
    except Exception:  # a user object whose __sizeof__ or iteration raises
        try:
            return sys.getsizeof(value, 64)
        except Exception:
            return 64
