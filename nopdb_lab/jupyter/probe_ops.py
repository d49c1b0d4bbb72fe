"""Probe ops for the JupyterLab front end: list probes, edit their inputs, read run deltas.

The comm ops here (``probe_list``, ``probe_edit``, ``probe_undo``, ``probe_reset``,
``probe_delta``) are quick and run inside the comm handler. Re-running a probe and
attributing it are NOT ops: they can take minutes, so the front end runs them as silent
execute requests on the notebook's kernel (``nopdb_lab.get_probe(name).rerun()``, and
:func:`nopdb_lab.jupyter.probe_runs.attribute`). That way the notebook's stop button
interrupts them (a KeyboardInterrupt in the kernel's main thread, which a comm handler
would not get), and their errors come back in the execute reply.

Edits are kept per probe on an undo stack (the elements' values before each edit), so
Undo restores exactly what one edit changed; Reset puts the inputs back as at run 1.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from ..probe import Probe, ProbeError, get_probe, probes
from ..records import ProtocolError

#: How many changed elements ``probe_delta`` lists at most (the count is always exact).
DELTA_LIMIT = 100_000

# probe name -> (the probe the stack belongs to, [(input, k×ndim indices, values before)])
_undo: Dict[str, Tuple[Probe, List[Tuple[str, Any, Any]]]] = {}


def _probe(name: str) -> Probe:
    try:
        return get_probe(name)
    except KeyError as exc:
        raise KeyError(exc.args[0]) from None


def _stack(probe: Probe) -> List[Tuple[str, Any, Any]]:
    """The probe's undo stack (a new probe of the same name starts a new one)."""
    held = _undo.get(probe.name)
    if held is None or held[0] is not probe:
        held = (probe, [])
        _undo[probe.name] = held
    return held[1]


def _pending(probe: Probe, name: str) -> int:
    """How many elements of input ``name`` differ from the newest run's copy."""
    value = probe.inputs.get(name)
    if not probe.runs or value is None or not _is_tensor(value):
        return 0
    before = probe.runs[-1].inputs.get(name)
    if before is None or tuple(before.shape) != tuple(value.shape):
        return int(value.numel())
    same = before == value
    if value.is_floating_point():
        same |= before.isnan() & value.isnan()
    return int((~same).sum())


def _is_tensor(value: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _input_info(probe: Probe, name: str, value: Any) -> Dict[str, Any]:
    tensor = _is_tensor(value)
    return {
        "name": name,
        "shape": [int(s) for s in value.shape] if tensor else [],
        "dtype": str(value.dtype).replace("torch.", "") if tensor else type(value).__name__,
        "editable": tensor,
        "pending": _pending(probe, name) if tensor else 0,
    }


def probe_info(probe: Probe) -> Dict[str, Any]:
    """What the front end shows of a probe: its inputs and its runs' records."""
    return {
        "name": probe.name,
        "inputs": [_input_info(probe, k, v) for k, v in probe.inputs.items()],
        "runs": [
            {
                "number": run.number,
                "record": run.record.id if run.record is not None else None,
                "edited": sum(e.count for e in run.edits.values()),
                "seconds": run.seconds,
            }
            for run in probe.runs
        ],
        "undo": len(_stack(probe)),
    }


def probe_list_op(session: Any) -> Tuple[Dict[str, Any], None]:
    return {"probes": [probe_info(p) for p in probes.values()]}, None


def _editable(probe: Probe, input: str) -> Any:
    if input not in probe.inputs:
        raise ProtocolError(
            f"probe {probe.name!r} has no input {input!r} (inputs: {list(probe.inputs)})"
        )
    value = probe.inputs[input]
    if not _is_tensor(value):
        raise ProtocolError(
            f"input {input!r} of probe {probe.name!r} is a {type(value).__name__}, "
            "not a tensor: only tensor inputs can be edited here"
        )
    return value


def _edit_indices(value: Any, cells: List[List[int]] | None, region: Dict[str, Any] | None):
    """The k×ndim indices an edit names: listed cells, or every cell of a box region."""
    import torch

    ndim = value.dim()
    if (cells is None) == (region is None):
        raise ProtocolError("an edit names either cells or a region (exactly one of them)")
    if cells is not None:
        if not cells:
            raise ProtocolError("an edit needs at least one cell")
        for cell in cells:
            if len(cell) != ndim:
                raise ProtocolError(
                    f"cell {cell} has {len(cell)} indices; the input has {ndim} dimensions"
                )
            for d, (i, n) in enumerate(zip(cell, value.shape, strict=True)):
                if not 0 <= i < n:
                    raise ProtocolError(f"cell {cell}: index {i} out of range 0..{n - 1} (dim {d})")
        return torch.tensor(cells, dtype=torch.long).reshape(-1, ndim)
    assert region is not None
    start, stop = list(region["start"]), list(region["stop"])
    if len(start) != ndim or len(stop) != ndim:
        raise ProtocolError(f"a region needs start and stop of {ndim} indices each")
    for d, (a, b, n) in enumerate(zip(start, stop, value.shape, strict=True)):
        if not 0 <= a < b <= n:
            raise ProtocolError(
                f"region dim {d}: start {a}, stop {b} must satisfy 0 <= start < stop <= {n}"
            )
    axes = [torch.arange(a, b) for a, b in zip(start, stop, strict=True)]
    grid = torch.meshgrid(*axes, indexing="ij") if axes else []
    return torch.stack([g.reshape(-1) for g in grid], dim=1)


def _edit_state(probe: Probe, input: str | None, changed: int) -> Dict[str, Any]:
    return {
        "probe": probe.name,
        "input": input,
        "changed": changed,
        "pending": {k: _pending(probe, k) for k, v in probe.inputs.items() if _is_tensor(v)},
        "undo": len(_stack(probe)),
    }


def probe_edit_op(
    session: Any,
    probe: str,
    input: str,
    value: float,
    cells: List[List[int]] | None = None,
    region: Dict[str, Any] | None = None,
) -> Tuple[Dict[str, Any], None]:
    """Set the named cells (or a box region) of a probe's input to ``value``; undoable."""
    the_probe = _probe(probe)
    tensor = _editable(the_probe, input)
    indices = _edit_indices(tensor, cells, region)
    where = tuple(indices.t())
    before = tensor[where].clone()
    tensor[where] = value
    after = tensor[where]
    changed = int((before != after).sum())
    _stack(the_probe).append((input, indices, before))
    return _edit_state(the_probe, input, changed), None


def probe_undo_op(session: Any, probe: str) -> Tuple[Dict[str, Any], None]:
    """Undo the newest edit (values put back exactly); an error when there is none."""
    the_probe = _probe(probe)
    stack = _stack(the_probe)
    if not stack:
        raise ProtocolError(f"probe {probe!r} has no edit to undo")
    input, indices, before = stack.pop()
    tensor = _editable(the_probe, input)
    where = tuple(indices.t())
    changed = int((tensor[where] != before).sum())
    tensor[where] = before
    return _edit_state(the_probe, input, changed), None


def probe_reset_op(session: Any, probe: str) -> Tuple[Dict[str, Any], None]:
    """Inputs back as at the probe's first run; the undo stack is emptied."""
    the_probe = _probe(probe)
    pending = sum(_pending(the_probe, k) for k in the_probe.inputs)
    the_probe.reset()
    _stack(the_probe).clear()
    return _edit_state(the_probe, None, pending), None


def probe_delta_op(
    session: Any,
    probe: str,
    input: str,
    against: int,
    run: int | None = None,
    limit: int = DELTA_LIMIT,
) -> Tuple[Dict[str, Any], None]:
    """Which elements of an input differ between run ``run`` (newest) and run ``against``."""
    the_probe = _probe(probe)
    try:
        this, other = the_probe.run_number(run), the_probe.run_number(against)
    except ProbeError as exc:
        raise ProtocolError(str(exc)) from None
    if input not in this.inputs or not _is_tensor(this.inputs[input]):
        raise ProtocolError(f"run {this.number} has no tensor input {input!r}")
    edit = this.diff(other)[input]
    indices = edit.indices[:limit].tolist()
    return {
        "probe": the_probe.name,
        "input": input,
        "run": this.number,
        "against": other.number,
        "shape": [int(s) for s in this.inputs[input].shape],
        "count": edit.count,
        "indices": indices,
        "truncated": edit.count > len(indices),
    }, None


def probe_heatmap_op(
    session: Any,
    probe: str,
    input: str,
    rows_dim: int = -2,
    cols_dim: int = -1,
    index: Dict[str, int] | None = None,
    max_size: int = 512,
    reduce: str = "max",
    mean_dims: List[int] | None = None,
    grid_dims: List[int] | None = None,
    region: Dict[str, int] | None = None,
) -> Tuple[Dict[str, Any], List[bytes]]:
    """A 2-D slice of a probe input as it is now (edits not yet re-run included), as the
    ``heatmap`` op slices captured values: the edit mode paints what Re-run will use."""
    from .wire import heatmap_reply

    value = _editable(_probe(probe), input)
    expression = f"nopdb_lab.get_probe({probe!r}).inputs[{input!r}]"
    return heatmap_reply(
        value,
        expression,
        rows_dim,
        cols_dim,
        index,
        max_size,
        reduce,
        mean_dims,
        grid_dims,
        region,
    )
