"""Optional copies of captured values, so later in-place ops cannot change them.

By default a capture keeps references (as NoPdb does). With ``snapshot=True`` tensors
are detached and cloned on their device, with ``snapshot="cpu"`` (or any
``torch.device``) copied to that device; numpy arrays are copied; lists, tuples and
dicts are copied two levels deep. torch and numpy are never imported here: a value can
only be a tensor if its module is already loaded.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Union

SnapshotSpec = Union[bool, str, Any]
_MAX_DEPTH = 2


def _check_device(spec: Any) -> Any:
    """``spec`` as a usable torch device; a clear error now instead of every tensor
    copy failing (and its capture being dropped) later."""
    if spec == "cpu":
        return spec
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"snapshot={spec!r}: copying to a device needs torch; use snapshot=True or 'cpu'"
        ) from None
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"snapshot={spec!r} is not a device torch knows: {exc}") from None
    try:
        torch.empty(0, device=device)
    except Exception as exc:  # e.g. 'cuda' on a machine without a GPU
        raise ValueError(
            f"snapshot={spec!r}: this process cannot use that device ({exc})"
        ) from None
    return device


def make_snapshotter(spec: SnapshotSpec) -> Callable[[Any], Any] | None:
    """A function copying values as ``spec`` asks, or ``None`` for "keep references"."""
    if spec is None or spec is False:
        return None
    if spec is not True and not isinstance(spec, str) and type(spec).__name__ != "device":
        raise TypeError(f"snapshot must be True, False, or a device like 'cpu', got {spec!r}")
    device = None if spec is True else _check_device(spec)

    def copy(value: Any, depth: int = 0) -> Any:
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):
            detached = value.detach()
            if device is None:
                return detached.clone()
            return detached.to(device, copy=True)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(value, np.ndarray):
            return value.copy()
        if depth < _MAX_DEPTH:
            kind = type(value)
            if kind is list or kind is tuple:
                return kind(copy(v, depth + 1) for v in value)
            if kind is dict:
                return {k: copy(v, depth + 1) for k, v in value.items()}
        return value

    return copy
