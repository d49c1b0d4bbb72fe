"""Front-end breakpoints through the comm, against a real ipykernel (issue 4)."""

import pytest

pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client.manager")

from .kernel_client import Client  # noqa: E402

CELL = (
    "def scale(x, factor):\n"  # 1
    "    y = x * factor\n"  # 2
    "    # a comment\n"  # 3
    "    return y + 1\n"  # 4
)


@pytest.fixture(scope="module")
def client():
    c = Client()
    yield c
    c.close()


@pytest.fixture(autouse=True)
def no_breakpoints_left(client):
    client.events.clear()
    client.output.clear()
    yield
    client.request("breakpoint_sync", breakpoints=[])
    client.request("clear")


def set_bp(client, **spec):
    data, _ = client.request("breakpoint_set", breakpoint=spec)
    assert data["ok"], data
    return data["result"]


def hits(client):
    return [c for c in client.added() if c["kind"] == "hit"]


def states_pushed(client):
    return [s for e in client.pushed("breakpoints_changed") for s in e["breakpoints"]]


def test_a_cell_breakpoint_is_pending_until_the_cell_runs_then_fires(client):
    cell = CELL + "# pending-then-active\n"
    state = set_bp(client, id="b1", source=cell, line=2, evals=["x * 10"])
    assert state["state"] == "pending"
    assert state["function"] == "scale"
    client.run(cell)
    assert states_pushed(client)[-1]["state"] == "active"
    client.run("scale(4, 2)")
    (hit,) = hits(client)
    assert hit["breakpoint"] == "b1" and hit["line"] == 2 and hit["qualname"] == "scale"
    detail, _ = client.request("get", id=hit["id"])
    assert detail["result"]["locals"]["x"]["repr"] == "4"
    assert detail["result"]["evals"]["x * 10"]["repr"] == "40"
    assert states_pushed(client)[-1] == {
        **state,
        "state": "active",
        "message": "",
        "hits": 1,
        "total_hits": 1,
    }


def test_moving_a_breakpoint_to_another_line_and_removing_it(client):
    cell = CELL + "# move\n"
    client.run(cell)
    set_bp(client, id="m", source=cell, line=2)
    moved = set_bp(client, id="m", source=cell, line=4)
    assert moved["state"] == "active" and moved["line"] == 4
    client.run("scale(1, 1)")
    assert [h["line"] for h in hits(client)] == [4]  # only the new line fires
    data, _ = client.request("breakpoint_remove", id="m")
    assert data["ok"]
    client.run("scale(1, 1)")
    assert len(hits(client)) == 1
    listed, _ = client.request("breakpoint_list")
    assert listed["result"]["breakpoints"] == []
    data, _ = client.request("breakpoint_remove", id="m")
    assert not data["ok"] and "no breakpoint 'm'" in data["error"]["message"]


def test_an_edited_cell_is_pending_until_it_runs_again(client):
    old = CELL + "# edit v1\n"
    client.run(old)
    assert set_bp(client, id="e", source=old, line=2)["state"] == "active"
    # the user inserts a line above: the front end moves the breakpoint to line 3
    new = "import math\n" + CELL + "# edit v1\n"
    state = set_bp(client, id="e", source=new, line=3)
    assert state["state"] == "pending"
    client.run("scale(1, 1)")  # the old definition runs: no hit at the moved line
    assert hits(client) == []
    client.run(new)
    client.run("scale(1, 1)")
    assert [h["line"] for h in hits(client)] == [3]


def test_bad_lines_and_syntax_errors_are_errors_that_name_the_problem(client):
    cell = CELL + "# errors\n"
    state = set_bp(client, id="c", source=cell, line=3)
    assert state["state"] == "error" and state["field"] == "line"
    assert "line 3 has no code" in state["message"] and "2, 4" in state["message"]
    state = set_bp(client, id="c", source=cell, line=40)
    assert state["field"] == "line" and "outside the cell" in state["message"]
    state = set_bp(client, id="c", source=cell, line=2, condition="x >")
    assert state["field"] == "condition" and "condition 'x >'" in state["message"]
    state = set_bp(client, id="c", source=cell, line=2, evals=["x", "x +* 1"])
    assert state["field"] == "evals.1"
    state = set_bp(client, id="c", source=cell, line=2, exec="y = = 2")
    assert state["field"] == "exec" and "exec code" in state["message"]
    state = set_bp(client, id="c", source="def f(:\n  pass\n", line=2)
    assert state["field"] == "source" and "does not compile" in state["message"]
    data, _ = client.request("breakpoint_set", breakpoint={"id": "c", "line": 2})
    assert not data["ok"] and "exactly one of source" in data["error"]["message"]
    assert hits(client) == []


def test_a_failing_action_is_recorded_on_the_hit_and_the_cell_keeps_running(client):
    cell = CELL + "# failing\n"
    client.run(cell)
    set_bp(client, id="f", source=cell, line=4, evals=["missing_name"], exec="y = y / 0")
    client.run("result = scale(3, 2)\nassert result == 7, result")
    (hit,) = hits(client)
    assert hit["errors"] == 2
    detail, _ = client.request("get", id=hit["id"])
    messages = [e["message"] for e in detail["result"]["errors"]]
    assert "NameError: name 'missing_name' is not defined" in messages
    assert "ZeroDivisionError: division by zero" in messages
    assert client.output == []  # shown on the hit, not written into the cell's output


def test_condition_max_hits_and_disable(client):
    cell = CELL + "# condition\n"
    client.run(cell)
    set_bp(client, id="k", source=cell, line=2, condition="x % 2 == 0", max_hits=2)
    client.run("for i in range(10): scale(i, 1)")
    assert [h["line"] for h in hits(client)] == [2, 2]
    assert states_pushed(client)[-1]["hits"] == 2
    assert set_bp(client, id="k", source=cell, line=2, enabled=False)["state"] == "disabled"
    client.run("scale(2, 1)")
    assert len(hits(client)) == 2


def test_exec_at_a_hit_changes_a_models_output(client):
    torch = pytest.importorskip("torch")
    assert torch
    cell = (
        "import torch\n"
        "class Attention(torch.nn.Module):\n"
        "    def __init__(self, dim):\n"
        "        super().__init__()\n"
        "        self.qkv = torch.nn.Linear(dim, 3 * dim)\n"
        "    def forward(self, x):\n"
        "        q, k, v = self.qkv(x).chunk(3, dim=-1)\n"
        "        attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5\n"
        "        attn = attn.softmax(dim=-1)\n"
        "        return attn @ v\n"
        "torch.manual_seed(0)\n"
        "block = Attention(8)\n"
        "x = torch.randn(1, 5, 8)\n"
        "plain = block(x)\n"
    )
    client.run(cell)
    # a line event comes before its line runs: at line 10, attn holds the softmax output
    state = set_bp(client, id="weights", source=cell, line=10, exec="attn = attn * 3")
    assert state["state"] == "active" and state["function"] == "Attention.forward"
    client.run(
        "with torch.no_grad():\n"
        "    changed = block(x)\n"
        "assert torch.allclose(changed, plain * 3, atol=1e-5), (changed, plain)"
    )
    (hit,) = hits(client)
    detail, _ = client.request("get", id=hit["id"])
    assert detail["result"]["locals"]["attn"]["shape"] == [1, 5, 5]


def test_a_breakpoint_in_a_module_file_fires_for_every_call(client):
    located, _ = client.request("locate", name="colorsys.rgb_to_hls")
    where = located["result"]
    assert where["file"].endswith("colorsys.py") and where["kind"] == "function"
    source, _ = client.request("source", file=where["file"])
    lines = source["result"]["text"].splitlines()
    line = lines.index("    maxc = max(r, g, b)", where["line"]) + 1
    state = set_bp(client, id="lib", file=where["file"], line=line, evals=["g * 10"])
    assert state["state"] == "active" and state["function"] == "rgb_to_hls"
    client.run("import colorsys\ncolorsys.rgb_to_hls(1, 0, 0); colorsys.rgb_to_hls(0, 1, 0)")
    found = hits(client)
    assert [h["qualname"] for h in found] == ["rgb_to_hls", "rgb_to_hls"]
    detail, _ = client.request("get", id=found[1]["id"])
    assert detail["result"]["evals"]["g * 10"]["repr"] == "10"
    state = set_bp(client, id="lib", file=where["file"], line=where["line"] - 1)
    assert state["state"] == "error" and state["field"] == "line"


def test_a_breakpoint_in_code_the_kernel_itself_runs_does_not_hang_it(client):
    # every message the kernel sends goes through json.dumps, also the hit reports
    where = client.request("locate", name="json.dumps")[0]["result"]
    lines = client.request("source", file=where["file"])[0]["result"]["text"].splitlines()
    line = next(
        n for n in range(where["line"], len(lines)) if lines[n - 1].strip().startswith("if (")
    )
    set_bp(client, id="json", file=where["file"], line=line, max_hits=50)
    client.run("import json\njson.dumps([1])")
    data, _ = client.request("breakpoint_list")
    assert data["result"]["breakpoints"][0]["hits"] >= 1


def test_instance_scope_limits_a_breakpoint_to_one_captured_self(client):
    cell = (
        "class Counter:\n"
        "    def __init__(self, name):\n"
        "        self.name = name\n"
        "    def bump(self, n):\n"
        "        return n + 1\n"
        "a, b = Counter('a'), Counter('b')\n"
    )
    client.run(cell)
    set_bp(client, id="any", source=cell, line=5, keep_locals=True)
    client.run("a.bump(1); b.bump(2)")
    first = hits(client)[0]
    state = set_bp(client, id="any", source=cell, line=5, instance=first["id"])
    assert state["state"] == "active"
    client.run("a.bump(1); b.bump(2); a.bump(3)")
    detail = [client.request("get", id=h["id"])[0]["result"] for h in hits(client)[2:]]
    assert [d["locals"]["n"]["repr"] for d in detail] == ["1", "3"]
    state = set_bp(client, id="any", source=cell, line=5, instance=99999)
    assert state["field"] == "instance" and "not in the store" in state["message"]


def test_locate_errors_name_the_problem(client):
    for name, message in [
        ("torch..nn", "is not a dotted name"),
        ("no_such_module_xyz.thing", "no module named 'no_such_module_xyz'"),
        ("json.no_such_attr", "json has no attribute 'no_such_attr'"),
        ("math.sqrt", "has no Python source"),
    ]:
        data, _ = client.request("locate", name=name)
        assert not data["ok"] and message in data["error"]["message"], (name, data)


def test_breakpoints_are_reapplied_after_a_restart_once_the_code_exists(client):
    cell = CELL + "# restart\n"
    client.run(cell)
    spec = {"id": "r", "source": cell, "line": 2}
    assert set_bp(client, **spec)["state"] == "active"
    client.restart()
    listed, _ = client.request("breakpoint_list")
    assert listed["result"]["breakpoints"] == []  # a new process knows nothing
    # the front end sends its breakpoints again: pending until the cell runs
    synced, _ = client.request("breakpoint_sync", breakpoints=[spec])
    assert synced["result"]["breakpoints"][0]["state"] == "pending"
    client.run(cell)
    client.run("scale(5, 1)")
    assert [h["line"] for h in hits(client)] == [2]


def test_sync_replaces_only_the_breakpoints_of_one_notebook(client):
    # two notebooks on one kernel: each re-sends its own breakpoints when it connects
    line = open(__file__).read().splitlines().index("import pytest") + 1
    first = {"id": "a1", "file": __file__, "line": line}
    client.request("breakpoint_sync", breakpoints=[first], owner="a.ipynb")
    second = {"id": "b1", "file": __file__, "line": line}
    client.request("breakpoint_sync", breakpoints=[second], owner="b.ipynb")
    client.request("breakpoint_sync", breakpoints=[], owner="a.ipynb")
    listed, _ = client.request("breakpoint_list")
    assert [(b["id"], b["state"]) for b in listed["result"]["breakpoints"]] == [("b1", "active")]


def test_hit_totals_survive_an_edit_and_a_page_load(client):
    """The capture list still shows earlier hits: the count must not drop to 0 (issue 17)."""
    cell = CELL + "# totals\n"
    client.run(cell)
    set_bp(client, id="t", source=cell, line=2)
    client.run("scale(1, 1)\nscale(2, 1)")
    edited = set_bp(client, id="t", source=cell, line=2, condition="x > 1")
    assert (edited["hits"], edited["total_hits"]) == (0, 2)
    client.run("scale(1, 1)\nscale(2, 1)")  # only the second passes the condition
    listed = client.request("breakpoint_list")[0]["result"]["breakpoints"]
    (state,) = [s for s in listed if s["id"] == "t"]
    assert (state["hits"], state["total_hits"]) == (1, 3)
    # a page load: the front end re-syncs its list, the kernel keeps the totals by id
    synced, _ = client.request(
        "breakpoint_sync", breakpoints=[{"id": "t", "source": cell, "line": 2}]
    )
    (state,) = synced["result"]["breakpoints"]
    assert (state["hits"], state["total_hits"]) == (0, 3)
    assert len(hits(client)) == 3
