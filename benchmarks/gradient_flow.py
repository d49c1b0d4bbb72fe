"""Cost of the exact gradient flow (``gradient_flow``) against vnittest's approach.

Workloads (random float32 weights, batch 1, objective ``out.square().sum()``):

  (a) a 28×28×8 → 14×14×16 convolution pair (3×3, stride 2, padding 1), spatial nodes:
      the full dense 784×196 flow (``flow.matrix(0)``), by the closed form and by the
      generic batched vector-Jacobian path (what any other function gets);
  (b) a 56×56×16 → 28×28×32 pair (2.46 M node pairs): ``flow.links(0, top_k=2000)``,
      closed form, and streamed through the generic path;
  (c) vnittest's way at the same sizes: its example hook's dense unfold/scatter matrix
      (input channel 0 only), binarised, every pair sent to Plotly's Sankey: the number
      of links and the bytes of the minimal ``{"source", "target", "value"}`` JSON
      (a lower bound: Plotly's figure JSON adds labels and colours), against the
      front-end payload of ``flow.to_wire(0, 2000)``.

Each time is the median of ``--repeat`` runs of a fresh flow (building it included,
capture and backward excluded), after one warm-up run. Memory is the growth of the
resident set during a first, cold run in a fresh process (sampled every millisecond by a
thread; the allocator has no freed memory to reuse yet), the median over three
processes.

Usage: python benchmarks/gradient_flow.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812
from torch import nn  # noqa: E402

import nopdb_lab as nopdb  # noqa: E402
from nopdb_lab.analysis.flow import gradient_flow  # noqa: E402

PAGE = 4096


def rss() -> int:
    """Resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """Peak RSS growth while the ``with`` block runs, sampled by a thread."""

    def __enter__(self) -> "PeakRss":
        self.start = rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc: Any) -> None:
        self.peak = max(self.peak, rss())
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def capture_pair(c_in: int, c_out: int, size: int) -> Tuple[nn.Conv2d, List[Any]]:
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
    x = torch.randn(1, c_in, size, size, requires_grad=True)
    with nopdb.capture_calls(nn.Conv2d.forward, grads=True) as calls:
        conv(x).square().sum().backward()
    return conv, list(calls)


def median_time(work: Callable[[], Any], repeat: int) -> float:
    work()  # warm up (imports, allocator)
    times: List[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_memory(name: str, processes: int = 3) -> float:
    """Median peak RSS growth (MiB) of workload ``name``'s first run in fresh processes."""
    growth = []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, __file__, "--child", name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        growth.append(int(out.split()[-1]))
    return statistics.median(growth) / 2**20


def vnittest_matrix(conv: nn.Conv2d, grad_out: torch.Tensor, hw: Tuple[int, int]) -> Any:
    """vnittest's example hook: Wᵀg scattered through an unfolded index map (its index
    covers one input channel, so only channel 0 counts), then binarised."""
    c_out = grad_out.shape[1]
    cols = conv.weight.detach().reshape(c_out, -1).T @ grad_out.reshape(c_out, -1)
    h, w = hw
    index = (torch.arange(h * w, dtype=torch.float32) + 1).reshape(1, 1, h, w)
    idx = F.unfold(index, conv.kernel_size, padding=conv.padding, stride=conv.stride)[0]
    flow = torch.zeros(h * w + 1, cols.shape[1])
    flow.scatter_add_(0, idx.long(), cols[: idx.shape[0]])
    flow = flow[1:].abs()
    return torch.where(flow > 1e-5, 1.0, 0.99)  # every pair becomes a link


def vnittest_payload(matrix: torch.Tensor) -> Tuple[int, int]:
    src, dst = torch.meshgrid(
        torch.arange(matrix.shape[0]), torch.arange(matrix.shape[1]), indexing="ij"
    )
    payload = {
        "source": src.reshape(-1).tolist(),
        "target": (dst.reshape(-1) + matrix.shape[0]).tolist(),
        "value": matrix.reshape(-1).tolist(),
    }
    return matrix.numel(), len(json.dumps(payload))


def wire_bytes(wire: Dict[str, Any]) -> int:
    return sum(wire[k].nbytes for k in ("src", "dst", "value", "src_grads", "dst_grads"))


def workloads() -> Dict[str, Tuple[str, Callable[[], Any]]]:
    """name → (label, work); setup (capture, backward) runs here, not in the work."""
    conv_a, calls_a = capture_pair(8, 16, 28)
    g_a = calls_a[0].grads["return_value"]
    conv_b, calls_b = capture_pair(16, 32, 56)
    g_b = calls_b[0].grads["return_value"]
    return {
        "a-closed": (
            "(a) 28×28×8→14×14×16 dense flow, closed form",
            lambda: gradient_flow(calls_a).matrix(0),
        ),
        "a-vjp": (
            "(a) same, generic vjp path",
            lambda: gradient_flow(calls_a, functions={0: conv_a}).matrix(0),
        ),
        "a-vnittest": (
            "(c) vnittest's hook matrix, same pair",
            lambda: vnittest_matrix(conv_a, g_a, (28, 28)),
        ),
        "b-closed": (
            "(b) 56×56×16→28×28×32 top 2,000, closed form",
            lambda: gradient_flow(calls_b).links(0, top_k=2000),
        ),
        "b-vjp": (
            "(b) same, generic vjp path, streamed",
            lambda: gradient_flow(calls_b, functions={0: conv_b}, max_dense=0).links(0, top_k=2000),
        ),
        "b-vnittest": (
            "(c) vnittest's hook matrix, same pair",
            lambda: vnittest_matrix(conv_b, g_b, (56, 56)),
        ),
    }


def child(name: str) -> None:
    work = workloads()[name][1]
    with PeakRss() as peak:
        work()
    print(peak.growth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(
        f"# Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeat} runs, "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    work = workloads()
    print("| workload | median time | extra memory (cold run) |")
    print("|---|---|---|")
    for name, (label, fn) in work.items():
        repeat = args.repeat if name != "b-vjp" else max(1, args.repeat // 3)
        seconds = median_time(fn, repeat)
        print(f"| {label} | {seconds * 1000:.1f} ms | {cold_memory(name):.0f} MiB |")

    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")
    print()
    print("| pair | vnittest links | vnittest JSON | exact nonzero links | to_wire(top 2,000) |")
    print("|---|---|---|---|---|")
    for label, (conv, calls), hw in (
        ("28×28×8→14×14×16", capture_pair(8, 16, 28), (28, 28)),
        ("56×56×16→28×28×32", capture_pair(16, 32, 56), (56, 56)),
    ):
        g = calls[0].grads["return_value"]
        count, size = vnittest_payload(vnittest_matrix(conv, g, hw))
        wire = gradient_flow(calls).to_wire(0, top_k=2000)
        print(
            f"| {label} | {count:,} | {size / 2**20:.1f} MiB | {wire['total_links']:,} | "
            f"{wire_bytes(wire) / 1024:.0f} KiB |"
        )


if __name__ == "__main__":
    main()
