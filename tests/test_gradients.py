"""Gradients of captured values (``grads=``), checked against ``torch.autograd``.

Each check runs the model once under nopdb-lab and once as an eager copy whose forward
keeps the same intermediate tensors with ``retain_grad()``; the captured gradients must
equal the eager ones.
"""

from __future__ import annotations

import copy
import gc
import weakref

import pytest

import nopdb_lab as nopdb
from nopdb_lab.analysis import gradients

torch = pytest.importorskip("torch")
vit = pytest.importorskip("examples.vit")
Attention = vit.Attention


def tiny_vit(fused: bool = False) -> "torch.nn.Module":
    torch.manual_seed(0)
    return vit.VisionTransformer(img_size=32, patch=8, dim=32, depth=3, heads=2, fused=fused)


class RetainingAttention(Attention):
    """The same attention, keeping its intermediates with ``retain_grad`` (the oracle)."""

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        self.kept = {"x": x}
        x.retain_grad()
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        scores = (q @ k.transpose(-2, -1)) * self.scale
        scores.retain_grad()
        attn = scores.softmax(dim=-1)
        attn.retain_grad()
        out = self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))
        out.retain_grad()
        self.kept.update(scores=scores, attn=attn, out=out)
        return out


def eager_copy(model: "torch.nn.Module") -> "torch.nn.Module":
    twin = copy.deepcopy(model)
    for block in twin.blocks:
        retaining = RetainingAttention(32, 2)
        retaining.load_state_dict(block.attn.state_dict())
        block.attn = retaining
    return twin


def test_locals_args_and_return_values_equal_autograd() -> None:
    model = tiny_vit()
    twin = eager_copy(model)
    x = torch.randn(2, 3, 32, 32)
    target = torch.randn(2, 1000)
    with nopdb.capture_calls(Attention.forward, grads=True) as calls:
        loss = ((model(x) - target) ** 2).mean()
    assert len(calls) == 3
    assert calls[0].grad_status["locals.attn"].startswith("pending")
    loss.backward()  # outside the block, whenever the user likes
    ((twin(x) - target) ** 2).mean().backward()
    for call, block in zip(calls, twin.blocks, strict=True):
        kept = block.attn.kept
        got = call.grads["locals"]["attn"]
        assert got.shape == call.locals["attn"].shape and got.dtype == call.locals["attn"].dtype
        torch.testing.assert_close(got, kept["attn"].grad)
        torch.testing.assert_close(call.grads["args"]["x"], kept["x"].grad)
        torch.testing.assert_close(call.grads["return_value"], kept["out"].grad)
        assert call.grad_status["locals.attn"] == "ok"


def test_named_grads_only_and_unknown_names_say_so() -> None:
    model = tiny_vit()
    with nopdb.capture_calls(Attention.forward, grads=["attn", "nothing_here"]) as calls:
        model(torch.randn(1, 3, 32, 32)).sum().backward()
    grads = calls[0].grads
    assert set(grads["locals"]) == {"attn"}
    assert set(grads["args"]) == set()
    with pytest.raises(KeyError, match="not captured with grads"):
        grads["locals"]["q"]
    assert "no argument or local named 'nothing_here'" in calls[0].grad_status["nothing_here"]


def test_value_at_a_breakpoint_line_is_the_pre_softmax_score() -> None:
    model = tiny_vit()
    twin = eager_copy(model)
    x = torch.randn(2, 3, 32, 32)
    with nopdb.breakpoint(
        function=Attention.forward, line="attn = attn.softmax(dim=-1)", grads=["attn"]
    ) as bp:
        model(x).sum().backward()
    twin(x).sum().backward()
    assert len(bp.hits) == 3
    for hit, block in zip(bp.hits, twin.blocks, strict=True):
        torch.testing.assert_close(hit.grads["attn"], block.attn.kept["scores"].grad)


def test_fused_attention_probabilities_match_eager_bert() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    sdpa = transformers.BertModel._from_config(
        copy.deepcopy(config), attn_implementation="sdpa"
    ).eval()
    eager = transformers.BertModel._from_config(  # its own config: they are shared
        copy.deepcopy(config), attn_implementation="eager"
    ).eval()
    eager.load_state_dict(sdpa.state_dict())
    ids = torch.randint(0, 100, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    plain = sdpa(input_ids=ids, attention_mask=mask).last_hidden_state
    with nopdb.capture_attention(grads=True) as attns:
        out = sdpa(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-5)  # output unchanged
    out.sum().backward()
    ref = eager(input_ids=ids, attention_mask=mask, output_attentions=True)
    for a in ref.attentions:
        a.retain_grad()
    ref.last_hidden_state.sum().backward()
    assert len(attns) == 2
    for record, probs in zip(attns, ref.attentions, strict=True):
        assert record.grad_status == "ok"
        assert record.grads.shape == probs.shape
        torch.testing.assert_close(record.weights, probs.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(record.grads, probs.grad, rtol=1e-4, atol=1e-6)


def test_fused_attention_without_autograd_says_why() -> None:
    model = tiny_vit(fused=True)
    with torch.no_grad(), nopdb.capture_attention(grads=True) as attns:
        model(torch.randn(1, 3, 32, 32))
    assert attns[0].grads is None
    assert "no_grad" in attns[0].grad_status


def test_gradients_accumulate_over_backward_passes() -> None:
    model = tiny_vit()
    with nopdb.capture_calls(Attention.forward, grads=["attn"]) as calls:
        loss = model(torch.randn(1, 3, 32, 32)).sum()
    loss.backward(retain_graph=True)
    once = calls[0].grads["locals"]["attn"].clone()
    loss.backward()
    torch.testing.assert_close(calls[0].grads["locals"]["attn"], 2 * once)


def test_every_no_gradient_reason_is_named() -> None:
    model = tiny_vit()
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode(), nopdb.capture_calls(Attention.forward, grads=True) as calls:
        model(x)
    assert "inference_mode" in calls[0].grad_status["locals.attn"]

    def f(t: "torch.Tensor") -> "torch.Tensor":
        doubled = t * 2
        return doubled

    leaf = torch.ones(3)  # no requires_grad anywhere
    with nopdb.capture_calls(f, grads=True) as c:
        f(leaf)
    assert "leaf tensor without requires_grad" in c[0].grad_status["args.t"]

    def g(t: "torch.Tensor") -> "torch.Tensor":
        doubled = t * 2
        return doubled.sum()

    w = torch.ones(3, requires_grad=True)
    with nopdb.capture_calls(g, grads=["doubled"]) as c:
        out = g(w)
    assert c[0].grad_status["locals.doubled"].startswith("pending")
    with pytest.raises(KeyError, match="no backward pass has reached it yet"):
        c[0].grads["locals"]["doubled"]
    out.backward()
    assert c[0].grad_status["locals.doubled"] == "ok"

    def h(t: "torch.Tensor") -> "torch.Tensor":
        doubled = t * 2
        return doubled

    with nopdb.capture_calls(h, grads=["doubled"]) as c:
        out = h(w)
    out.mul_(3)  # the captured reference changes after capture
    out.sum().backward()
    assert "modified in place after capture" in c[0].grad_status["locals.doubled"]
    with pytest.raises(KeyError, match="modified in place"):
        c[0].grads["locals"]["doubled"]

    with nopdb.capture_calls(h, grads=["doubled"], snapshot=True) as c:  # a snapshot is fine
        out = h(w)
    out.mul_(3)
    out.sum().backward()
    torch.testing.assert_close(c[0].grads["locals"]["doubled"], torch.full((3,), 3.0))

    with nopdb.capture_calls(h) as c:
        h(w)
    with pytest.raises(KeyError, match="made without grads"):
        c[0].grads["locals"]["doubled"]


def test_a_failing_hook_never_breaks_the_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: object, grad: object) -> object:
        raise RuntimeError("disk full")

    monkeypatch.setattr(gradients.GradientCollector, "_copy", boom)
    w = torch.ones(3, requires_grad=True)

    def f(t: "torch.Tensor") -> "torch.Tensor":
        doubled = t * 2
        return doubled.sum()

    with nopdb.capture_calls(f, grads=["doubled"]) as c:
        out = f(w)
    out.backward()  # does not raise
    torch.testing.assert_close(w.grad, torch.full((3,), 2.0))
    assert "disk full" in c[0].grad_status["locals.doubled"]


def test_snapshot_cpu_copies_the_gradient_there() -> None:
    w = torch.ones(4, requires_grad=True)

    def f(t: "torch.Tensor") -> "torch.Tensor":
        scaled = t * 5
        return scaled.sum()

    with nopdb.capture_calls(f, grads=True, snapshot="cpu") as c:
        out = f(w)
    out.backward()
    grad = c[0].grads["locals"]["scaled"]
    assert grad.device.type == "cpu"
    torch.testing.assert_close(grad, torch.ones(4))
    torch.testing.assert_close(c[0].grads["args"]["t"], torch.full((4,), 5.0))


def test_gradients_count_against_the_store_budget() -> None:
    store = nopdb.CaptureStore(budget=1 << 30)
    store.enable()
    events: list = []
    store.add_listener(lambda kind, payload: events.append(kind))
    try:
        w = torch.ones(1000, requires_grad=True)

        def f(t: "torch.Tensor") -> "torch.Tensor":
            scaled = t * 5
            return scaled.sum()

        with nopdb.capture_calls(f, grads=["scaled"]) as c:
            out = f(w)
        before = store.size_of(c[0].id)
        out.backward()
        grown = store.size_of(c[0].id) - before
        assert 4000 <= grown < 4000 + 1024  # the gradient's bytes and its dict entry
        assert "updated" in events
    finally:
        store.disable()


def test_capture_without_grads_registers_no_hooks() -> None:
    w = torch.ones(3, requires_grad=True)

    def f(t: "torch.Tensor") -> "torch.Tensor":
        doubled = t * 2
        return doubled

    with nopdb.capture_calls(f) as c:
        out = f(w)
    assert out._backward_hooks is None or not out._backward_hooks
    assert c[0].grad_status is None


def test_a_dropped_capture_frees_its_tensors_and_its_hooks_do_nothing() -> None:
    w = torch.ones(3, requires_grad=True)

    def f(t: "torch.Tensor") -> "torch.Tensor":
        doubled = t * 2
        return doubled

    gc.disable()
    try:
        with nopdb.capture_calls(f, grads=True) as calls:
            out = f(w)
        record = weakref.ref(calls[0])
        calls.clear()
        assert record() is None  # the hooks on `out` do not keep the record alive
        out.sum().backward()  # the orphaned hooks are no-ops
    finally:
        gc.enable()


@pytest.mark.parametrize("bad", [3, {"attn": 1}, ["not an identifier"], [1]])
def test_bad_grads_argument_is_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="grads"):
        nopdb.capture_calls(Attention.forward, grads=bad)


def test_layer_statistics_flag_vanishing_layers() -> None:
    stats = gradients.gradient_stats(
        [torch.ones(4), torch.full((4,), 1e-9), torch.tensor([1.0, float("nan")]), None]
    )
    assert stats[0]["norm"] == pytest.approx(2.0)
    assert stats[0]["mean_abs"] == pytest.approx(1.0)
    assert stats[2]["nan"] == 1 and stats[2]["mean_abs"] == pytest.approx(1.0)
    assert stats[3] == {"present": False}
    assert gradients.flag_layers(stats) == ["", "vanishing", "nonfinite", ""]


def test_layer_strip_has_one_bar_per_layer_and_says_why_one_is_missing() -> None:
    model = tiny_vit()
    with nopdb.capture_calls(Attention.forward, grads=["attn"]) as calls:
        model(torch.randn(1, 3, 32, 32)).sum().backward()
    with torch.no_grad(), nopdb.capture_calls(Attention.forward, grads=["attn"]) as cold:
        model(torch.randn(1, 3, 32, 32))
    rows = gradients.layer_strip([*calls, cold[0]], ["locals", "attn"])
    assert [r["id"] for r in rows] == [c.id for c in calls] + [cold[0].id]
    for row, call in zip(rows, calls, strict=False):
        assert row["norm"] == pytest.approx(float(call.grads["locals"]["attn"].norm()), rel=1e-5)
    assert rows[-1]["present"] is False and "no_grad" in rows[-1]["reason"]
    with pytest.raises(gradients.NoGradientError, match="made without grads"):
        gradients.gradient_of(nopdb.CallInfo(), ["locals", "attn"])
