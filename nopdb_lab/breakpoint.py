"""Non-stopping breakpoints: scheduled ``eval``/``exec``/``debug`` actions at a line.

An error in the user's condition or action never reaches the traced program: it is
recorded on that hit (:attr:`BreakpointHit.errors`), an ``eval`` result list gets the
:class:`ActionError` in that hit's place, and the program runs on.
"""

from __future__ import annotations

import bdb
import collections
import collections.abc
import logging
import pdb
import signal
import threading
import time
import traceback
import weakref
from types import CodeType, FrameType
from typing import Any, Callable, Deque, Dict, Iterable, List, Tuple, Type, Union

from .analysis import gradients
from .call_info import (
    RawStack,
    StackNode,
    next_id,
    node_list,
    qualified_name,
    stack_node,
    stack_summary,
)
from .context import HandlerHost, NoPdbContextManager
from .records import EventRecord
from .shared_stacks import SharedStacks
from .tracing import events as ev
from .tracing import lines as line_resolution
from .tracing import observers
from .tracing.dispatch import Handler
from .tracing.frame_locals import read_locals, write_locals
from .tracing.nice_debugger import make_nice_debugger
from .tracing.plan import weak_callback
from .tracing.scope import Scope

log = logging.getLogger("nopdb_lab")
Source = Union[str, bytes, CodeType]


class ActionError:
    """An exception raised by a breakpoint's condition or action at one hit.

    Keeps the error's text (``message``, ``traceback``) and where it happened
    (``stack``, a :class:`traceback.StackSummary`), not live frames: ``exception`` is the
    exception object with its traceback and chained exceptions cleared, so an error
    cannot keep the traced frame and all its locals alive.
    """

    def __init__(self, action: str, exception: BaseException) -> None:
        self.action = action
        self.traceback = "".join(
            traceback.format_exception(type(exception), exception, exception.__traceback__)
        )
        self.stack = traceback.extract_tb(exception.__traceback__)
        self.message = f"{type(exception).__name__}: {exception}"
        # the exception was raised by the action's own code: nobody else holds it
        exception.__traceback__ = None
        exception.__context__ = None
        exception.__cause__ = None
        self.exception = exception

    def __repr__(self) -> str:
        return f"<ActionError in {self.action}: {self.message}>"


class Evicted:
    """Stands in a ``bp.eval`` result list for a value dropped with its hit from the
    capture store (to keep the store's memory budget)."""

    __slots__ = ("hit_id",)

    def __init__(self, hit_id: int) -> None:
        self.hit_id = hit_id

    def __repr__(self) -> str:
        return f"<evicted with hit {self.hit_id} from the capture store (memory budget)>"


#: how many distinct stack nodes a breakpoint shares between its hits before it starts over
#: (its tree takes about 580 bytes a node: at most ~30 MB, for a recursion 50,000 deep)
_MAX_SHARED_NODES = 50_000


class BreakpointHit(EventRecord):
    """One time a breakpoint fired (its condition was true, or raised).

    Attributes: ``id``, ``time``, ``name``, ``qualname``, ``file``, ``line``,
    ``thread``, ``errors`` (list of :class:`ActionError`), ``evals`` (each scheduled
    ``eval`` expression's text and its value at this hit; failures are in ``errors``),
    ``locals`` (a dict copy taken after the actions ran, when the breakpoint has
    ``keep_locals=True``, else ``None``), ``stack``, ``breakpoint`` (``None`` once the
    breakpoint object is gone: a hit does not keep its breakpoint alive) and, for a
    breakpoint with ``grads``, ``grads`` (name → dL/d(value at the line); a missing one
    raises ``KeyError`` saying why) and ``grad_status``.

    When the capture store evicts or deletes the hit, ``locals`` and ``evals`` are
    dropped (``evicted`` becomes true) and the hit's entries in ``bp.eval`` result
    lists become :class:`Evicted` markers: the store's budget bounds them too.
    """

    kind = "hit"
    grads: Dict[str, Any] = gradients.NO_GRADS
    grad_status: Dict[str, str] | None = None

    def __init__(
        self, breakpoint: "Breakpoint", frame: FrameType, node: StackNode | None = None
    ) -> None:
        code = frame.f_code
        self.id = next_id()
        self.time = time.time()
        self._breakpoint: Callable[[], Any] = weakref.ref(breakpoint)
        #: what the breakpoint was (shared by its hits; plain strings), for when it is gone
        self.breakpoint_summary: Dict[str, Any] = breakpoint.summary
        self.name = code.co_name
        self.qualname = qualified_name(code, frame)
        self.file = code.co_filename
        self.line = frame.f_lineno
        self.thread = threading.current_thread().name
        self.errors: List[ActionError] = []
        self.evals: Dict[str, Any] = {}
        self.locals: Dict[str, Any] | None = None
        # the stack as a linked list sharing its outer part with the stacks of earlier
        # hits in frames that are still running (a recursion: linear, not quadratic)
        self._stack_node: StackNode | None = node if node is not None else stack_node(frame)
        self._raw_stack: RawStack | None = None
        self.evicted = False
        # (result list, index) of this hit's values in ``bp.eval`` lists
        self._results: List[Tuple[list, int]] = []

    @property
    def breakpoint(self) -> "Breakpoint | None":
        return self._breakpoint()

    @breakpoint.setter
    def breakpoint(self, value: Any) -> None:
        # a live Breakpoint is held weakly (a hit must not keep it alive); anything else
        # (the description a capture bundle restores) is held as it is
        if isinstance(value, Breakpoint):
            self._breakpoint = weakref.ref(value)
        else:
            self._breakpoint = lambda: value

    @property
    def raw_stack(self) -> RawStack:
        """The stack as ``(file, line, function)`` tuples, outermost first."""
        raw = getattr(self, "_raw_stack", None)
        if raw is not None:  # a hit loaded from a bundle
            return list(raw)
        return node_list(getattr(self, "_stack_node", None))

    @property
    def stack(self) -> traceback.StackSummary:
        return stack_summary(self.raw_stack)

    def release_values(self) -> None:
        """Drop the values this hit keeps (called by the capture store on eviction)."""
        self.locals = None
        self.evals = {}
        for results, index in self._results:
            if index < len(results) and not isinstance(results[index], ActionError):
                results[index] = Evicted(self.id)
        self._results = []
        self.evicted = True

    def held_values(self) -> Iterable[Any]:
        grads = dict(self.grads) if self.grad_status is not None else {}
        return [*(self.locals or {}).values(), *self.evals.values(), *grads.values()]

    def value_parts(self) -> Tuple[str, ...]:
        return ("locals", "evals")

    def describe(self, root: str, one: Any, many: Any) -> Dict[str, Any]:
        return {**super().describe(root, one, many), "evals": many(self.evals, f"{root}.evals")}

    def origin(self) -> Any:
        return self.breakpoint

    def __repr__(self) -> str:
        errors = f", errors={self.errors!r}" if self.errors else ""
        evicted = ", evicted" if self.evicted else ""
        return f"BreakpointHit(id={self.id}, {self.qualname} line {self.line}{errors}{evicted})"


class _InterruptState(threading.local):
    signalled = False


_interrupts = _InterruptState()


class _InterruptWatch:
    """Tells a real Ctrl-C from a ``KeyboardInterrupt`` that action code raised itself.

    A hit's condition and actions must never end the program: any exception they raise,
    ``SystemExit``, ``KeyboardInterrupt`` and ``GeneratorExit`` included, is recorded on
    the hit. But a user who presses Ctrl-C (or a kernel's stop button) while a slow
    condition or action runs means to interrupt the program. Python runs signal
    handlers in the main thread only, so there, while the hit's code runs, SIGINT's
    Python handler is wrapped to note that the signal arrived before the previous
    handler runs as usual; a ``KeyboardInterrupt`` is let through only if it did. In
    other threads a ``KeyboardInterrupt`` can only come from the action's own code.
    """

    __slots__ = ("_previous", "_handler")

    def __init__(self) -> None:
        self._previous: Any = None
        self._handler: Any = None

    def __enter__(self) -> "_InterruptWatch":
        _interrupts.signalled = False
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._handler = self._on_sigint
                signal.signal(signal.SIGINT, self._handler)
                self._previous = previous
        except (ValueError, OSError):  # not the main interpreter: leave signals alone
            pass
        return self

    def _on_sigint(self, signum: int, frame: Any) -> Any:
        _interrupts.signalled = True
        previous = self._previous or signal.default_int_handler
        return previous(signum, frame)

    def __exit__(self, *exc_info: Any) -> None:
        # ``_previous`` is kept: a tool that saved our handler while the actions ran
        # (pdb does, for a ``debug`` action) and puts it back later still chains through
        if self._previous is not None and signal.getsignal(signal.SIGINT) is self._handler:
            signal.signal(signal.SIGINT, self._previous)


def _reraise_user_interrupt(exc: BaseException) -> None:
    """Re-raise ``exc`` if it is the user's Ctrl-C, not something the action raised."""
    if isinstance(exc, KeyboardInterrupt) and _interrupts.signalled:
        raise exc


def _plain_name(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return getattr(value, "__name__", None) or repr(value)


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
        grads: gradients.GradSpec = False,
        follow_gradient_switch: bool = False,
    ) -> None:
        if line is None and scope.function is None:
            raise TypeError("A line must be given if no function is specified")
        if all(x is None for x in (scope.module, scope.file, scope.function)):
            raise TypeError("A module, file or function must be specified")
        if max_hits is not None and (isinstance(max_hits, bool) or not isinstance(max_hits, int)):
            raise TypeError(f"max_hits must be a positive integer or None, got {max_hits!r}")
        if max_hits is not None and max_hits < 1:
            raise ValueError(f"max_hits must be a positive integer, got {max_hits}")
        if isinstance(hit_history, bool) or not isinstance(hit_history, int) or hit_history < 0:
            raise ValueError(f"hit_history must be a non-negative integer, got {hit_history!r}")
        self.scope = scope
        self.line = line
        self.cond = cond
        self.keep_locals = keep_locals
        self.max_hits = max_hits
        self.grad_spec = gradients.normalize_spec(grads)
        # gutter breakpoints without names of their own keep every gradient while the
        # panel's gradient switch is on
        self._follow_switch = follow_gradient_switch
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
        # the stack nodes of this breakpoint's hits: equal stacks share their nodes, and
        # a hit in a recursion walks only up to the level above, so a hit at each of
        # 5,000 levels takes memory and time linear in the depth
        self._stacks = SharedStacks(_MAX_SHARED_NODES)
        handler = Handler(
            scope=scope,
            events=frozenset({ev.CALL}) if line is None else frozenset({ev.LINE}),
            callback=weak_callback(self._callback),
            lines=resolver,
        )
        NoPdbContextManager.__init__(self, nopdb, handler)
        cond_text = cond.decode() if isinstance(cond, bytes) else cond
        self.summary: Dict[str, Any] = {
            "file": _plain_name(scope.file),
            "function": _plain_name(scope.function),
            "module": _plain_name(scope.module),
            "line": line if isinstance(line, (int, str)) else None,
            "cond": cond_text if isinstance(cond_text, str) else None,
            "repr": repr(self),
        }

    # -- scheduling ----------------------------------------------------------------
    def eval(self, expression: Source, variables: Dict[str, Any] | None = None) -> list:
        """Schedule an expression; returns a list that gets one value per hit.

        If evaluating raises at a hit, that hit's entry is an :class:`ActionError`.
        """
        if variables is not None and not isinstance(variables, collections.abc.Mapping):
            raise TypeError(
                f"eval: variables must be a dict of names to values, got {type(variables).__name__}"
            )
        code = compile_source(expression, "eval", "eval expression")
        label = f"eval {_label(expression)}"
        text = _text(expression)
        results: list = []

        def do_eval(frame: FrameType, event: str, arg: Any, hit: BreakpointHit) -> None:
            f_locals = {**frame.f_locals, **(variables or {})}
            try:
                value = eval(code, dict(frame.f_globals), f_locals)
                results.append(value)
                hit._results.append((results, len(results) - 1))
                hit.evals[text] = value
            except BaseException as exc:  # SystemExit etc. too: never end the program
                _reraise_user_interrupt(exc)
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
        if variables is not None and not isinstance(variables, collections.abc.Mapping):
            raise TypeError(
                f"exec: variables must be a dict of names to values, got {type(variables).__name__}"
            )
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
            except BaseException as exc:  # SystemExit etc. too: never end the program
                _reraise_user_interrupt(exc)
                hit.errors.append(ActionError(label, exc))
                return
            for name in external:
                namespace.pop(name, None)
            write_locals(frame, namespace)

        self._todo_list.append(do_exec)

    def debug(self, debugger_cls: Type[bdb.Bdb] = pdb.Pdb, **kwargs: Any) -> None:
        """Schedule an interactive debugger (``pdb.Pdb`` by default) at the breakpoint."""
        if not (isinstance(debugger_cls, type) and issubclass(debugger_cls, bdb.Bdb)):
            raise TypeError(
                "debug: debugger_cls must be a bdb.Bdb subclass such as pdb.Pdb, got "
                f"{debugger_cls!r}"
            )

        def do_debug(frame: FrameType, event: str, arg: Any, hit: BreakpointHit) -> None:
            debugger = make_nice_debugger(frame, debugger_cls, kwargs)
            debugger.set_trace(frame)
            debugger.trace_dispatch(frame, "call" if event == ev.CALL else "line", None)

        self._todo_list.append(do_debug)

    # -- firing --------------------------------------------------------------------
    def _new_hit(self, frame: FrameType) -> BreakpointHit:
        """A hit whose stack shares every node it can with earlier hits' stacks."""
        return BreakpointHit(self, frame, self._stacks.node(frame))

    def disable(self) -> None:
        super().disable()
        self._stacks.start_over()  # the hits keep the nodes they use

    def _callback(self, frame: FrameType, event: str, arg: Any) -> None:
        if self.max_hits is not None and self.hit_count >= self.max_hits:
            return
        if self._cond_code is None and not self._todo_list:
            hit = self._new_hit(frame)
            self.hit_count += 1
        else:
            with _InterruptWatch():
                ran = self._run_actions(frame, event, arg)
            if ran is None:
                return
            hit = ran
        spec = self.grad_spec
        if spec is False and self._follow_switch and gradients.gradient_capture_active():
            spec = True
        if self.keep_locals or spec is not False:
            current = read_locals(frame)
            if self.keep_locals:
                hit.locals = current
            if spec is not False:  # the values the line is about to use
                collector = gradients.begin(hit, None)
                gradients.watch_values(collector, spec, None, current)
                gradients.finish(collector, spec, current)
        self._record(hit)

    def _run_actions(self, frame: FrameType, event: str, arg: Any) -> BreakpointHit | None:
        """The condition, then every action; ``None`` if the condition is false."""
        if self._cond_code is not None:
            try:
                if not eval(self._cond_code, frame.f_globals, frame.f_locals):
                    return None
            except BaseException as exc:  # SystemExit etc. too: never end the program
                _reraise_user_interrupt(exc)
                hit = self._new_hit(frame)
                hit.errors.append(ActionError(f"condition {_label(self.cond or '')}", exc))
                self._record(hit)
                return None
        hit = self._new_hit(frame)
        self.hit_count += 1
        for action in self._todo_list:
            action(frame, event, arg, hit)
        return hit

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
