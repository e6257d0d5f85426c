"""
End-to-end: the real ``twistd -n reduct`` process, found through the plugin,
with the real engine and site, on 127.0.0.1 and a port the kernel picks.
"""

import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, error, protocol
from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

LISTENING = re.compile(rb"(https?) listening on 127\.0\.0\.1:(\d+) ")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def twistd_command():
    """The twistd next to this interpreter, or the same entry point through -c."""
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class Daemon(protocol.ProcessProtocol):
    """Collects the output of one twistd process and reports its port and its end."""

    def __init__(self):
        self.output = b""
        self.port = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data
        match = LISTENING.search(self.output)
        if match and not self.port.called:
            self.scheme = match.group(1).decode()
            self.port.callback(int(match.group(2)))

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.port.called:
            self.port.errback(reason)
        self.ended.callback(reason.value)


async def start(reactor, data_path, *extra, environ=None, host="127.0.0.1"):
    """
    Start twistd; return (daemon, process, API URL).

    :param environ: ``RS_*`` variables for the daemon; with them the
        listener comes from ``RS_HOST``/``RS_PORT``/``RS_CERT_*`` instead of
        ``--listen tcp:0:interface=127.0.0.1``.
    :param host: the host name the returned URL uses.
    """
    daemon = Daemon()
    listen = [] if environ else ["--listen", "tcp:0:interface=127.0.0.1"]
    argv = twistd_command() + [
        "-n",
        "--pidfile=",
        "reduct",
        "--data-path",
        str(data_path),
        *listen,
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RS_")}
    env.update(environ or {})
    # The checkout first, so the child runs the code under test.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    process = reactor.spawnProcess(daemon, argv[0], argv, env=env, path=str(data_path.parent))
    try:
        port = await daemon.port.addTimeout(START_TIMEOUT, reactor)
    except Exception:
        if process.pid is not None:
            process.signalProcess("KILL")
        raise AssertionError(
            "twistd did not log 'listening on':\n" + daemon.output.decode(errors="replace")
        )
    return daemon, process, f"{daemon.scheme}://{host}:{port}/api/v1"


async def stop(reactor, daemon, process):
    """SIGTERM, then expect an orderly shutdown: exit by that signal or status 0."""
    process.signalProcess("TERM")
    reason = await daemon.ended.addTimeout(STOP_TIMEOUT, reactor)
    text = daemon.output.decode(errors="replace")
    clean = isinstance(reason, error.ProcessDone) or (
        isinstance(reason, error.ProcessTerminated) and reason.signal == signal.SIGTERM
    )
    assert clean, f"{reason!r}\n{text}"
    assert "Server Shut Down." in text, text
    assert "Traceback" not in text, text
    return text


@pytest_twisted.ensureDeferred
async def test_write_read_restart(tmp_path):
    """A record written to a real twistd survives SIGTERM and a restart on the same data."""
    from twisted.internet import reactor

    data_path = tmp_path / "data"
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    try:
        daemon, process, api = await start(reactor, data_path)
        resp = await http.post(f"{api}/b/smoke")
        assert (resp.code, await resp.content()) == (200, b"")
        resp = await http.post(
            f"{api}/b/smoke/entry?ts=1000",
            data=b"hello twistd",
            headers={"x-reduct-label-k": "v"},
        )
        assert resp.code == 200, await resp.content()
        await resp.content()
        resp = await http.get(f"{api}/b/smoke/entry?ts=1000")
        assert (resp.code, await resp.content()) == (200, b"hello twistd")
        first_log = await stop(reactor, daemon, process)
        # INFO (the default) hides the DEBUG configuration line.
        assert "Configuration: Config(" not in first_log

        daemon, process, api = await start(reactor, data_path, "--log-level", "DEBUG")
        resp = await http.get(f"{api}/b/smoke/entry?ts=1000")
        assert (resp.code, await resp.content()) == (200, b"hello twistd")
        assert resp.headers.getRawHeaders("x-reduct-label-k") == ["v"]
        second_log = await stop(reactor, daemon, process)
        assert "Configuration: Config(" in second_log
    finally:
        await pool.closeCachedConnections()


@pytest_twisted.ensureDeferred
async def test_bad_setting_exits_with_one_line(tmp_path):
    """A bad RS_* value makes twistd exit non-zero with one line naming it, no traceback."""
    from twisted.internet import reactor

    daemon = Daemon()
    daemon.port.addErrback(lambda _: None)  # it never listens
    argv = twistd_command() + ["-n", "--pidfile=", "reduct"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RS_")}
    env["RS_PORT"] = "abc"
    env["PYTHONPATH"] = str(REPO_ROOT)
    reactor.spawnProcess(daemon, argv[0], argv, env=env, path=str(tmp_path))
    reason = await daemon.ended.addTimeout(STOP_TIMEOUT, reactor)
    text = daemon.output.decode(errors="replace")
    assert isinstance(reason, error.ProcessTerminated) and reason.exitCode == 1, text
    assert "RS_PORT='abc' is not a port number (environment)" in text
    assert "Traceback" not in text
    assert not (tmp_path / "reduct-data").exists()


@pytest_twisted.ensureDeferred
async def test_https_with_tokens_and_provisioning(tmp_path, certificate):
    """
    twistd configured only through the environment — RS_API_TOKEN,
    RS_CERT_PATH/RS_CERT_KEY_PATH and provisioning variables — serves the
    same API over HTTPS: tokens are required, the provisioned bucket and
    token exist and are protected, and a created token works after a
    restart.  The token values appear nowhere in the log, access lines
    included, even when sent in the query string.
    """
    from twisted.internet import reactor
    from twisted.internet.ssl import Certificate
    from twisted.web.client import BrowserLikePolicyForHTTPS

    cert_path, key_path = certificate
    with open(cert_path, "rb") as f:
        trust = Certificate.loadPEM(f.read())
    environ = {
        "RS_HOST": "127.0.0.1",
        "RS_PORT": "0",
        "RS_CERT_PATH": cert_path,
        "RS_CERT_KEY_PATH": key_path,
        "RS_API_TOKEN": "init-value-for-https",
        "RS_BUCKET_1_NAME": "cameras",
        "RS_BUCKET_1_QUOTA_TYPE": "FIFO",
        "RS_BUCKET_1_QUOTA_SIZE": "10 MB",
        "RS_TOKEN_1_NAME": "camera-writer",
        "RS_TOKEN_1_VALUE": "provisioned-writer-value",
        "RS_TOKEN_1_WRITE": "cameras",
    }
    pool = HTTPConnectionPool(reactor, persistent=False)
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust), pool=pool)
    http = HTTPClient(agent)

    async def call(method, url, token, data=b""):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await http.request(method, url, data=data, headers=headers)
        return resp.code, await resp.content(), resp.headers

    data_path = tmp_path / "data"
    logs = []
    daemon, process, api = await start(reactor, data_path, environ=environ, host="localhost")
    try:
        assert api.startswith("https://localhost:")
        code, body, headers = await call("GET", f"{api}/info", None)
        assert code == 401 and headers.getRawHeaders("x-reduct-error") == [
            "No bearer token in request header"
        ]
        code, body, _ = await call("GET", f"{api}/b/cameras", "init-value-for-https")
        assert code == 200, body
        info = json.loads(body)
        assert info["info"]["is_provisioned"] is True
        assert info["settings"]["quota_type"] == "FIFO"
        assert info["settings"]["quota_size"] == 10_000_000
        code, body, _ = await call("POST", f"{api}/b/cameras/front?ts=1", "provisioned-writer-value", b"jpeg")
        assert code == 200, body
        code, body, headers = await call("GET", f"{api}/b/cameras/front?ts=1", "provisioned-writer-value")
        assert code == 403 and headers.getRawHeaders("x-reduct-error") == [
            "Token 'camera-writer' doesn't have read access to bucket 'cameras'"
        ]
        code, body, headers = await call("DELETE", f"{api}/b/cameras", "init-value-for-https")
        assert code == 409 and headers.getRawHeaders("x-reduct-error") == [
            "Can't remove provisioned bucket 'cameras'"
        ]
        code, body, headers = await call("DELETE", f"{api}/tokens/camera-writer", "init-value-for-https")
        assert code == 409 and headers.getRawHeaders("x-reduct-error") == [
            "Can't remove provisioned token 'camera-writer'"
        ]
        code, body, _ = await call("POST", f"{api}/tokens/viewer", "init-value-for-https", b'{"read": ["cameras"]}')
        assert code == 200, body
        viewer = json.loads(body)["value"]
        # Token values in the query string too: the access lines leave them out.
        code, body, _ = await call(
            "GET", f"{api}/b/cameras?token=init-value-for-https&access_token={viewer}",
            "init-value-for-https",
        )
        assert code == 200, body
        code, _, _ = await call("GET", f"{api}/info?token=provisioned-writer-value", None)
        assert code == 401
    finally:
        logs.append(await stop(reactor, daemon, process))

    daemon, process, api = await start(reactor, data_path, environ=environ, host="localhost")
    try:
        code, body, _ = await call("GET", f"{api}/b/cameras/front?ts=1", viewer)
        assert (code, body) == (200, b"jpeg")
    finally:
        logs.append(await stop(reactor, daemon, process))
        await pool.closeCachedConnections()
    text = "".join(logs)
    assert "https listening on 127.0.0.1:" in text
    # The access log is on (issue #18): a line per request, token names only.
    assert ' init-token "GET /api/v1/b/cameras" 200 ' in text
    assert ' - "GET /api/v1/info" 401 ' in text
    assert ' viewer "GET /api/v1/b/cameras/front?ts=1" 200 4B ' in text
    for secret in ("init-value-for-https", "provisioned-writer-value", viewer):
        assert secret not in text
