"""The :class:`NoPdb` object and the module-level NoPdb 0.2 API.

Differences from NoPdb 0.2, all deliberate (see docs/compatibility.md):
tracing is per process (any thread's calls are seen), not per thread; handler errors
are recorded instead of raised into the program; bad lines and syntax errors fail when
the breakpoint is set.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from types import CodeType, FrameType, ModuleType
from typing import Any, Callable, Dict, Iterable, List, Union

from .analysis import gradients
from .breakpoint import Breakpoint
from .call_capture import CallCapture, CallListCapture
from .context import Handle
from .snapshot import SnapshotSpec, make_snapshotter
from .tracing import events as ev
from .tracing.dispatch import DISPATCHER, Handler
from .tracing.scope import Scope

__all__ = ["NoPdb", "Handle", "breakpoint", "capture_call", "capture_calls", "get_nopdb"]

TraceFunc = Callable[[FrameType, str, Any], Any]


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.started: List["NoPdb"] = []
        self.default: "NoPdb" | None = None


_thread = _ThreadState()


class NoPdb:
    """A group of captures and breakpoints that are active while it is started.

    Usable as a context manager. Unlike NoPdb 0.2, a started instance sees calls made
    by every thread, and several instances may be started at once.
    """

    def __init__(self) -> None:
        self._started = False
        self._callbacks: Dict[Handle, Handler] = OrderedDict()
        # captures and breakpoints registered here, kept alive while they are enabled
        # (their handlers refer to them weakly, see dispatch.weak_callback)
        self._owners: Dict[Handle, Any] = {}

    @property
    def started(self) -> bool:
        return self._started

    def start(self, *, as_default: bool = True) -> None:
        """Start tracing for this instance's captures and breakpoints.

        ``as_default=False`` keeps it from becoming the thread's default NoPdb (the one
        bare ``nopdb_lab.capture_call(...)`` joins): the kernel's gutter breakpoints use it.
        """
        if self._started:
            raise RuntimeError("nopdb has already been started")
        made_live = []
        try:
            for handler in list(self._callbacks.values()):
                DISPATCHER.set_live(handler, True)
                made_live.append(handler)
        except BaseException:
            for handler in made_live:
                DISPATCHER.set_live(handler, False)
            raise
        self._started = True
        if as_default:
            _thread.started.append(self)

    def stop(self) -> None:
        """Stop tracing; captured results stay available."""
        if not self._started:
            raise RuntimeError("nopdb has not been started")
        self._started = False
        if self in _thread.started:
            _thread.started.remove(self)
        for handler in list(self._callbacks.values()):
            DISPATCHER.set_live(handler, False)

    def _ensure_started(self) -> None:
        if not self._started:
            self.start()

    def __enter__(self) -> "NoPdb":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- low-level callbacks -----------------------------------------------------------
    def _add_handler(self, handler: Handler, owner: Any = None) -> Handle:
        handle = Handle()
        self._callbacks[handle] = handler
        if owner is not None:
            self._owners[handle] = owner
        if self._started:
            DISPATCHER.set_live(handler, True)
        return handle

    def add_callback(self, scope: Scope, callback: TraceFunc, events: Iterable[str]) -> Handle:
        """Register a low-level callback with :func:`sys.settrace`'s signature.

        Args:
            scope: where the callback is active.
            callback: called as ``callback(frame, event, arg)``; its return value is
                ignored.
            events: any of ``'call'``, ``'line'``, ``'return'``, ``'exception'``.
                ``'exception'`` fires when an exception leaves the frame (not for
                exceptions caught inside it); ``'return'`` fires on return, yield and
                exception exit (``arg`` is ``None`` for the latter, as with settrace).
        """
        wanted = set(events)
        unknown = wanted - set(ev.SETTRACE_TO_EVENTS)
        if unknown:
            raise ValueError(
                f"unknown event(s) {sorted(unknown)}; expected call, line, return, exception"
            )
        ours = frozenset().union(*(ev.SETTRACE_TO_EVENTS[e] for e in wanted))

        def translate(frame: FrameType, event: str, arg: Any) -> None:
            if event in (ev.CALL, ev.RESUME):
                callback(frame, "call", None)
            elif event == ev.LINE:
                callback(frame, "line", None)
            elif event in (ev.RETURN, ev.YIELD):
                callback(frame, "return", arg)
            else:  # UNWIND
                if "exception" in wanted:
                    callback(frame, "exception", (type(arg), arg, arg.__traceback__))
                if "return" in wanted:
                    callback(frame, "return", None)

        return self._add_handler(Handler(scope=scope, events=ours, callback=translate))

    def remove_callback(self, handle: Handle) -> None:
        """Remove a callback added with :meth:`add_callback`."""
        handler = self._callbacks.pop(handle)
        self._owners.pop(handle, None)
        if self._started:
            DISPATCHER.set_live(handler, False)

    # -- the public API ----------------------------------------------------------------
    def capture_call(
        self,
        function: Union[Callable[..., Any], str] | None = None,
        *,
        module: ModuleType | None = None,
        file: Union[str, "os.PathLike[str]"] | None = None,
        unwrap: bool = True,
        snapshot: SnapshotSpec = False,
        grads: gradients.GradSpec = False,
    ) -> CallCapture:
        """Capture the last call to finish of a function.

        Args:
            function: a Python callable or a function name. A bound method (e.g.
                ``model.blocks[4].attn.forward``) matches only calls on that instance.
            module: only functions defined in this module.
            file: a glob pattern string or an exact path-like.
            unwrap: follow ``__wrapped__`` of decorated callables.
            snapshot: keep references (``False``, NoPdb's behaviour), or copy tensors
                and arrays at capture time (``True``: clone on their device; ``"cpu"``
                or a device: copy there).
            grads: keep the gradients that later backward passes bring to the captured
                tensors: ``True`` for every tensor that requires grad among the
                arguments, locals and return value, or a list of names (``"return"``
                for the return value). They land in ``CallInfo.grads``, copied to the
                ``snapshot`` device if one is given, and accumulate over several
                backward passes as ``.grad`` does.

        Returns:
            A :class:`CallInfo` updated as calls finish; also a context manager.
        """
        return CallCapture(
            self,
            Scope(function, module, file, unwrap=unwrap),
            make_snapshotter(snapshot),
            gradients.normalize_spec(grads),
            gradients.snapshot_device(snapshot),
        )

    def capture_calls(
        self,
        function: Union[Callable[..., Any], str] | None = None,
        *,
        module: ModuleType | None = None,
        file: Union[str, "os.PathLike[str]"] | None = None,
        unwrap: bool = True,
        snapshot: SnapshotSpec = False,
        grads: gradients.GradSpec = False,
    ) -> CallListCapture:
        """Capture every call of a function: a list of :class:`CallInfo`, in finishing order.

        Arguments as for :meth:`capture_call`.
        """
        return CallListCapture(
            self,
            Scope(function, module, file, unwrap=unwrap),
            make_snapshotter(snapshot),
            gradients.normalize_spec(grads),
            gradients.snapshot_device(snapshot),
        )

    def breakpoint(
        self,
        function: Union[Callable[..., Any], str] | None = None,
        *,
        module: ModuleType | None = None,
        file: Union[str, "os.PathLike[str]"] | None = None,
        line: Union[int, str] | None = None,
        cond: Union[str, bytes, CodeType] | None = None,
        unwrap: bool = True,
        keep_locals: bool = False,
        max_hits: int | None = None,
        grads: gradients.GradSpec = False,
    ) -> Breakpoint:
        """Set a non-stopping breakpoint; schedule actions with ``eval``/``exec``/``debug``.

        Args:
            function, module, file, unwrap: where, as for :meth:`capture_call`; at least
                one is needed, and a line is needed when no function is given.
            line: a line number (counted from the top of the file or cell) or the exact
                text of the line (surrounding whitespace ignored); ``None`` breaks when
                the function is called. Checked now: a line without code, outside the
                function, or a text matching no line or several lines raises
                ``ValueError``.
            cond: an expression; the breakpoint fires only where it is true.
            keep_locals: store a copy of the frame's locals on every hit.
            max_hits: stop firing after this many hits.
            grads: names of locals (or ``True`` for every tensor local that requires
                grad) whose value at the line gets its gradient on each hit
                (``hit.grads[name]``), e.g. the scores before ``attn.softmax(-1)``.
        """
        return Breakpoint(
            self,
            Scope(function, module, file, unwrap=unwrap),
            line=line,
            cond=cond,
            keep_locals=keep_locals,
            max_hits=max_hits,
            grads=grads,
        )


def get_nopdb() -> NoPdb:
    """The :class:`NoPdb` most recently started in this thread, else this thread's default."""
    if _thread.started:
        return _thread.started[-1]
    if _thread.default is None:
        _thread.default = NoPdb()
    return _thread.default


_SIGNATURES = NoPdb()  # only lends its bound methods' signatures and docs


@functools.wraps(_SIGNATURES.capture_call)
def capture_call(*args: Any, **kwargs: Any) -> CallCapture:
    return get_nopdb().capture_call(*args, **kwargs)


@functools.wraps(_SIGNATURES.capture_calls)
def capture_calls(*args: Any, **kwargs: Any) -> CallListCapture:
    return get_nopdb().capture_calls(*args, **kwargs)


@functools.wraps(_SIGNATURES.breakpoint)
def breakpoint(*args: Any, **kwargs: Any) -> Breakpoint:
    return get_nopdb().breakpoint(*args, **kwargs)
