"""
Issue #12: the block-table cache is bounded by bytes (``table_cache_size``,
``RS_TABLE_CACHE_SIZE``), not by a number of tables.

A real ``twistd -n reduct`` (``daemon.Twistd``, 127.0.0.1 port 0) with
``RS_TABLE_CACHE_SIZE`` at 8 MiB stores records with 100 KB of labels in
blocks of 8 (about 0.8 MB of table each).  Restarted (every table cold),
it reads every record by timestamp, which loads every block's table into
the cache, and then through a query; the RSS growth (peak during the reads,
sampled with ``psutil`` every 10 ms, minus the RSS before them) stays well
below what the old bound of 64 tables took (all 60 tables here, about
50 MB) and under a bound derived from the setting.  It takes 6 to 12 s (marked ``slow``: it starts real twistd processes).

Measured on the 2-core development VM: growth 11.0 MiB (peak 69.8 MiB);
with the count-bounded cache before issue #12, 47.7 MiB.
"""

import threading
import time

import psutil
import pytest

from tests.integration.daemon import Connection, Twistd

pytestmark = pytest.mark.slow

MIB = 1 << 20
CACHE = 8 * MIB
BLOCKS, PER_BLOCK = 60, 8
LABEL = 100_000
#: The cache, one table being loaded (its file, lines and records: about
#: 3× its 0.8 MB), responses in flight and allocator slack.
LIMIT = CACHE + 12 * MIB


def _label(ts: int) -> str:
    return f"{ts}:" + "v" * LABEL


class Sampler(threading.Thread):
    """The peak RSS of a process, sampled every 10 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.samples += 1

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


def _ok(resp, what):
    assert resp.status == 200, (what, resp)
    return resp


def test_reading_records_with_large_labels_keeps_rss_within_the_table_cache(tmp_path):
    data_path = tmp_path / "data"
    environ = {"RS_TABLE_CACHE_SIZE": str(CACHE), "RS_SYNC": "none"}
    stamps = [1000 + i for i in range(BLOCKS * PER_BLOCK)]
    daemon = Twistd(data_path, environ=environ)
    port = daemon.start()
    try:
        with Connection(port) as conn:
            _ok(conn.request("POST", "/api/v1/b/rss", b'{"max_block_records": %d}' % PER_BLOCK),
                "bucket")
            for ts in stamps:
                _ok(conn.request("POST", f"/api/v1/b/rss/e?ts={ts}", b"%d" % ts,
                                 [("x-reduct-label-big", _label(ts))]), ("write", ts))
            info = _ok(conn.request("GET", "/api/v1/b/rss"), "info").body
            assert b'"block_count":%d' % BLOCKS in info, info
    finally:
        daemon.stop()

    daemon = Twistd(data_path, environ=environ)
    port = daemon.start()
    try:
        with Connection(port) as conn:
            _ok(conn.request("GET", "/api/v1/info"), "warm-up")
            time.sleep(0.5)  # let start-up settle before the baseline
            baseline = psutil.Process(daemon.pid).memory_info().rss
            sampler = Sampler(daemon.pid)
            sampler.start()
            started = time.monotonic()
            try:
                for ts in stamps:
                    resp = _ok(conn.request("GET", f"/api/v1/b/rss/e?ts={ts}"), ("read", ts))
                    assert resp.body == b"%d" % ts
                    assert resp.header("x-reduct-label-big") == _label(ts), ts
                qid = _ok(conn.request("GET", "/api/v1/b/rss/e/q?start=0"), "query").body
                qid = int(qid.decode().split(":")[1].strip(" }"))
                seen = []
                while True:
                    resp = conn.request("GET", f"/api/v1/b/rss/e?q={qid}")
                    if resp.status == 204:
                        break
                    _ok(resp, ("query", qid))
                    ts = int(resp.header("x-reduct-time"))
                    assert resp.header("x-reduct-label-big") == _label(ts), ts
                    seen.append(ts)
                assert seen == stamps
            finally:
                peak = sampler.stop()
            seconds = time.monotonic() - started
    finally:
        log = daemon.stop()
    growth = peak - baseline
    print(f"\ntable cache {CACHE / MIB:.0f} MiB, {len(stamps)} records with {LABEL} B of "
          f"labels in {BLOCKS} blocks: RSS {baseline / MIB:.1f} MiB before the reads, "
          f"peak {peak / MIB:.1f} MiB, growth {growth / MIB:.1f} MiB "
          f"({sampler.samples} samples, reads took {seconds:.1f} s)")
    assert sampler.samples >= 10
    assert growth < LIMIT, f"RSS grew by {growth / MIB:.1f} MiB (limit {LIMIT / MIB:.0f} MiB)"
    assert "Traceback" not in log, log[-3000:]
