# ruff: noqa: F811  (the contract tests' service fixture, imported, is a parameter here)
"""The gradient-flow comm ops: what the flow view receives equals GradientFlow's numbers.

Driven through the real CommService (the contract test's recording comm), every message is
validated against the schema, and the buffers are decoded as the front end decodes them.
"""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
pytest.importorskip("jsonschema")

from torch import nn  # noqa: E402

import nopdb_lab  # noqa: E402
from nopdb_lab.analysis.display import VIEW_MIME  # noqa: E402
from nopdb_lab.analysis.flow import gradient_flow  # noqa: E402
from nopdb_lab.analysis.stacking import stack_captures  # noqa: E402
from nopdb_lab.jupyter import flow_ops  # noqa: E402

from .test_protocol_contract import request, service  # noqa: E402,F401


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(2, 3, 3, padding=1, stride=2).double()
        self.b = nn.Conv2d(3, 2, 3, padding=1).double()

    def forward(self, x):
        return self.b(self.a(x))


def run(net: nn.Module | None = None):
    net = net or Net()
    x = torch.rand(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    with nopdb_lab.capture_calls(nn.Conv2d.forward, grads=True) as calls:
        net(x).square().sum().backward()
    return list(calls)


def floats(buffer) -> np.ndarray:
    return np.frombuffer(bytes(buffer), dtype=np.float32)


def ints(buffer) -> np.ndarray:
    return np.frombuffer(bytes(buffer), dtype=np.int32)


def test_open_sends_layers_in_network_order_with_node_grads(service) -> None:
    svc, comm = service
    calls = run()
    expected = gradient_flow(calls)
    data, buffers = request(comm, "flow_open", ids=[c.id for c in reversed(calls)])
    assert data["ok"], data
    layers = data["result"]["layers"]
    assert [layer["grid"] for layer in layers] == [[8, 8], [4, 4], [4, 4]]
    assert [layer["index"] for layer in layers] == [0, 1, 2]
    for index, layer in enumerate(layers):
        grads = expected.node_grads(index).numpy()
        np.testing.assert_allclose(floats(buffers[index]), grads, rtol=1e-5, atol=1e-6)
        assert layer["grad_norm"] == pytest.approx(float(np.linalg.norm(grads)), rel=1e-6)
    # then each layer's representation: its values with the channels summed per pixel
    assert len(buffers) == 2 * len(layers)
    values = [calls[0].args["input"]] + [c.return_value for c in calls]
    for index, value in enumerate(values):
        np.testing.assert_allclose(
            floats(buffers[len(layers) + index]),
            value.detach().sum(dim=1).reshape(-1).numpy(),
            rtol=1e-5,
            atol=1e-6,
        )
    # a stride-2 3x3 convolution with padding 1: node (y, x) of layer 1 covers input pixels
    # [2y - 1, 2y + 2)
    assert layers[1]["offsets_on_input"] == {"stride": [2, 2], "offset": [-1, -1], "extent": [3, 3]}


@pytest.mark.parametrize("kind", ["gradient", "contribution"])
def test_links_are_the_flows_top_k_with_regions_applied_first(service, kind) -> None:
    svc, comm = service
    calls = run()
    expected = gradient_flow(calls, kind=kind)
    opened, _ = request(comm, "flow_open", ids=[c.id for c in calls], kind=kind)
    flow = opened["result"]["flow"]
    box = [1, 3, 0, 2]
    data, buffers = request(
        comm, "flow_links", flow=flow, layer=0, top_k=7, src_region=[0, 4, 0, 4], dst_region=box
    )
    assert data["ok"], data
    src, dst, value = expected.links(0, 7, src_region=(0, 4, 0, 4), dst_region=tuple(box))
    np.testing.assert_array_equal(ints(buffers[0]), src.numpy())
    np.testing.assert_array_equal(ints(buffers[1]), dst.numpy())
    np.testing.assert_allclose(floats(buffers[2]), value.numpy(), rtol=1e-5)
    assert data["result"]["count"] == 7
    for node in ints(buffers[1]):  # every target inside the box (rows 1-2, cols 0-1)
        assert 1 <= node // 4 < 3 and node % 4 < 2
    np.testing.assert_allclose(floats(buffers[3]), expected.node_grads(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(floats(buffers[4]), expected.node_grads(1).numpy(), rtol=1e-5)
    assert data["result"]["total_links"] == expected.link_count(0)


def test_a_threshold_over_the_sent_links_equals_the_kernels(service) -> None:
    """The view filters the links it holds by |value| without a round trip."""
    svc, comm = service
    calls = run()
    opened, _ = request(comm, "flow_open", ids=[c.id for c in calls])
    flow = opened["result"]["flow"]
    _, everything = request(comm, "flow_links", flow=flow, layer=1, top_k=50)
    values = floats(everything[2])
    threshold = float(np.median(np.abs(values)))
    _, kept = request(comm, "flow_links", flow=flow, layer=1, top_k=50, threshold=threshold)
    local = values[np.abs(values) >= threshold]
    np.testing.assert_allclose(floats(kept[2]), local, rtol=1e-6)


def test_open_from_a_stack_record_and_a_displayed_flow(service) -> None:
    svc, comm = service
    same = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)).double()
    calls = run(same)  # a stack needs captures of one shape
    stacked = stack_captures(svc.store, calls[0].id, ["args", "input"])
    data, buffers = request(comm, "flow_open", stack=stacked.id)
    assert data["ok"], data
    assert len(data["result"]["layers"]) == 3
    flow = gradient_flow(calls)
    bundle = flow._repr_mimebundle_()
    item = bundle[VIEW_MIME]["items"][0]
    assert item["kind"] == "flow" and item["layers"][1]["grid"] == [8, 8]
    assert bundle["image/png"].startswith(b"\x89PNG")
    data, buffers = request(comm, "flow_open", display=item["token"])
    assert data["ok"], data
    assert flow_ops.open_flow(data["result"]["flow"]) is flow


@pytest.mark.parametrize(
    "args, message",
    [
        ({}, "exactly one of"),
        ({"display": "displayed-999999"}, "no longer in this kernel"),
    ],
)
def test_open_refusals_say_why(service, args, message) -> None:
    svc, comm = service
    data, _ = request(comm, "flow_open", **args)
    assert not data["ok"] and message in data["error"]["message"], data


def test_captures_without_gradients_are_refused_by_name(service) -> None:
    svc, comm = service
    conv = nn.Conv2d(1, 1, 3)
    with nopdb_lab.capture_calls(nn.Conv2d.forward) as calls:
        conv(torch.rand(1, 1, 5, 5))
    data, _ = request(comm, "flow_open", ids=[calls[0].id])
    assert not data["ok"] and "grads=True" in data["error"]["message"]


def test_links_of_a_closed_or_unknown_flow_and_bad_args(service) -> None:
    svc, comm = service
    calls = run()
    opened, _ = request(comm, "flow_open", ids=[c.id for c in calls])
    flow = opened["result"]["flow"]
    bad, _ = request(comm, "flow_links", flow=flow, layer=0, top_k=0)
    assert bad["error"]["type"] == "RequestError" and bad["error"]["field"] == "args.top_k"
    beyond, _ = request(comm, "flow_links", flow=flow, layer=5)
    assert not beyond["ok"]
    closed, _ = request(comm, "flow_close", flow=flow)
    assert closed["result"] == {"closed": True}
    gone, _ = request(comm, "flow_links", flow=flow, layer=0)
    assert not gone["ok"] and "open it again" in gone["error"]["message"]


def test_only_a_few_flows_stay_open(service) -> None:
    svc, comm = service
    calls = run()
    ids = [c.id for c in calls]
    opened = [request(comm, "flow_open", ids=ids)[0]["result"]["flow"] for _ in range(10)]
    assert not request(comm, "flow_links", flow=opened[0], layer=0)[0]["ok"]
    assert request(comm, "flow_links", flow=opened[-1], layer=0)[0]["ok"]
    assert len(flow_ops._flows) <= flow_ops.MAX_FLOWS
