"""
``benchmarks/listing.py`` end to end with a small entry, so that the listing
benchmark cannot rot: the records written through the v1 batch API, some
removed, every case answered right (the script checks each answer against
its model of the entry), the ratios, the reactor stalls and two cold starts
reported, and every daemon stopped.
"""

import json
import re
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import alive, run_benchmark
from tests.integration.test_benchmark_quick import stop_leftovers

pytestmark = pytest.mark.slow

TIMEOUT = 240
STARTED = re.compile(r"^started twistd pid (\d+)", re.M)


def test_listing_benchmark_small(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        from listing import KEYS
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    # --bound: a few ms on a busy box, the ratios are noise here
    returncode, stdout, stderr = run_benchmark(
        "listing.py", ["--records", "5000", "--removed-runs", "5", "--repeat", "2",
                       "--cold", "p100-far,ts-far", "--bound", "1000"], tmp_path, TIMEOUT)
    pids = [int(pid) for pid in STARTED.findall(stderr)]
    try:
        assert returncode == 0, (stdout + stderr)[-3000:]
        assert len(pids) == 3  # the first daemon, then one per cold case
        result = json.loads(stdout.strip().splitlines()[-1])
        assert result["ok"] and result["problems"] == [] and result["over_bound"] == []
        assert (result["records"], result["removed"]) == (5000, 500)
        assert sorted(result["warm"]) == sorted(KEYS)
        for key, cell in result["warm"].items():
            assert 0 < cell["min"] <= cell["median"] <= cell["max"], key
            if cell["pair"]:
                ratio = cell["median"] / result["warm"][cell["pair"]]["median"]
                assert abs(cell["ratio"] - ratio) < 1e-9
        assert [row[0] for row in result["stalls"]][1:] == [
            "timestamp asc page=1", "timestamp asc page=45", "timestamp desc page=1",
            "timestamp asc include_removed page=1",
            "where[cam]=c1 page=1", "where[cam]=c1 page=11", "where[seq]=7 page=1",
            "start_ts/stop_ts 100 records near the end"]
        assert [name for name, _, _ in result["cold"]] == [
            "per_page=100 page=45", "timestamp asc page=45"]
        assert result["first_digest"][0] == "digest= of record 4995"
        assert "| `per_page=100 page=45` |" in stdout and "ratio to page 1" in stdout
    finally:
        stop_leftovers(pids)
    assert not [pid for pid in pids if alive(pid)]
