"""The tracer's event vocabulary, shared by both tracing backends.

Each backend translates what CPython reports (``sys.monitoring`` events on 3.12+,
``sys.settrace`` events on 3.10/3.11) into these six names, so captures and
breakpoints are written once.
"""

from __future__ import annotations

CALL = "call"  #: a new activation of a function starts (arguments are bound)
RESUME = "resume"  #: a suspended generator/coroutine continues
LINE = "line"  #: a line is about to run
RETURN = "return"  #: the activation finishes normally; ``arg`` is the return value
YIELD = "yield"  #: a generator/coroutine suspends; ``arg`` is the yielded value
UNWIND = "unwind"  #: the activation exits by an exception; ``arg`` is the exception

ALL_EVENTS = frozenset({CALL, RESUME, LINE, RETURN, YIELD, UNWIND})

#: events that a NoPdb-style (settrace vocabulary) callback asks for, mapped to ours
SETTRACE_TO_EVENTS = {
    "call": frozenset({CALL, RESUME}),
    "line": frozenset({LINE}),
    "return": frozenset({RETURN, YIELD, UNWIND}),
    "exception": frozenset({UNWIND}),
}
