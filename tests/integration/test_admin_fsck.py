"""
``reduct-twisted fsck`` (issue #18 item 6) on data directories a real
``twistd`` daemon wrote: clean (exit 0), a flipped byte in a record (the
record reported, exit 1), ``--repair`` quarantining its block (nothing
deleted; the daemon then starts and serves the rest), a damaged ``.meta``,
a torn integrity log, a log leaf that disagrees with its record, and a
running daemon's directory refused (exit 2).
"""

import http.client
import io
import json
import os
import subprocess
import sys

import pytest

from reduct_twisted.admin import cli
from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.disk.layout import LOG_DIR, QUARANTINE_DIR
from tests.conftest import REPO_ROOT
from tests.integration.daemon import Twistd

pytestmark = pytest.mark.slow


def request(port, method, target, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def fsck(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["fsck", *map(str, argv)], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A data directory a daemon wrote and stopped cleanly (copied per test)."""
    data = tmp_path_factory.mktemp("fsck") / "data"
    daemon = Twistd(data)
    daemon.start()
    try:
        assert request(daemon.port, "POST", "/api/v1/b/b", json.dumps({"max_block_records": 10}).encode())[0] == 200
        for entry in ("e", "e/child", "other"):
            for i in range(25):
                body = bytes([i]) * (100 + i)
                status, _, _ = request(daemon.port, "POST", f"/api/v1/b/b/{entry}?ts={1000 + i}", body,
                                       {"Content-Type": "text/plain", "x-reduct-label-i": str(i)})
                assert status == 200
        # a larger record: its own private segment
        big = os.urandom(300_000)
        assert request(daemon.port, "POST", "/api/v1/b/b/other?ts=5000", big)[0] == 200
        # a removed record: the entry's removed set
        assert request(daemon.port, "DELETE", "/api/v1/b/b/other?ts=1001")[0] == 200
        # the integrity log written out: listing reads it
        request(daemon.port, "GET", "/api/v1/b/b/e/records")
    finally:
        daemon.stop()
    assert daemon.alarms() == []
    return data


@pytest.fixture
def data(written, tmp_path):
    copy = tmp_path / "data"
    subprocess.run(["cp", "-a", str(written), str(copy)], check=True)
    return copy


def record_of(data, entry, ts):
    """(segment path, record) of ``ts`` in ``entry`` of bucket b, read with the storage's reader."""
    directory = data / "b" / entry
    for name in sorted(os.listdir(directory)):
        found = blockfile.classify(name)
        if found and found[2] == blockfile.META_SUFFIX:
            table, _ = blockfile.read_meta(str(directory / name), found[0])
            if ts in table:
                return directory / table[ts].segment, table[ts], found[0]
    raise AssertionError(f"no record {ts} in {entry}")


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_clean_directory(data):
    status, out, err = fsck(data)
    assert status == 0, out + err
    assert out.rstrip().endswith("clean"), out
    status, out, _ = fsck(data, "--json")
    report = json.loads(out)
    assert status == 0 and report["status"] == "clean" and report["problems"] == []
    counts = report["counts"]
    # bucket b's 76 records in 3 entries, and what the $system bucket logged
    assert counts["records"] >= 76 and counts["checked_records"] == counts["records"]
    assert counts["entries"] >= 3 and counts["logs"] >= 3 and counts["log_leaves"] >= 76


def test_flipped_byte_reported_and_repaired(data):
    segment, record, block_id = record_of(data, "e/child", 1013)
    flip(segment, record.offset + 7)
    status, out, _ = fsck(data, "--json")
    report = json.loads(out)
    assert status == 1
    assert [(p["where"], p["kind"], p["ts"]) for p in report["problems"]] == [("b/e/child", "record", 1013)]
    assert "mismatch" in report["problems"][0]["detail"]
    before = sorted(os.listdir(data / "b" / "e" / "child"))

    status, out, _ = fsck(data, "--repair")
    assert status == 1 and "REPAIRED b/e/child/%d" % block_id in out, out
    quarantine = data / QUARANTINE_DIR / "b" / "e" / "child"
    moved = sorted(os.listdir(quarantine))
    assert blockfile.meta_name(block_id) in moved and segment.name in moved
    after = sorted(os.listdir(data / "b" / "e" / "child"))
    assert sorted(after + moved) == before  # moved, nothing deleted
    status, out, _ = fsck(data)
    assert status == 0, out

    # the daemon starts on the repaired directory and serves the other records
    daemon = Twistd(data)
    daemon.start()
    try:
        assert request(daemon.port, "GET", "/api/v1/b/b/e/child?ts=1013")[0] == 404
        status, _, body = request(daemon.port, "GET", "/api/v1/b/b/e/child?ts=1024")
        assert status == 200 and body == bytes([24]) * 124
        assert request(daemon.port, "GET", "/api/v1/b/b/other?ts=1003")[0] == 200
    finally:
        daemon.stop()
    assert daemon.alarms() == []


def test_flipped_byte_in_a_private_segment(data):
    segment, record, _ = record_of(data, "other", 5000)
    flip(segment, record.offset + 250_000)
    status, out, _ = fsck(data)
    assert status == 1 and "record 5000" in out and "b/other" in out, out


def test_damaged_meta(data):
    directory = data / "b" / "e"
    meta = sorted(n for n in os.listdir(directory) if n.endswith(".meta"))[1]
    with open(directory / meta, "ab") as f:
        f.write(b'{"k": "r", "ts": "not a number"}\n')
    status, out, _ = fsck(data, "--json")
    report = json.loads(out)
    assert status == 1 and report["problems"][0]["kind"] == "metadata"
    assert report["problems"][0]["where"] == f"b/e/{meta}"
    status, _, _ = fsck(data, "--repair")
    assert status == 1 and (data / QUARANTINE_DIR / "b" / "e" / meta).exists()
    assert fsck(data)[0] == 0


def test_integrity_log_checks(data):
    log = data / "b" / "e" / LOG_DIR
    assert (log / "leaves").exists()
    # a leaf that disagrees with its record (the digest of another content)
    leaves = (log / "leaves").read_bytes()
    first = int.from_bytes((log / "offsets").read_bytes()[:8], "big")
    digest = json.loads(leaves[:first])["digest"]  # "sha-256:<hex>"
    hex_start = len("sha-256:")
    other = digest[:hex_start] + ("0" if digest[hex_start] != "0" else "1") + digest[hex_start + 1:]
    (log / "leaves").write_bytes(leaves.replace(digest.encode(), other.encode(), 1))
    status, out, _ = fsck(data)
    assert status == 1 and "does not match its leaf" in out, out
    # a torn tail: half an offset more
    with open(log / "offsets", "ab") as f:
        f.write(b"\x00\x00\x00")
    status, out, _ = fsck(data)
    assert status == 1 and "torn or damaged tail: 25 consistent leaves, then 3 bytes of offsets" in out, out


def test_logs_the_daemon_would_refuse(data):
    other = data / "b" / "other" / LOG_DIR
    assert (other / "removed").read_bytes().count(b"\n") == 2  # header and the removal of 1001
    (other / "removed").write_bytes(b'{"format": 7}\n')
    fmt = data / "b" / "e" / LOG_DIR / "format"
    fmt.write_text(fmt.read_text().replace('"version":1', '"version":99'))
    status, out, _ = fsck(data, "--json")
    report = json.loads(out)
    assert status == 1
    assert sorted(p["where"] for p in report["problems"]) == [f"b/e/{LOG_DIR}", f"b/other/{LOG_DIR}"]
    assert all("the daemon refuses it" in p["detail"] for p in report["problems"])


def test_refuses_running_daemon_and_foreign_directories(data, tmp_path):
    daemon = Twistd(data)
    daemon.start()
    try:
        # an answered request: the reactor runs (a SIGTERM before it does is not a clean stop)
        assert request(daemon.port, "GET", "/api/v1/info")[0] == 200
        status, out, err = fsck(data)
        assert status == 2 and "in use" in err and str(daemon.pid) in err, err
    finally:
        daemon.stop()
    assert fsck(data)[0] == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    status, _, err = fsck(foreign)
    assert status == 2 and os.listdir(foreign) == ["notes.txt"], err
    assert fsck(tmp_path / "missing")[0] == 2
    assert cli.main(["fsck"], stdout=io.StringIO(), stderr=io.StringIO()) == 2


def test_python_dash_m_and_console_script(data):
    """``python -m reduct_twisted`` runs the same CLI (a real process, this tree first on the path)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-m", "reduct_twisted", "fsck", str(data)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-m", "reduct_twisted", "--help"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("verify", "fsck", "export", "import"))
