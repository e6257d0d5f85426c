"""
systemd integration with the real ``twistd -n reduct`` process and real
sockets: the notify datagrams (``READY=1`` once the port answers, repeated
``WATCHDOG=1``, ``STOPPING=1`` at SIGTERM) received on an ``AF_UNIX``
datagram socket, and socket activation (a listening socket passed as fd 3
with ``LISTEN_PID``/``LISTEN_FDS``, with and without ``LISTEN_FDNAMES``).
The unit files are checked by ``systemd-analyze`` in ``test_systemd_units.py``.
"""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.daemon import Connection, Twistd
from tests.integration.test_twistd import START_TIMEOUT, STOP_TIMEOUT, twistd_command

pytestmark = pytest.mark.slow


class Notifications:
    """systemd's side of NOTIFY_SOCKET: a datagram socket collecting what arrives."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(START_TIMEOUT)

    def next(self, timeout=START_TIMEOUT) -> dict:
        """The next datagram as ``{KEY: value}`` (its arrival time under ``_at``)."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        fields = dict(line.split("=", 1) for line in data.split("\n"))
        fields["_at"] = time.monotonic()
        return fields

    def until(self, key, timeout=START_TIMEOUT) -> list:
        """Every datagram up to and including the first with ``key``."""
        seen = []
        deadline = time.monotonic() + timeout
        while not seen or key not in seen[-1]:
            seen.append(self.next(max(0.01, deadline - time.monotonic())))
        return seen

    def close(self):
        self.sock.close()


@pytest.fixture
def notifications(tmp_path):
    n = Notifications(tmp_path / "notify")
    yield n
    n.close()


def alive_answers(port) -> bool:
    conn = Connection(port, timeout=5)
    try:
        return conn.request("HEAD", "/api/v1/alive").status == 200
    finally:
        conn.close()


def test_ready_watchdog_stopping(tmp_path, notifications):
    """READY=1 comes once the port answers, WATCHDOG=1 every WATCHDOG_USEC/2,
    STOPPING=1 as soon as SIGTERM arrives, before the daemon exits."""
    daemon = Twistd(tmp_path / "data", environ={
        "NOTIFY_SOCKET": notifications.path, "WATCHDOG_USEC": "300000",
    })
    daemon.spawn()
    try:
        before = notifications.until("READY")
        ready = before[-1]
        # The moment READY=1 arrives the port answers: it was announced with it.
        port = daemon.wait_listening()
        assert alive_answers(port)
        assert ready["READY"] == "1"
        assert ready["STATUS"] == f"Listening on 127.0.0.1:{port}"
        assert ready["MAINPID"] == str(daemon.pid)
        assert all(set(d) == {"WATCHDOG", "_at"} for d in before[:-1]), before
        # The watchdog repeats, about every 0.15 s.
        pings = [notifications.next(5) for _ in range(6)]
        assert all(p == {"WATCHDOG": "1", "_at": p["_at"]} for p in pings), pings
        gaps = [b["_at"] - a["_at"] for a, b in zip(pings, pings[1:])]
        assert 0.05 < sum(gaps) / len(gaps) < 0.6, gaps
        os.kill(daemon.pid, signal.SIGTERM)
        stopping = notifications.until("STOPPING", timeout=STOP_TIMEOUT)[-1]
        assert stopping["STOPPING"] == "1" and stopping["STATUS"].startswith("Stopping")
        daemon.proc.wait(STOP_TIMEOUT)
        assert daemon.proc.returncode == 0, daemon.output
        assert not daemon.alarms(), daemon.alarms()
    finally:
        daemon.kill()


def test_no_watchdog_of_another_process(tmp_path, notifications):
    """WATCHDOG_PID naming another process: READY=1, but no watchdog pings."""
    daemon = Twistd(tmp_path / "data", environ={
        "NOTIFY_SOCKET": notifications.path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1",
    })
    daemon.spawn()
    try:
        assert [set(d) for d in notifications.until("READY")] == [{"READY", "STATUS",
                                                                    "MAINPID", "_at"}]
        with pytest.raises(socket.timeout):
            notifications.next(0.5)
    finally:
        daemon.stop()


class ActivatedTwistd(Twistd):
    """
    ``twistd -n reduct`` given a listening socket as fd 3, the way systemd
    passes it: ``sh`` sets ``LISTEN_PID`` to its own pid, moves the socket
    (its stdin) to fd 3 and execs twistd, which keeps that pid.
    """

    def __init__(self, data_path, sock, *extra, environ=None):
        super().__init__(data_path, *extra, environ=environ)
        self.sock = sock

    def spawn(self) -> None:
        argv = ["sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$@" 3<&0 0</dev/null', "sh",
                *twistd_command(), "-n", "--pidfile=", "reduct", "--data-path", self.data_path,
                *self.extra]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RS_", "LISTEN_", "NOTIFY_", "WATCHDOG_"))}
        env.update(self.environ)
        env["LISTEN_FDS"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        self.proc = subprocess.Popen(
            argv, stdin=self.sock.fileno(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, cwd=os.path.dirname(self.data_path.rstrip("/")),
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()


@pytest.mark.parametrize(
    "names, listen, logged",
    [
        (None, [], "systemd:index=0"),  # the default: every passed socket
        (None, ["--listen", "systemd:domain=INET:index=0"], "systemd:domain=INET:index=0"),
        ("web", ["--listen", "systemd:name=web"], "systemd:name=web"),
        ("web", ["--listen", "systemd:domain=INET:index=0"], "systemd:domain=INET:index=0"),
        ("web", [], "systemd:index=0"),
    ],
)
def test_socket_activation(tmp_path, notifications, names, listen, logged):
    """The daemon serves on the socket it is given, with or without LISTEN_FDNAMES,
    by index or by name, and is READY on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    environ = {"NOTIFY_SOCKET": notifications.path}
    if names:
        environ["LISTEN_FDNAMES"] = names
    # RS_PORT would be used without activation: it must lose to the passed socket.
    environ["RS_PORT"] = "1"
    daemon = ActivatedTwistd(tmp_path / "data", sock, *listen, environ=environ)
    daemon.spawn()
    sock.close()  # the daemon has the only copy now
    try:
        assert daemon.wait_listening() == port
        assert f"http listening on 127.0.0.1:{port} ({logged})" in daemon.output
        ready = notifications.until("READY")[-1]
        assert ready["STATUS"] == f"Listening on 127.0.0.1:{port}"
        conn = Connection(port)
        assert conn.request("POST", "/api/v1/b/bucket").status == 200
        put = conn.request("POST", "/api/v1/b/bucket/entry?ts=1", b"activated",
                           [("content-type", "text/plain")])
        assert put.status == 200, put
        got = conn.request("GET", "/api/v1/b/bucket/entry?ts=1")
        assert (got.status, got.body) == (200, b"activated")
        conn.close()
        daemon.stop()
        # Stopped: the socket is closed, nothing answers on it any more.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        daemon.kill()


def test_activation_name_not_passed(tmp_path):
    """systemd:name= naming no passed socket: exit 1 with one line, no traceback."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    daemon = ActivatedTwistd(tmp_path / "data", sock, "--listen", "systemd:name=api",
                             environ={"LISTEN_FDNAMES": "web"})
    daemon.spawn()
    sock.close()
    try:
        assert daemon.proc.wait(START_TIMEOUT) == 1
        daemon._reader.join(STOP_TIMEOUT)
        assert "name=api: 0 socket(s) have that name (passed: web)" in daemon.output
        assert "Traceback" not in daemon.output
    finally:
        daemon.kill()


def test_socket_activation_with_tls(tmp_path, certificate):
    """With RS_CERT_PATH/RS_CERT_KEY_PATH the passed socket serves HTTPS."""
    import ssl

    cert, key = certificate
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    daemon = ActivatedTwistd(tmp_path / "data", sock,
                             environ={"RS_CERT_PATH": cert, "RS_CERT_KEY_PATH": key})
    daemon.spawn()
    sock.close()
    try:
        assert daemon.wait_listening() == port
        assert f"https listening on 127.0.0.1:{port} (systemd:index=0:privateKey=" in daemon.output
        context = ssl.create_default_context(cafile=cert)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /api/v1/alive HTTP/1.1\r\nHost: localhost\r\n"
                            b"Connection: close\r\n\r\n")
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        # Plain HTTP on the same socket gets no answer of ours.
        conn = Connection(port, timeout=5)
        with pytest.raises(Exception):
            conn.request("GET", "/api/v1/alive")
        conn.close()
        daemon.stop()
    finally:
        daemon.kill()


@pytest.mark.parametrize(
    "fdname, listen",
    [(None, []), ("web", ["--listen", "systemd:name=web"])],
)
def test_systemd_socket_activate(tmp_path, fdname, listen):
    """
    systemd's own activator, ``systemd-socket-activate`` (which sets no
    LISTEN_FDNAMES without ``--fdname``), binds the port, waits for the first
    connection and starts the daemon with the socket: that first request,
    queued meanwhile, and the next ones are answered.
    """
    import shutil

    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        message = "systemd-socket-activate not installed (Debian's systemd package)"
        if os.environ.get("REDUCT_TWISTED_CI"):
            pytest.fail(message)
        pytest.skip(message)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RS_", "LISTEN_", "NOTIFY_", "WATCHDOG_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    # The activator passes on only the variables it is told to (-E).
    argv = [tool, "-l", f"127.0.0.1:{port}", *([f"--fdname={fdname}"] if fdname else []),
            "-E", f"PYTHONPATH={env['PYTHONPATH']}",
            *twistd_command(), "-n", "--pidfile=", "reduct",
            "--data-path", str(tmp_path / "data"), *listen]
    log = open(tmp_path / "daemon.log", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=str(tmp_path))
    try:
        conn = None
        deadline = time.monotonic() + START_TIMEOUT
        while conn is None:  # until the activator listens
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT)
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        conn.sendall(b"GET /api/v1/alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        conn.close()
        assert answer.startswith(b"HTTP/1.1 200 "), (answer, (tmp_path / "daemon.log").read_text())
        again = Connection(port)
        assert again.request("POST", "/api/v1/b/activated").status == 200
        again.close()
        # twistd replaced the activator (exec): the pid is the daemon's.
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    logged = "systemd:name=web" if fdname else "systemd:index=0"
    assert f"http listening on 127.0.0.1:{port} ({logged})" in text, text
    assert "Server Shut Down." in text and "Traceback" not in text, text
