"""Comm ops for capture bundles: save the store (or a selection), open a bundle, compare.

Paths come from the front end relative to the Jupyter server's root (the file browser's
paths), together with the directory of the notebook the kernel serves
(``notebook_dir``, also relative to the root). The kernel runs in that directory, so the
root is the kernel's working directory minus ``notebook_dir``; a path that leaves the root
is refused with an error naming it, so a bundle is never written or read elsewhere.

Opening a bundle never runs code: :func:`nopdb_lab.bundle.load_captures` parses JSON and
maps tensor bytes only (see ``docs/bundles.md``).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Tuple

from ..analysis.compare import CompareRecord, _difference, _max_abs
from ..bundle import BundleError, load_captures, save_captures
from ..records import ProtocolError, resolve
from .wire import brief


def server_root(notebook_dir: str, cwd: str | None = None) -> Path:
    """The Jupyter server's root, from the kernel's directory and the notebook's.

    The kernel of ``sub/nb.ipynb`` runs in ``<root>/sub``; anything else means the
    front end and the kernel disagree about where they are, which is refused.
    """
    here = Path(cwd or os.getcwd()).resolve()
    parts = [p for p in PurePosixPath(notebook_dir or "").parts if p not in ("", ".", "/")]
    if any(p == ".." for p in parts):
        raise ProtocolError(f"the notebook directory {notebook_dir!r} leaves the server root")
    root = here
    for part in reversed(parts):
        if root.name != part:
            raise ProtocolError(
                f"the kernel runs in {str(here)!r}, not in the notebook's directory "
                f"{notebook_dir!r}: cannot place the bundle"
            )
        root = root.parent
    return root


def resolve_path(path: str, notebook_dir: str, cwd: str | None = None) -> Path:
    """``path`` (relative to the server root) as an absolute path inside the root."""
    if not path or not path.strip():
        raise ProtocolError("no bundle path given")
    root = server_root(notebook_dir, cwd)
    if PurePosixPath(path).is_absolute() or Path(path).is_absolute():
        raise ProtocolError(f"{path!r} is absolute: give a path inside the server root")
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise ProtocolError(f"{path!r} is outside the Jupyter server's root; refused")
    return target


def _relative(target: Path, root: Path) -> str:
    return target.relative_to(root).as_posix()


def bundle_save_op(
    session: Any, path: str, notebook_dir: str = "", ids: List[int] | None = None
) -> Tuple[Dict[str, Any], None]:
    """Write the selection (``ids``) or the whole store to a bundle at ``path``."""
    target = resolve_path(path, notebook_dir)
    if ids is not None:
        missing = [i for i in ids if i not in session.store]
        if missing:
            raise KeyError(f"no capture with id {missing[0]} in the store (evicted or deleted?)")
        records = [session.store[i] for i in ids]
    else:
        records = list(session.store)
    if not records:
        raise ProtocolError("nothing to save: the selection and the store are empty")
    if not target.parent.is_dir():
        raise ProtocolError(f"the folder of {path!r} does not exist")
    try:
        written = save_captures(str(target), records)
    except BundleError as err:
        raise ProtocolError(str(err)) from None
    root = server_root(notebook_dir)
    return {
        "path": _relative(Path(written).resolve(), root),
        "count": len(records),
        "nbytes": os.path.getsize(written),
    }, None


def bundle_open_op(session: Any, path: str, notebook_dir: str = "") -> Tuple[Dict[str, Any], None]:
    """Load a bundle into this kernel's store; returns the added captures' rows."""
    target = resolve_path(path, notebook_dir)
    if not target.is_file():
        raise ProtocolError(f"no bundle at {path!r}")
    try:
        added = load_captures(str(target), session.store)
    except BundleError as err:
        raise ProtocolError(str(err)) from None
    return {
        "bundle": target.name,
        "captures": [brief(r, session.store) for r in added],
    }, None


def compare_op(session: Any, a: Dict[str, Any], b: Dict[str, Any]) -> Tuple[Dict[str, Any], None]:
    """``A − B`` and the relative difference of two values, as a new store record."""
    sides = []
    for side in (a, b):
        record = session.store[side["id"]]
        value, expression = resolve(record, side.get("path", []))
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise ProtocolError(f"{expression} is not a tensor or array; cannot compare it")
        label = f"#{record.id} {record.qualname or record.name}"
        steps = ".".join(str(s) for s in side.get("path", [])[1:])
        sides.append((value, f"{label}.{steps}" if steps else label, record.id))
    (va, na, ia), (vb, nb, ib) = sides
    shape_a, shape_b = tuple(va.shape), tuple(vb.shape)
    if shape_a != shape_b:
        raise ProtocolError(
            f"cannot compare {na} with shape {list(shape_a)} and {nb} with shape "
            f"{list(shape_b)}: the shapes differ"
        )
    try:
        diff, relative = _difference(va, vb)
    except ValueError as err:
        raise ProtocolError(str(err)) from None
    record = CompareRecord(
        na, nb, [ia, ib], {"diff": diff, "relative": relative, "max_abs_diff": _max_abs(diff)}
    )
    session.store.add(record)
    return brief(record, session.store), None


#: Appended to :data:`nopdb_lab.jupyter.ops.OPS`.
BUNDLE_OPS = {
    "bundle_save": bundle_save_op,
    "bundle_open": bundle_open_op,
    "compare": compare_op,
}
