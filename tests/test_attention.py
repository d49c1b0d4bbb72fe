"""capture_attention: probabilities of fused scaled_dot_product_attention calls."""

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import nopdb_lab  # noqa: E402
from examples.vit import Attention, vit_tiny  # noqa: E402
from nopdb_lab import attention_probabilities, capture_attention  # noqa: E402
from nopdb_lab.capture_store import CaptureStore  # noqa: E402


def _expand(v, heads):
    return v.repeat_interleave(heads // v.shape[-3], dim=-3) if v.shape[-3] != heads else v


CASES = {
    "plain": dict(),
    "scale": dict(scale=0.37),
    "causal": dict(is_causal=True),
    "causal, more keys than queries": dict(is_causal=True, n_q=3, n_k=7),
    "bool mask": dict(mask="bool"),
    "float mask": dict(mask="float"),
    "grouped-query heads": dict(heads_kv=2, enable_gqa=True),
}


@pytest.mark.parametrize("case", CASES)
def test_probabilities_are_the_ones_sdpa_applies(case):
    """weights @ v must reproduce SDPA's own output, for every mask/scale/GQA variant."""
    spec = dict(CASES[case])
    torch.manual_seed(0)
    n_q, n_k = spec.pop("n_q", 5), spec.pop("n_k", 5)
    heads_kv = spec.pop("heads_kv", 4)
    q = torch.randn(2, 4, n_q, 8)
    k = torch.randn(2, heads_kv, n_k, 8)
    v = torch.randn(2, heads_kv, n_k, 8)
    mask = spec.pop("mask", None)
    if mask == "bool":
        spec["attn_mask"] = torch.rand(n_q, n_k) > 0.3
        spec["attn_mask"][:, 0] = True  # no fully masked rows
    elif mask == "float":
        spec["attn_mask"] = torch.randn(2, 1, n_q, n_k)
    expected = F.scaled_dot_product_attention(q, k, v, **spec)
    weights = attention_probabilities(q, k, **spec)
    assert weights.shape == (2, 4, n_q, n_k)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, n_q))
    assert torch.allclose(weights @ _expand(v, 4), expected, atol=1e-5)
    if spec.get("is_causal"):
        assert weights[..., 0, 1:].abs().max() == 0  # the first query sees only key 0


def test_fully_masked_rows_are_zero_not_nan():
    q, k = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    weights = attention_probabilities(q, k, attn_mask=mask)
    assert not weights.isnan().any() and weights[0, 0, 1].abs().max() == 0


def test_fused_vit_gives_the_maps_of_the_eager_softmax():
    eager, fused = vit_tiny(), vit_tiny(fused=True)
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), nopdb_lab.capture_calls(Attention.forward) as calls:
        expected_out = eager(image)
    with torch.no_grad(), capture_attention() as attns:
        out = fused(image)
    assert torch.allclose(out, expected_out, atol=1e-5)  # capturing does not change the model
    assert len(attns) == len(calls) == 4
    for call, record in zip(calls, attns):
        assert torch.allclose(record.weights, call.locals["attn"], atol=1e-6)
    assert [r.module for r in attns] == [f"blocks.{i}.attn" for i in range(4)]
    assert attns[0].module_class == "Attention" and attns[0].qualname == "Attention.forward"
    assert attns[0].stack[-1].name == "forward" and attns[0].kv_groups == 1
    assert attns[0].scale == pytest.approx(8**-0.5)


def test_nothing_is_recorded_outside_the_block():
    model = vit_tiny(fused=True)
    with capture_attention() as attns:
        pass
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    assert attns == []


def test_snapshot_cpu_and_bad_snapshot():
    with capture_attention(snapshot="cpu") as attns, torch.no_grad():
        vit_tiny(fused=True)(torch.rand(1, 3, 32, 32))
    assert attns[0].weights.device.type == "cpu"
    with pytest.raises(ValueError, match="snapshot must be None or 'cpu'"):
        with capture_attention(snapshot="gpu"):
            pass


def test_records_are_captures_in_the_store():
    from nopdb_lab.kernel_service import brief, detail

    store = CaptureStore()
    store.enable()
    try:
        with capture_attention() as attns, torch.no_grad():
            vit_tiny(fused=True)(torch.rand(1, 3, 32, 32))
    finally:
        store.disable()
    record = store[attns[0].id]
    assert record is attns[0] and record.locals["weights"] is attns[0].attention
    assert torch.equal(record.locals["weights"].materialize(), attns[0].weights)
    # the store counts what the lazy record keeps alive: q and k are views of the block's
    # qkv projection (1×17×3·32 float32), whose storage is counted once; no float32 map
    assert store.size_of(record.id) == attns[0].attention.nbytes == 17 * 3 * 32 * 4
    row = brief(record, store)
    assert row["kind"] == "attention" and row["qualname"] == "Attention.forward"
    assert detail(record, store)["locals"]["module"]["repr"] == "'blocks.0.attn'"


transformers = pytest.importorskip("transformers")


def _bert(implementation):
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    model = transformers.BertModel._from_config(config, attn_implementation=implementation)
    return model.eval()


def test_bert_sdpa_maps_equal_the_eager_attentions():
    eager, sdpa = _bert("eager"), _bert("sdpa")
    sdpa.load_state_dict(eager.state_dict())
    ids = torch.randint(0, 100, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0  # padding in the second sequence
    with torch.no_grad():
        expected = eager(input_ids=ids, attention_mask=mask, output_attentions=True)
        with capture_attention() as attns:
            out = sdpa(input_ids=ids, attention_mask=mask)
    assert torch.allclose(out.last_hidden_state, expected.last_hidden_state, atol=1e-5)
    assert len(attns) == 2
    for record, eager_map in zip(attns, expected.attentions):
        assert record.weights.shape == (2, 4, 9, 9)
        assert torch.allclose(record.weights, eager_map, atol=1e-5)
        assert record.masked
    assert record.weights[1, :, :, 6:].abs().max() == 0  # padded keys get no attention
    assert attns[0].module.startswith("encoder.layer.0.attention")


def test_session_capture_from_the_panel_records_until_stopped():
    from nopdb_lab import start_attention_capture, stop_attention_capture
    from nopdb_lab.attention import attention_capture_active

    store = CaptureStore()
    store.enable()
    model = vit_tiny(fused=True)
    try:
        assert start_attention_capture() and not start_attention_capture()
        assert attention_capture_active()
        with torch.no_grad():
            model(torch.rand(1, 3, 32, 32))
        assert stop_attention_capture() and not stop_attention_capture()
        with torch.no_grad():
            model(torch.rand(1, 3, 32, 32))
    finally:
        store.disable()
    records = [r for r in store if r.kind == "attention"]
    assert [r.module for r in records] == [f"blocks.{i}.attn" for i in range(4)]


def test_session_capture_will_not_unwind_someone_elses_mode():
    from torch.overrides import TorchFunctionMode

    from nopdb_lab import start_attention_capture, stop_attention_capture

    start_attention_capture()
    other = TorchFunctionMode()
    other.__enter__()
    try:
        with pytest.raises(RuntimeError, match="another TorchFunctionMode"):
            stop_attention_capture()
    finally:
        other.__exit__(None, None, None)
    assert stop_attention_capture()
