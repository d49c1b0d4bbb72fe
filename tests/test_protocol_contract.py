"""The comm protocol's contract: every message the real CommService sends matches the schema.

``nopdb_lab/jupyter/protocol.schema.json`` is the one source of truth (the front end's
TypeScript types are generated from it). Here the service runs in-process behind a
recording comm; every op is driven to a success and to an error, every event is
provoked, and each message is validated with ``jsonschema`` itself.
"""

from __future__ import annotations

import json

import pytest

import __main__

jsonschema = pytest.importorskip("jsonschema")
torch = pytest.importorskip("torch")
pytest.importorskip("numpy")

import nopdb_lab  # noqa: E402
from nopdb_lab.jupyter.ops import OPS  # noqa: E402
from nopdb_lab.jupyter.protocol import PROTOCOL_VERSION, SCHEMA  # noqa: E402
from nopdb_lab.jupyter.service import CommService  # noqa: E402


def add(x, y):
    total = x + y
    return total


def validator(definition: str):
    return jsonschema.Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{definition}"})


def title(op: str) -> str:
    return "".join(part.capitalize() for part in op.split("_"))


class RecordingComm:
    """Plays ipykernel's comm: keeps what the service sends, delivers what we send."""

    def __init__(self) -> None:
        self.sent: list = []
        self.handle_msg = None  # the service replaces the comm's handle_msg

    def on_close(self, callback) -> None:
        self._on_close = callback

    def send(self, data, buffers=None) -> None:
        json.dumps(data)  # what the kernel sends must be JSON
        self.sent.append((data, buffers))

    def deliver(self, data) -> None:
        self.handle_msg({"content": {"data": data}})


@pytest.fixture
def service():
    nopdb_lab.store.clear()
    was_enabled = nopdb_lab.store.enabled
    budget = nopdb_lab.store.budget
    comm = RecordingComm()
    svc = CommService(comm, nopdb_lab.store)
    svc.store.enable()
    yield svc, comm
    comm._on_close({})
    nopdb_lab.store.set_budget(budget)
    nopdb_lab.store.clear()
    if not was_enabled:  # later tests expect a store that keeps nothing
        nopdb_lab.store.disable()
    for bp in svc.breakpoints.states():
        svc.breakpoints.remove(bp["id"])


def request(comm: RecordingComm, op: str, **args):
    """Send one request; returns its reply (and checks every message sent meanwhile)."""
    start = len(comm.sent)
    comm.deliver({"v": PROTOCOL_VERSION, "id": f"r-{op}", "op": op, "args": args})
    messages = comm.sent[start:]
    for data, _ in messages:
        validator("KernelMessage").validate(data)
    replies = [(d, b) for d, b in messages if "re" in d]
    assert len(replies) == 1, messages
    data, buffers = replies[0]
    assert data["re"] == f"r-{op}"
    # the kernel's own validator and jsonschema agree on the request
    sent = {"v": PROTOCOL_VERSION, "id": "x", "op": op, "args": args}
    refused = not data["ok"] and data["error"]["type"] == "RequestError"
    assert validator("Request").is_valid(sent) != refused, data
    if data["ok"]:
        validator(f"{title(op)}Result").validate(data["result"])
    else:
        validator("ErrorResponse").validate(data)
    return data, buffers


def events_of(comm: RecordingComm, service) -> dict:
    service.events.flush()
    out: dict = {}
    for data, _ in comm.sent:
        if "event" in data:
            validator(f"{title(data['event'])}Event").validate(data)
            out.setdefault(data["event"], []).append(data)
    return out


def test_every_op_has_a_schema_entry_and_back() -> None:
    assert set(OPS) == set(SCHEMA["x-ops"])
    for op in OPS:
        for suffix in ("Request", "Args", "Result"):
            assert f"{title(op)}{suffix}" in SCHEMA["$defs"], (op, suffix)
    requests = {r["$ref"].rsplit("/", 1)[1] for r in SCHEMA["$defs"]["Request"]["oneOf"]}
    assert requests == {f"{title(op)}Request" for op in OPS}


def test_every_event_has_a_schema_entry() -> None:
    events = {e["$ref"].rsplit("/", 1)[1] for e in SCHEMA["$defs"]["ProtocolEvent"]["oneOf"]}
    assert events == {f"{title(e)}Event" for e in SCHEMA["x-events"]}


def test_the_schema_is_valid_and_declares_a_semantic_version() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert PROTOCOL_VERSION.count(".") == 2
    assert all(part.isdigit() for part in PROTOCOL_VERSION.split("."))


def test_every_op_succeeds_with_messages_matching_the_schema(service, tmp_path) -> None:
    svc, comm = service
    with nopdb_lab.capture_calls(add):
        add(torch.rand(3, 4), torch.rand(3, 4))
        add(torch.rand(3, 4), torch.rand(3, 4))
    first, second = (r.id for r in svc.store)
    __main__._contract_image = torch.rand(3, 8, 8)
    __main__._contract_labels = ["a", "b"]
    try:
        hello, _ = request(comm, "hello")
        assert hello["ok"] and hello["result"]["protocol"] == PROTOCOL_VERSION
        assert request(comm, "list")[0]["ok"]
        assert request(comm, "get", id=first)[0]["ok"]
        assert request(comm, "value", id=first, path=["args", "x"])[0]["ok"]
        data, buffers = request(comm, "tensor", id=first, path=["args", "x"], dtype="float32")
        assert data["ok"] and len(buffers[0]) == 3 * 4 * 4
        data, _ = request(comm, "heatmap", id=first, path=["args", "x"], rows_dim=0, cols_dim=1)
        assert data["ok"]
        assert request(comm, "labels", expression="_contract_labels")[0]["ok"]
        assert request(comm, "image", expression="_contract_image")[0]["ok"]
        assert request(comm, "stack", id=first, path=["args", "x"])[0]["ok"]
        assert request(comm, "attention_capture", enabled=True)[0]["ok"]
        assert request(comm, "attention_capture", enabled=False)[0]["ok"]
        assert request(comm, "gradient_capture", enabled=True)[0]["ok"]
        assert request(comm, "gradient_capture", enabled=False)[0]["ok"]
        x = torch.rand(3, 4, requires_grad=True)
        with nopdb_lab.capture_calls(add, grads=True):
            add(x, x).sum().backward()  # a gradient arrives: captures_updated
        graded = max(r.id for r in svc.store)
        assert request(comm, "layer_strip", id=graded, path=["locals", "total"])[0]["ok"]
        data, _ = request(comm, "heatmap", id=graded, path=["args", "x"], of="grad_x_value")
        assert data["ok"]
        source = tmp_path / "mod.py"
        source.write_text("x = 1\n")
        assert request(comm, "source", file=str(source))[0]["ok"]
        assert request(comm, "locate", name="json.dumps")[0]["ok"]
        spec = {
            "id": "bp1",
            "file": add.__code__.co_filename,
            "line": add.__code__.co_firstlineno + 1,
        }
        assert request(comm, "breakpoint_set", breakpoint=spec)[0]["ok"]
        add(1, 2)  # a hit: breakpoints_changed
        assert request(comm, "breakpoint_list")[0]["ok"]
        assert request(comm, "breakpoint_sync", breakpoints=[spec], owner="nb")[0]["ok"]
        assert request(comm, "breakpoint_remove", id="bp1")[0]["ok"]
        # probes (issue 13): edit, undo, reset, delta; progress of a front-end attribution
        weights = torch.rand(4)
        nopdb_lab.probe("contract", lambda x: x @ weights, x=torch.rand(2, 4))
        assert request(comm, "probe_list")[0]["ok"]
        assert request(comm, "probe_edit", probe="contract", input="x", value=0.0, cells=[[0, 1]])[
            0
        ]["ok"]
        region = {"start": [0, 0], "stop": [1, 2]}
        assert request(comm, "probe_edit", probe="contract", input="x", value=1.0, region=region)[
            0
        ]["ok"]
        assert request(comm, "probe_undo", probe="contract")[0]["ok"]
        data, buffers = request(comm, "probe_heatmap", probe="contract", input="x")
        assert data["ok"] and len(buffers[0]) == 2 * 4 * 4
        nopdb_lab.get_probe("contract").rerun()
        assert request(comm, "probe_delta", probe="contract", input="x", against=1)[0]["ok"]
        assert request(comm, "probe_reset", probe="contract")[0]["ok"]
        from nopdb_lab.jupyter import probe_runs
        from nopdb_lab.jupyter import service as service_module

        service_module._services.append(svc)
        try:
            probe_runs.attribute("tok", "contract", method="saliency")
        finally:
            service_module._services.remove(svc)
        assert request(comm, "delete", id=second)[0]["ok"]
        assert request(comm, "set_budget", nbytes=1)[0]["ok"]  # evicts the tensors' captures
        assert request(comm, "clear")[0]["ok"]
    finally:
        del __main__._contract_image, __main__._contract_labels
    events = events_of(comm, svc)
    assert set(events) == set(SCHEMA["x-events"]), sorted(events)


@pytest.mark.parametrize(
    "op, args, error_type, field",
    [
        ("get", {"id": 10**9}, "KeyError", None),
        ("get", {}, "RequestError", "args.id"),
        ("value", {"id": 1, "path": ["nowhere"]}, "KeyError", None),
        ("tensor", {"id": 1, "path": ["args"], "dtype": "int64"}, "RequestError", "args.dtype"),
        ("heatmap", {"id": 1, "path": ["args", {}]}, "RequestError", "args.path.1"),
        ("labels", {"expression": "1 +"}, "ExpressionError", None),
        ("image", {"expression": "'text'"}, "ExpressionError", None),
        ("stack", {"id": "1", "path": []}, "RequestError", "args.id"),
        ("attention_capture", {"enabled": "no"}, "RequestError", "args.enabled"),
        ("gradient_capture", {"enabled": 1}, "RequestError", "args.enabled"),
        ("layer_strip", {"id": 10**9, "path": ["locals", "x"]}, "KeyError", None),
        ("heatmap", {"id": 1, "path": ["args"], "of": "grads"}, "RequestError", "args.of"),
        ("source", {"file": "<nowhere>"}, "ProtocolError", None),
        ("delete", {"id": 10**9}, "KeyError", None),
        ("clear", {"everything": True}, "RequestError", "args.everything"),
        ("set_budget", {"nbytes": -1}, "RequestError", "args.nbytes"),
        ("breakpoint_set", {"breakpoint": {"id": "b", "line": 1}}, "SpecError", None),
        ("breakpoint_remove", {"id": "missing"}, None, None),
        ("breakpoint_sync", {"breakpoints": [{"line": 1}]}, "RequestError", None),
        ("breakpoint_list", {"x": 1}, "RequestError", "args.x"),
        ("locate", {"name": "no.such.module_x"}, "SourceLookupError", None),
        ("hello", {"x": 1}, "RequestError", "args.x"),
        ("list", {"x": 1}, "RequestError", "args.x"),
        ("probe_list", {"x": 1}, "RequestError", "args.x"),
        ("probe_edit", {"probe": "nope", "input": "x", "value": 1}, "KeyError", None),
        ("probe_edit", {"probe": "p", "input": "x"}, "RequestError", None),
        ("probe_undo", {"probe": 3}, "RequestError", "args.probe"),
        ("probe_reset", {"probe": "nope"}, "KeyError", None),
        ("probe_heatmap", {"probe": "nope", "input": "x"}, "KeyError", None),
        ("probe_delta", {"probe": "nope", "input": "x", "against": 0}, "RequestError", None),
    ],
)
def test_every_op_refuses_bad_requests_with_a_structured_error(
    service, op, args, error_type, field
) -> None:
    svc, comm = service
    data, _ = request(comm, op, **args)
    assert not data["ok"], data
    if error_type is not None:
        assert data["error"]["type"] == error_type, data
    if field is not None:
        assert data["error"]["field"] == field, data
    assert data["error"]["message"]
    if op == "attention_capture":
        assert not nopdb_lab.analysis.attention.attention_capture_active()


@pytest.mark.parametrize(
    "message, error_type, field",
    [
        ([], "RequestError", None),
        ("hello", "RequestError", None),
        (None, "RequestError", None),
        ({"id": "r", "op": "hello"}, "VersionMismatchError", "v"),
        ({"v": 1, "id": "r", "op": "hello"}, "VersionMismatchError", "v"),
        ({"v": "1.9.0", "id": "r", "op": "hello"}, "VersionMismatchError", "v"),
        ({"v": PROTOCOL_VERSION, "id": "r", "op": "explode"}, "RequestError", "op"),
        ({"v": PROTOCOL_VERSION, "id": "r", "op": "hello", "args": []}, "RequestError", "args"),
    ],
)
def test_malformed_messages_get_a_structured_error(service, message, error_type, field) -> None:
    svc, comm = service
    comm.deliver(message)
    (data, _), *rest = comm.sent
    assert not rest
    validator("ErrorResponse").validate(data)
    assert data["error"]["type"] == error_type
    if field is not None:
        assert data["error"]["field"] == field
    if error_type == "VersionMismatchError":
        assert PROTOCOL_VERSION in data["error"]["message"]
        assert "pip install" in data["error"]["message"]


def test_a_newer_minor_version_is_served(service) -> None:
    svc, comm = service
    major = PROTOCOL_VERSION.split(".")[0]
    comm.deliver({"v": f"{major}.99.0", "id": "r", "op": "hello"})
    (data, _), *_ = comm.sent
    assert data["ok"], data


def test_bundle_ops_save_open_and_compare_with_messages_matching_the_schema(
    service, tmp_path, monkeypatch
) -> None:
    """Save two captures next to a notebook in ``sub/``, load them back, compare them."""
    svc, comm = service
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # the kernel of sub/nb.ipynb runs in sub/
    with nopdb_lab.capture_calls(add):
        add(torch.rand(3, 4), torch.rand(3, 4))
        add(torch.rand(3, 4), torch.rand(3, 4))
    first, second = (r.id for r in svc.store)
    saved, _ = request(comm, "bundle_save", path="sub/nb.nopdb", notebook_dir="sub", ids=[first])
    assert saved["ok"], saved
    assert saved["result"]["path"] == "sub/nb.nopdb" and saved["result"]["count"] == 1
    assert (tmp_path / "sub" / "nb.nopdb").stat().st_size == saved["result"]["nbytes"]
    opened, _ = request(comm, "bundle_open", path="sub/nb.nopdb", notebook_dir="sub")
    assert opened["ok"], opened
    (loaded,) = opened["result"]["captures"]
    assert loaded["bundle"] == "nb.nopdb" and loaded["original_id"] == first
    assert loaded["id"] not in (first, second)
    # the loaded capture's x equals the live one's
    live_x = svc.store[first].args["x"]
    assert torch.equal(svc.store[loaded["id"]].args["x"], live_x)
    got, _ = request(comm, "get", id=loaded["id"])
    assert got["ok"] and got["result"]["bundle"] == "nb.nopdb", got
    # the list marks imported captures with their bundle (and the event did too)
    rows = {r["id"]: r for r in request(comm, "list")[0]["result"]["captures"]}
    assert rows[loaded["id"]]["bundle"] == "nb.nopdb" and "bundle" not in rows[first]
    added = [c for e in events_of(comm, svc)["captures_added"] for c in e["captures"]]
    assert any(c.get("bundle") == "nb.nopdb" for c in added)
    # compare the live capture's x with the second capture's x: A − B at every cell
    compared, _ = request(
        comm,
        "compare",
        a={"id": first, "path": ["args", "x"]},
        b={"id": second, "path": ["args", "x"]},
    )
    assert compared["ok"], compared
    record = svc.store[compared["result"]["id"]]
    assert compared["result"]["kind"] == "compare" and compared["result"]["sources"] == [
        first,
        second,
    ]
    details, _ = request(comm, "get", id=record.id)
    assert details["ok"] and len(details["result"]["sources"]) == 2, details
    expected = svc.store[first].args["x"] - svc.store[second].args["x"]
    torch.testing.assert_close(record.locals["diff"], expected)
    # a whole-store save writes every capture (the compare record included)
    everything, _ = request(comm, "bundle_save", path="sub/all.nopdb", notebook_dir="sub")
    assert everything["ok"] and everything["result"]["count"] == len(svc.store)


@pytest.mark.parametrize(
    "op, args, error_type, needle",
    [
        ("bundle_save", {"path": "../out.nopdb", "notebook_dir": "sub"}, "ProtocolError", "root"),
        ("bundle_save", {"path": "/tmp/x.nopdb"}, "ProtocolError", "absolute"),
        (
            "bundle_save",
            {"path": "x.nopdb", "notebook_dir": "elsewhere"},
            "ProtocolError",
            "elsewhere",
        ),
        ("bundle_save", {"path": "x.nopdb", "ids": [10**9]}, "KeyError", "1000000000"),
        ("bundle_save", {"path": ""}, "ProtocolError", "no bundle path"),
        ("bundle_open", {"path": "missing.nopdb"}, "ProtocolError", "no bundle"),
        ("bundle_open", {"path": "junk.nopdb"}, "ProtocolError", "junk"),
        (
            "bundle_open",
            {"path": "../../etc/passwd", "notebook_dir": "sub"},
            "ProtocolError",
            "root",
        ),
        ("compare", {"a": {"id": 1, "path": []}}, "RequestError", None),
        ("compare", {"a": {"id": 10**9, "path": []}, "b": {"id": 1, "path": []}}, "KeyError", None),
    ],
)
def test_bundle_ops_refuse_with_a_clear_error(
    service, tmp_path, monkeypatch, op, args, error_type, needle
) -> None:
    svc, comm = service
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub" if args.get("notebook_dir") == "sub" else tmp_path)
    (tmp_path / "junk.nopdb").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}junk")
    with nopdb_lab.capture_calls(add):
        add(torch.rand(2, 2), torch.rand(2, 2))
    data, _ = request(comm, op, **args)
    assert not data["ok"], data
    assert data["error"]["type"] == error_type, data
    if needle is not None:
        assert needle in data["error"]["message"], data
    assert not (tmp_path / "out.nopdb").exists()


def test_compare_op_names_both_shapes_when_they_differ(service) -> None:
    svc, comm = service
    with nopdb_lab.capture_calls(add):
        add(torch.rand(3, 4), torch.rand(3, 4))
        add(torch.rand(2, 5), torch.rand(2, 5))
    first, second = (r.id for r in svc.store)
    data, _ = request(
        comm,
        "compare",
        a={"id": first, "path": ["args", "x"]},
        b={"id": second, "path": ["args", "x"]},
    )
    assert not data["ok"]
    message = data["error"]["message"]
    assert "[3, 4]" in message and "[2, 5]" in message, message
    assert len(svc.store) == 2  # nothing half-added
