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

import ctypes
import threading
from typing import Set


class Interrupted(Exception):  # noqa: N818 (the wire error type is "Interrupted")
    """A request stopped by ``KeyboardInterrupt``; its reply's error type is ``Interrupted``."""


def interrupted_message(op: object) -> str:
    """What the user reads where the request came from."""
    name = op if isinstance(op, str) and op else "the request"
    return f"{name} was interrupted (the kernel's stop button) before it finished"


_lock = threading.Lock()
_running: Set[int] = set()  # idents of the threads serving a request now


def _set_async_exc(ident: int, exc: type[BaseException]) -> int:
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))
    )


def serving() -> int | None:
    """Mark the current thread as serving a request (main-thread requests are left to
    SIGINT); returns the token :func:`served` takes, None on the main thread."""
    if threading.current_thread() is threading.main_thread():
        return None
    ident = threading.get_ident()
    with _lock:
        _running.add(ident)
    return ident


def served(token: int | None) -> None:
    """The request of :func:`serving` ended. An interrupt raised just before (not yet
    delivered) is delivered and dropped here, so it can never reach the kernel's own
    message loop: once the thread is off the list nothing raises in it any more, and a
    Python call checks for a pending one. (Withdrawing it with
    ``PyThreadState_SetAsyncExc(id, NULL)`` is no option: that leaves CPython's
    "async exception pending" flag set for every thread, slowing them all to a crawl.)"""
    if token is None:
        return
    while True:
        try:
            with _lock:
                _running.discard(token)
            _checkpoint()
            return
        except KeyboardInterrupt:
            continue


def _checkpoint() -> None:
    """A Python call: where the interpreter delivers a pending asynchronous exception."""


def interrupt_requests() -> int:
    """Raise ``KeyboardInterrupt`` in every thread serving a request now (a kernel
    subshell's); each is answered with an ``Interrupted`` error. Returns how many."""
    count = 0
    with _lock:
        for ident in list(_running):
            if ident != threading.get_ident():
                count += _set_async_exc(ident, KeyboardInterrupt)
    return count
