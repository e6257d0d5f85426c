"""
``reduct-twisted export`` / ``import`` (issue #18 item 6) against real
``twistd`` daemons over real sockets: a bucket with labels (a comma in a
value), content types, nested entries, an attachment entry and records
large enough for the one-by-one path is exported, imported into another
daemon, exported again and compared record by record with what was
written; interrupted exports and imports resume; the v1 paths (a server
without the I/O API) round-trip too.
"""

import hashlib
import http.client
import io
import json
import os
import random

import pytest

from reduct_twisted.admin import cli, folder, transfer
from reduct_twisted.admin.progress import Progress
from tests.integration.daemon import Twistd

pytestmark = pytest.mark.slow

#: (entry, count, size range, content type, labels(i))
ENTRIES = [
    ("cam", 40, (0, 3000), "image/jpeg", lambda i: {"site": "north", "n": str(i)}),
    ("cam/left", 120, (1, 500), "text/plain", lambda i: {"note": "a,b c", "even": str(i % 2 == 0).lower()}),
    ("cam/left/deep", 5, (10, 20), "application/json", lambda i: {}),
    ("logs", 3, (1_100_000, 1_300_000), "application/octet-stream", lambda i: {"big": "yes"}),
    ("mixed", 30, (1, 100), None, lambda i: {"k": "v"} if i % 3 else {}),
    # 14 KB of labels per record: 80 of them (the count cap) would be 1.1 MB of request
    # headers, past the server's 1 MiB: v2 batches are cut by header bytes too
    ("tags", 80, (1, 10), "text/plain", lambda i: {"long": "x" * 14_000 + str(i)}),
]


def request(port, method, target, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def fill(port, bucket, rng) -> dict:
    """Write the records of ENTRIES; return {(entry, ts): (content_type, labels, sha256, size)}."""
    status, _, _ = request(port, "POST", f"/api/v1/b/{bucket}", json.dumps({"max_block_records": 32}).encode())
    assert status == 200
    written = {}
    for entry, count, (low, high), content_type, labels_of in ENTRIES:
        for i in range(count):
            ts = 1_000_000 + i * 1000 + rng.randrange(1000)
            body = rng.randbytes(rng.randint(low, high))
            ct = content_type or rng.choice(["text/csv", "application/x-thing", "image/png"])
            labels = labels_of(i)
            headers = {"Content-Type": ct, **{f"x-reduct-label-{k}": v for k, v in labels.items()}}
            status, _, answer = request(port, "POST", f"/api/v1/b/{bucket}/{entry}?ts={ts}", body, headers)
            assert status == 200, answer
            written[(entry, ts)] = (ct, labels, hashlib.sha256(body).hexdigest(), len(body))
    # an attachment ($meta entry), written through the I/O API as the clients do
    meta = b'{"calibration": 1}'
    status, headers, _ = request(port, "POST", f"/api/v1/io/{bucket}/write", meta, {
        "x-reduct-entries": "cam%2F$meta", "x-reduct-start-ts": "5", "x-reduct-0-0": "18,application/json,key=cal",
    })
    assert status == 200 and not any(k.startswith("x-reduct-error") for k in headers), headers
    written[("cam/$meta", 5)] = ("application/json", {"key": "cal"}, hashlib.sha256(meta).hexdigest(), len(meta))
    return written


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def exported(root) -> dict:
    """{(entry, ts): (content_type, labels, sha256, size)} of an export folder, files checked."""
    found = {}
    for entry in folder.entries(str(root)):
        directory = folder.entry_dir(str(root), entry)
        for item in folder.read_manifest(directory):
            with open(os.path.join(directory, item["file"]), "rb") as f:
                data = f.read()
            assert hashlib.sha256(data).hexdigest() == item["sha256"] and len(data) == item["size"]
            found[(entry, item["ts"])] = (item["content_type"], item["labels"], item["sha256"], item["size"])
    leftovers = [n for _, _, files in os.walk(root) for n in files if n.endswith(folder.PART)]
    assert leftovers == []
    return found


@pytest.fixture
def daemons(tmp_path):
    started = []

    def start(name, **environ):
        daemon = Twistd(tmp_path / name, environ=environ)
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.alive():
            daemon.stop()
        assert daemon.alarms() == []


def test_export_import_round_trip(tmp_path, daemons):
    source, target = daemons("src"), daemons("dst")
    written = fill(source.port, "data", random.Random(18))
    url_a, url_b = f"http://127.0.0.1:{source.port}", f"http://127.0.0.1:{target.port}"

    status, out, err = run("export", url_a, "data", str(tmp_path / "one"))
    assert status == 0, err
    assert exported(tmp_path / "one") == written
    header = folder.read_header(str(tmp_path / "one"))
    assert header["bucket"] == "data" and header["settings"]["max_block_records"] == 32
    # plain progress lines (stderr is not a terminal): one per entry at least
    assert "export data/cam/left: 120/120 records" in err, err
    assert "export data/cam/$meta: 1 records" in err and "data/logs/$meta" not in err, err

    status, out, err = run("import", str(tmp_path / "one"), url_b, "copy")
    assert status == 0, err + out
    _, _, body = request(target.port, "GET", "/api/v1/b/copy")
    info = json.loads(body)
    assert info["settings"]["max_block_records"] == 32
    status, out, err = run("export", url_b, "copy", str(tmp_path / "two"))
    assert status == 0, err
    assert exported(tmp_path / "two") == written

    # a record read straight from the copy: bytes, labels and content type
    entry, ts = "cam/left", sorted(t for e, t in written if e == "cam/left")[7]
    status, headers, body = request(target.port, "GET", f"/api/v1/b/copy/{entry}?ts={ts}")
    assert status == 200 and hashlib.sha256(body).hexdigest() == written[(entry, ts)][2]
    assert headers["x-reduct-label-note"] == "a,b c" and headers["content-type"] == "text/plain"

    # importing again is a no-op: every record is already there
    status, out, err = run("import", str(tmp_path / "one"), url_b, "copy")
    assert status == 0, err + out
    _, _, body = request(target.port, "GET", "/api/v1/b/copy")
    listed = sum(e["record_count"] for e in json.loads(body)["entries"])
    assert listed == len(written) - 1  # the attachment entry is not listed


def interrupt_after(monkeypatch, limit: int) -> None:
    """Ctrl-C (KeyboardInterrupt) once ``limit`` bytes have moved: mid-record, mid-batch."""
    original = Progress.advance
    moved = [0]

    def advance(self, records=0, nbytes=0):
        original(self, records, nbytes)
        moved[0] += nbytes
        if moved[0] >= limit:
            raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "advance", advance)


def test_interrupted_export_and_import_resume(tmp_path, daemons, monkeypatch):
    source, target = daemons("src"), daemons("dst")
    written = fill(source.port, "data", random.Random(7))
    url_a, url_b = f"http://127.0.0.1:{source.port}", f"http://127.0.0.1:{target.port}"
    total = sum(size for _, _, _, size in written.values())

    with monkeypatch.context() as m:
        interrupt_after(m, total // 3)
        status, _, err = run("export", url_a, "data", str(tmp_path / "one"))
    assert status == 2 and "interrupted" in err
    parts = [n for _, _, files in os.walk(tmp_path / "one") for n in files if n.endswith(folder.PART)]
    assert parts, "the interrupt came mid-record"
    partial = sum(1 for entry in folder.entries(str(tmp_path / "one"))
                  for _ in folder.read_manifest(folder.entry_dir(str(tmp_path / "one"), entry)))
    assert 0 < partial < len(written)
    status, _, err = run("export", url_a, "data", str(tmp_path / "one"))
    assert status == 0, err
    assert exported(tmp_path / "one") == written

    with monkeypatch.context() as m:
        interrupt_after(m, total // 2)
        status, _, err = run("import", str(tmp_path / "one"), url_b, "copy")
    assert status == 2 and "interrupted" in err
    _, _, body = request(target.port, "GET", "/api/v1/b/copy")
    stored = sum(e["record_count"] for e in json.loads(body)["entries"])
    assert 0 < stored < len(written)
    status, out, err = run("import", str(tmp_path / "one"), url_b, "copy")
    assert status == 0, err + out
    status, _, err = run("export", url_b, "copy", str(tmp_path / "two"))
    assert status == 0, err
    assert exported(tmp_path / "two") == written


def test_v1_paths_round_trip(tmp_path, daemons, monkeypatch):
    """A server without the I/O API: single-record reads and writes."""
    source, target = daemons("src"), daemons("dst")
    written = fill(source.port, "data", random.Random(3))
    del written[("cam/$meta", 5)]  # attachments are an API 1.19 feature: a v1 server has none
    monkeypatch.setattr(transfer, "_api_version", lambda client: (1, 17))
    url_a, url_b = f"http://127.0.0.1:{source.port}", f"http://127.0.0.1:{target.port}"
    status, _, err = run("export", url_a, "data", str(tmp_path / "one"))
    assert status == 0, err
    assert exported(tmp_path / "one") == written
    status, out, err = run("import", str(tmp_path / "one"), url_b, "copy")
    assert status == 0, err + out
    status, out, err = run("import", str(tmp_path / "one"), url_b, "copy")  # all there: 409 + HEAD
    assert status == 0, err + out
    status, _, err = run("export", url_b, "copy", str(tmp_path / "two"))
    assert status == 0, err
    assert exported(tmp_path / "two") == written


def test_conflicting_record_is_a_failure_not_an_overwrite(tmp_path, daemons):
    source = daemons("src")
    url = f"http://127.0.0.1:{source.port}"
    request(source.port, "POST", "/api/v1/b/data")
    request(source.port, "POST", "/api/v1/b/data/e?ts=10", b"abc", {"Content-Type": "text/plain"})
    assert run("export", url, "data", str(tmp_path / "one"))[0] == 0
    request(source.port, "POST", "/api/v1/b/copy")
    request(source.port, "POST", "/api/v1/b/copy/e?ts=10", b"other!", {"Content-Type": "text/plain"})
    status, out, err = run("import", str(tmp_path / "one"), url, "copy")
    assert status == 1 and "e 10" in err and "1 record(s) failed" in out
    _, _, body = request(source.port, "GET", "/api/v1/b/copy/e?ts=10")
    assert body == b"other!"


def test_export_refuses_another_buckets_folder(tmp_path, daemons):
    source = daemons("src")
    url = f"http://127.0.0.1:{source.port}"
    request(source.port, "POST", "/api/v1/b/one")
    request(source.port, "POST", "/api/v1/b/two")
    assert run("export", url, "one", str(tmp_path / "x"))[0] == 0
    status, _, err = run("export", url, "two", str(tmp_path / "x"))
    assert status == 2 and "holds an export of bucket 'one'" in err, err


def test_usage_and_connection_errors(tmp_path):
    assert run("export")[0] == 2
    status, _, err = run("import", str(tmp_path), "http://127.0.0.1:9", "b")
    assert status == 2 and "not an export folder" in err
    os.makedirs(tmp_path / "x")
    folder.write_header(str(tmp_path / "x"), "b", {}, "here")
    status, _, err = run("import", str(tmp_path / "x"), "http://127.0.0.1:9", "b")
    assert status == 2 and "cannot reach" in err


def test_progress_plain_lines_and_terminal_bar():
    now = [0.0]
    out = io.StringIO()
    p = Progress(out, tty=False, clock=lambda: now[0], interval=10)
    p.start("export b/e", 3)
    p.advance(records=1, nbytes=100)
    assert out.getvalue() == ""
    now[0] = 11
    p.advance(records=1, nbytes=100)
    p.finish()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("export b/e: 2/3 records, 200 bytes") and lines[1].endswith("done")
    tty = io.StringIO()
    p = Progress(tty, tty=True)
    p.start("import b/e", 2, 1000)
    p.advance(records=1, nbytes=500)
    p.finish()
    assert "import b/e" in tty.getvalue() and "\r" in tty.getvalue()
    quiet = io.StringIO()
    p = Progress(quiet, enabled=False, tty=False)
    p.start("x", 1)
    p.advance(1, 1)
    p.finish()
    assert quiet.getvalue() == ""


def test_token_from_option_or_environment(tmp_path, daemons, monkeypatch):
    daemon = daemons("auth", RS_API_TOKEN="admin-secret")
    url = f"http://127.0.0.1:{daemon.port}"
    auth = {"Authorization": "Bearer admin-secret"}
    assert request(daemon.port, "POST", "/api/v1/b/data", headers=auth)[0] == 200
    assert request(daemon.port, "POST", "/api/v1/b/data/e?ts=1", b"x", auth)[0] == 200
    monkeypatch.delenv("RS_API_TOKEN", raising=False)
    status, _, err = run("export", url, "data", str(tmp_path / "one"))
    assert status == 2 and "401" in err and "no token given" in err, err
    status, _, err = run("export", url, "data", str(tmp_path / "one"), "--token", "admin-secret")
    assert status == 0, err
    monkeypatch.setenv("RS_API_TOKEN", "admin-secret")
    status, out, err = run("import", str(tmp_path / "one"), url, "copy", "--quiet")
    assert status == 0 and err == "", err
    _, _, body = request(daemon.port, "GET", "/api/v1/b/copy/e?ts=1", headers=auth)
    assert body == b"x"
