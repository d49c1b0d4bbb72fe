"""Which code a capture or breakpoint applies to (NoPdb's ``Scope``, split in two).

A scope is matched in two steps so the tracer can decide once per code object:
:meth:`Scope.match_code` depends only on the code object (function name, module,
file), :meth:`Scope.match_instance` on the running frame (the ``self`` of a bound
method).
"""

from __future__ import annotations

import inspect
import os
import pathlib
from types import CodeType, FrameType, MethodType, ModuleType
from typing import Any, Callable, Tuple, Union

FunctionSpec = Union[Callable[..., Any], str, None]
FileSpec = Union[str, "os.PathLike[str]", None]


class Scope:
    """The set of frames a capture or breakpoint applies to.

    Args:
        function: a Python callable, or a function name (matched against
            ``code.co_name``). A bound method matches only calls on its instance, a
            classmethod reached through a class (``K.cm``) only calls with ``cls is K``
            (as in NoPdb; pass ``K.cm.__func__`` for subclasses too); a plain or
            class-level function matches every call.
        module: only code defined in this module's file.
        file: a glob pattern string (matched with :meth:`pathlib.PurePath.match`
            against the resolved path) or a path-like object (exact match).
        unwrap: follow ``__wrapped__`` chains of decorated callables.
        instance: only frames whose first argument (``self``) is this object; for a
            file or module scope, the way to narrow it to one instance.
    """

    def __init__(
        self,
        function: FunctionSpec = None,
        module: ModuleType | None = None,
        file: FileSpec = None,
        unwrap: bool = True,
        instance: Any = None,
    ) -> None:
        self.function = function
        self.module = module
        self.unwrap = unwrap
        self._fn_name: str | None = None
        self._fn_code: CodeType | None = None
        self._fn_self: Any = None
        if isinstance(function, str):
            if not function.isidentifier():
                raise ValueError(f"function name {function!r} is not a valid Python identifier")
            self._fn_name = function
        elif function is not None:
            self._fn_code, self._fn_self = code_and_self(function, unwrap=unwrap)
        if instance is not None:
            if self._fn_self is not None and self._fn_self is not instance:
                raise ValueError("instance conflicts with the bound method given as function")
            self._fn_self = instance
        if module is not None and not isinstance(module, ModuleType):
            raise TypeError(f"module must be a module object, got {type(module).__name__}")
        if module is not None and getattr(module, "__file__", None) is None:
            raise ValueError(f"module {module.__name__!r} has no source file to trace")

        self.file: Union[str, pathlib.Path, None]
        if isinstance(file, os.PathLike):
            self.file = pathlib.Path(file).resolve()
        elif file is None or isinstance(file, str):
            self.file = file
        else:
            raise TypeError(f"file must be a str glob or a path-like, got {type(file).__name__}")

    # -- what the tracer needs -------------------------------------------------------
    @property
    def code(self) -> CodeType | None:
        """The exact code object targeted, when the function was given as a callable."""
        return self._fn_code

    @property
    def instance(self) -> Any:
        """The instance a bound-method target is restricted to, else ``None``."""
        return self._fn_self

    def match_code(self, code: CodeType) -> bool:
        """Whether frames running ``code`` can match (everything but the instance)."""
        if self._fn_code is not None and code is not self._fn_code:
            return False
        if self._fn_name is not None and code.co_name != self._fn_name:
            return False
        if self.module is not None and code.co_filename != self.module.__file__:
            return False
        if self.file is not None:
            return _file_matches(code.co_filename, self.file)
        return True

    def match_instance(self, frame: FrameType) -> bool:
        """Whether the frame's first argument is the bound instance (if any)."""
        if self._fn_self is None:
            return True
        code = frame.f_code
        if code.co_argcount == 0:
            return False
        try:
            return frame.f_locals[code.co_varnames[0]] is self._fn_self
        except KeyError:
            return False

    def match_frame(self, frame: FrameType) -> bool:
        """NoPdb-compatible: whether ``frame`` is in this scope."""
        return self.match_code(frame.f_code) and self.match_instance(frame)

    def describe(self) -> str:
        """A short human-readable description, used in error messages."""
        parts = []
        if self._fn_code is not None:
            parts.append(f"{_code_qualname(self._fn_code)} ({self._fn_code.co_filename})")
        elif self._fn_name is not None:
            parts.append(f"functions named {self._fn_name!r}")
        if self.module is not None:
            parts.append(f"module {self.module.__name__}")
        if self.file is not None:
            parts.append(f"file {str(self.file)!r}")
        if self._fn_self is not None and self._fn_code is None:
            parts.append(f"instance {type(self._fn_self).__name__} at {id(self._fn_self):#x}")
        return ", ".join(parts) or "everything"

    def __repr__(self) -> str:
        return f"Scope({self.describe()})"


def _file_matches(filename: str, pattern: Union[str, pathlib.Path]) -> bool:
    if filename.startswith("<") and filename.endswith(">"):
        return filename == str(pattern)
    path = pathlib.Path(filename).resolve()
    if isinstance(pattern, pathlib.Path):
        return path == pattern
    return path.match(pattern)


def _code_qualname(code: CodeType) -> str:
    return getattr(code, "co_qualname", code.co_name)


def code_and_self(fn: Callable[..., Any], unwrap: bool = True) -> Tuple[CodeType, Any]:
    """Find the Python code object implementing ``fn`` and the instance it is bound to.

    Raises:
        TypeError: ``fn`` is not implemented in Python (a builtin, a C extension
            callable, or not callable at all); the message names it.
    """

    def _unwrapped(f: Any) -> Any:
        return inspect.unwrap(f) if unwrap else f

    if inspect.ismethod(fn):
        assert isinstance(fn, MethodType)
        # a classmethod is bound to its class: like NoPdb, match only calls whose
        # ``cls`` is that class (KSub.cm() runs the same code with cls=KSub)
        func, bound = _unwrapped(fn.__func__), fn.__self__
    elif inspect.isfunction(fn):
        func, bound = _unwrapped(fn), None
    elif isinstance(fn, (staticmethod, classmethod)):
        func, bound = _unwrapped(fn.__func__), None
    elif inspect.isbuiltin(fn) or inspect.ismethoddescriptor(fn) or inspect.isroutine(fn):
        raise TypeError(
            f"cannot trace {fn!r}: it is implemented in C, and only pure-Python "
            "functions can be traced"
        )
    elif inspect.isclass(fn) or not callable(fn):
        raise TypeError(
            f"cannot trace {fn!r} ({type(fn).__name__}): expected a Python function, "
            "a method, an object with a Python __call__, or a function name string"
        )
    else:  # an instance of a class with a Python __call__ (e.g. a torch.nn.Module)
        func, bound = _unwrapped(type(fn).__call__), fn
        if not inspect.isfunction(func):
            raise TypeError(f"cannot trace {fn!r}: its __call__ is not a pure-Python function")
    code = getattr(func, "__code__", None)
    if not isinstance(code, CodeType):
        raise TypeError(f"cannot trace {fn!r}: found no Python code object for it")
    return code, bound
