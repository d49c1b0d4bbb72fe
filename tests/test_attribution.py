"""Probes (edit, re-run) and attributions, checked against Captum and torch.autograd.

Captum is a test-only dependency (the ``attribution-test`` extra); the Captum
comparisons are skipped without it.
"""

import pytest

torch = pytest.importorskip("torch")

from examples.vit import Attention, VisionTransformer, vit_tiny  # noqa: E402
from nopdb_lab.analysis.attribution import (  # noqa: E402
    AttributionError,
    attribute,
    gaussian_blur,
    gradient_rollout,
    patch_layout,
    quadrature,
)
from nopdb_lab.capture_store import CaptureStore  # noqa: E402
from nopdb_lab.probe import Line, ProbeError, probe, probes  # noqa: E402


# -- small models -------------------------------------------------------------------------
class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(6, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        feats = torch.nn.functional.softplus(self.conv2(h))
        pooled = feats.mean(dim=(2, 3))
        return self.head(pooled)


class TokenModel(torch.nn.Module):
    """Token ids → embeddings (the local the Line names) → attention-free classifier."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.emb = torch.nn.Embedding(20, 8)
        self.mix = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, ids):
        e = self.emb(ids)
        h = torch.tanh(self.mix(e)) * e
        return self.head(h.mean(dim=1))


@pytest.fixture
def store():
    """A store of our own, recording everything published while the test runs."""
    s = CaptureStore()
    s.enable()
    yield s
    s.disable()


@pytest.fixture
def image():
    g = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 8, 8, generator=g)


# -- integrated gradients vs Captum --------------------------------------------------------
def test_integrated_gradients_equal_captums_on_a_cnn(image, store):
    captum_attr = pytest.importorskip("captum.attr")
    model = SmallCNN().eval()
    p = probe("cnn", lambda x: model(x)[:, 2], x=image)
    att = attribute(p, baseline=0.0, steps=64, internal_batch_size=16)
    ig = captum_attr.IntegratedGradients(model)
    expected, delta = ig.attribute(
        image,
        baselines=0.0,
        target=2,
        n_steps=64,
        internal_batch_size=16,
        return_convergence_delta=True,
    )
    assert att.map.shape == image.shape
    torch.testing.assert_close(att.map, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(att.gap, delta.abs(), atol=1e-4, rtol=0)
    assert store[att.record.id].kind == "attribution"


def test_integrated_gradients_with_a_tensor_baseline_equal_captums(image):
    captum_attr = pytest.importorskip("captum.attr")
    model = SmallCNN().eval()
    base = torch.full_like(image, 0.5)
    p = probe("cnn", lambda x: model(x)[:, 4], x=image)
    att = attribute(p, baseline=base[:1], steps=20)  # broadcast over the batch
    expected = captum_attr.IntegratedGradients(model).attribute(
        image, baselines=base, target=4, n_steps=20
    )
    torch.testing.assert_close(att.map, expected, atol=1e-4, rtol=0)


def test_integrated_gradients_at_an_embedding_local_equal_captums_layer_ig(store):
    captum_attr = pytest.importorskip("captum.attr")
    model = TokenModel().eval()
    ids = torch.tensor([[1, 5, 7, 2, 9], [3, 3, 11, 4, 0]])
    pad = torch.zeros_like(ids)
    p = probe("tokens", lambda ids: model(ids)[:, 1], ids=ids)
    at = Line(TokenModel.forward, "e = self.emb(ids)")
    att = attribute(p, at=at, baseline=model.emb(pad).detach(), steps=64, internal_batch_size=4)
    lig = captum_attr.LayerIntegratedGradients(model, model.emb)
    expected, delta = lig.attribute(
        ids,
        baselines=pad,
        target=1,
        n_steps=64,
        internal_batch_size=4,
        return_convergence_delta=True,
    )
    assert att.map.shape == (2, 5, 8)
    torch.testing.assert_close(att.map, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(att.gap, delta.abs(), atol=1e-4, rtol=0)
    assert "'e' after line" in att.target


def test_integrated_gradients_at_a_modules_output_equal_captums_layer_ig(image):
    captum_attr = pytest.importorskip("captum.attr")
    model = SmallCNN().eval()
    p = probe("cnn", lambda x: model(x)[:, 0], x=image)
    expected = captum_attr.LayerIntegratedGradients(model, model.conv).attribute(
        image, baselines=torch.zeros_like(image), target=0, n_steps=16
    )
    # Captum scales between the layer's values at the input and at the baseline input;
    # conv(0) is the bias, so pass that as the layer baseline here
    bias = model.conv(torch.zeros_like(image)).detach()
    att = attribute(p, at=model.conv, baseline=bias, steps=16)
    assert att.map.shape == (2, 6, 8, 8)
    torch.testing.assert_close(att.map, expected, atol=1e-4, rtol=0)


def test_a_line_with_an_ellipsis_matches_a_multiline_statement():
    def forward(model, ids):
        e = model.emb(
            ids,
        )
        return model.head(e.mean(dim=1))

    line = Line(forward, "e = model.emb(...)")
    assert (line.name, line.last - line.first) == ("e", 2)
    with pytest.raises(ValueError, match="no statement"):
        Line(forward, "e = model.other(...)")
    with pytest.raises(ValueError, match="assigns no single local"):
        Line(forward, "return model.head(...)")


def test_gauss_legendre_nodes_are_captums_and_the_trapezoid_is_the_proper_rule():
    pytest.importorskip("captum")
    from captum.attr._utils.approximation_methods import approximation_parameters

    steps_fn, alphas_fn = approximation_parameters("gausslegendre")
    alphas, weights = quadrature("gausslegendre", 7)
    assert alphas == pytest.approx(alphas_fn(7), abs=1e-12)
    assert weights == pytest.approx(steps_fn(7), abs=1e-12)
    alphas, weights = quadrature("riemann_trapezoid", 5)
    assert alphas == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert weights == pytest.approx([0.125, 0.25, 0.25, 0.25, 0.125])


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
def test_both_rules_are_exact_for_a_quadratic(rule):
    # m(x) = Σ c·x²: the gradient is linear along the path, which both rules integrate exactly
    x = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]], dtype=torch.float64)
    c = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    p = probe("quad", lambda x: (c * x**2).sum(dim=1), x=x)
    att = attribute(p, baseline=0.0, steps=4, rule=rule)
    torch.testing.assert_close(att.map, c * x**2)
    assert float(att.delta.max()) < 1e-12


def test_delta_is_at_most_one_percent_on_a_small_vit_logit():
    model = vit_tiny()
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 32, 32, generator=g)
    p = probe("vit", lambda x: model(x)[:, 7], x=img)
    att = attribute(p, baseline="blur", steps=64, internal_batch_size=32)
    assert att.map.shape == img.shape
    assert float(att.delta.max()) <= 0.01
    assert att.params["blur_sigma"] == pytest.approx(3.2)


def test_the_blur_baseline_is_a_normalised_gaussian_blur():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    blurred = gaussian_blur(x, 1.0)
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-5)
    expected = torch.exp(torch.tensor(-0.5)) / torch.exp(torch.tensor(0.0))
    assert float(blurred[0, 0, 4, 5] / blurred[0, 0, 4, 4]) == pytest.approx(
        float(expected), rel=1e-4
    )


# -- gradient methods vs autograd ----------------------------------------------------------
def _autograd(model, x, target):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, target].sum(), x)
    return grad


def test_saliency_and_grad_x_input_equal_autograd(image):
    model = SmallCNN().eval()
    p = probe("cnn", lambda x: model(x)[:, 1], x=image)
    grad = _autograd(model, image, 1)
    torch.testing.assert_close(attribute(p, "saliency").map, grad.abs())
    torch.testing.assert_close(attribute(p, "saliency", abs=False).map, grad)
    torch.testing.assert_close(attribute(p, "grad_x_input").map, image * grad)
    torch.testing.assert_close(p.last.gradients["x"], grad)


def test_smoothgrad_averages_gradients_at_seeded_noise(image):
    model = SmallCNN().eval()
    p = probe("cnn", lambda x: model(x)[:, 0], x=image)
    att = attribute(p, "smoothgrad", sigma=0.2, samples=6, seed=5, internal_batch_size=4)
    noise = torch.randn((6, *image.shape), generator=torch.Generator().manual_seed(5)) * 0.2
    expected = sum(_autograd(model, image + n, 0) for n in noise) / 6
    torch.testing.assert_close(att.map, expected, atol=1e-6, rtol=1e-5)
    again = attribute(p, "smoothgrad", sigma=0.2, samples=6, seed=5)
    torch.testing.assert_close(again.map, att.map, atol=1e-6, rtol=1e-5)


# -- Grad-CAM and gradient-weighted rollout ------------------------------------------------
def _hand_gradcam_conv(model, x, target):
    kept = {}
    handle = model.conv2.register_forward_hook(lambda m, a, out: kept.setdefault("a", out))
    out = model(x)[:, target].sum()
    handle.remove()
    a = kept["a"]
    (g,) = torch.autograd.grad(out, a)
    cam = torch.zeros(a.shape[0], a.shape[2], a.shape[3])
    for b in range(a.shape[0]):
        for c in range(a.shape[1]):
            cam[b] += g[b, c].mean() * a[b, c]
    return cam.clamp(min=0)


def test_gradcam_on_a_conv_map_equals_a_hand_computation(image):
    model = SmallCNN().eval()
    p = probe("cnn", lambda x: model(x)[:, 3], x=image)
    expected = _hand_gradcam_conv(model, image, 3)
    by_module = attribute(p, "gradcam", at=model.conv2)
    torch.testing.assert_close(by_module.layer_map, expected.detach(), atol=1e-6, rtol=1e-5)
    assert by_module.map.shape == image.shape  # same size as the image (8×8 here)
    # a local works too: `feats` (conv2 after softplus), by hand from the same forward
    by_line = attribute(p, "gradcam", at=Line(SmallCNN.forward, "feats = ...(self.conv2(h))"))
    feats = torch.nn.functional.softplus(model.conv2(torch.tanh(model.conv(image))))
    (g,) = torch.autograd.grad(model.head(feats.mean(dim=(2, 3)))[:, 3].sum(), feats)
    expected = (g.mean(dim=(2, 3), keepdim=True) * feats).sum(dim=1).clamp(min=0)
    torch.testing.assert_close(by_line.layer_map, expected.detach(), atol=1e-6, rtol=1e-5)


def test_gradcam_on_vit_tokens_finds_the_patch_grid():
    model = vit_tiny()
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    p = probe("vit", lambda x: model(x)[:, 2], x=img)
    kept = {}
    handle = model.blocks[-1].register_forward_hook(lambda m, a, out: kept.setdefault("t", out))
    out = model(img)[:, 2].sum()
    handle.remove()
    tokens = kept["t"]
    (g,) = torch.autograd.grad(out, tokens)
    weights = g[:, 1:].mean(dim=1)  # CLS first, then 4×4 patches
    expected = torch.relu((tokens[:, 1:] * weights[:, None]).sum(-1)).view(1, 4, 4)
    att = attribute(p, "gradcam", at=Line(VisionTransformer.forward, "x = block(x)"))
    assert att.params["occurrence"] == 3 and att.params["prefix"] == 1
    torch.testing.assert_close(att.layer_map, expected.detach(), atol=1e-6, rtol=1e-5)
    assert att.map.shape == img.shape


def test_patch_layout_matches_the_overlay():
    assert patch_layout(197) == (1, 14)
    assert patch_layout(16) == (0, 4)
    assert patch_layout(17) == (1, 4)
    assert patch_layout(20) == (4, 4)
    assert patch_layout(21) is None


def test_gradient_rollout_on_a_hand_computed_two_layer_case():
    a1 = torch.tensor([[[0.5, 0.5], [0.25, 0.75]], [[1.0, 0.0], [0.0, 1.0]]])
    g1 = torch.tensor([[[2.0, -2.0], [4.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    a2 = torch.tensor([[[0.5, 0.5], [0.5, 0.5]], [[0.3, 0.7], [0.6, 0.4]]])
    g2 = torch.tensor([[[2.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    # Ā1 = mean_h (g⊙a)⁺ = [[1, 0], [0.5, 0.5]], Ā2 = [[0.5, 0], [0, 0.5]]
    # R = (I + Ā2)(I + Ā1) = [[1.5, 0], [0, 1.5]] @ [[2, 0], [0.5, 1.5]]
    expected = torch.tensor([[3.0, 0.0], [0.75, 2.25]])
    torch.testing.assert_close(gradient_rollout([a1, a2], [g1, g2]), expected)


def test_grad_rollout_from_sdpa_equals_it_from_the_attention_local():
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    eager, fused = vit_tiny(fused=False), vit_tiny(fused=True)
    local = attribute(
        probe("eager", lambda x: eager(x)[:, 5], x=img),
        "grad_rollout",
        at=Line(Attention.forward, "attn = attn.softmax(dim=-1)"),
    )
    sdpa = attribute(probe("fused", lambda x: fused(x)[:, 5], x=img), "grad_rollout")
    assert local.params["layers"] == sdpa.params["layers"] == 4
    torch.testing.assert_close(sdpa.layer_map, local.layer_map, atol=1e-5, rtol=1e-4)
    assert sdpa.map.shape == img.shape
    with pytest.raises(AttributionError, match="no scaled_dot_product_attention"):
        attribute(probe("eager2", lambda x: eager(x)[:, 5], x=img), "grad_rollout")


# -- probes: edit, re-run, errors ----------------------------------------------------------
def test_a_rerun_after_an_edit_changes_exactly_the_edited_elements(image, store):
    model = SmallCNN().eval()
    p = probe("edit", lambda x: model(x)[:, 2], x=image)
    original = image.clone()
    p.inputs["x"][0, :, 3, 5] = 1.0
    p.inputs["x"][1, 0, 0, 0] = -4.0
    run = p.rerun()
    assert [r.number for r in p.runs] == [1, 2] and run.number == 2
    assert torch.equal(image, original), "the caller's tensor is not edited"
    edit = run.edits["x"]
    changed = {tuple(i) for i in edit.indices.tolist()}
    wanted = {(0, c, 3, 5) for c in range(3) if original[0, c, 3, 5] != 1.0} | {(1, 0, 0, 0)}
    assert changed == wanted
    assert torch.equal(edit.before, original[edit.mask])
    torch.testing.assert_close(run.output, model(p.inputs["x"])[:, 2].detach())
    torch.testing.assert_close(run.gradients["x"], _autograd(model, p.inputs["x"], 2))
    record = store[run.record.id]
    assert record.kind == "run" and record.locals["run"] == 2
    assert torch.equal(record.locals["changed"]["x"], edit.mask)
    third = p.rerun()
    assert third.number == 3 and third.edits["x"].count == 0
    assert run.diff(p.runs[0])["x"].count == len(wanted)
    assert probes["edit"] is p


def test_runs_and_attributions_of_one_probe_stack_across_runs(image, store):
    from nopdb_lab.analysis.stacking import stack_captures

    model = SmallCNN().eval()
    p = probe("stacked", lambda x: model(x)[:, 2], x=image)
    first = attribute(p, "saliency")
    p.inputs["x"][0, 0, 0, 0] = 5.0
    second_run = p.rerun()
    second = attribute(p, "saliency")
    outputs = stack_captures(store, second_run.record.id, ["locals", "output"])
    assert outputs.source_ids == [p.runs[0].record.id, second_run.record.id]
    assert torch.equal(outputs.locals["stacked"][1], second_run.output)
    maps = stack_captures(store, second.record.id, ["locals", "map"])
    assert maps.source_ids == [first.record.id, second.record.id]
    assert {store[i].name for i in maps.source_ids} == {"saliency run 1", "saliency run 2"}
    again = attribute(p, "saliency", run=1)  # an earlier run's inputs, not the edited ones
    torch.testing.assert_close(again.map, first.map)
    assert again.run == 1


def test_captures_made_during_a_run_are_kept_with_it(image, store):
    import nopdb_lab

    model = SmallCNN().eval()
    with nopdb_lab.capture_calls(SmallCNN.forward) as calls:
        p = probe("captures", lambda x: model(x)[:, 0], x=image)
    assert p.last.captures == [calls[0].id]
    assert p.last.captures[0] in store


def test_an_exception_in_the_probe_is_an_error_and_leaves_the_store_intact(image, store):
    model = SmallCNN().eval()

    def objective(x):
        if torch.isnan(x).any():
            raise ValueError("NaN in the input")
        return model(x)[:, 0]

    p = probe("fails", objective, x=image)
    before = {i: store[i] for i in store.ids()}
    p.inputs["x"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ProbeError, match="probe 'fails'.*ValueError: NaN in the input"):
        p.rerun()
    assert {i: store[i] for i in store.ids()} == before
    assert [r.number for r in p.runs] == [1]
    p.inputs["x"][0, 0, 0, 0] = 0.0
    assert p.rerun().number == 2


def test_an_objective_without_one_scalar_per_row_is_refused(image):
    model = SmallCNN().eval()
    with pytest.raises(ProbeError, match="one scalar per batch row"):
        probe("bad", lambda x: model(x), x=image)


def test_an_interrupted_attribution_leaves_everything_as_it_was(image, store):
    model = TokenModel().eval()
    ids = torch.tensor([[1, 2, 3]])
    p = probe("stop", lambda ids: model(ids)[:, 0], ids=ids)
    before = store.ids()
    calls = []

    def progress(done, total):
        calls.append((done, total))
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        attribute(
            p,
            at=Line(TokenModel.forward, "e = self.emb(ids)"),
            steps=8,
            internal_batch_size=2,
            progress=progress,
        )
    assert calls == [(1, 5), (2, 5)]
    assert store.ids() == before and len(p.runs) == 1
    done = attribute(p, at=Line(TokenModel.forward, "e = self.emb(ids)"), steps=8)
    assert store.ids() == before + [done.record.id]


def test_attribution_errors_name_the_problem(image):
    model = SmallCNN().eval()
    p = probe("errs", lambda x: model(x)[:, 0], x=image)
    with pytest.raises(AttributionError, match="method must be one of"):
        attribute(p, "lime")
    with pytest.raises(AttributionError, match="Grad-CAM needs at="):
        attribute(p, "gradcam")
    with pytest.raises(AttributionError, match="never reached"):
        attribute(p, at=Line(TokenModel.forward, "e = self.emb(ids)"))
    with pytest.raises(AttributionError, match="does not broadcast"):
        attribute(p, baseline=torch.zeros(5))
    ids = probe("ids", lambda ids: TokenModel()(ids)[:, 0], ids=torch.tensor([[1, 2]]))
    with pytest.raises(AttributionError, match="attribute at their embedding"):
        attribute(ids)
