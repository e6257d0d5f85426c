"""
End-to-end: the real ``twistd -n reduct`` process, found through the plugin,
with the real engine and site, on 127.0.0.1 and a port the kernel picks.
"""

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

LISTENING = re.compile(rb"http listening on 127\.0\.0\.1:(\d+) ")
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
            self.port.callback(int(match.group(1)))

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.port.called:
            self.port.errback(reason)
        self.ended.callback(reason.value)


async def start(reactor, data_path, *extra):
    daemon = Daemon()
    argv = twistd_command() + [
        "-n",
        "--pidfile=",
        "reduct",
        "--data-path",
        str(data_path),
        "--listen",
        "tcp:0:interface=127.0.0.1",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RS_")}
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
    return daemon, process, f"http://127.0.0.1:{port}/api/v1"


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
