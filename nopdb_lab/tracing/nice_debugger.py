"""An interactive debugger that gives tracing back when the user continues.

``pdb.Pdb.set_trace`` installs its own ``sys.settrace`` function and local tracers on
every frame of the stack. When the user continues (or quits) we put back what was there
before, so the program and any other tracing tool go on as if nothing happened.
"""

from __future__ import annotations

import bdb
import sys
from types import FrameType
from typing import Any, Dict, Tuple, Type


def make_nice_debugger(frame: FrameType, cls: Type[bdb.Bdb], kwargs: Dict[str, Any]) -> Any:
    """An instance of a subclass of ``cls`` that restores tracing state on continue/quit."""

    class NiceDebugger(cls):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            self._orig_trace = sys.gettrace()
            self._orig_local: Dict[int, Tuple[FrameType, Any]] = {}
            f: FrameType | None = frame
            while f is not None:
                self._orig_local[id(f)] = (f, f.f_trace)
                f = f.f_back
            super().__init__(**kwargs)

        def set_continue(self) -> None:
            super().set_continue()
            if sys.gettrace() is None:
                self._restore()

        def trace_dispatch(self, frame: FrameType, event: str, arg: Any) -> Any:
            self._orig_local.setdefault(id(frame), (frame, frame.f_trace))
            try:
                return super().trace_dispatch(frame, event, arg)
            except bdb.BdbQuit:
                self._restore()
                return None

        def _restore(self) -> None:
            for f, trace in self._orig_local.values():
                f.f_trace = trace
            self._orig_local.clear()
            sys.settrace(self._orig_trace)

    return NiceDebugger()
