"""Tracing backends: ``sys.monitoring`` on Python 3.12+, chaining ``sys.settrace`` before.

Set ``NOPDB_LAB_BACKEND=settrace`` to force the fallback (supported up to 3.12, for
comparison and testing); the default is the fastest one the interpreter has.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..plan import Backend


def backend_name() -> str:
    """Name of the backend this interpreter uses: ``monitoring`` or ``settrace``."""
    forced = os.environ.get("NOPDB_LAB_BACKEND", "").strip().lower()
    if forced in ("monitoring", "settrace"):
        if forced == "monitoring" and sys.version_info < (3, 12):
            raise RuntimeError("NOPDB_LAB_BACKEND=monitoring needs Python 3.12+")
        return forced
    if forced:
        raise ValueError(f"NOPDB_LAB_BACKEND={forced!r}: expected 'monitoring' or 'settrace'")
    return "monitoring" if sys.version_info >= (3, 12) else "settrace"


def create_backend() -> Backend:
    """Instantiate the backend named by :func:`backend_name`."""
    if backend_name() == "monitoring":
        from .monitoring import MonitoringBackend

        return MonitoringBackend()
    from .settrace import SettraceBackend

    return SettraceBackend()
