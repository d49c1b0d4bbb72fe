"""The capture store: every capture and breakpoint hit, by id, within a byte budget.

``nopdb_lab.store`` is the process-wide instance. It records nothing until enabled
(the Jupyter kernel service enables it; ``store.enable()`` does it by hand), after which
every finished capture and breakpoint hit is kept. Every record's size is counted
(tensor and array buffers, Python values, errors and its own bookkeeping, see
:func:`record_nbytes`); when the total passes the budget, or the number of records passes
``max_records``, the oldest records are evicted, the user is told which (a warning on
the ``nopdb_lab`` logger and an ``evicted`` notice to listeners), and ``store.evictions``
keeps the recent notices. An evicted breakpoint hit also lets go of its values (its
locals, evaluated values and their entries in ``bp.eval`` lists), so the breakpoint's
``hits`` list does not keep them alive behind the store's back.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterator, List

from .analysis.summary import value_nbytes
from .records import Record
from .tracing import observers

log = logging.getLogger("nopdb_lab")

DEFAULT_BUDGET = 1 << 30  # 1 GiB
#: records kept at most, whatever their size: a bound on bookkeeping the size estimate
#: may miss (a function called a million times keeps at most this many records)
DEFAULT_MAX_RECORDS = 100_000

Listener = Callable[[str, Any], None]


@dataclass(frozen=True)
class Eviction:
    """Records dropped to stay within the budget."""

    ids: List[int]
    nbytes: int
    budget: int
    max_records: int = DEFAULT_MAX_RECORDS

    def __str__(self) -> str:
        span = f"{self.ids[0]}" if len(self.ids) == 1 else f"{self.ids[0]}..{self.ids[-1]}"
        return (
            f"evicted {len(self.ids)} oldest capture(s) (id {span}, {self.nbytes / 1e6:.1f} MB) "
            f"to stay within the {self.budget / 1e6:.0f} MB budget and the "
            f"{self.max_records} record limit; raise them with "
            "nopdb_lab.store.set_budget(nbytes) and nopdb_lab.store.max_records"
        )


#: bytes counted for a record's own bookkeeping (its object, id, times, stack link, names)
RECORD_OVERHEAD = 1024


def record_nbytes(record: Record) -> int:
    """An estimate of the bytes a record keeps alive: its values (tensor and array buffers
    whole, each storage counted once; Python objects by their size, containers with their
    items), its errors and a fixed overhead for the record itself."""
    held = getattr(record, "nbytes_held", None)  # a lazy attention record knows itself
    if callable(held):
        return RECORD_OVERHEAD + int(held())
    seen: set[int] = set()
    total = RECORD_OVERHEAD
    for value in record.held_values():
        total += value_nbytes(value, seen) + 64  # and the slot that holds it
    for error in getattr(record, "errors", None) or ():
        total += sys.getsizeof(getattr(error, "traceback", "")) + 256
    total += _traceback_nbytes(getattr(record, "exception", None), seen)
    return total


def _traceback_nbytes(exception: Any, seen: set[int], max_frames: int = 100) -> int:
    """What a captured call's exception keeps alive through its traceback: the locals of
    the frames it passed through (the program's exception: it is kept as it is)."""
    total = 0
    tb = getattr(exception, "__traceback__", None)
    while tb is not None and max_frames > 0:
        try:
            values = list(tb.tb_frame.f_locals.values())
        except Exception:
            values = []
        total += 512 + sum(value_nbytes(v, seen) for v in values)
        tb = tb.tb_next
        max_frames -= 1
    return total


def _release(record: Any) -> None:
    """Let a record drop the values only the product keeps for it (a hit's locals)."""
    release = getattr(record, "release_values", None)
    if release is not None:
        try:
            release()
        except Exception:
            log.exception("nopdb_lab store: record %s could not release its values", record.id)


class CaptureStore:
    """Captures and hits by id, oldest evicted first beyond ``budget`` bytes."""

    def __init__(
        self, budget: int = DEFAULT_BUDGET, max_records: int = DEFAULT_MAX_RECORDS
    ) -> None:
        self.max_records = max_records
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
            observers.subscribe_updates(self.refresh)
            self._enabled = True

    def disable(self) -> None:
        """Stop keeping new records (existing ones stay)."""
        observers.unsubscribe(self.add)
        observers.unsubscribe_updates(self.refresh)
        self._enabled = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    def add(self, record: Any) -> None:
        """Keep ``record`` (it needs an ``id``), evicting the oldest beyond the budget."""
        try:
            size = record_nbytes(record)
        except Exception:  # never lose a record to a sizing bug: count it big and say so
            log.exception("nopdb_lab store: could not size record %s", record.id)
            size = RECORD_OVERHEAD * 64
        with self._lock:
            if record.id in self._records:  # a record that grew: re-count its bytes
                self.nbytes += size - self._sizes[record.id]
                self._sizes[record.id] = size
                eviction = self._evict_to_budget(keep=record.id)
                resized = True
            else:
                resized = False
        if resized:
            self._notify("updated", record)
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

    def refresh(self, record: Any) -> None:
        """Re-count a kept record that changed (a gradient arrived), evicting the oldest
        others beyond the budget, and tell listeners (``updated``)."""
        size = record_nbytes(record)
        with self._lock:
            record_id = record.id
            if self._records.get(record_id) is not record:
                return  # not kept (deleted, evicted, or recorded before the store)
            self.nbytes += size - self._sizes[record_id]
            self._sizes[record_id] = size
            eviction = self._evict_to_budget(keep=record_id)
        self._notify("updated", record)
        if eviction is not None:
            self._report(eviction)

    def _evict_to_budget(self, keep: int | None = None) -> Eviction | None:
        ids: List[int] = []
        freed = 0
        while (
            self.nbytes > self.budget or len(self._records) > self.max_records
        ) and self._records:
            oldest = next(iter(self._records))
            if oldest == keep:
                # ``keep`` is the newest record, so it is also the oldest only when it is
                # alone: a single record larger than the budget stays, it is what was asked
                break
            evicted = self._records.pop(oldest)
            _release(evicted)
            size = self._sizes.pop(oldest)
            self.nbytes -= size
            freed += size
            ids.append(oldest)
        if not ids:
            return None
        eviction = Eviction(ids=ids, nbytes=freed, budget=self.budget, max_records=self.max_records)
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
            _release(self[record_id])
            del self._records[record_id]
            self.nbytes -= self._sizes.pop(record_id)
        self._notify("deleted", [record_id])

    def clear(self) -> None:
        """Drop every record."""
        with self._lock:
            ids = list(self._records)
            for record in self._records.values():
                _release(record)
            self._records.clear()
            self._sizes.clear()
            self.nbytes = 0
        self._notify("deleted", ids)

    # -- listeners ------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """``listener(kind, payload)`` for ``added`` and ``updated`` (a record that changed:
        a gradient arrived, an attention record grew during generation), ``evicted``
        (Eviction) and ``deleted`` (list of ids)."""
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
