"""The store's budget bounds the process: 200 hits of 50 MB locals under a 500 MB budget.

Runs in a fresh interpreter so the peak resident size (``ru_maxrss``) belongs to this
scenario alone; a few seconds (200 allocations of 50 MB).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numpy")
resource = pytest.importorskip("resource")

MB = 1 << 20
BUDGET = 500 * MB
#: the interpreter, numpy, the record being added on top of a full store (one 50 MB
#: block can be alive beside the budget while its hit is recorded) and allocator slack
MARGIN = 200 * MB

SCENARIO = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import nopdb_lab as nopdb

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def step(i):
        block = np.full(50 * 2**20 // 8, float(i))  # 50 MB, every page touched
        return i

    nopdb.store.set_budget({budget})
    nopdb.store.enable()
    base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    base = rss()
    with nopdb.breakpoint(function=step, line="return i", keep_locals=True) as bp:
        values = bp.eval("block")
        for i in range(200):
            step(i)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    json.dump({{
        "base": max(base, base_peak), "peak": peak, "end": rss(),
        "hits": bp.hit_count, "kept": len(nopdb.store), "nbytes": nopdb.store.nbytes,
        "evicted_hits": sum(h.evicted for h in bp.hits),
        "last": float(bp.hits[-1].locals["block"][0]),
    }}, sys.stdout)
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_200_hits_of_50_mb_stay_within_a_500_mb_budget(tmp_path):
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO.format(budget=BUDGET))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["hits"] == 200 and result["last"] == 199.0
    assert result["nbytes"] <= BUDGET and result["kept"] >= 8
    assert result["evicted_hits"] == 200 - result["kept"]
    growth = result["peak"] - result["base"]
    assert growth <= BUDGET + MARGIN, f"grew {growth / MB:.0f} MB under a 500 MB budget"
    assert result["end"] - result["base"] <= BUDGET + MARGIN
