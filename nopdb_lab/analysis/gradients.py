"""Gradients of captured values: locals, arguments, return values, values at a line.

A capture made with ``grads=True`` (or a list of names) registers a tensor hook on each
captured tensor that takes part in autograd. When a backward pass reaches the tensor, the
hook adds the gradient to the record (``record.grads``), accumulating over several
backward passes as ``.grad`` does. Nothing is retained in the autograd graph: the hook
only copies the gradient it is handed.

Every value that was asked for but has no gradient says why, in ``record.grad_status``
(and in the ``KeyError`` raised by ``record.grads[...]``):

* ``pending``: no backward pass has reached it yet;
* ``no grad``: it does not require grad (computed under ``torch.no_grad()`` or
  ``torch.inference_mode()``, or a leaf without ``requires_grad``);
* ``modified``: it was modified in place after capture while the capture kept a
  reference (not a snapshot), so the captured value is no longer the one the gradient
  belongs to;
* ``error``: storing the gradient failed (the backward pass itself continues).

torch is imported lazily: importing this module costs nothing without torch.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from typing import Any, Callable, Dict, Iterable, List, Sequence, Tuple, Union

from ..tracing import observers

log = logging.getLogger("nopdb_lab")

GradSpec = Union[bool, Sequence[str], None]

OK = "ok"
PENDING = "pending: no backward pass has reached it yet"
RETURN_NAMES = ("return", "return_value")


_session = {"enabled": False}


def start_gradient_capture() -> bool:
    """Keep gradients for the JupyterLab panel's captures (gutter breakpoints and the
    attention switch) from the next cell on; False if it was already on."""
    was = _session["enabled"]
    _session["enabled"] = True
    return not was


def stop_gradient_capture() -> bool:
    """Stop what :func:`start_gradient_capture` started; False if it was not on."""
    was = _session["enabled"]
    _session["enabled"] = False
    return was


def gradient_capture_active() -> bool:
    """Whether the panel's gradient switch is on."""
    return _session["enabled"]


def normalize_spec(grads: GradSpec) -> "frozenset[str] | bool":
    """``False`` (off), ``True`` (every tensor that requires grad) or a set of names.

    Raises ``TypeError``/``ValueError`` naming the argument for anything else.
    """
    if grads is None or grads is False:
        return False
    if grads is True:
        return True
    if isinstance(grads, str):
        grads = [grads]
    if isinstance(grads, dict) or not isinstance(grads, (list, tuple, set, frozenset)):
        raise TypeError(f"grads must be True, False or a list of value names, got {grads!r}")
    names = list(grads)
    bad = [n for n in names if not isinstance(n, str) or not n.isidentifier()]
    if bad:
        raise ValueError(f"grads names must be Python identifiers, got {bad!r}")
    if not names:
        return False
    return frozenset(names)


def wants(spec: "frozenset[str] | bool", name: str) -> bool:
    """Whether a value called ``name`` is asked for by ``spec``."""
    if spec is True:
        return True
    if spec is False:
        return False
    if name in spec:
        return True
    return name in RETURN_NAMES and bool(spec & set(RETURN_NAMES))


class NoGrads(dict):
    """``record.grads`` of a capture made without ``grads``: every lookup says so."""

    def __missing__(self, key: Any) -> Any:
        raise KeyError(
            f"no gradient for {key!r}: this capture was made without grads "
            "(pass grads=True or a list of names to capture_call(s), breakpoint or "
            "capture_attention)"
        )

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("a capture made without grads has no gradients to set")


NO_GRADS = NoGrads()


class GradDict(dict):
    """A dict of gradients whose missing keys say why there is no gradient."""

    def __init__(self, owner: "GradientCollector", prefix: str) -> None:
        super().__init__()
        self._owner = weakref.ref(owner)
        self._prefix = prefix

    def __missing__(self, key: Any) -> Any:
        owner = self._owner()
        where = f"{self._prefix}[{key!r}]" if self._prefix else repr(key)
        status = {} if owner is None else owner.status
        path = _path_key(self._prefix, key)
        reason = status.get(path)
        if reason is None:  # items of a tuple/dict value: report theirs
            parts = sorted({v for k, v in status.items() if k.startswith(path + ".")})
            reason = "; ".join(parts) if parts else None
        if reason is None:
            raise KeyError(f"no gradient for {where}: it was not captured with grads")
        raise KeyError(f"no gradient for {where}: {reason}")

    def __reduce__(self) -> Any:  # a plain dict when copied or pickled
        return (dict, (dict(self),))


def _path_key(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


class GradientCollector:
    """Receives the gradients of one record's watched tensors.

    ``grads`` is the structure users read; ``status`` maps ``"locals.attn"``-style
    paths to ``"ok"`` or the reason there is no gradient. ``on_update(record)`` is
    called after each gradient arrives (the capture store re-counts the record's bytes
    and the JupyterLab panel marks it).
    """

    def __init__(
        self,
        record: Any,
        sections: Iterable[str] | None,
        snapshot: Callable[[Any], Any] | None,
        device: Any = None,
    ) -> None:
        self._record = weakref.ref(record)
        self._snapshot = snapshot
        self._device = device
        self._lock = threading.Lock()
        self.status: Dict[str, str] = {}
        self.errors: List[str] = []
        self.grads = GradDict(self, "")
        for section in sections or ():
            if section != "return_value":  # set when its gradient arrives
                dict.__setitem__(self.grads, section, GradDict(self, section))

    # -- registering ------------------------------------------------------------------
    def watch(self, section: str | None, name: str, value: Any) -> None:
        """Hook ``value`` (a tensor, or a tuple/list/dict of them) under ``section.name``."""
        torch = sys.modules.get("torch")
        if torch is None:
            return
        if isinstance(value, torch.Tensor):
            self._watch_tensor(torch, section, name, (), value)
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    self._watch_tensor(torch, section, name, (i,), item)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, torch.Tensor) and isinstance(key, (str, int)):
                    self._watch_tensor(torch, section, name, (key,), item)

    def _watch_tensor(
        self, torch: Any, section: str | None, name: str, index: Tuple[Any, ...], t: Any
    ) -> None:
        head: Tuple[Any, ...] = (name,) if section in (None, "return_value") else (section, name)
        key = ".".join(str(p) for p in head + index)
        reason = no_grad_reason(torch, t)
        if reason is not None:
            self.status[key] = reason
            return
        self.status[key] = PENDING
        version = t._version
        tensor_ref = weakref.ref(t)
        collector_ref = weakref.ref(self)
        keep_reference = self._snapshot is None

        def hook(grad: Any) -> None:
            collector = collector_ref()
            if collector is None:  # the record is gone; nothing to fill
                return None
            try:
                live = tensor_ref()
                if keep_reference and live is not None and live._version != version:
                    collector._set_status(
                        key,
                        f"modified in place after capture (version {version} → "
                        f"{live._version}): the captured value is not the one this "
                        "gradient belongs to; capture with snapshot=True to keep both",
                    )
                    return None
                collector._add(section, name, index, key, grad)
            except Exception as exc:  # never break the user's backward pass
                collector._error(key, exc)
            return None

        t.register_hook(hook)

    # -- receiving --------------------------------------------------------------------
    def _copy(self, grad: Any) -> Any:
        g = grad.detach()
        if self._device is not None:
            return g.to(self._device, copy=True)
        return g.clone()

    def _add(
        self, section: str | None, name: str, index: Tuple[Any, ...], key: str, grad: Any
    ) -> None:
        with self._lock:
            if section == "return_value":
                container: Any = self.grads
                slot = "return_value"
            else:
                container = self.grads if section is None else self.grads[section]
                slot = name
            current = dict.get(container, slot)
            if not index:
                if current is None:
                    container[slot] = self._copy(grad)
                else:
                    current.add_(grad.to(current.device))
            else:  # one item of a tuple, list or dict value: mirror its structure
                if current is None:
                    current = {} if isinstance(index[0], str) else ()
                holder = list(current) if isinstance(current, tuple) else current
                _accumulate_item(holder, index[0], grad, self._copy)
                container[slot] = tuple(holder) if isinstance(holder, list) else holder
            self.status[key] = OK
        self._updated()

    def _set_status(self, key: str, reason: str) -> None:
        with self._lock:
            self.status[key] = reason
        self._updated()

    def _error(self, key: str, exc: BaseException) -> None:
        message = f"error: storing the gradient failed: {type(exc).__name__}: {exc}"
        with self._lock:
            self.status[key] = message
            self.errors.append(f"{key}: {type(exc).__name__}: {exc}")
        log.warning("nopdb_lab: gradient of %s: %s", key, message)
        self._updated()

    def _updated(self) -> None:
        record = self._record()
        if record is not None:
            observers.publish_update(record)

    # -- reading ----------------------------------------------------------------------
    @property
    def received(self) -> int:
        """How many watched values have a gradient."""
        return sum(1 for s in self.status.values() if s == OK)


def _accumulate_item(holder: Any, key: Any, grad: Any, copy: Callable[[Any], Any]) -> None:
    if isinstance(holder, list):
        while len(holder) <= key:
            holder.append(None)
        current = holder[key]
    else:
        current = holder.get(key)
    if current is None:
        holder[key] = copy(grad)
    else:
        current.add_(grad.to(current.device))


def no_grad_reason(torch: Any, t: Any) -> str | None:
    """Why ``t`` will never receive a gradient, or ``None`` if it can."""
    if t.requires_grad:
        return None
    if getattr(t, "is_inference", lambda: False)():
        return "no grad: computed under torch.inference_mode()"
    if not torch.is_grad_enabled():
        return "no grad: computed under torch.no_grad() (autograd was off)"
    if t.is_leaf:
        if not (t.is_floating_point() or t.is_complex()):
            return f"no grad: an integer tensor ({t.dtype}) cannot require grad"
        return (
            "no grad: a leaf tensor without requires_grad (nothing upstream requires grad; "
            "call .requires_grad_() on the input or a parameter)"
        )
    return "no grad: it does not require grad"


def begin(
    record: Any,
    sections: Sequence[str] | None,
    snapshot: Callable[[Any], Any] | None = None,
    device: Any = None,
) -> GradientCollector:
    """A collector for ``record``; sets ``record.grads`` and ``record.grad_status``.

    ``sections`` (``args``, ``locals``, ``return_value``) structure ``grads`` as
    ``grads[section][name]``; ``None`` (breakpoint hits) keys gradients by name alone.
    """
    collector = GradientCollector(record, sections, snapshot, device)
    record.grads = collector.grads
    record.grad_status = collector.status
    record._grad_collector = collector
    return collector


def watch_values(
    collector: GradientCollector,
    spec: "frozenset[str] | bool",
    section: str | None,
    values: Dict[str, Any],
) -> None:
    """Hook the asked-for tensors among ``values`` (name → value)."""
    for name, value in values.items():
        label = "return_value" if section == "return_value" else name
        if wants(spec, label):
            collector.watch(section, name, value)


def finish(
    collector: GradientCollector, spec: "frozenset[str] | bool", names: Iterable[str]
) -> None:
    """Note each name asked for that the captured values do not have."""
    if spec is True or spec is False:
        return
    present = set(names)
    for name in sorted(spec - present - set(RETURN_NAMES)):
        collector.status[name] = f"not found: no argument or local named {name!r}"


def snapshot_device(spec: Any) -> Any:
    """The device a ``snapshot`` spec copies to (``None``: the value's own device)."""
    if spec is None or spec is False or spec is True:
        return None
    return spec


def grad_summary(record: Any) -> Dict[str, Any] | None:
    """``{"received": n, "asked": m, "status": {...}}`` for a record with grads, else None."""
    status = getattr(record, "grad_status", None)
    if status is None:
        return None
    received = sum(1 for s in status.values() if s == OK)
    return {"received": received, "asked": len(status), "status": dict(status)}


def gradient_stats(values: Sequence[Any]) -> List[Dict[str, Any]]:
    """Per-value ‖g‖₂, mean |g|, max |g| and NaN/Inf counts (the layer strip's bars).

    ``values`` are gradient tensors (``None`` for a missing one). Statistics are
    computed over the finite entries in float64 accumulators, in chunks, so a large
    gradient is never copied whole.
    """
    import torch

    out: List[Dict[str, Any]] = []
    for g in values:
        if g is None:
            out.append({"present": False})
            continue
        flat = g.detach().reshape(-1)
        sq = 0.0
        abs_sum = 0.0
        abs_max = 0.0
        nan = inf = 0
        finite_count = 0
        chunk = 1 << 22
        for start in range(0, flat.numel(), chunk):
            part = flat[start : start + chunk]
            if not part.is_floating_point():
                part = part.double()
            isnan = torch.isnan(part)
            isinf = torch.isinf(part)
            nan += int(isnan.sum())
            inf += int(isinf.sum())
            finite = part[~(isnan | isinf)].double()
            finite_count += finite.numel()
            if finite.numel():
                a = finite.abs()
                sq += float((a * a).sum())
                abs_sum += float(a.sum())
                abs_max = max(abs_max, float(a.max()))
        out.append(
            {
                "present": True,
                "norm": sq**0.5,
                "mean_abs": abs_sum / finite_count if finite_count else 0.0,
                "max_abs": abs_max,
                "nan": nan,
                "inf": inf,
                "numel": int(flat.numel()),
            }
        )
    return out


def flag_layers(stats: List[Dict[str, Any]], factor: float = 1e3) -> List[str]:
    """``"vanishing"``/``"exploding"``/``"nonfinite"``/``""`` for each layer.

    A layer is vanishing (exploding) when its mean |g| is ``factor`` times smaller
    (larger) than the median of the layers' mean |g|, or exactly zero.
    """
    means = sorted(s["mean_abs"] for s in stats if s.get("present"))
    median = means[len(means) // 2] if means else 0.0
    flags: List[str] = []
    for s in stats:
        if not s.get("present"):
            flags.append("")
        elif s["nan"] or s["inf"]:
            flags.append("nonfinite")
        elif s["mean_abs"] == 0.0 or (median > 0 and s["mean_abs"] * factor < median):
            flags.append("vanishing")
        elif median > 0 and s["mean_abs"] > median * factor:
            flags.append("exploding")
        else:
            flags.append("")
    return flags


def sdpa_through_probabilities(
    query: Any,
    key: Any,
    value: Any,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tuple[Any, Any]:
    """SDPA's output computed through its probabilities (the math path), and those.

    ``softmax(q kᵀ·scale + mask)`` in the inputs' dtype, dropout as SDPA applies it,
    then ``P @ v``: the output equals SDPA's up to floating-point rounding and its
    gradients flow through ``P``, so a hook on ``P`` sees dL/dP. Memory: B·H·Nq·Nk
    elements of the inputs' dtype are kept for the backward pass, as in eager attention.
    """
    import math

    import torch

    n_q, n_k = query.shape[-2], key.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    k, v = key, value
    if query.dim() >= 3 and key.dim() >= 3 and key.shape[-3] != query.shape[-3]:
        if query.shape[-3] % key.shape[-3]:
            raise ValueError(
                f"{query.shape[-3]} query heads cannot share {key.shape[-3]} key/value heads"
            )
        groups = query.shape[-3] // key.shape[-3]
        k = k.repeat_interleave(groups, dim=-3)
        v = v.repeat_interleave(groups, dim=-3)
    scores = (query @ k.transpose(-2, -1)) * scale
    if is_causal:
        keep = torch.ones(n_q, n_k, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    probs = torch.softmax(scores, dim=-1)
    if torch.isnan(probs).any():  # fully masked rows: SDPA's math path gives zeros too
        probs = probs.nan_to_num(0.0)
    dropped = torch.dropout(probs, dropout_p, True) if dropout_p > 0 else probs
    return dropped @ v, probs


class NoGradientError(LookupError):
    """The value at a path has no gradient; the message says why."""


def gradient_of(record: Any, path: Sequence[Any]) -> Any:
    """The gradient of the value at ``path`` (``["locals", "attn"]``) of ``record``.

    Raises :class:`NoGradientError` saying why there is none.
    """
    if not path:
        raise NoGradientError("an empty path names no value")
    head, rest = path[0], list(path[1:])
    kind = getattr(record, "kind", "")
    try:
        if kind == "attention":
            if list(path[:2]) != ["locals", "weights"]:
                raise NoGradientError("only the attention weights of an SDPA call have a gradient")
            value = record.grads
            if value is None:
                why = record.grad_status or "not captured with grads"
                raise NoGradientError(f"no gradient for the weights: {why}")
            rest = rest[1:]
        elif kind == "hit":
            if head != "locals" or not rest:
                raise NoGradientError("only a hit's locals have gradients")
            value = record.grads[rest[0]]
            rest = rest[1:]
        elif head == "return_value":
            value = record.grads["return_value"]
        elif head in ("args", "locals") and rest:
            value = record.grads[head][rest[0]]
            rest = rest[1:]
        else:
            raise NoGradientError(f"{head!r} values have no gradients")
    except KeyError as exc:
        raise NoGradientError(str(exc.args[0]) if exc.args else str(exc)) from None
    for step in rest:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise NoGradientError(f"the gradient has no item {step!r}") from None
    if value is None:
        raise NoGradientError("no backward pass has reached this item yet")
    return value


def layer_strip(records: Sequence[Any], path: Sequence[Any]) -> List[Dict[str, Any]]:
    """One bar per record (a layer): the gradient's statistics at ``path`` and a flag
    (``vanishing``, ``exploding``, ``nonfinite`` or ``""``), or why it has none."""
    grads: List[Any] = []
    reasons: List[str | None] = []
    for record in records:
        try:
            grads.append(gradient_of(record, path))
            reasons.append(None)
        except NoGradientError as exc:
            grads.append(None)
            reasons.append(str(exc))
    stats = gradient_stats(grads)
    flags = flag_layers(stats)
    out = []
    for record, stat, flag, reason in zip(records, stats, flags, reasons, strict=True):
        row = {"id": record.id, "flag": flag, **stat}
        if reason is not None:
            row["reason"] = reason
        out.append(row)
    return out
