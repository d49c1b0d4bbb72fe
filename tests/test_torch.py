"""The tracer on a real (small) PyTorch ViT: attention capture, exec, snapshots, get_local."""

import pytest

torch = pytest.importorskip("torch")

import nopdb_lab as nopdb  # noqa: E402
from examples.vit import Attention, vit_tiny  # noqa: E402

SOFTMAX_DONE = "x = (attn @ v).transpose(1, 2).reshape(B, N, C)"


@pytest.fixture
def model_and_images():
    torch.manual_seed(1)
    return vit_tiny(), torch.randn(2, 3, 32, 32)


def test_capture_attention_of_every_layer(model_and_images):
    model, images = model_and_images
    with torch.no_grad(), nopdb.capture_calls(Attention.forward) as calls:
        model(images)
    assert len(calls) == 4
    for call in calls:
        attn = call.locals["attn"]
        assert attn.shape == (2, 4, 17, 17)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, 17))
    assert calls[0].args["self"] is model.blocks[0].attn
    assert calls[0].qualname == "Attention.forward"


def test_bound_forward_captures_only_that_layer(model_and_images):
    model, images = model_and_images
    seen = []
    hook = model.blocks[2].attn.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad(), nopdb.capture_call(model.blocks[2].attn.forward) as call:
        model(images)
    hook.remove()
    torch.testing.assert_close(call.return_value, seen[0])


def test_breakpoint_exec_changes_the_model_output(model_and_images):
    model, images = model_and_images
    with torch.no_grad():
        baseline = model(images)
        with nopdb.breakpoint(function=Attention.forward, line=SOFTMAX_DONE) as bp:
            bp.exec("attn = attn * 3")
            tripled = model(images)
        with nopdb.breakpoint(function=Attention.forward, line=SOFTMAX_DONE) as bp:
            bp.exec("attn = attn * 0")
            with nopdb.capture_calls(Attention.forward) as calls:
                model(images)
        after = model(images)
    assert bp.hit_count == 4
    assert not torch.allclose(baseline, tripled)
    torch.testing.assert_close(after, baseline)  # nothing left behind
    for call in calls:  # zero attention: the output is the projection's bias alone
        bias = call.args["self"].proj.bias
        torch.testing.assert_close(call.return_value, bias.expand_as(call.return_value))


def test_snapshot_protects_captures_from_later_in_place_ops():
    def scale_in_place(t):
        out = t * 2
        return out

    x = torch.ones(3, requires_grad=True)
    with (
        nopdb.capture_call(scale_in_place) as by_ref,
        nopdb.capture_call(scale_in_place, snapshot=True) as copied,
        nopdb.capture_call(scale_in_place, snapshot="cpu") as on_cpu,
    ):
        out = scale_in_place(x)
    with torch.no_grad():
        out.add_(100)
    assert by_ref.return_value[0].item() == 102  # the reference sees the change
    assert copied.return_value[0].item() == 2
    assert not copied.return_value.requires_grad
    assert on_cpu.locals["out"].device.type == "cpu"
    with pytest.raises(TypeError, match="snapshot must be"):
        nopdb.capture_call(scale_in_place, snapshot=3)


def test_get_local_activated_after_the_model_was_built():
    from nopdb_lab import get_local

    class VisualizedAttention(Attention):
        @get_local("attn")
        def forward(self, x):
            B, N, C = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))

    layer = VisualizedAttention(16, 2).eval()
    key = VisualizedAttention.forward.__qualname__
    with torch.no_grad():
        layer(torch.randn(1, 5, 16))  # not active yet: nothing recorded
        get_local.activate()
        try:
            layer(torch.randn(1, 5, 16))
            layer(torch.randn(1, 5, 16))
        finally:
            get_local.deactivate()
        layer(torch.randn(1, 5, 16))
    maps = get_local.cache[key]
    assert len(maps) == 2 and maps[0].shape == (1, 2, 5, 5)
    assert type(maps[0]).__module__ == "numpy"  # Visualizer stores numpy arrays
    get_local.clear()
    assert get_local.cache[key] == []
