"""Pictures in the notebook: ``nopdb_lab.show(value)`` draws a heatmap in a cell's output.

``show`` returns a :class:`View` whose MIME bundle carries three representations:

* ``application/vnd.nopdb-lab.view+json`` (:data:`VIEW_MIME`): where the value lives in
  :data:`nopdb_lab.store` (capture id, path, the record's time to recognise it) and how to
  look at it (rows/cols/grid dims, labels, colormap). The JupyterLab extension's MIME
  renderer opens its interactive heatmap viewer from it and slices the value through the
  kernel connection (the ``heatmap`` comm op); no tensor data is in the JSON. The format
  is documented in ``docs/display.md``.
* ``image/png``: a static picture (the map or the grid of heads, colour bar, min/max,
  title and token labels) so that a saved notebook still shows the picture on GitHub, in
  nbconvert HTML and where the extension is not installed.
* ``text/plain``: a one-paragraph description.

A value that is not already a store record (a bare tensor, a list of attention records)
becomes a ``"view"`` record in the store, counted against its budget like any capture.
The picture is drawn from :func:`nopdb_lab.heatmap.slice_2d`'s pooled slices, so showing a
huge tensor never copies it whole. Pixels are encoded by a small zlib PNG writer; text is
rasterised with Pillow's default font when Pillow is installed (otherwise the picture is
drawn without text and says so). Never imports the Jupyter layer.
"""

from __future__ import annotations

import math
import struct
import sys
import threading
import time
import traceback
import zlib
from typing import Any, Dict, List, Tuple

from ..call_info import RawStack, next_id, raw_stack, stack_summary
from ..capture_store import store
from ..records import EventRecord
from ..tracing import observers
from ._colormaps import TABLES
from .heatmap import slice_2d
from .summary import is_array, is_tensor

VIEW_MIME = "application/vnd.nopdb-lab.view+json"
#: Version of the JSON in :data:`VIEW_MIME` (``docs/display.md``).
VIEW_VERSION = 1
COLORMAPS = ("viridis", "RdBu")
#: Colour of NaN and ±Inf cells (the viewer's NAN_RGB).
NAN_RGB = (128, 128, 128)
#: At most this many panels for ``show(call)``; the rest are named in the text.
MAX_PANELS = 8
#: Labels longer than this are cut in the JSON (the picture cuts them shorter).
MAX_LABEL_CHARS = 64
MAX_LABELS = 4096

_BACKGROUND = (255, 255, 255)
_INK = (34, 34, 34)
_MAP_PX = 384  # a single map is scaled up to about this many pixels on its long side
_GRID_PX = 768  # a grid of maps spans about this many pixels
_TILE_MIN_PX, _TILE_MAX_PX = 32, 160
_GAP = 6
_BAR_W = 12


class ShowError(ValueError):
    """``show`` was given something it cannot draw (the message says what and why)."""


class ViewRecord(EventRecord):
    """A value shown with :func:`show` that was not a store record already.

    Kept in :data:`nopdb_lab.store` (counted against its budget) so that the notebook's
    interactive viewer can slice it through the kernel connection. ``locals["value"]`` is
    the value itself (not a copy); ``title`` says what it is.
    """

    kind = "view"

    def __init__(self, value: Any, title: str, frame: Any) -> None:
        self.id = next_id()
        self.time = time.time()
        self.title = title
        code = frame.f_code if frame is not None else None
        self.name = "show"
        self.qualname = f"show: {title}"
        self.file = code.co_filename if code else "<unknown>"
        self.line = frame.f_lineno if frame is not None else 0
        self.thread = threading.current_thread().name
        self.locals: Dict[str, Any] = {"value": value}
        self.errors: List[Any] = []
        self.raw_stack: RawStack = raw_stack(frame)

    @property
    def stack(self) -> traceback.StackSummary:
        return stack_summary(self.raw_stack)

    def __repr__(self) -> str:
        shape = tuple(getattr(self.locals["value"], "shape", ()))
        return f"ViewRecord(id={self.id}, {self.title!r}, {shape})"


class Panel:
    """One map or grid of maps: where its value is and how it is sliced and painted."""

    def __init__(
        self,
        value: Any,
        record: Any,
        path: List[Any],
        title: str,
        rows_dim: int,
        cols_dim: int,
        grid_dims: List[int],
        index: Dict[int, int],
        grid_names: List[str],
    ) -> None:
        self.value = value
        self.record = record
        self.path = path
        self.title = title
        self.rows_dim = rows_dim
        self.cols_dim = cols_dim
        self.grid_dims = grid_dims
        self.index = index
        self.grid_names = grid_names
        self.row_labels: List[str] | None = None
        self.col_labels: List[str] | None = None
        self.cmap = "viridis"
        self.meta: Dict[str, Any] = {}
        self.planes: Any = None  # float32 (G, rows, cols) after pooling

    @property
    def shape(self) -> List[int]:
        return [int(n) for n in self.value.shape]


class View:
    """What :func:`show` returns; Jupyter displays it through :meth:`_repr_mimebundle_`.

    ``panels`` are the maps drawn, ``notes`` what could not be drawn and why (also in the
    text and, when Pillow is there, under the picture).
    """

    def __init__(self, panels: List[Panel], notes: List[str], max_size: int, reduce: str):
        self.panels = panels
        self.notes = notes
        self.max_size = max_size
        self.reduce = reduce
        self._png: bytes | None = None

    def to_json(self) -> Dict[str, Any]:
        """The :data:`VIEW_MIME` payload (``docs/display.md``)."""
        self.png()  # drawing the picture may add notes (labels that did not fit)
        return {
            "version": VIEW_VERSION,
            "items": [_item_json(p, self.max_size, self.reduce) for p in self.panels],
            "notes": list(self.notes),
        }

    def png(self) -> bytes:
        """The static picture (drawn once, on first use)."""
        if self._png is None:
            self._png = encode_png(render(self))
        return self._png

    def text(self) -> str:
        lines = []
        for p in self.panels:
            meta = p.meta
            grid = "" if not meta.get("grid") else f", grid {'×'.join(map(str, meta['grid']))}"
            lines.append(
                f"{p.title}: shape {tuple(p.shape)}, min {_fmt(meta.get('min'))}, max "
                f"{_fmt(meta.get('max'))}{grid} (store id {p.record.id}, "
                f"{_expression(p.record, p.path)})"
            )
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Dict[str, Any]:
        bundle: Dict[str, Any] = {}
        self.png()  # drawing the picture may add notes (labels that did not fit)
        producers = {
            VIEW_MIME: self.to_json,
            "image/png": self.png,
            "text/plain": self.text,
        }
        for mime, produce in producers.items():
            if include and mime not in include:
                continue
            if exclude and mime in exclude:
                continue
            bundle[mime] = produce()
        return bundle

    def __repr__(self) -> str:
        return self.text()


# -- show ---------------------------------------------------------------------------------
def show(
    obj: Any,
    *,
    labels: Any = None,
    dims: Tuple[int, int] | None = None,
    head: int | None = None,
    index: Dict[int, int] | None = None,
    max_size: int = 512,
    cmap: str = "auto",
    reduce: str = "max",
    title: str | None = None,
) -> View:
    """Draw ``obj`` as a heatmap in the notebook (interactive with the JupyterLab
    extension, a static PNG everywhere else).

    ``obj``: an attention record (its heads as a grid), a list of attention records (a
    layer × head grid), a stack record, a capture or breakpoint hit (each of its tensors
    with at least two dimensions), or any tensor/array with at least two dimensions.
    ``labels``: one label per row and/or column (tokens), applied to each axis whose length
    they match. ``dims``: the (rows, columns) dimensions, default the last two. ``head``:
    one head (or, for a plain tensor, one index of the grid dimension) instead of the grid.
    ``index``: the index of any other dimension (0 by default, e.g. the batch item).
    ``max_size``: maps are pooled (``reduce``: max or mean) to at most this many cells per
    side. ``cmap``: ``"viridis"``, ``"RdBu"`` (diverging around 0) or ``"auto"`` (RdBu for
    signed data, as the viewer does).
    """
    if cmap not in ("auto",) + COLORMAPS:
        raise ShowError(f"cmap must be 'auto' or one of {COLORMAPS}, not {cmap!r}")
    if reduce not in ("max", "mean"):
        raise ShowError(f"reduce must be 'max' or 'mean', not {reduce!r}")
    if max_size < 1:
        raise ShowError(f"max_size must be at least 1, not {max_size}")
    frame = sys._getframe(1)
    notes: List[str] = []
    panels = _panels(obj, dims, head, dict(index or {}), title, frame, notes)
    row_col = _labels(labels)
    for panel in panels:
        if row_col is not None:
            _apply_labels(panel, row_col, len(panels) > 1, notes)
        grid = bool(panel.grid_dims)
        size = max_size if not grid else min(max_size, _TILE_MAX_PX)
        try:
            panel.meta, planes = slice_2d(
                panel.value,
                panel.rows_dim,
                panel.cols_dim,
                panel.index,
                size,
                reduce,
                (),
                panel.grid_dims,
            )
        except ValueError as exc:
            raise ShowError(f"{panel.title}: {exc}") from None
        panel.planes = planes.reshape(-1, panel.meta["rows"], panel.meta["cols"])
        low = panel.meta["min"]
        panel.cmap = (
            ("RdBu" if low is not None and low < 0 else "viridis") if cmap == "auto" else cmap
        )
    return View(panels, notes, max_size, reduce)


def _panels(
    obj: Any,
    dims: Tuple[int, int] | None,
    head: int | None,
    index: Dict[int, int],
    title: str | None,
    frame: Any,
    notes: List[str],
) -> List[Panel]:
    kind = getattr(obj, "kind", None)
    if isinstance(obj, (list, tuple)) and obj and all(_is_attention(r) for r in obj):
        return [_attention_layers(list(obj), dims, head, index, title, frame)]
    if _is_attention(obj):
        return [
            _panel(
                obj.weights,
                _in_store(obj, frame, "weights"),
                ["locals", "weights"],
                title or _record_title(obj),
                dims,
                head,
                index,
                stacked=False,
            )
        ]
    if kind == "stack":
        value = obj.locals.get("stacked")
        return [
            _panel(
                value,
                _in_store(obj, frame, "stacked"),
                ["locals", "stacked"],
                title or f"stack #{obj.id} {obj.qualname} {obj.path}",
                dims,
                head,
                index,
                stacked=True,
            )
        ]
    if kind in ("call", "hit", "view"):
        return _record_panels(obj, dims, head, index, title, frame, notes)
    if is_tensor(obj) or is_array(obj):
        label = title or _value_title(obj)
        record = ViewRecord(obj, label, frame)
        panel = _panel(obj, record, ["locals", "value"], label, dims, head, index, stacked=None)
        publish_view(record)
        return [panel]
    raise ShowError(
        f"show() draws attention records, stacks, captures and tensors/arrays with at least "
        f"two dimensions; a {type(obj).__name__} is none of these"
    )


def _is_attention(obj: Any) -> bool:
    return getattr(obj, "kind", None) == "attention" and hasattr(obj, "weights")


def _record_title(record: Any) -> str:
    module = getattr(record, "module", None)
    where = f" {module}" if module else ""
    return f"attention #{record.id}{where}"


def _value_title(value: Any) -> str:
    return f"{type(value).__name__} {tuple(value.shape)} {value.dtype}"


def _in_store(record: Any, frame: Any, what: str) -> Any:
    """``record`` when the store holds it; else a view record of its value in the store
    (a record made with the store off, or since evicted)."""
    if record.id in store and store[record.id] is record:
        return record
    value = getattr(record, what, None)
    if value is None:
        value = record.locals.get(what)
    view = ViewRecord(value, f"{type(record).__name__} #{record.id} {what}", frame)
    publish_view(view)
    return view


def publish_view(record: ViewRecord) -> None:
    """Put a view record in the store: through the observers when the store records (the
    kernel service is running), directly otherwise so that the JSON never points nowhere."""
    observers.publish(record)
    if record.id not in store:
        store.add(record)


def _attention_layers(
    records: List[Any],
    dims: Tuple[int, int] | None,
    head: int | None,
    index: Dict[int, int],
    title: str | None,
    frame: Any,
) -> Panel:
    """Attention records of one forward pass (first layer first) as a layer × head grid."""
    import torch

    weights = [torch.as_tensor(r.weights).detach() for r in records]
    shapes = {tuple(w.shape) for w in weights}
    if len(shapes) > 1:
        detail = ", ".join(
            f"#{r.id}: {tuple(w.shape)}" for r, w in zip(records, weights, strict=True)
        )
        raise ShowError(
            f"these attention records have different shapes and cannot form one grid "
            f"({detail}); show them one at a time"
        )
    device = weights[0].device
    stacked = torch.stack([w.to(device) for w in weights])
    label = title or f"attention of {len(records)} layers (#{records[0].id}..#{records[-1].id})"
    record = ViewRecord(stacked, label, frame)
    panel = _panel(stacked, record, ["locals", "value"], label, dims, head, index, stacked=True)
    publish_view(record)
    return panel


def _record_panels(
    record: Any,
    dims: Tuple[int, int] | None,
    head: int | None,
    index: Dict[int, int],
    title: str | None,
    frame: Any,
    notes: List[str],
) -> List[Panel]:
    """Every tensor/array of a capture, hit or view with at least two dimensions."""
    record = _in_store_record(record)
    found: List[Tuple[List[Any], Any]] = []
    seen: set[int] = set()
    for part in ("return_value", "args", "locals", "evals"):
        values = getattr(record, part, None)
        candidates: List[Tuple[List[str], Any]]
        if part == "return_value":
            candidates = [([part], values)]
        elif isinstance(values, dict):
            candidates = [([part, k], v) for k, v in values.items() if isinstance(k, str)]
        else:
            continue
        for path, value in candidates:
            if (is_tensor(value) or is_array(value)) and len(value.shape) >= 2:
                if id(value) not in seen:
                    seen.add(id(value))
                    found.append((path, value))
    name = getattr(record, "qualname", None) or getattr(record, "name", "?")
    if not found:
        raise ShowError(
            f"{record.kind} #{record.id} ({name}) holds no tensor or array with at least two "
            "dimensions to draw"
        )
    if len(found) > MAX_PANELS:
        rest = ", ".join(_path_text(p) for p, _ in found[MAX_PANELS:])
        notes.append(f"{len(found) - MAX_PANELS} more values not drawn: {rest}")
        found = found[:MAX_PANELS]
    panels = []
    for path, value in found:
        label = f"{title or f'{record.kind} #{record.id} {name}'}: {_path_text(path)}"
        try:
            panels.append(_panel(value, record, path, label, dims, head, index, stacked=None))
        except ShowError as exc:
            if len(found) == 1:
                raise
            notes.append(f"{_path_text(path)} not drawn: {exc}")
    if not panels:
        raise ShowError("; ".join(notes))
    return panels


def _in_store_record(record: Any) -> Any:
    if getattr(record, "id", None) is None:
        raise ShowError(f"this {type(record).__name__} has no id; it was not made by a capture")
    if record.id is not None and record.id in store and store[record.id] is record:
        return record
    # a capture made while the store was off: keep it now, so the viewer can reach it
    store.add(record)
    return record


def _path_text(path: List[Any]) -> str:
    return path[0] + "".join(f"[{p!r}]" for p in path[1:])


def _panel(
    value: Any,
    record: Any,
    path: List[Any],
    title: str,
    dims: Tuple[int, int] | None,
    head: int | None,
    index: Dict[int, int],
    stacked: bool | None,
) -> Panel:
    """Rows/cols/grid/index dims of ``value``: rows and columns ``dims`` (the last two by
    default); the grid is the last other dimension (heads in B×H×N×N), and also the first
    one for a stack (layers); every remaining dimension is fixed by ``index`` (0).
    ``stacked`` is None for values that are not attention or stacks (grid named by its
    dimension, not "head")."""
    if not (is_tensor(value) or is_array(value) or getattr(value, "lazy_attention", False)):
        raise ShowError(f"{title}: a {type(value).__name__} is not a tensor or array")
    shape = tuple(int(n) for n in value.shape)
    ndim = len(shape)
    if ndim < 2:
        raise ShowError(
            f"{title}: a heatmap needs at least 2 dimensions; this value has shape {shape}"
        )
    if dims is None:
        dims = (-2, -1)
    if len(dims) != 2:
        raise ShowError(f"dims must be (rows, columns), two dimensions, not {dims!r}")
    rows_dim, cols_dim = (_dim(d, shape, "dims") for d in dims)
    if rows_dim == cols_dim:
        raise ShowError(f"dims {tuple(dims)} name the same dimension twice for shape {shape}")
    fixed = {_dim(d, shape, "index"): int(i) for d, i in index.items()}
    others = [d for d in range(ndim) if d not in (rows_dim, cols_dim)]
    grid: List[int] = []
    names: List[str] = []
    if others:
        heads = others[-1]
        if stacked and len(others) >= 2 and others[0] not in fixed:
            grid.append(others[0])
            names.append("layer")
        if head is not None:
            if not -shape[heads] <= head < shape[heads]:
                raise ShowError(
                    f"{title}: head {head} is out of range for dimension {heads} of size "
                    f"{shape[heads]} (shape {shape})"
                )
            fixed[heads] = int(head)
        elif heads not in fixed and heads not in grid:
            grid.append(heads)
            # a stack of 2-D maps has only its layers left to spread
            word = "layer" if stacked and len(others) == 1 else "head"
            names.append(word if stacked is not None else f"[{heads}]")
    elif head is not None:
        raise ShowError(f"{title}: head={head}, but shape {shape} has no dimension of heads")
    for d, i in fixed.items():
        if d in (rows_dim, cols_dim):
            raise ShowError(f"index names dimension {d}, which is drawn as rows or columns")
        if not -shape[d] <= i < shape[d]:
            raise ShowError(
                f"{title}: index {i} is out of range for dimension {d} of size {shape[d]}"
            )
    index_out = {d: fixed.get(d, 0) for d in others if d not in grid}
    return Panel(value, record, path, title, rows_dim, cols_dim, grid, index_out, names)


def _dim(d: Any, shape: Tuple[int, ...], what: str) -> int:
    if isinstance(d, bool) or not isinstance(d, int) or not -len(shape) <= d < len(shape):
        raise ShowError(f"{what}: dimension {d!r} does not exist in shape {shape}")
    return d % len(shape)


def _labels(labels: Any) -> Tuple[List[str] | None, List[str] | None] | None:
    """``labels`` as (row labels, column labels): one sequence for both axes, or a pair
    ``(rows, cols)`` of sequences (cross-attention); ``None`` leaves an axis unlabelled."""
    if labels is None:
        return None
    if isinstance(labels, str):
        raise ShowError("labels must be a sequence of labels (e.g. tokens), not one string")
    if is_tensor(labels) or is_array(labels):
        labels = labels.tolist()
    items = list(labels)
    if (
        len(items) == 2
        and all(x is None or (not isinstance(x, str) and _is_sequence(x)) for x in items)
        and any(x is not None for x in items)
    ):
        return _label_list(items[0]), _label_list(items[1])
    flat = _label_list(items)
    return flat, flat


def _is_sequence(x: Any) -> bool:
    return isinstance(x, (list, tuple)) or is_tensor(x) or is_array(x)


def _label_list(items: Any) -> List[str] | None:
    if items is None:
        return None
    if is_tensor(items) or is_array(items):
        items = items.tolist()
    if len(items) > MAX_LABELS:
        raise ShowError(f"{len(items)} labels are more than show() takes ({MAX_LABELS})")
    return [str(x)[:MAX_LABEL_CHARS] for x in items]


def _apply_labels(
    panel: Panel,
    labels: Tuple[List[str] | None, List[str] | None],
    several: bool,
    notes: List[str],
) -> None:
    """Label each axis whose length the labels match; labels that fit neither are an
    error (for one panel) or a note (for one of a capture's several values)."""
    rows_n, cols_n = panel.shape[panel.rows_dim], panel.shape[panel.cols_dim]
    row_labels, col_labels = labels
    panel.row_labels = row_labels if row_labels and len(row_labels) == rows_n else None
    panel.col_labels = col_labels if col_labels and len(col_labels) == cols_n else None
    wrong = []
    if labels[0] is labels[1]:
        if panel.row_labels is None and panel.col_labels is None:
            wrong.append(
                f"{len(row_labels or [])} labels, but rows have {rows_n} and columns {cols_n}"
            )
    else:
        if row_labels is not None and panel.row_labels is None:
            wrong.append(f"{len(row_labels)} row labels, but rows have {rows_n}")
        if col_labels is not None and panel.col_labels is None:
            wrong.append(f"{len(col_labels)} column labels, but columns have {cols_n}")
    if wrong:
        message = f"{panel.title}: " + "; ".join(wrong) + f" (shape {tuple(panel.shape)})"
        if not several:
            raise ShowError(message)
        notes.append(message)


# -- JSON ---------------------------------------------------------------------------------
def _item_json(panel: Panel, max_size: int, reduce: str) -> Dict[str, Any]:
    record = panel.record
    low, high = panel.meta.get("min"), panel.meta.get("max")
    return {
        "kind": "heatmap",
        "id": int(record.id),
        "record_kind": record.kind,
        "record_time": _record_time(record),
        "path": list(panel.path),
        "expression": _expression(record, panel.path),
        "title": panel.title,
        "shape": panel.shape,
        "dtype": str(panel.value.dtype),
        "signed": low is not None and low < 0,
        "rows_dim": panel.rows_dim,
        "cols_dim": panel.cols_dim,
        "grid_dims": list(panel.grid_dims),
        "grid_names": list(panel.grid_names),
        "index": {str(d): i for d, i in panel.index.items()},
        "row_labels": panel.row_labels,
        "col_labels": panel.col_labels,
        "cmap": panel.cmap,
        "reduce": reduce,
        "max_size": max_size,
        "min": low,
        "max": high,
    }


def _record_time(record: Any) -> float | None:
    """The ``time`` the kernel's ``get``/``list`` ops report for the record (its start
    time for a call): with the id it identifies the record across kernel restarts."""
    value = getattr(record, "start_time", None) if record.kind == "call" else record.time
    return None if value is None else float(value)


def _expression(record: Any, path: List[Any]) -> str:
    text = f"nopdb_lab.store[{record.id}].{path[0]}"
    return text + "".join(f"[{p!r}]" for p in path[1:])


def _fmt(x: Any) -> str:
    if x is None:
        return "none (no finite value)"
    return f"{x:.4g}"


# -- pixels -------------------------------------------------------------------------------
_TABLE_CACHE: Dict[str, Any] = {}


def colormap_table(name: str) -> Any:
    """The (256, 3) uint8 table of a colormap (the viewer's ``lookupTable``)."""
    import numpy as np

    if name not in _TABLE_CACHE:
        if name not in TABLES:
            raise ShowError(f"unknown colormap {name!r}; one of {COLORMAPS}")
        raw = bytes.fromhex(TABLES[name])
        _TABLE_CACHE[name] = np.frombuffer(raw, dtype=np.uint8).reshape(256, 3)
    return _TABLE_CACHE[name]


def colorize(planes: Any, low: float | None, high: float | None, cmap: str) -> Any:
    """RGB (…, 3) uint8 of ``planes`` as the viewer paints them: linear, whole-map range,
    diverging around 0 for RdBu; NaN and ±Inf grey."""
    import numpy as np

    values = np.asarray(planes, dtype=np.float64)
    finite = np.isfinite(values)
    low = 0.0 if low is None else low
    high = 0.0 if high is None else high
    with np.errstate(invalid="ignore", divide="ignore"):
        if cmap == "RdBu":
            bound = max(abs(low), abs(high))
            t = np.full(values.shape, 0.5) if bound == 0 else 0.5 + values / (2 * bound)
        else:
            t = np.full(values.shape, 0.5) if high == low else (values - low) / (high - low)
    t = np.where(finite, np.clip(t, 0.0, 1.0), 0.0)
    k = np.floor(t * 255 + 0.5).astype(np.intp)  # JavaScript's Math.round
    rgb = colormap_table(cmap)[k]
    rgb[~finite] = NAN_RGB
    return rgb


def encode_png(rgb: Any) -> bytes:
    """An 8-bit RGB PNG of ``rgb`` (H, W, 3) uint8: signature, IHDR, one zlib IDAT, IEND.

    Every row is written with filter 0 (none); zlib's deflate finds the repeats of
    upscaled cells, so the files stay small without a PNG library."""
    import numpy as np

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width, _ = rgb.shape
    raw = np.zeros((height, 1 + width * 3), dtype=np.uint8)
    raw[:, 1:] = rgb.reshape(height, width * 3)

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def grid_tiling(count: int, grid: List[int] | None) -> Tuple[int, int]:
    """(rows, columns) of tiles: a 2-D grid as it is (layer × head); ``count`` maps of a
    1-D grid in the squarest layout with at least as many columns as rows (12 → 3 × 4)."""
    if grid and len(grid) == 2:
        return grid[0], grid[1]
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


class _Text:
    """Text as grey-level masks, with Pillow's default font; ``None`` masks without
    Pillow (the picture is then drawn without text, and says so in its notes)."""

    def __init__(self, size: int = 11) -> None:
        try:
            from PIL import Image, ImageDraw, ImageFont
        except ImportError:
            self.font = None
            return
        self._image, self._draw = Image, ImageDraw
        try:
            self.font = ImageFont.load_default(size=size)  # Pillow ≥ 10.1 with FreeType
        except (TypeError, OSError, ImportError):
            self.font = ImageFont.load_default()
        self.height = self.mask("Ag").shape[0]

    def mask(self, text: str, rotate: bool = False) -> Any:
        import numpy as np

        left, top, right, bottom = self._draw.Draw(self._image.new("L", (1, 1))).textbbox(
            (0, 0), text or " ", font=self.font
        )
        image = self._image.new("L", (max(1, int(right)), max(1, int(bottom))), 0)
        self._draw.Draw(image).text((0, 0), text, fill=255, font=self.font)
        if rotate:
            image = image.rotate(90, expand=True)
        return np.asarray(image, dtype=np.uint8)


def _paste_text(canvas: Any, mask: Any, x: int, y: int, align: str = "left") -> None:
    import numpy as np

    h, w = mask.shape
    if align == "right":
        x -= w
    elif align == "center":
        x -= w // 2
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(canvas.shape[1], x + w), min(canvas.shape[0], y + h)
    if x1 <= x0 or y1 <= y0:
        return
    alpha = mask[y0 - y : y1 - y, x0 - x : x1 - x, None].astype(np.float32) / 255
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (region * (1 - alpha) + np.array(_INK) * alpha).astype(np.uint8)


def _short(label: str, limit: int = 12) -> str:
    return label if len(label) <= limit else label[: limit - 2] + ".."


def render(view: View) -> Any:
    """The static picture of ``view`` as an (H, W, 3) uint8 array: the panels one under the
    other, each with its title, its maps (tiled when a grid), labels and colour bar."""
    import numpy as np

    text = _Text()
    notes = list(view.notes)
    if text.font is None:
        notes.append("text not drawn in the picture: Pillow is not installed")
    target = _MAP_PX if len(view.panels) == 1 else _MAP_PX // 2
    images = [_render_panel(p, text, notes, target) for p in view.panels]
    if text.font is not None:
        for note in notes:
            mask = text.mask(note)
            strip = np.full((mask.shape[0] + 4, mask.shape[1] + 2 * _GAP, 3), 255, np.uint8)
            _paste_text(strip, mask, _GAP, 2)
            images.append(strip)
    view.notes[:] = _unique(view.notes + notes)
    width = max(img.shape[1] for img in images)
    out = [
        np.pad(img, ((0, 0), (0, width - img.shape[1]), (0, 0)), constant_values=255)
        for img in images
    ]
    return np.concatenate(out, axis=0)


def _unique(items: List[str]) -> List[str]:
    return list(dict.fromkeys(items))


def _render_panel(panel: Panel, text: _Text, notes: List[str], map_px: int) -> Any:
    import numpy as np

    meta = panel.meta
    planes = panel.planes
    count, rows, cols = planes.shape
    grid = meta.get("grid")
    tile_rows, tile_cols = grid_tiling(count, grid)
    target = map_px if not grid else max(_TILE_MIN_PX, min(_TILE_MAX_PX, _GRID_PX // tile_cols))
    scale = max(1, target // max(rows, cols))
    has_text = text.font is not None
    text_h = text.height if has_text else 0
    pooled = meta["row_step"] > 1 or meta["col_step"] > 1
    row_labels = panel.row_labels if meta["row_step"] == 1 else None
    col_labels = panel.col_labels if meta["col_step"] == 1 else None
    if (panel.row_labels or panel.col_labels) and has_text:
        if pooled:
            notes.append(
                f"{panel.title}: labels not drawn in the picture, the map is pooled "
                f"({meta['row_step']}x{meta['col_step']} cells per pixel)"
            )
            row_labels = col_labels = None
        elif scale < text_h - 2:
            notes.append(
                f"{panel.title}: labels not drawn in the picture, cells are {scale} px "
                f"(fewer tiles with head=, or fewer tokens, make room)"
            )
            row_labels = col_labels = None
    if not has_text:
        row_labels = col_labels = None
    row_masks = [text.mask(_short(s)) for s in row_labels] if row_labels else []
    col_masks = [text.mask(_short(s), rotate=True) for s in col_labels] if col_labels else []
    left = max((m.shape[1] for m in row_masks), default=0) + (_GAP if row_masks else 0)
    below = max((m.shape[0] for m in col_masks), default=0) + (_GAP if col_masks else 0)
    caption = text_h + 2 if has_text and grid else 0
    tile_w, tile_h = cols * scale, rows * scale
    cell_w = left + tile_w + _GAP
    cell_h = caption + tile_h + below + _GAP
    title_h = text_h + _GAP if has_text else 0
    bar_h = min(tile_rows * cell_h - _GAP, max(tile_h, 120))
    bar_label_w = 0
    low, high = meta.get("min"), meta.get("max")
    if panel.cmap == "RdBu" and low is not None and high is not None:
        bound = max(abs(low), abs(high))
        bar_low, bar_high = -bound, bound
    else:
        bar_low, bar_high = low, high
    bar_texts = [_fmt_bar(bar_high), _fmt_bar(bar_low)]
    bar_masks = [text.mask(s) for s in bar_texts] if has_text else []
    bar_label_w = max((m.shape[1] for m in bar_masks), default=0)
    width = _GAP + tile_cols * cell_w + _BAR_W + _GAP + bar_label_w + _GAP
    title_mask = text.mask(_title_line(panel)) if has_text else None
    if title_mask is not None:
        width = max(width, title_mask.shape[1] + 2 * _GAP)
    height = title_h + _GAP + max(tile_rows * cell_h, caption + bar_h + _GAP)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    if has_text:
        _paste_text(canvas, title_mask, _GAP, _GAP // 2)
    colours = colorize(planes, low, high, panel.cmap)
    top0 = title_h + _GAP
    for g in range(count):
        tr, tc = divmod(g, tile_cols)
        x = _GAP + tc * cell_w + left
        y = top0 + tr * cell_h + caption
        tile = np.repeat(np.repeat(colours[g], scale, axis=0), scale, axis=1)
        canvas[y : y + tile_h, x : x + tile_w] = tile
        if caption:
            position = (g // grid[1], g % grid[1]) if grid and len(grid) == 2 else (g,)
            _paste_text(
                canvas, text.mask(_caption(panel.grid_names, position))[:, :tile_w], x, y - caption
            )
        if row_masks and tc == 0:
            for r, m in enumerate(row_masks):
                yy = y + r * scale + (scale - m.shape[0]) // 2
                _paste_text(canvas, m, x - _GAP // 2, yy, align="right")
        if col_masks and tr == tile_rows - 1:
            for c, m in enumerate(col_masks):
                xx = x + c * scale + (scale - m.shape[1]) // 2
                _paste_text(canvas, m, xx, y + tile_h + _GAP // 2)
    # colour bar: high at the top, low at the bottom, as the viewer draws it
    bar_x = _GAP + tile_cols * cell_w
    bar_y = top0 + caption
    ramp = colormap_table(panel.cmap)[np.linspace(255, 0, bar_h).round().astype(np.intp)]
    canvas[bar_y : bar_y + bar_h, bar_x : bar_x + _BAR_W] = ramp[:, None, :]
    if bar_masks:
        _paste_text(canvas, bar_masks[0], bar_x + _BAR_W + 3, bar_y)
        _paste_text(canvas, bar_masks[1], bar_x + _BAR_W + 3, bar_y + bar_h - bar_masks[1].shape[0])
    return canvas


def _caption(names: List[str], position: Tuple[int, ...]) -> str:
    """A tile's caption: ``head 3``; in a 2-D grid, where tiles are small, ``L2 H3``."""
    if len(position) == 1:
        return f"{names[0]} {position[0]}"
    return " ".join(
        f"{n[0].upper() if n.isalpha() else n}{i}" for n, i in zip(names, position, strict=True)
    )


def _fmt_bar(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _title_line(panel: Panel) -> str:
    meta = panel.meta
    extra = ""
    if meta["row_step"] > 1 or meta["col_step"] > 1:
        extra = f", pooled {meta['row_step']}x{meta['col_step']} ({meta['reduce']})"
    fixed = ", ".join(f"dim {d}={i}" for d, i in panel.index.items())
    fixed = f", {fixed}" if fixed else ""
    bad = ""
    if meta.get("nan") or meta.get("inf"):
        bad = f", {meta['nan']} NaN / {meta['inf']} Inf (grey)"
    return f"{panel.title} {tuple(panel.shape)}{fixed}{extra}{bad}"


# -- display(flow) ------------------------------------------------------------------------
#: Flows shown with ``display(flow)`` that a notebook's view can still open, newest last.
MAX_DISPLAYED_FLOWS = 8
_displayed_flows: Dict[str, Any] = {}
_flow_tokens = iter(range(1, sys.maxsize))
_FLOW_TILE_PX = 160


def displayed_flow(token: str) -> Any:
    """The flow displayed under ``token`` (the ``"flow"`` item's ``token``); raises
    :class:`ShowError` naming why when it is gone."""
    if token not in _displayed_flows:
        raise ShowError(
            f"the flow displayed as {token!r} is no longer in this kernel (the kernel "
            f"restarted, or more than {MAX_DISPLAYED_FLOWS} flows were displayed since): "
            "run the cell again"
        )
    return _displayed_flows[token]


def _register_flow(flow: Any) -> str:
    for token, known in _displayed_flows.items():
        if known is flow:
            return token
    token = f"displayed-{next(_flow_tokens)}"
    _displayed_flows[token] = flow
    while len(_displayed_flows) > MAX_DISPLAYED_FLOWS:
        del _displayed_flows[next(iter(_displayed_flows))]
    return token


def _flow_layers(flow: Any) -> Tuple[List[Any], List[str]]:
    """Each layer's node gradients (``None`` where not captured) and notes on the gaps."""
    grads: List[Any] = []
    notes: List[str] = []
    for index, layer in enumerate(flow.layers):
        try:
            grads.append(flow.node_grads(index).numpy())
        except LookupError as exc:
            grads.append(None)
            notes.append(f"layer {layer['name']}: {exc}")
    return grads, notes


def flow_png(flow: Any) -> bytes:
    """The static picture of a flow: each layer's node gradients as a map (RdBu, one
    symmetric range per layer), left to right in network order."""
    import numpy as np

    grads, _ = _flow_layers(flow)
    tiles = []
    for layer, g in zip(flow.layers, grads, strict=True):
        grid = list(layer["grid"]) or [1]
        shape = (1, grid[0]) if len(grid) == 1 else (grid[-2], grid[-1])
        if g is None or int(np.prod(shape)) != g.size:
            plane = np.full(shape, np.nan)
        else:
            plane = g.reshape(shape)
        finite = plane[np.isfinite(plane)]
        bound = float(np.abs(finite).max()) if finite.size else 0.0
        rgb = colorize(plane, -bound, bound, "RdBu")
        scale = max(1, _FLOW_TILE_PX // max(shape))
        tiles.append(np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1))
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + _GAP * (len(tiles) + 1)
    canvas = np.full((height + 2 * _GAP, width, 3), _BACKGROUND, dtype=np.uint8)
    x = _GAP
    for t in tiles:
        canvas[_GAP : _GAP + t.shape[0], x : x + t.shape[1]] = t
        x += t.shape[1] + _GAP
    return encode_png(canvas)


def flow_json(flow: Any) -> Dict[str, Any]:
    """The :data:`VIEW_MIME` payload of a flow: one ``"flow"`` item (``docs/display.md``)."""
    _, notes = _flow_layers(flow)
    return {
        "version": VIEW_VERSION,
        "items": [
            {
                "kind": "flow",
                "token": _register_flow(flow),
                "title": repr(flow),
                "flow_kind": flow.kind,
                "sample": flow.sample,
                "layers": [
                    {
                        "name": str(layer["name"]),
                        "grid": [int(s) for s in layer["grid"]],
                        "node_kind": str(layer["node_kind"]),
                    }
                    for layer in flow.layers
                ],
            }
        ],
        "notes": notes,
    }


def flow_bundle(flow: Any, include: Any = None, exclude: Any = None) -> Dict[str, Any]:
    """``GradientFlow._repr_mimebundle_``: the view JSON, a PNG of the node gradients and
    a text description."""
    producers = {
        VIEW_MIME: lambda: flow_json(flow),
        "image/png": lambda: flow_png(flow),
        "text/plain": lambda: repr(flow),
    }
    return {
        mime: produce()
        for mime, produce in producers.items()
        if (not include or mime in include) and not (exclude and mime in exclude)
    }
