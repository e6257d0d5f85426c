"""
The I/O API's batched read keeps memory flat (spec 1.20 §1.5, issue #14):
a batched read of 100 000 records of 1 KiB over 4 entries through
``GET /api/v1/io/:bucket/read`` keeps the daemon's RSS growth under 32 MiB.

Runs ``benchmarks/batch_rss.py --io`` (a real ``twistd`` process, records
written with ``POST /io/…/write``, read with one multi-entry query) and
checks its JSON result, on the daemon that did the writes and on a freshly
restarted one (every block table cold).
"""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import alive

pytestmark = pytest.mark.slow

RECORDS = 100_000
SIZE = 1024
ENTRIES = 4
LIMIT_MIB = 32
TIMEOUT = 240
STARTED = re.compile(r"^started twistd pid (\d+)", re.M)


@pytest.fixture(scope="module", params=[False, True], ids=["warm", "restarted"])
def result(request):
    restart = ["--restart"] if request.param else []
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "batch_rss.py"), "--io",
         "--entries", str(ENTRIES), "--records", str(RECORDS), "--size", str(SIZE), "--json",
         *restart],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    daemons = [int(pid) for pid in STARTED.findall(stderr)]
    try:
        lines = [line for line in stdout.splitlines() if line.strip()]
        yield {
            "rc": proc.returncode, "stderr": stderr, "daemons": daemons, "restart": request.param,
            "json": json.loads(lines[-1]) if lines else None,
        }
    finally:
        for pid in daemons:  # only if the benchmark was killed before it stopped them
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_io_read_of_100000_records_over_4_entries_keeps_rss_growth_under_32_mib(result):
    out = result["json"]
    assert out is not None, result["stderr"][-3000:]
    assert (out["records"], out["size"], out["io"], out["entries"], out["restart"]) == (
        RECORDS, SIZE, True, ENTRIES, result["restart"])
    assert out["problems"] == [], out
    # every record came back, checked (entry, timestamp, bytes); the entries
    # take turns in runs of 20, so a batch (never interleaved) holds 80
    assert out["records_read"] == RECORDS
    assert out["bytes_read"] == RECORDS * SIZE
    assert out["batches"] == RECORDS // 80 and out["max_batch"] == 80
    assert out["rss_samples"] >= 10
    assert out["rss_peak_read"] >= out["rss_baseline"] > 0
    assert out["rss_growth_mib"] < LIMIT_MIB, out
    assert out["ok"] is True and result["rc"] == 0, result["stderr"][-3000:]


def test_the_daemon_is_stopped(result):
    assert len(result["daemons"]) == (2 if result["restart"] else 1), result["stderr"][-3000:]
    assert result["json"]["daemon_pid"] == result["daemons"][-1]
    assert not any(alive(pid) for pid in result["daemons"])
