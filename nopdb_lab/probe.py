"""Probes: a named, re-runnable objective on editable inputs, and the runs it made.

vnittest's loop (edit a cell of the input, save, re-run the network elsewhere, reload)
happens here in the live kernel::

    probe = nopdb_lab.probe("cls", lambda x: model(x)[:, 281], x=img)  # run 1
    probe.inputs["x"][0, :, 3, 5] = 1.0     # edit in place
    run = probe.rerun()                     # run 2
    run.edits["x"].indices                  # exactly the elements that changed
    run.output, run.gradients["x"], run.captures

The objective returns one scalar per batch row (as Captum's ``forward_func`` with a
``target``), so attribution methods (:func:`nopdb_lab.attribute`) can run their steps
batched. Every run is a record of kind ``"run"`` in the capture store, so the capture
browser lists it and the heatmap viewer opens its inputs, output, gradients and edits.

:class:`Line` names a statement inside a function (``Line(model.forward, "x = self.embed(
...)")``); :func:`tap_local` reads, or replaces, the local that statement assigns, right
after it ran, through the same tracing machinery as breakpoints (the frame's locals are
written back as a breakpoint's ``exec`` does).

torch is imported only when a probe runs, so importing nopdb_lab stays torch-free.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import re
import textwrap
import threading
import time
import traceback
from contextlib import contextmanager
from types import CodeType, FrameType
from typing import Any, Callable, Dict, Iterator, List, Union

from .call_info import RawStack, next_id, raw_stack, stack_summary
from .nopdb import NoPdb
from .records import EventRecord
from .tracing import observers
from .tracing.frame_locals import read_locals, write_locals
from .tracing.scope import Scope, code_and_self

__all__ = ["Line", "Probe", "ProbeError", "Run", "RunRecord", "get_probe", "probe", "probes"]

probes: Dict[str, "Probe"] = {}
"""Every probe by name (the newest of a name wins), for the JupyterLab front end."""


class ProbeError(RuntimeError):
    """The probe's objective raised or returned something that is not one scalar per row."""


# -- editing: what changed between two runs ---------------------------------------------
class Edit:
    """The elements of one input that differ from the run before.

    Attributes: ``indices`` (k × ndim index tensor of the changed elements, row-major
    order), ``before`` and ``after`` (their k values), ``mask`` (bool, the input's shape),
    ``previous`` (the number of the run compared with, or None for the first run).
    """

    def __init__(self, before: Any, after: Any, previous: int | None) -> None:
        import torch

        if before is None:
            mask = torch.zeros(after.shape, dtype=torch.bool, device=after.device)
        elif before.shape != after.shape:  # the whole input was replaced by another shape
            mask = torch.ones(after.shape, dtype=torch.bool, device=after.device)
        else:
            # NaN == NaN counts as unchanged: an untouched NaN is not an edit
            same = before == after
            if after.is_floating_point() or after.is_complex():
                same |= before.isnan() & after.isnan()
            mask = ~same
        self.mask = mask
        self.indices = mask.nonzero()
        self.after = after[mask]
        self.before = before[mask] if before is not None and before.shape == after.shape else None
        self.previous = previous

    @property
    def count(self) -> int:
        return int(self.indices.shape[0])

    def __repr__(self) -> str:
        return f"Edit({self.count} element(s) changed vs run {self.previous})"


def _snapshot(value: Any) -> Any:
    """A detached copy of a tensor (an edit to the probe's input must not reach a run)."""
    if _is_tensor(value):
        return value.detach().clone()
    return value


def _is_tensor(value: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


# -- runs -------------------------------------------------------------------------------
class Run:
    """One evaluation of a probe: numbered, with what it saw and what it produced.

    Attributes: ``number`` (1 for the run made when the probe was created), ``inputs``
    (copies of the inputs as they were), ``edits`` (name → :class:`Edit` vs the run
    before), ``output`` (one scalar per batch row, detached), ``gradients`` (name → the
    gradient of the summed output with respect to each floating-point input; empty with
    ``gradients_note`` saying why when there are none), ``captures`` (ids of the
    captures, hits and attention records published while it ran), ``seconds``,
    ``record`` (its :class:`RunRecord` in the store).
    """

    def __init__(self, probe: "Probe", number: int) -> None:
        self.probe_name = probe.name
        self.number = number
        self.inputs: Dict[str, Any] = {}
        self.edits: Dict[str, Edit] = {}
        self.output: Any = None
        self.gradients: Dict[str, Any] = {}
        self.gradients_note: str | None = None
        self.captures: List[int] = []
        self.seconds = 0.0
        self.record: RunRecord | None = None

    def diff(self, other: "Run") -> Dict[str, Edit]:
        """Name → :class:`Edit` from ``other``'s inputs to this run's."""
        return {
            name: Edit(other.inputs.get(name), value, other.number)
            for name, value in self.inputs.items()
            if _is_tensor(value)
        }

    def __repr__(self) -> str:
        edits = sum(e.count for e in self.edits.values())
        return (
            f"Run({self.probe_name!r} #{self.number}, {edits} edited element(s), "
            f"output={tuple(getattr(self.output, 'shape', ()))}, captures={len(self.captures)})"
        )


class RunRecord(EventRecord):
    """A run in the capture store (kind ``"run"``): what the capture browser lists.

    ``locals`` holds ``inputs``, ``output``, ``gradients``, ``changed`` (name → bool mask
    of the edited elements), ``delta`` (name → after − before, zero where unchanged),
    ``captures`` (ids), ``run`` and ``previous`` (run numbers), so the heatmap viewer can
    open any of them by path (``["locals", "inputs", "x"]``).
    """

    kind = "run"

    def __init__(self, run: Run, objective: Callable[..., Any], stack: RawStack) -> None:
        code = getattr(inspect.unwrap(objective), "__code__", None)
        self.id = next_id()
        self.time = time.time()
        # one group per probe in the capture browser (it groups by qualname), and runs of
        # one probe share kind, qualname and file, so they stack (stacking.stack_captures)
        self.name = f"run {run.number}"
        self.qualname = f"probe {run.probe_name!r}"
        self.file = code.co_filename if code is not None else "<probe>"
        self.line = code.co_firstlineno if code is not None else 0
        self.thread = threading.current_thread().name
        self.errors: List[Any] = []
        self.raw_stack = stack
        self.run = run
        changed = {name: e.mask for name, e in run.edits.items()}
        delta = {}
        for name, edit in run.edits.items():
            after = run.inputs[name]
            if edit.before is not None and after.is_floating_point():
                d = after.new_zeros(after.shape)
                d[edit.mask] = edit.after - edit.before
                delta[name] = d
        self.locals: Dict[str, Any] = {
            "inputs": dict(run.inputs),
            "output": run.output,
            "gradients": dict(run.gradients),
            "changed": changed,
            "delta": delta,
            "edited": {name: e.count for name, e in run.edits.items()},
            "captures": list(run.captures),
            "run": run.number,
            "previous": None if run.number == 1 else run.number - 1,
        }

    @property
    def stack(self) -> traceback.StackSummary:
        return stack_summary(self.raw_stack)

    def __repr__(self) -> str:
        return f"RunRecord(id={self.id}, {self.qualname})"


# -- the probe --------------------------------------------------------------------------
class Probe:
    """A named objective on editable inputs; see the module doc and :func:`probe`.

    ``inputs`` are the probe's own copies (edit them in place, or assign new tensors);
    ``runs`` lists every successful run, oldest first.
    """

    def __init__(
        self, name: str, objective: Callable[..., Any], inputs: Dict[str, Any], gradients: bool
    ) -> None:
        if not callable(objective):
            raise TypeError(f"the probe's objective must be callable, got {objective!r}")
        if not inputs:
            raise TypeError("a probe needs at least one named input (probe(name, fn, x=...))")
        self.name = name
        self.objective = objective
        self.inputs: Dict[str, Any] = {k: _snapshot(v) for k, v in inputs.items()}
        self.gradients = gradients
        self.runs: List[Run] = []
        self._next_number = 1
        self._lock = threading.RLock()

    @property
    def last(self) -> Run:
        """The newest run."""
        if not self.runs:
            raise ProbeError(f"probe {self.name!r} has not run yet; call probe.rerun()")
        return self.runs[-1]

    def run_number(self, number: int | None) -> Run:
        """Run ``number`` (the newest when None)."""
        if number is None:
            return self.last
        for run in self.runs:
            if run.number == number:
                return run
        raise ProbeError(
            f"probe {self.name!r} has no run {number} (runs: {[r.number for r in self.runs]})"
        )

    def reset(self) -> None:
        """Put the inputs back as they were at the first run (edits undone, not re-run)."""
        first = self.runs[0] if self.runs else None
        if first is None:
            return
        for name, value in first.inputs.items():
            self.inputs[name] = _snapshot(value)

    def call(self, inputs: Dict[str, Any]) -> Any:
        """The objective on ``inputs``, checked to give one scalar per batch row."""
        try:
            out = self.objective(**inputs)
        except Exception as exc:
            raise ProbeError(
                f"probe {self.name!r}: the objective raised {type(exc).__name__}: {exc}"
            ) from exc
        return check_output(self.name, out, batch_size(inputs))

    def rerun(self, gradients: bool | None = None) -> Run:
        """Evaluate the objective on the current inputs as the next numbered run.

        Keeps the run's inputs, its edits vs the previous run, the output, the gradient
        of the summed output with respect to every floating-point input (unless
        ``gradients=False``), and the ids of everything captured while it ran; adds a
        :class:`RunRecord` to the store. If the objective raises, :class:`ProbeError`
        says so, and nothing is numbered or recorded (the store and the earlier runs
        are untouched).
        """
        import torch

        want_grads = self.gradients if gradients is None else gradients
        with self._lock:
            caller = raw_stack(inspect.currentframe().f_back)  # type: ignore[union-attr]
            run = Run(self, self._next_number)
            run.inputs = {k: _snapshot(v) for k, v in self.inputs.items()}
            previous = self.runs[-1] if self.runs else None
            if previous is None:
                run.edits = {k: Edit(None, v, None) for k, v in run.inputs.items() if _is_tensor(v)}
            else:
                run.edits = run.diff(previous)
            call_inputs = dict(run.inputs)
            grad_names = []
            if want_grads:
                for k, v in run.inputs.items():
                    if _is_tensor(v) and (v.is_floating_point() or v.is_complex()):
                        call_inputs[k] = v.detach().clone().requires_grad_(True)
                        grad_names.append(k)
            seen: List[int] = []

            def collect(record: Any) -> None:
                seen.append(record.id)

            started = time.perf_counter()
            observers.subscribe(collect)
            try:
                with torch.enable_grad():
                    out = self.call(call_inputs)
                    if grad_names and out.requires_grad:
                        grads = torch.autograd.grad(
                            out.sum(), [call_inputs[k] for k in grad_names], allow_unused=True
                        )
                        for k, g in zip(grad_names, grads, strict=True):
                            run.gradients[k] = (
                                torch.zeros_like(call_inputs[k]) if g is None else g.detach()
                            )
                    elif want_grads:
                        run.gradients_note = (
                            "no floating-point tensor input to differentiate"
                            if not grad_names
                            else "the output does not require grad (the objective ran "
                            "under torch.no_grad() or detached its result)"
                        )
            finally:
                observers.unsubscribe(collect)
            run.seconds = time.perf_counter() - started
            run.output = out.detach()
            run.captures = seen
            self._next_number += 1
            self.runs.append(run)
            run.record = RunRecord(run, self.objective, caller)
            observers.publish(run.record)
            return run

    def __repr__(self) -> str:
        shapes = {k: tuple(getattr(v, "shape", ())) for k, v in self.inputs.items()}
        return f"Probe({self.name!r}, inputs={shapes}, runs={len(self.runs)})"


def batch_size(inputs: Dict[str, Any]) -> int:
    """The batch size: the first dimension of the first tensor input (1 for a 0-d one)."""
    for value in inputs.values():
        if _is_tensor(value):
            return int(value.shape[0]) if value.dim() else 1
    return 1


def check_output(name: str, out: Any, rows: int) -> Any:
    """``out`` as a 1-D tensor of ``rows`` scalars, or a :class:`ProbeError` saying why."""
    if not _is_tensor(out):
        raise ProbeError(
            f"probe {name!r}: the objective must return a tensor with one scalar per batch "
            f"row, got {type(out).__name__}"
        )
    if out.dim() == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.dim() == 0 and rows == 1:
        out = out.reshape(1)
    if out.dim() != 1 or out.shape[0] != rows:
        raise ProbeError(
            f"probe {name!r}: the objective must return one scalar per batch row ({rows} "
            f"row(s)), got shape {tuple(out.shape)}; select a logit, e.g. "
            "lambda x: model(x)[:, 281]"
        )
    return out


def probe(
    name: str, objective: Callable[..., Any], *, gradients: bool = True, **inputs: Any
) -> Probe:
    """Create (and run once, as run 1) a named probe: ``objective(**inputs)`` giving one
    scalar per batch row. A probe of the same name is replaced. See the module doc."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a probe needs a non-empty name, got {name!r}")
    made = Probe(name, objective, inputs, gradients)
    made.rerun()
    probes[name] = made
    return made


def get_probe(name: str) -> Probe:
    """The probe called ``name``."""
    try:
        return probes[name]
    except KeyError:
        raise KeyError(f"no probe named {name!r} (probes: {sorted(probes)})") from None


# -- a statement inside a function, and its local ---------------------------------------
class Line:
    """A statement in a function, and the local variable it assigns.

    ``line`` is a line number or the statement's text; in the text, ``...`` stands for
    anything (``"x = self.embeddings(...)"`` matches a call whose arguments span several
    lines), and whitespace is not significant. ``name`` is the local to read; by default
    the statement's single assignment target. The local is read right after the
    statement finished, at the next line that runs in the same frame.

    ``function`` is a callable (a bound method matches only calls on its instance).
    """

    def __init__(
        self, function: Callable[..., Any], line: Union[int, str], name: str | None = None
    ) -> None:
        code, _ = code_and_self(function, unwrap=True)
        if code is None:
            raise TypeError(f"Line needs a Python function or method, got {function!r}")
        self.function = function
        self.code: CodeType = code
        self.text = line
        statement = _find_statement(code, line)
        self.first, self.last = statement.lineno, statement.end_lineno or statement.lineno
        target = _assigned_name(statement)
        if name is None:
            if target is None:
                raise ValueError(
                    f"line {self.first} of {_where(code)} assigns no single local; pass "
                    "name= to say which local to use"
                )
            name = target
        self.name = name

    def describe(self) -> str:
        return f"{self.name!r} after line {self.first} of {_where(self.code)}"

    def __repr__(self) -> str:
        return f"Line({_where(self.code)}, line {self.first}, local {self.name!r})"


def _where(code: CodeType) -> str:
    return f"{getattr(code, 'co_qualname', code.co_name)} ({code.co_filename})"


def _function_statements(code: CodeType) -> List[ast.stmt]:
    """Every statement of the function whose code is ``code``, with file line numbers."""
    lines = linecache.getlines(code.co_filename)
    if not lines:
        raise ValueError(f"no source for {_where(code)}; Line needs the function's source")
    try:
        source, start = inspect.getsourcelines(code)
    except (OSError, TypeError) as exc:
        raise ValueError(f"no source for {_where(code)}: {exc}") from None
    tree = ast.parse(textwrap.dedent("".join(source)))
    out: List[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        ):
            node.lineno += start - 1
            node.end_lineno = (node.end_lineno or node.lineno - start + 1) + start - 1
            out.append(node)
    return out


def _normalise(text: str) -> str:
    return re.sub(r"\s+", "", text)


_COMPOUND = tuple(
    getattr(ast, name)
    for name in ("If", "For", "AsyncFor", "While", "With", "AsyncWith", "Try", "TryStar", "Match")
    if hasattr(ast, name)
)


def _find_statement(code: CodeType, line: Union[int, str]) -> ast.stmt:
    statements = _function_statements(code)
    if isinstance(line, bool) or not isinstance(line, (int, str)):
        raise TypeError(f"line must be a line number or a statement's text, got {line!r}")
    if isinstance(line, int):
        found = [s for s in statements if s.lineno == line]
        if not found:
            raise ValueError(f"no statement of {_where(code)} starts at line {line}")
        return found[-1]  # the innermost (a compound statement's body starts later)
    text = _normalise(line)
    if not text:
        raise ValueError("the line text is empty")
    pattern = re.compile("^" + ".*".join(re.escape(p) for p in text.split("...")) + "$", re.S)
    matches = []
    for s in statements:
        if isinstance(s, _COMPOUND):
            continue  # its own text includes its body
        source = "".join(
            linecache.getline(code.co_filename, n)
            for n in range(s.lineno, (s.end_lineno or s.lineno) + 1)
        )
        first = linecache.getline(code.co_filename, s.lineno)
        if pattern.match(_normalise(source)) or _normalise(first) == text:
            matches.append(s)
    if not matches:
        raise ValueError(f"no statement of {_where(code)} reads {line!r}")
    if len(matches) > 1:
        where = ", ".join(str(s.lineno) for s in matches)
        raise ValueError(
            f"{len(matches)} statements of {_where(code)} read {line!r} (lines {where}); "
            "pass a line number instead"
        )
    return matches[0]


def _assigned_name(statement: ast.stmt) -> str | None:
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        target = statement.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


@contextmanager
def tap_local(
    line: Line, transform: Callable[[Any, int], Any] | None = None
) -> Iterator[List[Any]]:
    """While the block runs, give each value of ``line``'s local to ``transform(value,
    occurrence)`` right after the statement ran, and put the result back in the frame
    (``None`` from ``transform`` leaves the local as it was).

    Yields the list of values the local had (or was given), one per time the statement
    ran, in order. Tracing is on only for the function's own frames, only in the block.
    """
    seen: List[Any] = []
    armed: Dict[int, FrameType] = {}
    first, last, name = line.first, line.last, line.name

    def on_line(frame: FrameType, event: str, arg: Any) -> None:
        key = id(frame)
        lineno = frame.f_lineno
        if key in armed and not first <= lineno <= last:
            del armed[key]
            local = read_locals(frame)
            if name not in local:
                raise ProbeError(f"{line.describe()}: the local was not assigned")
            value = local[name]
            if transform is not None:
                new = transform(value, len(seen))
                if new is not None:
                    local[name] = new
                    write_locals(frame, local)
                    value = new
            seen.append(value)
        if lineno == first:
            armed[key] = frame

    errors: List[BaseException] = []

    def guarded(frame: FrameType, event: str, arg: Any) -> None:
        # the dispatcher records a handler's errors instead of raising them into the
        # program; keep them here so the caller learns of them after the block
        try:
            on_line(frame, event, arg)
        except Exception as exc:
            errors.append(exc)

    tracer = NoPdb()
    tracer.add_callback(Scope(line.function), guarded, ["line"])
    tracer.start()
    try:
        yield seen
    finally:
        tracer.stop()
    if errors:
        raise errors[0]
