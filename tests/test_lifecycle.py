"""Tracing is installed only while needed, removed on exit, and coexists with other tools."""

import sys

import pytest

import nopdb_lab as nopdb
from nopdb_lab.tracing.dispatch import DISPATCHER
from tests import sample_code as sc


def test_tracing_is_removed_when_the_block_raises():
    with pytest.raises(KeyError):
        with nopdb.capture_calls(sc.add_one), nopdb.breakpoint(function=sc.add_one, line=5):
            sc.add_one(1)
            raise KeyError("user error")
    assert DISPATCHER.live_handlers == ()


def test_nested_blocks_keep_outer_capture_running():
    with nopdb.capture_calls(sc.add_one) as outer:
        sc.add_one(1)
        with nopdb.capture_calls(sc.add_one) as inner:
            sc.add_one(2)
        sc.add_one(3)
    assert [c.args["x"] for c in outer] == [1, 2, 3]
    assert [c.args["x"] for c in inner] == [2]


@pytest.mark.skipif(nopdb.backend_name() != "settrace", reason="settrace fallback only")
def test_settrace_chains_with_a_trace_function_installed_before():
    lines = []

    def other_tool(frame, event, arg):
        if frame.f_code is sc.unrelated.__code__ or frame.f_code is sc.add_one.__code__:
            lines.append((frame.f_code.co_name, event))
            return other_tool
        return None

    previous = sys.gettrace()  # coverage's, when the suite runs under coverage
    sys.settrace(other_tool)
    try:
        with nopdb.capture_calls(sc.add_one) as calls:
            sc.add_one(1)
            sc.unrelated(1)
        assert sys.gettrace() is other_tool, "the other tool's trace function was not restored"
    finally:
        sys.settrace(previous)
    assert len(calls) == 1
    # the other tool still saw every event of both functions while we were tracing
    assert ("add_one", "call") in lines and ("add_one", "line") in lines
    assert ("add_one", "return") in lines and ("unrelated", "return") in lines


@pytest.mark.skipif(nopdb.backend_name() != "monitoring", reason="sys.monitoring only")
def test_monitoring_leaves_settrace_users_alone_and_frees_its_tool_id():
    seen = []

    def other_tool(frame, event, arg):
        if frame.f_code is sc.add_one.__code__:
            seen.append(event)
            return other_tool
        return None

    sys.settrace(other_tool)
    try:
        with nopdb.capture_calls(sc.add_one) as calls:
            tool_names = [sys.monitoring.get_tool(i) for i in range(6)]
            sc.add_one(1)
    finally:
        sys.settrace(None)
    assert "nopdb_lab" in tool_names
    assert len(calls) == 1 and seen.count("line") == 3


@pytest.mark.skipif(nopdb.backend_name() != "monitoring", reason="sys.monitoring only")
def test_clear_error_when_every_monitoring_tool_id_is_taken():
    taken = [i for i in range(6) if sys.monitoring.get_tool(i) is None]
    for i in taken:
        sys.monitoring.use_tool_id(i, f"other-{i}")
    try:
        with pytest.raises(RuntimeError, match="every sys.monitoring tool id is taken"):
            with nopdb.capture_calls(sc.add_one):
                pass
    finally:
        for i in taken:
            sys.monitoring.free_tool_id(i)
    assert DISPATCHER.live_handlers == ()
    assert not nopdb.get_nopdb()._callbacks, "the failed capture stayed registered"


@pytest.mark.skipif(nopdb.backend_name() != "monitoring", reason="sys.monitoring only")
def test_a_pattern_scope_added_later_sees_code_disabled_for_an_earlier_one():
    with nopdb.capture_calls("add_one") as first:
        sc.unrelated(1)  # classified as not matching: its PY_START gets DISABLEd
    with nopdb.capture_calls("unrelated") as second:
        sc.unrelated(2)
    assert list(first) == [] and [c.args["x"] for c in second] == [2]
