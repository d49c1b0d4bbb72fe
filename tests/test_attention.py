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


@pytest.mark.parametrize("via", ["mode", "patch"])
def test_fused_vit_gives_the_maps_of_the_eager_softmax(via):
    eager, fused = vit_tiny(), vit_tiny(fused=True)
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), nopdb_lab.capture_calls(Attention.forward) as calls:
        expected_out = eager(image)
    with torch.no_grad(), capture_attention(via=via) as attns:
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
    from nopdb_lab.jupyter.wire import brief, detail

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
    held = 17 * 3 * 32 * 4
    assert held <= attns[0].attention.nbytes < held + 1024  # the storage, plus the tensors
    assert attns[0].attention.nbytes <= store.size_of(record.id) < held + 4096
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
    from nopdb_lab.analysis.attention import attention_capture_active

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


# -- torch.nn attention modules ------------------------------------------------------------
nn = torch.nn


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_multihead_attention_maps_with_need_weights_false(batch_first, train, grad, cross):
    """need_weights=False used to record nothing; the maps must equal the per-head
    weights need_weights=True returns, and the output must not change (bit for bit)."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).train(train)
    shape = (lambda n: (2, n, 16)) if batch_first else (lambda n: (n, 2, 16))
    x = torch.randn(*shape(5))
    memory = torch.randn(*shape(7)) if cross else x
    kpm = torch.zeros(2, memory.shape[1 if batch_first else 0], dtype=torch.bool)
    kpm[1, -2:] = True
    with torch.set_grad_enabled(grad):
        plain, _ = mha(x, memory, memory, key_padding_mask=kpm, need_weights=False)
        _, expected = mha(
            x, memory, memory, key_padding_mask=kpm, need_weights=True, average_attn_weights=False
        )
        with capture_attention() as attns:
            out, _ = mha(x, memory, memory, key_padding_mask=kpm, need_weights=False)
    assert torch.equal(out, plain)
    assert (
        len(attns) == 1 and attns[0].module == "" and attns[0].module_class == "MultiheadAttention"
    )
    assert torch.allclose(attns[0].weights, expected, atol=1e-6)
    assert attns[0].weights[1, :, :, -2:].abs().max() == 0  # padded keys


@pytest.mark.parametrize("via", ["mode", "patch"])
def test_encoder_layer_fast_path_is_kept_and_recorded(via):
    """In eval without grad nn.TransformerEncoderLayer runs one fused C++ op; capture must
    neither leave that path (outputs bit-identical) nor miss the map."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    with torch.no_grad():
        plain = layer(x, src_mask=mask)
        with capture_attention(via=via) as attns:
            out = layer(x, src_mask=mask)
        _, expected = layer.self_attn(
            x, x, x, attn_mask=mask, need_weights=True, average_attn_weights=False
        )
    assert torch.equal(out, plain)
    assert [r.module for r in attns] == ["self_attn"]
    assert torch.allclose(attns[0].weights, expected, atol=1e-6)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_with_padding_nested_fast_path(norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, norm_first=norm_first)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=not norm_first).eval()
    x = torch.randn(2, 5, 16)
    kpm = torch.zeros(2, 5, dtype=torch.bool)
    kpm[1, 3:] = True
    with torch.no_grad():
        plain = encoder(x, src_key_padding_mask=kpm)
        with capture_attention() as attns:
            out = encoder(x, src_key_padding_mask=kpm)
        first = encoder.layers[0]
        inp = first.norm1(x) if norm_first else x
        _, expected = first.self_attn(
            inp, inp, inp, key_padding_mask=kpm, need_weights=True, average_attn_weights=False
        )
    assert torch.equal(out, plain)
    assert [r.module for r in attns] == ["layers.0.self_attn", "layers.1.self_attn"]
    got = attns[0].weights
    # real query rows (padded queries of the nested fast path are zeros, not the input)
    assert torch.allclose(got[0], expected[0], atol=1e-6)
    assert torch.allclose(got[1, :, :3], expected[1, :, :3], atol=1e-6)
    assert got[1, :, :, 3:].abs().max() == 0


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("via", ["mode", "patch"])
def test_decoder_layer_records_self_and_cross_attention(train, via):
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True).train(train)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    plain = layer(x, memory, tgt_mask=causal)
    with capture_attention(via=via) as attns:
        out = layer(x, memory, tgt_mask=causal)
    assert torch.equal(out, plain)
    assert [r.module for r in attns] == ["self_attn", "multihead_attn"]
    assert [r.shape for r in attns] == [(2, 4, 5, 5), (2, 4, 5, 7)]
    with torch.no_grad():
        _, self_map = layer.self_attn(x, x, x, attn_mask=causal, average_attn_weights=False)
    assert torch.allclose(attns[0].weights, self_map, atol=1e-6)


def test_functional_multi_head_attention_is_recorded():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2)
    x = torch.randn(4, 1, 8)
    args = (x, x, x, 8, 2, mha.in_proj_weight, mha.in_proj_bias, None, None, False, 0.0)
    args += (mha.out_proj.weight, mha.out_proj.bias)
    with capture_attention() as attns:
        F.multi_head_attention_forward(*args, need_weights=False)
    _, expected = F.multi_head_attention_forward(*args, average_attn_weights=False)
    assert len(attns) == 1 and torch.allclose(attns[0].weights, expected, atol=1e-6)


def test_an_attention_op_that_cannot_be_recorded_warns():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(1, 3, 8)
    with pytest.warns(RuntimeWarning, match="_native_multi_head_attention"):
        with torch.no_grad(), capture_attention() as attns:
            torch._native_multi_head_attention(
                x, x, x, 8, 2, mha.in_proj_weight, mha.in_proj_bias,
                mha.out_proj.weight, mha.out_proj.bias, None, False,
            )  # fmt: skip
    assert attns == []


@pytest.mark.parametrize("via", ["mode", "patch"])
def test_torch_compile_records_through_a_graph_break(via):
    torch.manual_seed(0)
    model = vit_tiny(fused=True).eval()
    compiled = torch.compile(model)
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        with capture_attention() as expected:
            model(image)
        with capture_attention(via=via) as attns:
            compiled(image)
    assert [r.module for r in attns] == [f"blocks.{i}.attn" for i in range(4)]
    for got, want in zip(attns, expected, strict=True):
        assert torch.allclose(got.weights, want.weights, atol=1e-5)


# -- decoders from transformers: lazy records, generation -----------------------------------
from nopdb_lab.analysis.attention_lazy import (  # noqa: E402
    AttentionBudgetError,
    LazyStack,
    attention_sinks,
    lazy_slice_2d,
)
from nopdb_lab.analysis.heatmap import slice_2d  # noqa: E402
from nopdb_lab.capture_store import RECORD_OVERHEAD  # noqa: E402


def _llama(implementation, layers=2):
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, RoPE by default
        max_position_embeddings=64,
        eos_token_id=None,  # generate exactly max_new_tokens
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM._from_config(config, attn_implementation=implementation)


def _gpt2(implementation):
    config = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel._from_config(config, attn_implementation=implementation)


def _pair(build):
    eager, sdpa = build("eager").eval(), build("sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    return eager, sdpa


@pytest.mark.parametrize("build", [_llama, _gpt2], ids=["llama-gqa", "gpt2"])
def test_lazy_rows_heads_weights_and_slices_equal_eager_attentions(build):
    eager, sdpa = _pair(build)
    torch.manual_seed(1)
    ids = torch.randint(1, 64, (2, 11))
    with torch.no_grad():
        expected = eager(input_ids=ids, output_attentions=True).attentions
        with capture_attention() as attns:
            sdpa(input_ids=ids)
    assert len(attns) == 2
    for record, want in zip(attns, expected, strict=True):
        assert record.shape == tuple(want.shape) == (2, 4, 11, 11)
        assert torch.allclose(record.weights, want, atol=1e-5)
        assert torch.allclose(record.head(3, batch=1), want[1, 3], atol=1e-5)
        assert torch.allclose(record.rows(2, [0, 10, 4]), want[0, 2, [0, 10, 4]], atol=1e-5)
        assert torch.allclose(record.rows(1, range(3, 6), 1), want[1, 1, 3:6], atol=1e-5)
        assert torch.allclose(record.rows(0, torch.tensor([7])), want[0, 0, [7]], atol=1e-5)
        assert torch.equal(record.token_ids, ids)
        lazy = record.locals["weights"]
        for kwargs in (
            dict(index={0: 1, 1: 2}),
            dict(mean_dims=[1], max_size=4),
            dict(grid_dims=[1], max_size=3, reduce="mean"),
            dict(grid_dims=[0, 1], max_size=5),
        ):
            got_meta, got = lazy_slice_2d(lazy, 2, 3, **kwargs)
            want_meta, want_plane = slice_2d(want, 2, 3, **kwargs)
            assert got.shape == want_plane.shape
            assert got_meta.keys() == want_meta.keys()
            assert {k: got_meta[k] for k in ("rows", "cols", "grid", "row_step")} == {
                k: want_meta[k] for k in ("rows", "cols", "grid", "row_step")
            }
            assert abs(got - want_plane).max() < 1e-5
        # the zoom's region, both orientations: exact values, no pooling
        region = dict(row0=3, row1=9, col0=1, col1=7)
        meta, got = lazy_slice_2d(lazy, 2, 3, index={0: 1, 1: 2}, region=region)
        assert (meta["row0"], meta["col0"], meta["row_step"]) == (3, 1, 1)
        assert abs(got - want[1, 2, 3:9, 1:7].numpy()).max() < 1e-5
        meta, got = lazy_slice_2d(lazy, 3, 2, mean_dims=[1], region=region, max_size=4)
        want_t = want[0].mean(0).T[3:9, 1:7]
        assert (meta["row_step"], meta["col_step"]) == (2, 2)
        want_meta, want_plane = slice_2d(want[0].mean(0).T, 0, 1, region=region, max_size=4)
        assert abs(got - want_plane).max() < 1e-5 and want_t.shape == (6, 6)
    assert attns[0].kv_groups == (2 if build is _llama else 1)
    # the record holds q and k in the model's dtype, not a float32 map
    if build is _llama:
        assert attns[0].attention.key.shape == (2, 2, 11, 8)  # KV heads not repeated


def test_padded_llama_batch_records_real_heads():
    eager, sdpa = _pair(_llama)
    ids = torch.randint(1, 64, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        expected = eager(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
        with capture_attention() as attns:
            sdpa(input_ids=ids, attention_mask=mask)
    for record, want in zip(attns, expected, strict=True):
        assert record.kv_groups == 2 and record.attention.key.shape[1] == 2
        assert torch.allclose(record.weights[0], want[0], atol=1e-5)
        assert torch.allclose(record.weights[1, :, 3:], want[1, :, 3:], atol=1e-5)  # real rows


@pytest.mark.parametrize("via", ["mode", "patch"])
def test_generation_gives_one_growing_record_per_layer(via):
    eager, sdpa = _pair(_llama)
    torch.manual_seed(2)
    prompt = torch.randint(1, 64, (1, 6))
    store = CaptureStore()
    events = []
    store.add_listener(lambda kind, payload: events.append(kind))
    store.enable()
    try:
        with torch.no_grad(), capture_attention(via=via) as attns:
            out = sdpa.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    finally:
        store.disable()
    seen = out[:, :-1]  # the last generated token is never fed back
    assert out.shape[1] == 26 and len(attns) == 2 and len(store) == 2
    with torch.no_grad():
        expected = eager(input_ids=seen, output_attentions=True).attentions
    for record, want in zip(attns, expected, strict=True):
        assert record.steps == 20 and record.shape == (1, 4, 25, 25)
        assert torch.allclose(record.weights, want, atol=1e-5)
        assert torch.equal(record.token_ids, seen)
        assert store.size_of(record.id) == record.nbytes_held() + RECORD_OVERHEAD
    assert events.count("added") == 2 and events.count("updated") == 2 * 19
    assert store.nbytes == sum(r.nbytes_held() + RECORD_OVERHEAD for r in attns)


def test_packed_gqa_decode_step_with_padding_has_the_model_heads():
    """With a padding mask transformers packs a decode step's query heads into query rows
    of the KV heads; the record must still be Hq heads × 1 row, not kv_groups 1."""
    eager, sdpa = _pair(_llama)
    ids = torch.randint(1, 64, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, :2] = 0
    with torch.no_grad(), capture_attention() as attns:
        out = sdpa.generate(
            ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0
        )
    assert len(attns) == 2 and attns[0].kv_groups == 2 and attns[0].steps == 5
    full = torch.cat([mask, torch.ones(2, 4, dtype=torch.long)], dim=1)
    with torch.no_grad():
        expected = eager(input_ids=out[:, :-1], attention_mask=full, output_attentions=True)
    for record, want in zip(attns, expected.attentions, strict=True):
        assert record.shape == (2, 4, 10, 10)
        assert torch.allclose(record.weights[0], want[0], atol=1e-5)
        assert torch.allclose(record.weights[1, :, 2:], want[1, :, 2:], atol=1e-5)


def test_generate_under_the_default_mode_records_through_the_patched_functions():
    """transformers' generate() steps off the mode (its per-op dispatch would cost ~1.5x
    on token-by-token generation) and records as via="patch"; the mode is back after."""
    from torch.overrides import _get_current_function_mode
    from transformers.generation.utils import GenerationMixin

    _, sdpa = _pair(_llama)
    original = vars(GenerationMixin)["generate"]
    modes_in_forward = []
    forward = sdpa.forward

    def spy(*args, **kwargs):
        modes_in_forward.append(_get_current_function_mode())
        return forward(*args, **kwargs)

    sdpa.forward = spy
    prompt = torch.randint(1, 64, (1, 5))
    with torch.no_grad(), capture_attention() as attns:
        mode = _get_current_function_mode()
        assert mode is not None
        sdpa.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
        assert _get_current_function_mode() is mode  # back for the rest of the block
        sdpa(input_ids=prompt)  # a plain forward: through the mode again
    assert modes_in_forward[:4] == [None] * 4 and modes_in_forward[4] is mode
    assert [r.steps for r in attns] == [4, 4, 1, 1]
    assert vars(GenerationMixin)["generate"] is original  # restored after the block
    sdpa.forward = forward


def test_static_cache_generation_covers_processed_positions_only():
    eager, sdpa = _pair(_llama)
    prompt = torch.randint(1, 64, (1, 6))
    with torch.no_grad(), capture_attention() as attns:
        out = sdpa.generate(
            prompt, max_new_tokens=5, do_sample=False, pad_token_id=0, cache_implementation="static"
        )
    with torch.no_grad():
        expected = eager(input_ids=out[:, :-1], output_attentions=True).attentions
    assert len(attns) == 2
    for record, want in zip(attns, expected, strict=True):
        assert record.shape == (1, 4, 10, 10) and record.steps == 5
        assert torch.allclose(record.weights, want, atol=1e-5)


def test_rollout_and_sinks_on_lazy_records():
    _, sdpa = _pair(lambda impl: _llama(impl, layers=3))
    with torch.no_grad(), capture_attention() as attns:
        sdpa(input_ids=torch.randint(1, 64, (2, 9)))
    dense = [r.weights for r in attns]
    for fusion in ("mean", "max", "min"):
        lazy = nopdb_lab.attention_rollout(attns, head_fusion=fusion)
        assert torch.allclose(lazy, nopdb_lab.attention_rollout(dense, head_fusion=fusion))
    sinks = attention_sinks(attns, k=2)
    assert sinks.shape == (3, 4)
    want = torch.stack([w[..., :2].sum(-1).mean(dim=(0, 2)) for w in dense])
    assert torch.allclose(sinks, want, atol=1e-6)


def test_materialising_beyond_the_budget_names_the_sizes():
    _, sdpa = _pair(_llama)
    with torch.no_grad(), capture_attention() as attns:
        sdpa(input_ids=torch.randint(1, 64, (1, 12)))
    with pytest.raises(AttentionBudgetError, match=r"2,304 bytes.*B=1 × H=4 × Nq=12 × Nk=12"):
        attns[0].attention.materialize(budget=1000)
    assert attns[0].head(0).shape == (12, 12)  # slices still work


def test_stacking_lazy_records_keeps_them_lazy():
    from nopdb_lab.analysis.stacking import stack_captures

    _, sdpa = _pair(_llama)
    store = CaptureStore()
    store.enable()
    try:
        with torch.no_grad(), capture_attention() as attns:
            sdpa(input_ids=torch.randint(1, 64, (1, 7)))
        stacked = stack_captures(store, attns[0].id, ["locals", "weights"])
    finally:
        store.disable()
    assert isinstance(stacked.locals["stacked"], LazyStack)
    assert stacked.locals["stacked"].shape == (2, 1, 4, 7, 7)
    dense = torch.stack([r.weights for r in attns])
    assert torch.allclose(stacked.locals["rollout"], nopdb_lab.attention_rollout(list(dense)))
    meta, grid = lazy_slice_2d(stacked.locals["stacked"], 3, 4, grid_dims=[0, 2])
    assert meta["grid"] == [2, 4] and abs(grid - dense[:, 0].numpy()).max() < 1e-6


def _min_cut(layers, source, sink):
    """Max flow by brute-force minimum cut (every node subset), for tiny graphs."""
    n, depth = layers[0].shape[0], len(layers)
    inner = [
        (layer, t)
        for layer in range(depth + 1)
        for t in range(n)
        if (layer, t) not in ((0, source), (depth, sink))
    ]
    best = float("inf")
    for bits in range(1 << len(inner)):
        side = {(0, source)} | {inner[b] for b in range(len(inner)) if bits >> b & 1}
        cut = sum(
            float(layers[layer][b, a])
            for layer in range(depth)
            for a in range(n)
            for b in range(n)
            if (layer, a) in side and (layer + 1, b) not in side
        )
        best = min(best, cut)
    return best


def test_attention_flow_equals_the_minimum_cut():
    from nopdb_lab.analysis.attention import attention_flow

    torch.manual_seed(0)
    maps = [torch.softmax(torch.randn(2, 3, 3), -1) for _ in range(2)]
    fused = []
    for m in maps:
        f = 0.5 * m.mean(0) + 0.5 * torch.eye(3)
        fused.append((f / f.sum(-1, keepdim=True)).double())
    expected = torch.tensor([[_min_cut(fused, j, i) for j in range(3)] for i in range(3)])
    assert torch.allclose(attention_flow(maps), expected.double(), atol=1e-6)
    assert torch.allclose(attention_flow(maps, targets=[2]), expected[2:].double(), atol=1e-6)


def test_attention_flow_on_lazy_records_and_its_size_limit():
    from nopdb_lab.analysis.attention import attention_flow

    _, sdpa = _pair(_llama)
    with torch.no_grad(), capture_attention() as attns:
        sdpa(input_ids=torch.randint(1, 64, (1, 6)))
    lazy = attention_flow(attns, head_fusion="max")
    assert torch.allclose(lazy, attention_flow([r.weights for r in attns], head_fusion="max"))
    assert lazy[0, 1:].abs().max() < 1e-9  # causal: token 0 above only draws on token 0
    with pytest.raises(ValueError, match=r"36 max-flow problems on a graph of 72 edges"):
        attention_flow(attns, max_work=100)


def test_lazy_summary_reports_shape_and_bytes_held():
    from nopdb_lab.analysis.attention_lazy import lazy_summary

    with torch.no_grad(), capture_attention() as attns:
        vit_tiny(fused=True)(torch.rand(1, 3, 32, 32))
    summary = lazy_summary(attns[0].attention)
    assert summary["shape"] == [1, 4, 17, 17] and summary["lazy"]
    assert summary["held_bytes"] == attns[0].nbytes_held()


def test_fullgraph_compiled_module_runs_unbroken_and_says_why_nothing_was_recorded():
    model = vit_tiny(fused=True).eval()
    compiled = torch.compile(model, fullgraph=True)
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(image)
        with pytest.warns(RuntimeWarning, match=r"fullgraph=True.*_orig_mod"):
            with capture_attention() as attns:
                out = compiled(image)
    assert attns == [] and torch.allclose(out, expected, atol=1e-5)


def test_via_patch_restores_torch_and_rejects_unknown_modes():
    sdpa = F.scaled_dot_product_attention
    with capture_attention(via="patch"):
        assert F.scaled_dot_product_attention is not sdpa
    assert F.scaled_dot_product_attention is sdpa
    with pytest.raises(ValueError, match="via must be 'mode' or 'patch'"):
        with capture_attention(via="hook"):
            pass


@pytest.mark.parametrize("via", ["mode", "patch"])
def test_compiled_encoder_layer_is_not_broken_and_the_gap_is_named(via):
    """nn attention inside a compiled graph cannot be recorded: the model must still run
    (it used to fail inside Dynamo) and the warning must say what to do instead."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True).eval()
    compiled = torch.compile(layer)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        plain = layer(x)
        with pytest.warns(RuntimeWarning, match=r"compile'd module with nn.Multihead.*_orig_mod"):
            with capture_attention(via=via) as attns:
                out = compiled(x)
        with capture_attention(via=via) as eager_attns:
            compiled._orig_mod(x)
    assert torch.allclose(out, plain, atol=1e-6) and attns == []
    assert len(eager_attns) == 1


class _SdpaLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.self_attn = nn.MultiheadAttention(
            16, 2, batch_first=True
        )  # TransformerEncoder reads it

    def forward(self, src, src_mask=None, is_causal=False, src_key_padding_mask=None):
        q, k, v = self.qkv(src).reshape(*src.shape[:2], 3, 2, 8).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(src.shape)


@pytest.mark.parametrize("via", ["mode", "patch"])
def test_transformer_encoder_with_custom_layers_still_records_their_sdpa(via):
    encoder = nn.TransformerEncoder(_SdpaLayer(), 2, enable_nested_tensor=False).eval()
    with torch.no_grad(), capture_attention(via=via) as attns:
        encoder(torch.randn(1, 5, 16))
    assert [r.module for r in attns] == ["layers.0", "layers.1"]


def test_encoder_decoder_generation_grows_self_and_cross_attention_records():
    import copy

    config = transformers.BartConfig(
        vocab_size=64,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
    )

    def build(implementation):
        torch.manual_seed(0)
        return transformers.BartForConditionalGeneration._from_config(
            copy.deepcopy(config),
            attn_implementation=implementation,  # it sets the config's
        )

    eager, sdpa = _pair(build)
    source = torch.randint(3, 64, (1, 7))
    with torch.no_grad(), capture_attention() as attns:
        out = sdpa.generate(source, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    modules = [r.module for r in attns]
    assert modules == [
        "model.encoder.layers.0.self_attn",
        "model.decoder.layers.0.self_attn",
        "model.decoder.layers.0.encoder_attn",
    ]
    with torch.no_grad():
        expected = eager(input_ids=source, decoder_input_ids=out[:, :-1], output_attentions=True)
    assert torch.allclose(attns[1].weights, expected.decoder_attentions[0], atol=1e-5)
    assert torch.allclose(attns[2].weights, expected.cross_attentions[0], atol=1e-5)
    assert attns[2].steps == 5 and torch.equal(attns[2].token_ids, out[:, :-1])


def test_capture_puts_torch_classes_back_as_they_were() -> None:
    """Each patched class attribute is restored after the block, so blocks never nest
    wrappers (OptimizedModule's __call__ included)."""
    from torch import nn

    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except ImportError:  # pragma: no cover - torch without Dynamo
        OptimizedModule = None
    before = {
        "mha": nn.MultiheadAttention.forward,
        "layer": nn.TransformerEncoderLayer.forward,
        "encoder": nn.TransformerEncoder.forward,
    }
    call_before = OptimizedModule.__call__ if OptimizedModule is not None else None
    for _ in range(2):
        with capture_attention():
            pass
    assert nn.MultiheadAttention.forward is before["mha"]
    assert nn.TransformerEncoderLayer.forward is before["layer"]
    assert nn.TransformerEncoder.forward is before["encoder"]
    if OptimizedModule is not None:
        assert OptimizedModule.__call__ is call_before
        assert "forward" not in vars(OptimizedModule)


def test_the_sink_grid_op_sums_up_one_block_into_a_view_record():
    from types import SimpleNamespace

    from nopdb_lab.jupyter.attention_ops import attention_sinks_op
    from nopdb_lab.records import ProtocolError

    _, sdpa = _pair(lambda impl: _llama(impl, layers=3))
    store = CaptureStore()
    store.enable()
    try:
        with torch.no_grad():
            with capture_attention() as first:
                sdpa(input_ids=torch.randint(1, 64, (1, 9)))
            with capture_attention() as second:
                sdpa.generate(
                    torch.randint(1, 64, (1, 5)), max_new_tokens=4, do_sample=False, pad_token_id=0
                )
        session = SimpleNamespace(store=store)
        result, _ = attention_sinks_op(session, second[1].id, k=2)
        assert result["records"] == [r.id for r in second] and len(second) == 3
        assert result["shape"] == [3, 4] and result["k"] == 2 and result["steps"] == 4
        assert result["tokens"] == 8  # 5 prompt tokens + 3 fed back
        view = store[result["id"]]
        assert view.kind == "view" and torch.equal(
            view.locals["value"], attention_sinks(second, k=2)
        )
        want = torch.stack([r.weights[..., :2].sum(-1).mean(dim=(0, 2)) for r in second])
        assert torch.allclose(view.locals["value"], want, atol=1e-6)
        assert result["layers"] == [r.module for r in second]
        assert store.size_of(view.id) >= 3 * 4 * 4  # counted against the budget
        other, _ = attention_sinks_op(session, first[0].id)
        assert other["records"] == [r.id for r in first]
        with pytest.raises(ProtocolError, match="is a view record; the sink grid"):
            attention_sinks_op(session, view.id)
        with pytest.raises(ProtocolError, match="k = 99 is more than the 8 tokens"):
            attention_sinks_op(session, second[0].id, k=99)
    finally:
        store.disable()
