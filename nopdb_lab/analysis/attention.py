"""Attention probabilities from fused ``scaled_dot_product_attention`` calls.

Models that call ``torch.nn.functional.scaled_dot_product_attention`` (SDPA; timm and
transformers do by default) never hold an ``attn`` local, so capturing ``Attention.forward``
finds nothing. :func:`capture_attention` intercepts SDPA with a ``TorchFunctionMode`` and
records the probabilities each call implies::

    with nopdb_lab.capture_attention() as attns:
        model(x)
    attns[0].weights   # (B, H, Nq, Nk), rows sum to 1
    attns[0].module    # e.g. "encoder.layer.0.attention.self"

Records are lazy (:mod:`nopdb_lab.analysis.attention_lazy`): each keeps the call's own
``query``/``key`` (as passed, so after RoPE, in the model's dtype), ``attn_mask``,
``is_causal``, ``scale`` and grouped-query layout, and computes probabilities (float32,
no gradient, no dropout: the probabilities dropout would act on) only when asked:
``rec.weights`` (the whole map), ``rec.rows(head, rows)``, ``rec.head(h)``, pooled slices.
The model's own output is SDPA's, untouched.

Also recorded: ``nn.MultiheadAttention`` (any ``need_weights``) and
``nn.TransformerEncoderLayer``/``DecoderLayer``, fused fast path included (see
:mod:`nopdb_lab.analysis.attention_nn`), and direct ``F.multi_head_attention_forward``
calls. During ``model.generate()`` with a KV cache, each decode step's rows are appended
to the record its module made for the prompt (one growing record per attention module,
with ``rec.token_ids``). An attention op that ran in the block but could not be recorded
(fused kernels called directly, ``flex_attention``, a ``torch.compile``'d region) is
reported in a warning when the block ends; nothing is dropped silently.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from types import FrameType
from typing import Any, Dict, Iterable, Iterator, List

from ..call_info import RawStack, next_id, qualified_name, raw_stack, stack_summary
from ..records import EventRecord
from ..tracing import observers
from . import attention_nn, gradients
from .attention_flow import attention_flow  # noqa: F401  (public here)
from .attention_lazy import LazyAttention, attention_sinks, is_lazy  # noqa: F401
from .generation import extends, join_tokens, processed_keys, unpack_transformers_gqa

log = logging.getLogger("nopdb_lab")


_blocks = itertools.count(1)  # numbers the blocks (and cells) that record attention


class AttentionRecord(EventRecord):
    """One attention module's map: SDPA's inputs, probabilities on demand, and origin.

    Attributes: ``id`` (also its id in :data:`nopdb_lab.store`), ``attention`` (the
    :class:`~nopdb_lab.analysis.attention_lazy.LazyAttention` holding the inputs),
    ``weights`` (B×H×Nq×Nk float32 probabilities, materialised on each access; an
    ``AttentionBudgetError`` naming the sizes when beyond the store's budget), ``module``
    (dotted path of the calling ``nn.Module`` inside the outermost module on the stack,
    ``""`` for that root itself, ``None`` when not called from a module),
    ``module_class``, ``scale``, ``is_causal``, ``masked`` (an ``attn_mask`` was given),
    ``kv_groups`` (query heads per key/value head), ``steps`` (SDPA calls merged into it:
    more than 1 for a generation), ``token_ids`` (B×N token ids of the rows, when the
    model's embedding lookup was seen, else None), ``block`` (the same number for every
    record of one ``capture_attention()`` block or one cell under the browser's switch:
    the layers of one forward pass or generation), ``time``, ``thread`` and ``stack``.
    """

    kind = "attention"
    block: int | None = None
    _grad_collector: Any = None
    _grad_note: str | None = None
    _grads: Dict[str, Any] | None = None

    def __init__(
        self, attention: Any, frame: Any, module: str | None, module_class: str | None
    ) -> None:
        self.id = next_id()
        self.time = time.time()
        if not is_lazy(attention):  # a tensor of probabilities, already computed
            attention = LazyAttention.from_weights(attention)
        self.attention = attention
        self.module = module
        self.module_class = module_class
        self.scale = 0.0
        self.is_causal = False
        self.masked = False
        self.kv_groups = 1
        self.steps = 1
        self.token_ids: Any = None
        self.thread = threading.current_thread().name
        code = frame.f_code if frame is not None else None
        self.name = code.co_name if code else "<unknown>"
        self.qualname = qualified_name(code, frame) if code else "<unknown>"
        self.file = code.co_filename if code else "<unknown>"
        self.line = frame.f_lineno if frame is not None else 0
        self.raw_stack: RawStack = raw_stack(frame)
        self.errors: List[Any] = []

    @property
    def weights(self) -> Any:
        """The whole B×H×Nq×Nk float32 map (computed on access, not kept)."""
        return self.attention.materialize()

    @property
    def shape(self) -> tuple:
        return tuple(self.attention.shape)

    def rows(self, head: int, query_rows: Any, batch: int = 0) -> Any:
        """``len(query_rows)`` × Nk probabilities of one head (rows: list/range/tensor)."""
        return self.attention.rows(head, query_rows, batch)

    def head(self, h: int, batch: int = 0) -> Any:
        """One head's Nq × Nk map."""
        return self.attention.head(h, batch)

    def nbytes_held(self) -> int:
        """Bytes of tensors this record keeps alive (what the store counts)."""
        grads = sum(g.element_size() * g.numel() for g in self.grad_values.values())
        return (
            self.attention.nbytes
            + grads
            + (
                self.token_ids.element_size() * self.token_ids.numel()
                if self.token_ids is not None
                else 0
            )
        )

    @property
    def grads(self) -> Any:
        """dL/dP for the probabilities (same shape as ``weights``) with
        ``capture_attention(grads=True)``, or ``None`` when there is none (``grad_status``
        says why). Accumulates over backward passes."""
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
        """What the capture browser shows (``store[id].locals['weights']`` is the lazy map;
        the heatmap viewer slices it block by block)."""
        return {
            "weights": self.attention,
            "module": self.module,
            "module_class": self.module_class,
            "scale": self.scale,
            "is_causal": self.is_causal,
            "masked": self.masked,
            "kv_groups": self.kv_groups,
            "steps": self.steps,
            "token_ids": self.token_ids,
        }

    @property
    def stack(self) -> traceback.StackSummary:
        return stack_summary(self.raw_stack)

    def __repr__(self) -> str:
        return (
            f"AttentionRecord(id={self.id}, module={self.module!r}, weights={self.shape}, "
            f"holds {self.attention.nbytes:,} bytes)"
        )


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
    from .attention_lazy import fuse_heads

    layers = [
        m if is_lazy(getattr(m, "attention", m)) else torch.as_tensor(m).detach().float()
        for m in maps
    ]
    if not layers:
        raise ValueError("attention_rollout needs at least one layer of attention")
    squeeze = not is_lazy(getattr(layers[0], "attention", layers[0])) and layers[0].dim() <= 3
    result: Any = None  # a tensor once the first layer is in
    for depth, attn in enumerate(layers):
        attn = getattr(attn, "attention", attn)
        if is_lazy(attn):  # streamed over row blocks: never B×H×N×N at once
            fused = fuse_heads(attn, head_fusion)
            if fused.shape[-1] != fused.shape[-2]:
                raise ValueError(
                    f"layer {depth}: expected square attention, got {tuple(attn.shape)}"
                )
            result = _rollout_step(fused, result, residual, depth)
            continue
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
        result = _rollout_step(fused, result, residual, depth)
    return result[0] if squeeze else result


def _rollout_step(fused: Any, result: Any, residual: bool, depth: int) -> Any:
    import torch

    if residual:
        eye = torch.eye(fused.shape[-1], device=fused.device)
        fused = 0.5 * fused + 0.5 * eye
        fused = fused / fused.sum(dim=-1, keepdim=True)
    if result is not None and result.shape[-1] != fused.shape[-1]:
        raise ValueError(
            f"layer {depth} has {fused.shape[-1]} tokens, the layers before {result.shape[-1]}"
        )
    return fused if result is None else fused @ result


def _calling_module(frame: Any) -> tuple[str | None, str | None]:
    """Path and class of the innermost ``nn.Module`` whose method is on the stack."""
    path, cls, _ = _calling_module_object(frame)
    return path, cls


def _inner_module(frame: Any) -> Any:
    """The innermost ``nn.Module`` whose method is on the stack (None if none)."""
    import torch

    f = frame
    while f is not None:
        if "self" in f.f_code.co_varnames[:1]:
            owner = f.f_locals.get("self")
            if isinstance(owner, torch.nn.Module):
                return owner
        f = f.f_back
    return None


def _calling_module_object(frame: Any) -> tuple[str | None, str | None, Any]:
    """:func:`_calling_module` plus the module object itself."""
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
    if inner is None:
        return None, None, None
    root = _unwrap_compiled(root)
    cls = type(inner).__qualname__
    for name, module in root.named_modules():
        if module is inner:
            return name, cls, inner
    return None, cls, inner


COMPILE_MESSAGE = (
    "capture_attention cannot record attention inside a torch.compile'd region (Dynamo "
    "traces the model into a graph that calls no Python per SDPA call); run the model "
    "uncompiled inside the block: call the original module (`compiled._orig_mod(...)`) or "
    "wrap the call in `with torch.compiler.set_stance('force_eager'):`"
)


def _interceptor(
    records: List[AttentionRecord] | None, snapshot: str | None, grads: bool = False
) -> Any:
    """A TorchFunctionMode that records every attention call (into ``records`` if given)."""
    from torch.nn import functional
    from torch.overrides import TorchFunctionMode

    def original(f: Any) -> Any:  # the function itself, not a via="patch" wrapper of it
        return getattr(f, "__wrapped__", f)

    sdpa = original(functional.scaled_dot_product_attention)
    mha = original(functional.multi_head_attention_forward)
    embedding = original(functional.embedding)
    import torch

    unrecordable = {
        getattr(torch, name)
        for name in attention_nn.ATTENTION_OPS_NOT_RECORDED
        if callable(getattr(torch, name, None))
    }
    watched = frozenset({sdpa, mha, embedding} | unrecordable)
    eager_record = _eager_recorder()

    class _Interceptor(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.suppressed = 0  # >0 while a wrapped nn module runs its original forward
            self.module_records = 0
            self.growing: Dict[int, AttentionRecord] = {}  # id(module) -> latest record
            self.pass_tokens: Any = None  # token ids of the forward pass running now
            self.sdpa_since_tokens = True
            self.missed: Dict[str, int] = {}
            self.patch_mode = False
            self.seen = 0  # attention calls recorded (new records and growth steps)
            self.block = next(_blocks)  # shared by this block's records

        def __enter__(self) -> Any:
            attention_nn.push(self)
            try:
                return super().__enter__()
            except BaseException:
                attention_nn.pop(self)
                raise

        def __exit__(self, *exc: Any) -> Any:
            try:
                return super().__exit__(*exc)
            finally:
                attention_nn.pop(self)
                self.report()

        def report(self, stacklevel: int = 5) -> None:
            """Warn about attention that ran in the block but was not recorded."""
            if self.missed:
                detail = "; ".join(f"{n}× {why}" for why, n in self.missed.items())
                warnings.warn(
                    f"capture_attention: attention ran but was not recorded: {detail}",
                    RuntimeWarning,
                    stacklevel=stacklevel,  # the user's ``with capture_attention()``
                )

        def miss(self, why: str) -> None:
            self.missed[why] = self.missed.get(why, 0) + 1

        def keep(self, record: AttentionRecord | None) -> None:
            if record is not None and records is not None and record.steps == 1:
                records.append(record)

        def record_module(self, module: Any, weights: Any) -> None:
            """Record a torch.nn attention module's map (``weights()`` computes it)."""
            self.module_records += 1
            self.seen += 1
            try:
                with attention_nn.outside(self):
                    w = weights()
            except Exception as exc:  # never break the model; say what was not recorded
                self.miss(f"{type(module).__name__} ({exc})")
                return
            if snapshot == "cpu":
                w = w.cpu()
            import sys

            inner = sys._getframe(1)  # the wrapper (its ``self`` is a module on the stack)
            frame: FrameType | None = inner
            while frame is not None and (
                frame.f_code.co_filename in (__file__, attention_nn.__file__)
                or frame.f_code.co_filename.replace("\\", "/").endswith(
                    ("torch/nn/modules/module.py", "torch/overrides.py")
                )
            ):
                frame = frame.f_back
            name, cls = _module_name(inner, module)
            record = AttentionRecord(w, frame, name, cls)
            record.block = self.block
            record.scale = float(module.head_dim**-0.5)
            record.masked = True
            observers.publish(record)
            self.keep(record)

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
            kwargs = kwargs or {}
            if self.suppressed or func not in watched:  # every other op: nothing to do
                return func(*args, **kwargs)
            return self.handle(func, args, kwargs)

        def handle(self, func: Any, args: Any, kwargs: Dict[str, Any]) -> Any:
            """Run an attention-related call and record what it implies."""
            if _compiling():
                result = func(*args, **kwargs)
                if func is sdpa:
                    eager_record(self, args, kwargs)
                elif func is not embedding:
                    self.miss(COMPILE_MESSAGE)
                return result
            if func is sdpa and grads and _needs_grad(args, kwargs):
                # through the probabilities (the math path) so that dL/dP exists
                result, probs = _sdpa_math(args, kwargs)
                self.sdpa_since_tokens = True
                try:
                    self.keep(_record(args, kwargs, snapshot, self, probs=probs))
                    self.seen += 1
                except Exception as exc:  # never break the model
                    log.exception("capture_attention: recording an SDPA call failed")
                    self.miss(f"scaled_dot_product_attention ({exc!r})")
                return result
            result = func(*args, **kwargs)
            if func is sdpa:
                self.sdpa_since_tokens = True
                try:
                    record = _record(args, kwargs, snapshot, self)
                    if grads and record is not None:
                        query = args[0] if args else kwargs["query"]
                        record.grad_status = gradients.no_grad_reason(
                            __import__("torch"), query
                        ) or ("no grad: it does not require grad")
                    self.keep(record)
                    self.seen += 1
                except Exception as exc:  # never break the model
                    log.exception("capture_attention: recording an SDPA call failed")
                    self.miss(f"scaled_dot_product_attention ({exc!r})")
            elif func is mha:
                self.record_module(
                    _FunctionalMHA(args, kwargs),
                    lambda: attention_nn.functional_mha_weights(args, kwargs),
                )
            elif func is embedding:
                ids = args[0] if args else kwargs.get("input")
                if (
                    self.sdpa_since_tokens
                    and ids is not None
                    and getattr(ids, "dtype", None) is not None
                ):
                    self.pass_tokens = ids.detach()
                    self.sdpa_since_tokens = False
            else:  # one of the unrecordable fused kernels
                name = getattr(func, "__name__", repr(func))
                self.miss(f"{name} (a fused kernel that exposes no probabilities)")
            return result

    return _Interceptor()


class _FunctionalMHA:
    """Stands for the module of a direct ``F.multi_head_attention_forward`` call."""

    def __init__(self, args: Any, kwargs: Dict[str, Any]) -> None:
        embed = args[3] if len(args) > 3 else kwargs["embed_dim_to_check"]
        heads = args[4] if len(args) > 4 else kwargs["num_heads"]
        self.head_dim = embed // heads


def _module_name(frame: Any, module: Any) -> tuple[str | None, str | None]:
    """Dotted path of ``module`` inside the outermost module on the stack."""
    import torch

    if not isinstance(module, torch.nn.Module):
        return None, None
    root = None
    f = frame
    while f is not None:
        owner = f.f_locals.get("self") if "self" in f.f_code.co_varnames[:1] else None
        if isinstance(owner, torch.nn.Module):
            root = owner
        f = f.f_back
    cls = type(module).__qualname__
    root = _unwrap_compiled(root)
    if root is None:
        return "", cls
    for name, candidate in root.named_modules():
        if candidate is module:
            return name, cls
    return None, cls


def _eager_record_impl(icpt: Any, args: Any, kwargs: Any) -> None:
    try:
        icpt.keep(_record(args, kwargs, None, icpt))
        icpt.seen += 1
    except Exception as exc:
        icpt.miss(f"scaled_dot_product_attention under torch.compile ({exc!r})")


_disabled: List[Any] = []


def _eager_recorder() -> Any:
    """``_eager_record_impl`` wrapped by ``torch._dynamo.disable`` (made once, outside
    tracing: Dynamo refuses to trace ``disable`` itself): calling it from a compiled
    region makes a graph break, and it runs eagerly on the real tensors."""
    if not _disabled:
        import torch

        _disabled.append(torch._dynamo.disable(_eager_record_impl))
    return _disabled[0]


def _unwrap_compiled(root: Any) -> Any:
    """The module a ``torch.compile`` wrapper (OptimizedModule) stands for, so paths do
    not start with ``_orig_mod``."""
    import torch

    while isinstance(getattr(root, "_orig_mod", None), torch.nn.Module):
        root = root._orig_mod
    return root


def _compiling() -> bool:
    try:
        import torch

        return bool(torch.compiler.is_compiling())
    except Exception:
        return False


_session: Dict[str, Any] = {"enabled": False, "mode": None}
# the modes entered by the pre_execute hook, per thread: torch's mode stack is per thread,
# and a kernel subshell runs a comm request's hooks in its own thread while a cell runs in
# the main one; each post_execute unwinds only its own thread's
_cell_modes = threading.local()


def _thread_cell_modes() -> List[Any]:
    modes: List[Any] | None = getattr(_cell_modes, "modes", None)
    if modes is None:
        modes = _cell_modes.modes = []
    return modes


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
        _thread_cell_modes().append(mode)


def _exit_after_cell() -> None:
    from torch.overrides import _get_current_function_mode

    modes = _thread_cell_modes()
    while modes:
        mode = modes.pop()
        if _get_current_function_mode() is mode:
            mode.__exit__(None, None, None)
        else:  # the cell left a mode of its own on top; unwinding it is not ours to do
            log.warning(
                "attention capture: a TorchFunctionMode entered in the cell is still active"
            )


@contextmanager
def capture_attention(
    snapshot: str | None = None, via: str = "mode", grads: bool = False
) -> Iterator[List[AttentionRecord]]:
    """Record the attention probabilities of every SDPA call in the block, in call order.

    Yields a list that fills as the model runs (a generation adds one record per
    attention module, which grows). Each record also goes to the capture store (and so
    to the JupyterLab capture browser). ``snapshot="cpu"`` moves the queries and keys to
    the CPU as they are recorded (frees GPU memory for long runs).

    ``via="mode"`` (default) intercepts with a ``TorchFunctionMode``: it sees SDPA however
    the model reached it, but every torch call in the block pays Python dispatch (nothing
    measurable for a long prompt; about 1.5x for token-by-token generation on a CPU, so
    inside transformers' ``generate()`` the mode steps off and the call records as
    ``via="patch"`` does). ``via="patch"`` swaps
    ``torch.nn.functional.scaled_dot_product_attention`` (and
    ``multi_head_attention_forward``, ``embedding``) for the block instead: no cost per
    other op, but a model that imported the function by name before
    (``from torch.nn.functional import scaled_dot_product_attention``) is not seen.

    ``grads=True`` also keeps dL/dP, the gradient of the probabilities, in each
    record's ``grads`` after a backward pass. For that, while autograd is on, the block's
    SDPA outputs are computed through the probabilities (``softmax(q kᵀ·s + mask) @ v``,
    PyTorch's math path): the outputs and their gradients equal SDPA's up to rounding,
    and the backward pass keeps B·H·Nq·Nk probabilities per call, as eager attention does.
    Such records do not grow during generation (each call is its own record).
    """
    if not isinstance(grads, bool):
        raise TypeError(f"grads must be True or False for capture_attention, got {grads!r}")
    if snapshot not in (None, "cpu"):
        raise ValueError(f"snapshot must be None or 'cpu', not {snapshot!r}")
    if via not in ("mode", "patch"):
        raise ValueError(f"via must be 'mode' or 'patch', not {via!r}")
    records: List[AttentionRecord] = []
    icpt = _interceptor(records, snapshot, grads)
    if via == "mode":
        with icpt:
            yield records
        return
    icpt.patch_mode = True
    attention_nn.push(icpt)
    attention_nn.patch_functional()
    try:
        yield records
    finally:
        attention_nn.unpatch_functional()
        attention_nn.pop(icpt)
        icpt.report(stacklevel=4)


_SDPA_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")


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


def _record(
    args: Any, kwargs: Dict[str, Any], snapshot: Any, icpt: Any = None, probs: Any = None
) -> AttentionRecord | None:
    """Record one SDPA call; returns None when it extended an earlier (generation) record."""
    import sys

    call = dict(zip(_SDPA_PARAMS, args, strict=False))
    call.update(kwargs)
    q, k = call["query"].detach(), call["key"].detach()
    mask = call.get("attn_mask")
    mask = mask.detach() if mask is not None else None
    is_causal = bool(call.get("is_causal", False))
    scale = call.get("scale")
    scale = float(scale) if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    # the caller of F.scaled_dot_product_attention: skip this module's and torch's frames
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename in (__file__, attention_nn.__file__)
        or frame.f_code.co_filename.replace("\\", "/").endswith("torch/overrides.py")
        or "torch/_dynamo/" in frame.f_code.co_filename.replace("\\", "/")
    ):
        frame = frame.f_back
    q, k, mask = unpack_transformers_gqa(frame, q, k, mask)
    if q.dim() < 3 or k.dim() < 3:
        q, k = q.reshape(1, 1, *q.shape[-2:]), k.reshape(1, 1, *k.shape[-2:])
    while q.dim() < 4:
        q, k = q[None], k[None]
    if q.dim() > 4:
        q, k = q.flatten(0, -4), k.flatten(0, -4)
        mask = mask.flatten(0, -4) if mask is not None and mask.dim() > 4 else mask
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads cannot share {k.shape[1]} key/value heads")
    groups = q.shape[1] // k.shape[1]
    if snapshot == "cpu":
        q, k = q.cpu(), k.cpu()
        mask = mask.cpu() if mask is not None else None
    # decode steps are frequent: find the calling module cheaply (innermost one) first
    module_obj = _inner_module(frame)
    key_id = id(module_obj) if module_obj is not None else None
    previous = icpt.growing.get(key_id) if icpt is not None and key_id is not None else None
    expected = (previous.attention.n_rows if previous is not None else 0) + q.shape[-2]
    if k.shape[-2] > expected and (previous is not None or mask is not None):
        n_keys = processed_keys(frame, q, k, previous)
        if n_keys < k.shape[-2]:
            k = k[..., :n_keys, :].clone()  # a static cache: keep only processed positions
            mask = mask[..., :n_keys] if mask is not None else None
    tokens = icpt.pass_tokens if icpt is not None else None
    if probs is None and previous is not None and extends(previous, q, k, groups, scale):
        previous.attention.append(q, k, mask, is_causal)
        previous.steps += 1
        previous.token_ids = join_tokens(previous.token_ids, tokens, q.shape[-2])
        previous.masked = previous.masked or mask is not None
        observers.publish_update(previous)
        return None
    module, module_class, _ = _calling_module_object(frame)
    lazy = LazyAttention(q, k, mask, is_causal, scale, groups)
    record = AttentionRecord(lazy, frame, module, module_class)
    record.block = icpt.block if icpt is not None else None
    record.scale = scale
    record.is_causal = is_causal
    record.masked = mask is not None
    record.kv_groups = groups
    record.token_ids = join_tokens(None, tokens, q.shape[-2]) if tokens is not None else None
    if probs is not None:  # grads=True: hook the probabilities the output came from
        collector = gradients.GradientCollector(
            record, None, None, "cpu" if snapshot == "cpu" else None
        )
        record._grads = collector.grads
        record._grad_collector = collector
        collector.watch(None, "weights", probs)
    elif icpt is not None and key_id is not None:
        icpt.growing[key_id] = record
    observers.publish(record)
    return record
