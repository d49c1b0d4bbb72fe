"""Attention maps of PyTorch's own ``nn.MultiheadAttention`` and Transformer layers.

These never reach a ``TorchFunctionMode`` as an SDPA call: with ``need_weights=False``
the SDPA call is nested inside ``F.multi_head_attention_forward`` (a mode does not see
calls nested in a call it intercepts), and in eval mode ``nn.MultiheadAttention`` and
``nn.TransformerEncoderLayer`` run a fused C++ fast path with no Python-visible attention
at all. Worse, an active mode makes both leave that fast path (``has_torch_function`` is
true under any mode), which shifts their outputs by ~1e-7.

So while a capture is active their ``forward`` is wrapped (class-level, restored when the
last capture ends): the wrapper takes the capture's mode off torch's stack for the
original forward (it runs exactly as without capture, fast path included), then computes
the per-head probabilities the way ``need_weights=True, average_attn_weights=False``
does (same projections, masks, ``add_bias_kv``/``add_zero_attn``), without dropout and
without gradient.
"""

from __future__ import annotations

import functools
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List

_state = threading.local()
_lock = threading.Lock()
#: (class, attribute) → the original, restored when the last capture ends
_installed: dict = {}
_users = 0


def current() -> Any:
    """The innermost active capture on this thread (None outside captures)."""
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else None


def push(interceptor: Any) -> None:
    global _users
    if not hasattr(_state, "stack"):
        _state.stack = []
    _state.stack.append(interceptor)
    with _lock:
        _users += 1
        if _users == 1:
            _install()


def pop(interceptor: Any) -> None:
    global _users
    stack = getattr(_state, "stack", [])
    if interceptor in stack:
        stack.remove(interceptor)
    with _lock:
        _users -= 1
        if _users == 0:
            _uninstall()


@contextmanager
def outside(interceptor: Any) -> Iterator[None]:
    """Run a block as if ``interceptor``'s mode were not active (popped when it is on top
    of torch's mode stack; otherwise only its recording is suppressed)."""
    from torch.overrides import _get_current_function_mode, _pop_mode_temporarily

    interceptor.suppressed += 1
    try:
        if _get_current_function_mode() is interceptor:
            with _pop_mode_temporarily():
                yield
        else:
            yield
    finally:
        interceptor.suppressed -= 1


def _compiling() -> bool:
    """Under Dynamo the wrappers step aside (tracing them trips Dynamo's module
    tracking); SDPA calls inside are still recorded through a graph break."""
    import torch

    return bool(torch.compiler.is_compiling())


def _install() -> None:
    from torch import nn

    _installed[(nn.MultiheadAttention, "forward")] = nn.MultiheadAttention.forward
    _installed[(nn.TransformerEncoderLayer, "forward")] = nn.TransformerEncoderLayer.forward
    # these replace methods on torch's classes while a capture is on (mypy: method-assign)
    nn.MultiheadAttention.forward = _wrap_mha(  # type: ignore[method-assign]
        nn.MultiheadAttention.forward
    )
    nn.TransformerEncoderLayer.forward = _wrap_encoder_layer(  # type: ignore[method-assign]
        nn.TransformerEncoderLayer.forward
    )
    # TransformerEncoder only chooses its nested-tensor fast path; run it as without capture
    _installed[(nn.TransformerEncoder, "forward")] = nn.TransformerEncoder.forward
    nn.TransformerEncoder.forward = _wrap_encoder(  # type: ignore[method-assign]
        nn.TransformerEncoder.forward
    )

    # transformers' generate(): token by token, so a mode's dispatch on every small op
    # would cost ~1.5x; it records through the patched functions instead (only when
    # transformers is already imported: nothing is imported here)
    generation = sys.modules.get("transformers.generation.utils")
    mixin = getattr(generation, "GenerationMixin", None)
    if mixin is not None and "generate" in vars(mixin):
        _installed[(mixin, "generate")] = vars(mixin)["generate"]
        mixin.generate = _wrap_generate(vars(mixin)["generate"])

    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except ImportError:  # pragma: no cover - torch without Dynamo
        return
    _installed[(OptimizedModule, "__call__")] = OptimizedModule.__call__
    OptimizedModule.__call__ = _wrap_fullgraph(  # type: ignore[method-assign]
        OptimizedModule.__call__
    )


FULLGRAPH_MESSAGE = (
    "a module compiled with torch.compile(fullgraph=True) ran without attention capture "
    "(recording needs a graph break, which fullgraph forbids); capture the original "
    "module instead (`compiled._orig_mod(...)`), or compile without fullgraph=True"
)


COMPILED_NN_MESSAGE = (
    "a torch.compile'd module with nn.MultiheadAttention/nn.TransformerEncoderLayer ran "
    "(their attention runs inside the compiled graph, where it cannot be recorded); "
    "capture the original module instead (`compiled._orig_mod(...)`)"
)


def _has_torch_attention(module: Any) -> bool:
    from torch import nn

    return any(isinstance(m, nn.MultiheadAttention) for m in module.modules())


def _wrap_fullgraph(original: Callable) -> Callable:
    """Run a fullgraph-compiled module as if no capture were active (a graph break would
    make it fail) and say so, instead of breaking the user's code."""

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        icpt = current()
        if icpt is None:
            return original(self, *args, **kwargs)
        if getattr(getattr(self, "dynamo_ctx", None), "fullgraph", False):
            icpt.miss(FULLGRAPH_MESSAGE)
            with outside(icpt):
                return original(self, *args, **kwargs)
        before = icpt.seen
        out = original(self, *args, **kwargs)
        if icpt.seen == before and _has_torch_attention(self):
            icpt.miss(COMPILED_NN_MESSAGE)
        return out

    call.__wrapped__ = original  # type: ignore[attr-defined]
    return call


def _uninstall() -> None:
    for (cls, attribute), original in _installed.items():
        setattr(cls, attribute, original)
    _installed.clear()


def _wrap_generate(original: Callable) -> Callable:
    """transformers' ``generate`` under a ``capture_attention()`` mode: the mode steps off
    torch's stack for the call and the capture records through the patched
    ``torch.nn.functional`` entry points (as ``via="patch"``), so generation costs what it
    costs under ``via="patch"``. With another mode above this one, or under Dynamo, the
    call runs as it is."""

    @functools.wraps(original)
    def generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        icpt = current()
        if icpt is None or icpt.patch_mode or icpt.suppressed or _compiling():
            return original(self, *args, **kwargs)
        from torch.overrides import _get_current_function_mode, _pop_mode_temporarily

        if _get_current_function_mode() is not icpt:
            return original(self, *args, **kwargs)
        with _pop_mode_temporarily():
            icpt.patch_mode = True
            patch_functional()
            try:
                return original(self, *args, **kwargs)
            finally:
                unpatch_functional()
                icpt.patch_mode = False

    return generate


def _wrap_encoder(original: Callable) -> Callable:
    """Only when every layer is a (wrapped, recording) TransformerEncoderLayer: other
    layers may call SDPA themselves, which the capture must then see."""

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        from torch import nn

        icpt = None if _compiling() else current()
        plain = nn.TransformerEncoderLayer.forward
        if icpt is None or any(type(layer).forward is not plain for layer in self.layers):
            return original(self, *args, **kwargs)
        with outside(icpt):
            return original(self, *args, **kwargs)

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    return forward


def _wrap_mha(original: Callable) -> Callable:
    def forward(
        self: Any,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> Any:
        icpt = None if _compiling() else current()
        if icpt is None:
            return original(
                self, query, key, value, key_padding_mask, need_weights, attn_mask,
                average_attn_weights, is_causal,
            )  # fmt: skip
        with outside(icpt):
            out = original(
                self, query, key, value, key_padding_mask, need_weights, attn_mask,
                average_attn_weights, is_causal,
            )  # fmt: skip
        icpt.record_module(
            self,
            lambda: mha_weights(self, query, key, value, key_padding_mask, attn_mask, is_causal),
        )
        return out

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    return forward


def _wrap_encoder_layer(original: Callable) -> Callable:
    def forward(
        self: Any,
        src: Any,
        src_mask: Any = None,
        src_key_padding_mask: Any = None,
        is_causal: bool = False,
    ) -> Any:
        icpt = None if _compiling() else current()
        if icpt is None:
            return original(self, src, src_mask, src_key_padding_mask, is_causal)
        before = icpt.module_records
        with outside(icpt):
            out = original(self, src, src_mask, src_key_padding_mask, is_causal)
        if icpt.module_records == before:  # the fused fast path ran; self_attn was not called

            def weights() -> Any:
                x, kpm = src, src_key_padding_mask
                if getattr(x, "is_nested", False):
                    x, kpm = _unnest(x)
                if self.norm_first:
                    x = self.norm1(x)
                return mha_weights(self.self_attn, x, x, x, kpm, src_mask, is_causal)

            icpt.record_module(self.self_attn, weights)
        return out

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    return forward


def _unnest(x: Any) -> Any:
    """A nested batch (TransformerEncoder's fast path) as padded tensor + padding mask."""
    import torch

    lengths = [t.shape[0] for t in x.unbind()]
    padded = x.to_padded_tensor(0.0)
    kpm = torch.arange(padded.shape[1])[None, :] >= torch.tensor(lengths)[:, None]
    return padded, kpm.to(padded.device)


def mha_weights(
    mha: Any,
    query: Any,
    key: Any,
    value: Any,
    key_padding_mask: Any,
    attn_mask: Any,
    is_causal: bool,
) -> Any:
    """Per-head probabilities (B×H×L×S, or H×L×S unbatched) exactly as
    ``need_weights=True, average_attn_weights=False`` computes them, without dropout."""
    import torch
    from torch.nn import functional as F  # noqa: N812

    is_batched = query.dim() == 3
    key_padding_mask = F._canonical_mask(
        mask=key_padding_mask,
        mask_name="key_padding_mask",
        other_type=F._none_or_dtype(attn_mask),
        other_name="attn_mask",
        target_type=query.dtype,
    )
    attn_mask = F._canonical_mask(
        mask=attn_mask,
        mask_name="attn_mask",
        other_type=None,
        other_name="",
        target_type=query.dtype,
        check_other=False,
    )
    if mha.batch_first and is_batched:  # as MHA.forward does: identity picks the packed path
        if key is value:
            if query is key:
                query = key = value = query.transpose(1, 0)
            else:
                query, key = (x.transpose(1, 0) for x in (query, key))
                value = key
        else:
            query, key, value = (x.transpose(1, 0) for x in (query, key, value))
    separate = not mha._qkv_same_embed_dim
    with torch.no_grad():
        _, weights = F.multi_head_attention_forward(
            query, key, value, mha.embed_dim, mha.num_heads, mha.in_proj_weight,
            mha.in_proj_bias, mha.bias_k, mha.bias_v, mha.add_zero_attn, 0.0,
            mha.out_proj.weight, mha.out_proj.bias, training=False,
            key_padding_mask=key_padding_mask, need_weights=True, attn_mask=attn_mask,
            use_separate_proj_weight=separate,
            q_proj_weight=mha.q_proj_weight if separate else None,
            k_proj_weight=mha.k_proj_weight if separate else None,
            v_proj_weight=mha.v_proj_weight if separate else None,
            average_attn_weights=False, is_causal=is_causal and attn_mask is not None,
        )  # fmt: skip
    assert weights is not None  # need_weights=True always returns them
    return weights if is_batched else weights[None]


def functional_mha_weights(args: Any, kwargs: dict) -> Any:
    """Per-head probabilities of a direct ``F.multi_head_attention_forward`` call."""
    import inspect

    import torch
    from torch.nn import functional as F  # noqa: N812

    bound = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
    call: dict = dict(bound.arguments)
    call.update(dropout_p=0.0, training=False, need_weights=True, average_attn_weights=False)
    if call.get("is_causal") and call.get("attn_mask") is None:
        call["is_causal"] = False  # a hint only; the reference path needs the mask itself
    with torch.no_grad():
        _, weights = F.multi_head_attention_forward(**call)
    assert weights is not None  # need_weights=True always returns them
    return weights if call["query"].dim() == 3 else weights[None]


ATTENTION_OPS_NOT_RECORDED: List[str] = [
    "_native_multi_head_attention",
    "_transformer_encoder_layer_fwd",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
]


_patched_functional: dict = {}
_functional_users = 0
PATCHED_FUNCTIONS = ("scaled_dot_product_attention", "multi_head_attention_forward", "embedding")


def patch_functional() -> None:
    """Swap ``torch.nn.functional``'s attention entry points for recording wrappers
    (``capture_attention(via="patch")``); nested and concurrent captures share one set."""
    global _functional_users
    from torch.nn import functional

    with _lock:
        _functional_users += 1
        if _functional_users > 1:
            return
        for name in PATCHED_FUNCTIONS:
            original = getattr(functional, name)
            _patched_functional[name] = original
            setattr(functional, name, _recording(original))


def unpatch_functional() -> None:
    global _functional_users
    from torch.nn import functional

    with _lock:
        _functional_users -= 1
        if _functional_users:
            return
        for name, original in _patched_functional.items():
            setattr(functional, name, original)
        _patched_functional.clear()


def _recording(original: Callable) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        icpt = current()
        if icpt is None or not icpt.patch_mode or icpt.suppressed:
            return original(*args, **kwargs)
        return icpt.handle(original, args, kwargs)

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(original, "__name__", "wrapper")
    wrapper.__doc__ = original.__doc__
    return wrapper
