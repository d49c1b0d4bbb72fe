"""Cost of keeping gradients of captured locals, against a plain run and a hook baseline.

Workload: a ViT-S/16-sized model (12 blocks, width 384, 6 heads, 197 tokens, explicit
softmax attention; ``examples/vit.py``), one forward and one backward pass of a batch of
one 224×224 image. Variants, timed in one process, alternating (so drift on a shared
machine hits all alike); the printed number is the median of (variant / plain) measured
back to back, in ABBA order (every other pair runs the variant first):

  plain again                a second plain run: its ratio is the method's noise floor
  plain                      forward + backward, nothing attached
  grads off                  ``capture_calls(Attention.forward)`` (no ``grads``)
  grads=["attn"]             ``capture_calls(Attention.forward, grads=["attn"])``: the
                             gradient of all 12 ``attn`` locals kept
  full_backward_hook         a ``register_full_backward_hook`` on every Attention module
                             keeping its output gradient (what hook-based tools do; it
                             cannot reach the ``attn`` local at all)

Usage: python benchmarks/gradients.py [--repeat N]
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

import torch  # noqa: E402

import nopdb_lab  # noqa: E402
from examples.vit import Attention, vit_small  # noqa: E402

Setup = Callable[[], ContextManager[Any]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = vit_small()
    images = torch.randn(1, 3, 224, 224)
    kept: List[Any] = []

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(images).sum().backward()

    def grads_off() -> ContextManager[Any]:
        return nopdb_lab.capture_calls(Attention.forward)

    def grads_on() -> ContextManager[Any]:
        return nopdb_lab.capture_calls(Attention.forward, grads=["attn"])

    @contextlib.contextmanager
    def backward_hooks() -> Any:
        def keep(module: Any, grad_in: Any, grad_out: Any) -> None:
            kept.append(grad_out[0].detach().clone())

        handles = [
            m.register_full_backward_hook(keep) for m in model.modules() if isinstance(m, Attention)
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            kept.clear()

    variants: Dict[str, Setup] = {
        "plain again (the noise floor)": contextlib.nullcontext,
        "grads off (capture only)": grads_off,
        'grads=["attn"], 12 layers': grads_on,
        "register_full_backward_hook": backward_hooks,
    }

    def timed(setup: Setup | None) -> float:
        ctx = setup() if setup is not None else contextlib.nullcontext()
        with ctx as captured:
            start = time.perf_counter()
            step()
            elapsed = time.perf_counter() - start
        if setup is grads_on:  # the gradients really arrived
            assert len(captured) == 12 and captured[0].grad_status["locals.attn"] == "ok"
        return elapsed

    for setup in [None, *variants.values()]:  # warm up
        timed(setup)
    plains: List[float] = []
    ratios: Dict[str, List[float]] = {name: [] for name in variants}
    for round_ in range(args.repeat):
        for name, setup in variants.items():
            # ABBA order: every other pair runs the variant first, so that whatever the
            # second of two back-to-back passes pays (allocator, caches) hits both alike
            if round_ % 2:
                other = timed(setup)
                plain = timed(None)
            else:
                plain = timed(None)
                other = timed(setup)
            plains.append(plain)
            ratios[name].append(other / plain)

    print(
        f"nopdb-lab {nopdb_lab.__version__} gradients | Python {platform.python_version()} | "
        f"backend {nopdb_lab.backend_name()} | torch {torch.__version__} | "
        f"ViT-S/16 forward+backward, medians of {args.repeat} alternating runs"
    )
    print(f"plain forward+backward: {statistics.median(plains) * 1000:.0f} ms")
    for name, values in ratios.items():
        print(f"  {name:32} {statistics.median(values):.3f}x")


if __name__ == "__main__":
    main()
