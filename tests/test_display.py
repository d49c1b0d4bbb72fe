"""nopdb_lab.show: the MIME bundle a notebook cell displays (view JSON, PNG, text)."""

import json
import struct
import tracemalloc
import zlib

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

from nopdb_lab import capture_attention, store  # noqa: E402
from nopdb_lab.analysis import display  # noqa: E402
from nopdb_lab.analysis.display import VIEW_MIME, ShowError, show  # noqa: E402
from nopdb_lab.analysis.stacking import stack_captures  # noqa: E402
from nopdb_lab.nopdb import capture_call  # noqa: E402
from nopdb_lab.records import resolve  # noqa: E402

try:
    import PIL  # noqa: F401

    HAVE_PILLOW = True
except ImportError:
    HAVE_PILLOW = False


def decode_png(data):
    """(H, W, 3) uint8 pixels of an 8-bit RGB PNG, decoded with zlib and struct only
    (every filter type, so it also reads PNGs not written by display.encode_png)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert (depth, colour, interlace) == (8, 2, 0)
    raw = zlib.decompress(idat)
    stride = width * 3
    out = np.zeros((height, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        row = np.zeros(stride, dtype=np.int32)
        for x in range(stride):
            a = row[x - 3] if x >= 3 else 0
            b = prev[x]
            c = prev[x - 3] if x >= 3 else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            row[x] = (line[x] + pred) & 0xFF
        out[y] = row
        prev = row
    return out.reshape(height, width, 3).astype(np.uint8)


@pytest.fixture(autouse=True)
def clean_store():
    store.clear()
    yield
    store.clear()


def bundle_of(view):
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {VIEW_MIME, "image/png", "text/plain"}
    json.dumps(bundle[VIEW_MIME])  # JSON-ready as it is
    return bundle


def test_tensor_bundle_points_at_a_store_record_holding_the_value():
    x = torch.randn(2, 5, 7)
    bundle = bundle_of(show(x))
    payload = bundle[VIEW_MIME]
    assert payload["version"] == display.VIEW_VERSION == 1
    (item,) = payload["items"]
    assert item["kind"] == "heatmap"
    record = store[item["id"]]
    assert record.kind == item["record_kind"] == "view"
    assert item["record_time"] == record.time
    value, expression = resolve(record, item["path"])
    assert value is x  # the value itself, not a copy
    assert item["expression"] == expression
    assert torch.equal(eval(expression, {"nopdb_lab": __import__("nopdb_lab")}), x)
    assert item["shape"] == [2, 5, 7] and item["dtype"] == "torch.float32"
    assert (item["rows_dim"], item["cols_dim"], item["grid_dims"]) == (1, 2, [0])
    assert item["index"] == {}
    assert item["min"] == pytest.approx(float(x.min()))
    assert item["max"] == pytest.approx(float(x.max()))
    assert item["signed"] is True and item["cmap"] == "RdBu"
    # small: no tensor data in the JSON
    assert len(json.dumps(payload)) < 2000
    assert "nopdb_lab.store[" in bundle["text/plain"]
    # counted against the budget: the tensor's bytes plus the record's own overhead
    assert x.numel() * 4 <= store.size_of(record.id) < x.numel() * 4 + 4096


def test_include_and_exclude_select_the_mime_types():
    view = show(np.ones((3, 4)))
    assert set(view._repr_mimebundle_(include=["image/png"])) == {"image/png"}
    assert set(view._repr_mimebundle_(exclude=[VIEW_MIME])) == {"image/png", "text/plain"}


def test_png_colours_follow_the_viridis_table_for_a_known_matrix():
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)  # 0 .. 11, min 0, max 11
    matrix[1, 1] = np.nan
    view = show(matrix, cmap="viridis")
    pixels = decode_png(view.png())
    table = display.colormap_table("viridis")
    # the map is scaled by a whole number of pixels per cell; find cell (0, 0) and step
    scale = max(1, display._MAP_PX // 4)
    bar_x = 2 * display._GAP + 4 * scale  # the colour bar starts right of the map
    first = np.all(pixels[:, :bar_x] == table[0], axis=-1)  # min -> first colour
    ys, xs = np.nonzero(first)
    assert len(ys) == scale * scale  # only the min cell has that colour
    y0, x0 = ys.min(), xs.min()
    assert (ys.max() - y0 + 1, xs.max() - x0 + 1) == (scale, scale)
    for r in range(3):
        for c in range(4):
            colour = pixels[y0 + r * scale + scale // 2, x0 + c * scale + scale // 2]
            if (r, c) == (1, 1):
                assert tuple(colour) == display.NAN_RGB  # NaN kept, grey
            else:
                k = int(np.floor(matrix[r, c] / 11 * 255 + 0.5))
                assert tuple(colour) == tuple(table[k]), (r, c)
    assert tuple(pixels[y0 + 2 * scale, x0 + 3 * scale]) == tuple(table[255])  # max -> last
    height, width, _ = pixels.shape
    assert width >= 4 * scale + display._BAR_W and height >= 3 * scale


def test_colormap_tables_match_the_viewers_d3_samples():
    # anchor values of d3-scale-chromatic that src/heatmap/colormap.ts samples
    viridis = display.colormap_table("viridis")
    assert tuple(viridis[0]) == (0x44, 0x01, 0x54) and tuple(viridis[255]) == (0xFD, 0xE7, 0x25)
    rdbu = display.colormap_table("RdBu")  # reversed: blue low, red high, white-ish middle
    assert rdbu[0, 2] > rdbu[0, 0] and rdbu[255, 0] > rdbu[255, 2]
    assert min(rdbu[128]) > 230


def test_signed_data_is_diverging_around_zero():
    matrix = np.array([[-1.0, 0.0, 4.0]], dtype=np.float32)
    view = show(matrix)
    (item,) = view.to_json()["items"]
    assert item["cmap"] == "RdBu"
    rgb = display.colorize(view.panels[0].planes, -1.0, 4.0, "RdBu")[0, 0]
    table = display.colormap_table("RdBu")
    # bound 4: -1 -> 0.5 - 1/8, 0 -> 0.5, 4 -> 1
    assert [tuple(c) for c in rgb] == [tuple(table[k]) for k in (96, 128, 255)]


def test_labels_are_sent_and_mismatches_name_both_sizes():
    tokens = ["[CLS]", "a", "b", "[SEP]"]
    item = show(torch.rand(4, 4), labels=tokens).to_json()["items"][0]
    assert item["row_labels"] == tokens and item["col_labels"] == tokens
    item = show(torch.rand(3, 4), labels=tokens).to_json()["items"][0]
    assert item["row_labels"] is None and item["col_labels"] == tokens
    with pytest.raises(ShowError, match="5 labels, but rows have 3 and columns 4"):
        show(torch.rand(3, 4), labels=tokens + ["x"])
    with pytest.raises(ShowError, match="2 row labels, but rows have 3"):
        show(torch.rand(3, 4), labels=(["a", "b"], tokens))
    with pytest.raises(ShowError, match="not one string"):
        show(torch.rand(3, 4), labels="abc")


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ShowError, match="at least 2 dimensions; this value has shape \\(5,\\)"):
        show(torch.arange(5.0))
    with pytest.raises(ShowError, match="dimension 3 does not exist in shape \\(4, 4\\)"):
        show(torch.rand(4, 4), dims=(0, 3))
    with pytest.raises(ShowError, match="same dimension twice"):
        show(torch.rand(4, 4), dims=(1, -1))
    with pytest.raises(ShowError, match="a dict is none of these"):
        show({"a": 1})
    with pytest.raises(ShowError, match="head 12 is out of range"):
        show(torch.rand(1, 12, 3, 3), head=12)
    with pytest.raises(ShowError, match="cmap must be"):
        show(torch.rand(3, 3), cmap="jet")


def attention_records(layers=2, heads=12, tokens=5):
    torch.manual_seed(0)
    with capture_attention() as attns:
        for _ in range(layers):
            q, k, v = (torch.randn(1, heads, tokens, 8) for _ in range(3))
            torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return attns


def test_an_attention_record_is_a_grid_of_its_heads_tiled_3_by_4():
    store.enable()
    try:
        (record,) = attention_records(layers=1)
    finally:
        store.disable()
    view = show(record, labels=["a", "b", "c", "d", "e"])
    (item,) = view.to_json()["items"]
    assert item["id"] == record.id and item["path"] == ["locals", "weights"]
    assert store[item["id"]] is record  # already a store record: nothing added
    assert len(store) == 1
    assert (item["rows_dim"], item["cols_dim"], item["grid_dims"]) == (2, 3, [1])
    assert item["grid_names"] == ["head"] and item["index"] == {"0": 0}
    assert display.grid_tiling(12, [12]) == (3, 4)
    # the picture has 12 tiles in 3 rows and 4 columns: count the runs of rows and of
    # columns that hold map pixels (colours of the table); the colour bar sits beside the
    # first row of tiles only, so columns are counted in the last row of tiles
    pixels = decode_png(view.png())
    lut = {tuple(c) for c in display.colormap_table(item["cmap"])}
    is_map = np.array([tuple(p) in lut for p in pixels.reshape(-1, 3)])
    is_map = is_map.reshape(pixels.shape[:2])
    tile_rows = np.flatnonzero(np.diff(np.r_[0, is_map.any(axis=1).astype(int)]) == 1)
    last = is_map[tile_rows[-1] :]
    tile_cols = np.flatnonzero(np.diff(np.r_[0, last.any(axis=0).astype(int)]) == 1)
    assert (len(tile_rows), len(tile_cols)) == (3, 4)


def test_a_list_of_attention_records_is_a_layer_by_head_grid_in_a_view_record():
    attns = attention_records(layers=3, heads=4)
    view = show(attns)
    (item,) = view.to_json()["items"]
    record = store[item["id"]]
    assert record.kind == "view"
    value, _ = resolve(record, item["path"])
    assert torch.equal(value, torch.stack([r.weights for r in attns]))
    assert item["shape"] == [3, 1, 4, 5, 5]
    assert item["grid_dims"] == [0, 2] and item["grid_names"] == ["layer", "head"]
    assert item["index"] == {"1": 0}
    assert view.panels[0].planes.shape == (12, 5, 5)
    one_head = show(attns, head=2).to_json()["items"][0]
    assert one_head["grid_dims"] == [0] and one_head["index"] == {"1": 0, "2": 2}


def test_a_stack_record_shows_layers_by_heads():
    store.enable()
    try:
        attention_records(layers=3, heads=2)
        first = store.ids()[0]
        stack = stack_captures(store, first, ["locals", "weights"])
    finally:
        store.disable()
    (item,) = show(stack).to_json()["items"]
    assert item["id"] == stack.id and item["path"] == ["locals", "stacked"]
    assert item["grid_dims"] == [0, 2]


def double(x, y):
    z = x * 2
    return z @ y


def test_a_call_shows_each_of_its_tensors():
    store.enable()
    try:
        with capture_call(double) as call:
            double(torch.rand(3, 4), torch.rand(4, 2))
    finally:
        store.disable()
    view = show(call)
    items = view.to_json()["items"]
    paths = [i["path"] for i in items]
    assert paths == [["return_value"], ["args", "x"], ["args", "y"], ["locals", "z"]]
    for item in items:
        assert item["id"] == call.id
        value, _ = resolve(store[call.id], item["path"])
        assert list(value.shape) == item["shape"]
    assert len(bundle_of(view)["image/png"]) > 100


def test_showing_a_huge_tensor_pools_it_without_copying_it():
    big = torch.rand(6000, 5000)  # 120 MB of float32
    tracemalloc.start()
    try:
        view = show(big, max_size=256)
        png = view.png()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"{peak / 1e6:.0f} MB allocated while showing a 120 MB tensor"
    meta = view.panels[0].meta
    assert (meta["rows"], meta["cols"]) == (250, 250) and (meta["row_step"], meta["col_step"]) == (
        24,
        20,
    )
    assert float(view.panels[0].planes.max()) == float(big.max())
    assert store[view.to_json()["items"][0]["id"]].locals["value"] is big
    assert decode_png(png).shape[0] >= 250


@pytest.mark.skipif(not HAVE_PILLOW, reason="text is drawn with Pillow")
def test_labels_are_drawn_when_pillow_is_there():
    bare = decode_png(show(torch.rand(4, 4), cmap="viridis").png())
    labelled = decode_png(show(torch.rand(4, 4), labels=list("abcd"), cmap="viridis").png())
    assert labelled.shape[1] > bare.shape[1]  # room for the row labels on the left
    ink = np.all(labelled < 120, axis=-1) & (np.ptp(labelled, axis=-1) < 20)
    assert ink[:, :20].any()  # dark text pixels left of the map


@pytest.mark.skipif(HAVE_PILLOW, reason="without Pillow the picture says it has no text")
def test_without_pillow_the_missing_text_is_said():
    view = show(torch.rand(4, 4), labels=list("abcd"))
    text = view._repr_mimebundle_()["text/plain"]
    assert "Pillow is not installed" in text


def test_a_cell_displays_the_bundle_and_the_front_end_can_open_the_value():
    """End to end in a real kernel: the cell's result carries the three MIME types, and
    the JSON's id/time/path are what the comm's get and heatmap ops answer to."""
    pytest.importorskip("ipykernel")
    pytest.importorskip("jupyter_client.manager")
    from .kernel_client import Client

    client = Client()
    try:
        results = []

        def hook(msg):
            if msg["msg_type"] == "execute_result":
                results.append(msg["content"]["data"])
            elif msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))

        code = (
            "import torch\n"
            "from nopdb_lab.analysis.display import show\n"
            "torch.manual_seed(0)\n"
            "x = torch.rand(1, 12, 5, 5)\n"
            "show(x, labels=list('abcde'))"
        )
        reply = client.kc.execute_interactive(code, timeout=60, output_hook=hook)
        assert reply["content"]["status"] == "ok"
        (data,) = results
        assert {VIEW_MIME, "image/png", "text/plain"} <= set(data)
        (item,) = data[VIEW_MIME]["items"]
        assert item["row_labels"] == list("abcde") and item["grid_dims"] == [1]
        got, _ = client.request("get", id=item["id"])
        assert got["ok"], got
        assert got["result"]["kind"] == item["record_kind"] == "view"
        assert got["result"]["time"] == item["record_time"]
        sliced, buffers = client.request(
            "heatmap",
            id=item["id"],
            path=item["path"],
            rows_dim=item["rows_dim"],
            cols_dim=item["cols_dim"],
            index=item["index"],
            grid_dims=item["grid_dims"],
        )
        assert sliced["ok"], sliced
        assert sliced["result"]["grid"] == [12]
        torch.manual_seed(0)
        expected = torch.rand(1, 12, 5, 5)[0].numpy()
        values = np.frombuffer(bytes(buffers[0]), dtype="<f4").reshape(12, 5, 5)
        assert np.array_equal(values, expected)
        import base64

        assert decode_png(base64.b64decode(data["image/png"])).shape[2] == 3
    finally:
        client.close()


def test_a_stack_of_2d_maps_is_a_grid_of_layers():
    x = torch.rand(3, 4, 4)
    panel = display._panel(x, None, [], "t", None, None, {}, stacked=True)
    assert (panel.grid_dims, panel.grid_names) == ([0], ["layer"])
    panel = display._panel(x, None, [], "t", None, None, {}, stacked=None)
    assert (panel.grid_dims, panel.grid_names) == ([0], ["[0]"])
