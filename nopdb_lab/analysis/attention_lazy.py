"""Lazy attention maps: keep what SDPA received, compute probabilities on demand.

A full map is B·H·Nq·Nk float32 values (64 GB per layer stack for a 4,096-token Llama
prompt), while the inputs that define it, the queries and keys, are B·(Hq+Hk)·N·D values
in the model's dtype. :class:`LazyAttention` keeps those inputs (after RoPE, exactly as
passed), the mask, ``is_causal``, ``scale`` and the grouped-query layout, and computes
``softmax(q kᵀ·scale + mask)`` only for the rows asked for, a block of rows at a time.

During generation with a KV cache one map grows: each forward pass appends a *segment*
(the new query rows, the key count they saw, their mask). Row ``i`` of segment ``s`` is
computed against the first ``n_keys(s)`` keys; later keys are zero (never attended).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Sequence, Tuple

ROW_BLOCK_ELEMENTS = 1 << 24  # float32 scores computed at once (64 MB)


class AttentionBudgetError(MemoryError):
    """A materialisation that would not fit the capture store's budget."""


@dataclass
class Segment:
    """Query rows appended by one SDPA call."""

    query: Any  # B×Hq×n×D, the model's dtype
    mask: Any  # None, or broadcastable to B×Hq×n×n_keys (bool keeps, float adds)
    is_causal: bool
    n_keys: int  # keys this call attended over
    row0: int  # first row of the record this segment fills


def _masked_value(mask: Any) -> Any:
    """Where an additive float mask forbids a position (≤ half the dtype's minimum)."""
    import torch

    return mask <= torch.finfo(mask.dtype).min / 2


class LazyAttention:
    """Attention probabilities (B×H×Nq×Nk) defined by SDPA's inputs, computed on demand.

    ``key`` is B×Hk×Nk×D with ``Hk = H / kv_groups`` (grouped-query heads are not
    repeated). ``dense`` holds precomputed probabilities instead (used where the inputs
    are not SDPA's, e.g. ``nn.MultiheadAttention``'s own softmax path).
    """

    lazy_attention = True  # marker the heatmap and stacking code test for

    def slice_2d(self, *args: Any) -> Any:
        """The heatmap viewer's pooled slice, computed block by block (``lazy_slice_2d``)."""
        return lazy_slice_2d(self, *args)

    def summary(self) -> dict:
        """The capture browser's summary, without materialising the map."""
        return lazy_summary(self)

    def __init__(
        self,
        query: Any = None,
        key: Any = None,
        mask: Any = None,
        is_causal: bool = False,
        scale: float = 1.0,
        kv_groups: int = 1,
        dense: Any = None,
    ) -> None:
        self.scale = float(scale)
        self.kv_groups = int(kv_groups)
        self.dense = dense
        self.key = key
        self.segments: List[Segment] = []
        if dense is None:
            self.segments.append(Segment(query, mask, bool(is_causal), key.shape[-2], 0))

    @classmethod
    def from_weights(cls, weights: Any) -> "LazyAttention":
        """A record of probabilities that were computed already (B×H×Nq×Nk)."""
        return cls(dense=weights)

    # -- shape --------------------------------------------------------------------------
    @property
    def shape(self) -> Tuple[int, int, int, int]:
        if self.dense is not None:
            return tuple(self.dense.shape)
        q = self.segments[0].query
        return (q.shape[0], q.shape[1], self.n_rows, self.key.shape[-2])

    @property
    def n_rows(self) -> int:
        if self.dense is not None:
            return int(self.dense.shape[-2])
        last = self.segments[-1]
        return last.row0 + last.query.shape[-2]

    @property
    def dtype(self) -> Any:
        """The dtype probabilities are computed in (float32)."""
        import torch

        return torch.float32

    @property
    def device(self) -> Any:
        return (self.dense if self.dense is not None else self.key).device

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of tensor storage this map keeps alive (each storage counted once)."""
        from .summary import value_nbytes

        seen: set[int] = set()
        if self.dense is not None:
            return value_nbytes(self.dense, seen)
        total = value_nbytes(self.key, seen)
        for seg in self.segments:
            total += value_nbytes(seg.query, seen) + value_nbytes(seg.mask, seen)
        return total

    @property
    def weights_nbytes(self) -> int:
        """Bytes the whole float32 map would take if materialised."""
        return 4 * math.prod(self.shape)

    def __repr__(self) -> str:
        return (
            f"LazyAttention(shape={self.shape}, holds {self.nbytes:,} bytes, "
            f"{self.weights_nbytes:,} when materialised; .weights / .rows() / .head())"
        )

    # -- growth (generation) ------------------------------------------------------------
    def append(self, query: Any, key: Any, mask: Any, is_causal: bool) -> None:
        """Add the query rows of a decode step that attended over ``key`` (which extends
        the keys held so far)."""
        self.segments.append(Segment(query, mask, bool(is_causal), key.shape[-2], self.n_rows))
        self.key = key

    # -- computing rows -----------------------------------------------------------------
    def _segment_rows(self, seg: Segment, batch: int, heads: Any, rows: Any) -> Any:
        """Probabilities (len(heads)×len(rows)×Nk) of segment-local ``rows``."""
        import torch

        n_k_total = self.key.shape[-2]
        q = seg.query[batch].index_select(0, heads).index_select(1, rows).float()
        k = self.key[batch, :, : seg.n_keys].index_select(0, heads // self.kv_groups).float()
        scores = (q @ k.transpose(-2, -1)) * self.scale
        if seg.is_causal:
            cols = torch.arange(seg.n_keys, device=q.device)
            scores = scores.masked_fill(cols[None, :] > rows[:, None], float("-inf"))
        if seg.mask is not None:
            m = seg.mask
            while m.dim() < 4:
                m = m[None]
            m = m[batch if m.shape[0] > 1 else 0]
            m = m.index_select(0, heads) if m.shape[0] > 1 else m
            m = m.index_select(1, rows) if m.shape[1] > 1 else m
            m = m[..., : seg.n_keys]
            if m.dtype == torch.bool:
                scores = scores.masked_fill(~m, float("-inf"))
            else:
                scores = scores + m.float()
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        if seg.n_keys < n_k_total:
            probs = torch.nn.functional.pad(probs, (0, n_k_total - seg.n_keys))
        return probs

    def _rows(self, batch: int, heads: Any, rows: Any) -> Any:
        """Probabilities (len(heads)×len(rows)×Nk) for record rows ``rows`` (a tensor)."""
        import torch

        if self.dense is not None:
            return self.dense[batch].index_select(0, heads).index_select(1, rows).float()
        out = torch.empty(len(heads), len(rows), self.key.shape[-2], device=self.device)
        for seg in self.segments:
            n = seg.query.shape[-2]
            inside = (rows >= seg.row0) & (rows < seg.row0 + n)
            if not bool(inside.any()):
                continue
            where = inside.nonzero().flatten()
            out[:, where] = self._segment_rows(seg, batch, heads, rows[where] - seg.row0)
        return out

    def _index(self, values: Any, size: int, what: str) -> Any:
        import torch

        if isinstance(values, int):
            values = [values]
        t = torch.as_tensor(list(values) if isinstance(values, range) else values)
        t = t.to(device=self.device, dtype=torch.long).flatten()
        if t.numel() and (int(t.min()) < -size or int(t.max()) >= size):
            raise IndexError(f"{what} index out of range for size {size}")
        return t % size

    def rows(self, head: int, query_rows: Any, batch: int = 0) -> Any:
        """Probabilities of ``query_rows`` (list, range or tensor of indices) for one head:
        a len(query_rows) × Nk float32 tensor."""
        b, h, n, _ = self.shape
        heads = self._index(head, h, "head")
        return self._rows(
            self._index(batch, b, "batch")[0].item(), heads, self._index(query_rows, n, "row")
        )[0]

    def head(self, h: int, batch: int = 0) -> Any:
        """One head's Nq × Nk map (computed a block of rows at a time)."""
        import torch

        blocks = [blk for _, blk in self.iter_row_blocks(batch, [h])]
        if not blocks:  # no query rows
            return torch.zeros(0, self.shape[3], device=self.device)
        return torch.cat(blocks, dim=1)[0]

    def iter_row_blocks(
        self, batch: int, heads: Sequence[int], block_elements: int = ROW_BLOCK_ELEMENTS
    ) -> Iterator[Tuple[int, Any]]:
        """``(row0, probs)`` for consecutive row blocks; probs is len(heads)×rows×Nk."""
        import torch

        _, h, n, n_k = self.shape
        heads_t = self._index(list(heads), h, "head")
        step = max(1, block_elements // max(1, len(heads_t) * n_k))
        for row0 in range(0, n, step):
            rows = torch.arange(row0, min(n, row0 + step), device=self.device)
            yield row0, self._rows(batch, heads_t, rows)

    def materialize(self, budget: int | None = None) -> Any:
        """The whole B×H×Nq×Nk float32 map; AttentionBudgetError when it would exceed
        ``budget`` bytes (the capture store's budget by default)."""
        import torch

        if budget is None:
            from ..capture_store import store

            budget = store.budget
        size = self.weights_nbytes
        if size > budget:
            b, h, n, n_k = self.shape
            raise AttentionBudgetError(
                f"materialising this attention map needs {size:,} bytes "
                f"(B={b} × H={h} × Nq={n} × Nk={n_k} × 4 bytes of float32) but the budget is "
                f"{budget:,} bytes; use .rows(head, query_rows), .head(h) or a pooled slice, "
                "or raise it with nopdb_lab.store.set_budget(nbytes)"
            )
        if self.dense is not None:
            return self.dense
        b, h, n, n_k = self.shape
        out = torch.empty(b, h, n, n_k, device=self.device)
        for batch in range(b):
            for row0, blk in self.iter_row_blocks(batch, range(h)):
                out[batch, :, row0 : row0 + blk.shape[1]] = blk
        return out

    def __getitem__(self, item: Any) -> Any:
        """Indexing computes only the selected batch items, heads and rows."""
        import torch

        if not isinstance(item, tuple):
            item = (item,)
        item = item + (slice(None),) * (4 - len(item))
        if len(item) != 4:
            raise IndexError(f"too many indices for a 4-D attention map: {item}")
        b, h, n, n_k = self.shape
        picks = []
        for sel, size in zip(item[:3], (b, h, n), strict=True):
            picks.append(list(range(size))[sel] if isinstance(sel, slice) else sel)
        batches, heads, rows = picks
        rows_t = self._index(rows, n, "row")
        out = torch.stack(
            [self._rows(int(x), self._index(heads, h, "head"), rows_t) for x in _as_list(batches)]
        )[..., item[3]]
        squeeze = [i for i, sel in enumerate(item[:3]) if isinstance(sel, int)]
        for i in reversed(squeeze):
            out = out.squeeze(i)
        return out


def _as_list(value: Any) -> List[int]:
    return [value] if isinstance(value, int) else list(value)


def is_lazy(value: Any) -> bool:
    return bool(getattr(value, "lazy_attention", False))


class LazyStack:
    """Lazy maps of several layers stacked along a new first dimension (L×B×H×Nq×Nk)."""

    lazy_attention = True

    def slice_2d(self, *args: Any) -> Any:
        """The heatmap viewer's pooled slice, computed block by block (``lazy_slice_2d``)."""
        return lazy_slice_2d(self, *args)

    def summary(self) -> dict:
        """The capture browser's summary, without materialising the map."""
        return lazy_summary(self)

    def __init__(self, layers: Sequence[LazyAttention]) -> None:
        self.layers = list(layers)
        shapes = {layer.shape for layer in self.layers}
        if len(shapes) != 1:
            raise ValueError(f"layers of different shapes cannot be stacked: {sorted(shapes)}")

    @property
    def shape(self) -> Tuple[int, ...]:
        return (len(self.layers), *self.layers[0].shape)

    @property
    def dtype(self) -> Any:
        return self.layers[0].dtype

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    def dim(self) -> int:
        return 5

    def __getitem__(self, item: Any) -> Any:
        import torch

        if not isinstance(item, tuple):
            item = (item,)
        first, rest = item[0], item[1:]
        if isinstance(first, int):
            return self.layers[first][rest] if rest else self.layers[first]
        return torch.stack(
            [layer[rest] if rest else layer.materialize() for layer in self.layers[first]]
        )

    def __repr__(self) -> str:
        return f"LazyStack(shape={self.shape}, holds {self.nbytes:,} bytes)"


# -- pooled 2-D slices for the heatmap viewer ---------------------------------------------


def lazy_slice_2d(
    value: Any,
    rows_dim: int,
    cols_dim: int,
    index: dict | None = None,
    max_size: int = 512,
    reduce: str = "max",
    mean_dims: Sequence[int] = (),
    grid_dims: Sequence[int] = (),
    region: dict | None = None,
) -> Tuple[dict, Any]:
    """:func:`nopdb_lab.heatmap.slice_2d` for a :class:`LazyAttention` or
    :class:`LazyStack`: same arguments, same ``(meta, float32 array)`` result, computed
    a block of query rows at a time (never the whole map at once).

    Rows and columns must be the query and key dimensions (either order); the leading
    dimensions (layer, batch, head) are each indexed, averaged or kept as a grid.
    """
    import numpy as np

    from .heatmap import REDUCTIONS, SliceError, finish_slice, window

    shape = tuple(value.shape)
    ndim = len(shape)
    layers = value.layers if isinstance(value, LazyStack) else [value]
    lead = ndim - 2  # 2 (batch, head) or 3 (layer, batch, head)

    def norm(d: int, what: str) -> int:
        if not -ndim <= int(d) < ndim:
            raise SliceError(f"{what} dimension {d} does not exist in shape {shape}")
        return int(d) % ndim

    rows_dim, cols_dim = norm(rows_dim, "rows"), norm(cols_dim, "columns")
    if {rows_dim, cols_dim} != {ndim - 2, ndim - 1}:
        raise SliceError(
            "a lazy attention map is sliced with the query and key dimensions as rows and "
            f"columns (dims {ndim - 2} and {ndim - 1})"
        )
    means = sorted({norm(d, "averaged") for d in mean_dims})
    grids = [norm(d, "grid") for d in grid_dims]
    if len(grids) > 2:
        raise SliceError("a grid has at most two dimensions (e.g. layer × head)")
    if set(means) & set(grids) or any(d >= lead for d in means + grids):
        raise SliceError("grid and averaged dimensions must differ and precede rows/columns")
    if reduce not in REDUCTIONS:
        raise SliceError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    if max_size < 1:
        raise SliceError("max_size must be at least 1")
    index = {int(k) % ndim: int(v) for k, v in (index or {}).items()}
    choices: List[List[int]] = []
    for d in range(lead):
        if d in means or d in grids:
            choices.append(list(range(shape[d])))
        else:
            i = index.get(d, 0)
            if not -shape[d] <= i < shape[d]:
                raise SliceError(f"index {i} is out of range for dimension {d} of size {shape[d]}")
            choices.append([i % shape[d]])
    transposed = rows_dim > cols_dim  # rows are the keys
    rows_win, cols_win = window(region, shape[rows_dim], shape[cols_dim])
    (q0, q1), (k0, k1) = (cols_win, rows_win) if transposed else (rows_win, cols_win)
    n_q, n_k = q1 - q0, k1 - k0  # the window's queries and keys
    row_step = math.ceil(n_q / max_size)
    col_step = math.ceil(n_k / max_size)
    out_rows, out_cols = math.ceil(n_q / row_step), math.ceil(n_k / col_step)
    grid_shape = [shape[d] for d in grids]
    n_cells = max(1, math.prod(grid_shape))
    planes = np.zeros((n_cells, out_rows, out_cols), dtype=np.float32)
    import itertools

    import torch

    def lead_index(combo: Tuple[int, ...]) -> Tuple[int, int, int]:
        full = combo if lead == 3 else (0, *combo)
        return full[0], full[1], full[2]

    # the heads of one (layer, batch) are computed together; averaged dims are summed at
    # full resolution before pooling (as slice_2d does)
    groups: dict = {}
    counts = np.zeros(n_cells)
    for combo in itertools.product(*choices):
        layer, batch, head = lead_index(combo)
        cell = 0
        for g in grids:
            cell = cell * shape[g] + combo[g]
        groups.setdefault((layer, batch), []).append((head, cell))
        counts[cell] += 1
    widest = max(len(items) for items in groups.values())
    # rows per block: a multiple of row_step, so pooling block by block equals pooling all
    budget_rows = ROW_BLOCK_ELEMENTS // max(1, shape[-1] * max(n_cells, widest))
    per_block = max(row_step, budget_rows // row_step * row_step)
    counts_t = torch.as_tensor(counts, dtype=torch.float32)
    for row0 in range(0, n_q, per_block):
        n_rows = min(n_q, row0 + per_block) - row0
        acc: Any = None  # a tensor once the first block is in
        for (layer, batch), items in groups.items():
            rec = layers[layer]
            heads_t = torch.as_tensor([h for h, _ in items], device=rec.device)
            rows = torch.arange(q0 + row0, q0 + row0 + n_rows, device=rec.device)
            block = rec._rows(batch, heads_t, rows)
            if k0 or k1 != shape[-1]:
                block = block[..., k0:k1]
            if acc is None:
                acc = torch.zeros(n_cells, n_rows, n_k, device=block.device)
            cells = torch.as_tensor([cell for _, cell in items], device=block.device)
            acc.index_add_(0, cells, block)
        if means:
            assert counts_t is not None  # made with the accumulator when means are asked
            acc /= counts_t.to(acc.device)[:, None, None]
        pooled = _pool_torch(acc, row_step, col_step, reduce).cpu().numpy()
        r0 = row0 // row_step
        planes[:, r0 : r0 + pooled.shape[1]] = pooled
    if transposed:
        planes = np.ascontiguousarray(planes.transpose(0, 2, 1))
        row_step, col_step = col_step, row_step
    origin = (rows_win[0], cols_win[0])
    return finish_slice(shape, planes, grid_shape, row_step, col_step, reduce, origin)


# -- streamed reductions --------------------------------------------------------------------


def fuse_heads(attention: Any, head_fusion: str = "mean") -> Any:
    """B×Nq×Nk heads fused by mean, max or min, a block of rows (all heads) at a time."""
    import torch

    b, h, n, n_k = attention.shape
    out = torch.empty(b, n, n_k, device=attention.device)
    for batch in range(b):
        for row0, block in attention.iter_row_blocks(batch, range(h)):
            fused = getattr(block, head_fusion)(dim=0)
            out[batch, row0 : row0 + block.shape[1]] = (
                fused if head_fusion == "mean" else fused.values
            )
    return out


def attention_sinks(records: Iterable[Any], k: int = 1) -> Any:
    """Per layer × head: the mean share of each query's probability on the first ``k``
    key positions (attention sinks, Xiao et al. 2023), averaged over query rows and batch.

    ``records``: one record (or lazy map) per layer, e.g. the records of one generation.
    Returns a float32 (layers, heads) tensor; computed a block of rows at a time.
    """
    import torch

    maps = [getattr(r, "attention", r) for r in records]
    if not maps:
        raise ValueError("attention_sinks needs at least one attention record")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    heads = {m.shape[1] for m in maps}
    if len(heads) != 1:
        raise ValueError(f"the records have different head counts: {sorted(heads)}")
    out = torch.zeros(len(maps), heads.pop())
    for layer, att in enumerate(maps):
        b, h, n, _ = att.shape
        for batch in range(b):
            for _, block in att.iter_row_blocks(batch, range(h)):
                out[layer] += block[..., :k].sum(-1).sum(-1).cpu()
        out[layer] /= max(1, b * n)
    return out


def _pool_torch(planes: Any, row_step: int, col_step: int, reduce: str) -> Any:
    """:func:`nopdb_lab.heatmap._pool` for a stack of torch planes (ragged edge blocks
    reduce over the cells they have; NaN propagates)."""
    from torch.nn import functional

    if row_step == 1 and col_step == 1:
        return planes
    x = planes[:, None]
    kernel = (row_step, col_step)
    if reduce == "max":
        return functional.max_pool2d(x, kernel, kernel, ceil_mode=True)[:, 0]
    return functional.avg_pool2d(x, kernel, kernel, ceil_mode=True, count_include_pad=False)[:, 0]


def lazy_summary(value: Any) -> dict:
    """A tensor-like summary of a lazy map for the capture browser (the hook in
    :func:`nopdb_lab.summary.summarize`): shape, dtype and bytes held; no statistics,
    since they would need every probability (min is 0 and max ≤ 1 by construction)."""
    shape = list(value.shape)
    return {
        "type": "tensor",
        "class": type(value).__name__,
        "shape": shape,
        "dtype": "float32",
        "device": str(getattr(value, "device", "cpu"))
        if not isinstance(value, LazyStack)
        else str(value.layers[0].device),
        "numel": math.prod(shape),
        "requires_grad": False,
        "lazy": True,
        "held_bytes": int(value.nbytes),
    }
