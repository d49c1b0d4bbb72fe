"""Everything that needs IPython, ipykernel, comm or jupyter_server.

The front end bootstraps the kernel side with ``import nopdb_lab.jupyter as s; s.start()``.
Nothing outside this package imports it (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations


def start() -> str:
    """Enable the capture store and register the ``nopdb_lab`` comm target (idempotent).

    Imported on call so that loading the server extension (which lives in this package)
    in the Jupyter server process does not load the kernel-side service.
    """
    from .service import start as start_service

    return start_service()


def interrupt_requests() -> int:
    """Interrupt every comm request being served in a kernel subshell now (the front end
    runs this, silently, after the notebook's stop button); returns how many."""
    from .interrupts import interrupt_requests as interrupt

    return interrupt()
