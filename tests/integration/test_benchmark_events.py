"""
``benchmarks/events.py --quick --control`` end to end, so that the events
benchmark cannot rot: three daemons of this checkout (events on, off, and an
off control), every cell once with tiny counts, the report with its ratios
written, and every daemon stopped.
"""

import re

from tests.conftest import REPO_ROOT
from tests.integration.helpers import alive, run_benchmark
from tests.integration.test_benchmark_quick import stop_leftovers

TIMEOUT = 180
STARTED = re.compile(r"^started (\S+) pid (\d+)", re.M)
ROW = re.compile(r"^\| (write|read|batch write|batch read|io write|io read) \| (\d) \| "
                 r"([\d,]+) \| ([\d,]+) \| ([\d.]+) \| ([\d,]+) \| ([\d.]+) \|$", re.M)


def test_events_benchmark_quick(tmp_path):
    out = tmp_path / "events.md"
    returncode, stdout, stderr = run_benchmark(
        "events.py", ["--quick", "--control", "--out", str(out)], REPO_ROOT, TIMEOUT)
    pids = [int(pid) for _, pid in STARTED.findall(stderr)]
    try:
        assert returncode == 0, stderr[-3000:]
        assert sorted(name for name, _ in STARTED.findall(stderr)) == ["control", "off", "on"]
        report = out.read_text()
        assert report in stdout
        rows = ROW.findall(report)
        assert [(op, conc) for op, conc, *_ in rows] == [
            ("write", "1"), ("read", "1"), ("write", "8"), ("read", "8"),
            ("batch write", "1"), ("batch read", "1"), ("io write", "1"), ("io read", "1"),
        ]
        for _, _, off, on, ratio, control, control_ratio in rows:
            off, on = int(off.replace(",", "")), int(on.replace(",", ""))
            assert off > 0 and on > 0
            assert abs(float(ratio) - on / off) < 0.01
        assert "Lowest ratio:" in report
    finally:
        stop_leftovers(pids)
    assert not [pid for pid in pids if alive(pid)]
