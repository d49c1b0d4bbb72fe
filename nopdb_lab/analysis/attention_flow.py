"""Attention flow (Abnar & Zuidema, 2020): max-flow through the layers' attention graph.

Each layer's heads are fused and mixed with the residual connection (``0.5·A + 0.5·I``,
rows re-normalised) as for rollout. The graph has one node per (layer boundary, token):
an edge from token ``j`` below layer ``l`` to token ``i`` above it with capacity
``Ã_l[i, j]``. The flow from input token ``j`` to output token ``i`` is the maximum flow
between those two nodes. Rollout multiplies the maps (every path, weighted); flow is
bounded by each path's narrowest edge, which the paper found closer to input gradients.

It is one max-flow problem per (output, input) pair on a graph of L·N² edges, so it is
solved here (a small Dinic solver, no dependency) for small token counts only; beyond
:data:`MAX_WORK` it refuses with a message naming the sizes (ask for fewer ``targets``,
or use :func:`~nopdb_lab.attention_rollout`).
"""

from __future__ import annotations

from collections import deque
from typing import Any, List, Sequence

MAX_WORK = 20_000_000  # pairs × edges: ~10 s of pure-Python max-flow (4.2M took 2 s)
_EPS = 1e-12


def attention_flow(
    maps: Sequence[Any],
    head_fusion: str = "mean",
    residual: bool = True,
    batch: int = 0,
    targets: Sequence[int] | None = None,
    max_work: int = MAX_WORK,
) -> Any:
    """Flow from every input token (columns) into each output token (rows).

    ``maps``: per-layer attention, first layer first: records, lazy maps or tensors
    (B×H×N×N, H×N×N or N×N). ``targets``: output tokens to compute (all by default).
    Returns a float64 ``len(targets) × N`` tensor. Raises ValueError beyond ``max_work``
    (pairs × edges), saying how large the problem is.
    """
    import torch

    from .attention_lazy import fuse_heads, is_lazy

    layers: List[Any] = []
    for depth, m in enumerate(maps):
        m = getattr(m, "attention", m)
        if is_lazy(m):
            fused = fuse_heads(m, head_fusion)[batch]
        else:
            t = torch.as_tensor(m).detach().float()
            t = t[None, None] if t.dim() == 2 else (t[None] if t.dim() == 3 else t)
            fused = getattr(t[batch], head_fusion)(dim=0)
            fused = fused if head_fusion == "mean" else fused.values
        if fused.shape[-1] != fused.shape[-2]:
            raise ValueError(
                f"layer {depth}: attention flow needs square maps, got {tuple(fused.shape)}"
            )
        if residual:
            fused = 0.5 * fused + 0.5 * torch.eye(fused.shape[-1], device=fused.device)
            fused = fused / fused.sum(dim=-1, keepdim=True)
        layers.append(fused.double().cpu())
    if not layers:
        raise ValueError("attention_flow needs at least one layer of attention")
    n = layers[0].shape[-1]
    if any(a.shape[-1] != n for a in layers):
        raise ValueError("every layer must have the same number of tokens")
    outputs = list(range(n)) if targets is None else [int(t) % n for t in targets]
    work = len(outputs) * n * len(layers) * n * n
    if work > max_work:
        raise ValueError(
            f"attention flow for {len(outputs)} output × {n} input tokens over {len(layers)} "
            f"layers solves {len(outputs) * n:,} max-flow problems on a graph of "
            f"{len(layers) * n * n:,} edges ({work:,} units of work, limit {max_work:,}); pass "
            "fewer targets=[...], fewer tokens, or use attention_rollout"
        )
    import sys

    graph = _Graph(layers)
    out = torch.zeros(len(outputs), n, dtype=torch.float64)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, graph.n_nodes + 200))  # augmenting paths recurse
    try:
        for row, i in enumerate(outputs):
            for j in range(n):
                out[row, j] = graph.max_flow(source=j, sink=len(layers) * n + i)
    finally:
        sys.setrecursionlimit(limit)
    return out


class _Graph:
    """A layered flow network in adjacency-array form (Dinic's algorithm)."""

    def __init__(self, layers: List[Any]) -> None:
        n = layers[0].shape[-1]
        self.n_nodes = (len(layers) + 1) * n
        self.adj: List[List[int]] = [[] for _ in range(self.n_nodes)]
        self.to: List[int] = []
        self.cap0: List[float] = []
        for depth, attn in enumerate(layers):
            values = attn.tolist()
            for i in range(n):
                for j in range(n):
                    c = values[i][j]
                    if c > _EPS:
                        self._edge(depth * n + j, (depth + 1) * n + i, c)

    def _edge(self, u: int, v: int, c: float) -> None:
        self.adj[u].append(len(self.to))
        self.to.append(v)
        self.cap0.append(c)
        self.adj[v].append(len(self.to))
        self.to.append(u)
        self.cap0.append(0.0)

    def max_flow(self, source: int, sink: int) -> float:
        cap = list(self.cap0)
        to, adj = self.to, self.adj
        total = 0.0
        while True:
            level = [-1] * self.n_nodes
            level[source] = 0
            queue = deque([source])
            while queue:
                u = queue.popleft()
                for e in adj[u]:
                    if cap[e] > _EPS and level[to[e]] < 0:
                        level[to[e]] = level[u] + 1
                        queue.append(to[e])
            if level[sink] < 0:
                return total
            it = [0] * self.n_nodes
            while True:
                pushed = self._push(source, sink, float("inf"), cap, level, it)
                if pushed <= _EPS:
                    break
                total += pushed

    def _push(
        self, u: int, sink: int, limit: float, cap: List[float], level: List[int], it: List[int]
    ) -> float:
        """One augmenting path in the level graph (Dinic's blocking-flow step)."""
        if u == sink:
            return limit
        edges, to = self.adj[u], self.to
        while it[u] < len(edges):
            e = edges[it[u]]
            v = to[e]
            if cap[e] > _EPS and level[v] == level[u] + 1:
                pushed = self._push(v, sink, min(limit, cap[e]), cap, level, it)
                if pushed > _EPS:
                    cap[e] -= pushed
                    cap[e ^ 1] += pushed
                    return pushed
            it[u] += 1
        return 0.0
