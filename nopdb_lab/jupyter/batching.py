"""Batching pushed events so that a loop of 10,000 captures stays under iopub's rate limit."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List

from ..tracing.dispatch import paused

#: Pushed events are batched: at most one message per interval and per this many captures,
#: so a loop that captures 10,000 calls stays far below the server's iopub rate limit.
BATCH_INTERVAL_S = 0.1
MAX_BATCH = 1000


class EventBatcher:
    """Collects pushed events and sends them merged, at most every ``interval`` seconds.

    Consecutive events of one kind become one message (``captures_added`` with a list of
    briefs, ``captures_evicted``/``captures_deleted`` with all ids), so the order between
    additions and removals is kept. Captures made in any thread may queue events; a timer
    thread sends them, and :func:`flush_all` sends them at the end of each cell.

    ``latest`` builds the events that only need their newest value (breakpoint states
    and hit counts): :meth:`poke` asks for them, and they are sent after the queued ones.
    """

    def __init__(
        self,
        send: Callable[[Dict[str, Any]], None],
        interval: float = BATCH_INTERVAL_S,
        max_batch: int = MAX_BATCH,
        latest: Callable[[], List[Dict[str, Any]]] | None = None,
    ) -> None:
        self._send = send
        self._interval = interval
        self._max_batch = max_batch
        self._latest = latest
        self._pending: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def push(self, event: Dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(event)
            self._schedule()

    def poke(self) -> None:
        """Have ``latest`` consulted at the next flush."""
        with self._lock:
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self._interval, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> None:
        with paused(), self._lock:
            pending, self._pending = self._pending, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for message in merge_events(pending, self._max_batch):
                self._send(message)
            for message in self._latest() if self._latest is not None else []:
                self._send(message)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._pending = []


def merge_events(events: List[Dict[str, Any]], max_batch: int) -> List[Dict[str, Any]]:
    """Merge runs of same-kind events (see :class:`EventBatcher`)."""
    merged: List[Dict[str, Any]] = []
    for event in events:
        last = merged[-1] if merged else None
        name = event["event"]
        if last is not None and last["event"] == name:
            if name == "captures_added" and len(last["captures"]) < max_batch:
                last["captures"].extend(event["captures"])
                continue
            if name == "captures_updated":  # keep each capture's newest row, in first order
                rows = {row["id"]: row for row in last["captures"]}
                fresh = [row for row in event["captures"] if row["id"] not in rows]
                for row in event["captures"]:
                    if row["id"] in rows:
                        last["captures"][list(rows).index(row["id"])] = row
                last["captures"].extend(fresh)
                continue
            if name in ("captures_evicted", "captures_deleted"):
                last["ids"] = last["ids"] + event["ids"]
                if "message" in event:
                    last["message"] = event["message"]
                continue
        copy = dict(event)
        if "captures" in copy:
            copy["captures"] = list(copy["captures"])  # extended later; keep the input intact
        merged.append(copy)
    return merged
