"""Integrated gradients against Captum, and the time of a probe re-run, on CPU.

(a) Integrated gradients, 64 Gauss–Legendre steps, one 224×224 image, a ViT-S/16-sized
    model (examples/vit.py, random weights): ``nopdb_lab.attribute`` and Captum's
    ``IntegratedGradients`` in the same process, runs alternating (so drift of a shared
    machine hits both alike), both with ``internal_batch_size`` 16 and the same baseline
    (zeros). The ratio is the median of nopdb-lab / Captum over the pairs. Both also
    compute the completeness delta (nopdb-lab always does; Captum is asked for it).
(b) ``probe.rerun()`` after a one-cell edit (gradients included), median over runs:
    vnittest's example network (three 1-channel 3×3 convolutions, 4×4 → 4 → 2 → 1) and
    the ViT-S/16-sized model. The JupyterLab round trip (click → re-run → repaint) adds
    the comm and the heatmap fetch to this; this number is the kernel's part.

Usage: python benchmarks/attribution.py [--pairs N] [--reruns N] [--threads N]
Needs torch and captum (``pip install -e .[attribution-test]``).
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from examples.vit import vit_small  # noqa: E402
from nopdb_lab.analysis.attribution import attribute  # noqa: E402
from nopdb_lab.probe import probe  # noqa: E402


class ThreeConvs(torch.nn.Module):
    """vnittest's example network: three bias-free 1-channel 3×3 convolutions."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(1, 1, 3, stride=1, padding=1, bias=False)
        self.conv2 = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
        self.conv3 = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1 = self.conv1(x)
        a2 = self.conv2(a1)
        return self.conv3(a2)


def timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def integrated_gradients(pairs: int) -> Dict[str, Any]:
    from captum.attr import IntegratedGradients

    model = vit_small()
    img = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    target = 281
    p = probe("bench-ig", lambda x: model(x)[:, target], x=img, gradients=False)
    ig = IntegratedGradients(model)

    def ours() -> Any:
        return attribute(p, baseline=0.0, steps=64, internal_batch_size=16)

    def captum() -> Any:
        return ig.attribute(
            img,
            baselines=0.0,
            target=target,
            n_steps=64,
            internal_batch_size=16,
            return_convergence_delta=True,
        )

    # warm-up, and the two must agree
    att = ours()
    reference, _ = captum()
    error = float((att.map - reference).abs().max())
    mine: List[float] = []
    theirs: List[float] = []
    for i in range(pairs):
        if i % 2:
            theirs.append(timed(captum))
            mine.append(timed(ours))
        else:
            mine.append(timed(ours))
            theirs.append(timed(captum))
    ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
    return {
        "nopdb_lab_s": statistics.median(mine),
        "captum_s": statistics.median(theirs),
        "ratio": statistics.median(ratios),
        "max_abs_difference": error,
        "delta": float(att.delta.max()),
    }


def rerun_time(name: str, model: torch.nn.Module, x: torch.Tensor, cell: Any, n: int) -> float:
    objective = (
        (lambda x: model(x).flatten(1)[:, 0])
        if name == "vnittest"
        else (lambda x: model(x)[:, 281])
    )
    p = probe(f"bench-{name}", objective, x=x)
    times = []
    for i in range(n + 1):
        p.inputs["x"][cell] = float(i % 2)
        t = timed(p.rerun)
        if i:  # the first re-run warms up
            times.append(t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="alternating IG pairs")
    parser.add_argument("--reruns", type=int, default=10, help="re-runs per model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    small = rerun_time(
        "vnittest", ThreeConvs().eval(), torch.randn(1, 1, 4, 4), (0, 0, 1, 2), args.reruns
    )
    vit = rerun_time(
        "vit-s16",
        vit_small(),
        torch.rand(1, 3, 224, 224),
        (0, slice(None), 3, 5),
        max(3, args.reruns // 3),
    )
    print(f"re-run after a one-cell edit, vnittest's example network: {small * 1e3:.2f} ms")
    print(f"re-run after a one-cell edit, ViT-S/16 224×224:           {vit * 1e3:.0f} ms")
    result = integrated_gradients(args.pairs)
    print(
        f"integrated gradients, 64 steps, ViT-S/16: nopdb-lab {result['nopdb_lab_s']:.2f} s, "
        f"Captum {result['captum_s']:.2f} s, ratio {result['ratio']:.2f} (median of "
        f"{args.pairs} alternating pairs); max |difference| {result['max_abs_difference']:.2e}, "
        f"delta {result['delta']:.4f}"
    )


if __name__ == "__main__":
    main()
