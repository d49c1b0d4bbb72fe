"""Process-wide notification of finished captures and breakpoint hits.

The capture store (and anything else) subscribes here; the tracer publishes each
finished :class:`~nopdb_lab.CallInfo` and :class:`~nopdb_lab.BreakpointHit`. With no
subscriber, publishing costs one empty-tuple loop.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Tuple

Observer = Callable[[Any], None]

_lock = threading.Lock()
_observers: Tuple[Observer, ...] = ()
log = logging.getLogger("nopdb_lab")


def subscribe(observer: Observer) -> None:
    """Call ``observer(record)`` for every finished capture and breakpoint hit."""
    global _observers
    with _lock:
        if observer not in _observers:
            _observers = _observers + (observer,)


def unsubscribe(observer: Observer) -> None:
    """Stop notifying ``observer``."""
    global _observers
    with _lock:
        _observers = tuple(o for o in _observers if o != observer)


def publish(record: Any) -> None:
    """Notify every observer; an observer that raises is logged, never propagated."""
    for observer in _observers:
        try:
            observer(record)
        except Exception:
            log.exception("nopdb_lab: observer %r failed", observer)


def publish_update(record: Any) -> None:
    """A published record grew (e.g. an attention record during generation): observers
    are called again with the same record; the capture store re-counts its bytes."""
    publish(record)
