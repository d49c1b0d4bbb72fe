"""2-D slices of captured tensors for the heatmap viewer, downsampled in the kernel.

The viewer picks two dimensions as rows and columns and an index for every other one;
the kernel cuts that slice, pools it to at most ``max_size`` × ``max_size`` cells (max or
mean over blocks, so a 2,000×2,000 map arrives as ≤512×512 and says so) and sends float32
bytes. Works for torch tensors (any device, bf16/fp16 included) and numpy arrays.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple

REDUCTIONS = ("max", "mean")


class SliceError(ValueError):
    """A slice request that does not fit the value (bad dims or indices)."""


def slice_2d(
    value: Any,
    rows_dim: int,
    cols_dim: int,
    index: Dict[int, int] | None = None,
    max_size: int = 512,
    reduce: str = "max",
) -> Tuple[Dict[str, Any], Any]:
    """The 2-D slice ``value[..., rows_dim, ..., cols_dim, ...]`` with ``index`` fixing the
    other dims, pooled to at most ``max_size`` per side; returns ``(meta, float32 array)``.

    ``meta`` has ``shape`` (the value's), ``rows``/``cols`` (the sent size), ``row_step``/
    ``col_step`` (source cells per sent cell), ``reduce``, ``min``/``max`` (finite, of the
    sent cells) and ``nan``/``inf`` counts.
    """
    import numpy as np

    array_like, shape = _as_numpy_source(value)
    ndim = len(shape)
    if ndim < 2:
        raise SliceError(f"a heatmap needs at least 2 dimensions; this value has shape {shape}")
    for name, dim in (("rows", rows_dim), ("columns", cols_dim)):
        if not -ndim <= dim < ndim:
            raise SliceError(f"{name} dimension {dim} does not exist in shape {shape}")
    rows_dim, cols_dim = rows_dim % ndim, cols_dim % ndim
    if rows_dim == cols_dim:
        raise SliceError("rows and columns must be two different dimensions")
    if reduce not in REDUCTIONS:
        raise SliceError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    if max_size < 1:
        raise SliceError("max_size must be at least 1")
    index = {int(k) % ndim: int(v) for k, v in (index or {}).items()}
    selector: List[Any] = []
    for dim, size in enumerate(shape):
        if dim in (rows_dim, cols_dim):
            selector.append(slice(None))
            continue
        i = index.get(dim, 0)
        if not -size <= i < size:
            raise SliceError(f"index {i} is out of range for dimension {dim} of size {size}")
        selector.append(i)
    plane = _to_float32(array_like[tuple(selector)])
    if rows_dim > cols_dim:
        plane = plane.T
    plane = np.ascontiguousarray(plane)
    row_step = math.ceil(plane.shape[0] / max_size)
    col_step = math.ceil(plane.shape[1] / max_size)
    if row_step > 1 or col_step > 1:
        plane = _pool(plane, row_step, col_step, reduce)
    finite = plane[np.isfinite(plane)]
    meta = {
        "shape": list(shape),
        "rows": int(plane.shape[0]),
        "cols": int(plane.shape[1]),
        "row_step": row_step,
        "col_step": col_step,
        "reduce": reduce if row_step > 1 or col_step > 1 else None,
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "nan": int(np.isnan(plane).sum()),
        "inf": int(np.isinf(plane).sum()),
    }
    return meta, plane


def _as_numpy_source(value: Any) -> Tuple[Any, Tuple[int, ...]]:
    from .summary import is_array, is_tensor

    if is_tensor(value):
        return value.detach(), tuple(value.shape)
    if is_array(value):
        return value, tuple(value.shape)
    raise SliceError(f"a {type(value).__name__} cannot be shown as a heatmap")


def _to_float32(plane: Any) -> Any:
    import numpy as np

    from .summary import is_tensor

    if is_tensor(plane):
        if plane.is_complex():
            plane = plane.abs()
        return plane.to("cpu", dtype=_torch_float32()).numpy()
    if np.iscomplexobj(plane):
        plane = np.abs(plane)
    return np.asarray(plane, dtype=np.float32)


def _torch_float32() -> Any:
    import torch

    return torch.float32


def _pool(plane: Any, row_step: int, col_step: int, reduce: str) -> Any:
    """Block-reduce ``plane`` by ``row_step`` × ``col_step``; ragged edge blocks reduce
    over the cells they have. A NaN in a block makes the pooled cell NaN (never hidden)."""
    import numpy as np

    rows = math.ceil(plane.shape[0] / row_step)
    cols = math.ceil(plane.shape[1] / col_step)
    shape = (rows * row_step, cols * col_step)
    if reduce == "max":
        padded = np.full(shape, -np.inf, dtype=np.float32)
        padded[: plane.shape[0], : plane.shape[1]] = plane
        return padded.reshape(rows, row_step, cols, col_step).max(axis=(1, 3))
    padded = np.zeros(shape, dtype=np.float64)
    counts = np.zeros(shape, dtype=np.float64)
    padded[: plane.shape[0], : plane.shape[1]] = plane
    counts[: plane.shape[0], : plane.shape[1]] = 1
    sums = padded.reshape(rows, row_step, cols, col_step).sum(axis=(1, 3))
    return (sums / counts.reshape(rows, row_step, cols, col_step).sum(axis=(1, 3))).astype(
        np.float32
    )
