"""Exact gradient flow (``gradient_flow``), checked against ``torch.autograd``.

The reference for every flow is the chain rule written out with the full Jacobian of
the call (``torch.autograd.functional.jacobian``): ``E[p, q] = J[q, p] · g_q`` per
element pair, summed over the elements of each node pair with one-hot matrices. The
records are real ``capture_calls(..., grads=True)`` captures; models run in float64 so
the comparisons can be tight.
"""

from __future__ import annotations

import pytest

import nopdb_lab as nopdb
from nopdb_lab.analysis.flow import (
    FlowError,
    MissingGradientError,
    gradient_flow,
    node_map,
)

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


# -- references ---------------------------------------------------------------------------


def one_hot(ids: "torch.Tensor", count: int, batch: int) -> "torch.Tensor":
    """(batch·numel, count) membership of every element of a (batch, ...) tensor."""
    flat = ids.reshape(1, -1).expand(batch, -1).reshape(-1)
    return F.one_hot(flat, count).double()


def reference_flow(fn, x, g_out, src_nodes="spatial", dst_nodes="spatial", kind="gradient"):
    """F = Sᵀ (Jᵀ ⊙ g) D from the full Jacobian of ``fn`` at ``x``."""
    x = x.detach().double()
    out = fn(x)
    jac = torch.autograd.functional.jacobian(fn, x).reshape(out.numel(), x.numel())
    elem = jac.T * g_out.detach().double().reshape(1, -1)  # [p, q] = J[q, p] g_q
    if kind == "contribution":
        elem = elem * x.reshape(-1, 1)
    src = node_map(src_nodes, x.shape)
    dst = node_map(dst_nodes, out.shape)
    s = one_hot(src.ids, src.count, x.shape[0])
    d = one_hot(dst.ids, dst.count, out.shape[0])
    return s.T @ elem @ d


def vnittest_flow(conv: "nn.Conv2d", grad_out: "torch.Tensor", in_hw) -> "torch.Tensor":
    """vnittest's example formula before it binarises: Wᵀ·g scattered onto the input
    pixels through an unfolded index map (one input channel, batch of one)."""
    c_out = grad_out.shape[1]
    cols = conv.weight.detach().reshape(c_out, -1).T @ grad_out.detach().reshape(c_out, -1)
    h, w = in_hw
    index = (torch.arange(h * w, dtype=torch.float64) + 1).reshape(1, 1, h, w)
    idx = F.unfold(
        index, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride
    )[0].long()
    flow = torch.zeros(h * w + 1, cols.shape[1], dtype=cols.dtype)
    flow.scatter_add_(0, idx, cols[: idx.shape[0]])
    return flow[1:]


class VnittestCNN(nn.Module):
    """vnittest's example network: three 1→1-channel 3×3 convolutions without bias,
    4×4 → 4×4 (padding 1) → 2×2 (stride 2, padding 1) → 1×1 (stride 2, padding 1),
    as in its "simple CNN debugging" notebook."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
        self.conv3 = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)

    def forward(self, x):
        return self.conv3(self.conv2(self.conv1(x)))


def captured(model, x, function=nn.Conv2d.forward, objective=None):
    with nopdb.capture_calls(function, grads=True) as calls:
        out = model(x)
        (out.sum() if objective is None else objective(out)).backward()
    return list(calls)


@pytest.fixture
def vnittest():
    torch.manual_seed(0)
    model = VnittestCNN().double()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randn(1, 1, 1, 1, dtype=torch.float64)
    calls = captured(model, x, objective=lambda out: ((out - target) ** 2).sum())
    return model, x, calls


# -- vnittest's network ------------------------------------------------------------------


def test_vnittest_network_flow_is_the_chain_rule(vnittest):
    model, x, calls = vnittest
    flow = gradient_flow(calls, nodes="spatial")
    assert [layer["shape"] for layer in flow.layers] == [
        (1, 1, 4, 4),
        (1, 1, 4, 4),
        (1, 1, 2, 2),
        (1, 1, 1, 1),
    ]
    assert [layer["nodes"] for layer in flow.layers] == [16, 16, 4, 1]
    assert repr(flow) == (
        "<GradientFlow gradient, spatial nodes: "
        "input 4×4 → 0: Conv2d 4×4 → 1: Conv2d 2×2 → 2: Conv2d 1×1>"
    )
    convs = [model.conv1, model.conv2, model.conv3]
    acts = [x.detach()]
    for conv in convs:
        acts.append(conv(acts[-1]).detach())
    for layer, conv in enumerate(convs):
        g_out = calls[layer].grads["return_value"]
        expected = reference_flow(conv, acts[layer], g_out)
        got = flow.matrix(layer)
        assert got.shape == (acts[layer][0, 0].numel(), acts[layer + 1][0, 0].numel())
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(got, vnittest_flow(conv, g_out, acts[layer].shape[2:]))
        # a plain chain: everything reaching the layer goes through the next conv
        torch.testing.assert_close(flow.bypass(layer), torch.zeros(got.shape[0], dtype=got.dtype))
    torch.testing.assert_close(flow.node_grads(0), x.grad.reshape(-1))
    torch.testing.assert_close(flow.matrix(0).sum(1), x.grad.reshape(-1))


def test_node_grads_come_from_the_layer_tensors(vnittest):
    _, _, calls = vnittest
    flow = gradient_flow(calls)
    for layer in range(1, 4):
        expected = calls[layer - 1].grads["return_value"].reshape(-1)
        torch.testing.assert_close(flow.node_grads(layer), expected)


# -- convolutions with several channels ---------------------------------------------------


CONVS = [
    dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=1, padding=2, dilation=2, groups=2),
    dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(1, 2), padding=(1, 0)),
    dict(in_channels=2, out_channels=2, kernel_size=3, padding="same", padding_mode="reflect"),
    dict(in_channels=3, out_channels=2, kernel_size=4, padding="same"),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kind", ["gradient", "contribution"])
@pytest.mark.parametrize("options", CONVS)
def test_conv_closed_form_equals_vjp_and_jacobian(options, kind):
    torch.manual_seed(1)
    conv = nn.Conv2d(bias=True, **options).double()
    x = torch.randn(2, options["in_channels"], 7, 8, dtype=torch.float64, requires_grad=True)
    calls = captured(conv, x, objective=lambda out: (out**3).sum())
    closed = gradient_flow(calls, kind=kind)
    assert closed.transition(0).method == "conv-spatial"
    forced = gradient_flow(calls, kind=kind, functions={0: lambda t: conv(t)})
    assert forced.transition(0).method == "vjp"
    expected = reference_flow(conv, x, calls[0].grads["return_value"], kind=kind)
    torch.testing.assert_close(closed.matrix(0), expected)
    torch.testing.assert_close(forced.matrix(0), expected)
    # the chain rule per node: rows sum to the input's gradient (× input)
    grad = x.grad * x.detach() if kind == "contribution" else x.grad
    torch.testing.assert_close(closed.matrix(0).sum(1), grad.sum(dim=(0, 1)).reshape(-1))


@pytest.mark.parametrize("nodes", ["channel", ("pool", 3), "element"])
def test_conv_other_nodes(nodes):
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, groups=1).double()
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    calls = captured(conv, x, objective=lambda out: out.square().sum())
    flow = gradient_flow(calls, nodes=nodes)
    expected = reference_flow(conv, x, calls[0].grads["return_value"], nodes, nodes)
    torch.testing.assert_close(flow.matrix(0), expected)


def test_conv1d_closed_form():
    torch.manual_seed(3)
    conv = nn.Conv1d(3, 5, 3, stride=2, padding=1, dilation=1).double()
    x = torch.randn(1, 3, 11, dtype=torch.float64, requires_grad=True)
    calls = captured(conv, x, function=nn.Conv1d.forward, objective=lambda o: o.tanh().sum())
    flow = gradient_flow(calls)
    assert flow.transition(0).method == "conv-spatial"
    expected = reference_flow(conv, x, calls[0].grads["return_value"])
    torch.testing.assert_close(flow.matrix(0), expected)
    assert flow.offsets(1) == {"stride": (2,), "offset": (-1,), "extent": (3,)}


def test_one_sample_of_a_batch():
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    calls = captured(conv, x, objective=lambda out: out.square().sum())
    flow = gradient_flow(calls, sample=1)
    expected = reference_flow(conv, x[1:2], calls[0].grads["return_value"][1:2])
    torch.testing.assert_close(flow.matrix(0), expected)
    torch.testing.assert_close(flow.node_grads(0), x.grad[1].sum(0).reshape(-1))
    forced = gradient_flow(calls, sample=1, kind="contribution", functions={0: conv})
    closed = gradient_flow(calls, sample=1, kind="contribution")
    torch.testing.assert_close(forced.matrix(0), closed.matrix(0))


# -- Linear, elementwise, other functions --------------------------------------------------


def test_linear_flow_is_w_transposed_times_diag_g():
    """For a Linear y = W x + b on one sample, F[i, j] = W[j, i] · g_j: F = Wᵀ diag(g);
    its rows sum to Wᵀ g = ∂L/∂x, and the contribution variant is diag(x) Wᵀ diag(g)."""
    torch.manual_seed(5)
    linear = nn.Linear(5, 3).double()
    x = torch.randn(1, 5, dtype=torch.float64, requires_grad=True)
    calls = captured(linear, x, function=nn.Linear.forward, objective=lambda o: o.exp().sum())
    g = calls[0].grads["return_value"][0]
    w = linear.weight.detach()
    flow = gradient_flow(calls, nodes="channel")
    torch.testing.assert_close(flow.matrix(0), w.T * g)
    torch.testing.assert_close(flow.matrix(0).sum(1), x.grad[0])
    contribution = gradient_flow(calls, nodes="channel", kind="contribution")
    torch.testing.assert_close(contribution.matrix(0), x.detach()[0, :, None] * w.T * g)
    torch.testing.assert_close(contribution.node_grads(0), x.grad[0] * x.detach()[0])
    # one flow answers both kinds, per request
    torch.testing.assert_close(flow.matrix(0, kind="contribution"), contribution.matrix(0))
    torch.testing.assert_close(flow.bypass(0, kind="contribution"), torch.zeros(5).double())
    wire = flow.to_wire(0, top_k=3, kind="contribution")
    assert wire["kind"] == "contribution"
    top = contribution.links(0, top_k=3)[2]
    torch.testing.assert_close(torch.from_numpy(wire["value"]).double(), top, atol=1e-6, rtol=1e-5)


def test_linear_token_nodes():
    torch.manual_seed(6)
    linear = nn.Linear(4, 6).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    calls = captured(linear, x, function=nn.Linear.forward, objective=lambda o: o.sin().sum())
    flow = gradient_flow(calls, nodes="token")
    expected = reference_flow(linear, x, calls[0].grads["return_value"], "token", "token")
    torch.testing.assert_close(flow.matrix(0), expected)
    torch.testing.assert_close(flow.matrix(0), torch.diag(torch.diagonal(expected)))


class ConvReluConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(3, 2, 3, stride=2)

    def forward(self, x):
        return self.conv2(self.act(self.conv1(x)))


def test_elementwise_calls_between_convolutions():
    torch.manual_seed(7)
    model = ConvReluConv().double()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    with nopdb.capture_calls(nn.Conv2d.forward, grads=True) as convs:
        with nopdb.capture_calls(nn.GELU.forward, grads=True) as acts:
            model(x).square().sum().backward()
    flow = gradient_flow(list(convs) + list(acts))
    assert [r.name for r in flow.records] == ["forward"] * 3
    assert flow.transition(1).method == "elementwise"
    h = model.conv1(x).detach()
    expected = reference_flow(model.act, h, acts[0].grads["return_value"])
    torch.testing.assert_close(flow.matrix(1), expected)
    for layer in range(3):
        torch.testing.assert_close(
            flow.bypass(layer), torch.zeros(flow.layers[layer]["nodes"], dtype=torch.float64)
        )


class Mixer(nn.Module):
    """Not a closed form: tokens mix through a softmax over the sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        weights = torch.softmax(x @ x.transpose(-1, -2), dim=-1)
        return self.norm(weights @ x)


def test_any_other_function_by_vjp():
    torch.manual_seed(8)
    mixer = Mixer().double()
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    calls = captured(mixer, x, function=Mixer.forward, objective=lambda o: o.tanh().sum())
    flow = gradient_flow(calls, nodes="token", chunk_elements=40)  # two targets a chunk
    assert flow.transition(0).method == "vjp"
    expected = reference_flow(mixer, x, calls[0].grads["return_value"], "token", "token")
    torch.testing.assert_close(flow.matrix(0), expected)
    torch.testing.assert_close(flow.bypass(0), torch.zeros(5, dtype=torch.float64))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv3 = nn.Conv2d(2, 1, 3, stride=2)

    def forward(self, x):
        a1 = self.conv1(x)
        a2 = self.conv2(a1) + a1
        return self.conv3(a2)


def test_residual_chain_flow_plus_bypass_is_the_gradient():
    torch.manual_seed(9)
    model = Residual().double()
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    calls = captured(model, x, objective=lambda o: o.square().sum())
    flow = gradient_flow(calls)
    for layer in range(3):
        total = flow.matrix(layer).sum(1) + flow.bypass(layer)
        torch.testing.assert_close(total, flow.node_grads(layer))
    # what skips conv2 is the gradient of the sum a2, summed per pixel
    skip = calls[2].grads["args"]["input"].sum(dim=(0, 1)).reshape(-1)
    torch.testing.assert_close(flow.bypass(1), skip)
    assert skip.abs().max() > 0
    assert flow.layers[2]["feeds_next_call"] is False  # conv3 reads a2, not conv2's output


# -- links, regions, sizes, errors ----------------------------------------------------------


def brute_links(dense, top_k, threshold=None, src_keep=None, dst_keep=None):
    m = dense.clone()
    if src_keep is not None:
        m[~src_keep] = 0
    if dst_keep is not None:
        m[:, ~dst_keep] = 0
    if threshold is not None:
        m[m.abs() < threshold] = 0
    flat = m.reshape(-1)
    nonzero = (flat != 0).sum()
    top = torch.topk(flat.abs(), int(min(top_k, nonzero)))
    return top.indices // m.shape[1], top.indices % m.shape[1], flat[top.indices]


def box_mask(grid, box):
    ys, xs = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    return ((ys >= box[0]) & (ys < box[1]) & (xs >= box[2]) & (xs < box[3])).reshape(-1)


@pytest.fixture
def conv_pair():
    torch.manual_seed(10)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1).double()
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    return captured(conv, x, objective=lambda o: o.square().sum())


@pytest.mark.parametrize("max_dense", [4_000_000, 10])  # kept dense / sparse-only
@pytest.mark.parametrize("nodes", ["spatial", "channel"])
def test_links_regions_threshold_top_k(conv_pair, max_dense, nodes):
    reference = gradient_flow(conv_pair, nodes=nodes).matrix(0)
    flow = gradient_flow(conv_pair, nodes=nodes, max_dense=max_dense)
    src_box, dst_box = ((2, 9, 1, 7), (1, 4, 0, 6)) if nodes == "spatial" else ((0, 2), (1, 3))
    if nodes == "spatial":
        src_keep, dst_keep = box_mask((12, 12), src_box), box_mask((6, 6), dst_box)
    else:
        src_keep, dst_keep = box_mask((3, 1), src_box + (0, 1)), box_mask((4, 1), dst_box + (0, 1))
    threshold = float(reference.abs().median())
    for top_k in (1, 7, 10_000):
        src, dst, value = flow.links(
            0, top_k=top_k, threshold=threshold, src_region=src_box, dst_region=dst_box
        )
        e_src, e_dst, e_value = brute_links(reference, top_k, threshold, src_keep, dst_keep)
        torch.testing.assert_close(value.abs(), e_value.abs())
        torch.testing.assert_close(value, reference[src, dst])
        assert bool(src_keep[src].all()) and bool(dst_keep[dst].all())
        assert bool((value.abs() >= threshold).all())
        assert len(value) == len(e_value) <= top_k
        assert bool((value.abs()[:-1] >= value.abs()[1:]).all())  # strongest first


def test_streamed_links_of_a_generic_function_match_dense():
    torch.manual_seed(11)
    mixer = Mixer().double()
    x = torch.randn(1, 9, 4, dtype=torch.float64, requires_grad=True)
    calls = captured(mixer, x, function=Mixer.forward)
    dense = gradient_flow(calls, nodes="element").matrix(0)
    streamed = gradient_flow(calls, nodes="element", max_dense=100, chunk_elements=100)
    with pytest.raises(FlowError, match="flow.links"):
        streamed.matrix(0)
    src, dst, value = streamed.links(0, top_k=25, dst_region=(2, 7, 0, 4))
    keep = box_mask((9, 4), (2, 7, 0, 4))
    _, _, e_value = brute_links(dense, 25, dst_keep=keep)
    torch.testing.assert_close(value.abs(), e_value.abs())
    torch.testing.assert_close(value, dense[src, dst])


def test_too_big_dense_request_says_what_to_do(conv_pair):
    flow = gradient_flow(conv_pair, max_dense=100)
    with pytest.raises(FlowError, match=r"144×36 matrix .*flow\.links\(0, top_k"):
        flow.matrix(0)
    assert len(flow.links(0, top_k=5)[0]) == 5  # links still answer, from the sparse form
    with pytest.raises(FlowError, match="top_k"):
        flow.links(0, top_k=None)


def test_to_wire_is_compact(conv_pair):
    import numpy as np

    wire = gradient_flow(conv_pair).to_wire(0, top_k=50, regions={"dst": (0, 3, 0, 3)})
    assert wire["src"].dtype == np.int32 and wire["dst"].dtype == np.int32
    assert wire["value"].dtype == np.float32 and len(wire["value"]) == 50
    assert wire["src_grads"].dtype == np.float32 and wire["src_grads"].shape == (144,)
    assert wire["grid"] == [[12, 12], [6, 6]]
    assert wire["offsets"]["target_on_source"] == {
        "stride": (2, 2),
        "offset": (-1, -1),
        "extent": (3, 3),
    }
    # 3×3 taps per output pixel, minus those on the padding: kernel row 0 of output
    # row 0 (6·3 taps), kernel column 0 of output column 0 (6·3), one tap in both
    assert wire["total_links"] == 36 * 9 - (18 + 18 - 1)
    assert (wire["dst"] // 6 < 3).all() and (wire["dst"] % 6 < 3).all()


def test_offsets_bound_the_jacobian_support(vnittest):
    model, x, calls = vnittest
    flow = gradient_flow(calls)
    assert flow.offsets(2, to=1) == {"stride": (2, 2), "offset": (-1, -1), "extent": (3, 3)}
    # conv3 → layer 2: offset 0·2-1 = -1, extent 3; conv2 → layer 1: -1·2-1 = -3,
    # (3-1)·2+3 = 7; conv1 → layer 0: -3·1-1 = -4, (7-1)·1+3 = 9; strides 2·2·1
    assert flow.offsets(3) == {"stride": (4, 4), "offset": (-4, -4), "extent": (9, 9)}
    # every layer-2 node depends on exactly the input pixels of its receptive field box
    jac = torch.autograd.functional.jacobian(
        lambda t: model.conv2(model.conv1(t)), x.detach()
    ).reshape(4, 4, 4)
    for node in range(4):
        y0, y1, x0, x1 = flow.receptive_field(2, node, to=0)
        support = jac[node] != 0
        box = torch.zeros(4, 4, dtype=torch.bool)
        box[y0:y1, x0:x1] = True
        assert torch.equal(support, box)
    # and the other way: the layer-2 nodes each input pixel reaches
    for pixel in range(16):
        y0, y1, x0, x1 = flow.target_field(0, pixel, to=2)
        reached = jac[:, pixel // 4, pixel % 4].reshape(2, 2) != 0
        box = torch.zeros(2, 2, dtype=torch.bool)
        box[y0:y1, x0:x1] = True
        assert torch.equal(reached, box)


def test_missing_gradients_are_explained():
    conv = nn.Conv2d(1, 1, 3).double()
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)  # the input does not require grad
    with nopdb.capture_calls(nn.Conv2d.forward, grads=True) as calls:
        out = conv(x)
    flow = gradient_flow(calls)
    with pytest.raises(MissingGradientError, match="pending: no backward pass"):
        flow.matrix(0)
    out.sum().backward()
    assert flow.matrix(0).shape == (25, 9)  # the flow only needs the output's gradient
    with pytest.raises(MissingGradientError, match="layer 0 .*no grad: a leaf tensor"):
        flow.node_grads(0)
    with nopdb.capture_calls(nn.Conv2d.forward) as plain:
        conv(x)
    with pytest.raises(MissingGradientError, match="without grads"):
        gradient_flow(plain).matrix(0)


def test_clear_errors_for_bad_requests(vnittest):
    _, _, calls = vnittest
    with pytest.raises(FlowError, match="no captured calls"):
        gradient_flow([])
    with pytest.raises(FlowError, match="unknown nodes"):
        gradient_flow(calls, nodes="pixel")
    with pytest.raises(FlowError, match="kind must be"):
        gradient_flow(calls, kind="saliency")
    flow = gradient_flow(calls)
    with pytest.raises(FlowError, match="no next layer"):
        flow.matrix(3)
    linear = nn.Linear(4, 4)
    with nopdb.capture_calls(nn.Linear.forward, grads=True) as lin:
        linear(torch.randn(2, 4)).sum().backward()
    with pytest.raises(FlowError, match="'spatial' nodes need"):
        gradient_flow(lin, nodes="spatial")


def test_a_call_that_does_not_reproduce_is_refused():
    torch.manual_seed(12)
    model = nn.Sequential(nn.Linear(6, 64), nn.Dropout(0.5)).train()  # 2^-64: a new mask
    with nopdb.capture_calls(nn.Sequential.forward, grads=True) as calls:
        model(torch.randn(1, 6, requires_grad=True)).sum().backward()
    with pytest.raises(FlowError, match="did not reproduce"):
        gradient_flow(calls, nodes="channel").matrix(0)


def test_a_call_that_cannot_be_re_invoked_is_explained():
    class Broken(nn.Module):
        def forward(self, x):
            # numpy needs real storage: fails under torch.func's wrapped tensors
            return x * torch.from_numpy(x.detach().numpy()).sum()

    with nopdb.capture_calls(Broken.forward, grads=True) as calls:
        Broken()(torch.randn(1, 3, requires_grad=True)).sum().backward()
    with pytest.raises(FlowError, match="re-invoking call 0 .*failed"):
        gradient_flow(calls, nodes="channel").matrix(0)


def test_custom_node_function_groups_elements(conv_pair):
    def halves(shape):
        channels, h, w = shape
        return (torch.arange(h).reshape(1, h, 1) >= h // 2).long().expand(channels, h, w)

    flow = gradient_flow(conv_pair, nodes=halves)
    spatial = gradient_flow(conv_pair).matrix(0)
    top_src, top_dst = torch.arange(144) // 12 >= 6, torch.arange(36) // 6 >= 3
    expected = torch.tensor(
        [[spatial[top_src == a][:, top_dst == b].sum() for b in (0, 1)] for a in (0, 1)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(flow.matrix(0), expected)


def test_node_kinds_group_the_right_elements():
    ids = node_map("token", (2, 3, 5, 4)).ids  # (batch, heads, tokens, dim): tokens
    assert ids.shape == (3, 5, 4) and torch.equal(ids[1, :, 2], torch.arange(5))
    head = node_map("head", (1, 3, 5, 4))
    assert head.count == 3 and torch.equal(head.ids[:, 0, 0], torch.arange(3))
    split = node_map(("head", 2), (1, 5, 8))  # (batch, tokens, hidden) into 2 heads
    assert split.count == 2 and split.ids[0].tolist() == [0] * 4 + [1] * 4
    pool = node_map(("pool", 2), (1, 2, 5, 4))
    assert pool.grid == (3, 2) and pool.ids[1, 4, 3] == 5 and pool.ids[0, 1, 1] == 0
    assert node_map("element", (1, 2, 3)).count == 6
    feature = node_map("feature", (2, 5, 7))  # (batch, tokens, hidden): hidden units
    assert feature.count == 7 and torch.equal(feature.ids[3], torch.arange(7))
    assert node_map("channel", (2, 5, 7)).count == 5  # dimension 1, channels first
    with pytest.raises(FlowError, match="'element' nodes are for small tensors"):
        node_map("element", (1, 64, 32, 32))
    with pytest.raises(FlowError, match="does not split into 5 heads"):
        node_map(("head", 5), (1, 5, 8))


def test_token_flow_through_heads_by_vjp():
    """Per-head nodes on (batch, heads, tokens, dim) tensors, a function with no closed form."""
    torch.manual_seed(13)

    class HeadMix(nn.Module):
        def forward(self, q):
            return torch.softmax(q @ q.transpose(-1, -2), dim=-1) @ q.flip(1)

    mix = HeadMix().double()
    q = torch.randn(1, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    calls = captured(mix, q, function=HeadMix.forward, objective=lambda o: o.sin().sum())
    for nodes in ("head", "token"):
        flow = gradient_flow(calls, nodes=nodes)
        expected = reference_flow(mix, q, calls[0].grads["return_value"], nodes, nodes)
        torch.testing.assert_close(flow.matrix(0), expected)


def test_conv1d_channel_nodes_by_the_analytic_vjp():
    torch.manual_seed(14)
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2).double()
    x = torch.randn(2, 4, 9, dtype=torch.float64, requires_grad=True)
    calls = captured(conv, x, function=nn.Conv1d.forward, objective=lambda o: o.cos().sum())
    flow = gradient_flow(calls, nodes="channel")
    assert flow.transition(0).method == "conv-vjp"
    expected = reference_flow(conv, x, calls[0].grads["return_value"], "channel", "channel")
    torch.testing.assert_close(flow.matrix(0), expected)


def test_functional_elementwise_records():
    """``F.silu`` captured as a function (no module): recognised as elementwise."""
    torch.manual_seed(15)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    with nopdb.capture_calls(F.silu, grads=True) as calls:
        F.silu(x * 2).sum().backward()
    flow = gradient_flow(calls, nodes="element")
    assert flow.transition(0).method == "elementwise"
    h = (x * 2).detach()
    expected = reference_flow(F.silu, h, calls[0].grads["return_value"], "element", "element")
    torch.testing.assert_close(flow.matrix(0), expected)


def test_snapshot_captures_chain_like_references(vnittest):
    model, x, calls = vnittest
    with nopdb.capture_calls(nn.Conv2d.forward, grads=True, snapshot=True) as copies:
        model(x).square().sum().backward()
    flow = gradient_flow(copies)
    assert all(layer["feeds_next_call"] for layer in flow.layers)  # equal copies chain
    for layer in range(3):
        g_out = copies[layer].grads["return_value"]
        conv = [model.conv1, model.conv2, model.conv3][layer]
        expected = reference_flow(conv, copies[layer].args["input"], g_out)
        torch.testing.assert_close(flow.matrix(layer), expected)
