"""The answer to a request the user interrupted.

A comm request runs on the kernel's main thread like a cell, so the notebook's stop
button raises ``KeyboardInterrupt`` inside it (a labels expression that never ends, a
slow stack or summary). The request must still be answered, or the front end waits for
it: the interrupt becomes an :class:`Interrupted` error reply, and the kernel goes on.
"""

from __future__ import annotations


class Interrupted(Exception):  # noqa: N818 (the wire error type is "Interrupted")
    """A request stopped by ``KeyboardInterrupt``; its reply's error type is ``Interrupted``."""


def interrupted_message(op: object) -> str:
    """What the user reads where the request came from."""
    name = op if isinstance(op, str) and op else "the request"
    return f"{name} was interrupted (the kernel's stop button) before it finished"
