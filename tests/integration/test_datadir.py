"""
Data safety at start (issue #12), with real ``twistd -n reduct`` processes:
one daemon per data directory (the flock on ``<data>/.lock``, the stand-by
wait, no stale lock after SIGKILL), a foreign directory left untouched, and
a directory written before the format marker existed still opening.
"""

import json
import os
import re
import subprocess
import time

import pytest
from twisted.internet.task import Clock

from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.testing import write_record
from tests.integration.daemon import Connection, Twistd
from tests.integration.test_twistd import twistd_command
from tests.unit.test_storage_layout import snapshot, upstream_like

pytestmark = pytest.mark.slow

RECORD = b"acknowledged before the second daemon came"


def write(port, ts=1, body=RECORD):
    with Connection(port) as conn:
        if conn.request("GET", "/api/v1/b/b").status == 404:
            assert conn.request("POST", "/api/v1/b/b").status == 200
        resp = conn.request("POST", f"/api/v1/b/b/e?ts={ts}", body)
        assert resp.status == 200, resp


def read(port, ts=1):
    with Connection(port) as conn:
        resp = conn.request("GET", f"/api/v1/b/b/e?ts={ts}")
    assert resp.status == 200, resp
    return resp.body


def run_to_exit(data_path, *extra, timeout=30.0):
    """Start a daemon expected to refuse; return (exit code, output, seconds)."""
    daemon = Twistd(data_path, *extra)
    started = time.monotonic()
    daemon.spawn()
    try:
        code = daemon.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        raise AssertionError("the daemon did not exit:\n" + daemon.output) from None
    elapsed = time.monotonic() - started
    daemon.kill()  # joins the output reader
    return code, daemon.output, elapsed


def start_up_cost(cwd):
    """Seconds ``twistd reduct --version`` takes: interpreter, Twisted and our imports."""
    started = time.monotonic()
    subprocess.run(twistd_command() + ["reduct", "--version"], check=True, cwd=cwd,
                   capture_output=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    return time.monotonic() - started


def lines_with(text, needle):
    return [line for line in text.splitlines() if needle in line]


def test_second_daemon_exits_at_once_and_touches_nothing(tmp_path):
    """(a) The second daemon on a data directory in use exits non-zero at
    once with one line naming the lock and the first daemon's PID; the
    directory is byte-for-byte unchanged and the first keeps serving."""
    data = tmp_path / "data"
    first = Twistd(data)
    port = first.start()
    try:
        write(port)
        before = snapshot(data)
        code, output, elapsed = run_to_exit(data)
        assert code != 0, output
        [line] = lines_with(output, str(data / ".lock"))
        assert f"held by PID {first.pid}" in line and line.startswith("reduct: "), output
        assert "Traceback" not in output
        # The process exits as soon as it can: at most a second beyond what
        # merely starting the interpreter and importing Twisted costs here.
        assert elapsed < 1.0 + start_up_cost(tmp_path), (elapsed, output)
        assert snapshot(data) == before
        assert read(port) == RECORD
        write(port, ts=2, body=b"still writable")
    finally:
        first.stop()


def test_standby_takes_over_when_the_holder_stops(tmp_path):
    """(b) With --lock-file-timeout the second daemon says once that it
    waits as a passive stand-by, and serves once the first has stopped."""
    data = tmp_path / "data"
    first = Twistd(data)
    port = first.start()
    standby = Twistd(data, "--lock-file-timeout", "5")
    try:
        write(port)
        standby.spawn()
        deadline = time.monotonic() + 30
        while "passive stand-by" not in standby.output and time.monotonic() < deadline:
            assert standby.alive(), standby.output
            time.sleep(0.05)
        [line] = lines_with(standby.output, "passive stand-by")
        assert f"held by PID {first.pid}" in line and "waiting up to 5s" in line
        assert "listening on" not in standby.output
        first.stop()
        new_port = standby.wait_listening()
        assert read(new_port) == RECORD
        assert len(lines_with(standby.output, "passive stand-by")) == 1
        assert standby.alarms() == []
    finally:
        first.kill()
        standby.stop()


def test_no_stale_lock_after_sigkill(tmp_path):
    """(c) The kernel drops the lock of a killed daemon: the next starts at once."""
    data = tmp_path / "data"
    first = Twistd(data)
    write(first.start())
    first.kill()
    second = Twistd(data)
    try:
        assert read(second.start()) == RECORD
        assert "held by" not in second.output
        assert json.loads((data / ".lock").read_text())["pid"] == second.pid
    finally:
        second.stop()


def test_foreign_directory_is_refused_and_untouched(tmp_path):
    """(d) A directory laid out by upstream ReductStore: exit non-zero with
    one line, nothing changed, not even a .lock created."""
    data = upstream_like(tmp_path / "upstream")
    before = snapshot(data)
    code, output, _ = run_to_exit(data)
    assert code != 0
    [line] = lines_with(output, "not a reduct-twisted data directory")
    assert line.startswith(f"reduct: {data} ") and "Traceback" not in output
    assert snapshot(data) == before
    assert not (data / ".lock").exists()


def test_newer_marker_is_refused(tmp_path):
    """A marker of a newer format version: one line, nothing changed."""
    data = tmp_path / "data"
    data.mkdir()
    (data / ".reduct-twisted").write_text('{"format": "reduct-twisted", "version": 9}\n')
    before = snapshot(data)
    code, output, _ = run_to_exit(data)
    assert code != 0
    assert len(lines_with(output, "newer reduct-twisted")) == 1, output
    assert snapshot(data) == before


def test_directory_written_before_the_marker_opens_and_gets_it(tmp_path):
    """(e) A data directory of an earlier version (our layout, no marker)
    opens with its records and is marked."""
    data = tmp_path / "data"
    engine = StorageEngine(str(data), Clock())
    engine.open()
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, RECORD)
    engine.close()
    os.remove(data / ".reduct-twisted")
    daemon = Twistd(data)
    try:
        assert read(daemon.start()) == RECORD
        assert re.fullmatch(r'\{"format": "reduct-twisted", "version": 3\}\n',
                            (data / ".reduct-twisted").read_text())
    finally:
        daemon.stop()
