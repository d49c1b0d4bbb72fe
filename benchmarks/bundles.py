"""Capture bundles against torch.save/torch.load, and time to first slice of a 2 GB bundle.

1. Throughput (GB/s) of the same tensors (``--gb`` GB in 16 float32 tensors inside one
   captured call) written with ``nopdb.save_captures`` and with ``torch.save``, and read
   back with ``nopdb.load_captures`` and ``torch.load(weights_only=True)``. Runs alternate
   (bundle, torch, bundle, torch...) so drift of a shared machine hits both alike; the
   table shows medians. A bundle opens without reading tensor data, so two load numbers
   are given: opening, and opening plus reading every byte (a sum over each tensor), the
   fair comparison with ``torch.load``, which reads everything. Files are read back from
   the page cache in both cases (they were just written).
2. Time to first slice: a fresh process opens a 2 GB bundle (one 32×16×1024×1024 float32
   attention-shaped tensor) and reads one head's 1024×1024 map, as the heatmap viewer
   does (timed after the imports); the bytes it mapped in are counted
   (``/proc/self/smaps``) to show it read only that slice. The same with ``torch.load``
   for contrast.

Usage: python benchmarks/bundles.py [--gb 1.0] [--repeat 5] [--skip-2gb] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nopdb_lab.bundle import load_captures, save_captures  # noqa: E402
from nopdb_lab.call_info import CallInfo  # noqa: E402
from nopdb_lab.capture_store import CaptureStore  # noqa: E402


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(gb: float, repeat: int, folder: pathlib.Path) -> Dict[str, float]:
    n = 16
    per = int(gb * 1e9 / 4 / n)
    tensors = {f"t{i}": torch.randn(per) for i in range(n)}
    nbytes = sum(t.nbytes for t in tensors.values())
    info = CallInfo()
    info.id, info.name, info.locals = 1, "bench", tensors
    bundle, pt = folder / "bench.nopdb", folder / "bench.pt"
    times: Dict[str, List[float]] = {k: [] for k in ("save", "tsave", "open", "read", "tload")}
    budget = 4 * nbytes

    def read_bundle() -> None:
        record = load_captures(bundle, CaptureStore(budget))[0]
        for value in record.locals.values():
            value.sum()

    for _ in range(repeat):
        for path in (bundle, pt):  # neither save pays for deleting the previous file
            path.unlink(missing_ok=True)
        os.sync()
        times["save"].append(_timed(lambda: save_captures(bundle, [info])))
        times["tsave"].append(_timed(lambda: torch.save(tensors, pt)))
        times["open"].append(_timed(lambda: load_captures(bundle, CaptureStore(budget))))
        times["read"].append(_timed(read_bundle))

        def torch_read() -> None:
            for value in torch.load(pt, weights_only=True).values():
                value.sum()

        times["tload"].append(_timed(torch_read))
    bundle.unlink()
    pt.unlink()
    return {k: nbytes / 1e9 / statistics.median(v) for k, v in times.items()} | {
        "gb": nbytes / 1e9,
        "open_ms": statistics.median(times["open"]) * 1e3,
    }


FIRST_SLICE = r"""
import json, os, sys, time
sys.path.insert(0, {root!r})
import torch
from nopdb_lab.bundle import load_captures
from nopdb_lab.capture_store import CaptureStore
start = time.perf_counter()
if {use_torch}:
    value = torch.load({path!r}, weights_only=True)["attn"]
else:
    value = load_captures({path!r}, CaptureStore(1 << 40))[0].locals["attn"]
opened = time.perf_counter()
tile = value[3, 5].clone()
done = time.perf_counter()
rss = 0
inside = False
real = os.path.realpath({path!r})
for line in open("/proc/self/smaps"):
    first = line.split(maxsplit=1)[0]
    if "-" in first and not first.endswith(":"):
        inside = line.rstrip().endswith(real)
    elif inside and first == "Rss:":
        rss += int(line.split()[1]) * 1024
print(json.dumps({{"open": opened - start, "first": done - start, "mapped": rss,
                  "tile": tile.nbytes}}))
"""


def first_slice(folder: pathlib.Path, repeat: int) -> Dict[str, Dict[str, float]]:
    shape = (32, 16, 1024, 1024)  # layers × heads × N × N float32 = 2 GiB
    attn = torch.empty(shape).uniform_()
    info = CallInfo()
    info.id, info.name, info.locals = 1, "attention", {"attn": attn}
    bundle, pt = folder / "big.nopdb", folder / "big.pt"
    save_captures(bundle, [info])
    torch.save({"attn": attn}, pt)
    del attn, info
    out: Dict[str, List[Dict[str, float]]] = {"bundle": [], "torch": []}
    for _ in range(repeat):
        for name, path in (("bundle", bundle), ("torch", pt)):
            code = FIRST_SLICE.format(root=str(ROOT), path=str(path), use_torch=name == "torch")
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            out[name].append(json.loads(result.stdout))
    size = bundle.stat().st_size
    bundle.unlink()
    pt.unlink()
    return {
        name: {
            key: statistics.median(r[key] for r in runs)
            for key in ("open", "first", "mapped", "tile")
        }
        | {"size": size}
        for name, runs in out.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-2gb", action="store_true")
    parser.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = pathlib.Path(tmp)
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, files in {folder}")
        t = throughput(args.gb, args.repeat, folder)
        print(f"\nThroughput, {t['gb']:.2f} GB in 16 float32 tensors, median of {args.repeat}")
        print(f"{'':32} {'bundle':>10} {'torch':>10}")
        print(f"{'save (GB/s)':32} {t['save']:>10.2f} {t['tsave']:>10.2f}")
        print(f"{'load + read every byte (GB/s)':32} {t['read']:>10.2f} {t['tload']:>10.2f}")
        print(f"{'open only (ms)':32} {t['open_ms']:>10.1f} {'-':>10}")
        if not args.skip_2gb:
            s = first_slice(folder, max(1, args.repeat // 2))
            b, p = s["bundle"], s["torch"]
            print(f"\nFirst slice (one 1024×1024 head) of a {b['size'] / 2**30:.2f} GiB file,")
            print("in a fresh process (after importing torch), median")
            print(f"{'':32} {'bundle':>10} {'torch':>10}")
            print(f"{'open (s)':32} {b['open']:>10.3f} {p['open']:>10.3f}")
            print(f"{'first slice read (s)':32} {b['first']:>10.3f} {p['first']:>10.3f}")
            print(
                f"{'file bytes mapped in (MiB)':32} {b['mapped'] / 2**20:>10.1f} {'all (read)':>10}"
            )
            print(f"{'slice size (MiB)':32} {b['tile'] / 2**20:>10.1f} {p['tile'] / 2**20:>10.1f}")


if __name__ == "__main__":
    main()
