"""
The leaf worker process (reduct_twisted/leafworker.py) for real: a Python
process answering jobs over pipes, restarted after it dies (not more often
than RESTART_AFTER), stopped with the daemon, and gone when the daemon is
killed with SIGKILL (its input closes).
"""

import hashlib
import os
import signal
import subprocess
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults

from reduct_twisted import leafworker
from reduct_twisted.leafworker import LeafWorker, WorkerGone
from reduct_twisted.storage import leafjob
from reduct_twisted.storage.entry_log_offload import BATCH
from tests.integration.daemon import Connection, Twistd
from tests.integration.helpers import alive


def _job(first, count):
    rows = [(n, 1000 + n, 3, "text/plain", {"k": str(n)}, hashlib.sha256(b"%d" % n).digest())
            for n in range(first, first + count)]
    return leafjob.encode_job(first - 1, [] if first == 1 else None, 0, first, first + count - 1, rows)


@pytest_twisted.ensureDeferred
async def test_jobs_are_answered_by_a_real_process_and_it_stops():
    worker = LeafWorker(reactor)
    # The last answer is larger than CHANNEL_BUFFER; the job before it is larger than what
    # the socket takes at once (sent in part, the rest from the channel's write buffer).
    jobs = [_job(1, count) for count in (1, 300, 7, 60000, 9000)]
    assert len(leafjob.run_job(jobs[-1])) > leafworker.CHANNEL_BUFFER
    assert len(jobs[-2]) > 4 * leafworker.CHANNEL_BUFFER
    answers = [await worker.submit(job) for job in jobs]
    assert answers == [leafjob.run_job(job) for job in jobs]
    answers = await gatherResults([worker.submit(job) for job in jobs * 3])  # in flight together
    assert answers == [leafjob.run_job(job) for job in jobs * 3]
    assert worker.starts == 1
    pid = worker._proto.transport.pid
    # It runs at leafjob.NICE above the daemon's niceness (requests keep the CPU).
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + leafjob.NICE)
    assert leafjob.NICE == 19
    # ...and under SCHED_IDLE: it runs only when nothing else wants the CPU.
    assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    await worker.stop()
    assert not alive(pid)
    with pytest.raises(WorkerGone):
        await worker.submit(jobs[0])


@pytest_twisted.ensureDeferred
async def test_a_dead_worker_fails_its_jobs_and_is_started_again(monkeypatch):
    worker = LeafWorker(reactor)
    await worker.submit(_job(1, 1))
    proto = worker._proto
    proto.transport.signalProcess("KILL")
    await proto.ended
    with pytest.raises(WorkerGone):  # within RESTART_AFTER of the last start
        await worker.submit(_job(1, 1))
    monkeypatch.setattr(leafworker, "RESTART_AFTER", 0.0)
    job = _job(1, 5)
    assert await worker.submit(job) == leafjob.run_job(job)
    assert worker.starts == 2
    await worker.stop()


def _children(pid: int) -> list:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


#: Records enough for a job of the leaf worker.
N = BATCH + 44


def test_the_worker_does_not_outlive_a_killed_daemon(tmp_path):
    """Enough records for a job, so the daemon has started its worker; SIGKILL
    the daemon: the worker's input closes and it exits; the log is whole after
    the restart, and a clean stop ends the worker too."""
    daemon = Twistd(tmp_path / "data", environ={"RS_SYNC": "none"})  # always: leaves go with each sync
    port = daemon.start()
    try:
        with Connection(port) as conn:
            assert conn.request("POST", "/api/v1/b/bkt").status == 200
            for ts in range(1, N + 1):
                assert conn.request("POST", f"/api/v1/b/bkt/e?ts={ts}", b"x%d" % ts).status == 200
        workers = _children(daemon.pid)
        assert len(workers) == 1
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.proc.wait(10)
        deadline = time.monotonic() + 20
        while alive(workers[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(workers[0])
    finally:
        daemon.kill()
    again = Twistd(tmp_path / "data", environ={"RS_SYNC": "none"})
    port = again.start()
    try:
        with Connection(port) as conn:
            head = conn.request("GET", "/api/v1/log/bkt/e")
            assert head.status == 200
            assert b'"tree_size":%d' % N in head.body
            for ts in range(N + 1, 2 * N + 1):
                assert conn.request("POST", f"/api/v1/b/bkt/e?ts={ts}", b"x%d" % ts).status == 200
        workers = _children(again.pid)
        assert len(workers) == 1
    finally:
        log = again.stop()
    assert not alive(workers[0])  # a clean stop ends it too
    assert "Traceback" not in log
