"""Gradient ops for the JupyterLab panel (issue 11): the gradient switch, the layer strip,
the gradient marker on capture rows and the "Gradients" section of a capture's details.

The analysis lives in :mod:`nopdb_lab.analysis.gradients`; here it is put on the wire.
Every "no gradient" answer names its reason (the record's ``grad_status``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Tuple

from ..analysis import gradients as g
from ..analysis.summary import summarize
from ..records import ProtocolError, resolve

if TYPE_CHECKING:
    from .ops import Session

#: What the heatmap op may paint for a value path.
OF_CHOICES = ("value", "grad", "abs_grad", "grad_x_value")


def grad_marker(record: Any) -> Dict[str, int] | None:
    """``{"received": n, "asked": m}`` for a record captured with grads, else None."""
    summary = g.grad_summary(record)
    if summary is None:
        return None
    return {"received": summary["received"], "asked": summary["asked"]}


def status_path(record: Any, key: str) -> List[Any]:
    """The value path (as ``value``/``heatmap`` take it) of a ``grad_status`` key.

    ``"locals.attn"`` → ``["locals", "attn"]``; a hit's ``"attn"`` → ``["locals", "attn"]``;
    ``"return_value.0"`` → ``["return_value", 0]``; attention weights → ``["locals", "weights"]``.
    """
    if getattr(record, "kind", "") == "attention":
        return ["locals", "weights"]
    parts: List[Any] = [int(p) if p.isdigit() else p for p in key.split(".")]
    if parts[0] in ("args", "locals", "return_value"):
        return parts
    if getattr(record, "kind", "") == "hit":
        return ["locals", *parts]
    return parts


def grad_expression(record: Any, path: List[Any]) -> str:
    """Python that reaches the gradient at ``path``: ``nopdb_lab.store[3].grads['locals']['attn']``
    (a hit's ``grads`` are keyed by name, an attention record's ``grads`` is the tensor)."""
    root = f"nopdb_lab.store[{record.id}].grads"
    kind = getattr(record, "kind", "")
    if kind == "attention":
        steps = list(path[2:])
    elif kind == "hit":
        steps = list(path[1:])
    else:
        steps = list(path)
    return root + "".join(f"[{step!r}]" for step in steps)


def gradients_section(record: Any) -> List[Dict[str, Any]] | None:
    """One row per value asked for: its path, status and, when present, the gradient's
    summary and statistics (‖g‖₂, mean |g|, max |g|, NaN/Inf)."""
    status = getattr(record, "grad_status", None)
    if status is None:
        return None
    rows: List[Dict[str, Any]] = []
    for key, state in sorted(dict(status).items()):
        path = status_path(record, key)
        row: Dict[str, Any] = {"key": key, "path": path, "status": state}
        if state == g.OK:
            try:
                grad = g.gradient_of(record, path)
            except g.NoGradientError as exc:
                row["status"] = str(exc)
            else:
                if getattr(grad, "shape", None) is not None:
                    row["summary"] = {
                        **summarize(grad),
                        "expression": grad_expression(record, path),
                    }
                    stats = g.gradient_stats([grad])[0]
                    row["stats"] = {
                        k: stats[k] for k in ("norm", "mean_abs", "max_abs", "nan", "inf")
                    }
        rows.append(row)
    return rows


def value_of(record: Any, path: List[Any], of: str) -> Tuple[Any, str]:
    """The tensor the heatmap paints: the value, its gradient, |gradient| or gradient × value.

    Raises :class:`ProtocolError` saying why there is no gradient.
    """
    value, expression = resolve(record, path)
    if of == "value":
        return value, expression
    if of not in OF_CHOICES:
        raise ProtocolError(f"of must be one of {', '.join(OF_CHOICES)}, not {of!r}")
    try:
        grad = g.gradient_of(record, path)
    except g.NoGradientError as exc:
        raise ProtocolError(f"capture #{record.id} {path}: {exc}") from None
    grad_expr = grad_expression(record, path)
    if of == "grad":
        return grad, grad_expr
    if of == "abs_grad":
        return grad.detach().abs(), f"{grad_expr}.abs()"
    v = value.detach() if hasattr(value, "detach") else value
    if getattr(v, "shape", None) != getattr(grad, "shape", None):
        raise ProtocolError(
            f"gradient × value needs equal shapes: the value is {list(v.shape)}, "
            f"the gradient {list(grad.shape)}"
        )
    return grad.detach() * v.to(grad.device, grad.dtype), f"({grad_expr} * {expression})"


def gradient_capture_op(session: "Session", enabled: bool) -> Tuple[Dict[str, Any], None]:
    """The panel's gradient switch: keep gradients of its captures from the next cell on."""
    (g.start_gradient_capture if enabled else g.stop_gradient_capture)()
    return {"enabled": g.gradient_capture_active()}, None


def layer_strip_op(session: "Session", id: int, path: List[Any]) -> Tuple[Dict[str, Any], None]:
    """One bar per layer for the gradient at ``path``: the captures of the same function in
    the store (a call or hit), or a stack record's sources."""
    record = session.store[id]
    source_ids = getattr(record, "source_ids", None)
    if source_ids is not None:  # a stack record: its path is the one the sources stacked
        records = [session.store[i] for i in source_ids if i in session.store]
        if len(records) < len(source_ids):
            raise ProtocolError(
                f"stack #{id}: {len(source_ids) - len(records)} of its source captures are "
                "no longer in the store (evicted or deleted)"
            )
        path = list(getattr(record, "path", path))
    else:
        records = [
            r
            for r in session.store
            if r.kind == record.kind
            and r.qualname == record.qualname
            and r.file == record.file
            and r.line == record.line
            and getattr(r, "grad_status", None) is not None
        ]
        if record not in records:
            records = [record]
    if all(getattr(r, "grad_status", None) is None for r in records):
        raise ProtocolError(
            f"capture #{id} was made without grads: pass grads=True (or names) to the "
            "capture, or turn on the Gradients switch"
        )
    rows = g.layer_strip(records, path)
    for row, r in zip(rows, records, strict=True):
        if row.get("present"):  # the viewer's sliders need the gradient's shape
            row["shape"] = list(g.gradient_of(r, path).shape)
            row["expression"] = grad_expression(r, path)
    return {"path": path, "layers": rows}, None
