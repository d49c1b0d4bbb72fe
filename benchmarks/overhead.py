"""Tracing overhead of nopdb-lab against a plain run and against NoPdb 0.2.

Three workloads, each timed in one process with the plain, nopdb-lab and NoPdb runs
alternating (so drift of a shared machine hits all of them alike); the printed number is
the median over repetitions of (traced time / plain time) measured back to back:

  (a) a call-heavy pure-Python workload (fib(22): 57,313 calls) while a capture and a
      breakpoint target an unrelated function,
  (b) a ViT-S/16-sized model (12 blocks, width 384, 6 heads, 197 tokens, explicit
      softmax attention) with ``capture_calls(Attention.forward)`` on all layers,
  (c) the same model with a breakpoint in every layer that runs ``attn = attn * 3``,
  (d) a breakpoint hit on every call: 20,000 calls of a two-line function 50 frames
      deep (also printed as microseconds per hit; each hit records its stack),
  (e) a breakpoint hit at every level of a recursion 1,000 and 4,000 deep (printed as
      microseconds per hit too: equal at both depths when a hit's cost does not grow
      with the depth).

Usage: python benchmarks/overhead.py [--repeat N] [--skip-vit]
Runs on whichever Python starts it; NoPdb columns need ``pip install nopdb==0.2.0``.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import platform
import statistics
import sys
import time
from typing import Any, Callable, ContextManager, Dict, List

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import nopdb_lab  # noqa: E402

try:
    import nopdb as nopdb_peer
except ImportError:  # the peer is optional
    nopdb_peer = None

Setup = Callable[[Any], ContextManager[Any]]


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def unrelated(x: int) -> int:
    y = x + 1
    return y


def time_once(work: Callable[[], Any], setup: Setup | None, lib: Any) -> float:
    ctx = setup(lib) if setup is not None else contextlib.nullcontext()
    with ctx:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start


def measure(
    name: str, work: Callable[[], Any], setup: Setup, repeat: int, peer_repeat: int
) -> Dict[str, Any]:
    """Median ratios traced/plain, alternating plain and traced runs."""
    time_once(work, None, None)  # warm up: caches, lazy imports, allocator
    time_once(work, setup, nopdb_lab)
    if nopdb_peer is not None:
        time_once(work, setup, nopdb_peer)
    ours: List[float] = []
    peer: List[float] = []
    plains: List[float] = []
    for i in range(repeat):
        plain = time_once(work, None, None)
        plains.append(plain)
        ours.append(time_once(work, setup, nopdb_lab) / plain)
        if nopdb_peer is not None and i < peer_repeat:
            plain2 = time_once(work, None, None)
            peer.append(time_once(work, setup, nopdb_peer) / plain2)
    return {
        "name": name,
        "plain_ms": statistics.median(plains) * 1000,
        "ours": statistics.median(ours),
        "peer": statistics.median(peer) if peer else None,
        "n": repeat,
        "n_peer": len(peer),
    }


HIT_CALLS = 20_000


def hit_line(i: int) -> int:
    x = i + 1
    return x


def hits_50_deep(depth: int = 50) -> None:
    if depth:
        hits_50_deep(depth - 1)
        return
    for i in range(HIT_CALLS):
        hit_line(i)


def recurse_hit(n: int) -> int:
    if n == 0:
        return 0
    level = n
    return recurse_hit(n - 1) + level


def breakpoint_at_every_level(lib: Any) -> ContextManager[Any]:
    return lib.breakpoint(function=recurse_hit, line="level = n")


def breakpoint_on_every_call(lib: Any) -> ContextManager[Any]:
    return lib.breakpoint(function=hit_line, line="return x")


def unrelated_target(lib: Any) -> ContextManager[Any]:
    stack = contextlib.ExitStack()
    stack.enter_context(lib.capture_calls(unrelated))
    bp = stack.enter_context(lib.breakpoint(function=unrelated, line="return y"))
    bp.eval("y")
    return stack


def vit_workloads(repeat: int, peer_repeat: int) -> List[Dict[str, Any]]:
    import torch

    from examples.vit import Attention, vit_small

    model = vit_small()
    images = torch.randn(1, 3, 224, 224)

    def forward() -> None:
        with torch.no_grad():
            model(images)

    def capture_all(lib: Any) -> ContextManager[Any]:
        return lib.capture_calls(Attention.forward)

    def exec_all(lib: Any) -> ContextManager[Any]:
        bp = lib.breakpoint(
            function=Attention.forward, line="x = (attn @ v).transpose(1, 2).reshape(B, N, C)"
        )
        bp.exec("attn = attn * 3")
        return bp

    return [
        measure(
            "(b) ViT-S/16 forward, capture_calls all 12 layers",
            forward,
            capture_all,
            repeat,
            peer_repeat,
        ),
        measure(
            "(c) ViT-S/16 forward, breakpoint exec in all 12 layers",
            forward,
            exec_all,
            repeat,
            peer_repeat,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="repetitions per workload")
    parser.add_argument("--skip-vit", action="store_true", help="only the pure-Python workload")
    args = parser.parse_args()

    rows = [
        measure(
            "(a) fib(22), 57k calls, capture+breakpoint on unrelated fn",
            lambda: fib(22),
            unrelated_target,
            args.repeat,
            max(3, args.repeat // 4),
        ),
    ]
    hits = measure(
        "(d) 20k breakpoint hits, 50 frames deep",
        hits_50_deep,
        breakpoint_on_every_call,
        args.repeat,
        max(3, args.repeat // 4),
    )
    rows.append(hits)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5_000))
    deep = []
    for depth in (1_000, 4_000):
        deep.append(
            measure(
                f"(e) a hit at every level of a {depth:,}-deep recursion",
                lambda depth=depth: recurse_hit(depth),
                breakpoint_at_every_level,
                args.repeat,
                max(3, args.repeat // 4),
            )
        )
        deep[-1]["hits"] = depth
    rows += deep
    torch_version = "-"
    if not args.skip_vit:
        try:
            import torch
        except ImportError:
            print("torch is not installed: skipping the ViT workloads (b) and (c)")
        else:
            torch_version = torch.__version__
            rows += vit_workloads(args.repeat, args.repeat)

    peer = "NoPdb 0.2" if nopdb_peer is not None else "NoPdb (not installed)"
    print(
        f"nopdb-lab {nopdb_lab.__version__} overhead | Python {platform.python_version()} | "
        f"backend {nopdb_lab.backend_name()} | torch {torch_version} | "
        f"medians of {args.repeat} alternating runs"
    )
    header = f"{'workload':58} {'plain':>9} {'nopdb-lab':>10} {peer:>10} {'overhead cut':>13}"
    print(header)
    print("-" * len(header))
    for r in rows:
        peer_ratio = f"{r['peer']:.2f}x" if r["peer"] is not None else "n/a"
        cut = "n/a"
        if r["peer"] is not None:
            if r["ours"] - 1.0 < 0.01:  # below what this measurement can resolve
                cut = "all of it"
            else:
                cut = f"{(r['peer'] - 1.0) / (r['ours'] - 1.0):.0f}x less"
        print(f"{r['name']:58} {r['plain_ms']:7.1f}ms {r['ours']:9.3f}x {peer_ratio:>10} {cut:>13}")
    print(
        "ratio = traced time / plain time (1.000x = no overhead); "
        "overhead cut = (NoPdb - 1) / (nopdb-lab - 1)"
    )
    print("(d) per hit: " + per_hit(hits, HIT_CALLS))
    for row in deep:
        print(f"(e) per hit, {row['hits']:,} deep: " + per_hit(row, row["hits"]))


def per_hit(row: Dict[str, Any], hits: int) -> str:
    """Microseconds a hit adds, from a row's median ratios and plain time."""
    ratios = [("nopdb-lab", row["ours"])]
    if row["peer"] is not None:
        ratios.append(("NoPdb 0.2", row["peer"]))
    return ", ".join(
        f"{name} {(ratio - 1.0) * row['plain_ms'] * 1000 / hits:.1f} us" for name, ratio in ratios
    )


if __name__ == "__main__":
    main()
