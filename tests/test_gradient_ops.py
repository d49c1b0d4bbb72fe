"""The gradient ops of the comm protocol (issue 11) against torch.autograd, through the
real CommService: row markers, the Gradients section, live updates, gradient heatmaps,
the switch and the layer strip."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nopdb_lab  # noqa: E402
from nopdb_lab.analysis import gradients  # noqa: E402
from nopdb_lab.jupyter.batching import merge_events  # noqa: E402

from .test_protocol_contract import request, service  # noqa: E402,F401


class Block(torch.nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.scale = scale

    def forward(self, x):
        h = self.lin(x) * self.scale
        out = torch.tanh(h)
        return out


def model_and_input():
    torch.manual_seed(0)
    blocks = torch.nn.Sequential(Block(1.0), Block(1e-5), Block(1.0))
    return blocks, torch.randn(3, 4, requires_grad=True)


def reference_grads(blocks, x):
    """dL/dh of every block's local h, by torch.autograd on an eager pass."""
    h_values = []
    y = x
    for block in blocks:
        h = block.lin(y) * block.scale
        h_values.append(h)
        y = torch.tanh(h)
    return torch.autograd.grad(y.sum(), h_values)


def test_rows_mark_gradients_and_update_live(service) -> None:  # noqa: F811
    svc, comm = service
    blocks, x = model_and_input()
    with nopdb_lab.capture_calls(Block.forward, grads=["h"]):
        y = blocks(x)
    rows = request(comm, "list")[0]["result"]["captures"]
    assert [r["grads"] for r in rows] == [{"received": 0, "asked": 1}] * 3
    start = len(comm.sent)
    y.sum().backward()
    svc.events.flush()
    updates = [d for d, _ in comm.sent[start:] if d.get("event") == "captures_updated"]
    assert len(updates) == 1  # batched: one message for the three gradients
    assert [r["grads"] for r in updates[0]["captures"]] == [{"received": 1, "asked": 1}] * 3
    assert sorted(r["id"] for r in updates[0]["captures"]) == sorted(r["id"] for r in rows)


def test_details_heatmaps_and_strip_equal_autograd(service) -> None:  # noqa: F811
    svc, comm = service
    blocks, x = model_and_input()
    with nopdb_lab.capture_calls(Block.forward, grads=["h"]):
        y = blocks(x)
    y.sum().backward()
    expected = reference_grads(blocks, x.detach().clone().requires_grad_())
    ids = [r.id for r in svc.store]
    detail = request(comm, "get", id=ids[0])[0]["result"]
    (row,) = detail["gradients"]
    assert row["path"] == ["locals", "h"] and row["status"] == "ok"
    assert row["stats"]["norm"] == pytest.approx(float(expected[0].norm()), rel=1e-5)
    assert row["summary"]["shape"] == [3, 4]
    # the heatmap paints the gradient, |gradient| and gradient × value at the row's path
    for of, want in [
        ("grad", expected[0]),
        ("abs_grad", expected[0].abs()),
        ("grad_x_value", expected[0] * svc.store[ids[0]].locals["h"].detach()),
    ]:
        data, buffers = request(comm, "heatmap", id=ids[0], path=row["path"], of=of, max_size=64)
        assert data["ok"], data
        plane = np.frombuffer(buffers[0], dtype=np.float32).reshape(3, 4)
        np.testing.assert_allclose(plane, want.numpy(), rtol=1e-5, atol=1e-7)
        assert ".grads['locals']['h']" in data["result"]["expression"]
    # the strip: one bar per layer, the damped middle layer flagged as vanishing
    strip = request(comm, "layer_strip", id=ids[1], path=["locals", "h"])[0]["result"]
    assert [bar["id"] for bar in strip["layers"]] == ids
    for bar, g in zip(strip["layers"], expected, strict=True):
        assert bar["norm"] == pytest.approx(float(g.norm()), rel=1e-5)
        assert bar["max_abs"] == pytest.approx(float(g.abs().max()), rel=1e-5)
        assert bar["nan"] == bar["inf"] == 0
    flags = gradients.flag_layers([dict(b) for b in strip["layers"]])
    assert [b["flag"] for b in strip["layers"]] == flags
    # a stack of the three captures gives the same strip
    stacked = request(comm, "stack", id=ids[0], path=["locals", "h"])[0]["result"]
    strip2 = request(comm, "layer_strip", id=stacked["id"], path=["locals", "h"])[0]["result"]
    assert [b["norm"] for b in strip2["layers"]] == [b["norm"] for b in strip["layers"]]


def test_no_gradient_says_why(service) -> None:  # noqa: F811
    svc, comm = service
    blocks, x = model_and_input()
    with torch.no_grad(), nopdb_lab.capture_calls(Block.forward, grads=["h"]):
        blocks(x)
    with nopdb_lab.capture_calls(Block.forward):
        blocks(x)
    no_grad, plain = svc.store[[r.id for r in svc.store][0]], [r for r in svc.store][-1]
    detail = request(comm, "get", id=no_grad.id)[0]["result"]
    assert "torch.no_grad()" in detail["gradients"][0]["status"]
    data, _ = request(comm, "heatmap", id=no_grad.id, path=["locals", "h"], of="grad")
    assert not data["ok"] and "torch.no_grad()" in data["error"]["message"]
    data, _ = request(comm, "heatmap", id=plain.id, path=["locals", "h"], of="abs_grad")
    assert not data["ok"] and "without grads" in data["error"]["message"]
    assert "grads" not in request(comm, "get", id=plain.id)[0]["result"]
    data, _ = request(comm, "layer_strip", id=plain.id, path=["locals", "h"])
    assert not data["ok"] and "without grads" in data["error"]["message"]


def test_the_switch_is_reported_in_hello(service) -> None:  # noqa: F811
    svc, comm = service
    try:
        assert request(comm, "gradient_capture", enabled=True)[0]["result"]["enabled"]
        assert request(comm, "hello")[0]["result"]["gradient_capture"] is True
        assert gradients.gradient_capture_active()
    finally:
        request(comm, "gradient_capture", enabled=False)
    assert request(comm, "hello")[0]["result"]["gradient_capture"] is False


def test_updated_events_merge_to_the_newest_row_per_capture() -> None:
    events = [
        {"event": "captures_updated", "captures": [{"id": 1, "n": 0}]},
        {"event": "captures_updated", "captures": [{"id": 2, "n": 0}, {"id": 1, "n": 1}]},
        {"event": "captures_deleted", "ids": [2]},
        {"event": "captures_updated", "captures": [{"id": 1, "n": 2}]},
    ]
    merged = merge_events(events, 1000)
    assert [e["event"] for e in merged] == [
        "captures_updated",
        "captures_deleted",
        "captures_updated",
    ]
    assert merged[0]["captures"] == [{"id": 1, "n": 1}, {"id": 2, "n": 0}]
    assert events[0]["captures"] == [{"id": 1, "n": 0}]  # the inputs are left intact


def test_a_real_kernel_pushes_captures_updated_after_a_backward_in_a_later_cell() -> None:
    """Through ipykernel: the capture is announced without gradients, the backward in the
    next cell pushes its updated row, and the heatmap paints the gradient."""
    pytest.importorskip("jupyter_client")
    from .kernel_client import Client

    client = Client()
    try:
        client.run(
            "import torch, nopdb_lab\n"
            "def f(x):\n    h = x * 3\n    return h.sum()\n"
            "x = torch.ones(2, 3, requires_grad=True)\n"
            "with nopdb_lab.capture_calls(f, grads=['h']) as calls:\n    y = f(x)"
        )
        (added,) = [b for b in client.added() if b["qualname"] == "f"]
        assert added["grads"] == {"received": 0, "asked": 1}
        client.run("y.backward()")
        client.request("hello")  # drains pushed events
        updated = [b for e in client.pushed("captures_updated") for b in e["captures"]]
        assert [b["grads"] for b in updated if b["id"] == added["id"]][-1] == {
            "received": 1,
            "asked": 1,
        }
        data, buffers = client.request("heatmap", id=added["id"], path=["locals", "h"], of="grad")
        assert data["ok"], data
        assert np.frombuffer(buffers[0], dtype=np.float32).tolist() == [1.0] * 6
    finally:
        client.close()
