"""A breakpoint's stacks in a recursion: linear time, exact, and no frame held after it ends.

A hit in a recursion walks its frames only up to the nearest frame an earlier hit of
the same recursion was in that still runs (an *open* frame, see
``nopdb_lab/shared_stacks.py``); the exits of those frames are watched while they run.
These tests check what a user relies on: every hit's stack is the real one (compared
with the stack the traced function reads itself at the line), the work per hit does not
grow with the depth (counted in frames, not timed), and no frame, with its locals,
outlives its call because of the breakpoint. They run on every backend the CI matrix
has (sys.monitoring and sys.settrace).
"""

import importlib
import sys
import threading
import weakref

import pytest

import nopdb_lab as nopdb
from nopdb_lab import shared_stacks
from nopdb_lab.call_info import raw_stack
from nopdb_lab.tracing.dispatch import DISPATCHER

# the module (``nopdb_lab.breakpoint`` is also the name of the function)
breakpoint_module = importlib.import_module("nopdb_lab.breakpoint")

#: the stacks the traced functions read themselves, at the lines the breakpoints are on
seen = []


class Marker:
    """A local whose death tells that its frame was freed."""


@pytest.fixture(autouse=True)
def fresh():
    seen.clear()
    old = sys.getrecursionlimit()
    yield
    sys.setrecursionlimit(old)
    seen.clear()
    assert DISPATCHER.exit_watchers == {}, "exit watchers left behind"


@pytest.fixture
def open_early(monkeypatch):
    """Open frames in recursions of any depth (by default only past 64 frames walked),
    so that small recursions go through every path of the open frames."""
    monkeypatch.setattr(shared_stacks, "OPEN_FROM_DEPTH", 0)


def linear_bound(hits):
    """Frames a recursion's hits may walk: up to OPEN_FROM_DEPTH frames for each level
    until the stack is that deep, then about one a hit."""
    return 2 * hits + shared_stacks.OPEN_FROM_DEPTH**2


def down(n):
    if n == 0:
        return 0
    seen.append(raw_stack(sys._getframe()))  # hit: down
    return down(n - 1) + 1


def tree(n, markers):
    marker = Marker()
    markers.append(weakref.ref(marker))
    seen.append(raw_stack(sys._getframe()))  # hit: tree enter
    if n <= 1:
        return 1
    left = tree(n - 1, markers)
    right = tree(n - 2, markers)
    for _ in range(2):
        seen.append(raw_stack(sys._getframe()))  # hit: tree loop
    return left + right


def hits_in_order(*bps):
    return sorted((h for bp in bps for h in bp.hits), key=lambda h: h.id)


def assert_exact(hits, expected):
    assert len(hits) == len(expected)
    for i, (hit, stack) in enumerate(zip(hits, expected)):
        assert hit.raw_stack == stack, f"hit {i} has the wrong stack"


def break_at_every_level(depth):
    """A breakpoint hit at every level of ``down(depth)``, its stacks checked."""
    sys.setrecursionlimit(depth + 500)
    with nopdb.breakpoint(
        function=down, line="seen.append(raw_stack(sys._getframe()))  # hit: down"
    ) as bp:
        assert down(depth) == depth
    assert_exact(list(bp.hits), seen)
    return bp


def test_a_hit_at_every_level_walks_each_frame_once():
    depth = 3_000
    bp = break_at_every_level(depth)
    # each hit walks up to the level above it: about one frame a hit. Walking every
    # hit's whole stack would be ~4.5 million frames.
    assert bp._stacks.frames_walked <= linear_bound(depth), bp._stacks.frames_walked
    assert bp._stacks.open_frames == 0


def test_stacks_are_exact_when_levels_call_twice_and_hit_in_loops(no_gc, open_early):
    markers = []
    enter = nopdb.breakpoint(
        function=tree, line="seen.append(raw_stack(sys._getframe()))  # hit: tree enter"
    )
    loop = nopdb.breakpoint(
        function=tree, line="seen.append(raw_stack(sys._getframe()))  # hit: tree loop"
    )
    with enter, loop:
        assert tree(12, markers) == 233
        # no frame outlived its call (the breakpoints still on): every level's locals
        # are gone, without the collector
        assert all(ref() is None for ref in markers)
        assert enter._stacks.open_frames == loop._stacks.open_frames == 0
    assert_exact(hits_in_order(enter, loop), seen)


def unwinding(n, markers, fail_at):
    marker = Marker()
    markers.append(weakref.ref(marker))
    seen.append(raw_stack(sys._getframe()))  # hit: unwinding
    if n == fail_at:
        raise ValueError(n)
    if n == 0:
        return 0
    if n % 50 == 0:
        try:
            return unwinding(n - 1, markers, fail_at) + 1
        except ValueError:
            # the levels below unwound: the recursion goes on from here
            return unwinding(n - 2, markers, -1) + 1
    return unwinding(n - 1, markers, fail_at) + 1


def test_frames_an_exception_unwinds_are_exact_and_freed(no_gc, open_early):
    markers = []
    sys.setrecursionlimit(1_500)
    with nopdb.breakpoint(
        function=unwinding, line="seen.append(raw_stack(sys._getframe()))  # hit: unwinding"
    ) as bp:
        assert unwinding(400, markers, fail_at=120) > 0
        with pytest.raises(ValueError):
            unwinding(49, markers, fail_at=10)  # unwinds from level 10 to the top
        assert bp._stacks.open_frames == 0
    assert_exact(list(bp.hits), seen)
    assert all(ref() is None for ref in markers)
    assert bp._stacks.frames_walked < 3 * len(seen) + 10 * len(seen[0])


def watched_twice(n, markers):
    marker = Marker()
    markers.append(weakref.ref(marker))
    seen.append(raw_stack(sys._getframe()))  # hit: twice
    return 0 if n == 0 else watched_twice(n - 1, markers) + 1


def test_no_frame_is_held_after_a_recursion(no_gc, open_early):
    markers = []
    line = "seen.append(raw_stack(sys._getframe()))  # hit: twice"
    with nopdb.breakpoint(function=watched_twice, line=line) as bp:
        for _ in range(2):
            markers.clear()
            watched_twice(200, markers)
            # the breakpoint is still on: its open frames closed as they returned
            assert bp._stacks.open_frames == 0
            assert all(ref() is None for ref in markers)
            assert DISPATCHER.exit_watchers == {}


def opened(n, markers, at_bottom):
    marker = Marker()
    markers.append(weakref.ref(marker))
    seen.append(raw_stack(sys._getframe()))  # hit: opened
    if n == 0:
        at_bottom()
        return 0
    return opened(n - 1, markers, at_bottom)


def test_removing_the_breakpoint_mid_recursion_releases_its_open_frames(no_gc, open_early):
    markers = []
    open_at_bottom = []
    bp = nopdb.breakpoint(
        function=opened, line="seen.append(raw_stack(sys._getframe()))  # hit: opened"
    )

    def at_bottom():
        open_at_bottom.append(bp._stacks.open_frames)
        bp.disable()  # 100 frames are open: their exits will not be seen

    with bp:
        opened(100, markers, at_bottom)
    assert open_at_bottom == [100]  # every level below the first was open
    assert bp._stacks.open_frames == 0
    assert all(ref() is None for ref in markers)
    assert_exact(list(bp.hits), seen)


def entered(n):
    seen.append(raw_stack(sys._getframe()))  # hit: entered
    return 0 if n == 0 else entered(n - 1) + 1


def test_a_function_breakpoint_in_a_recursion_is_exact_and_linear():
    """A breakpoint on the call (no line) fires before the first line runs."""
    depth = 1_000
    sys.setrecursionlimit(depth + 500)
    with nopdb.breakpoint(function=entered) as bp:
        assert entered(depth) == depth
    hits = list(bp.hits)
    assert len(hits) == len(seen) == depth + 1
    for hit, stack in zip(hits, seen):
        # the call's event comes before the line: the same stack at the def's first line
        assert hit.raw_stack[:-1] == stack[:-1]
        assert hit.raw_stack[-1][2] == "entered"
    assert bp._stacks.frames_walked <= linear_bound(depth)
    assert bp._stacks.open_frames == 0


def gen_down(n):
    if n:
        yield from gen_down(n - 1)
    for _ in range(2):
        seen.append(raw_stack(sys._getframe()))  # hit: gen
        yield n


def take_here(it):
    return next(it)


def take_there(it):
    return next(it)


def test_a_recursive_generator_gets_exact_stacks(open_early):
    """A generator's callers change each time it resumes: its frames are never open."""
    line = "seen.append(raw_stack(sys._getframe()))  # hit: gen"
    with nopdb.breakpoint(function=gen_down, line=line) as bp:
        it = gen_down(30)
        # resumed from two places in turn: the same frame hit twice, called differently
        values = [take_here(it) if i % 2 else take_there(it) for i in range(62)]
        assert values == [n for n in range(31) for _ in range(2)]
        assert bp._stacks.open_frames == 0
    assert_exact(list(bp.hits), seen)


seen_by_thread = {}


def down_in_thread(n):
    if n == 0:
        return 0
    seen_by_thread[threading.current_thread().name].append(raw_stack(sys._getframe()))  # hit
    return down_in_thread(n - 1) + 1


def test_threads_recursing_under_one_breakpoint_get_their_own_stacks(monkeypatch, open_early):
    monkeypatch.setattr(sys, "getswitchinterval", sys.getswitchinterval)
    old_interval = sys.getswitchinterval()
    sys.setrecursionlimit(2_000)

    def worker():
        seen_by_thread[threading.current_thread().name] = []
        for _ in range(4):
            down_in_thread(400)

    line = (
        "seen_by_thread[threading.current_thread().name].append(raw_stack(sys._getframe()))  # hit"
    )
    sys.setswitchinterval(1e-5)  # switch threads often, in the middle of recursions
    try:
        with nopdb.breakpoint(function=down_in_thread, line=line) as bp:
            threads = [threading.Thread(target=worker, name=f"recursing-{i}") for i in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(old_interval)
        names = list(seen_by_thread)
    try:
        hits = list(bp.hits)
        assert len(hits) == 3 * 4 * 400
        for name in names:
            assert_exact([h for h in hits if h.thread == name], seen_by_thread[name])
        assert bp._stacks.open_frames == 0
        # each thread keeps its own open frames: a switch to another thread in the middle
        # of a recursion costs no walk of the whole stack (two per recursion, then one
        # frame a hit)
        base = len(seen_by_thread[names[0]][0]) - 1
        assert bp._stacks.frames_walked <= len(hits) + 3 * 4 * 2 * (base + 2)
    finally:
        seen_by_thread.clear()


def test_the_tree_starting_over_mid_recursion_keeps_stacks_exact(monkeypatch, open_early):
    monkeypatch.setattr(breakpoint_module, "_MAX_SHARED_NODES", 40)
    bp = break_at_every_level(300)
    assert bp._stacks.open_frames == 0


def exits_probe(n, fail):
    x = n  # the probe's breakpoint line
    if fail:
        raise ValueError(x)
    return x


def test_the_dispatcher_reports_exits_of_watched_code_only_while_watched():
    """The engine's part: a return and an exception leaving, each once; then nothing."""
    exited = []

    def on_exit(frame):
        exited.append((frame.f_code.co_name, frame.f_locals["n"]))

    code = exits_probe.__code__
    with nopdb.breakpoint(function=exits_probe, line="x = n  # the probe's breakpoint line"):
        exits_probe(0, False)
        DISPATCHER.watch_exits(code, on_exit)
        try:
            exits_probe(1, False)
            with pytest.raises(ValueError):
                exits_probe(2, True)
        finally:
            DISPATCHER.unwatch_exits(code, on_exit)
        exits_probe(3, False)
    assert exited == [("exits_probe", 1), ("exits_probe", 2)]
