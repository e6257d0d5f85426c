"""
Helpers for the durability tests of issue #5 (``test_crash``, ``test_enospc``,
``test_fuzz``): a real ``twistd -n reduct`` process driven synchronously, so
it can be SIGKILLed at any instant; a minimal raw HTTP/1.1 client; a strict
parser for raw response bytes; deterministic record payloads.

Everything here is synchronous (blocking sockets, threads): the tests that
use it run their clients in the test process and the daemon in another.
"""

import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

from tests.conftest import REPO_ROOT
from tests.integration.test_twistd import LISTENING, START_TIMEOUT, STOP_TIMEOUT, twistd_command

U64_MAX = 2**64 - 1

#: Log text that means the daemon hit an error it did not handle.
LOG_ALARMS = ("Traceback", "Unhandled", "#critical")


class Twistd:
    """
    One ``twistd -n reduct`` process on ``data_path``, listening on a port
    the kernel picks on 127.0.0.1.

    :param extra: more ``twistd reduct`` options.
    :param environ: ``RS_*`` variables for the daemon (all others are removed).
    """

    def __init__(self, data_path, *extra, environ=None):
        self.data_path = str(data_path)
        self.extra = list(extra)
        self.environ = dict(environ or {})
        self.proc = None
        self.port = None
        self._chunks = []
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._reader = None

    # -- lifecycle ---------------------------------------------------------

    def spawn(self) -> None:
        """Start the process (do not wait for it to listen)."""
        argv = twistd_command() + [
            "-n", "--pidfile=", "reduct", "--data-path", self.data_path,
            "--listen", "tcp:0:interface=127.0.0.1", *self.extra,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RS_")}
        env.update(self.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, cwd=os.path.dirname(self.data_path.rstrip("/")),
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        fd = self.proc.stdout.fileno()
        seen = b""
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            with self._lock:
                self._chunks.append(data)
            if not self._listening.is_set():
                seen += data
                match = LISTENING.search(seen)
                if match:
                    self.port = int(match.group(2))
                    self._listening.set()
        self._listening.set()  # the process ended: stop waiting
        self.proc.stdout.close()

    def start(self, timeout: float = START_TIMEOUT) -> int:
        """Start the process and wait for its 'listening on' line; return the port."""
        self.spawn()
        return self.wait_listening(timeout)

    def wait_listening(self, timeout: float = START_TIMEOUT) -> int:
        self._listening.wait(timeout)
        if self.port is None:
            self.kill()
            raise AssertionError("twistd did not log 'listening on':\n" + self.output)
        return self.port

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> str:
        with self._lock:
            return b"".join(self._chunks).decode("utf-8", "replace")

    def log_bytes(self) -> bytes:
        """The raw log so far; byte offsets into it stay valid as it grows."""
        with self._lock:
            return b"".join(self._chunks)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process (by its pid) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)

    def stop(self) -> str:
        """
        SIGTERM and expect an orderly shutdown (exit 0 or by SIGTERM, "Server
        Shut Down." logged); return the whole log.  SIGKILL if it hangs.
        """
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("twistd did not stop on SIGTERM:\n" + self.output)
        self._reader.join(STOP_TIMEOUT)
        text = self.output
        assert code in (0, -signal.SIGTERM), f"exit {code}\n{text}"
        assert "Server Shut Down." in text, text
        return text

    def alarms(self) -> list:
        """Log lines (with the lines after them) that show an unhandled error."""
        lines = self.output.splitlines()
        return [
            "\n".join(lines[i : i + 12])
            for i, line in enumerate(lines)
            if any(alarm in line for alarm in LOG_ALARMS)
        ]


# -- HTTP ---------------------------------------------------------------------


class Closed(Exception):
    """The server closed the connection (or it broke) before a full response."""


class Response:
    """A parsed HTTP response: status, reason, header pairs (names lowercased), body."""

    def __init__(self, status: int, reason: bytes, headers: list, body: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str, default=None):
        """The last value of header ``name`` (str), or ``default``."""
        name_b = name.lower().encode("ascii")
        found = default
        for key, value in self.headers:
            if key == name_b:
                found = value.decode("latin-1")
        return found

    def header_values(self, name: str) -> list:
        name_b = name.lower().encode("ascii")
        return [v.decode("latin-1") for k, v in self.headers if k == name_b]

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}>"


class Connection:
    """
    A keep-alive HTTP/1.1 client connection to 127.0.0.1:``port`` over a
    plain socket (reconnects after the server closed it).  Raises
    :class:`Closed` (or ``OSError``) when the connection breaks mid-exchange.
    """

    def __init__(self, port: int, timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self.sock = None
        self._buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._buf = b""

    def connect(self) -> None:
        """Connect now unless connected (``request`` does it when needed)."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise Closed("connection closed by the server")
        self._buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            if len(self._buf) > 1 << 20:
                raise AssertionError("response line too long")
            self._fill()
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _head(self):
        line = self._line()
        match = re.fullmatch(rb"HTTP/1\.[01] (\d{3}) ?(.*)", line)
        if not match:
            raise AssertionError(f"malformed status line {line!r}")
        headers = []
        while True:
            line = self._line()
            if not line:
                break
            name, sep, value = line.partition(b":")
            if not sep:
                raise AssertionError(f"malformed header line {line!r}")
            headers.append((name.strip().lower(), value.strip()))
        return int(match.group(1)), match.group(2), headers

    def _body(self, method: bytes, status: int, headers: list) -> bytes:
        values = dict(headers)
        if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        if values.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return body
                body += self._exactly(size)
                self._exactly(2)
        if b"content-length" in values:
            return self._exactly(int(values[b"content-length"]))
        while True:  # until close
            try:
                self._fill()
            except Closed:
                data, self._buf = self._buf, b""
                self.close()
                return data

    def request(self, method: str, target: str, body=b"", headers=(), *, pieces=1,
                pause=0.0, expect=False, chunked=False) -> Response:
        """
        Send one request and read its response.

        :param pieces: send the body in this many parts, ``pause`` seconds apart.
        :param expect: send ``Expect: 100-continue`` and wait for the interim
            response before the body.
        :param chunked: send the body with ``Transfer-Encoding: chunked``.
        """
        self.connect()
        try:
            return self._request(method.encode("ascii"), target.encode("utf-8"), body,
                                 headers, pieces, pause, expect, chunked)
        except BaseException:
            self.close()
            raise

    def _request(self, method, target, body, headers, pieces, pause, expect, chunked):
        head = [b"%s %s HTTP/1.1" % (method, target), b"Host: 127.0.0.1"]
        if chunked:
            head.append(b"Transfer-Encoding: chunked")
        elif body or method in (b"POST", b"PUT"):
            head.append(b"Content-Length: %d" % len(body))
        if expect:
            head.append(b"Expect: 100-continue")
        for name, value in headers:
            head.append(_b(name) + b": " + _b(value))
        data = b"\r\n".join(head) + b"\r\n\r\n"
        if expect:
            self.sock.sendall(data)
            status, reason, hdrs = self._head()
            if status != 100:
                # Refused before the body: this is the final answer.
                return self._finish(method, status, reason, hdrs)
            data = b""
        parts = _split(body, pieces)
        if chunked:
            parts = [b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p] + [b"0\r\n\r\n"]
        for i, part in enumerate(parts):
            if i and pause:
                time.sleep(pause)
            self.sock.sendall(data + part)
            data = b""
        if data:
            self.sock.sendall(data)
        while True:
            status, reason, hdrs = self._head()
            if status != 100:
                return self._finish(method, status, reason, hdrs)

    def _finish(self, method, status, reason, headers) -> Response:
        body = self._body(method, status, headers)
        response = Response(status, reason, headers, body)
        if (response.header("connection") or "").lower() == "close":
            self.close()
        return response

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _b(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


def _split(body: bytes, pieces: int) -> list:
    if pieces <= 1 or len(body) < pieces:
        return [body]
    step = -(-len(body) // pieces)
    return [body[i : i + step] for i in range(0, len(body), step)]


# -- strict parsing of raw response bytes ---------------------------------------

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5]\d\d) [\x20-\x7e]*")
_HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e\x80-\xff\t]*?)[ \t]*")


class Malformed(AssertionError):
    """Response bytes that are not well-formed HTTP/1.1."""


def parse_responses(data: bytes, methods=()) -> list:
    """
    Split what a server sent on one connection into responses, strictly.

    :param methods: the request methods in order, for HEAD framing (a
        response to a HEAD has no body); missing ones count as GET.
    :return: ``[(status, headers, body)]`` with header names lowercased;
        1xx interim responses are included.  A last response cut off in its
        body (the connection was closed) is reported as status ``-1``.
    :raises Malformed: anything that does not parse.
    """
    responses = []
    pos = 0
    final = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            raise Malformed(f"response head not terminated: {data[pos:pos + 300]!r}")
        lines = data[pos:end].split(b"\r\n")
        match = _STATUS_LINE.fullmatch(lines[0])
        if not match:
            raise Malformed(f"bad status line {lines[0][:200]!r}")
        status = int(match.group(1))
        headers = []
        for line in lines[1:]:
            hm = _HEADER_LINE.fullmatch(line)
            if not hm:
                raise Malformed(f"bad header line {line[:200]!r} in {lines[0]!r}")
            headers.append((hm.group(1).lower(), hm.group(2)))
        pos = end + 4
        names = [n for n, _ in headers]
        lengths = [v for n, v in headers if n == b"content-length"]
        if len(set(lengths)) > 1:
            raise Malformed(f"conflicting content-length {lengths!r}")
        if 100 <= status < 200:
            responses.append((status, headers, b""))
            continue
        method = methods[final] if final < len(methods) else b"GET"
        final += 1
        if method == b"HEAD" or status in (204, 304):
            responses.append((status, headers, b""))
            continue
        if b"transfer-encoding" in names:
            te = [v for n, v in headers if n == b"transfer-encoding"]
            if te != [b"chunked"]:
                raise Malformed(f"transfer-encoding {te!r}")
            body = b""
            while True:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    responses.append((-1, headers, body))
                    return responses
                try:
                    size = int(data[pos:eol].split(b";")[0], 16)
                except ValueError:
                    raise Malformed(f"bad chunk size {data[pos:eol][:50]!r}")
                pos = eol + 2
                if size == 0:
                    trailer_end = data.find(b"\r\n", pos)
                    if trailer_end != pos:
                        raise Malformed("chunked trailer")
                    pos += 2
                    break
                if len(data) < pos + size + 2:
                    responses.append((-1, headers, body + data[pos:]))
                    return responses
                body += data[pos : pos + size]
                if data[pos + size : pos + size + 2] != b"\r\n":
                    raise Malformed("chunk not followed by CRLF")
                pos += size + 2
            responses.append((status, headers, body))
            continue
        if lengths:
            if not lengths[0].isdigit():
                raise Malformed(f"bad content-length {lengths[0]!r}")
            size = int(lengths[0])
            if len(data) < pos + size:
                responses.append((-1, headers, data[pos:]))
                return responses
            responses.append((status, headers, data[pos : pos + size]))
            pos += size
            continue
        # No framing: the body runs to the end of the connection.
        responses.append((status, headers, data[pos:]))
        return responses
    return responses


# -- deterministic records --------------------------------------------------------


def payload(bucket: str, entry: str, ts: int, size: int) -> bytes:
    """The content of record ``ts`` of ``bucket/entry``: ``size`` pseudo-random bytes."""
    return random.Random(f"{bucket}/{entry}/{ts}/{size}".encode()).randbytes(size)


def record_size(bucket: str, entry: str, ts: int, profile) -> int:
    """
    The size of record ``ts`` of ``bucket/entry``, a pure function of them,
    so a record read back can be checked without any other state.

    :param profile: ``[(weight, low, high), ...]`` size ranges (inclusive).
    """
    rng = random.Random(f"size/{bucket}/{entry}/{ts}".encode())
    pick = rng.random() * sum(w for w, _, _ in profile)
    for weight, low, high in profile:
        if pick < weight:
            return rng.randint(low, high)
        pick -= weight
    return profile[-1][2]


def content_type_of(bucket: str, entry: str, ts: int) -> str:
    return f"application/x-{bucket}-{ts % 7}"


def label_of(bucket: str, entry: str, ts: int) -> str:
    return f"{entry}-{ts}"
