"""The capture store: every capture and breakpoint hit, by id, within a byte budget.

``nopdb_lab.store`` is the process-wide instance. It records nothing until enabled
(the Jupyter kernel service enables it; ``store.enable()`` does it by hand), after which
every finished capture and breakpoint hit is kept. Tensor and array bytes are counted;
when the total passes the budget the oldest records are evicted, the user is told which
(a warning on the ``nopdb_lab`` logger and an ``evicted`` notice to listeners), and
``store.evictions`` keeps the recent notices.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterator, List

from . import observers
from .summary import value_nbytes

log = logging.getLogger("nopdb_lab")

DEFAULT_BUDGET = 1 << 30  # 1 GiB

Listener = Callable[[str, Any], None]


@dataclass(frozen=True)
class Eviction:
    """Records dropped to stay within the budget."""

    ids: List[int]
    nbytes: int
    budget: int

    def __str__(self) -> str:
        span = f"{self.ids[0]}" if len(self.ids) == 1 else f"{self.ids[0]}..{self.ids[-1]}"
        return (
            f"evicted {len(self.ids)} oldest capture(s) (id {span}, {self.nbytes / 1e6:.1f} MB) "
            f"to stay within the {self.budget / 1e6:.0f} MB budget; raise it with "
            "nopdb_lab.store.set_budget(nbytes)"
        )


def record_nbytes(record: Any) -> int:
    """Tensor/array bytes a capture or hit keeps alive (each storage counted once); a
    record that knows (``nbytes_held()``, e.g. a lazy attention record) says itself."""
    held = getattr(record, "nbytes_held", None)
    if callable(held):
        return int(held())
    seen: set[int] = set()
    total = 0
    for name in ("args", "locals"):
        mapping = getattr(record, name, None) or {}
        total += sum(value_nbytes(v, seen) for v in mapping.values())
    total += value_nbytes(getattr(record, "return_value", None), seen)
    total += value_nbytes(getattr(record, "yields", None) or [], seen)
    return total


class CaptureStore:
    """Captures and hits by id, oldest evicted first beyond ``budget`` bytes."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._lock = threading.RLock()
        self._records: "collections.OrderedDict[int, Any]" = collections.OrderedDict()
        self._sizes: Dict[int, int] = {}
        self.nbytes = 0
        self.budget = budget
        self.evictions: Deque[Eviction] = collections.deque(maxlen=100)
        self._listeners: List[Listener] = []
        self._enabled = False

    # -- recording ------------------------------------------------------------------
    def enable(self) -> None:
        """Start keeping every finished capture and breakpoint hit."""
        if not self._enabled:
            observers.subscribe(self.add)
            self._enabled = True

    def disable(self) -> None:
        """Stop keeping new records (existing ones stay)."""
        observers.unsubscribe(self.add)
        self._enabled = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    def add(self, record: Any) -> None:
        """Keep ``record`` (it needs an ``id``), evicting the oldest beyond the budget."""
        size = record_nbytes(record)
        with self._lock:
            if record.id in self._records:  # a record that grew: re-count its bytes
                self.nbytes += size - self._sizes[record.id]
                self._sizes[record.id] = size
                eviction = self._evict_to_budget(keep=record.id)
                resized = True
            else:
                resized = False
        if resized:
            self._notify("resized", record)
            if eviction is not None:
                self._report(eviction)
            return
        with self._lock:
            self._records[record.id] = record
            self._sizes[record.id] = size
            self.nbytes += size
            eviction = self._evict_to_budget(keep=record.id)
        self._notify("added", record)
        if eviction is not None:
            self._report(eviction)

    def _evict_to_budget(self, keep: int | None = None) -> Eviction | None:
        ids: List[int] = []
        freed = 0
        while self.nbytes > self.budget and self._records:
            oldest = next(iter(self._records))
            if oldest == keep:
                # ``keep`` is the newest record, so it is also the oldest only when it is
                # alone: a single record larger than the budget stays, it is what was asked
                break
            self._records.pop(oldest)
            size = self._sizes.pop(oldest)
            self.nbytes -= size
            freed += size
            ids.append(oldest)
        if not ids:
            return None
        eviction = Eviction(ids=ids, nbytes=freed, budget=self.budget)
        self.evictions.append(eviction)
        return eviction

    def _report(self, eviction: Eviction) -> None:
        log.warning("nopdb_lab store: %s", eviction)
        self._notify("evicted", eviction)

    def set_budget(self, nbytes: int) -> None:
        """Change the byte budget (evicting at once if needed)."""
        if nbytes <= 0:
            raise ValueError(f"the store budget must be a positive number of bytes, got {nbytes}")
        with self._lock:
            self.budget = int(nbytes)
            eviction = self._evict_to_budget()
        if eviction is not None:
            self._report(eviction)

    # -- access ---------------------------------------------------------------------
    def __getitem__(self, record_id: int) -> Any:
        with self._lock:
            try:
                return self._records[record_id]
            except KeyError:
                raise KeyError(
                    f"capture {record_id} is not in the store (never recorded, deleted or "
                    "evicted; see nopdb_lab.store.evictions)"
                ) from None

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Any]:
        """Records, oldest first."""
        with self._lock:
            return iter(list(self._records.values()))

    def ids(self) -> List[int]:
        with self._lock:
            return list(self._records)

    def size_of(self, record_id: int) -> int:
        return self._sizes.get(record_id, 0)

    def delete(self, record_id: int) -> None:
        """Drop one record."""
        with self._lock:
            self[record_id]
            del self._records[record_id]
            self.nbytes -= self._sizes.pop(record_id)
        self._notify("deleted", [record_id])

    def clear(self) -> None:
        """Drop every record."""
        with self._lock:
            ids = list(self._records)
            self._records.clear()
            self._sizes.clear()
            self.nbytes = 0
        self._notify("deleted", ids)

    # -- listeners ------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """``listener(kind, payload)`` for ``added`` (record), ``resized`` (a record that
        grew, e.g. attention during generation), ``evicted`` (Eviction) and ``deleted``
        (list of ids)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, kind: str, payload: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, payload)
            except Exception:
                log.exception("nopdb_lab store: listener %r failed", listener)

    def __repr__(self) -> str:
        return (
            f"<CaptureStore {len(self)} records, {self.nbytes / 1e6:.1f} of "
            f"{self.budget / 1e6:.0f} MB{'' if self._enabled else ', not recording'}>"
        )


store = CaptureStore()
