"""Kernel-side slicing and downsampling for the heatmap viewer; attention rollout."""

import re

import pytest

np = pytest.importorskip("numpy")

from nopdb_lab.analysis.heatmap import SliceError, slice_2d  # noqa: E402


def test_slice_picks_rows_cols_and_fixes_the_other_dims():
    value = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    meta, plane = slice_2d(value, rows_dim=2, cols_dim=3, index={0: 1, 1: 2})
    assert plane.dtype == np.float32 and plane.shape == (4, 5)
    assert np.array_equal(plane, value[1, 2].astype(np.float32))
    assert meta["shape"] == [2, 3, 4, 5] and meta["reduce"] is None
    assert (meta["row_step"], meta["col_step"]) == (1, 1)
    assert (meta["min"], meta["max"]) == (value[1, 2].min(), value[1, 2].max())


def test_rows_after_columns_transposes():
    value = np.arange(12.0).reshape(3, 4)
    _, plane = slice_2d(value, rows_dim=1, cols_dim=0)
    assert np.array_equal(plane, value.T)


def test_large_maps_are_pooled_with_ragged_edges():
    value = np.arange(10 * 7, dtype=np.float32).reshape(10, 7)
    meta, plane = slice_2d(value, -2, -1, max_size=4, reduce="max")
    assert (meta["row_step"], meta["col_step"], meta["reduce"]) == (3, 2, "max")
    assert plane.shape == (4, 4)
    assert plane[0, 0] == value[:3, :2].max()
    assert plane[3, 3] == value[9:, 6:].max()  # the 1x1 corner block
    meta, plane = slice_2d(value, -2, -1, max_size=4, reduce="mean")
    assert plane[0, 0] == pytest.approx(value[:3, :2].mean())
    assert plane[3, 0] == pytest.approx(value[9:, :2].mean())


def test_pooling_never_hides_nan_and_counts_it():
    value = np.zeros((4, 4), dtype=np.float32)
    value[0, 1] = np.nan
    value[3, 3] = np.inf
    meta, plane = slice_2d(value, 0, 1, max_size=2)
    assert np.isnan(plane[0, 0]) and meta["nan"] == 1 and meta["inf"] == 1
    assert meta["max"] == 0.0  # finite cells only


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rows_dim=0, cols_dim=0), "two different dimensions"),
        (dict(rows_dim=0, cols_dim=5), "columns dimension 5 does not exist in shape (2, 3, 4)"),
        (dict(rows_dim=1, cols_dim=2, index={0: 7}), "index 7 is out of range for dimension 0"),
        (dict(rows_dim=1, cols_dim=2, reduce="median"), "reduce must be one of"),
    ],
)
def test_bad_requests_name_the_problem(kwargs, message):
    with pytest.raises(SliceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        slice_2d(np.zeros((2, 3, 4)), **kwargs)


def test_one_dimensional_values_and_other_objects_are_refused():
    with pytest.raises(SliceError, match="at least 2 dimensions"):
        slice_2d(np.zeros(3), 0, 0)
    with pytest.raises(SliceError, match="a list cannot be shown"):
        slice_2d([[1, 2]], 0, 1)


torch = pytest.importorskip("torch")


def test_torch_half_and_bfloat16_slices():
    value = torch.arange(24, dtype=torch.bfloat16).reshape(2, 3, 4)
    _, plane = slice_2d(value, 1, 2, index={0: 1})
    assert plane.dtype == np.float32 and np.array_equal(plane, value[1].float().numpy())
    _, plane = slice_2d(value.half(), 2, 1)
    assert plane.shape == (4, 3)


def test_rollout_matches_a_hand_computed_two_layer_case():
    from nopdb_lab import attention_rollout

    # two heads per layer; mean fusion, then 0.5*A + 0.5*I, rows re-normalised
    layer1 = torch.tensor([[[0.5, 0.5], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])
    layer2 = torch.tensor([[[0.0, 1.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])
    # layer 1: mean = [[.75,.25],[.5,.5]] -> +I/2 = [[.875,.125],[.25,.75]]
    # layer 2: mean = [[0,1],[.5,.5]]     -> +I/2 = [[.5,.5],[.25,.75]]
    expected = torch.tensor([[0.5, 0.5], [0.25, 0.75]]) @ torch.tensor(
        [[0.875, 0.125], [0.25, 0.75]]
    )
    rollout = attention_rollout([layer1, layer2])
    assert torch.allclose(rollout, expected)
    assert torch.allclose(rollout.sum(-1), torch.ones(2))
    # without the residual term and with max fusion
    no_residual = attention_rollout([layer1, layer2], head_fusion="max", residual=False)
    assert torch.allclose(
        no_residual,
        torch.tensor([[0.0, 1.0], [0.5, 0.5]]) @ torch.tensor([[1.0, 0.5], [1.0, 1.0]]),
    )


def test_rollout_keeps_the_batch_and_rejects_bad_input():
    from nopdb_lab import attention_rollout

    maps = [torch.softmax(torch.randn(3, 4, 5, 5), -1) for _ in range(2)]
    assert attention_rollout(maps).shape == (3, 5, 5)
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        attention_rollout(maps, head_fusion="sum")
    with pytest.raises(ValueError, match="layer 1 has 4 tokens, the layers before 5"):
        attention_rollout([maps[0], torch.rand(3, 4, 4, 4)])


def test_mean_over_heads_and_a_grid_of_heads():
    value = np.random.default_rng(0).random((2, 3, 4, 5)).astype(np.float32)  # B, H, N, M
    meta, mean = slice_2d(value, 2, 3, index={0: 1}, mean_dims=[1])
    assert mean.shape == (4, 5) and meta["grid"] is None
    assert np.allclose(mean, value[1].mean(axis=0))
    meta, grid = slice_2d(value, 3, 2, index={0: 1}, grid_dims=[1])
    assert meta["grid"] == [3] and grid.shape == (3, 5, 4)
    for head in range(3):
        assert np.array_equal(grid[head], value[1, head].T)
    meta, grid = slice_2d(value, 2, 3, grid_dims=[0], mean_dims=[1], max_size=2)
    assert grid.shape == (2, 2, 2) and meta["row_step"] == 2
    assert grid[1, 0, 0] == pytest.approx(value[1].mean(axis=0)[:2, :3].max())  # 2x3 blocks
    with pytest.raises(SliceError, match="must all differ"):
        slice_2d(value, 2, 3, grid_dims=[1], mean_dims=[1])
    meta, grid = slice_2d(value, 2, 3, grid_dims=[0, 1])  # layer x head style
    assert meta["grid"] == [2, 3] and grid.shape == (2, 3, 4, 5)
    assert np.array_equal(grid[1, 2], value[1, 2])
    with pytest.raises(SliceError, match="at most two dimensions"):
        slice_2d(np.zeros((2, 2, 2, 2, 2)), 3, 4, grid_dims=[0, 1, 2])


def test_images_for_the_patch_overlay():
    from nopdb_lab.jupyter.user_values import ExpressionError, evaluate_image

    namespace = {
        "chw": torch.rand(3, 8, 6),
        "batch": torch.rand(1, 3, 8, 6),
        "hwc": (np.random.default_rng(0).random((8, 6, 3)) * 255).astype(np.uint8),
        "grey": np.linspace(0, 1, 48).reshape(8, 6),
        "big": np.zeros((3000, 10, 3), dtype=np.uint8),
    }
    for name in ("chw", "batch", "hwc", "grey"):
        meta, raw = evaluate_image(name, namespace)
        assert meta == {"height": 8, "width": 6} and len(raw) == 8 * 6 * 3
    _, raw = evaluate_image("chw", namespace)
    assert raw[0] == int(namespace["chw"][0, 0, 0] * 255)  # floats in [0, 1] scaled
    _, raw = evaluate_image("hwc", namespace)
    assert raw[:3] == bytes(namespace["hwc"][0, 0])
    meta, _ = evaluate_image("big", namespace)
    assert meta["height"] <= 1024 and meta["width"] <= 10
    with pytest.raises(ExpressionError, match=r"has shape \[5, 5, 5, 5\]"):
        evaluate_image("x", {"x": np.zeros((5, 5, 5, 5))})
    with pytest.raises(ExpressionError, match="gives a str, not an image"):
        evaluate_image("'cat.png'", {})


def test_a_region_is_cut_before_pooling_and_says_where_it_starts():
    value = np.arange(4 * 1000 * 900, dtype=np.float32).reshape(4, 1000, 900)
    meta, plane = slice_2d(value, 1, 2, index={0: 2}, region=dict(row0=10, row1=20, col0=3, col1=8))
    assert (meta["rows"], meta["cols"], meta["row0"], meta["col0"], meta["reduce"]) == (
        10,
        5,
        10,
        3,
        None,
    )
    assert np.array_equal(plane, value[2, 10:20, 3:8])
    # columns as rows: the region is in the viewer's rows × columns
    meta, plane = slice_2d(value, 2, 1, region=dict(row0=0, row1=900, col0=999, col1=1000))
    assert plane.shape == (450, 1) and meta["row_step"] == 2 and meta["row0"] == 0
    assert plane[0, 0] == value[0, 999, 1]  # max of columns 0 and 1 of the last row
    meta, _ = slice_2d(value, 1, 2)
    assert (meta["row0"], meta["col0"]) == (0, 0)
    for region, message in [
        (dict(row0=0, row1=1001, col0=0, col1=1), "rows 0–1001"),
        (dict(row0=0, row1=1, col0=4, col1=4), "columns 4–4"),
        (dict(row0=0, row1=1, col0=0, col1="x"), "must be integers"),
        (dict(row0=0, row1=1, col0=0, col1=1, depth=2), "not ['depth']"),
    ]:
        with pytest.raises(SliceError, match=re.escape(message)):
            slice_2d(value, 1, 2, region=region)
