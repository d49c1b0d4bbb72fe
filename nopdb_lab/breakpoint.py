"""Non-stopping breakpoints: scheduled ``eval``/``exec``/``debug`` actions at a line.

An error in the user's condition or action never reaches the traced program: it is
recorded on that hit (:attr:`BreakpointHit.errors`), an ``eval`` result list gets the
:class:`ActionError` in that hit's place, and the program runs on.
"""

from __future__ import annotations

import bdb
import collections
import logging
import pdb
import threading
import time
import traceback
from types import CodeType, FrameType
from typing import Any, Callable, Deque, Dict, Iterable, List, Tuple, Type, Union

from .call_info import RawStack, next_id, qualified_name, raw_stack, stack_summary
from .context import HandlerHost, NoPdbContextManager
from .records import EventRecord
from .tracing import events as ev
from .tracing import lines as line_resolution
from .tracing import observers
from .tracing.dispatch import Handler
from .tracing.frame_locals import read_locals, write_locals
from .tracing.nice_debugger import make_nice_debugger
from .tracing.scope import Scope

log = logging.getLogger("nopdb_lab")
Source = Union[str, bytes, CodeType]


class ActionError:
    """An exception raised by a breakpoint's condition or action at one hit."""

    def __init__(self, action: str, exception: BaseException) -> None:
        self.action = action
        self.exception = exception
        self.traceback = "".join(traceback.format_exception_only(type(exception), exception))

    @property
    def message(self) -> str:
        return f"{type(self.exception).__name__}: {self.exception}"

    def __repr__(self) -> str:
        return f"<ActionError in {self.action}: {self.message}>"


class BreakpointHit(EventRecord):
    """One time a breakpoint fired (its condition was true, or raised).

    Attributes: ``id``, ``time``, ``name``, ``qualname``, ``file``, ``line``,
    ``thread``, ``errors`` (list of :class:`ActionError`), ``evals`` (each scheduled
    ``eval`` expression's text and its value at this hit; failures are in ``errors``),
    ``locals`` (a dict copy taken after the actions ran, when the breakpoint has
    ``keep_locals=True``, else ``None``) and ``stack``.
    """

    kind = "hit"

    def __init__(self, breakpoint: "Breakpoint", frame: FrameType) -> None:
        code = frame.f_code
        self.id = next_id()
        self.time = time.time()
        self.breakpoint = breakpoint
        self.name = code.co_name
        self.qualname = qualified_name(code, frame)
        self.file = code.co_filename
        self.line = frame.f_lineno
        self.thread = threading.current_thread().name
        self.errors: List[ActionError] = []
        self.evals: Dict[str, Any] = {}
        self.locals: Dict[str, Any] | None = None
        self.raw_stack: RawStack = raw_stack(frame)

    @property
    def stack(self) -> traceback.StackSummary:
        return stack_summary(self.raw_stack)

    def held_values(self) -> Iterable[Any]:
        return list((self.locals or {}).values())

    def value_parts(self) -> Tuple[str, ...]:
        return ("locals", "evals")

    def describe(self, root: str, one: Any, many: Any) -> Dict[str, Any]:
        return {**super().describe(root, one, many), "evals": many(self.evals, f"{root}.evals")}

    def origin(self) -> Any:
        return self.breakpoint

    def __repr__(self) -> str:
        errors = f", errors={self.errors!r}" if self.errors else ""
        return f"BreakpointHit(id={self.id}, {self.qualname} line {self.line}{errors})"


def compile_source(source: Source, mode: str, what: str) -> CodeType:
    """Compile a condition or action now, so a syntax error shows at set-up time."""
    if isinstance(source, CodeType):
        return source
    if not isinstance(source, (str, bytes)):
        raise TypeError(f"breakpoint {what} must be a str, bytes or code object, got {source!r}")
    try:
        return compile(source, f"<nopdb_lab {what}>", mode)
    except SyntaxError as exc:
        text = source.decode() if isinstance(source, bytes) else source
        raise SyntaxError(
            f"syntax error in breakpoint {what} {text!r}: {exc.msg}",
            (exc.filename, exc.lineno, exc.offset, exc.text),
        ) from None


def _text(source: Source) -> str:
    if isinstance(source, CodeType):
        return "<code>"
    return source.decode() if isinstance(source, bytes) else source


def _label(source: Source) -> str:
    text = _text(source)
    if isinstance(source, CodeType):
        return text
    return repr(text if len(text) <= 60 else text[:57] + "...")


Action = Callable[[FrameType, str, Any, BreakpointHit], None]


class Breakpoint(NoPdbContextManager):
    """A breakpoint that runs scheduled actions when hit, without stopping.

    Created by :func:`nopdb_lab.breakpoint`; a context manager that removes itself on
    exit. Beyond NoPdb: ``hits`` (the most recent :class:`BreakpointHit` objects),
    ``hit_count``, ``keep_locals`` and ``max_hits``.
    """

    def __init__(
        self,
        nopdb: HandlerHost,
        scope: Scope,
        line: Union[int, str] | None = None,
        cond: Source | None = None,
        *,
        keep_locals: bool = False,
        max_hits: int | None = None,
        hit_history: int = 10_000,
        check_line: bool = True,
        log_errors: bool = True,
    ) -> None:
        if line is None and scope.function is None:
            raise TypeError("A line must be given if no function is specified")
        if all(x is None for x in (scope.module, scope.file, scope.function)):
            raise TypeError("A module, file or function must be specified")
        if max_hits is not None and max_hits < 1:
            raise ValueError(f"max_hits must be a positive number, got {max_hits}")
        self.scope = scope
        self.line = line
        self.cond = cond
        self.keep_locals = keep_locals
        self.max_hits = max_hits
        self._cond_code = None if cond is None else compile_source(cond, "eval", "condition")
        self._todo_list: List[Action] = []
        self.hits: Deque[BreakpointHit] = collections.deque(maxlen=hit_history)
        self.hit_count = 0
        self._warned: set[str] = set()
        # breakpoints set from the JupyterLab gutter show errors on the hit instead of
        # writing a warning into the user's cell output
        self._log_errors = log_errors
        if check_line or line is None or isinstance(line, str):
            resolver = line_resolution.resolve(scope, line)
        else:  # the caller checked the line against code that has not run yet
            resolver = line_resolution.unchecked(line)
        handler = Handler(
            scope=scope,
            events=frozenset({ev.CALL}) if line is None else frozenset({ev.LINE}),
            callback=self._callback,
            lines=resolver,
        )
        NoPdbContextManager.__init__(self, nopdb, handler)

    # -- scheduling ----------------------------------------------------------------
    def eval(self, expression: Source, variables: Dict[str, Any] | None = None) -> list:
        """Schedule an expression; returns a list that gets one value per hit.

        If evaluating raises at a hit, that hit's entry is an :class:`ActionError`.
        """
        code = compile_source(expression, "eval", "eval expression")
        label = f"eval {_label(expression)}"
        text = _text(expression)
        results: list = []

        def do_eval(frame: FrameType, event: str, arg: Any, hit: BreakpointHit) -> None:
            f_locals = {**frame.f_locals, **(variables or {})}
            try:
                value = eval(code, dict(frame.f_globals), f_locals)
                results.append(value)
                hit.evals[text] = value
            except Exception as exc:
                error = ActionError(label, exc)
                hit.errors.append(error)
                results.append(error)

        self._todo_list.append(do_eval)
        return results

    def exec(self, code: Source, variables: Dict[str, Any] | None = None) -> None:
        """Schedule statements to run in the breakpoint's frame.

        Assignments to local variables take effect in the running frame
        (``attn = attn * 3`` changes what the function computes next). ``variables``
        are visible to the code but are not added to the frame.
        """
        compiled = compile_source(code, "exec", "exec code")
        label = f"exec {_label(code)}"
        external = dict(variables or {})

        def do_exec(frame: FrameType, event: str, arg: Any, hit: BreakpointHit) -> None:
            current = read_locals(frame)
            conflict = current.keys() & external.keys()
            if conflict:
                hit.errors.append(
                    ActionError(
                        label,
                        RuntimeError(
                            "external variables conflict with local ones: "
                            + ", ".join(sorted(conflict))
                        ),
                    )
                )
                return
            namespace = {**current, **external}
            try:
                exec(compiled, frame.f_globals, namespace)
            except Exception as exc:
                hit.errors.append(ActionError(label, exc))
                return
            for name in external:
                namespace.pop(name, None)
            write_locals(frame, namespace)

        self._todo_list.append(do_exec)

    def debug(self, debugger_cls: Type[bdb.Bdb] = pdb.Pdb, **kwargs: Any) -> None:
        """Schedule an interactive debugger (``pdb.Pdb`` by default) at the breakpoint."""

        def do_debug(frame: FrameType, event: str, arg: Any, hit: BreakpointHit) -> None:
            debugger = make_nice_debugger(frame, debugger_cls, kwargs)
            debugger.set_trace(frame)
            debugger.trace_dispatch(frame, "call" if event == ev.CALL else "line", None)

        self._todo_list.append(do_debug)

    # -- firing --------------------------------------------------------------------
    def _callback(self, frame: FrameType, event: str, arg: Any) -> None:
        if self.max_hits is not None and self.hit_count >= self.max_hits:
            return
        if self._cond_code is not None:
            try:
                if not eval(self._cond_code, frame.f_globals, frame.f_locals):
                    return
            except Exception as exc:
                hit = BreakpointHit(self, frame)
                hit.errors.append(ActionError(f"condition {_label(self.cond or '')}", exc))
                self._record(hit)
                return
        hit = BreakpointHit(self, frame)
        self.hit_count += 1
        for action in self._todo_list:
            action(frame, event, arg, hit)
        if self.keep_locals:
            hit.locals = read_locals(frame)
        self._record(hit)

    def _record(self, hit: BreakpointHit) -> None:
        for error in hit.errors if self._log_errors else ():
            if error.action not in self._warned:  # once per action, not once per hit
                self._warned.add(error.action)
                log.warning(
                    "nopdb_lab: breakpoint at %s line %s: %s in %s (further errors of this "
                    "action are only recorded on bp.hits)",
                    hit.qualname,
                    hit.line,
                    error.message,
                    error.action,
                )
        self.hits.append(hit)
        observers.publish(hit)

    def __repr__(self) -> str:
        where = self.scope.describe()
        line = "" if self.line is None else f", line={self.line!r}"
        return f"Breakpoint({where}{line}, hits={self.hit_count})"
