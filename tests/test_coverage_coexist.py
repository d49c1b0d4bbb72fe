"""nopdb_lab and coverage.py measure the same program together (pytest-cov users).

A script runs under ``python -m coverage run``: its captures and breakpoints must record
(also in a thread started inside the capture), and coverage must still see every line,
also those run after the capture and in that thread. Coverage's C tracer is used on
3.10/3.11 (and on 3.12 with the settrace backend); on 3.12+ also its ``sys.monitoring``
core. coverage is a test dependency (the ``test`` extra).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("coverage.cmdline")  # not the front end's coverage/ report folder

SCRIPT = textwrap.dedent(
    """\
    import json, sys, threading
    import nopdb_lab as nopdb

    def work(x):
        y = x * 2
        return y

    def in_thread(out):
        out.append(work(5))
        z = 1  # line: thread after
        out.append(z)

    tracer = type(sys.gettrace()).__name__
    results = []
    with nopdb.capture_calls(work) as calls:
        with nopdb.breakpoint(function=work, line="return y") as bp:
            values = bp.eval("y")
            work(1)
            thread = threading.Thread(target=in_thread, args=(results,))
            thread.start()
            thread.join()
            inside = 1  # line: inside
    after = 2  # line: after
    restored = type(sys.gettrace()).__name__  # line: restored
    json.dump({
        "tracer": tracer, "restored": restored, "calls": sorted(c.args["x"] for c in calls),
        "values": sorted(values), "results": results, "backend": nopdb.backend_name(),
    }, sys.stdout)
    """
)


def cores():
    if sys.version_info >= (3, 12):
        return ["ctrace", "sysmon"]
    return ["ctrace"]


@pytest.mark.parametrize("core", cores())
def test_captures_and_coverage_both_work(tmp_path, core):
    script = tmp_path / "measured.py"
    script.write_text(SCRIPT)
    data = tmp_path / ".coverage"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "COVERAGE_CORE": core,
    }
    env.pop("COVERAGE_PROCESS_START", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "run",
            f"--data-file={data}",
            f"--include={script}",
            str(script),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    if core == "ctrace":
        assert result["tracer"] == "CTracer", "coverage's C tracer did not run"
        assert result["restored"] == "CTracer", "coverage's tracer was not given back"
    assert result["calls"] == [1, 5], "the capture recorded nothing under coverage"
    assert result["values"] == [2, 10], "the breakpoint never fired under coverage"
    assert result["results"] == [10, 1]

    report = tmp_path / "coverage.json"
    subprocess.run(
        [sys.executable, "-m", "coverage", "json", f"--data-file={data}", "-o", str(report)],
        check=True,
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    (measured,) = json.loads(report.read_text())["files"].values()  # --include: only it
    executed = set(measured["executed_lines"])
    lines = SCRIPT.splitlines()
    markers = ("# line: thread after", "# line: inside", "# line: after", "# line: restored")
    for marker in (*markers, "y = x * 2", "out.append(z)"):
        (number,) = [i + 1 for i, text in enumerate(lines) if marker in text]
        assert number in executed, f"coverage lost line {number} ({marker!r})"
