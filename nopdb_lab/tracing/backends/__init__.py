"""Tracing backends: ``sys.monitoring`` on Python 3.12+, chaining ``sys.settrace`` before.

Set ``NOPDB_LAB_BACKEND=settrace`` to force the fallback (supported on 3.12, for
comparison and testing; refused on 3.13+, where its generator and coroutine captures
are wrong); the default is the fastest one the interpreter has.
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
        if forced == "settrace" and sys.version_info >= (3, 13):
            # its exit classification reads bytecode whose yield/return shapes changed
            # in 3.13: generators and coroutines would be recorded wrongly
            raise RuntimeError(
                "NOPDB_LAB_BACKEND=settrace is not supported on Python 3.13+ (it records "
                "generators and coroutines wrongly there); unset it to use sys.monitoring"
            )
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
