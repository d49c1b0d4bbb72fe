import gc
import sys

import pytest

from nopdb_lab.tracing.dispatch import DISPATCHER


@pytest.fixture(autouse=True)
def no_tracing_leaks():
    """Every test must leave no live handler and no trace function of ours behind."""
    before = sys.gettrace()
    yield
    assert DISPATCHER.live_handlers == (), "a capture or breakpoint was left enabled"
    assert sys.gettrace() is before, "the trace function was not restored"
    if sys.version_info >= (3, 12):
        tools = [sys.monitoring.get_tool(i) for i in range(6)]
        assert "nopdb_lab" not in tools, "the sys.monitoring tool id was not freed"


@pytest.fixture
def no_gc():
    """Objects must be freed by reference counting alone, as NoPdb's are."""
    if sys.version_info < (3, 11) and sys.gettrace() is not None:
        # under another tracer (coverage), CPython 3.10 snapshots each traced frame's
        # locals into frame.f_locals on every Python-level trace event, and a snapshot
        # taken before `del` keeps the values alive until the next one
        pytest.skip("3.10 frame-locals snapshots under a tracer keep deleted locals")
    gc.collect()
    gc.disable()
    yield
    gc.enable()
