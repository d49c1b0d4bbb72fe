"""Line and tap_local without torch: the local after its statement, read and replaced.

Pure Python, so these run on every supported interpreter (settrace on 3.10/3.11,
sys.monitoring on 3.12+, write-through frame locals on 3.13+).
"""

import pytest

from nopdb_lab.probe import Line, tap_local


def scaled_sum(values, factor):
    total = 0
    for v in values:
        y = v * factor
        total += y
    return total


def two_steps(a):
    b = a + 1
    c = max(
        b * 10,
        -1000,
    )
    return c + b


def test_the_local_is_read_right_after_its_statement():
    with tap_local(Line(two_steps, "b = a + 1")) as seen:
        assert two_steps(1) == 22
    assert seen == [2]


def test_a_replaced_local_changes_what_the_function_computes_next():
    with tap_local(Line(two_steps, "b = a + 1"), lambda value, i: value * 100) as seen:
        assert two_steps(1) == 2200
    assert seen == [200]
    assert two_steps(1) == 22, "nothing stays replaced after the block"


def test_a_multiline_statement_is_read_once_after_its_last_line():
    with tap_local(Line(two_steps, "c = max(...)"), lambda value, i: -value) as seen:
        assert two_steps(1) == -18
    assert seen == [-20]


def test_every_time_the_statement_runs_is_one_occurrence():
    line = Line(scaled_sum, "y = v * factor")
    with tap_local(line, lambda value, i: value if i != 1 else 0) as seen:
        assert scaled_sum([1, 2, 3], 2) == 2 + 0 + 6
    assert seen == [2, 0, 6]


def test_a_line_number_and_an_explicit_name_work_too():
    first = two_steps.__code__.co_firstlineno
    line = Line(two_steps, first + 1)
    assert line.name == "b"
    named = Line(two_steps, "return c + b", name="c")
    assert named.name == "c"


def test_an_error_in_the_transform_reaches_the_caller_after_the_block():
    def broken(value, i):
        raise RuntimeError("transform failed")

    with pytest.raises(RuntimeError, match="transform failed"):
        with tap_local(Line(two_steps, "b = a + 1"), broken):
            two_steps(1)


def test_ambiguous_or_missing_statements_are_refused():
    def twice(x):
        x = x + 1
        x = x + 1
        return x

    with pytest.raises(ValueError, match="2 statements"):
        Line(twice, "x = x + 1")
    with pytest.raises(ValueError, match="no statement"):
        Line(twice, "x = x + 2")
