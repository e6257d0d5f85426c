"""
An entry log this build cannot read (a newer format version) on the real
daemon (``twistd``, real sockets): the daemon starts, reads of the log and
the listing answer 409 with the entry and the version in ``x-reduct-error``
and JSON ``detail``, writes, label updates, removals and reads of records
still succeed, the problem is logged once, and nothing in ``.log/`` changes.
"""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT
from tests.integration.daemon import Connection, Twistd

B = "bkt"


def _snapshot(directory) -> dict:
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            with open(path, "rb") if name in files else open(os.devnull, "rb") as f:
                found[os.path.relpath(path, directory)] = (name in files, f.read(), os.stat(path).st_mtime_ns)
    return found


def _refused(resp) -> str:
    assert resp.status == 409, (resp.status, resp.body)
    message = resp.header("x-reduct-error")
    assert json.loads(resp.body) == {"detail": message}
    return message


def test_a_newer_log_format_is_refused_and_left_alone(tmp_path):
    data_path = tmp_path / "data"
    daemon = Twistd(data_path)
    port = daemon.start()
    try:
        with Connection(port) as conn:
            assert conn.request("POST", f"/api/v1/b/{B}", b"{}").status == 200
            for ts in (1, 2, 3):
                assert conn.request("POST", f"/api/v1/b/{B}/e?ts={ts}", b"before %d" % ts).status == 200
            assert json.loads(conn.request("GET", f"/api/v1/log/{B}/e").body)["tree_size"] == 3
    finally:
        daemon.stop()
    log_dir = data_path / B / "e" / ".log"
    header = json.loads((log_dir / "format").read_bytes())
    assert header["version"] == 1
    header["version"] = 99
    (log_dir / "format").write_bytes(json.dumps(header).encode() + b"\n")
    before = _snapshot(log_dir)

    daemon = Twistd(data_path)
    port = daemon.start()
    try:
        with Connection(port) as conn:
            for target in (f"/api/v1/log/{B}/e", f"/api/v1/log/{B}/e?proof=1&tree_size=1",
                           f"/api/v1/log/{B}/e?first=1&second=2", f"/api/v1/records/{B}/e",
                           f"/api/v1/records/{B}/e?number=1", f"/api/v1/records/{B}/e?include_removed=true&start_ts=0"):
                message = _refused(conn.request("GET", target))
                assert "'bkt/e'" in message and "version 99" in message, message
            # the records are sacred: writes (past a batch of leaves), label updates, removals, reads
            for ts in range(10, 90):
                assert conn.request("POST", f"/api/v1/b/{B}/e?ts={ts}", b"after %d" % ts).status == 200
            assert conn.request("PATCH", f"/api/v1/b/{B}/e?ts=2", headers=[("x-reduct-label-k", "v")]).status == 200
            assert conn.request("DELETE", f"/api/v1/b/{B}/e?ts=3").status == 200
            resp = conn.request("GET", f"/api/v1/b/{B}/e?ts=89")
            assert resp.status == 200 and resp.body == b"after 89"
            assert conn.request("GET", f"/api/v1/b/{B}/e?ts=2").header("x-reduct-label-k") == "v"
            # another entry of the same bucket keeps its log
            assert conn.request("POST", f"/api/v1/b/{B}/other?ts=1", b"x").status == 200
            assert json.loads(conn.request("GET", f"/api/v1/log/{B}/other").body)["tree_size"] == 1
            _refused(conn.request("GET", f"/api/v1/log/{B}/e"))
        # the verifier says which entry it cannot check, and checks the others
        env = {k: v for k, v in os.environ.items() if not k.startswith("RS_")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        done = subprocess.run(
            [sys.executable, "-m", "reduct_twisted.verifier.cli", "verify", f"http://127.0.0.1:{port}", B, "--quiet"],
            capture_output=True, timeout=120, env=env, check=False)
        text = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == 1, text
        assert f"FAILED {B}/e [head] the server cannot read this entry's log" in text and "version 99" in text
        assert f"OK  {B}/other: head 1 leaves" in text
        assert daemon.alarms() == []
    finally:
        text = daemon.stop()
    assert text.count("version 99") == 1, text  # logged once, not per write or read
    [line] = [line for line in text.splitlines() if "version 99" in line]
    assert "Entry log refused: tree log " in line and f"{B}/e/.log has format version 99" in line, line
    assert _snapshot(log_dir) == before
