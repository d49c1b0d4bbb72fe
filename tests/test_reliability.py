"""The reliability guarantees of docs/reliability.md: memory, never silent, set-up checks.

Each test would have caught the bug it is named after (issue 16).
"""

import os
import signal
import sys
import threading
import time
import weakref

import pytest

import nopdb_lab as nopdb
from nopdb_lab.analysis.summary import summarize
from nopdb_lab.breakpoint import ActionError, Evicted
from nopdb_lab.capture_store import CaptureStore

np = pytest.importorskip("numpy")


class Payload:
    """A weak-referenceable stand-in for a big captured value."""

    def __init__(self, n=0):
        self.data = bytearray(n)


@pytest.fixture
def store():
    s = CaptureStore(budget=3_000_000)
    s.enable()
    yield s
    s.disable()
    s.clear()


# -- memory ------------------------------------------------------------------------------


def keeps_a_block(i):
    block = np.full(250_000, float(i))  # noqa: F841 - 2 MB the breakpoint keeps
    return i


def test_hits_with_keep_locals_count_against_the_budget_and_are_released(store, no_gc):
    bp = nopdb.breakpoint(function=keeps_a_block, line="return i", keep_locals=True)
    values = bp.eval("block")
    refs = []
    with bp:
        for i in range(6):
            keeps_a_block(i)
            refs.append(weakref.ref(bp.hits[-1].locals["block"]))
    assert store.nbytes <= store.budget
    kept = [h for h in bp.hits if not h.evicted]
    assert [h.id for h in kept] == store.ids() and len(kept) == 1
    assert all(r() is None for r in refs[:-1]), "evicted hits still hold their locals"
    assert refs[-1]() is not None and kept[0].locals["block"][0] == 5.0
    # the bp.eval list lost the evicted values too, and says so
    assert all(isinstance(v, Evicted) for v in values[:-1]) and values[-1][0] == 5.0
    assert "evicted" in repr(values[0]) and bp.hits[0].evals == {}
    store.clear()
    assert refs[-1]() is None and bp.hits[-1].locals is None


_refs = []


def raises_in_action(n):
    big = Payload(n)
    _refs.append(weakref.ref(big))
    return len(big.data)


def test_an_action_error_keeps_text_and_stack_not_frames(no_gc):
    bp = nopdb.breakpoint(function=raises_in_action, line="return len(big.data)")
    bp.exec("helper_that_fails(big)")
    with bp:
        assert raises_in_action(1000) == 1000
    (error,) = bp.hits[0].errors
    assert isinstance(error, ActionError) and error.message.startswith("NameError")
    assert "helper_that_fails" in error.traceback and error.stack[-1].line is not None
    assert error.exception.__traceback__ is None
    assert _refs[-1]() is None, "the error keeps the traced frame's locals alive"


def captured_value(x):
    return x


def test_dropping_a_capture_frees_what_it_captured_at_once(no_gc):
    value = Payload()
    with nopdb.capture_calls(captured_value) as calls:
        captured_value(value)
    ref, capture_ref = weakref.ref(value), weakref.ref(calls)
    del value, calls
    assert capture_ref() is None, "the capture is kept alive by a reference cycle"
    assert ref() is None


def test_dropping_a_breakpoint_frees_its_hits_at_once(no_gc):
    value = Payload()
    with nopdb.breakpoint(function=captured_value, line="return x", keep_locals=True) as bp:
        captured_value(value)
    hit = weakref.ref(bp.hits[0])
    assert bp.hits[0].breakpoint is bp
    ref = weakref.ref(value)
    del value, bp
    assert hit() is None and ref() is None


def test_a_dropped_tensor_is_freed_at_once(no_gc):
    torch = pytest.importorskip("torch")
    t = torch.ones(1000)
    with nopdb.capture_call(captured_value, snapshot=True) as call:
        captured_value(t)
    ref = weakref.ref(call.return_value)
    del call
    assert ref() is None


def test_captured_gpu_memory_is_freed_when_the_capture_is_dropped(no_gc):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    before = torch.cuda.memory_allocated()
    x = torch.ones(1 << 20, device="cuda")
    with nopdb.capture_call(captured_value, snapshot="cuda") as call:
        captured_value(x)
    del x
    assert torch.cuda.memory_allocated() > before  # the capture's copy
    del call
    assert torch.cuda.memory_allocated() == before


def fails_deep(n):
    block = np.ones(n)  # noqa: F841 - kept alive by the exception's traceback
    raise ValueError("deep")


def fails(n):
    return fails_deep(n)


@pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="before 3.12 an exception gets its __traceback__ only once caught, after the "
    "record was sized",
)
def test_a_captured_exception_counts_what_its_traceback_keeps(store):
    with nopdb.capture_calls(fails) as calls:
        with pytest.raises(ValueError):
            fails(100_000)
    assert store.size_of(calls[0].id) > 800_000


def small(x):
    y = [x] * 3
    return y


def test_records_without_tensors_are_counted_and_capped():
    s = CaptureStore(budget=1 << 40, max_records=50)
    s.enable()
    try:
        with nopdb.capture_calls(small):
            for i in range(120):
                small(i)
    finally:
        s.disable()
    assert len(s) == 50 and s.evictions
    sizes = [s.size_of(i) for i in s.ids()]
    assert all(size >= 1024 for size in sizes), "a record without tensors counted 0 bytes"
    # a bigger python value counts more
    s2 = CaptureStore()
    s2.enable()
    try:
        with nopdb.capture_calls(small) as calls:
            small("x" * 100_000)
    finally:
        s2.disable()
    assert s2.size_of(calls[0].id) > 100_000


def test_summaries_stream_in_chunks_and_match_numpy(monkeypatch):
    import tracemalloc

    from nopdb_lab.analysis import summary

    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 2500)).astype(np.float32)  # 4 MB; float64 copy: 8 MB
    a[3, 7] = np.nan
    a[9, 9] = np.inf
    strided = a.T[::3]
    monkeypatch.setattr(summary, "CHUNK_ELEMENTS", 50_000)
    for value in (a, strided):
        tracemalloc.start()
        got = summarize(value)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 2_000_000, f"summary allocated {peak} bytes"
        x = value.astype(np.float64)
        finite = x[np.isfinite(x)]
        assert got["nan"] == int(np.isnan(x).sum()) and got["inf"] == int(np.isinf(x).sum())
        assert got["min"] == pytest.approx(finite.min()) and got["max"] == pytest.approx(
            finite.max()
        )
        assert got["mean"] == pytest.approx(finite.mean(), abs=1e-9)
        assert got["std"] == pytest.approx(finite.std(), rel=1e-9)


def test_tensor_summary_matches_torch():
    torch = pytest.importorskip("torch")
    from nopdb_lab.analysis import summary

    t = torch.randn(300, 700, dtype=torch.float16)
    t[0, 0] = float("nan")
    old, summary.CHUNK_ELEMENTS = summary.CHUNK_ELEMENTS, 10_000
    try:
        got = summarize(t[:, ::2])
    finally:
        summary.CHUNK_ELEMENTS = old
    ref = t[:, ::2].double()
    finite = ref[torch.isfinite(ref)]
    assert got["nan"] == 1 and got["inf"] == 0
    assert got["mean"] == pytest.approx(finite.mean().item(), abs=1e-9)
    assert got["std"] == pytest.approx(finite.std(unbiased=False).item(), rel=1e-9)


def test_tensor_request_size_is_checked_before_any_copy():
    torch = pytest.importorskip("torch")
    from nopdb_lab.analysis.summary import check_payload_size

    huge = torch.zeros(1).expand(100_000, 10_000)  # 4 GB as float32, no memory behind it
    with pytest.raises(ValueError, match=r"slice of shape \[100000, 10000\] is 4000 MB"):
        check_payload_size(huge, [], "float32", 64 << 20)
    check_payload_size(huge, [0], "float32", 64 << 20)  # one row fits


def uses_mapped(path, n):
    mapped = np.memmap(path, dtype=np.float32, mode="w+", shape=(n,))
    wrapped = np.frombuffer(bytes(4096), dtype=np.uint8)[:16]
    return float(mapped.sum()) + float(wrapped.sum())


def test_memory_mapped_and_buffer_backed_arrays_are_stored(store, tmp_path):
    with nopdb.capture_calls(uses_mapped) as calls:
        uses_mapped(str(tmp_path / "m.bin"), 100_000)
    (call,) = calls
    assert store.ids() == [call.id]
    assert store.size_of(call.id) >= 400_000 + 4096  # the mapping and the whole buffer
    mapped = summarize(call.locals["mapped"])
    assert mapped["type"] == "array" and mapped["numel"] == 100_000 and mapped["max"] == 0.0
    assert summarize(call.locals["wrapped"])["numel"] == 16


def recurse(n):
    if n == 0:
        return 0
    return recurse(n - 1) + 1


def test_deep_recursion_capture_is_linear(monkeypatch):
    import tracemalloc

    depth = 2000
    monkeypatch.setattr(sys, "getrecursionlimit", sys.getrecursionlimit)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 500)
    try:
        tracemalloc.start()
        with nopdb.capture_calls(recurse) as calls:
            assert recurse(depth) == depth
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        sys.setrecursionlimit(old)
    assert len(calls) == depth + 1
    # quadratic: ~2 million stack entries (> 100 MB); linear: a few KB per level
    assert peak < depth * 6_000, f"{peak / 1e6:.0f} MB for {depth} levels"
    innermost, outermost = calls[0], calls[-1]
    inner_stack = innermost.raw_stack
    assert len(inner_stack) == len(outermost.raw_stack) + depth
    assert inner_stack[: len(outermost.raw_stack) - 1] == outermost.raw_stack[:-1]
    # each level's caller is recorded at the recursive call's line, not the def line
    assert inner_stack[-2][1] == recurse.__code__.co_firstlineno + 3
    assert [f.name for f in innermost.stack][-3:] == ["recurse"] * 3


def recurse_hit(n):
    if n == 0:
        return 0
    level = n  # a breakpoint hit at every level
    return recurse_hit(n - 1) + level


def _breakpoint_recursion_bytes(depth):
    import tracemalloc

    tracemalloc.start()
    with nopdb.breakpoint(
        function=recurse_hit, line="level = n  # a breakpoint hit at every level"
    ) as bp:
        assert recurse_hit(depth) == depth * (depth + 1) // 2
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return bp, held


def test_a_breakpoint_hit_at_every_level_of_a_deep_recursion_is_linear():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(5_000)
    try:
        small_bp, small = _breakpoint_recursion_bytes(1_000)
        del small_bp
        bp, large = _breakpoint_recursion_bytes(2_000)
    finally:
        sys.setrecursionlimit(old)
    # twice the depth holds about twice the memory (each hit's stack shares the outer
    # levels with the hit one level up); quadratic stacks would hold four times as much
    assert large / small < 2.6, (
        f"{small / 1e6:.1f} MB for 1,000 levels, {large / 1e6:.1f} MB for 2,000"
    )
    hits = list(bp.hits)
    assert len(hits) == 2_000
    outer, inner = hits[0], hits[-1]
    # the stacks read as before: outermost first, the hit's own line last, every caller
    # at the recursive call's line
    assert len(inner.raw_stack) == len(outer.raw_stack) + 1_999
    assert inner.raw_stack[: len(outer.raw_stack) - 1] == outer.raw_stack[:-1]
    call_line = recurse_hit.__code__.co_firstlineno + 4
    hit_line = call_line - 1
    assert inner.raw_stack[-1][1] == hit_line and outer.raw_stack[-1][1] == hit_line
    assert {frame[1] for frame in inner.raw_stack[-2_000:-1]} == {call_line}
    # and the time: each hit walked up to the level above it (a frame or two), not its
    # whole stack (two million frames); the exact stacks: tests/test_recursion_stacks.py
    assert bp._stacks.frames_walked < 2 * 2_000 + 64**2
    assert [f.name for f in inner.stack][-3:] == ["recurse_hit"] * 3
    assert inner.stack[-1].line == "level = n  # a breakpoint hit at every level"


def test_a_breakpoint_in_a_deep_recursion_keeps_the_recursion_headroom():
    """A recursion that fits under the limit without the breakpoint fits with it."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(5_200)
    try:
        with nopdb.breakpoint(
            function=recurse_hit, line="level = n  # a breakpoint hit at every level"
        ) as bp:
            assert recurse_hit(5_000) == 5_000 * 5_001 // 2
    finally:
        sys.setrecursionlimit(old)
    assert bp.hit_count == 5_000


def test_capturing_near_the_recursion_limit_does_not_raise():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(800)
    try:
        with nopdb.capture_calls(recurse) as calls:
            assert recurse(700) == 700
    finally:
        sys.setrecursionlimit(old)
    assert len(calls) == 701


# -- never silent, never stale -------------------------------------------------------------


def ticker(n, at_5):
    total = 0
    for i in range(n):
        total += i
        if i == 5:
            at_5()
    return total


def test_a_removed_breakpoint_stops_at_once_in_a_running_frame():
    bp = nopdb.breakpoint(function=ticker, line="total += i")
    bp.exec("total += 0")
    with bp:
        assert ticker(20, bp.disable) == sum(range(20))
    assert bp.hit_count == 6


class Spinner:
    def __init__(self):
        self.n = 0
        self.stop = False

    def spin(self):
        while not self.stop:
            self.n += 1


def _wait_for(predicate):
    for _ in range(20_000):
        if predicate():
            return
        time.sleep(0.001)
    raise AssertionError("timed out")


def test_a_removed_breakpoint_stops_at_once_in_another_thread():
    spinner = Spinner()
    with nopdb.breakpoint(function=Spinner.spin, line="self.n += 1") as bp:
        thread = threading.Thread(target=spinner.spin)
        thread.start()
        try:
            _wait_for(lambda: bp.hit_count >= 10)
        except BaseException:
            spinner.stop = True
            raise
    try:
        after_exit, n = bp.hit_count, spinner.n
        _wait_for(lambda: spinner.n >= n + 10_000)
        assert bp.hit_count <= after_exit + 1  # one hit may have been in flight
    finally:
        spinner.stop = True
        thread.join()


def resilient():
    caught = []
    for _ in range(3):
        try:
            yield len(caught)
        except ValueError as exc:
            caught.append(str(exc))
    return caught


def test_a_generator_that_catches_a_thrown_exception_goes_on():
    with nopdb.capture_calls(resilient) as calls:
        g = resilient()
        assert next(g) == 0
        assert g.throw(ValueError("again")) == 1  # caught: yields again at the same yield
        assert next(g) == 1
        with pytest.raises(StopIteration):
            next(g)
    (call,) = calls
    assert call.exception is None and call.return_value == ["again"]
    assert call.yields == [0, 1, 1]


def test_a_generator_that_does_not_catch_records_the_exception():
    with nopdb.capture_calls(resilient) as calls:
        g = resilient()
        next(g)
        with pytest.raises(KeyError):
            g.throw(KeyError("out"))
    (call,) = calls
    assert isinstance(call.exception, KeyError) and call.yields == [0]


# -- actions never end the program -------------------------------------------------------


def adds(x):
    y = x + 1
    return y


@pytest.mark.parametrize(
    "kind, code, expected",
    [
        ("eval", "exit(3)", "SystemExit"),
        ("exec", "raise KeyboardInterrupt", "KeyboardInterrupt"),
        ("exec", "raise GeneratorExit", "GeneratorExit"),
        ("cond", "__import__('sys').exit()", "SystemExit"),
    ],
)
def test_exit_and_interrupt_raised_by_an_action_are_recorded(kind, code, expected):
    bp = nopdb.breakpoint(function=adds, line="return y", cond=code if kind == "cond" else None)
    if kind == "eval":
        results = bp.eval(code)
    elif kind == "exec":
        bp.exec(code)
    with bp:
        assert adds(1) == 2 and adds(2) == 3
    assert len(bp.hits) == 2
    assert all(h.errors[0].message.startswith(expected) for h in bp.hits)
    if kind == "eval":
        assert all(isinstance(r, ActionError) for r in results)


def test_a_real_ctrl_c_during_an_action_still_interrupts():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    bp = nopdb.breakpoint(function=adds, line="return y")
    # the action is slow when the user presses Ctrl-C (the signal, not a raise)
    bp.exec("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)")
    before = signal.getsignal(signal.SIGINT)
    previous = sys.gettrace()  # coverage's, when the suite runs under coverage

    def other_tool(frame, event, arg):
        return None

    sys.settrace(other_tool)
    try:
        with pytest.raises(KeyboardInterrupt):
            with bp:
                adds(1)
        # CPython drops a thread's trace function when an exception escapes it: the
        # tool traced before still gets its tracing back
        assert sys.gettrace() is other_tool
    finally:
        sys.settrace(previous)
    assert signal.getsignal(signal.SIGINT) is before


# -- bad input fails at set-up ----------------------------------------------------------


def test_bad_set_up_arguments_raise_errors_naming_them():
    bp = nopdb.breakpoint(function=adds, line="return y")
    try:
        with pytest.raises(TypeError, match="variables must be a dict"):
            bp.eval("y", variables=[("a", 1)])
        with pytest.raises(TypeError, match="variables must be a dict"):
            bp.exec("y", variables="a")
        with pytest.raises(TypeError, match="debugger_cls must be a bdb.Bdb subclass"):
            bp.debug(debugger_cls=int)
    finally:
        bp.disable()
    for bad in (2.5, True, "3"):
        with pytest.raises(TypeError, match="max_hits must be a positive integer"):
            nopdb.breakpoint(function=adds, line="return y", max_hits=bad)
    with pytest.raises(ValueError, match="max_hits must be a positive integer"):
        nopdb.breakpoint(function=adds, line="return y", max_hits=0)
    with pytest.raises(ValueError, match="snapshot='gpu'"):
        nopdb.capture_call(adds, snapshot="gpu")


def test_a_device_this_process_cannot_use_is_refused_at_set_up():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="snapshot='cuda'.*cannot use that device"):
        nopdb.capture_calls(adds, snapshot="cuda")


def test_settrace_backend_is_refused_on_313(monkeypatch):
    from nopdb_lab.tracing.backends import backend_name

    monkeypatch.setenv("NOPDB_LAB_BACKEND", "settrace")
    if sys.version_info >= (3, 13):
        with pytest.raises(RuntimeError, match="settrace is not supported on Python 3.13"):
            backend_name()
    else:
        assert backend_name() == "settrace"


def test_reentering_a_capture_raises_and_leaves_no_tracing():
    capture = nopdb.capture_calls(adds)
    with capture:
        with pytest.raises(RuntimeError, match="already in use by a `with` block"):
            with capture:
                pass
        adds(1)
    assert not nopdb.get_nopdb().started
    assert len(capture) == 1
    with nopdb.capture_calls(adds) as later:
        pass
    adds(2)
    assert len(later) == 0


# -- NoPdb compatibility -------------------------------------------------------------------


class K:
    @classmethod
    def cm(cls, x):
        return x


class KSub(K):
    pass


def test_a_classmethod_capture_matches_only_its_class_like_nopdb():
    with nopdb.capture_calls(K.cm) as calls:
        K.cm(1)
        KSub.cm(2)
    assert [c.args["x"] for c in calls] == [1]
    with nopdb.capture_calls(K.cm.__func__) as every:  # the opt-in: the plain function
        K.cm(1)
        KSub.cm(2)
    assert [c.args["x"] for c in every] == [1, 2]


def test_a_classmethod_capture_matches_nopdbs():
    reference = pytest.importorskip("nopdb")
    with reference.capture_calls(K.cm) as theirs:
        K.cm(1)
        KSub.cm(2)
    assert [c.args["x"] for c in theirs] == [1]


def test_line_text_in_code_without_source_says_the_source_cannot_be_read():
    namespace = {}
    exec(compile("def f(x):\n    y = x\n    return y\n", "<string>", "exec"), namespace)
    with pytest.raises(ValueError, match="source of <string> cannot be read"):
        nopdb.breakpoint(function=namespace["f"], line="y = x")


def test_user_values_never_end_the_process():
    from nopdb_lab.jupyter.user_values import ExpressionError, evaluate_image, evaluate_labels

    class Exits:
        def __len__(self):
            raise SystemExit(1)

    for expression in ("exit()", "__import__('sys').exit(2)", "Exits()"):
        with pytest.raises(ExpressionError):
            evaluate_labels(expression, {"Exits": Exits})
        with pytest.raises(ExpressionError):
            evaluate_image(expression, {"Exits": Exits})
    assert os.getpid()  # still here
