import asyncio
import functools
import pathlib
import threading
import traceback

import pytest

import nopdb_lab as nopdb
from tests import sample_code as sc


def test_capture_call_keeps_last_call_like_nopdb_readme():
    with nopdb.capture_call(sc.add_one) as call:
        sc.caller(1)
    assert call.name == "add_one"
    assert dict(call.args) == {"x": 2}
    assert call.return_value == 6
    assert call.locals == {"x": 2, "y": 3, "z": 6}
    assert call.file == sc.__file__
    assert repr(call) == "CallCapture(name='add_one', args=OrderedDict(x=2), return_value=6)"
    assert isinstance(call.stack, traceback.StackSummary)
    assert [f.name for f in call.stack[-2:]] == ["caller", "add_one"]


def test_capture_calls_lists_calls_in_return_order_with_ids_and_times():
    with nopdb.capture_calls(sc.add_one) as calls:
        sc.caller(1)
    assert [c.args["x"] for c in calls] == [1, 2]
    assert [c.return_value for c in calls] == [4, 6]
    assert calls[0].id < calls[1].id
    for c in calls:
        assert c.qualname == "add_one" and c.lineno == 4
        assert c.start_time <= c.end_time
        assert c.kind == "call" and c.thread == threading.current_thread().name


def test_print_stack_matches_the_call_site(capsys):
    with nopdb.capture_call(sc.add_one) as call:
        sc.caller(5)
    call.print_stack()
    out = capsys.readouterr().out
    assert "in caller\n    return add_one(x) + add_one(x + 1)" in out
    assert out.rstrip().endswith("def add_one(x):")


def test_recursive_calls_are_each_captured_innermost_first():
    with nopdb.capture_calls(sc.fib) as calls:
        assert sc.fib(4) == 3
    assert len(calls) == 9  # fib(4) makes 9 calls
    assert calls[-1].args["n"] == 4 and calls[-1].return_value == 3
    assert calls[0].args["n"] in (0, 1)


def test_nested_calls_of_different_functions_both_captured():
    with nopdb.capture_calls(sc.caller) as outer, nopdb.capture_calls(sc.add_one) as inner:
        sc.caller(0)
    assert len(outer) == 1 and len(inner) == 2
    assert outer[0].return_value == inner[0].return_value + inner[1].return_value


def test_exception_is_recorded_and_still_propagates():
    with nopdb.capture_calls(sc.boom) as calls:
        with pytest.raises(ValueError, match="KABOOM"):
            sc.boom("kaboom")
    (call,) = calls
    assert isinstance(call.exception, ValueError)
    assert call.return_value is None
    assert call.locals["local_before_raise"] == "KABOOM"


def test_generator_is_one_call_with_its_yields_and_return_value():
    with nopdb.capture_calls(sc.countdown) as calls:
        gen = sc.countdown(5)
        assert next(gen) == 5
        assert gen.send(2) == 3
        assert list(gen) == [2, 1]
    (call,) = calls
    assert call.args == {"n": 5}
    assert call.yields == [5, 3, 2, 1]
    assert call.return_value == "liftoff"


def test_generator_closed_early_records_generator_exit():
    # (CPython 3.13 skips running a generator closed outside any try block, reporting
    # no event at all; with cleanup code the frame runs on every version.)
    log = []
    with nopdb.capture_calls(sc.stream_with_cleanup) as calls:
        gen = sc.stream_with_cleanup("abc", log)
        assert next(gen) == "a"
        gen.close()
    assert log == ["closed"]
    assert isinstance(calls[0].exception, GeneratorExit)
    assert calls[0].yields == ["a"]


def test_coroutine_is_captured():
    with nopdb.capture_calls(sc.fetch) as calls:
        assert asyncio.run(sc.fetch(21)) == 42
    assert calls[0].return_value == 42 and calls[0].locals["doubled"] == 42


def test_closure_inner_function_captured_with_free_variables():
    counter = sc.make_counter(3)
    with nopdb.capture_calls(counter) as calls:
        counter()
        counter()
    assert [c.return_value for c in calls] == [3, 6]
    assert calls[1].locals["increment"] == 3


def test_bound_method_matches_only_its_instance_class_function_matches_all():
    alice, bob = sc.Greeter("alice"), sc.Greeter("bob")
    with (
        nopdb.capture_calls(alice.greet) as only_alice,
        nopdb.capture_calls(sc.Greeter.greet) as everyone,
    ):
        alice.greet()
        bob.greet("?")
    assert [c.return_value for c in only_alice] == ["hello alice!"]
    assert [c.return_value for c in everyone] == ["hello alice!", "hello bob?"]
    assert everyone[0].qualname == "Greeter.greet"


def test_callable_instance_traces_its_call_method_for_that_instance():
    class Scaler:
        def __init__(self, k):
            self.k = k

        def __call__(self, x):
            return x * self.k

    two, three = Scaler(2), Scaler(3)
    with nopdb.capture_calls(two) as calls:
        two(5)
        three(5)
    assert [c.return_value for c in calls] == [10]


def test_calls_in_a_thread_started_inside_the_block_are_captured():
    results = []
    with nopdb.capture_calls(sc.add_one) as calls:
        t = threading.Thread(target=lambda: results.append(sc.add_one(10)), name="worker")
        t.start()
        t.join()
    assert results == [22]
    assert [(c.args["x"], c.thread) for c in calls] == [(10, "worker")]


def test_function_name_string_module_and_file_scopes():
    with nopdb.capture_calls("add_one") as by_name:
        sc.caller(1)
    with nopdb.capture_calls(module=sc) as by_module:
        sc.add_one(1)
    with nopdb.capture_calls(file="*/sample_code.py") as by_glob:
        sc.unrelated(1)
    with nopdb.capture_calls(file=pathlib.Path(sc.__file__)) as by_path:
        sc.unrelated(2)
    with nopdb.capture_calls("add_one", file="*/not_this_file.py") as none:
        sc.add_one(1)
    assert len(by_name) == 2
    assert [c.name for c in by_module] == ["add_one"]
    assert [c.args["x"] for c in by_glob] == [1]
    assert [c.args["x"] for c in by_path] == [2]
    assert list(none) == []


def test_decorated_function_is_unwrapped_by_default():
    def deco(f):
        @functools.wraps(f)
        def wrapper(*a, **k):
            return f(*a, **k)

        return wrapper

    wrapped = deco(sc.add_one)
    with nopdb.capture_calls(wrapped) as unwrapped_calls:
        wrapped(1)
    with nopdb.capture_calls(wrapped, unwrap=False) as wrapper_calls:
        wrapped(1)
    assert [c.name for c in unwrapped_calls] == ["add_one"]
    assert [c.name for c in wrapper_calls] == ["wrapper"]


def test_enable_disable_and_use_without_with():
    tracer = nopdb.NoPdb()
    calls = tracer.capture_calls(sc.add_one)
    sc.add_one(0)  # not started yet
    with tracer:
        sc.add_one(1)
        calls.disable()
        sc.add_one(2)
        calls.enable()
        sc.add_one(3)
    sc.add_one(4)  # stopped
    calls.disable()
    assert [c.args["x"] for c in calls] == [1, 3]


def test_get_nopdb_returns_the_started_instance():
    with nopdb.NoPdb() as tracer:
        assert nopdb.get_nopdb() is tracer
        calls = nopdb.capture_calls(sc.add_one)
        sc.add_one(7)
    calls.disable()
    assert nopdb.get_nopdb() is not tracer
    assert [c.args["x"] for c in calls] == [7]


def test_start_twice_and_stop_unstarted_are_errors():
    tracer = nopdb.NoPdb()
    with pytest.raises(RuntimeError, match="has not been started"):
        tracer.stop()
    tracer.start()
    with pytest.raises(RuntimeError, match="already been started"):
        tracer.start()
    tracer.stop()


@pytest.mark.parametrize(
    "target, message",
    [
        (len, "implemented in C"),
        (42, "expected a Python function"),
        (dict, "expected a Python function"),
        ("not a name!", "not a valid Python identifier"),
    ],
)
def test_non_function_targets_fail_at_set_up_naming_the_problem(target, message):
    with pytest.raises((TypeError, ValueError), match=message):
        nopdb.capture_calls(target)


def test_low_level_add_callback_gets_settrace_style_events():
    seen = []
    tracer = nopdb.NoPdb()

    def record(frame, event, arg):
        seen.append((event, type(arg).__name__))

    handle = tracer.add_callback(nopdb.Scope(sc.boom), record, ["call", "exception"])
    with tracer:
        with pytest.raises(ValueError):
            sc.boom("x")
    tracer.remove_callback(handle)
    assert seen == [("call", "NoneType"), ("exception", "tuple")]
    with pytest.raises(ValueError, match="unknown event"):
        tracer.add_callback(nopdb.Scope(sc.boom), print, ["opcode"])


def test_capture_survives_a_failing_observer_and_keeps_results():
    from nopdb_lab.tracing import observers

    def broken(record):
        raise RuntimeError("observer bug")

    observers.subscribe(broken)
    try:
        with nopdb.capture_calls(sc.add_one) as calls:
            assert sc.add_one(1) == 4
    finally:
        observers.unsubscribe(broken)
    assert len(calls) == 1
