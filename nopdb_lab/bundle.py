"""Capture bundles: save the store's records to one ``.nopdb`` file and reopen it safely.

A bundle is a plain `safetensors <https://github.com/huggingface/safetensors>`_ file:
every tensor and array byte lives in the safetensors data section, and everything else
(the records, their fields, nested containers, stacks with their source lines, the
format version) is a JSON manifest stored as a string in the safetensors
``__metadata__``. ``docs/bundles.md`` is the specification.

Why it is safe to open a bundle from a stranger: loading parses JSON and maps bytes,
nothing else. It never unpickles, never calls ``torch.load``, never evaluates text from
the file, never imports a module or builds a class named by the file. The whole file is
validated when it is opened (header sizes, offsets, dtypes, shapes, manifest schema,
dangling tensor references, nesting depth) and a :class:`BundleError` names the first
problem; nothing is added to the store unless every record decoded.

Why it opens fast: each tensor is a copy-on-write memory map of its own bytes in the
file, so opening reads only the header and a slice reads only the pages it touches.

torch, numpy and safetensors are imported inside functions, so ``import nopdb_lab``
works without them.
"""

from __future__ import annotations

import base64
import itertools
import json
import linecache
import math
import os
import struct
import threading
import time
import traceback
from typing import Any, Dict, Iterable, List, Tuple, cast

from .call_info import next_id

FORMAT = "nopdb-bundle"
VERSION = 1  # the format version this module writes; it reads 1..VERSION
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
MAX_DEPTH = 64  # nesting of saved values (deeper ones are saved as their repr)
MAX_REPR = 10_000  # characters of an unknown object's repr that are kept
MAX_DIMS = 64
MAX_DIM = 1 << 48
ALIGN = 64  # the data section starts at a multiple of this

__all__ = [
    "BundleError",
    "BundledBreakpoint",
    "BundledRecord",
    "SavedError",
    "UnknownObject",
    "load_captures",
    "open_bundle",
    "register_kind",
    "register_value_type",
    "save_captures",
]


class BundleError(ValueError):
    """A bundle that cannot be written or read (the message names the problem)."""


# -- inert values -----------------------------------------------------------------------
class UnknownObject:
    """What a saved object that is not data comes back as: its type name and repr.

    Inert by design: it holds two strings, compares by them and is hashable (it can be a
    dict key), and nothing in it is ever evaluated.
    """

    __slots__ = ("type_name", "text")

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name = type_name
        self.text = text

    def __repr__(self) -> str:
        return f"<saved {self.type_name}: {self.text}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UnknownObject)
            and other.type_name == self.type_name
            and other.text == self.text
        )

    def __hash__(self) -> int:
        return hash((self.type_name, self.text))


class SavedError(Exception):
    """An exception from a bundle: its type name, message and formatted text only."""

    def __init__(self, type_name: str, message: str, text: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message
        self.text = text or f"{type_name}: {message}\n"

    def __repr__(self) -> str:
        return f"{self.type_name}({self.message!r})"

    def __str__(self) -> str:
        return self.message


class BundledBreakpoint:
    """The description of the breakpoint a saved hit came from (not a live breakpoint)."""

    def __init__(self, info: Dict[str, Any]) -> None:
        self.file = info.get("file")
        self.function = info.get("function")
        self.module = info.get("module")
        self.line = info.get("line")
        self.cond = info.get("cond")  # inert text, never compiled
        self.text = info.get("repr", "")

    def __repr__(self) -> str:
        return f"<saved breakpoint {self.text}>"


class _BundledMixin:
    """Given to every loaded record: where it came from, and its stack with the source
    lines saved in the bundle (the original files may not exist here)."""

    original_id: int | None
    bundle: str
    _bundle_stack: List[Tuple[str, int, str, str]]

    @property
    def stack(self) -> traceback.StackSummary:
        return traceback.StackSummary.from_list(list(self._bundle_stack))


class BundledRecord(_BundledMixin):
    """A record of a kind this version does not know (written by a newer nopdb-lab).

    It has the saved attributes and the record protocol's methods (``records.Record``),
    so the store, the capture browser and the heatmap viewer handle it like any record.
    """

    kind = "unknown"
    errors: List[Any]

    def value_parts(self) -> Tuple[str, ...]:
        return tuple(
            name
            for name, value in vars(self).items()
            if not name.startswith("_") and isinstance(value, dict)
        )

    def held_values(self) -> List[Any]:
        return [value for name in self.value_parts() for value in getattr(self, name).values()]

    def brief_fields(self) -> Dict[str, Any]:
        return {"errors": len(getattr(self, "errors", []) or [])}

    def describe(self, root: str, one: Any, many: Any) -> Dict[str, Any]:
        return {
            "errors": [
                {"action": e.action, "message": e.message} for e in getattr(self, "errors", [])
            ]
        }

    def origin(self) -> Any:
        return None

    def __repr__(self) -> str:
        return f"BundledRecord(id={getattr(self, 'id', None)}, kind={self.kind!r})"


# -- registries -------------------------------------------------------------------------
class _Kind:
    def __init__(self, kind: str, cls: type, exclude: Iterable[str]) -> None:
        self.kind = kind
        self.cls = cls
        self.exclude = frozenset(exclude)
        self.loaded_cls: type = type(f"Bundled{cls.__name__}", (_BundledMixin, cls), {})
        self.loaded_cls.__doc__ = f"A {cls.__name__} loaded from a capture bundle."


_kinds: Dict[str, _Kind] = {}
_kinds_lock = threading.Lock()
# (module candidates relative to this package, class name, fields never saved). The first
# importable module wins, so the kinds resolve before and after the package restructure.
_BUILTIN_KINDS: Dict[str, Tuple[Tuple[str, ...], str, Tuple[str, ...]]] = {
    # a CallCapture is a CallInfo that also holds its scope (what it was set up to catch)
    "call": ((".call_info",), "CallInfo", ("globals", "scope")),
    "hit": ((".breakpoint",), "BreakpointHit", ()),
    "attention": ((".analysis.attention", ".attention"), "AttentionRecord", ()),
    "stack": ((".analysis.stacking", ".stacking"), "StackRecord", ()),
    "compare": ((".analysis.compare",), "CompareRecord", ()),
    "run": ((".probe",), "RunRecord", ()),
    "attribution": ((".analysis.attribution",), "AttributionRecord", ()),
    "view": ((".analysis.display",), "ViewRecord", ()),
}


def register_kind(kind: str, cls: type, exclude: Iterable[str] = ()) -> None:
    """Make records of ``kind`` load back as (a subclass of) ``cls``.

    Every public instance attribute is saved generically (values, tensors, a ``grads``
    dict...), except the names in ``exclude``. A kind that is not registered still saves
    and loads, as a :class:`BundledRecord` with the same attributes.
    """
    with _kinds_lock:
        _kinds[kind] = _Kind(kind, cls, exclude)


def _kind_spec(kind: str) -> _Kind | None:
    with _kinds_lock:
        if kind in _kinds:
            return _kinds[kind]
    builtin = _BUILTIN_KINDS.get(kind)
    if builtin is None:
        return None
    import importlib

    modules, name, exclude = builtin
    for module in modules:
        try:
            cls = getattr(importlib.import_module(module, __package__), name)
        except (ImportError, AttributeError):
            continue
        register_kind(kind, cls, exclude)
        return _kinds[kind]
    return None


_value_types: Dict[str, type] = {}
_value_type_names: Dict[type, str] = {}


def register_value_type(cls: type, name: str | None = None) -> None:
    """Save instances of ``cls`` as their attributes (not their repr) and rebuild them on
    load with ``cls.__new__`` and those attributes (``__init__`` is not called).

    For plain holders of data, e.g. a lazy attention record's inputs, so that they come
    back as what they were and stay lazy. Only classes registered by code are ever built:
    the name in the file just selects one of them.
    """
    key = name or f"{cls.__module__}.{cls.__qualname__}"
    _value_types[key] = cls
    _value_type_names[cls] = key


def _register_builtin_value_types() -> None:
    import importlib

    for module, names in ((".analysis.attention_lazy", ("LazyAttention", "Segment")),):
        try:
            mod = importlib.import_module(module, __package__)
        except ImportError:
            continue
        for name in names:
            cls = getattr(mod, name, None)
            if isinstance(cls, type) and cls not in _value_type_names:
                register_value_type(cls, f"nopdb_lab.{name}")


# -- torch/numpy dtypes -----------------------------------------------------------------
# torch dtype name -> safetensors dtype; torch dtypes missing here are stored as raw bytes
_ST_DTYPES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "int32": "I32",
    "uint32": "U32",
    "int64": "I64",
    "uint64": "U64",
    "float16": "F16",
    "bfloat16": "BF16",
    "float32": "F32",
    "float64": "F64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}
_ST_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}
# sparse layouts restored on load (saved dense); any other layout is saved dense, strided
_SPARSE_LAYOUTS = ("sparse_coo", "sparse_csr", "sparse_csc")
_NUMPY_KINDS = set("biufcmMSU")  # bool, ints, floats, complex, time, bytes and unicode


def _torch_dtypes() -> Dict[str, Any]:
    """Every plain torch dtype by name (quantized ones excluded: they need parameters)."""
    import torch

    out = {}
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype):
            key = str(value).removeprefix("torch.")
            if not key.startswith(("qint", "quint")):
                out[key] = value
    return out


def _numpy_dtype(text: Any) -> Any:
    """A numpy dtype from the manifest, only if it is a plain scalar data type (an object
    dtype would turn file bytes into pointers)."""
    import numpy as np

    if not isinstance(text, str) or len(text) > 32:
        raise BundleError(f"bad numpy dtype {text!r}")
    try:
        dtype = np.dtype(text)
    except TypeError as exc:
        raise BundleError(f"bad numpy dtype {text!r}: {exc}") from None
    if (
        dtype.hasobject
        or dtype.fields is not None
        or dtype.shape != ()
        or (dtype.kind not in _NUMPY_KINDS)
    ):
        raise BundleError(f"numpy dtype {text!r} is not a plain data type; refused")
    return dtype


# -- saving ------------------------------------------------------------------------------
class _Writer:
    """Encodes records into JSON-able values and collects the tensor blobs."""

    def __init__(self) -> None:
        # name, uint8 data, safetensors dtype, shape, alignment (element size)
        self.blobs: List[Tuple[str, Any, str, List[int], int]] = []
        self.tensors: Dict[str, Dict[str, Any]] = {}  # ref -> manifest entry
        self._by_key: Dict[Any, str] = {}
        self._keep: List[Any] = []  # keeps keyed objects alive so ids are not reused
        self._refs = itertools.count()

    # values
    def encode(self, value: Any, depth: int = 0, path: Tuple[int, ...] = ()) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value if type(value) is int else self._unknown(value)
        if isinstance(value, float):
            if type(value) is not float:
                return self._unknown(value)
            if math.isfinite(value):
                return value
            return {"$": "float", "v": repr(value)}  # 'nan', 'inf', '-inf'
        if depth >= MAX_DEPTH or id(value) in path:
            return self._unknown(value, "nested too deep" if depth >= MAX_DEPTH else "cycle")
        inner = path + (id(value),)
        kind = type(value)
        if kind is list:
            return [self.encode(v, depth + 1, inner) for v in value]
        if kind is tuple:
            return {"$": "tuple", "v": [self.encode(v, depth + 1, inner) for v in value]}
        if kind is dict or kind.__name__ == "OrderedDict" and isinstance(value, dict):
            out: Dict[str, Any] = {
                "$": "dict",
                "k": [self.encode(k, depth + 1, inner) for k in value],
                "v": [self.encode(v, depth + 1, inner) for v in value.values()],
            }
            if kind is not dict:
                out["ordered"] = True
            return out
        if kind is bytes:
            return {"$": "bytes", "v": base64.b64encode(value).decode("ascii")}
        if isinstance(value, BaseException):
            return _exception_state(value)
        if _is_torch_tensor(value):
            try:
                return self._tensor(value)
            except Exception as exc:  # e.g. a tensor subclass without plain data: say so
                return self._unknown(value, f"tensor not saved: {type(exc).__name__}: {exc}")
        if _is_numpy_array(value):
            return self._array(value)
        if isinstance(value, UnknownObject):
            return {"$": "object", "type": value.type_name, "repr": value.text}
        name = _value_type_names.get(kind)
        if name is not None and hasattr(value, "__dict__"):
            attrs = {
                k: self.encode(v, depth + 1, inner)
                for k, v in vars(value).items()
                if isinstance(k, str)
            }
            return {"$": "state", "type": name, "attrs": attrs}
        if kind.__name__ == "ActionError" and hasattr(value, "exception"):
            return {
                "$": "action_error",
                "action": str(value.action),
                "exception": _exception_state(value.exception),
            }
        return self._unknown(value)

    @staticmethod
    def _unknown(value: Any, why: str | None = None) -> Dict[str, Any]:
        try:
            text = repr(value) if why is None else f"<{why}>"
        except Exception as exc:  # a broken __repr__ must not stop the save
            text = f"<repr failed: {type(exc).__name__}>"
        if len(text) > MAX_REPR:
            text = text[:MAX_REPR] + "..."
        kind = type(value)
        return {"$": "object", "type": f"{kind.__module__}.{kind.__qualname__}", "repr": text}

    def _tensor(self, tensor: Any) -> Any:
        import torch

        if tensor.is_quantized or tensor.is_nested or tensor.device.type == "meta":
            return self._unknown(tensor)
        key = None
        layout = "strided"
        if tensor.layout != torch.strided:
            layout = str(tensor.layout).removeprefix("torch.")
        else:
            try:
                key = (
                    "t",
                    tensor.untyped_storage().data_ptr(),
                    tensor.device.type,
                    tensor.storage_offset(),
                    tuple(tensor.shape),
                    tensor.stride(),
                    tensor.dtype,
                )
            except Exception:
                key = None
        if key is not None and key in self._by_key:
            return {"$": "tensor", "ref": self._by_key[key]}
        data = tensor.detach()
        if layout != "strided":
            data = data.to_dense()
            if layout not in _SPARSE_LAYOUTS:  # mkldnn, blocked sparse: saved dense
                layout = "strided"
        data = data.cpu().resolve_conj().resolve_neg().contiguous()
        dtype = str(data.dtype).removeprefix("torch.")
        entry: Dict[str, Any] = {
            "kind": "torch",
            "dtype": dtype,
            "shape": list(data.shape),
            "device": str(tensor.device),
        }
        if tensor.requires_grad:
            entry["requires_grad"] = True
        if layout != "strided":
            entry["layout"] = layout
        raw = data.reshape(-1).view(torch.uint8).numpy() if data.numel() else None
        ref = self._add_blob(entry, raw, _ST_DTYPES.get(dtype), data.element_size())
        if key is not None:
            self._by_key[key] = ref
            self._keep.append(tensor)
        return {"$": "tensor", "ref": ref}

    def _array(self, array: Any) -> Any:
        import numpy as np

        dtype = array.dtype
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in _NUMPY_KINDS:
            return self._unknown(array)
        key = ("a", array.__array_interface__["data"][0], array.shape, array.strides, dtype.str)
        if key in self._by_key:
            return {"$": "ndarray", "ref": self._by_key[key]}
        data = np.ascontiguousarray(array)
        if dtype.byteorder == ">":
            data = data.astype(dtype.newbyteorder("<"))
        entry = {"kind": "numpy", "dtype": data.dtype.str, "shape": list(data.shape)}
        raw = data.reshape(-1).view(np.uint8) if data.size else None
        ref = self._add_blob(entry, raw, None, data.dtype.itemsize)
        self._by_key[key] = ref
        self._keep.append(array)
        return {"$": "ndarray", "ref": ref}

    def _add_blob(self, entry: Dict[str, Any], raw: Any, st_dtype: str | None, size: int) -> str:
        ref = f"t{next(self._refs)}"
        if raw is not None:
            if st_dtype is not None:
                entry["encoding"] = "native"
                self.blobs.append((ref, raw, st_dtype, list(entry["shape"]), size))
            else:  # stored as bytes; the manifest has the real dtype and shape
                entry["encoding"] = "bytes"
                self.blobs.append((ref, raw, "U8", [int(raw.shape[0])], size))
            entry["blob"] = ref
            entry["align"] = size
        else:
            entry["encoding"] = "empty"
        self.tensors[ref] = entry
        return ref

    # records
    def record(self, record: Any) -> Dict[str, Any]:
        kind = str(getattr(record, "kind", "unknown"))
        spec = _kind_spec(kind)
        exclude = spec.exclude if spec is not None else frozenset()
        attrs: Dict[str, Any] = {}
        for name, value in vars(record).items():
            if (
                not isinstance(name, str)
                or name.startswith("_")
                or name in exclude
                or name in ("id", "kind", "raw_stack", "original_id", "bundle")
            ):
                continue
            if name == "breakpoint" and kind == "hit":
                attrs[name] = {"$": "breakpoint", "info": _breakpoint_info(value)}
                continue
            attrs[name] = self.encode(value)
        if kind == "hit" and "breakpoint" not in attrs:  # held weakly, behind a property
            live = record.breakpoint
            info = (
                _breakpoint_info(live)
                if live is not None
                else dict(getattr(record, "breakpoint_summary", None) or {})
            )
            attrs["breakpoint"] = {"$": "breakpoint", "info": info}
        if kind == "unknown" or spec is None and "kind" in vars(record):
            attrs.pop("kind", None)
        return {
            "kind": kind,
            "original_id": getattr(record, "original_id", None) or getattr(record, "id", None),
            "class": f"{type(record).__module__}.{type(record).__qualname__}",
            "stack": _stack_with_lines(record),
            "attrs": attrs,
        }


def _is_torch_tensor(value: Any) -> bool:
    torch = _loaded("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_numpy_array(value: Any) -> bool:
    np = _loaded("numpy")
    return np is not None and isinstance(value, np.ndarray)


def _loaded(name: str) -> Any:
    import sys

    return sys.modules.get(name)


def _exception_state(exc: BaseException) -> Dict[str, Any]:
    if isinstance(exc, SavedError):
        return {"$": "exception", "type": exc.type_name, "message": exc.message, "text": exc.text}
    try:
        message = str(exc)
    except Exception:
        message = "<str failed>"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "$": "exception",
        "type": type(exc).__qualname__,
        "message": message[:MAX_REPR],
        "text": text[: 10 * MAX_REPR],
    }


def _breakpoint_info(bp: Any) -> Dict[str, Any]:
    if isinstance(bp, BundledBreakpoint):
        return {
            "file": bp.file,
            "function": bp.function,
            "module": bp.module,
            "line": bp.line,
            "cond": bp.cond,
            "repr": bp.text,
        }
    scope = getattr(bp, "scope", None)
    cond = getattr(bp, "cond", None)
    line = getattr(bp, "line", None)
    return {
        "file": _str_or_none(getattr(scope, "file", None)),
        "function": _str_or_none(getattr(scope, "function", None)),
        "module": _str_or_none(getattr(scope, "module", None)),
        "line": line if isinstance(line, (int, str)) else None,
        "cond": cond.decode() if isinstance(cond, bytes) else _str_or_none(cond),
        "repr": _Writer._unknown(bp)["repr"] if bp is not None else "",
    }


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else getattr(value, "__name__", None) or repr(value)


def _stack_with_lines(record: Any) -> List[List[Any]]:
    """``[file, line, function, source line]`` frames, outermost first, so the stack reads
    without the original files."""
    saved = getattr(record, "_bundle_stack", None)
    if saved is not None:
        return [list(f) for f in saved]
    try:
        raw = getattr(record, "raw_stack", None) or []
    except Exception:
        raw = []
    out = []
    for frame in raw:
        file, line, name = frame[0], frame[1], frame[2]
        source = linecache.getline(str(file), int(line or 0)).strip() if line else ""
        out.append([str(file), int(line or 0), str(name), source])
    return out


def _resolve_captures(captures: Any) -> List[Any]:
    from .capture_store import store

    if captures is None:
        return list(store)
    if hasattr(captures, "kind") and hasattr(captures, "id"):
        return [captures]
    out = []
    for item in captures:
        if isinstance(item, int) and not isinstance(item, bool):
            out.append(store[item])
        elif hasattr(item, "kind"):
            out.append(item)
        else:
            raise TypeError(
                f"save_captures takes records, store ids or a capture list, got {item!r}"
            )
    return out


def save_captures(path: str | os.PathLike, captures: Any = None) -> str:
    """Write ``captures`` (``None``: the whole store; or records, store ids, a capture
    list) to one bundle file at ``path``; returns the path written.

    Tensors and arrays go to the safetensors data section (identical tensors once,
    views as their own values); everything else to the JSON manifest. What cannot be
    saved (``CallInfo.globals``, live frames, the objects behind unknown values) is
    listed in ``docs/bundles.md``. The file appears atomically (written aside, renamed).
    """
    records = _resolve_captures(captures)
    _register_builtin_value_types()
    writer = _Writer()
    encoded = [writer.record(r) for r in records]
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.time(),
        "records": encoded,
        "tensors": writer.tensors,
    }
    try:
        from ._version import __version__

        manifest["writer"] = f"nopdb-lab {__version__}"
    except ImportError:
        pass
    text = json.dumps(manifest, separators=(",", ":"), allow_nan=False)
    path = os.fspath(path)
    _write_safetensors(
        path, writer.blobs, {"format": FORMAT, "version": str(VERSION), "manifest": text}
    )
    return path


def _write_safetensors(
    path: str, blobs: List[Tuple[str, Any, str, List[int], int]], metadata: Dict[str, str]
) -> None:
    # widest elements first: every offset is then a multiple of its element size (all
    # sizes are powers of two), so each mapped tensor is aligned for its dtype
    ordered = sorted(blobs, key=lambda b: -b[4])
    header: Dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, raw, dtype, shape, _ in ordered:
        nbytes = int(raw.nbytes)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if len(text) > MAX_HEADER_BYTES:
        raise BundleError(
            f"the manifest is {len(text) / 1e6:.0f} MB, over the {MAX_HEADER_BYTES >> 20} MB "
            "a safetensors header may hold; save fewer captures per bundle"
        )
    pad = (-(8 + len(text))) % ALIGN
    text += b" " * pad
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for blob in ordered:
                raw = blob[1]
                f.write(memoryview(raw))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- reading -----------------------------------------------------------------------------
class Bundle:
    """An opened, fully validated bundle: its manifest and lazily mapped tensors.

    ``Bundle.tensor(ref)`` maps one tensor (copy-on-write, so changing a loaded value
    never changes the file); ``read_slice(ref, index)`` reads only a slice through
    safetensors' ``safe_open`` (what a viewer of a huge bundle uses).
    """

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)
        self.name = os.path.basename(self.path)
        try:
            self.size = os.path.getsize(self.path)
        except OSError as exc:
            raise BundleError(f"cannot open bundle {self.path!r}: {exc}") from None
        self.header, self.data_start = _read_header(self.path, self.size)
        self.metadata = self.header.pop("__metadata__", None)
        self.blobs = _check_blobs(self.header, self.size - self.data_start)
        self.manifest = _check_manifest(self.metadata)
        self.version = self.manifest["version"]
        self.tensors = _check_tensor_table(self.manifest["tensors"], self.blobs)
        self._cache: Dict[str, Any] = {}

    def tensor(self, ref: str) -> Any:
        """The value behind a tensor reference, memory-mapped (the same object each time,
        so storage shared when saved is shared again)."""
        if ref in self._cache:
            return self._cache[ref]
        entry = self.tensors[ref]
        value = self._map(entry)
        self._cache[ref] = value
        return value

    def _map(self, entry: Dict[str, Any]) -> Any:
        import numpy as np

        shape = tuple(entry["shape"])
        if entry["kind"] == "numpy":
            dtype = _numpy_dtype(entry["dtype"])
            if entry["encoding"] == "empty":
                return np.zeros(shape, dtype=dtype)
            raw = self._raw(entry["blob"])
            return raw.view(dtype).reshape(shape).view(np.ndarray)
        import torch

        dtype = _torch_dtypes()[entry["dtype"]]
        if entry["encoding"] == "empty":
            value = torch.zeros(shape, dtype=dtype)
        else:
            raw = torch.from_numpy(self._raw(entry["blob"]))
            value = raw.view(dtype).reshape(shape)
        layout = entry.get("layout")
        if layout == "sparse_coo":
            value = value.to_sparse()
        elif layout in _SPARSE_LAYOUTS and value.dim() == 2:
            import warnings

            with warnings.catch_warnings():  # torch's "CSR support is in beta" notice
                warnings.simplefilter("ignore", UserWarning)
                value = getattr(value, f"to_{layout}")()
        if entry.get("requires_grad") and (value.is_floating_point() or value.is_complex()):
            value.requires_grad_(True)
        return value

    def _raw(self, blob: str) -> Any:
        import numpy as np

        start, end = self.blobs[blob]["data_offsets"]
        return np.memmap(
            self.path,
            dtype=np.uint8,
            mode="c",
            offset=self.data_start + start,
            shape=(end - start,),
        )

    def read_slice(self, ref: str, index: Any) -> Any:
        """``tensor[index]`` read through safetensors' ``safe_open`` (only those bytes),
        for natively stored tensors; other encodings fall back to the mapped value."""
        entry = self.tensors[ref]
        if entry["encoding"] != "native":
            return self.tensor(ref)[index]
        from safetensors import safe_open

        framework = "numpy" if entry["kind"] == "numpy" else "pt"
        with safe_open(self.path, framework=framework) as f:
            return f.get_slice(entry["blob"])[index]

    # decoding
    def decode(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH + 2:
            raise BundleError(f"values nested deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value
        if isinstance(value, list):
            return [self.decode(v, depth + 1) for v in value]
        if not isinstance(value, dict):
            raise BundleError(f"unexpected value {type(value).__name__} in the manifest")
        tag = value.get("$")
        if tag == "tuple":
            return tuple(self.decode(v, depth + 1) for v in _list(value, "v"))
        if tag == "dict":
            keys = _list(value, "k")
            values = _list(value, "v")
            if len(keys) != len(values):
                raise BundleError("a saved dict has different numbers of keys and values")
            out: Dict[Any, Any] = {}
            for k, v in zip(keys, values, strict=True):
                key = self.decode(k, depth + 1)
                try:
                    hash(key)
                except TypeError:
                    raise BundleError(f"a saved dict key is not hashable: {k!r:.80}") from None
                out[key] = self.decode(v, depth + 1)
            if value.get("ordered"):
                import collections

                return collections.OrderedDict(out)
            return out
        if tag == "float":
            text = value.get("v")
            if text not in ("nan", "inf", "-inf"):
                raise BundleError(f"bad special float {text!r:.40}")
            return float(text)
        if tag == "bytes":
            try:
                return base64.b64decode(_str(value, "v"), validate=True)
            except ValueError:
                raise BundleError("bad base64 bytes value") from None
        if tag in ("tensor", "ndarray"):
            ref = value.get("ref")
            if not isinstance(ref, str) or ref not in self.tensors:
                raise BundleError(f"dangling tensor reference {ref!r:.40}")
            expected = "numpy" if tag == "ndarray" else "torch"
            if self.tensors[ref]["kind"] != expected:
                raise BundleError(f"tensor reference {ref!r} is not a {expected} value")
            return self.tensor(ref)
        if tag == "object":
            return UnknownObject(_str(value, "type"), _str(value, "repr"))
        if tag == "exception":
            return SavedError(_str(value, "type"), _str(value, "message"), _str(value, "text"))
        if tag == "action_error":
            exc = self.decode(value.get("exception"), depth + 1)
            if not isinstance(exc, SavedError):
                raise BundleError("an action error without its exception")
            return _loaded_action_error(_str(value, "action"), exc)
        if tag == "breakpoint":
            info = value.get("info")
            if not isinstance(info, dict):
                raise BundleError("a breakpoint without its description")
            return BundledBreakpoint({k: v for k, v in info.items() if _plain(v)})
        if tag == "state":
            name = _str(value, "type")
            attrs = value.get("attrs")
            if not isinstance(attrs, dict):
                raise BundleError(f"saved {name} has no attributes")
            decoded = {_state_name(k): self.decode(v, depth + 1) for k, v in attrs.items()}
            cls = _value_types.get(name)
            if cls is None:  # a type this version does not know: keep its fields, inertly
                return UnknownObject(name, repr(decoded)[:MAX_REPR])
            obj = cast(Any, cls).__new__(cls)  # restored field by field, not constructed
            obj.__dict__.update(decoded)
            return obj
        raise BundleError(f"unknown value tag {tag!r:.40} in the manifest")

    def records(self) -> List[Any]:
        """Every record, decoded into new objects with new ids (not yet in the store)."""
        _register_builtin_value_types()
        decoded = [self._record(r) for r in self.manifest["records"]]
        new_ids = {r.original_id: r.id for r in decoded if r.original_id is not None}
        for record in decoded:  # stacks/compares point at their sources' new ids
            sources = getattr(record, "source_ids", None)
            if isinstance(sources, list):
                record.source_ids = [new_ids.get(s, s) for s in sources]
        return decoded

    def _record(self, entry: Dict[str, Any]) -> Any:
        kind = entry["kind"]
        spec = _kind_spec(kind)
        cls = spec.loaded_cls if spec is not None else BundledRecord
        record = cast(Any, cls).__new__(cls)  # restored field by field, not constructed
        attrs = {_attr_name(k): self.decode(v, 1) for k, v in entry["attrs"].items()}
        settable = {  # properties with a setter take their value through it
            name
            for name in attrs
            if isinstance(getattr(cls, name, None), property)
            and getattr(cls, name).fset is not None
        }
        for name in attrs:
            if name in settable:
                continue
            if isinstance(getattr(cls, name, None), (property, staticmethod, classmethod)) or (
                callable(getattr(cls, name, None))
            ):
                raise BundleError(f"record attribute {name!r} clashes with {cls.__name__}.{name}")
        _check_field_types(attrs)
        if spec is not None and kind == "call":
            record.__dict__.update(_fresh_call_info())
        else:  # fields an older writer may not have had, so readers of them never fail
            record.__dict__.update(
                {k: v() for k, v in _DEFAULTS.items() if not hasattr(cls, k)}
                | ({"evals": {}, "locals": None} if kind == "hit" else {})
            )
        record.__dict__.update({k: v for k, v in attrs.items() if k not in settable})
        for name in settable:
            setattr(record, name, attrs[name])
        if spec is None:
            record.kind = kind
        stack = [tuple(f) for f in entry["stack"]]
        record._bundle_stack = stack
        raw = [(f, line, name) for f, line, name, _ in stack]
        if isinstance(getattr(cls, "raw_stack", None), property):
            record._raw_stack = raw
            record._stack = None
        else:
            record.raw_stack = raw
        record.id = next_id()
        record.original_id = entry["original_id"]
        record.bundle = self.name
        return record


_NONE = type(None)
_NUMBER = (int, float)
# fields the store, the kernel service and the analyses read: their types are checked on
# load, so a well-formed but inconsistent manifest fails at open, not later on access
_FIELD_TYPES: Dict[str, Tuple[type, ...]] = {
    "args": (dict, _NONE),
    "locals": (dict, _NONE),
    "evals": (dict,),
    "errors": (list,),
    "yields": (list,),
    "source_ids": (list,),
    "path": (list,),
    "grads": (dict, _NONE),
    "name": (str, _NONE),
    "qualname": (str, _NONE),
    "file": (str, _NONE),
    "thread": (str, _NONE),
    "module": (str, _NONE),
    "module_class": (str, _NONE),
    "line": (int, _NONE),
    "lineno": (int, _NONE),
    "time": (*_NUMBER, _NONE),
    "start_time": (*_NUMBER, _NONE),
    "end_time": (*_NUMBER, _NONE),
    "exception": (SavedError, _NONE),
    "breakpoint": (BundledBreakpoint, _NONE),
    "scale": _NUMBER,
    "is_causal": (bool,),
    "masked": (bool,),
    "kv_groups": (int,),
}
_DEFAULTS: Dict[str, Any] = {
    "name": lambda: None,
    "qualname": lambda: None,
    "file": lambda: None,
    "line": lambda: 0,
    "time": lambda: None,
    "thread": lambda: None,
    "errors": list,
}


def _check_field_types(attrs: Dict[str, Any]) -> None:
    for name, types in _FIELD_TYPES.items():
        if name in attrs and not isinstance(attrs[name], types):
            wanted = " or ".join(t.__name__ for t in types)
            raise BundleError(
                f"record field {name!r} is a {type(attrs[name]).__name__}, expected {wanted}"
            )
    for error in attrs.get("errors", []):
        if type(error).__name__ != "BundledActionError":
            raise BundleError(f"a record's errors hold a {type(error).__name__}, not an error")


def _fresh_call_info() -> Dict[str, Any]:
    from .call_info import CallInfo

    return dict(vars(CallInfo()))


_action_error_cls: Dict[str, type] = {}


def _loaded_action_error(action: str, exc: SavedError) -> Any:
    cls = _action_error_cls.get("cls")
    if cls is None:
        from .breakpoint import ActionError

        class BundledActionError(ActionError):
            """A saved :class:`ActionError`: the exception is a :class:`SavedError`."""

            def __init__(self, action: str, exception: SavedError) -> None:
                self.action = action
                self.exception = exception
                self.traceback = exception.text
                self.message = f"{exception.type_name}: {exception.message}"
                self.stack = traceback.StackSummary.from_list([])

            def __repr__(self) -> str:
                return f"<ActionError in {self.action}: {self.message}>"

        cls = _action_error_cls["cls"] = BundledActionError
    return cls(action, exc)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _attr_name(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise BundleError(f"bad record attribute name {name!r:.60}")
    if name in ("id", "original_id", "bundle", "kind", "raw_stack"):
        raise BundleError(f"record attribute {name!r} is reserved")
    return name


def _state_name(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("__"):
        raise BundleError(f"bad attribute name {name!r:.60} in a saved value")
    return name


def _list(value: Dict[str, Any], key: str) -> List[Any]:
    out = value.get(key)
    if not isinstance(out, list):
        raise BundleError(f"a saved {value.get('$')} value has no {key!r} list")
    return out


def _str(value: Dict[str, Any], key: str) -> str:
    out = value.get(key)
    if not isinstance(out, str):
        raise BundleError(f"a saved {value.get('$')} value has no {key!r} text")
    return out


def _read_header(path: str, size: int) -> Tuple[Dict[str, Any], int]:
    if size < 8:
        raise BundleError(f"{path!r} is not a bundle: {size} bytes, shorter than a header")
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > MAX_HEADER_BYTES:
            raise BundleError(
                f"{path!r}: header size {length} is over the {MAX_HEADER_BYTES} byte limit "
                "(not a bundle, or a corrupt one)"
            )
        if 8 + length > size:
            raise BundleError(
                f"{path!r} is truncated: the header says {length} bytes, the file has "
                f"{size - 8} after the size field"
            )
        text = f.read(length)
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path!r}: the header is not valid JSON ({exc})") from None
    except RecursionError:
        raise BundleError(f"{path!r}: the header is nested too deeply") from None
    if not isinstance(header, dict):
        raise BundleError(f"{path!r}: the header is not a JSON object")
    return header, 8 + length


def _check_blobs(header: Dict[str, Any], data_size: int) -> Dict[str, Dict[str, Any]]:
    """safetensors' own rules: known dtypes, sizes matching shapes, offsets that tile the
    data section exactly (no gaps, no overlaps, nothing past the end)."""
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise BundleError(f"tensor {name!r:.60} has no description")
        dtype = entry.get("dtype")
        shape = entry.get("shape")
        offsets = entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ST_SIZES:
            raise BundleError(f"tensor {name!r:.60} has an unsupported dtype {dtype!r:.40}")
        nbytes = _checked_numel(shape, f"tensor {name!r:.60}") * _ST_SIZES[dtype]
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
        ):
            raise BundleError(f"tensor {name!r:.60} has bad data_offsets {offsets!r:.80}")
        start, end = offsets
        if not 0 <= start <= end:
            raise BundleError(f"tensor {name!r:.60} has bad data_offsets {offsets!r:.80}")
        if end > data_size:
            raise BundleError(
                f"tensor {name!r:.60} ends at byte {end} but the data section has only "
                f"{data_size} bytes (truncated file, or offsets outside the data)"
            )
        if end - start != nbytes:
            raise BundleError(
                f"tensor {name!r:.60}: {dtype} {shape} needs {nbytes} bytes, its offsets "
                f"span {end - start}"
            )
        spans.append((start, end, name))
    spans.sort()
    position = 0
    for start, end, name in spans:
        if start != position:
            raise BundleError(
                f"tensor {name!r:.60} starts at byte {start}, expected {position} "
                "(overlapping or gapped tensor data)"
            )
        position = end
    if position != data_size:
        raise BundleError(
            f"the data section has {data_size} bytes but the tensors cover {position} "
            "(trailing bytes or a truncated file)"
        )
    return header


def _checked_numel(shape: Any, what: str) -> int:
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise BundleError(f"{what} has a bad shape {shape!r:.80}")
    numel = 1
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= MAX_DIM:
            raise BundleError(f"{what} has a bad or huge dimension in its shape {shape!r:.80}")
        numel *= dim
    return numel


def _check_manifest(metadata: Any) -> Dict[str, Any]:
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise BundleError(
            "not a nopdb-lab capture bundle (a safetensors file without the bundle metadata)"
        )
    text = metadata.get("manifest")
    if not isinstance(text, str):
        raise BundleError("the bundle has no manifest")
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise BundleError(f"the manifest is not valid JSON ({exc})") from None
    except RecursionError:
        raise BundleError("the manifest is nested too deeply") from None
    if not isinstance(manifest, dict):
        raise BundleError("the manifest is not a JSON object")
    version = manifest.get("version")
    if type(version) is not int or version < 1:
        raise BundleError(f"the manifest has a bad format version {version!r:.40}")
    if version > VERSION:
        raise BundleError(
            f"this bundle uses format version {version}, written by a newer nopdb-lab; this "
            f"one reads versions up to {VERSION} (upgrade nopdb-lab)"
        )
    if metadata.get("version") != str(version):
        raise BundleError("the bundle's metadata and manifest disagree on the format version")
    records = manifest.get("records")
    tensors = manifest.get("tensors")
    if not isinstance(records, list) or not isinstance(tensors, dict):
        raise BundleError("the manifest needs a 'records' list and a 'tensors' object")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise BundleError(f"record {i} in the manifest is not an object")
        if not isinstance(record.get("kind"), str) or not record["kind"].isidentifier():
            raise BundleError(f"record {i} has a bad kind {record.get('kind')!r:.40}")
        original = record.get("original_id")
        if original is not None and type(original) is not int:
            raise BundleError(f"record {i} has a bad original_id {original!r:.40}")
        if not isinstance(record.get("attrs"), dict):
            raise BundleError(f"record {i} has no attributes object")
        stack = record.get("stack")
        if not isinstance(stack, list) or not all(
            isinstance(f, list)
            and len(f) == 4
            and isinstance(f[0], str)
            and type(f[1]) is int
            and isinstance(f[2], str)
            and isinstance(f[3], str)
            for f in stack
        ):
            raise BundleError(f"record {i} has a bad stack (frames are [file, line, name, source])")
    return manifest


def _check_tensor_table(
    tensors: Dict[str, Any], blobs: Dict[str, Dict[str, Any]]
) -> Dict[str, Dict[str, Any]]:
    torch_dtypes: Dict[str, Any] | None = None
    for ref, entry in tensors.items():
        what = f"tensor {ref!r:.60}"
        if not isinstance(entry, dict) or entry.get("kind") not in ("torch", "numpy"):
            raise BundleError(f"{what} has a bad description in the manifest")
        numel = _checked_numel(entry.get("shape"), what)
        if entry["kind"] == "numpy":
            itemsize = _numpy_dtype(entry.get("dtype")).itemsize
        else:
            if torch_dtypes is None:
                torch_dtypes = _torch_dtypes()
            dtype = entry.get("dtype")
            if not isinstance(dtype, str) or dtype not in torch_dtypes:
                raise BundleError(f"{what} has an unknown torch dtype {dtype!r:.40}")
            itemsize = torch_dtypes[dtype].itemsize
            layout = entry.get("layout")
            if layout is not None and layout not in _SPARSE_LAYOUTS:
                raise BundleError(f"{what} has an unknown layout {layout!r:.40}")
        encoding = entry.get("encoding")
        if encoding == "empty":
            if numel != 0:
                raise BundleError(f"{what} is marked empty but has {numel} elements")
            continue
        if encoding not in ("native", "bytes"):
            raise BundleError(f"{what} has an unknown encoding {encoding!r:.40}")
        blob = entry.get("blob")
        if not isinstance(blob, str) or blob not in blobs:
            raise BundleError(f"{what} points at missing tensor data {blob!r:.60}")
        start, end = blobs[blob]["data_offsets"]
        if end - start != numel * itemsize:
            raise BundleError(
                f"{what}: {entry.get('dtype')} {entry['shape']} needs {numel * itemsize} "
                f"bytes, its data has {end - start}"
            )
        if encoding == "native" and (
            entry["kind"] != "torch"
            or blobs[blob]["shape"] != entry["shape"]
            or _ST_DTYPES.get(entry["dtype"]) != blobs[blob]["dtype"]
        ):
            raise BundleError(f"{what}: the manifest and the data disagree on dtype or shape")
    return tensors


def open_bundle(path: str | os.PathLike) -> Bundle:
    """Open and validate a bundle without adding anything to the store."""
    path = os.fspath(path)
    try:
        return Bundle(path)
    except BundleError as exc:
        raise _naming(exc, path) from None


def _naming(exc: BundleError, path: str) -> BundleError:
    """The error with the bundle's file named, if the message does not name it yet."""
    message = str(exc)
    if path in message or os.path.basename(path) in message:
        return exc
    return BundleError(f"{os.path.basename(path)}: {message}")


def load_captures(path: str | os.PathLike, store: Any = None) -> List[Any]:
    """Open the bundle at ``path`` and add its records to ``store`` (default:
    :data:`nopdb_lab.store`) with new ids; returns the added records, each with
    ``original_id`` (its id when saved) and ``bundle`` (the file's name).

    All or nothing: a malformed or hostile file raises :class:`BundleError` and nothing is
    added; so does a bundle larger than the store's whole budget (loaded tensors count
    against it like live ones).
    """
    from .capture_store import record_nbytes
    from .capture_store import store as default_store

    target = default_store if store is None else store
    bundle = open_bundle(path)
    try:
        records = bundle.records()
    except RecursionError:
        raise BundleError(f"{bundle.name}: values nested too deeply") from None
    except BundleError as exc:
        raise _naming(exc, bundle.path) from None
    try:
        total = sum(record_nbytes(r) for r in records)
    except Exception as exc:  # a value the checks let through but the store cannot size
        raise BundleError(f"{bundle.name}: a record's values cannot be sized ({exc})") from None
    if total > target.budget:
        raise BundleError(
            f"{bundle.name} holds {total / 1e6:.1f} MB of tensors, over the store's "
            f"{target.budget / 1e6:.0f} MB budget; raise it with "
            "nopdb_lab.store.set_budget(nbytes) and load again (nothing was added)"
        )
    for record in records:
        target.add(record)
    return records
