"""
Replication between two real ``twistd -n reduct`` daemons on loopback
(issue #7): a bucket replicated with a ``when`` filter while the
destination, then the source, is SIGKILLed and restarted in the middle of
the stream.  The destination must end with exactly the records that match,
byte-exact (content, content type, labels), none missing and none twice.

The destination listens on a fixed port (it is the replication's
``dst_host``, which must stay valid across its restarts); the source on a
port the kernel picks.
"""

import json
import socket
import time

import pytest

from tests.integration.daemon import Connection, Twistd, content_type_of, payload

pytestmark = pytest.mark.slow

KIB, MIB = 1 << 10, 1 << 20
TS0 = 1_700_000_000_000_000
ENTRIES = ("cam", "log")
#: Seconds the whole stream may take to drain at the end.
DRAIN_DEADLINE = 40.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_on(daemon, port: int) -> None:
    # The daemon listens on tcp:0 (the helper's) and on ``port``: wait for both.
    daemon.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the destination did not listen"
            time.sleep(0.02)


def _size(i: int) -> int:
    # Mostly small, every 7th beyond 1 MiB (its own block file), a few empty.
    if i % 7 == 3:
        return MIB + 512 * KIB + i * 997
    if i % 11 == 5:
        return 0
    return (i * 7919) % (48 * KIB)


def _kind(i: int) -> str:
    return "keep" if i % 3 else "drop"


class Workload:
    """Writes records to the source and remembers the ones that must arrive."""

    def __init__(self):
        self.next = 0
        self.expected = {entry: {} for entry in ENTRIES}

    def write(self, conn, count: int) -> None:
        for _ in range(count):
            i = self.next
            self.next += 1
            entry = ENTRIES[i % len(ENTRIES)]
            ts = TS0 + i
            data = payload("src", entry, ts, _size(i))
            labels = {"kind": _kind(i), "n": str(i)}
            headers = [("content-type", content_type_of("src", entry, ts))]
            headers += [(f"x-reduct-label-{k}", v) for k, v in labels.items()]
            resp = conn.request("POST", f"/api/v1/b/src/{entry}?ts={ts}", data, headers)
            assert resp.status == 200, resp
            if labels["kind"] == "keep":
                self.expected[entry][ts] = (data, content_type_of("src", entry, ts), labels)


def _json(conn, method, path, body=b""):
    resp = conn.request(method, path, body)
    assert resp.status == 200, resp
    return json.loads(resp.body) if resp.body else None


def _pending(conn) -> int:
    return _json(conn, "GET", "/api/v1/replications/r")["info"]["pending_records"]


def test_kill_destination_then_source_mid_stream(tmp_path):
    """SIGKILL of either side loses nothing and duplicates nothing."""
    dst_port = _free_port()

    def new_dst():
        return Twistd(tmp_path / "dst", "--listen", f"tcp:{dst_port}:interface=127.0.0.1")

    def new_src():
        return Twistd(tmp_path / "src", environ={"RS_REPLICATION_TIMEOUT": "2"})

    dst, src = new_dst(), new_src()
    work = Workload()
    src_conn = dst_conn = None
    try:
        _start_on(dst, dst_port)
        src_conn = Connection(src.start())
        dst_conn = Connection(dst_port)
        _json(dst_conn, "POST", "/api/v1/b/dst")
        _json(src_conn, "POST", "/api/v1/b/src")
        settings = {"src_bucket": "src", "dst_bucket": "dst",
                    "dst_host": f"http://127.0.0.1:{dst_port}",
                    "when": {"&kind": {"$eq": "keep"}}}
        _json(src_conn, "POST", "/api/v1/replications/r", json.dumps(settings).encode())

        # 1. Stream, and kill the destination without waiting for it to catch up.
        work.write(src_conn, 40)
        dst.kill()
        dst_conn.close()
        # 2. The source keeps taking writes while its destination is gone.
        work.write(src_conn, 30)
        detail = _json(src_conn, "GET", "/api/v1/replications/r")
        assert detail["info"]["pending_records"] > 0
        # 3. The destination comes back; the source is in its back-off: kill
        #    the source while records are still waiting.
        dst = new_dst()
        _start_on(dst, dst_port)
        work.write(src_conn, 20)
        for _ in range(100):  # until the source is seen with records in flight
            work.write(src_conn, 1)
            before_kill = _json(src_conn, "GET", "/api/v1/replications/r")
            if before_kill["info"]["pending_records"]:
                break
        src.kill()
        src_conn.close()
        assert before_kill["info"]["pending_records"] > 0
        # The outage of the destination showed as connection errors.
        assert "-3" in before_kill["diagnostics"]["hourly"]["errors"]
        # 4. The source comes back and the stream goes on.
        src = new_src()
        src_conn = Connection(src.start())
        work.write(src_conn, 30)

        deadline = time.monotonic() + DRAIN_DEADLINE
        while _pending(src_conn):
            assert time.monotonic() < deadline, "replication did not drain in time"
            time.sleep(0.1)

        dst_conn = Connection(dst_port)
        info = _json(dst_conn, "GET", "/api/v1/b/dst")
        counts = {e["name"]: e["record_count"] for e in info["entries"]}
        assert counts == {entry: len(work.expected[entry]) for entry in ENTRIES}
        for entry, records in work.expected.items():
            for ts, (data, ctype, labels) in records.items():
                resp = dst_conn.request("GET", f"/api/v1/b/dst/{entry}?ts={ts}")
                assert resp.status == 200, (entry, ts, resp)
                assert resp.body == data, (entry, ts)
                assert resp.header("content-type") == ctype
                got = {k[len(b"x-reduct-label-"):].decode(): v.decode()
                       for k, v in resp.headers if k.startswith(b"x-reduct-label-")}
                assert got == labels
        detail = _json(src_conn, "GET", "/api/v1/replications/r")
        assert detail["info"]["is_active"] is True
        # Records resent after the kills were answered 409 and taken as
        # delivered, not errored (diagnostics restart with the process).
        assert set(detail["diagnostics"]["hourly"]["errors"]) <= {"-2", "-3"}
        assert src.alarms() == [] and dst.alarms() == []
    finally:
        for conn in (src_conn, dst_conn):
            if conn is not None:
                conn.close()
        src.kill()
        dst.kill()


def test_orderly_stop_keeps_pending_records(tmp_path):
    """SIGTERM with a destination down stops at once; the records wait for the next run."""
    dst_port = _free_port()
    src = Twistd(tmp_path / "src")
    dst = Twistd(tmp_path / "dst", "--listen", f"tcp:{dst_port}:interface=127.0.0.1")
    work = Workload()
    conn = None
    try:
        conn = Connection(src.start())
        _json(conn, "POST", "/api/v1/b/src")
        settings = {"src_bucket": "src", "dst_bucket": "dst",
                    "dst_host": f"http://127.0.0.1:{dst_port}"}
        _json(conn, "POST", "/api/v1/replications/r", json.dumps(settings).encode())
        work.write(conn, 12)
        assert _pending(conn) == 12
        conn.close()
        started = time.monotonic()
        log = src.stop()
        assert time.monotonic() - started < 10
        assert "Traceback" not in log

        src = Twistd(tmp_path / "src")
        conn = Connection(src.start())
        assert _pending(conn) == 12
        _start_on(dst, dst_port)
        dst_conn = Connection(dst_port)
        _json(dst_conn, "POST", "/api/v1/b/dst")
        deadline = time.monotonic() + DRAIN_DEADLINE
        while _pending(conn):
            assert time.monotonic() < deadline, "replication did not drain in time"
            time.sleep(0.1)
        info = _json(dst_conn, "GET", "/api/v1/b/dst")
        dst_conn.close()
        assert sum(e["record_count"] for e in info["entries"]) == 12
    finally:
        if conn is not None:
            conn.close()
        src.kill()
        dst.kill()
