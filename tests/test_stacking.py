"""Stacking one value across captures (layers), with attention rollout."""

import pytest

torch = pytest.importorskip("torch")

import nopdb_lab  # noqa: E402
from examples.vit import Attention, vit_tiny  # noqa: E402
from nopdb_lab.analysis.stacking import stack_captures  # noqa: E402
from nopdb_lab.capture_store import CaptureStore  # noqa: E402
from nopdb_lab.jupyter.wire import brief  # noqa: E402
from nopdb_lab.records import ProtocolError  # noqa: E402


@pytest.fixture
def store():
    s = CaptureStore()
    s.enable()
    yield s
    s.disable()


def test_every_layers_attention_in_one_tensor_with_rollout(store):
    with torch.no_grad(), nopdb_lab.capture_calls(Attention.forward) as calls:
        vit_tiny()(torch.rand(2, 3, 32, 32))
    record = stack_captures(store, calls[2].id, ["locals", "attn"])
    stacked = record.locals["stacked"]
    assert stacked.shape == (4, 2, 4, 17, 17)  # layers, batch, heads, queries, keys
    for layer, call in enumerate(calls):
        assert torch.equal(stacked[layer], call.locals["attn"])
    assert record.source_ids == [c.id for c in calls]
    maps = [c.locals["attn"] for c in calls]
    assert torch.allclose(record.locals["rollout"], nopdb_lab.attention_rollout(maps))
    for fusion in ("max", "min"):
        expected = nopdb_lab.attention_rollout(maps, head_fusion=fusion)
        assert torch.allclose(record.locals[f"rollout_{fusion}"], expected)
    assert store[record.id] is record  # a capture like any other
    row = brief(record, store)
    assert row["kind"] == "stack" and row["qualname"] == "Attention.forward"


def test_non_attention_values_stack_without_rollout(store):
    with torch.no_grad(), nopdb_lab.capture_calls(Attention.forward) as calls:
        vit_tiny()(torch.rand(1, 3, 32, 32))
    record = stack_captures(store, calls[0].id, ["args", "x"])
    assert record.locals["stacked"].shape == (4, 1, 17, 32)
    assert record.locals["rollout"] is None


def test_nothing_to_stack_is_a_clear_error(store):
    def lonely(x):
        y = x * 2
        return y

    with nopdb_lab.capture_calls(lonely):
        lonely(torch.ones(3, 3))
    (only,) = [r for r in store if r.qualname.endswith("lonely")]
    with pytest.raises(ProtocolError, match="only one capture of .*lonely.* nothing to stack"):
        stack_captures(store, only.id, ["locals", "y"])
    with pytest.raises(ProtocolError, match="is not a tensor or array with dimensions"):
        stack_captures(store, only.id, ["args", "x", 0, 0])
