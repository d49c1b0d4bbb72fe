"""Result objects for captured calls (NoPdb's ``CallInfo``, with identity and timing).

Every capture gets a process-wide stable id and timestamps so that a store can list,
summarise and serialise it later; the stack is kept as raw ``(file, line, name)``
tuples and only turned into a :class:`traceback.StackSummary` when read.
"""

from __future__ import annotations

import itertools
import linecache
import threading
import traceback
from types import CodeType, FrameType
from typing import Any, Callable, Dict, Iterable, List, Tuple

from .analysis.gradients import NO_GRADS

_ids = itertools.count(1)
_ids_lock = threading.Lock()

RawStack = List[Tuple[str, int, str]]
#: a stack as a linked list sharing its outer part with other stacks:
#: ``(caller's node or None, file, line, function)``
StackNode = Tuple[Any, str, int, str]


def next_id() -> int:
    """A new process-wide unique id for a capture or a breakpoint hit."""
    with _ids_lock:
        return next(_ids)


def raw_stack(frame: FrameType | None) -> RawStack:
    """The stack ending at ``frame``, outermost first, as cheap tuples."""
    out: RawStack = []
    while frame is not None:
        out.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    out.reverse()
    return out


def stack_node(
    frame: FrameType | None, known: Callable[[FrameType], StackNode | None] | None = None
) -> StackNode | None:
    """The stack ending at ``frame`` as a :data:`StackNode`, reusing known outer parts.

    ``known(f)`` may return the node of an outer frame ``f`` at its current line (a
    capture knows the frames of calls it is recording); the walk stops there, so the
    stacks of a recursion 5,000 deep cost time and memory linear in its depth, not
    quadratic. The walk is a loop: it uses no recursion headroom.
    """
    walked: List[FrameType] = []
    parent: StackNode | None = None
    while frame is not None:
        if known is not None and walked:
            parent = known(frame)
            if parent is not None:
                break
        walked.append(frame)
        frame = frame.f_back
    for f in reversed(walked):
        parent = (parent, f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
    return parent


def node_list(node: StackNode | None) -> RawStack:
    """A :data:`StackNode` as ``(file, line, function)`` tuples, outermost first."""
    out: RawStack = []
    while node is not None:
        out.append((node[1], node[2], node[3]))
        node = node[0]
    out.reverse()
    return out


def stack_summary(raw: RawStack) -> traceback.StackSummary:
    """Turn raw tuples into a :class:`traceback.StackSummary` (source lines looked up)."""
    return traceback.StackSummary.from_list(
        [(f, line, name, linecache.getline(f, line).strip()) for f, line, name in raw]
    )


def qualified_name(code: CodeType, frame: FrameType | None = None) -> str:
    """``Class.method``-style name (``co_qualname`` on 3.11+, rebuilt on 3.10)."""
    qualname = getattr(code, "co_qualname", None)
    if qualname:
        return qualname
    if frame is not None and code.co_argcount and code.co_varnames[0] in ("self", "cls"):
        owner = frame.f_locals.get(code.co_varnames[0])
        if owner is not None:
            cls = owner if isinstance(owner, type) else type(owner)
            return f"{cls.__qualname__}.{code.co_name}"
    return code.co_name


class CallInfo:
    """Information about one function call.

    NoPdb attributes:
        name (str): the code object's name.
        file (str): the file the function was defined in.
        stack (traceback.StackSummary): the call stack, outermost first.
        args (OrderedDict): the arguments as bound at call time.
        locals (dict): local variables when the call finished.
        globals (dict): the function's globals.
        return_value: the value returned (``None`` if it raised).

    nopdb-lab additions:
        id (int): process-wide stable id.
        kind (str): ``"call"``.
        qualname (str): qualified function name (``Attention.forward``).
        lineno (int): first line of the function's definition.
        start_time, end_time (float): ``time.time()`` at call and at finish.
        exception (BaseException | None): the exception the call raised, if any
            (it still propagated to the caller).
        yields (list): values yielded, for generators and coroutines.
        thread (str): name of the thread that made the call.
        grads (dict): with ``grads=`` given, the gradients that backward passes
            brought: ``grads["args"][name]``, ``grads["locals"][name]``,
            ``grads["return_value"]``; a missing one raises ``KeyError`` saying why.
        grad_status (dict | None): ``"locals.attn"``-style path → ``"ok"`` or the
            reason there is no gradient.
    """

    kind = "call"
    grads: Dict[str, Any] = NO_GRADS
    grad_status: Dict[str, str] | None = None

    def __init__(self) -> None:
        self.name: str | None = None
        self.file: str | None = None
        self._raw_stack: RawStack | None = None
        self._stack_node: StackNode | None = None
        self._stack: traceback.StackSummary | None = None
        self.args: Dict[str, Any] | None = None
        self.locals: Dict[str, Any] | None = None
        self.globals: Dict[str, Any] | None = None
        self.return_value: Any | None = None
        self.id: int | None = None
        self.qualname: str | None = None
        self.lineno: int | None = None
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.exception: BaseException | None = None
        self.yields: List[Any] = []
        self.thread: str | None = None

    @property
    def stack(self) -> traceback.StackSummary | None:
        if self._stack is None and (self._raw_stack is not None or self._stack_node is not None):
            self._stack = stack_summary(self.raw_stack)
        return self._stack

    @stack.setter
    def stack(self, value: traceback.StackSummary | None) -> None:
        self._stack = value

    @property
    def raw_stack(self) -> RawStack:
        """The stack as ``(file, line, function)`` tuples, outermost first."""
        if self._stack_node is not None:
            return node_list(self._stack_node)
        if self._raw_stack is not None:
            return list(self._raw_stack)
        return [(f.filename, f.lineno or 0, f.name) for f in (self._stack or [])]

    # -- the Record protocol (nopdb_lab.records) ------------------------------------------
    @property
    def line(self) -> int | None:
        """The first line of the function's definition (``lineno``)."""
        return self.lineno

    @property
    def time(self) -> float | None:
        """When the call started (``start_time``)."""
        return self.start_time

    def value_parts(self) -> Tuple[str, ...]:
        return ("args", "locals", "return_value", "yields")

    def held_values(self) -> Iterable[Any]:
        values = [*(self.args or {}).values(), *(self.locals or {}).values()]
        grads = dict(self.grads) if self.grad_status is not None else {}
        return [*values, self.return_value, self.yields, *grads.values()]

    def brief_fields(self) -> Dict[str, Any]:
        exception = None if self.exception is None else repr(self.exception)
        return {"end_time": self.end_time, "exception": exception}

    def describe(self, root: str, one: Any, many: Any) -> Dict[str, Any]:
        return {
            "args": many(self.args, f"{root}.args"),
            "return_value": one(self.return_value, f"{root}.return_value"),
        }

    def origin(self) -> Any:
        return None

    def __repr__(self) -> str:
        return "{}(name={!r}, args={}({}), return_value={!r}{})".format(
            type(self).__name__,
            self.name,
            type(self.args).__name__,
            ", ".join(f"{k}={v!r}" for k, v in (self.args or {}).items()),
            self.return_value,
            f", exception={self.exception!r}" if self.exception is not None else "",
        )

    def print_stack(self, file: Any = None) -> None:
        """Print the call stack."""
        if self.stack is not None:
            for line in self.stack.format():
                print(line, end="", file=file)
