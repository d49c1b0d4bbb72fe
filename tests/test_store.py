import logging

import pytest

import nopdb_lab as nopdb
from nopdb_lab.analysis.summary import summarize
from nopdb_lab.capture_store import CaptureStore
from tests import sample_code as sc

np = pytest.importorskip("numpy")


@pytest.fixture
def store():
    s = CaptureStore(budget=1_000_000)
    s.enable()
    yield s
    s.disable()


def make_array(x):
    buffer = np.ones(x, dtype=np.float32)
    return buffer.sum()


def test_store_keeps_captures_and_hits_by_id(store):
    with (
        nopdb.capture_calls(sc.add_one) as calls,
        nopdb.breakpoint(function=sc.add_one, line=6) as bp,
    ):
        sc.add_one(1)
    call, hit = store[calls[0].id], store[bp.hits[0].id]
    assert call is calls[0] and call.locals["z"] == 4
    assert hit.kind == "hit" and hit.line == 6
    assert store.ids() == [bp.hits[0].id, calls[0].id]  # in arrival order


def test_store_counts_array_bytes_and_evicts_oldest_first(store, caplog):
    added = []
    store.add_listener(lambda kind, payload: added.append(kind))
    with caplog.at_level(logging.WARNING, logger="nopdb_lab"):
        with nopdb.capture_calls(make_array) as calls:
            for _ in range(4):
                make_array(100_000)  # 400,000 bytes kept per call
    size = store.size_of(calls[-1].id)  # the array and the record's own bookkeeping
    assert 400_000 < size < 400_000 + 4096
    assert store.ids() == [calls[2].id, calls[3].id]
    assert store.nbytes == 2 * size
    eviction = store.evictions[-1]
    assert eviction.ids == [calls[1].id] and eviction.nbytes == size
    assert "evicted 1 oldest capture" in caplog.text and "set_budget" in caplog.text
    assert added.count("added") == 4 and added.count("evicted") == 2
    with pytest.raises(KeyError, match=f"capture {calls[0].id} is not in the store"):
        store[calls[0].id]


def test_set_budget_delete_and_clear(store):
    with nopdb.capture_calls(make_array) as calls:
        make_array(100_000)
        make_array(100_000)
    store.set_budget(500_000)
    assert store.ids() == [calls[1].id]
    store.delete(calls[1].id)
    assert len(store) == 0 and store.nbytes == 0
    with pytest.raises(ValueError, match="positive number of bytes"):
        store.set_budget(0)
    with nopdb.capture_calls(make_array):
        make_array(10)
    store.clear()
    assert len(store) == 0


def test_a_record_larger_than_the_budget_is_kept_alone(store):
    with nopdb.capture_calls(make_array) as calls:
        make_array(100)
        make_array(500_000)
    assert store.ids() == [calls[1].id]


def test_disabled_store_records_nothing():
    s = CaptureStore()
    with nopdb.capture_calls(sc.add_one):
        sc.add_one(1)
    assert len(s) == 0 and "not recording" in repr(s)


def test_summaries_of_arrays_containers_and_objects():
    a = np.array([[1.0, np.nan], [np.inf, 3.0]], dtype=np.float32)
    s = summarize(a)
    assert s["shape"] == [2, 2] and s["dtype"] == "float32"
    assert (s["nan"], s["inf"], s["min"], s["max"], s["mean"]) == (1, 1, 1.0, 3.0, 2.0)
    assert summarize([1, 2, 3]) == {"type": "list", "length": 3, "class": "list"}
    long_repr = summarize("x" * 1000)["repr"]
    assert len(long_repr) <= 200 and "..." in long_repr

    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    assert summarize(Broken())["type"] == "error"


def test_tensor_summaries():
    torch = pytest.importorskip("torch")
    t = torch.tensor([[1.0, float("nan")], [-2.0, 5.0]], dtype=torch.bfloat16)
    s = summarize(t)
    assert s["shape"] == [2, 2] and s["dtype"] == "bfloat16" and s["device"] == "cpu"
    assert (s["nan"], s["inf"], s["min"], s["max"]) == (1, 0, -2.0, 5.0)
    assert s["mean"] == pytest.approx(4 / 3)
    ints = summarize(torch.arange(5))
    assert (ints["min"], ints["max"], ints["dtype"]) == (0.0, 4.0, "int64")
