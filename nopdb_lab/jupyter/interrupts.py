"""The answer to a request the user interrupted, on the main thread or in a subshell.

A comm request that runs on the kernel's main thread (like a cell) gets
``KeyboardInterrupt`` from the notebook's stop button (SIGINT). JupyterLab >= 4.6 sends
comm messages through a kernel subshell: a thread of its own, which SIGINT never reaches.
For those, the front end follows the stop button with a silent execute request (on the
main shell) of :func:`interrupt_requests`, which raises ``KeyboardInterrupt`` in every
thread serving a request now (``PyThreadState_SetAsyncExc``: delivered at the thread's
next Python bytecode, so a loop wholly in C is not reached, as in a cell).

Either way the request must still be answered, or the front end waits for it: the
interrupt becomes an :class:`Interrupted` error reply, and the kernel goes on.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import Dict, Iterator, Tuple


class Interrupted(Exception):  # noqa: N818 (the wire error type is "Interrupted")
    """A request stopped by ``KeyboardInterrupt``; its reply's error type is ``Interrupted``."""


def interrupted_message(op: object) -> str:
    """What the user reads where the request came from."""
    name = op if isinstance(op, str) and op else "the request"
    return f"{name} was interrupted (the kernel's stop button) before it finished"


_lock = threading.Lock()
_running: Dict[int, Tuple[str, str | None]] = {}  # thread ident -> (op, request id)


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> int:
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(exc) if exc is not None else None
        )
    )


@contextlib.contextmanager
def running(op: str, request_id: str | None) -> Iterator[None]:
    """Mark the current thread as serving a request while the block runs (main-thread
    requests are left to SIGINT). On the way out, an interrupt that was raised but not yet
    delivered is withdrawn, so it can never reach the kernel's own message loop."""
    ident = threading.get_ident()
    if threading.current_thread() is threading.main_thread():
        yield
        return
    with _lock:
        _running[ident] = (op, request_id)
    try:
        yield
    finally:
        with _lock:
            _running.pop(ident, None)
            _set_async_exc(ident, None)


def running_requests() -> Dict[int, Tuple[str, str | None]]:
    """The requests being served in other threads now: thread ident -> (op, request id)."""
    with _lock:
        return dict(_running)


def interrupt_requests() -> int:
    """Raise ``KeyboardInterrupt`` in every thread serving a request now (a kernel
    subshell's); each is answered with an ``Interrupted`` error. Returns how many."""
    count = 0
    with _lock:
        for ident in list(_running):
            if ident != threading.get_ident():
                count += _set_async_exc(ident, KeyboardInterrupt)
    return count
