"""
The leaf variants of an entry log made for real by the daemon (``twistd``
over real sockets) and checked by ``reduct-twisted verify`` as a subprocess:
records written with ``integrity=off``, the last one removed, one record's
content damaged on disk, then a start with ``integrity=log``: the backfill
cannot hash the damaged record (its leaf has ``"digest": null``), the removed
record's number has no record left (the gap leaf, listed as skipped), and a
record beyond 2**53 - 1 µs has its timestamp as a string in the leaf.
"""

import json
import os
import subprocess
import sys
import time

from tests.conftest import REPO_ROOT
from tests.integration.daemon import Connection, Twistd

B = "bkt"
BIG_TS = 2**60


def _content(n: int) -> bytes:
    return b"variant-record-%02d|" % n * 8


def _verify(port: int, *args) -> tuple:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RS_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "reduct_twisted.verifier.cli", "verify", f"http://127.0.0.1:{port}", B, "e",
         "--quiet", *args],
        capture_output=True, timeout=120, env=env, check=False,
    )
    return done.returncode, done.stdout.decode() + done.stderr.decode()


def test_verify_a_log_with_a_null_digest_a_gap_and_a_big_timestamp(tmp_path):
    data_path = tmp_path / "data"
    stamps = [1000 + n for n in range(1, 7)] + [BIG_TS, 2000]  # numbers 1..8
    daemon = Twistd(data_path, environ={"RS_INTEGRITY": "off"})
    port = daemon.start()
    try:
        with Connection(port) as conn:
            assert conn.request("POST", f"/api/v1/b/{B}", b"{}").status == 200
            for n, ts in enumerate(stamps, 1):
                assert conn.request("POST", f"/api/v1/b/{B}/e?ts={ts}", _content(n)).status == 200
            # the record holding the greatest number goes before any log exists
            assert conn.request("DELETE", f"/api/v1/b/{B}/e?ts=2000").status == 200
    finally:
        daemon.stop()
    entry_dir = data_path / B / "e"
    assert not (entry_dir / ".log").exists()
    [block] = [p for p in entry_dir.iterdir() if _content(3) in p.read_bytes()]
    raw = bytearray(block.read_bytes())
    raw[raw.find(_content(3)) + 5] ^= 0x01  # record 3 fails its CRC: no digest for it
    block.write_bytes(bytes(raw))

    daemon = Twistd(data_path)  # integrity=log, the default
    port = daemon.start()
    try:
        with Connection(port) as conn:
            deadline = time.monotonic() + 30
            while True:  # the log starts once the backfill pass has ended
                resp = conn.request("GET", f"/api/v1/log/{B}/e")
                assert resp.status == 200, resp.body
                if json.loads(resp.body)["tree_size"] == 8:
                    break
                assert time.monotonic() < deadline, "the log never caught up"
                time.sleep(0.05)
            resp = conn.request("GET", f"/api/v1/records/{B}/e?include_removed=true")
            items = json.loads(resp.body)["data"]
            stored = json.loads(conn.request("GET", f"/api/v1/records/{B}/e").body)
        assert [i["number"] for i in stored["data"]] == list(range(1, 8)) and stored["meta"]["total"] == 7
        assert [i["number"] for i in items] == list(range(1, 9))
        assert items[7] == {"number": 8, "state": "skipped"}
        assert items[2]["digest"] is None and items[2]["state"] == "stored"
        assert items[6]["timestamp"] == BIG_TS and items[6]["digest"] is not None
        assert all(i["digest"] for i in items[:2] + items[3:7])

        code, text = _verify(port)
        assert code == 1, text
        assert f"FAILED {B}/e #3 ts=1003" in text and "[digest] no digest in the log" in text
        code, text = _verify(port, "--allow-undigested")
        assert code == 0, text
        assert ("8 records listed, 6 contents checked, 8 inclusion proofs, "
                "1 undigested (content not verified), 1 skipped numbers (no record)") in text
        assert daemon.alarms() == []
    finally:
        daemon.stop()
