import io
import pdb
import sys
import threading

import pytest

import nopdb_lab as nopdb
from nopdb_lab import ActionError
from tests import sample_code as sc

# line numbers in tests/sample_code.py
ADD_ONE_Y, ADD_ONE_Z, ADD_ONE_RETURN = 5, 6, 7


def test_eval_and_exec_like_the_nopdb_readme():
    with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_Z) as bp:
        y_before = bp.eval("y")
        bp.exec("y += 1")
        y_after = bp.eval("y")
        result = sc.add_one(1)
    assert y_before == [2]
    assert y_after == [3]
    assert result == 6  # the frame continued with y == 3


def test_line_given_as_source_text():
    with nopdb.breakpoint(function=sc.add_one, line="  z = y * 2 ") as bp:
        ys = bp.eval("y")
        sc.caller(10)
    assert ys == [11, 12]


def test_exec_assignment_changes_the_return_value_on_every_call():
    with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_RETURN) as bp:
        bp.exec("z = z * 3")
        assert sc.caller(1) == (4 + 6) * 3
    assert sc.caller(1) == 10  # removed on exit


def test_exec_writes_closure_cell_variables():
    counter = sc.make_counter(1)
    with nopdb.breakpoint(function=counter, line="total += increment") as bp:
        bp.exec("increment = 100")
        assert counter() == 100


def test_exec_external_variables_are_visible_but_not_kept():
    with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_RETURN) as bp:
        bp.exec("z = z + offset", variables={"offset": 1000})
        seen = bp.eval("sorted(locals())")
        assert sc.add_one(0) == 1002
    assert seen == [["x", "y", "z"]]


def test_breakpoint_without_line_fires_on_call_and_can_change_arguments():
    with nopdb.breakpoint(function=sc.add_one) as bp:
        args = bp.eval("x")
        bp.exec("x = 100")
        assert sc.add_one(1) == 202
    assert args == [1]


def test_condition_filters_hits():
    with nopdb.breakpoint(function=sc.fib, line="return n", cond="n == 1") as bp:
        ns = bp.eval("n")
        sc.fib(5)
    assert ns == [1] * 5
    assert bp.hit_count == 5


def test_breakpoint_by_file_glob_and_function_name():
    with nopdb.breakpoint(file="*/sample_code.py", line="return text + punctuation") as bp:
        texts = bp.eval("text")
        sc.Greeter("ann").greet()
    with nopdb.breakpoint(function="add_one", line=ADD_ONE_Y) as by_name:
        xs = by_name.eval("x")
        sc.add_one(41)
    assert texts == ["hello ann"]
    assert xs == [41]


def test_breakpoint_by_module_and_line_number():
    with nopdb.breakpoint(module=sc, line=ADD_ONE_Z) as bp:
        ys = bp.eval("y")
        sc.add_one(1)
    assert ys == [2]


def test_breakpoint_on_bound_method_fires_only_for_that_instance():
    alice, bob = sc.Greeter("alice"), sc.Greeter("bob")
    with nopdb.breakpoint(function=bob.greet, line="return text + punctuation") as bp:
        texts = bp.eval("text")
        alice.greet()
        bob.greet()
    assert texts == ["hello bob"]


def test_several_breakpoints_and_captures_compose():
    with (
        nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_Y) as first,
        nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_RETURN) as second,
        nopdb.capture_calls(sc.add_one) as calls,
    ):
        xs = first.eval("x")
        zs = second.eval("z")
        second.exec("z = -z")
        sc.caller(1)
    assert xs == [1, 2] and zs == [4, 6]
    assert [c.return_value for c in calls] == [-4, -6]


def test_keep_locals_and_max_hits():
    with nopdb.breakpoint(
        function=sc.add_one, line=ADD_ONE_RETURN, keep_locals=True, max_hits=1
    ) as bp:
        bp.exec("z = 0")
        sc.caller(1)
    assert bp.hit_count == 1
    (hit,) = bp.hits
    assert hit.locals == {"x": 1, "y": 2, "z": 0}  # taken after the actions ran
    assert hit.line == ADD_ONE_RETURN and hit.qualname == "add_one"
    assert [f.name for f in hit.stack][-2:] == ["caller", "add_one"]


# -- bad input fails at set-up, naming the problem --------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(function=sc.add_one, line=2), ValueError, "line 2 is outside add_one"),
        (dict(function=sc.add_one, line=99), ValueError, "nearest executable lines: 5, 6, 7"),
        (dict(function=sc.make_counter, line=42), ValueError, "not an executable line"),
        (
            dict(function=sc.add_one, line="w = 1"),
            ValueError,
            "no line of add_one .* reads 'w = 1'",
        ),
        (dict(function=sc.duplicated_lines, line="x = x + 1"), ValueError, "2 lines of"),
        (dict(module=sc, line=3), ValueError, "not an executable line"),
        (dict(module=sc, line=10_000), ValueError, "past the end"),
        (dict(module=sc, line="nothing like this"), ValueError, "reads 'nothing like this'"),
        (dict(function=sc.add_one, line=0), ValueError, "not a valid line number"),
        (dict(function=sc.add_one, line=5.0), TypeError, "line must be"),
        (dict(line=5), TypeError, "module, file or function must be specified"),
        (dict(file="x.py"), TypeError, "A line must be given"),
        (dict(function=print, line=1), TypeError, "implemented in C"),
        (
            dict(function=sc.add_one, cond="x ==="),
            SyntaxError,
            "syntax error in breakpoint condition",
        ),
    ],
)
def test_bad_breakpoints_fail_at_set_up(kwargs, error, message):
    with pytest.raises(error, match=message):
        nopdb.breakpoint(**kwargs)


def test_syntax_errors_in_actions_fail_when_scheduled():
    bp = nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_Y)
    try:
        with pytest.raises(SyntaxError, match=r"breakpoint exec code 'attn = attn \*'"):
            bp.exec("attn = attn *")
        with pytest.raises(SyntaxError, match="breakpoint eval expression"):
            bp.eval("x = 1")  # a statement is not an expression
    finally:
        bp.disable()


# -- errors at run time never break the program ------------------------------------------
def test_errors_in_actions_are_recorded_on_the_hit_and_the_program_runs_on():
    with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_RETURN) as bp:
        missing = bp.eval("undefined_name + 1")
        bp.exec("z = z / 0")
        good = bp.eval("z")
        assert sc.add_one(1) == 4
    assert isinstance(missing[0], ActionError)
    assert "NameError: name 'undefined_name' is not defined" in missing[0].message
    assert good == [4]
    (hit,) = bp.hits
    assert [e.message for e in hit.errors] == [
        "NameError: name 'undefined_name' is not defined",
        "ZeroDivisionError: division by zero",
    ]
    assert "exec 'z = z / 0'" in hit.errors[1].action


def test_condition_that_raises_is_recorded_and_skips_actions():
    with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_Y, cond="x / 0") as bp:
        xs = bp.eval("x")
        assert sc.add_one(1) == 4
    assert xs == []
    assert bp.hit_count == 0
    assert "ZeroDivisionError" in bp.hits[0].errors[0].message


def test_debug_enters_pdb_at_the_line_and_hands_tracing_back():
    stdin = io.StringIO("p y\np x\ncontinue\n")
    stdout = io.StringIO()
    before = sys.gettrace()
    with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_Z) as bp:
        bp.debug(pdb.Pdb, stdin=stdin, stdout=stdout)
        assert sc.add_one(4) == 10
        assert sc.add_one(5) == 12
    text = stdout.getvalue()
    assert "z = y * 2" in text
    assert text.count("(Pdb)") >= 3
    assert "(Pdb) 5\n(Pdb) 4\n" in text
    assert sys.gettrace() is before


def test_breakpoint_hit_in_another_thread():
    with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_RETURN) as bp:
        zs = bp.eval("z")
        t = threading.Thread(target=sc.add_one, args=(3,))
        t.start()
        t.join()
    assert zs == [8]
    assert bp.hits[0].thread != threading.current_thread().name


def test_a_failing_action_is_logged_once_and_recorded_on_every_hit(caplog):
    with caplog.at_level("WARNING", logger="nopdb_lab"):
        with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_Y) as bp:
            bp.eval("undefined_name")
            sc.caller(1)
    assert [len(h.errors) for h in bp.hits] == [1, 1]
    assert len([r for r in caplog.records if "undefined_name" in r.getMessage()]) == 1


def test_eval_results_are_kept_on_each_hit_by_expression():
    with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_Z) as bp:
        bp.eval("y * 10")
        bp.eval("no_such_name")
        sc.caller(1)
    assert [hit.evals for hit in bp.hits] == [{"y * 10": 20}, {"y * 10": 30}]
    assert all(len(hit.errors) == 1 for hit in bp.hits)


def test_a_file_scope_narrowed_to_one_instance():
    from nopdb_lab.breakpoint import Breakpoint
    from nopdb_lab.nopdb import get_nopdb
    from nopdb_lab.tracing.scope import Scope

    alice, bob = sc.Greeter("alice"), sc.Greeter("bob")
    line = sc.Greeter.greet.__code__.co_firstlineno + 1
    scope = Scope(file=sc.__file__, instance=bob)
    with Breakpoint(get_nopdb(), scope, line=line, keep_locals=True) as bp:
        alice.greet()
        bob.greet()
    assert [hit.locals["self"] for hit in bp.hits] == [bob]
    with pytest.raises(ValueError, match="instance conflicts"):
        Scope(function=alice.greet, instance=bob)


def test_a_thread_started_before_the_breakpoint_is_traced_once_it_adopts_tracing():
    # a Jupyter kernel sets breakpoints from a comm handler while cells run on another
    # thread; before each cell the kernel service makes the cell's thread adopt tracing
    from nopdb_lab.tracing.dispatch import DISPATCHER

    started, go = threading.Event(), threading.Event()

    def worker():
        started.set()
        go.wait(5)
        DISPATCHER.adopt_current_thread()
        sc.add_one(1)

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait(5)
    with nopdb.breakpoint(function=sc.add_one, line=ADD_ONE_Z) as bp:
        go.set()
        thread.join(5)
    assert [hit.thread for hit in bp.hits] == [thread.name]


def test_function_named_at_a_line_is_its_qualified_name_on_every_version():
    """The breakpoint editor names the function a line belongs to; on 3.10 (no
    ``co_qualname``) the name is rebuilt from the code objects' nesting and must read as
    ``__qualname__`` does (``Attention.forward``, ``outer.<locals>.Inner.method``)."""
    from nopdb_lab.tracing.lines import innermost_function

    source = (
        "class Attention:\n"
        "    def forward(self, x):\n"
        "        return x * 2\n"
        "def outer():\n"
        "    class Inner:\n"
        "        def method(self):\n"
        "            return 1\n"
        "    def helper():\n"
        "        return 2\n"
        "    return Inner, helper\n"
        "y = 0\n"
    )
    code = compile(source, "<qualname-test>", "exec")
    namespace: dict = {}
    exec(code, namespace)
    inner, helper = namespace["outer"]()
    assert innermost_function(code, 3) == namespace["Attention"].forward.__qualname__
    assert innermost_function(code, 7) == inner.method.__qualname__
    assert innermost_function(code, 9) == helper.__qualname__
    assert innermost_function(code, 10) == "outer"
    assert innermost_function(code, 11) is None  # module level
