"""capture_attention() on a long prompt and during generation, Llama-style, on the CPU.

A random-weight Llama decoder built from a config (4 layers, 32 query heads sharing 8
key/value heads, head size 8, RoPE) on a 2,048-token prompt:

  (a) forward time, plain vs. inside ``capture_attention()``: median over alternating
      runs, and the median of the back-to-back ratios (capture time / plain time);
  (b) peak memory of one forward, plain vs. capture (each in a fresh subprocess: the
      peak resident memory during the forward, sampled from /proc, minus the resident
      memory before it; medians over runs), next to the
      bytes the records hold (queries and keys as SDPA received them) and the
      B·H·N²·4 bytes one layer of eager float32 maps would need;
  (c) ``generate()`` of 128 tokens after a 512-token prompt, with vs. without capture
      (one growing record per layer);
  (d) the kernel side of click-to-paint: one head's 2,048×2,048 map pooled to 512×512
      from the lazy record (``lazy_slice_2d``).

Usage: python benchmarks/attention_long.py [--tokens N] [--repeat N]
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LAYERS, HEADS, KV_HEADS, HEAD_DIM = 4, 32, 8, 8


def build_model(head_dim: int = HEAD_DIM) -> Any:
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=1000,
        hidden_size=HEADS * head_dim,
        intermediate_size=2 * HEADS * head_dim,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=4096,
        eos_token_id=None,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM._from_config(config, attn_implementation="sdpa")
    return model.eval()


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(plain: Callable[[], Any], traced: Callable[[], Any], repeat: int) -> tuple:
    plain(), traced()  # warm up
    p: List[float] = []
    t: List[float] = []
    for _ in range(repeat):
        p.append(timed(plain))
        t.append(timed(traced))
    ratio = statistics.median(b / a for a, b in zip(p, t, strict=True))
    return statistics.median(p), statistics.median(t), ratio


def memory_child(mode: str, tokens: int) -> None:
    """Run one forward in this fresh process and print the rise of its peak RSS."""
    import torch

    import nopdb_lab

    model = build_model()
    ids = torch.randint(0, 1000, (1, tokens))
    with torch.no_grad():
        model(input_ids=ids[:, :16])  # load lazily-initialised kernels first
    gc.collect()
    sampler = _RssSampler()
    held = 0
    with sampler, torch.no_grad():
        if mode == "capture":
            with nopdb_lab.capture_attention() as attns:
                model(input_ids=ids)
            held = sum(r.nbytes_held() for r in attns)
        else:
            model(input_ids=ids)
    print(json.dumps({"peak_rise": sampler.peak - sampler.start, "held": held}))


class _RssSampler:
    """Peak resident memory during a block, sampled every 0.5 ms from /proc (Linux);
    ``ru_maxrss`` cannot be used as it is the process's all-time peak."""

    def __init__(self) -> None:
        self.page = resource.getpagesize()
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.0005)

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def measure_memory(mode: str, tokens: int, runs: int) -> dict:
    """Median peak rise over ``runs`` fresh processes."""
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", mode, "--tokens", str(tokens)],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "peak_rise": statistics.median(r["peak_rise"] for r in results),
        "held": results[-1]["held"],
    }


def generation(model: Any, args: Any) -> None:
    """(c): generate() with vs. without capture, default mode and via="patch"."""
    import torch

    import nopdb_lab

    prompt = torch.randint(0, 1000, (1, 512))

    def gen_plain() -> None:
        with torch.no_grad():
            model.generate(prompt, max_new_tokens=args.new_tokens, do_sample=False)

    def gen_traced() -> None:
        with torch.no_grad(), nopdb_lab.capture_attention() as attns:
            model.generate(prompt, max_new_tokens=args.new_tokens, do_sample=False)
        assert len(attns) == LAYERS and attns[0].steps == args.new_tokens

    def gen_patched() -> None:
        with torch.no_grad(), nopdb_lab.capture_attention(via="patch") as attns:
            model.generate(prompt, max_new_tokens=args.new_tokens, do_sample=False)
        assert len(attns) == LAYERS and attns[0].steps == args.new_tokens

    gp, gt, r = paired(gen_plain, gen_traced, args.repeat)
    print(
        f"(c) generate {args.new_tokens} tokens after 512: plain {gp:.2f} s, "
        f"capture {gt:.2f} s, ratio {r:.2f}x"
    )
    gp, gt, r = paired(gen_plain, gen_patched, args.repeat)
    print(f"    via='patch': plain {gp:.2f} s, capture {gt:.2f} s, ratio {r:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--memory-child", choices=["plain", "capture"])
    parser.add_argument(
        "--only-generation", action="store_true", help="run (c) only: generate() timings"
    )
    parser.add_argument(
        "--head-dim", type=int, default=HEAD_DIM, help="head size (Llama models use 128)"
    )
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.tokens)
        return

    import torch

    import nopdb_lab
    from nopdb_lab.analysis.attention_lazy import lazy_slice_2d

    torch.set_num_threads(max(1, torch.get_num_threads()))
    n = args.tokens
    model = build_model(args.head_dim)
    ids = torch.randint(0, 1000, (1, n))
    print(
        f"Llama-style decoder: {LAYERS} layers × {HEADS} query heads / {KV_HEADS} KV heads "
        f"× head size {args.head_dim}, {n} tokens, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )

    def plain() -> None:
        with torch.no_grad():
            model(input_ids=ids)

    def traced() -> None:
        with torch.no_grad(), nopdb_lab.capture_attention():
            model(input_ids=ids)

    def patched() -> None:
        with torch.no_grad(), nopdb_lab.capture_attention(via="patch"):
            model(input_ids=ids)

    if args.only_generation:
        generation(model, args)
        return

    p, t, r = paired(plain, traced, args.repeat)
    print(f"(a) forward: plain {p * 1e3:.0f} ms, capture {t * 1e3:.0f} ms, ratio {r:.2f}x")
    p, t, r = paired(plain, patched, args.repeat)
    print(f"    via='patch': plain {p * 1e3:.0f} ms, capture {t * 1e3:.0f} ms, ratio {r:.2f}x")

    mem_plain, mem_capture = {}, {}
    for _ in range(1):  # alternate plain and capture processes
        mem_plain = measure_memory("plain", n, 3)
        mem_capture = measure_memory("capture", n, 3)
    eager_layer = 1 * HEADS * n * n * 4
    extra = mem_capture["peak_rise"] - mem_plain["peak_rise"]
    print(
        f"(b) peak memory rise of one forward: plain {mem_plain['peak_rise'] / 1e6:.1f} MB, "
        f"capture {mem_capture['peak_rise'] / 1e6:.1f} MB (extra {extra / 1e6:.1f} MB); "
        f"records hold {mem_capture['held'] / 1e6:.1f} MB (q and k, all layers); "
        f"eager float32 maps: B·H·N²·4 = {eager_layer / 1e6:.0f} MB per layer, "
        f"{LAYERS * eager_layer / 1e9:.1f} GB for the model"
    )

    generation(model, args)

    with torch.no_grad(), nopdb_lab.capture_attention() as attns:
        model(input_ids=ids)
    lazy = attns[0].attention
    times = [
        timed(lambda: lazy_slice_2d(lazy, 2, 3, index={1: 5}, max_size=512))
        for _ in range(args.repeat)
    ]
    print(
        f"(d) one head {n}×{n} pooled to 512×512 from the lazy record: "
        f"{statistics.median(times) * 1e3:.0f} ms (median of {args.repeat})"
    )


if __name__ == "__main__":
    main()
