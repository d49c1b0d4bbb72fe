"""2-D slices of captured tensors for the heatmap viewer, downsampled in the kernel.

The viewer picks two dimensions as rows and columns and an index for every other one;
the kernel cuts that slice, pools it to at most ``max_size`` × ``max_size`` cells (max or
mean over blocks, so a 2,000×2,000 map arrives as ≤512×512 and says so) and sends float32
bytes. Works for torch tensors (any device, bf16/fp16 included) and numpy arrays.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

REDUCTIONS = ("max", "mean")


class SliceError(ValueError):
    """A slice request that does not fit the value (bad dims or indices)."""


MAX_SOURCE_ELEMENTS = 1 << 27  # 512 MB of float32 before pooling


def slice_2d(
    value: Any,
    rows_dim: int,
    cols_dim: int,
    index: Dict[int, int] | None = None,
    max_size: int = 512,
    reduce: str = "max",
    mean_dims: Sequence[int] = (),
    grid_dims: Sequence[int] = (),
    region: Dict[str, int] | None = None,
) -> Tuple[Dict[str, Any], Any]:
    """The 2-D slice of ``value`` with ``rows_dim`` × ``cols_dim``, pooled to at most
    ``max_size`` per side; returns ``(meta, float32 array)``.

    ``region`` (``row0``, ``row1``, ``col0``, ``col1``: half-open ranges of the rows and
    columns dimensions) cuts a window before pooling: the viewer's zoom asks for the
    visible part at full resolution. ``meta`` then says where it starts (``row0``,
    ``col0``; 0 without a region).

    Every other dimension is fixed by ``index`` (0 by default), averaged when it is in
    ``mean_dims`` (e.g. the mean over heads), or, for the one or two ``grid_dims``, kept: the
    result is then one map per index (small multiples: every head, or layer × head), shape
    ``(*grid, rows, cols)``. ``meta`` has ``shape`` (the value's), ``rows``/``cols`` (the
    sent size), ``grid`` (the grid's shape, or None), ``row_step``/``col_step`` (source
    cells per sent cell), ``reduce`` (None when not pooled), ``min``/``max`` (finite, over
    all sent cells) and ``nan``/``inf`` counts.
    """
    if getattr(value, "lazy_attention", False):  # computed block by block, never whole
        return value.slice_2d(
            rows_dim, cols_dim, index, max_size, reduce, mean_dims, grid_dims, region
        )
    import numpy as np

    array_like, shape = _as_numpy_source(value)
    ndim = len(shape)
    if ndim < 2:
        raise SliceError(f"a heatmap needs at least 2 dimensions; this value has shape {shape}")
    rows_dim = _dim("rows", rows_dim, shape)
    cols_dim = _dim("columns", cols_dim, shape)
    if rows_dim == cols_dim:
        raise SliceError("rows and columns must be two different dimensions")
    means = sorted({_dim("averaged", d, shape) for d in mean_dims})
    grids = [_dim("grid", d, shape) for d in grid_dims]
    if len(grids) > 2:
        raise SliceError("a grid has at most two dimensions (e.g. layer × head)")
    special = [rows_dim, cols_dim] + means + grids
    if len(set(special)) != len(special):
        raise SliceError("rows, columns, grid and averaged dimensions must all differ")
    if reduce not in REDUCTIONS:
        raise SliceError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    if max_size < 1:
        raise SliceError("max_size must be at least 1")
    index = {int(k) % ndim: int(v) for k, v in (index or {}).items()}
    (row0, row1), (col0, col1) = window(region, shape[rows_dim], shape[cols_dim])
    selector: List[Any] = []
    for dim, size in enumerate(shape):
        if dim == rows_dim:
            selector.append(slice(row0, row1))
            continue
        if dim == cols_dim:
            selector.append(slice(col0, col1))
            continue
        if dim in special:
            selector.append(slice(None))
            continue
        i = index.get(dim, 0)
        if not -size <= i < size:
            raise SliceError(f"index {i} is out of range for dimension {dim} of size {size}")
        selector.append(i)
    kept = sorted(special)  # the dims left after indexing, in their original order
    sizes = {**{d: shape[d] for d in kept}, rows_dim: row1 - row0, cols_dim: col1 - col0}
    elements = math.prod(sizes[d] for d in kept)
    if elements > MAX_SOURCE_ELEMENTS:
        raise SliceError(
            f"the selection has {elements:,} values; fix more dimensions with an index "
            f"(at most {MAX_SOURCE_ELEMENTS:,})"
        )
    block = _to_float32(array_like[tuple(selector)])
    if means:
        block = block.mean(axis=tuple(kept.index(d) for d in means), dtype=np.float64)
        kept = [d for d in kept if d not in means]
    order = grids + [rows_dim, cols_dim]
    block = np.ascontiguousarray(np.transpose(block, [kept.index(d) for d in order]))
    grid_shape = [shape[d] for d in grids]
    block = block.astype(np.float32, copy=False).reshape(-1, row1 - row0, col1 - col0)
    row_step = math.ceil(block.shape[1] / max_size)
    col_step = math.ceil(block.shape[2] / max_size)
    if row_step > 1 or col_step > 1:
        block = np.stack([_pool(plane, row_step, col_step, reduce) for plane in block])
    return finish_slice(shape, block, grid_shape, row_step, col_step, reduce, (row0, col0))


def window(
    region: Dict[str, int] | None, n_rows: int, n_cols: int
) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """The ``(row0, row1), (col0, col1)`` half-open window a ``region`` asks for (the
    whole map without one); a region outside the map or empty is a :class:`SliceError`."""
    if not region:
        return (0, n_rows), (0, n_cols)
    unknown = set(region) - {"row0", "row1", "col0", "col1"}
    if unknown:
        raise SliceError(f"a region has row0, row1, col0 and col1, not {sorted(unknown)}")
    try:
        r0, r1 = int(region.get("row0", 0)), int(region.get("row1", n_rows))
        c0, c1 = int(region.get("col0", 0)), int(region.get("col1", n_cols))
    except (TypeError, ValueError):
        raise SliceError(f"a region's bounds must be integers, not {region!r}") from None
    for name, lo, hi, size in (("rows", r0, r1, n_rows), ("columns", c0, c1, n_cols)):
        if not 0 <= lo < hi <= size:
            raise SliceError(f"the region's {name} {lo}–{hi} are not a non-empty part of 0–{size}")
    return (r0, r1), (c0, c1)


def finish_slice(
    shape: Sequence[int],
    planes: Any,
    grid_shape: List[int],
    row_step: int,
    col_step: int,
    reduce: str,
    origin: Tuple[int, int] = (0, 0),
) -> Tuple[Dict[str, Any], Any]:
    """The ``(meta, float32 array)`` result of a slice from its pooled ``planes``
    (grid cells × rows × cols): sizes, steps, where a region starts (``origin``), finite
    min/max and NaN/Inf counts; the array keeps the grid's shape, or is 2-D without a
    grid."""
    import numpy as np

    finite = planes[np.isfinite(planes)]
    meta = {
        "shape": list(shape),
        "rows": int(planes.shape[1]),
        "cols": int(planes.shape[2]),
        "grid": grid_shape or None,
        "row_step": row_step,
        "col_step": col_step,
        "reduce": reduce if row_step > 1 or col_step > 1 else None,
        "row0": int(origin[0]),
        "col0": int(origin[1]),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "nan": int(np.isnan(planes).sum()),
        "inf": int(np.isinf(planes).sum()),
    }
    return meta, planes.reshape(*grid_shape, *planes.shape[1:]) if grid_shape else planes[0]


def _dim(name: str, dim: int, shape: Tuple[int, ...]) -> int:
    ndim = len(shape)
    if not -ndim <= int(dim) < ndim:
        raise SliceError(f"{name} dimension {dim} does not exist in shape {shape}")
    return int(dim) % ndim


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
        return plane.to("cpu").float().numpy()
    if np.iscomplexobj(plane):
        plane = np.abs(plane)
    return np.asarray(plane, dtype=np.float32)


def _pool(plane: Any, row_step: int, col_step: int, reduce: str) -> Any:
    """Block-reduce ``plane`` by ``row_step`` × ``col_step``; ragged edge blocks reduce
    over the cells they have. A NaN in a block makes the pooled cell NaN (never hidden).

    Works on views of ``plane`` (the whole blocks, then the ragged right and bottom strips
    and their corner), so pooling a huge map allocates only the pooled result."""
    import numpy as np

    height, width = plane.shape
    rows, cols = math.ceil(height / row_step), math.ceil(width / col_step)
    full_r, full_c = height // row_step, width // col_step
    cut_r, cut_c = full_r * row_step, full_c * col_step
    out = np.empty((rows, cols), dtype=np.float32)

    def reduced(block: Any, axes: Tuple[int, ...]) -> Any:
        if reduce == "max":
            return block.max(axis=axes)
        return block.mean(axis=axes, dtype=np.float64)

    if full_r and full_c:
        blocks = plane[:cut_r, :cut_c].reshape(full_r, row_step, full_c, col_step)
        out[:full_r, :full_c] = reduced(blocks, (1, 3))
    if cut_c < width and full_r:
        strip = plane[:cut_r, cut_c:].reshape(full_r, row_step, width - cut_c)
        out[:full_r, full_c] = reduced(strip, (1, 2))
    if cut_r < height and full_c:
        strip = plane[cut_r:, :cut_c].reshape(height - cut_r, full_c, col_step)
        out[full_r, :full_c] = reduced(strip, (0, 2))
    if cut_r < height and cut_c < width:
        out[full_r, full_c] = reduced(plane[cut_r:, cut_c:], (0, 1))
    return out
