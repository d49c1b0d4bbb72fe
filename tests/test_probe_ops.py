"""The front end's probe ops: edits land exactly where asked, undo/reset restore exactly,
a re-run's delta lists exactly the edited cells, and a front-end attribution reports
progress and can be interrupted without touching the store."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import nopdb_lab  # noqa: E402
from nopdb_lab.jupyter import probe_ops, probe_runs, service  # noqa: E402
from nopdb_lab.records import ProtocolError  # noqa: E402


@pytest.fixture
def probe():
    nopdb_lab.store.clear()
    was_enabled = nopdb_lab.store.enabled
    nopdb_lab.store.enable()
    weights = torch.rand(3, 5)
    made = nopdb_lab.probe("ops", lambda x: (x * weights).sum(dim=(1, 2)), x=torch.rand(2, 3, 5))
    yield made
    nopdb_lab.store.clear()
    if not was_enabled:
        nopdb_lab.store.disable()


def test_edit_cells_undo_and_reset(probe) -> None:
    original = probe.inputs["x"].clone()
    cells = [[0, 1, 2], [1, 0, 0], [1, 2, 4]]
    state, _ = probe_ops.probe_edit_op(None, probe="ops", input="x", value=7.0, cells=cells)
    assert state["changed"] == 3 and state["pending"] == {"x": 3} and state["undo"] == 1
    expected = original.clone()
    for c in cells:
        expected[tuple(c)] = 7.0
    assert torch.equal(probe.inputs["x"], expected)
    region = {"start": [0, 0, 0], "stop": [1, 2, 2]}
    state, _ = probe_ops.probe_edit_op(None, probe="ops", input="x", value=0.0, region=region)
    expected[0, 0:2, 0:2] = 0.0
    assert torch.equal(probe.inputs["x"], expected) and state["undo"] == 2
    probe_ops.probe_undo_op(None, probe="ops")
    for c in cells:
        expected[tuple(c)] = 7.0
    undone = original.clone()
    for c in cells:
        undone[tuple(c)] = 7.0
    assert torch.equal(probe.inputs["x"], undone)
    state, _ = probe_ops.probe_reset_op(None, probe="ops")
    assert torch.equal(probe.inputs["x"], original) and state["undo"] == 0
    with pytest.raises(ProtocolError, match="no edit to undo"):
        probe_ops.probe_undo_op(None, probe="ops")


def test_refuses_bad_edits_naming_the_problem(probe) -> None:
    with pytest.raises(ProtocolError, match="out of range"):
        probe_ops.probe_edit_op(None, probe="ops", input="x", value=1, cells=[[0, 3, 0]])
    with pytest.raises(ProtocolError, match="3 dimensions"):
        probe_ops.probe_edit_op(None, probe="ops", input="x", value=1, cells=[[0, 0]])
    with pytest.raises(ProtocolError, match="exactly one"):
        probe_ops.probe_edit_op(None, probe="ops", input="x", value=1)
    with pytest.raises(ProtocolError, match="no input 'y'"):
        probe_ops.probe_edit_op(None, probe="ops", input="y", value=1, cells=[[0, 0, 0]])
    with pytest.raises(KeyError, match="no probe named"):
        probe_ops.probe_undo_op(None, probe="missing")


def test_rerun_delta_lists_exactly_the_edited_cells(probe) -> None:
    cells = [[0, 0, 1], [0, 2, 3], [1, 1, 1]]
    probe_ops.probe_edit_op(None, probe="ops", input="x", value=5.0, cells=cells)
    record_id = nopdb_lab.get_probe("ops").rerun().record.id  # what the front end runs
    assert nopdb_lab.store[record_id].kind == "run"
    listed, _ = probe_ops.probe_list_op(None)
    info = next(p for p in listed["probes"] if p["name"] == "ops")
    assert [r["number"] for r in info["runs"]] == [1, 2]
    assert info["runs"][-1]["record"] == record_id and info["runs"][-1]["edited"] == 3
    assert info["inputs"][0]["pending"] == 0
    delta, _ = probe_ops.probe_delta_op(None, probe="ops", input="x", against=1)
    assert delta["count"] == 3 and sorted(delta["indices"]) == sorted(cells)
    assert not delta["truncated"] and delta["run"] == 2
    short, _ = probe_ops.probe_delta_op(None, probe="ops", input="x", against=1, limit=1)
    assert short["count"] == 3 and len(short["indices"]) == 1 and short["truncated"]
    with pytest.raises(ProtocolError, match="no run 9"):
        probe_ops.probe_delta_op(None, probe="ops", input="x", against=9)


class _Recorder:
    def __init__(self) -> None:
        self.pushed: list = []

    def push(self, event) -> None:
        self.pushed.append(event)

    def flush(self) -> None:
        pass


class _FakeService:
    def __init__(self) -> None:
        self.events = _Recorder()


def test_attribute_reports_progress_and_an_interrupt_leaves_the_store(probe) -> None:
    fake = _FakeService()
    service._services.append(fake)
    try:
        record_id = probe_runs.attribute(
            "t1", "ops", method="integrated_gradients", steps=8, internal_batch_size=4
        )
        assert nopdb_lab.store[record_id].kind == "attribution"
        progress = [e for e in fake.events.pushed if e["token"] == "t1"]
        assert progress and progress[-1]["done"] == progress[-1]["total"]
        assert all(e["event"] == "probe_progress" for e in progress)

        before = [r.id for r in nopdb_lab.store]

        def interrupt(event) -> None:
            fake.events.pushed.append(event)
            raise KeyboardInterrupt

        fake.events.push = interrupt  # the stop button during the first pass
        with pytest.raises(KeyboardInterrupt):
            probe_runs.attribute("t2", "ops", method="integrated_gradients", steps=8)
        assert [r.id for r in nopdb_lab.store] == before
    finally:
        service._services.remove(fake)


def test_probe_heatmap_shows_pending_edits(probe) -> None:
    probe_ops.probe_edit_op(None, probe="ops", input="x", value=9.0, cells=[[1, 2, 3]])
    meta, (raw,) = probe_ops.probe_heatmap_op(None, probe="ops", input="x", index={"0": 1})
    plane = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(meta["rows"], -1)
    assert torch.equal(plane, probe.inputs["x"][1])
    assert plane[2, 3] == 9.0 and probe.runs[-1].inputs["x"][1, 2, 3] != 9.0


def test_attribute_an_older_run_and_its_overlay_image() -> None:
    """Attribute… on a run's input attributes that run (run=N); the patch overlay draws
    the map over that run's image input, and says why when there is none."""
    nopdb_lab.store.clear()
    was_enabled = nopdb_lab.store.enabled
    nopdb_lab.store.enable()
    try:
        conv = torch.nn.Conv2d(3, 1, 3)
        img = torch.rand(1, 3, 8, 8)
        p = nopdb_lab.probe("img", lambda x: conv(x).mean(dim=(1, 2, 3)), x=img)
        p.inputs["x"][0, :, 2, 2] = 0.0
        p.rerun()
        first = probe_runs.attribute("t3", "img", method="saliency", run=1)
        att = nopdb_lab.store[first].attribution
        assert att.run == 1
        assert torch.equal(probe_runs.overlay_image(first), img[0])  # run 1's image
        newest = probe_runs.attribute("t4", "img", method="saliency")
        assert torch.equal(probe_runs.overlay_image(newest), p.runs[-1].inputs["x"][0])
        assert not torch.equal(probe_runs.overlay_image(newest), img[0])

        flat = nopdb_lab.probe("flat", lambda x: x.sum(dim=1), x=torch.rand(2, 5))
        flat_att = probe_runs.attribute("t5", "flat", method="saliency")
        with pytest.raises(ValueError, match="no image input"):
            probe_runs.overlay_image(flat_att)
        run_record = flat.runs[-1].record.id
        with pytest.raises(ValueError, match="not an attribution"):
            probe_runs.overlay_image(run_record)
    finally:
        nopdb_lab.store.clear()
        if not was_enabled:
            nopdb_lab.store.disable()
