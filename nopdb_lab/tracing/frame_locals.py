"""Reading and writing a running frame's local variables on every supported CPython.

Python 3.13 gives ``frame.f_locals`` as a write-through proxy (PEP 667). Before that,
``f_locals`` is a dict snapshot that must be copied back into the frame's fast locals
with ``PyFrame_LocalsToFast``.
"""

from __future__ import annotations

import ctypes
import sys
from types import FrameType
from typing import Any, Dict

_WRITE_THROUGH = sys.version_info >= (3, 13)


def read_locals(frame: FrameType) -> Dict[str, Any]:
    """A plain dict copy of the frame's local variables."""
    return dict(frame.f_locals)


def write_locals(frame: FrameType, new_locals: Dict[str, Any]) -> None:
    """Make the frame's local variables equal to ``new_locals``.

    Names missing from ``new_locals`` are deleted where CPython allows it.
    """
    if _WRITE_THROUGH:
        proxy = frame.f_locals
        for name, value in new_locals.items():
            proxy[name] = value
        for name in [n for n in proxy.keys() if n not in new_locals]:
            try:
                del proxy[name]
            except (KeyError, ValueError, TypeError):
                pass  # fast locals cannot be deleted through the proxy
        return
    f_locals = frame.f_locals
    for name in [n for n in f_locals if n not in new_locals]:
        del f_locals[name]
    f_locals.update(new_locals)
    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(1))
