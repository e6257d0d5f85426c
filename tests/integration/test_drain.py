"""
SIGTERM with requests in flight (issue #12, item 3), against the real
``twistd -n reduct`` process: uploads in progress finish and get their
answer, new requests get 503, new connections are refused, and what is
still running after ``--shutdown-timeout`` is cut and leaves no record.
"""

import json
import os
import signal
import socket
import threading
import time

import pytest

from tests.integration.daemon import Closed, Connection, Twistd

pytestmark = pytest.mark.slow

API = "/api/v1"
MB = 1 << 20


class Upload(threading.Thread):
    """
    One record upload sent ``pieces`` parts ``pause`` seconds apart (Content-Length
    framing) on its own connection; ``response`` or ``error`` once it ended.
    """

    def __init__(self, port, target, body, pieces, pause):
        super().__init__(daemon=True)
        self.connection = Connection(port, timeout=60)
        self.connection.connect()
        self.args = (target, body, pieces, pause)
        self.headers = ()
        self.response = self.error = None

    def run(self):
        target, body, pieces, pause = self.args
        try:
            self.response = self.connection.request(
                "POST", target, body, self.headers, pieces=pieces, pause=pause
            )
        except (Closed, OSError) as exc:
            self.error = exc
        finally:
            self.connection.close()


def wait_exit(daemon, timeout=30):
    """The exit status of the daemon, which must end within ``timeout`` seconds."""
    code = daemon.proc.wait(timeout)
    daemon._reader.join(timeout)
    return code


def send_partial_request(port):
    """
    A keep-alive connection that made one request and has sent the first
    lines of a second one (so it is not idle when the daemon starts draining).
    """
    conn = Connection(port)
    assert conn.request("GET", f"{API}/info").status == 200
    conn.sock.sendall(f"GET {API}/info HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
    return conn


def test_upload_in_flight_finishes_after_sigterm(tmp_path):
    """
    An 8 MB upload sent at 2 MB/s, SIGTERM one second in: the upload gets
    its 200, a request completed meanwhile on another keep-alive connection
    gets 503 with x-reduct-error, an idle keep-alive connection is closed, a
    new connection is refused, the daemon exits 0, and after a restart the
    record reads back byte-exact.
    """
    data_path = tmp_path / "data"
    body = os.urandom(8 * MB)
    daemon = Twistd(data_path)
    port = daemon.start()
    try:
        with Connection(port) as conn:
            assert conn.request("POST", f"{API}/b/drain").status == 200
        partial = send_partial_request(port)
        idle = Connection(port)
        assert idle.request("GET", f"{API}/info").status == 200
        time.sleep(0.2)  # the daemon has read the partial request's lines

        upload = Upload(port, f"{API}/b/drain/e?ts=1", body, pieces=32, pause=0.125)
        upload.start()
        time.sleep(1.0)
        os.kill(daemon.pid, signal.SIGTERM)
        stopped_at = time.monotonic()
        time.sleep(0.5)

        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        try:
            assert idle.sock.recv(1) == b""  # closed by the daemon
        except ConnectionResetError:
            pass
        partial.sock.sendall(b"\r\n")
        status, _, headers = partial._head()
        refused = partial._finish(b"GET", status, _, headers)
        assert refused.status == 503, refused
        assert refused.header("x-reduct-error") == "Server is shutting down"
        assert refused.header("connection") == "close"
        assert json.loads(refused.body) == {"detail": "Server is shutting down"}
        assert daemon.alive()  # still draining the upload

        upload.join(30)
        assert upload.error is None, upload.error
        assert upload.response.status == 200, upload.response
        assert wait_exit(daemon) == 0, daemon.output
        assert time.monotonic() - stopped_at < 8
        assert "Server Shut Down." in daemon.output
        assert daemon.alarms() == []
        partial.close()
        idle.close()
    finally:
        daemon.kill()

    [read], _ = read_after_restart(data_path, ["e?ts=1"])
    assert read.status == 200
    assert read.body == body


def read_after_restart(data_path, targets):
    """
    Start a new daemon on ``data_path``, GET each ``/b/drain/<target>`` on one
    connection, stop it cleanly.

    :return: the responses and the daemon's output.
    """
    again = Twistd(data_path)
    port = again.start()
    try:
        with Connection(port) as conn:
            reads = [conn.request("GET", f"{API}/b/drain/{target}") for target in targets]
        again.stop()
        return reads, again.output
    finally:
        again.kill()


class SlowDownload(threading.Thread):
    """Reads the answer to a GET of ``target`` at ``rate`` bytes a second, into ``data``."""

    def __init__(self, port, target, rate):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.rate = rate
        self.data = b""
        self.started = threading.Event()

    def run(self):
        began = time.monotonic()
        try:
            while True:
                chunk = self.sock.recv(256 << 10)
                if not chunk:
                    break
                self.data += chunk
                self.started.set()
                ahead = began + len(self.data) / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        except OSError:
            pass
        finally:
            self.started.set()
            self.sock.close()


def test_batched_write_and_download_in_flight_finish(tmp_path):
    """
    A batched write whose body is still arriving and a 16 MB download read
    slowly both complete after SIGTERM: the batch gets its 200 and is
    there after a restart, the download gets every byte, the daemon exits 0.
    """
    data_path = tmp_path / "data"
    big = os.urandom(16 * MB)
    records = [(10, os.urandom(MB)), (20, os.urandom(MB))]
    daemon = Twistd(data_path)
    port = daemon.start()
    try:
        with Connection(port) as conn:
            assert conn.request("POST", f"{API}/b/drain").status == 200
            assert conn.request("POST", f"{API}/b/drain/big?ts=1", big).status == 200
        download = SlowDownload(port, f"{API}/b/drain/big?ts=1", rate=8 * MB)
        download.start()
        assert download.started.wait(10)
        headers = [(f"x-reduct-time-{ts}", f"{len(body)},application/octet-stream")
                   for ts, body in records]
        batch = Upload(port, f"{API}/b/drain/batch/batch", b"".join(b for _, b in records),
                       pieces=20, pause=0.1)
        batch.headers = headers
        batch.start()
        time.sleep(0.5)
        os.kill(daemon.pid, signal.SIGTERM)
        batch.join(30)
        download.join(30)
        assert batch.error is None, batch.error
        assert batch.response.status == 200, batch.response
        assert batch.response.header("connection") == "close"
        head, _, body = download.data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
        assert len(body) == len(big) and body == big, (len(body), daemon.output)
        assert wait_exit(daemon) == 0, daemon.output
        assert "waiting up to 10.0s for 2 request(s) in progress" in daemon.output
        assert "aborting" not in daemon.output
        assert daemon.alarms() == []
    finally:
        daemon.kill()

    reads, _ = read_after_restart(data_path, [f"batch?ts={ts}" for ts, _ in records])
    for read, (ts, body) in zip(reads, records):
        assert (read.status, read.body == body) == (200, True), ts


def test_upload_cut_after_the_shutdown_timeout(tmp_path):
    """
    With --shutdown-timeout 1 an upload that would take 5 s is cut about
    one second after SIGTERM: no 200, exit 0, and no record after a restart.
    """
    data_path = tmp_path / "data"
    daemon = Twistd(data_path, "--shutdown-timeout", "1")
    port = daemon.start()
    try:
        with Connection(port) as conn:
            assert conn.request("POST", f"{API}/b/drain").status == 200
        upload = Upload(port, f"{API}/b/drain/e?ts=1", os.urandom(5 * MB),
                        pieces=50, pause=0.1)
        upload.start()
        time.sleep(1.0)
        os.kill(daemon.pid, signal.SIGTERM)
        stopped_at = time.monotonic()
        assert wait_exit(daemon) == 0, daemon.output
        took = time.monotonic() - stopped_at
        assert 0.9 < took < 6, took
        upload.join(30)
        assert upload.response is None or upload.response.status != 200, upload.response
        assert "aborting 1 connection(s)" in daemon.output
        assert daemon.alarms() == []
    finally:
        daemon.kill()

    [read], output = read_after_restart(data_path, ["e?ts=1"])
    assert read.status == 404, read
    assert "unclean" not in output.lower()


def test_waiting_continuous_read_ends_at_sigterm(tmp_path):
    """
    A batched read of a continuous query waiting (up to 30 s) for a new
    record is answered 204 at SIGTERM, and the daemon stops at once.
    """
    daemon = Twistd(tmp_path / "data", "--io-batch-records-timeout", "30")
    port = daemon.start()
    try:
        with Connection(port) as conn:
            assert conn.request("POST", f"{API}/b/live").status == 200
            assert conn.request("POST", f"{API}/b/live/e?ts=1", b"x").status == 200
            created = conn.request("GET", f"{API}/b/live/e/q?continuous=true")
            qid = json.loads(created.body)["id"]
            assert conn.request("GET", f"{API}/b/live/e/batch?q={qid}").status == 200
        result = {}

        def poll():
            with Connection(port, timeout=60) as conn:
                started = time.monotonic()
                result["response"] = conn.request("GET", f"{API}/b/live/e/batch?q={qid}")
                result["took"] = time.monotonic() - started

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        time.sleep(1.0)
        assert poller.is_alive()  # waiting for a record
        os.kill(daemon.pid, signal.SIGTERM)
        stopped_at = time.monotonic()
        assert wait_exit(daemon) == 0, daemon.output
        assert time.monotonic() - stopped_at < 8  # not the 10 s shutdown_timeout
        poller.join(10)
        assert result["response"].status == 204, result["response"]
        assert result["took"] < 8
    finally:
        daemon.kill()
