"""Breakpoints that the JupyterLab front end sets, edits and removes through the comm.

The front end owns the list (it lives in the notebook's metadata); the kernel holds one
:class:`ManagedBreakpoint` per entry and reports its state:

``active``
    the breakpoint is installed and the kernel has the code at its line;
``pending``
    installed, but the kernel has no code for it yet: a notebook cell that was edited
    or not run so far. It turns active by itself once the cell runs;
``disabled``
    kept but not installed;
``error``
    cannot be installed: a line with no code, a syntax error in the condition or an
    action, an unknown instance. ``message`` says what, ``field`` where.

A cell breakpoint names the cell by its source: ipykernel compiles each cell to a file
named after a hash of its text, so the same text always gets the same file, and lines
inside functions defined in the cell fire whenever those functions run.
"""

from __future__ import annotations

import linecache
import os
import pathlib
import threading
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, Callable, Dict, Iterable, List

from ..breakpoint import Breakpoint
from ..capture_store import CaptureStore
from ..nopdb import NoPdb
from ..tracing import lines as line_resolution
from ..tracing.scope import Scope

STATES = ("active", "pending", "disabled", "error")
Listener = Callable[[List[str]], None]


class SpecError(ValueError):
    """A breakpoint request that is malformed (not a user mistake in a field)."""


@dataclass
class BreakpointSpec:
    """What the front end asks for; one of ``source`` (a cell's text) or ``file``."""

    id: str
    line: int
    source: str | None = None
    file: str | None = None
    enabled: bool = True
    condition: str = ""
    evals: List[str] = field(default_factory=list)
    exec: str = ""
    keep_locals: bool = True
    max_hits: int | None = None
    #: names of locals whose gradient each hit keeps (empty: follow the panel's switch)
    grads: List[str] = field(default_factory=list)
    instance: int | None = None
    #: Which front-end document set it (a notebook path): :meth:`BreakpointManager.sync`
    #: replaces only that owner's breakpoints when several notebooks share a kernel.
    owner: str = ""

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "BreakpointSpec":
        """Parse a request's ``breakpoint`` object; :class:`SpecError` names what is wrong."""
        if not isinstance(data, dict):
            raise SpecError(f"a breakpoint must be an object, got {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise SpecError(f"unknown breakpoint field(s): {', '.join(sorted(unknown))}")
        spec = cls(**data)
        if not isinstance(spec.id, str) or not spec.id:
            raise SpecError("a breakpoint needs a non-empty string id")
        if (spec.source is None) == (spec.file is None):
            raise SpecError(f"breakpoint {spec.id}: give exactly one of source (a cell) or file")
        if isinstance(spec.line, bool) or not isinstance(spec.line, int):
            raise SpecError(f"breakpoint {spec.id}: line must be an integer, got {spec.line!r}")
        if not isinstance(spec.evals, list) or not all(isinstance(e, str) for e in spec.evals):
            raise SpecError(f"breakpoint {spec.id}: evals must be a list of strings")
        if not isinstance(spec.grads, list) or not all(isinstance(g, str) for g in spec.grads):
            raise SpecError(f"breakpoint {spec.id}: grads must be a list of local names")
        if spec.max_hits is not None and (
            isinstance(spec.max_hits, bool) or not isinstance(spec.max_hits, int)
        ):
            raise SpecError(f"breakpoint {spec.id}: max_hits must be an integer or null")
        return spec


class ManagedBreakpoint:
    """One front-end breakpoint: its spec, the tracer breakpoint (if any) and its state."""

    def __init__(self, spec: BreakpointSpec) -> None:
        self.spec = spec
        self.tracer: Breakpoint | None = None
        self.file: str | None = spec.file
        self.function: str | None = None
        self.state = "pending"
        self.message = ""
        self.field = ""
        # hits of this id's earlier versions (before an edit, a page load's re-sync):
        # the front end's capture list still shows them, so the count must not drop to 0
        self.earlier_hits = 0

    @property
    def hits(self) -> int:
        """Hits since the breakpoint was last set (what ``max_hits`` counts)."""
        return 0 if self.tracer is None else self.tracer.hit_count

    @property
    def total_hits(self) -> int:
        """Hits of every version of this breakpoint id in this kernel."""
        return self.earlier_hits + self.hits

    def fail(self, field_name: str, message: str) -> None:
        self.state, self.field, self.message = "error", field_name, message

    def to_json(self) -> Dict[str, Any]:
        """The state the front end shows (marker, list row, editor errors)."""
        return {
            "id": self.spec.id,
            "state": self.state,
            "message": self.message,
            "field": self.field,
            "hits": self.hits,
            "file": self.file,
            "line": self.spec.line,
            "function": self.function,
            "total_hits": self.total_hits,
        }


def cell_filename(source: str) -> str:
    """The file name ipykernel gives the code of a cell with this text."""
    shell = _shell()
    from IPython.core.compilerop import CachingCompiler

    if type(shell.compile).get_code_name is CachingCompiler.get_code_name:
        raise SpecError(
            "cell breakpoints need ipykernel (this shell names cells by execution count)"
        )
    return shell.compile.get_code_name(source, source, 0)


def is_cell_file(file: str, text: str) -> bool:
    """Whether ``file`` is the file ipykernel compiled a cell with this ``text`` to."""
    try:
        if os.path.dirname(file) != os.path.dirname(cell_filename("")):
            return False  # not in the kernel's cell directory: skip hashing a big file
        # linecache holds the cell as IPython transformed it: a final newline added
        candidates = {text, text[:-1]} if text.endswith("\n") else {text}
        return any(cell_filename(candidate) == file for candidate in candidates)
    except SpecError:
        return False


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        raise SpecError("cell breakpoints need IPython in the kernel") from None
    shell = get_ipython()
    if shell is None:
        raise SpecError("cell breakpoints need an IPython kernel")
    return shell


def _compile_cell(source: str, filename: str) -> CodeType:
    shell = _shell()
    return compile(shell.transform_cell(source), filename, "exec", dont_inherit=True)


def _compile_file(filename: str) -> CodeType | None:
    text = "".join(linecache.getlines(filename))
    if not text:
        raise ValueError(f"no source available for {filename!r}")
    try:
        return compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError:
        return None  # e.g. a file of another Python version; the tracer still checks lines


class BreakpointManager:
    """The kernel's set of front-end breakpoints (one per kernel, shared by all comms)."""

    def __init__(self, record_store: CaptureStore) -> None:
        self.store = record_store
        self.nopdb = NoPdb()
        self.nopdb.start(as_default=False)  # the user's bare captures stay their own
        self._by_id: Dict[str, ManagedBreakpoint] = {}
        self._by_tracer: Dict[int, str] = {}
        self._listeners: List[Listener] = []
        self._lock = threading.RLock()
        self._file_code: Dict[str, CodeType | None] = {}
        self._earlier_hits: Dict[str, int] = {}
        record_store.add_listener(self._on_store_event)

    # -- requests -------------------------------------------------------------------
    def set(self, data: Dict[str, Any]) -> Dict[str, Any]:
        """Create or replace the breakpoint ``data["id"]``; returns its state."""
        spec = BreakpointSpec.from_json(data)
        with self._lock:
            self._uninstall(spec.id)
            managed = self._install(spec)
            self._by_id[spec.id] = managed
        return managed.to_json()

    def remove(self, breakpoint_id: str) -> None:
        """Remove one breakpoint; removing an unknown id is an error that names it."""
        with self._lock:
            if breakpoint_id not in self._by_id:
                raise KeyError(f"no breakpoint {breakpoint_id!r}")
            self._uninstall(breakpoint_id)
            del self._by_id[breakpoint_id]

    def sync(self, items: Iterable[Dict[str, Any]], owner: str = "") -> List[Dict[str, Any]]:
        """Replace ``owner``'s breakpoints with ``items`` (after a restart or a page load).

        Breakpoints of other owners (another notebook on the same kernel) stay.
        """
        specs = [BreakpointSpec.from_json({**item, "owner": owner}) for item in items]
        with self._lock:
            for breakpoint_id, managed in list(self._by_id.items()):
                if managed.spec.owner == owner:
                    self.remove(breakpoint_id)
            return [self.set(spec.__dict__) for spec in specs]

    def clear(self) -> None:
        """Remove every breakpoint."""
        with self._lock:
            for breakpoint_id in list(self._by_id):
                self.remove(breakpoint_id)

    def states(self, ids: Iterable[str] | None = None) -> List[Dict[str, Any]]:
        """States of ``ids`` (default: all), in the order they were set."""
        with self._lock:
            chosen = self._by_id.keys() if ids is None else [i for i in ids if i in self._by_id]
            return [self._by_id[i].to_json() for i in chosen]

    def id_of(self, tracer: Any) -> str | None:
        """The front-end id of a tracer :class:`Breakpoint`, if it is one of ours."""
        return self._by_tracer.get(id(tracer))

    # -- notifications ----------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(ids)`` when breakpoints change state or count hits."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, ids: List[str]) -> None:
        if ids:
            for listener in list(self._listeners):
                listener(ids)

    def _on_store_event(self, kind: str, record: Any) -> None:
        origin = record.origin() if kind == "added" else None
        if origin is not None:  # a hit
            breakpoint_id = self.id_of(origin)
            if breakpoint_id is not None:
                self._notify([breakpoint_id])

    def after_cell(self) -> None:
        """Re-check pending cell breakpoints once a cell has run (IPython post_execute)."""
        changed = []
        with self._lock:
            for managed in self._by_id.values():
                if managed.state == "pending" and managed.file in linecache.cache:
                    managed.state, managed.message = "active", ""
                    changed.append(managed.spec.id)
        self._notify(changed)

    # -- installing -------------------------------------------------------------------
    def _uninstall(self, breakpoint_id: str) -> None:
        managed = self._by_id.get(breakpoint_id)
        if managed is not None:
            self._earlier_hits[breakpoint_id] = managed.total_hits
        if managed is not None and managed.tracer is not None:
            managed.tracer.disable()
            self._by_tracer.pop(id(managed.tracer), None)

    def _install(self, spec: BreakpointSpec) -> ManagedBreakpoint:
        managed = ManagedBreakpoint(spec)
        managed.earlier_hits = self._earlier_hits.get(spec.id, 0)
        try:
            if spec.source is not None:
                scope, known = self._cell_scope(managed, spec.source)
            else:
                scope, known = self._file_scope(managed, str(spec.file))
            for index, text in enumerate(spec.evals):
                if not text.strip():
                    managed.fail(f"evals.{index}", f"evaluate #{index + 1} is empty")
                    return managed
            tracer = self._make_tracer(managed, scope)
        except _FieldError as exc:
            managed.fail(exc.field, exc.message)
            return managed
        if not spec.enabled:
            tracer.disable()
            managed.state = "disabled"
            return managed
        managed.tracer = tracer
        self._by_tracer[id(tracer)] = spec.id
        if known:
            managed.state = "active"
        else:
            managed.state = "pending"
            managed.message = "this version of the cell has not run yet"
        return managed

    def _cell_scope(self, managed: ManagedBreakpoint, source: str) -> tuple[Scope, bool]:
        filename = cell_filename(source)
        managed.file = filename
        line = managed.spec.line
        try:
            code = _compile_cell(source, filename)
        except SyntaxError as exc:
            raise _FieldError(
                "source", f"the cell does not compile (line {exc.lineno}: {exc.msg})"
            ) from None
        self._check_line(managed, code, len(source.splitlines()), "the cell")
        managed.function = line_resolution.innermost_function(code, line)
        return Scope(file=filename, instance=self._instance(managed)), filename in linecache.cache

    def _file_scope(self, managed: ManagedBreakpoint, filename: str) -> tuple[Scope, bool]:
        if filename not in self._file_code:
            try:
                self._file_code[filename] = _compile_file(filename)
            except ValueError as exc:
                raise _FieldError("file", str(exc)) from None
        code = self._file_code[filename]
        if code is not None:
            self._check_line(managed, code, len(linecache.getlines(filename)), filename)
            managed.function = line_resolution.innermost_function(code, managed.spec.line)
        return Scope(file=pathlib.Path(filename), instance=self._instance(managed)), True

    @staticmethod
    def _check_line(managed: ManagedBreakpoint, code: CodeType, length: int, where: str) -> None:
        line = managed.spec.line
        if not 1 <= line <= length:
            raise _FieldError("line", f"line {line} is outside {where} (1-{length})")
        lines = line_resolution.all_executable_lines(code)
        if line not in lines:
            raise _FieldError(
                "line",
                f"line {line} has no code to break at (blank, comment, or inside a "
                f"multi-line statement); {line_resolution.nearest(line, lines)}",
            )

    def _instance(self, managed: ManagedBreakpoint) -> Any:
        capture_id = managed.spec.instance
        if capture_id is None:
            return None
        try:
            record = self.store[capture_id]
        except KeyError:
            raise _FieldError("instance", f"capture #{capture_id} is not in the store") from None
        for part in ("args", "locals"):
            values = getattr(record, part, None) or {}
            if "self" in values:
                return values["self"]
        raise _FieldError("instance", f"capture #{capture_id} has no self (not a method call)")

    def _make_tracer(self, managed: ManagedBreakpoint, scope: Scope) -> Breakpoint:
        """The tracer breakpoint; a syntax error is reported against its field."""
        spec = managed.spec
        if spec.max_hits is not None and spec.max_hits < 1:
            raise _FieldError("max_hits", f"max hits must be at least 1, got {spec.max_hits}")
        names = [g.strip() for g in spec.grads if g.strip()]
        bad = [g for g in names if not g.isidentifier()]
        if bad:
            raise _FieldError("grads", f"not a local variable name: {', '.join(bad)}")
        try:
            tracer = Breakpoint(
                self.nopdb,
                scope,
                line=spec.line,
                cond=spec.condition if spec.condition.strip() else None,
                keep_locals=spec.keep_locals,
                max_hits=spec.max_hits,
                grads=names or False,
                follow_gradient_switch=True,
                check_line=False,
                log_errors=False,  # the capture browser shows them on each hit
            )
        except SyntaxError as exc:
            raise _FieldError("condition", str(exc.msg)) from None
        field_name = ""
        try:
            for index, text in enumerate(spec.evals):
                field_name = f"evals.{index}"
                tracer.eval(text)
            if spec.exec.strip():
                field_name = "exec"
                tracer.exec(spec.exec)
        except SyntaxError as exc:
            tracer.disable()
            raise _FieldError(field_name, str(exc.msg)) from None
        return tracer


class _FieldError(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message
