"""Resolving a breakpoint's ``line`` (a number or the text of a line) to line numbers.

Whatever can be checked when the breakpoint is set is checked then, with an error
naming the problem: a number outside the function or on a line with no code, a text
that matches no line or several lines. Scopes known only by pattern (a function name,
a file glob) are resolved per code object when it first runs.
"""

from __future__ import annotations

import inspect
import linecache
import pathlib
from types import CodeType
from typing import FrozenSet, List, Union

from .dispatch import LineResolver
from .scope import Scope

LineSpec = Union[int, str, None]


def executable_lines(code: CodeType) -> FrozenSet[int]:
    """Line numbers that have code in ``code`` itself (not in nested functions)."""
    return frozenset(line for _, _, line in code.co_lines() if line is not None and line > 0)


def all_executable_lines(code: CodeType) -> FrozenSet[int]:
    """Line numbers with code in ``code`` or in any function nested in it."""
    lines = set(executable_lines(code))
    for const in code.co_consts:
        if isinstance(const, CodeType):
            lines |= all_executable_lines(const)
    return frozenset(lines)


def _last_line(code: CodeType) -> int:
    return max(executable_lines(code) | {code.co_firstlineno})


def _describe_code(code: CodeType) -> str:
    name = getattr(code, "co_qualname", code.co_name)
    return f"{name} ({code.co_filename}, lines {code.co_firstlineno}-{_last_line(code)})"


def nearest(line: int, candidates: FrozenSet[int]) -> str:
    """A hint naming the executable lines nearest to ``line``."""
    if not candidates:
        return "it has no executable lines"
    near = sorted(candidates, key=lambda c: (abs(c - line), c))[:3]
    return "nearest executable lines: " + ", ".join(str(n) for n in sorted(near))


def _text_matches(filename: str, lines: List[int], text: str) -> List[int]:
    return [n for n in lines if linecache.getline(filename, n).strip() == text]


def _known_file(scope: Scope) -> str | None:
    if scope.module is not None:
        return str(scope.module.__file__)
    if isinstance(scope.file, pathlib.Path):
        return str(scope.file)
    return None


def resolve(scope: Scope, line: LineSpec) -> LineResolver | None:
    """Validate ``line`` for ``scope`` and return a per-code-object line resolver.

    Returns ``None`` when ``line`` is ``None`` (break on call).

    Raises:
        TypeError: ``line`` is neither an int, a str nor None.
        ValueError: the line cannot be a breakpoint here; the message says why.
    """
    if line is None:
        return None
    if isinstance(line, bool) or not isinstance(line, (int, str)):
        raise TypeError(f"line must be a line number or the text of a line, got {line!r}")
    if isinstance(line, str):
        text = line.strip()
        if not text:
            raise ValueError("line text is empty")
        return _resolve_text(scope, text)
    return _resolve_number(scope, line)


def unchecked(line: int) -> LineResolver:
    """A resolver for code that does not exist yet (a notebook cell not run so far).

    The caller has validated ``line`` itself (e.g. against the cell's source); each code
    object that runs later breaks at ``line`` if it has code there.
    """
    if isinstance(line, bool) or not isinstance(line, int) or line < 1:
        raise ValueError(f"line {line!r} is not a valid line number (lines start at 1)")
    target = frozenset({line})
    return lambda c: target & executable_lines(c)


def innermost_function(code: CodeType, line: int, _prefix: str = "") -> str | None:
    """Qualified name of the innermost function in ``code`` with code at ``line``.

    ``None`` when the line belongs to ``code`` itself at module level (or to nothing).
    Python 3.10 has no ``co_qualname``: the name is rebuilt from the nesting of code
    objects (class bodies add ``Class.``, functions add ``f.<locals>.``), as 3.11 spells it.
    """
    for const in code.co_consts:
        if isinstance(const, CodeType) and line in all_executable_lines(const):
            name = getattr(const, "co_qualname", None) or _prefix + const.co_name
            is_function = bool(const.co_flags & inspect.CO_OPTIMIZED)
            inner = innermost_function(const, line, name + (".<locals>." if is_function else "."))
            return inner or name
    return None


def _resolve_number(scope: Scope, line: int) -> LineResolver:
    if line < 1:
        raise ValueError(f"line {line} is not a valid line number (lines start at 1)")
    code = scope.code
    if code is not None:
        lines = executable_lines(code)
        if line not in lines:
            where = (
                "outside"
                if not code.co_firstlineno <= line <= _last_line(code)
                else "not an executable line (blank, comment, nested function or "
                "inside a multi-line statement) of"
            )
            raise ValueError(
                f"line {line} is {where} {_describe_code(code)}; {nearest(line, lines)}"
            )
        target = frozenset({line})
        return lambda c: target if c is code else frozenset()
    filename = _known_file(scope)
    if filename is not None:
        source = linecache.getlines(filename)
        if line > len(source):
            raise ValueError(f"line {line} is past the end of {filename} ({len(source)} lines)")
        try:
            module_code = compile("".join(source), filename, "exec")
        except SyntaxError:
            module_code = None
        if module_code is not None:
            lines = all_executable_lines(module_code)
            if line not in lines:
                raise ValueError(
                    f"line {line} of {filename} is not an executable line "
                    f"({source[line - 1].strip()!r}); {nearest(line, lines)}"
                )
    target = frozenset({line})
    return lambda c: target & executable_lines(c)


def _resolve_text(scope: Scope, text: str) -> LineResolver:
    code = scope.code
    if code is not None:
        _check_readable(code.co_filename)
        span = list(range(code.co_firstlineno, _last_line(code) + 1))
        found = _text_matches(code.co_filename, span, text)
        _check_unique(found, text, _describe_code(code))
        lines = executable_lines(code)
        if found[0] not in lines:
            raise ValueError(
                f"line {found[0]} ({text!r}) has no code of its own in "
                f"{_describe_code(code)}; {nearest(found[0], lines)}"
            )
        target = frozenset(found)
        return lambda c: target if c is code else frozenset()
    filename = _known_file(scope)
    if filename is not None:
        _check_readable(filename)
        span = list(range(1, len(linecache.getlines(filename)) + 1))
        _check_unique(_text_matches(filename, span, text), text, filename)

    def per_code(c: CodeType) -> FrozenSet[int]:
        lines = sorted(executable_lines(c))
        return frozenset(_text_matches(c.co_filename, lines, text))

    return per_code


def _check_readable(filename: str) -> None:
    """A text line needs the source: say so when there is none (code from a string)."""
    if not linecache.getlines(filename):
        raise ValueError(
            f"cannot find a line by its text: the source of {filename} cannot be read "
            "(code compiled from a string, or a file that is gone); pass a line number"
        )


def _check_unique(found: List[int], text: str, where: str) -> None:
    if not found:
        raise ValueError(f"no line of {where} reads {text!r}")
    if len(found) > 1:
        raise ValueError(
            f"{len(found)} lines of {where} read {text!r} (lines "
            f"{', '.join(map(str, found))}); pass a line number instead"
        )
