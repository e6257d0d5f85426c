"""
The daemon's log (issue #18), read from the real ``twistd -n reduct``'s
stdout: one access line per request in the text and JSON formats, journald
priorities when ``$JOURNAL_STREAM`` names the pipe the test gives it as
stdout, the access log switched off, and never a token's value, whether
sent in the ``Authorization`` header or in the query string.
"""

import json
import os
import re
import socket
import subprocess
import threading

import pytest

from tests.integration.daemon import Connection, Twistd
from tests.integration.test_twistd import twistd_command
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

INIT = "init-value-never-logged"
WRITER = "writer-value-never-logged"
WRONG = "wrong-value-never-logged"
SECRETS = (INIT, WRITER, WRONG)

ENVIRON = {
    "RS_API_TOKEN": INIT,
    "RS_TOKEN_1_NAME": "camera-writer",
    "RS_TOKEN_1_VALUE": WRITER,
    "RS_TOKEN_1_WRITE": "cams",
    "RS_TOKEN_1_READ": "cams",
}

#: The text access line (``http/access.py``'s ``ACCESS_FORMAT``).
ACCESS = re.compile(
    r'\[reduct_twisted\.access#info\] (?P<client>\S+) (?P<token>\S+) '
    r'"(?P<method>\S+) (?P<path>\S+)" (?P<status>\d+) (?P<bytes>\d+)B '
    r'(?P<duration>\d+\.\d{3})ms(?P<cut> cut)?$'
)


class PipedTwistd(Twistd):
    """
    ``Twistd`` whose stdout and stderr are a pipe made here, so its device
    and inode are known before the start (``JOURNAL_STREAM``).

    :param journal: set ``JOURNAL_STREAM`` to that pipe.
    """

    def __init__(self, data_path, *extra, environ=None, journal=False):
        super().__init__(data_path, *extra, environ=environ)
        self.journal = journal

    def spawn(self) -> None:
        read, write = os.pipe()
        st = os.fstat(write)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RS_") and k != "JOURNAL_STREAM"}
        env.update(self.environ)
        if self.journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        argv = twistd_command() + [
            "-n", "--pidfile=", "reduct", "--data-path", self.data_path,
            "--listen", "tcp:0:interface=127.0.0.1", *self.extra,
        ]
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=write, stderr=write, env=env,
                cwd=os.path.dirname(self.data_path.rstrip("/")),
            )
        finally:
            os.close(write)
        self.proc.stdout = open(read, "rb", buffering=0)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()


def exercise(port):
    """
    Requests with tokens in headers and in query strings, a refused one, a
    404 and an upload aborted mid-body.

    :return: the ``(method, path, status, token)`` each should be logged with.
    """
    conn = Connection(port)
    init = {"Authorization": f"Bearer {INIT}"}
    writer = {"Authorization": f"Bearer {WRITER}"}
    expected = []

    def call(method, target, headers, body=b"", status=200, path=None, token="-"):
        response = conn.request(method, target, headers=list(headers.items()), body=body)
        assert response.status == status, response
        expected.append((method, path or target, status, token))

    call("POST", "/api/v1/b/cams", init, token="init-token")
    call("POST", f"/api/v1/b/cams/front?ts=1&token={INIT}&access_token={WRITER}", writer,
         body=b"jpeg", path="/api/v1/b/cams/front?ts=1", token="camera-writer")
    call("GET", f"/api/v1/b/cams/front?token={WRITER}&ts=1", writer,
         path="/api/v1/b/cams/front?ts=1", token="camera-writer")
    call("GET", f"/api/v1/info?api_key={INIT}", {}, status=401, path="/api/v1/info")
    call("GET", "/api/v1/info", {"Authorization": f"Bearer {WRONG}"}, status=401)
    call("GET", "/api/v1/b/nothing", init, status=404, token="init-token")
    conn.close()
    # An upload cut after its headers and 3 of its 1000 body bytes.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /api/v1/b/cams/front?ts=2 HTTP/1.1\r\nhost: x\r\n"
            b"authorization: Bearer " + WRITER.encode() + b"\r\n"
            b"content-length: 1000\r\n\r\nabc"
        )
        # A second connection's answered request orders the lines: the
        # upload's headers were read before this one's answer came back.
        probe = Connection(port)
        assert probe.request("GET", "/api/v1/alive").status == 200
        probe.close()
    expected.append(("GET", "/api/v1/alive", 200, "-"))
    expected.append(("POST", "/api/v1/b/cams/front?ts=2", 499, "camera-writer"))
    return expected


def wait_for(daemon, predicate, what):
    """Wait (up to 10 s) for the daemon's output to satisfy ``predicate``."""
    import time

    deadline = time.monotonic() + 10
    while not predicate(daemon.output):
        assert time.monotonic() < deadline, f"{what}:\n{daemon.output}"
        time.sleep(0.05)


def assert_no_secret(text):
    for secret in SECRETS:
        assert secret not in text


def run(tmp_path, *extra, environ=None, journal=False, requests=exercise):
    environ = dict(ENVIRON, **(environ or {}))
    daemon = PipedTwistd(tmp_path / "data", *extra, environ=environ, journal=journal)
    port = daemon.start()
    try:
        expected = requests(port)
        wait_for(daemon, lambda text: text.count("reduct_twisted.access") >= len(expected),
                 "access lines")
    finally:
        text = daemon.stop()
    assert_no_secret(text)
    return text, expected


def test_text_access_lines(tmp_path):
    """One text line per request, with its fields; the aborted upload is 499 cut."""
    text, expected = run(tmp_path)
    lines = [line for line in text.splitlines() if "[reduct_twisted.access#" in line]
    found = [ACCESS.search(line) for line in lines]
    assert all(found), lines
    assert sorted((m["method"], m["path"], int(m["status"]), m["token"]) for m in found) == sorted(
        expected
    )
    by_status = {int(m["status"]): m for m in found}
    assert by_status[499]["cut"] and by_status[499]["bytes"] == "0"
    assert all(m["client"] == "127.0.0.1" for m in found)
    assert all(not m["cut"] for m in found if m["status"] != "499")
    reads = [m for m in found if m["method"] == "GET" and m["status"] == "200"
             and "front" in m["path"]]
    assert [r["bytes"] for r in reads] == ["4"]
    # twistd's timestamp in front, as every other line
    assert all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in lines)


def test_json_lines(tmp_path):
    """``RS_LOG_FORMAT=json``: every line is one JSON object; access fields are keys."""
    text, expected = run(tmp_path, environ={"RS_LOG_FORMAT": "json"})
    events = [json.loads(line) for line in text.splitlines()]
    assert any(e.get("log_text", "").startswith("http listening on") for e in events)
    access = [e for e in events if e.get("log_namespace") == "reduct_twisted.access"]
    assert sorted((e["method"], e["path"], e["status"], e["token"]) for e in access) == sorted(
        expected
    )
    for e in access:
        assert e["client"] == "127.0.0.1" and e["log_level"]["name"] == "info"
        assert isinstance(e["bytes"], int) and isinstance(e["duration_ms"], float)
        assert e["cut"] == (e["status"] == 499)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_journal_priorities(tmp_path, log_format):
    """
    With ``JOURNAL_STREAM`` naming its stdout pipe, every line starts with
    its syslog priority and the text lines carry no timestamp.
    """
    environ = {"RS_LOG_FORMAT": log_format, "RS_AUDIT_ENABLED": "true"}  # a WARN line
    text, expected = run(tmp_path, environ=environ, journal=True)
    lines = text.splitlines()
    assert all(re.match(r"<[2-7]>", line) for line in lines), lines
    if log_format == "text":
        assert all(re.match(r"<\d>\[", line) for line in lines), lines
        access = [line for line in lines if line.startswith("<6>[reduct_twisted.access#info] ")]
        assert len(access) == len(expected)
        assert any(line.startswith("<4>") and "RS_AUDIT_ENABLED" in line for line in lines)
    else:
        events = [(int(line[1]), json.loads(line[3:])) for line in lines]
        access = [e for p, e in events if e.get("log_namespace") == "reduct_twisted.access"]
        assert len(access) == len(expected)
        levels = {e["log_level"]["name"]: p for p, e in events if "log_level" in e}
        assert levels["info"] == 6 and levels["warn"] == 4


def test_journal_stream_of_another_file_changes_nothing(tmp_path):
    """A ``JOURNAL_STREAM`` inherited from elsewhere: twistd's usual lines."""
    def requests(port):
        conn = Connection(port)
        assert conn.request("GET", "/api/v1/alive").status == 200
        conn.close()
        return [("GET", "/api/v1/alive", 200, "-")]

    st = os.stat(tmp_path)
    environ = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    daemon = PipedTwistd(tmp_path / "data", environ=dict(ENVIRON, **environ))
    port = daemon.start()
    try:
        requests(port)
        wait_for(daemon, lambda text: "reduct_twisted.access" in text, "an access line")
    finally:
        text = daemon.stop()
    assert all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in text.splitlines())


def test_access_log_off(tmp_path):
    """
    ``RS_ACCESS_LOG=off``: the requests are served, no access line is
    written.  (``log_level`` WARN or ERROR makes none either: unit test
    ``test_make_site_switch``; such a daemon does not log its port.)
    """
    def requests(port):
        exercise(port)
        return []

    text, _ = run(tmp_path, environ={"RS_ACCESS_LOG": "off"}, requests=requests)
    assert "reduct_twisted.access" not in text
    assert "Server Shut Down." in text
