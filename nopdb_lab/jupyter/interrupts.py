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

Where an interrupt may land is narrowed to the op itself. The whole handling of a
message (:func:`handling`: IPython's ``pre_execute``/``post_execute`` hooks, nopdb-lab's
own bookkeeping, sending the reply) *holds* an interrupt: it is recorded, not raised, so
it cannot stop a hook half-way or drop the request before it is answered. The op runs in
:func:`interruptible`, which raises a held interrupt at once and lets new ones through.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
from types import FrameType
from typing import Dict, Iterator, Set


class Interrupted(Exception):  # noqa: N818 (the wire error type is "Interrupted")
    """A request stopped by ``KeyboardInterrupt``; its reply's error type is ``Interrupted``."""


def interrupted_message(op: object) -> str:
    """What the user reads where the request came from."""
    name = op if isinstance(op, str) and op else "the request"
    return f"{name} was interrupted (the kernel's stop button) before it finished"


_lock = threading.Lock()
# idents of the (non-main) threads handling a request now -> whether an interrupt is
# delivered to them now (True, inside :func:`interruptible`) or held (False)
_threads: Dict[int, bool] = {}
_held: Set[int] = set()  # idents of those threads with a held interrupt
# the main thread's held SIGINT: set by a signal handler, which may run while the main
# thread holds ``_lock``, so it takes no lock
_sigint_held = [False]


def _set_async_exc(ident: int, exc: type[BaseException]) -> int:
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))
    )


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _hold_sigint(signum: int, frame: FrameType | None) -> None:
    _sigint_held[0] = True


def _set_sigint(handler: signal.Handlers | object) -> object:
    """Install a SIGINT handler; returns the previous one, or None where signals cannot
    be set here (an embedded interpreter) or the previous one was set from C."""
    try:
        return signal.signal(signal.SIGINT, handler)  # type: ignore[arg-type]
    except (ValueError, OSError, TypeError):
        return None


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Around the whole handling of one comm message: interrupts are held (recorded for
    :func:`interruptible`), on the main thread (SIGINT) and in a subshell's thread
    (:func:`interrupt_requests`) alike. Puts back the SIGINT handler that was there."""
    ident = threading.get_ident()
    if _on_main_thread():
        _sigint_held[0] = False
        previous = _set_sigint(_hold_sigint)
        try:
            yield
        finally:
            if previous is not None:
                _set_sigint(previous)
            _sigint_held[0] = False  # an interrupt after the answer: nothing left to stop
        return
    with _lock:
        _threads[ident] = False
    try:
        yield
    finally:
        _settle(ident, leaving=True)


def _settle(ident: int, leaving: bool) -> None:
    """Put the thread back to holding, or take it off the list (``leaving``). An
    interrupt raised in it just before (not yet delivered) is delivered and dropped here:
    the op it was meant for has finished, and it can never reach the kernel's own message
    loop, since once the thread holds nothing raises in it any more, and a Python call
    checks for a pending one. (Withdrawing it with ``PyThreadState_SetAsyncExc(id, NULL)``
    is no option: that leaves CPython's "async exception pending" flag set for every
    thread, slowing them all to a crawl.)"""
    while True:
        try:
            with _lock:
                if leaving:
                    _threads.pop(ident, None)
                    _held.discard(ident)
                elif ident in _threads:
                    _threads[ident] = False
            _checkpoint()
            return
        except KeyboardInterrupt:
            continue


def _checkpoint() -> None:
    """A Python call: where the interpreter delivers a pending asynchronous exception."""


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """The part of a request the stop button may stop (inside :func:`handling`): raises
    ``KeyboardInterrupt`` at once for an interrupt held since the message arrived, and
    lets new ones through until it ends. An interrupt arriving as it ends is dropped:
    the op finished, and its answer goes out."""
    ident = threading.get_ident()
    if _on_main_thread():
        previous = None
        try:
            previous = _set_sigint(signal.default_int_handler)
            held, _sigint_held[0] = _sigint_held[0], False
            if held:
                raise KeyboardInterrupt
            yield
        finally:
            try:
                if previous is not None:
                    _set_sigint(previous)
            except KeyboardInterrupt:
                pass  # arrived as the op ended: it has its answer
        return
    with _lock:
        held = ident in _held
        _held.discard(ident)
        if ident in _threads and not held:
            _threads[ident] = True
    if held:
        raise KeyboardInterrupt
    try:
        yield
    finally:
        _settle(ident, leaving=False)


def interrupt_requests() -> int:
    """Interrupt every request a kernel subshell's thread is handling now: one in its op
    gets ``KeyboardInterrupt`` and is answered with an ``Interrupted`` error; one not yet
    in its op is interrupted as it enters it. Returns how many."""
    count = 0
    me = threading.get_ident()
    with _lock:
        for ident, live in list(_threads.items()):
            if ident == me:
                continue
            if live:
                count += _set_async_exc(ident, KeyboardInterrupt)
            else:
                _held.add(ident)
                count += 1
    return count
