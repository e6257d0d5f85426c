"""Small helpers shared by the integration tests."""

import json
import socket

from twisted.internet.threads import deferToThread


async def body_of(resp) -> bytes:
    """Read the whole response body (always consume bodies: treq hygiene)."""
    return await resp.content()


async def call(server, method, path, body=None, headers=None, raw=None):
    """
    ``method`` on ``server.api(path)``: ``body`` sent as JSON (with its
    Content-Type unless ``headers`` name one), or ``raw`` bytes as they are.
    """
    sent = {k: [v] for k, v in (headers or {}).items()}
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    if body is not None:
        sent.setdefault("Content-Type", ["application/json"])
    return await server.http.request(method, server.api(path), data=data, headers=sent)


async def ok(resp) -> bytes:
    """:return: the body of ``resp``, asserting a 200."""
    content = await body_of(resp)
    assert resp.code == 200, (resp.code, content, resp.headers)
    return content


async def read_single(server, entry, ts, bucket="bkt"):
    """:return: ``(response, body)`` of the single read of ``entry`` at ``ts``."""
    resp = await server.http.get(server.api(f"/b/{bucket}/{entry}?ts={ts}"))
    return resp, await body_of(resp)


def labels_of(resp) -> dict:
    """:return: the ``x-reduct-label-*`` headers of ``resp`` as ``{name: value}``."""
    return {
        name.decode().lower()[len("x-reduct-label-"):]: values[-1].decode()
        for name, values in resp.headers.getAllRawHeaders()
        if name.lower().startswith(b"x-reduct-label-")
    }


async def assert_error(resp, status: int, message: str) -> None:
    """The ReductStore error contract: status, x-reduct-error, JSON detail."""
    body = await resp.content()
    assert resp.code == status, (resp.code, body)
    assert resp.headers.getRawHeaders("x-reduct-error") == [message]
    if status == 204 or resp.request.method == b"HEAD":
        assert body == b""
        return
    assert resp.headers.getRawHeaders("content-type") == ["application/json"]
    assert json.loads(body) == {"detail": message}


async def until(predicate, timeout=20.0, every=0.05):
    """Await ``predicate()`` every ``every`` s until it is true; AssertionError after ``timeout`` s."""
    from twisted.internet import reactor, task

    for _ in range(int(timeout / every)):
        if await predicate():
            return
        await task.deferLater(reactor, every, lambda: None)
    raise AssertionError("condition not reached in time")


def _raw_exchange(port: int, payload: bytes, read_until_close: bool, timeout: float) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            chunks.append(data)
            if not read_until_close and b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)
    finally:
        sock.close()


def raw_request(port: int, payload: bytes, read_until_close=False, timeout=2.0):
    """
    Send raw bytes over a fresh socket (in a thread, so the reactor keeps
    serving) and return what came back: for wire-level checks treq hides.
    """
    return deferToThread(_raw_exchange, port, payload, read_until_close, timeout)


def port_of(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_benchmark(script: str, args, cwd, timeout: float):
    """
    Run ``benchmarks/<script>`` with ``args`` in its own session, killed
    after ``timeout`` seconds: :return: ``(returncode, stdout, stderr)``.
    The daemons it started are the caller's to check (their PIDs are in
    its stderr).
    """
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    return proc.returncode, stdout, stderr
