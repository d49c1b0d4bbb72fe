"""Attention probabilities from fused ``scaled_dot_product_attention`` calls.

Models that call ``torch.nn.functional.scaled_dot_product_attention`` (SDPA; timm and
transformers do by default) never hold an ``attn`` local, so capturing ``Attention.forward``
finds nothing. :func:`capture_attention` intercepts SDPA with a ``TorchFunctionMode`` and
records the probabilities each call implies::

    with nopdb_lab.capture_attention() as attns:
        model(x)
    attns[0].weights   # (B, H, Nq, Nk), rows sum to 1
    attns[0].module    # e.g. "encoder.layer.0.attention.self"

The probabilities are recomputed from the call's own ``query``/``key``, ``attn_mask``,
``is_causal``, ``scale`` and ``enable_gqa`` (grouped-query heads are expanded as SDPA
does), in float32, with no gradient; dropout is not applied (they are the probabilities
that dropout would act on). The model's own output is SDPA's, untouched.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from contextlib import contextmanager
from types import FrameType
from typing import Any, Dict, Iterable, Iterator, List

from ..call_info import RawStack, next_id, qualified_name, raw_stack, stack_summary
from ..records import EventRecord
from ..tracing import observers
from . import gradients

log = logging.getLogger("nopdb_lab")


class AttentionRecord(EventRecord):
    """One SDPA call: its attention probabilities and where it came from.

    Attributes: ``id`` (also its id in :data:`nopdb_lab.store`), ``weights`` (B×H×Nq×Nk
    float32 probabilities on the inputs' device), ``module`` (dotted path of the calling
    ``nn.Module`` inside the outermost module on the stack, ``""`` for that root itself,
    ``None`` when SDPA was not called from a module), ``module_class``, ``scale``,
    ``is_causal``, ``masked`` (an ``attn_mask`` was given), ``kv_groups`` (query heads per
    key/value head, 1 without grouped-query attention), ``time``, ``thread`` and ``stack``.
    """

    kind = "attention"
    _grad_collector: Any = None
    _grad_note: str | None = None
    _grads: Dict[str, Any] | None = None

    def __init__(
        self, weights: Any, frame: Any, module: str | None, module_class: str | None
    ) -> None:
        self.id = next_id()
        self.time = time.time()
        self.weights = weights
        self.module = module
        self.module_class = module_class
        self.scale = 0.0
        self.is_causal = False
        self.masked = False
        self.kv_groups = 1
        self.thread = threading.current_thread().name
        code = frame.f_code if frame is not None else None
        self.name = code.co_name if code else "<unknown>"
        self.qualname = qualified_name(code, frame) if code else "<unknown>"
        self.file = code.co_filename if code else "<unknown>"
        self.line = frame.f_lineno if frame is not None else 0
        self.raw_stack: RawStack = raw_stack(frame)
        self.errors: List[Any] = []
        self._grads: Dict[str, Any] | None = None

    @property
    def grads(self) -> Any:
        """dL/dP for the probabilities (same shape as ``weights``), or ``None`` when there
        is none (``grad_status`` says why). Accumulates over backward passes."""
        if self._grads is None:
            return None
        return dict.get(self._grads, "weights")

    @property
    def grad_status(self) -> str | None:
        """``"ok"`` once dL/dP arrived, else why there is none (``None``: not asked)."""
        if self._grad_collector is not None:
            return self._grad_collector.status.get("weights")
        return self._grad_note

    @grad_status.setter
    def grad_status(self, note: str | None) -> None:
        self._grad_note = note

    @property
    def grad_values(self) -> Dict[str, Any]:
        """``{"weights": dL/dP}`` once it arrived (what the capture browser shows)."""
        if self._grads is None:
            return {}
        return dict(self._grads)

    def held_values(self) -> Iterable[Any]:
        return [*self.locals.values(), *self.grad_values.values()]

    @property
    def locals(self) -> Dict[str, Any]:
        """What the capture browser shows (and ``store[id].locals['weights']`` reaches)."""
        return {
            "weights": self.weights,
            "module": self.module,
            "module_class": self.module_class,
            "scale": self.scale,
            "is_causal": self.is_causal,
            "masked": self.masked,
            "kv_groups": self.kv_groups,
        }

    @property
    def stack(self) -> traceback.StackSummary:
        return stack_summary(self.raw_stack)

    def __repr__(self) -> str:
        shape = tuple(getattr(self.weights, "shape", ()))
        return f"AttentionRecord(id={self.id}, module={self.module!r}, weights={shape})"


def attention_probabilities(
    query: Any,
    key: Any,
    attn_mask: Any = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Any:
    """``softmax(q kᵀ · scale + mask)`` as SDPA computes it, in float32 (B×H×Nq×Nk).

    Follows PyTorch's reference for SDPA: the causal mask is the lower-left triangle of
    an Nq×Nk matrix; a boolean mask keeps ``True`` positions, a float mask is added; with
    fewer key heads than query heads (grouped-query attention) each key head serves
    ``Hq / Hk`` consecutive query heads. Rows whose every position is masked are zero.
    """
    import torch

    q = query.detach().float()
    k = key.detach().float()
    n_q, n_k = q.shape[-2], k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    if q.dim() >= 3 and k.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        if q.shape[-3] % k.shape[-3]:
            raise ValueError(
                f"{q.shape[-3]} query heads cannot share {k.shape[-3]} key/value heads"
            )
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    scores = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        keep = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.detach().float()
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)


HEAD_FUSIONS = ("mean", "max", "min")


def attention_rollout(maps: Any, head_fusion: str = "mean", residual: bool = True) -> Any:
    """Attention rollout (Abnar & Zuidema, 2020) over layers, first layer first.

    ``maps``: a sequence of per-layer attention tensors (B×H×N×N, or H×N×N, or N×N), e.g.
    ``[r.weights for r in attns]``. Heads are fused by ``head_fusion`` (mean, max or min);
    with ``residual`` each layer becomes ``0.5·A + 0.5·I`` (the skip connection) and its
    rows are re-normalised to sum to 1. Returns ``Ã_L ⋯ Ã_1`` (B×N×N, or N×N for 2-D or
    3-D input): row ``i`` is how much each input token flows into token ``i`` at the top.
    """
    import torch

    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, not {head_fusion!r}")
    layers = [torch.as_tensor(m).detach().float() for m in maps]
    if not layers:
        raise ValueError("attention_rollout needs at least one layer of attention")
    squeeze = layers[0].dim() <= 3
    result: Any = None  # a tensor once the first layer is in
    for depth, attn in enumerate(layers):
        if attn.dim() == 2:
            attn = attn[None, None]
        elif attn.dim() == 3:
            attn = attn[None]
        if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2]:
            raise ValueError(
                f"layer {depth}: expected (B, H, N, N) attention, got {tuple(attn.shape)}"
            )
        fused = getattr(attn, head_fusion)(dim=1)
        fused = fused if head_fusion == "mean" else fused.values
        if residual:
            eye = torch.eye(fused.shape[-1], device=fused.device)
            fused = 0.5 * fused + 0.5 * eye
            fused = fused / fused.sum(dim=-1, keepdim=True)
        if result is not None and result.shape[-1] != fused.shape[-1]:
            raise ValueError(
                f"layer {depth} has {fused.shape[-1]} tokens, the layers before {result.shape[-1]}"
            )
        result = fused if result is None else fused @ result
    return result[0] if squeeze else result


def _calling_module(frame: Any) -> tuple[str | None, str | None]:
    """Path and class of the innermost ``nn.Module`` whose method is on the stack."""
    import torch

    inner = None
    root = None
    f = frame
    while f is not None:
        owner = f.f_locals.get("self") if "self" in f.f_code.co_varnames[:1] else None
        if isinstance(owner, torch.nn.Module):
            if inner is None:
                inner = owner
            root = owner
        f = f.f_back
    if inner is None or root is None:
        return None, None
    cls = type(inner).__qualname__
    for name, module in root.named_modules():
        if module is inner:
            return name, cls
    return None, cls


def _interceptor(
    records: List[AttentionRecord] | None, snapshot: str | None, grads: bool = False
) -> Any:
    """A TorchFunctionMode that records every SDPA call (into ``records`` when given).

    With ``grads`` and autograd on, SDPA's output is computed through the probabilities
    (the math path) so that their gradient exists; the record gets it after a backward.
    """
    from torch.nn import functional
    from torch.overrides import TorchFunctionMode

    sdpa = functional.scaled_dot_product_attention

    class _Interceptor(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
            kwargs = kwargs or {}
            if func is sdpa and grads and _needs_grad(args, kwargs):
                result, probs = _sdpa_math(args, kwargs)
                record = _record(args, kwargs, snapshot, probs=probs)
                if records is not None:
                    records.append(record)
                return result
            result = func(*args, **kwargs)
            if func is sdpa:
                record = _record(args, kwargs, snapshot)
                if grads:
                    record.grad_status = (
                        gradients.no_grad_reason(
                            __import__("torch"), args[0] if args else kwargs["query"]
                        )
                        or "no grad: it does not require grad"
                    )
                if records is not None:
                    records.append(record)
            return result

    return _Interceptor()


_session: Dict[str, Any] = {"enabled": False, "mode": None, "cell_modes": []}


def start_attention_capture() -> bool:
    """Record every SDPA call into the capture store from now on, until
    :func:`stop_attention_capture` (the capture browser's switch). Returns False if it
    was already on.

    In IPython the interception is set up around each cell, on the thread that runs it,
    starting with the next cell (comm messages may be handled on another thread, and
    torch's mode stack is per thread). Elsewhere it starts now, on the calling thread.
    """
    if _session["enabled"]:
        return False
    _session["enabled"] = True
    shell = _ipython()
    if shell is None:
        mode = _interceptor(None, None)
        mode.__enter__()
        _session["mode"] = mode
    elif not _session.get("hooked"):
        shell.events.register("pre_execute", _enter_for_cell)
        shell.events.register("post_execute", _exit_after_cell)
        _session["hooked"] = True
    return True


def stop_attention_capture() -> bool:
    """Stop what :func:`start_attention_capture` started; False if it was not on.

    Outside IPython, refuses (RuntimeError) while another TorchFunctionMode entered later
    is still active, since torch's mode stack can only be unwound from the top."""
    if not _session["enabled"]:
        return False
    mode = _session["mode"]
    if mode is not None:
        from torch.overrides import _get_current_function_mode

        if _get_current_function_mode() is not mode:
            raise RuntimeError(
                "another TorchFunctionMode entered after attention capture started is "
                "still active; leave it first"
            )
        mode.__exit__(None, None, None)
        _session["mode"] = None
    _session["enabled"] = False
    return True


def attention_capture_active() -> bool:
    """Whether :func:`start_attention_capture` is on."""
    return bool(_session["enabled"])


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _enter_for_cell() -> None:
    if _session["enabled"]:
        mode = _interceptor(None, None, gradients.gradient_capture_active())
        mode.__enter__()
        _session["cell_modes"].append(mode)


def _exit_after_cell() -> None:
    from torch.overrides import _get_current_function_mode

    while _session["cell_modes"]:
        mode = _session["cell_modes"].pop()
        if _get_current_function_mode() is mode:
            mode.__exit__(None, None, None)
        else:  # the cell left a mode of its own on top; unwinding it is not ours to do
            log.warning(
                "attention capture: a TorchFunctionMode entered in the cell is still active"
            )


def _needs_grad(args: Any, kwargs: Dict[str, Any]) -> bool:
    import torch

    call = dict(zip(_SDPA_PARAMS, args, strict=False))
    call.update(kwargs)
    return torch.is_grad_enabled() and any(
        isinstance(call.get(n), torch.Tensor) and call[n].requires_grad
        for n in ("query", "key", "value")
    )


def _sdpa_math(args: Any, kwargs: Dict[str, Any]) -> Any:
    call = dict(zip(_SDPA_PARAMS, args, strict=False))
    call.update(kwargs)
    return gradients.sdpa_through_probabilities(
        call["query"],
        call["key"],
        call["value"],
        attn_mask=call.get("attn_mask"),
        dropout_p=float(call.get("dropout_p") or 0.0),
        is_causal=bool(call.get("is_causal", False)),
        scale=call.get("scale"),
        enable_gqa=bool(call.get("enable_gqa", False)),
    )


@contextmanager
def capture_attention(
    snapshot: str | None = None, grads: bool = False
) -> Iterator[List[AttentionRecord]]:
    """Record the attention probabilities of every SDPA call in the block, in call order.

    Yields a list that fills as the model runs. Each record also goes to the capture
    store (and so to the JupyterLab capture browser). ``snapshot="cpu"`` moves the
    weights to the CPU as they are recorded (frees GPU memory for long runs).

    ``grads=True`` also keeps dL/dP, the gradient of the probabilities, in each
    record's ``grads`` after a backward pass. For that, while autograd is on, the block's
    SDPA outputs are computed through the probabilities (``softmax(q kᵀ·s + mask) @ v``,
    PyTorch's math path): the outputs and their gradients equal SDPA's up to rounding,
    and the backward pass keeps B·H·Nq·Nk probabilities per call, as eager attention does.
    """
    if snapshot not in (None, "cpu"):
        raise ValueError(f"snapshot must be None or 'cpu', not {snapshot!r}")
    if not isinstance(grads, bool):
        raise TypeError(f"grads must be True or False for capture_attention, got {grads!r}")
    records: List[AttentionRecord] = []
    with _interceptor(records, snapshot, grads):
        yield records


_SDPA_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")


def _record(args: Any, kwargs: Dict[str, Any], snapshot: Any, probs: Any = None) -> AttentionRecord:
    import sys

    import torch

    call = dict(zip(_SDPA_PARAMS, args, strict=False))
    call.update(kwargs)
    if probs is not None:
        weights = probs.detach().float()
    else:
        with torch.no_grad():
            weights = attention_probabilities(
                call["query"],
                call["key"],
                attn_mask=call.get("attn_mask"),
                is_causal=bool(call.get("is_causal", False)),
                scale=call.get("scale"),
                enable_gqa=bool(call.get("enable_gqa", False)),
            )
    if snapshot == "cpu":
        weights = weights.cpu()
    # the caller of F.scaled_dot_product_attention: skip this module's and torch's frames
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename == __file__
        or frame.f_code.co_filename.replace("\\", "/").endswith("torch/overrides.py")
    ):
        frame = frame.f_back
    module, module_class = _calling_module(frame)
    record = AttentionRecord(weights, frame, module, module_class)
    q, k = call["query"], call["key"]
    record.scale = float(call.get("scale") or 1.0 / math.sqrt(q.shape[-1]))
    record.is_causal = bool(call.get("is_causal", False))
    record.masked = call.get("attn_mask") is not None
    record.kv_groups = q.shape[-3] // k.shape[-3] if q.dim() >= 3 and k.dim() >= 3 else 1
    if probs is not None:
        collector = gradients.GradientCollector(
            record, None, None, "cpu" if snapshot == "cpu" else None
        )
        record._grads = collector.grads
        record._grad_collector = collector
        collector.watch(None, "weights", probs)
    observers.publish(record)
    return record
