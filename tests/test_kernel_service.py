"""The comm service against a real ipykernel started by jupyter_client."""

import struct

import pytest

pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client.manager")

from nopdb_lab.jupyter.protocol import PROTOCOL_VERSION  # noqa: E402

from .kernel_client import Client, reliable_subshells  # noqa: E402


@pytest.fixture(scope="module")
def client():
    c = Client()
    yield c
    c.close()


def test_hello_reports_protocol_and_backend(client):
    data, _ = client.request("hello")
    assert data["ok"] and data["result"]["protocol"] == PROTOCOL_VERSION
    assert data["result"]["backend"] in ("monitoring", "settrace")


def test_captures_are_pushed_and_tensors_arrive_as_binary_buffers(client):
    client.run(
        "import numpy as np\n"
        "def scale(x):\n"
        "    grid = np.arange(12, dtype=np.float64).reshape(3, 4) * x\n"
        "    return grid.sum()\n"
        "with nopdb_lab.capture_calls(scale) as calls:\n"
        "    scale(2)\n"
    )
    (capture,) = client.added()
    assert capture["qualname"] == "scale" and capture["kind"] == "call"
    # the 96-byte grid, its arguments and the record's own bookkeeping all count
    assert 96 < capture["nbytes"] < 96 + 4096

    data, _ = client.request("get", id=capture["id"])
    grid = data["result"]["locals"]["grid"]
    assert grid["shape"] == [3, 4] and grid["dtype"] == "float64"
    assert (grid["min"], grid["max"], grid["mean"]) == (0.0, 22.0, 11.0)
    assert data["result"]["stack"][-1]["name"] == "scale"

    data, buffers = client.request("tensor", id=capture["id"], path=["locals", "grid"], index=[1])
    assert data["result"]["shape"] == [4] and data["result"]["dtype"] == "float32"
    assert data["result"]["expression"] == f"nopdb_lab.store[{capture['id']}].locals['grid']"
    assert struct.unpack("<4f", bytes(buffers[0])) == (8.0, 10.0, 12.0, 14.0)

    client.run(f"assert nopdb_lab.store[{capture['id']}].locals['grid'].shape == (3, 4)")


def test_every_value_comes_with_the_python_that_reaches_it(client):
    client.events.clear()
    client.run(
        "def pack(x):\n"
        "    parts = {'it\\'s': [x, (x, 2)], 3: 'three'}\n"
        "    return parts\n"
        "with nopdb_lab.capture_calls(pack):\n"
        "    pack(1.5)\n"
    )
    (added,) = client.added()
    cid = added["id"]
    data, _ = client.request("get", id=cid)
    result = data["result"]
    assert result["args"]["x"]["expression"] == f"nopdb_lab.store[{cid}].args['x']"
    assert result["return_value"]["expression"] == f"nopdb_lab.store[{cid}].return_value"
    parts = result["locals"]["parts"]
    assert parts["type"] == "dict" and parts["length"] == 2

    data, _ = client.request("value", id=cid, path=["locals", "parts"])
    keys = [c["key"] for c in data["result"]["children"]]
    assert keys == ["it's", 3]
    inner = data["result"]["children"][0]
    assert inner["summary"]["length"] == 2
    data, _ = client.request("value", id=cid, path=["locals", "parts", "it's", 1])
    expression = data["result"]["expression"]
    assert expression == f"nopdb_lab.store[{cid}].locals['parts'][\"it's\"][1]"
    # every expression the panel offers evaluates to the value in the user's namespace
    client.run(f"assert {expression} == (1.5, 2)")
    for child in data["result"]["children"]:
        client.run(f"assert {child['summary']['expression']} in (1.5, 2)")


def test_source_of_a_cell_and_of_a_module_file(client):
    client.events.clear()
    client.run(
        "def cell_function(a):\n"
        "    doubled = a * 2\n"
        "    return doubled\n"
        "with nopdb_lab.capture_calls(cell_function):\n"
        "    cell_function(4)"  # as JupyterLab sends it: no final newline
    )
    (added,) = client.added()
    cell_file = added["file"]
    data, _ = client.request("source", file=cell_file)
    assert data["ok"] and "doubled = a * 2" in data["result"]["text"]
    assert data["result"]["cell"]  # the front end shows the notebook cell instead

    data, _ = client.request("get", id=added["id"])
    for frame in data["result"]["stack"]:  # ipykernel's own frames, frozen runpy included
        reply, _ = client.request("source", file=frame["file"])
        assert reply["ok"], (frame, reply)
        lines = reply["result"]["text"].splitlines()
        assert len(lines) >= frame["line"]

    import json

    data, _ = client.request("source", file=json.__file__)
    assert "def dumps(" in data["result"]["text"] and not data["result"]["cell"]
    data, _ = client.request("source", file="/no/such/file.py")
    assert (
        not data["ok"]
        and "no source available for '/no/such/file.py'" in (data["error"]["message"])
    )


def test_breakpoint_hits_are_captures_too(client):
    client.events.clear()
    client.run(
        "def add(a, b):\n"
        "    total = a + b\n"
        "    return total\n"
        "with nopdb_lab.breakpoint(function=add, line='return total', keep_locals=True) as bp:\n"
        "    bp.eval('missing_name')\n"
        "    add(1, 2)\n"
    )
    (added,) = client.added()
    assert added["kind"] == "hit" and added["errors"] == 1
    data, _ = client.request("get", id=added["id"])
    assert data["result"]["locals"]["total"]["repr"] == "3"
    assert "NameError" in data["result"]["errors"][0]["message"]


def test_errors_are_structured_and_name_the_problem(client):
    data, _ = client.request("get", id=10**9)
    assert not data["ok"] and data["error"]["type"] == "KeyError"
    assert "is not in the store" in data["error"]["message"]
    data, _ = client.request("no_such_op")
    assert "unknown request 'no_such_op'" in data["error"]["message"]
    data, _ = client.request("value", id=1, path=["nowhere"])
    assert not data["ok"]


def test_eviction_and_delete_are_pushed(client):
    client.events.clear()
    client.run(
        "def big(n):\n"
        "    block = np.ones(n)\n"
        "    return None\n"
        "nopdb_lab.store.clear()\n"
        "nopdb_lab.store.set_budget(15_000)\n"
        "with nopdb_lab.capture_calls(big):\n"
        "    big(1000); big(1000)\n"
    )
    (evicted,) = client.pushed("captures_evicted")
    assert "evicted" in evicted["message"] and "set_budget" in evicted["message"]
    data, _ = client.request("clear")
    assert data["ok"] and client.pushed("captures_deleted")
    data, _ = client.request("list")
    assert data["result"]["captures"] == []


def test_ten_thousand_captures_arrive_in_few_messages_in_order(client):
    client.run("nopdb_lab.store.clear(); nopdb_lab.store.set_budget(1 << 30)")
    client.events.clear()
    client.run(
        "def step(i):\n"
        "    return i\n"
        "with nopdb_lab.capture_calls(step):\n"
        "    for i in range(10_000):\n"
        "        step(i)\n"
    )
    messages = client.pushed("captures_added")
    briefs = client.added()
    assert len(briefs) == 10_000
    ids = [b["id"] for b in briefs]
    assert ids == sorted(ids) and len(set(ids)) == 10_000
    # batched: far below the server's iopub limit of 1000 messages per second
    assert 10 <= len(messages) <= 200
    assert max(len(m["captures"]) for m in messages) <= 1000
    client.run("nopdb_lab.store.clear()")


def test_merging_keeps_additions_and_removals_in_order():
    from nopdb_lab.jupyter.batching import merge_events

    def added(*ids):
        return {"event": "captures_added", "captures": [{"id": i} for i in ids]}

    events = [
        added(1),
        added(2),
        {"event": "captures_evicted", "ids": [1], "message": "evicted #1"},
        {"event": "captures_evicted", "ids": [2], "message": "evicted #2"},
        added(3),
        {"event": "captures_deleted", "ids": [3]},
    ]
    merged = merge_events(events, max_batch=1000)
    assert [m["event"] for m in merged] == [
        "captures_added",
        "captures_evicted",
        "captures_added",
        "captures_deleted",
    ]
    assert [c["id"] for c in merged[0]["captures"]] == [1, 2]
    assert merged[1] == {"event": "captures_evicted", "ids": [1, 2], "message": "evicted #2"}
    assert events[0]["captures"] == [{"id": 1}]  # the input is left alone
    assert [len(m["captures"]) for m in merge_events([added(*range(5))] * 3, max_batch=6)] == [
        10,
        5,
    ]


def test_heatmap_slices_arrive_pooled_as_float32_buffers(client):
    client.events.clear()
    client.run(
        "def scores(n):\n"
        "    s = np.arange(2 * n * n, dtype=np.float64).reshape(2, n, n)\n"
        "    return s\n"
        "with nopdb_lab.capture_calls(scores):\n"
        "    scores(600)\n"
    )
    (added,) = client.added()
    data, buffers = client.request(
        "heatmap", id=added["id"], path=["locals", "s"], rows_dim=1, cols_dim=2, index={"0": 1}
    )
    result = data["result"]
    assert (result["rows"], result["cols"], result["row_step"], result["reduce"]) == (
        300,
        300,
        2,
        "max",
    )
    values = struct.unpack(f"<{300 * 300}f", bytes(buffers[0]))
    # cell (0, 0) is the max of s[1, 0:2, 0:2]
    assert values[0] == 600 * 600 + 600 + 1
    data, _ = client.request(
        "heatmap", id=added["id"], path=["locals", "s"], rows_dim=0, cols_dim=0
    )
    assert not data["ok"] and "two different dimensions" in data["error"]["message"]
    # the zoom: a region at full resolution, and where it starts
    data, buffers = client.request(
        "heatmap",
        id=added["id"],
        path=["locals", "s"],
        rows_dim=1,
        cols_dim=2,
        index={"0": 1},
        region={"row0": 100, "row1": 103, "col0": 590, "col1": 600},
    )
    result = data["result"]
    assert (result["rows"], result["cols"], result["row_step"], result["reduce"]) == (
        3,
        10,
        1,
        None,
    )
    assert (result["row0"], result["col0"]) == (100, 590)
    values = struct.unpack("<30f", bytes(buffers[0]))
    assert values[0] == 600 * 600 + 100 * 600 + 590 and values[-1] == 600 * 600 + 102 * 600 + 599
    data, _ = client.request(
        "heatmap",
        id=added["id"],
        path=["locals", "s"],
        rows_dim=1,
        cols_dim=2,
        region={"row0": 5, "row1": 5, "col0": 0, "col1": 9},
    )
    assert (
        not data["ok"] and "rows 5–5 are not a non-empty part of 0–600" in data["error"]["message"]
    )


def test_labels_come_from_an_expression_in_the_users_namespace(client):
    client.run("tokens = ['[CLS]', 'the', 'cat', '[SEP]']\nids = np.array([101, 5, 7, 102])")
    data, _ = client.request("labels", expression="tokens")
    assert data["result"]["labels"] == ["[CLS]", "the", "cat", "[SEP]"]
    data, _ = client.request("labels", expression="ids")
    assert data["result"]["labels"] == ["101", "5", "7", "102"]
    for expression, message in [
        ("tokenz", "tokenz raised NameError: name 'tokenz' is not defined"),
        ("tokens[", "syntax error in 'tokens['"),
        ("'the cat'", "gives a str; labels must be a list of tokens"),
        ("len(tokens)", "gives an int; labels must be a list of tokens"),
    ]:
        data, _ = client.request("labels", expression=expression)
        assert not data["ok"] and message in data["error"]["message"], data


def test_attention_capture_toggle_records_sdpa_calls_across_cells(client):
    pytest.importorskip("torch")
    data, _ = client.request("hello")
    assert data["result"]["attention_capture"] is False
    data, _ = client.request("attention_capture", enabled=True)
    assert data["result"] == {"enabled": True}
    client.events.clear()
    client.run(
        "import torch\n"
        "q = torch.randn(1, 2, 3, 4)\n"
        "out = torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)\n"
    )
    (added,) = client.added()
    assert added["kind"] == "attention"
    data, _ = client.request("attention_capture", enabled=False)
    assert data["result"] == {"enabled": False}
    client.events.clear()
    client.run("torch.nn.functional.scaled_dot_product_attention(q, q, q)")
    assert client.added() == []


@reliable_subshells
def test_a_subshell_request_during_a_cell_leaves_the_cells_attention_capture_alone(client):
    """With attention capture on, each cell runs inside a TorchFunctionMode entered by
    IPython's pre_execute hook, and so does each comm request (the hooks run around it).
    A request served in a kernel subshell while a cell runs must not unwind the cell's mode
    (torch's mode stack is per thread): once capture is off, no mode is left behind."""
    pytest.importorskip("torch")
    subshell = client.subshell()
    try:
        data, _ = client.request("attention_capture", enabled=True)
        assert data["ok"]
        cell = client.kc.execute("import time; print('cell runs', flush=True); time.sleep(2)")
        while True:  # the cell has entered its mode
            msg = client.kc.get_iopub_msg(timeout=20)
            if msg["msg_type"] == "stream" and "cell runs" in msg["content"]["text"]:
                break
        answer = client.answer(client.send("list", subshell))
        assert answer["ok"]
        while True:  # the cell ends, then post_execute unwinds its own mode
            reply = client.kc.get_shell_msg(timeout=20)
            if reply["parent_header"].get("msg_id") == cell:
                break
        data, _ = client.request("attention_capture", enabled=False)
        assert data["ok"]
        client.output.clear()
        client.run(
            "from torch.overrides import _get_current_function_mode\n"
            "print('mode', _get_current_function_mode())"
        )
        assert "mode None" in "".join(client.output)
    finally:
        client.request("attention_capture", enabled=False)
        client.delete_subshell(subshell)
