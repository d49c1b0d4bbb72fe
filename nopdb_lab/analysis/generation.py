"""Generation with a KV cache: recognising decode steps and the cache's layout.

During ``model.generate()`` each decode step calls SDPA with the new query rows and every
key so far. :func:`extends` decides whether a call continues the record its module made
before (so one record grows per module); :func:`processed_keys` cuts a static cache's
preallocated keys to the positions processed; :func:`unpack_transformers_gqa` undoes
transformers' packed grouped-query decode layout; :func:`join_tokens` keeps the token ids
of the rows in order.
"""

from __future__ import annotations

from typing import Any


def join_tokens(held: Any, tokens: Any, n_rows: int) -> Any:
    """Token ids for the rows so far (None once any pass's ids are unknown)."""
    import torch

    if tokens is None or tokens.dim() < 1 or tokens.shape[-1] != n_rows:
        return None
    tokens = tokens.reshape(-1, n_rows) if tokens.dim() != 2 else tokens
    if held is None:
        return tokens.clone()
    if held.shape[0] != tokens.shape[0]:
        return None
    return torch.cat([held, tokens.to(held.device)], dim=-1)


def extends(previous: Any, q: Any, k: Any, groups: int, scale: float) -> bool:
    """Whether this call is a later step over the same growing sequence (a KV-cache
    decode step): same layout, and either the keys start with every key held so far and
    the record's rows so far are exactly its keys (self-attention over the prefix), or
    the keys are the very tensor held (cross-attention to a cached encoder output: the
    decoder's new rows are appended)."""
    att = previous.attention
    if att.dense is not None or att.kv_groups != groups or att.scale != scale:
        return False
    b, h, n_rows, n_keys = att.shape
    held = att.key
    if (q.shape[0], q.shape[1], q.shape[-1]) != (b, h, att.segments[0].query.shape[-1]):
        return False
    if k.shape == held.shape and k.data_ptr() == held.data_ptr() and k.stride() == held.stride():
        return True  # the same cached cross-attention keys
    if n_rows != n_keys or k.shape[-2] != n_keys + q.shape[-2]:
        return False
    if k.shape[:2] != held.shape[:2] or k.device != held.device:
        return False
    import torch

    return bool(
        torch.equal(k[..., :1, :], held[..., :1, :])
        and torch.equal(k[..., n_keys - 1 : n_keys, :], held[..., n_keys - 1 :, :])
    )


def processed_keys(frame: Any, q: Any, k: Any, previous: Any) -> int:
    """Key positions to keep: all of them, except under a transformers static cache,
    whose keys are preallocated to the maximum length (only processed ones are kept)."""
    f, depth = frame, 0
    while f is not None and depth < 12:
        position = f.f_locals.get("cache_position")
        if (
            getattr(position, "numel", lambda: 0)()
            and f.f_locals.get("past_key_values") is not None
        ):
            if "Static" in type(f.f_locals["past_key_values"]).__name__:
                return min(k.shape[-2], int(position[-1]) + 1)
        cache = f.f_locals.get("past_key_values")
        if cache is None:  # transformers >= 5.2x names it ``cache`` (no cache_position)
            named = f.f_locals.get("cache")
            cache = named if "Cache" in type(named).__name__ else None
        if cache is not None:
            if "Static" in type(cache).__name__ or "Hybrid" in type(cache).__name__:
                done = 0
                if previous is not None and previous.attention.dense is None:
                    b, h, n_rows, n_keys = previous.attention.shape
                    done = n_rows if n_rows == n_keys else 0
                return min(k.shape[-2], done + q.shape[-2])
            break
        f, depth = f.f_back, depth + 1
    return k.shape[-2]


def unpack_transformers_gqa(frame: Any, q: Any, k: Any, mask: Any) -> tuple:
    """Undo transformers' packed GQA decode (one query token of ``g`` heads sharing a KV
    head sent as ``g`` query rows of that head) and its repeated KV heads, so the record
    has the model's real heads: Hq query heads over Hq/g key heads."""
    if frame is None or frame.f_code.co_name != "sdpa_attention_forward":
        return q, k, mask
    module = frame.f_locals.get("module")
    groups = int(getattr(module, "num_key_value_groups", 1) or 1)
    if groups <= 1 or q.dim() != 4:
        return q, k, mask
    if frame.f_locals.get("q_length") == 1 and q.shape[1] == k.shape[1] and q.shape[2] == groups:
        b, hk, _, d = q.shape
        q = q.reshape(b, hk * groups, 1, d)
        if mask is not None and mask.dim() == 4 and mask.shape[2] == groups:
            mask = mask.reshape(mask.shape[0], mask.shape[1] * groups, 1, mask.shape[-1])
        return q, k, mask
    if k.shape[1] == q.shape[1] and q.shape[1] % groups == 0:
        k = k[:, ::groups].clone()  # repeat_kv's copies are identical; keep one per group
    return q, k, mask
