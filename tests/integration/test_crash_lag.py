"""
Entry logs left behind their records (``storage/entry_log_lag.py``) and
``kill -9``: the real ``twistd -n reduct`` with ``RS_SYNC=none`` writes I/O
API batches spread over more entries than ``MAX_WAITING``, so most entries
drop their pending leaves; some heads are read on the way.  After a kill -9
and a restart every entry's log is exactly its acknowledged records in
order (RFC 9162 roots computed here from the leaves, ``tests/rfc9162.py``),
consistent with every head answered before the kill, and a relabel made
before the kill did not change a leaf.
"""

import hashlib
import json
import random

import pytest

from reduct_twisted.storage.entry_log import MAX_WAITING
from tests import rfc9162
from tests.integration.daemon import Connection, Twistd

pytestmark = pytest.mark.slow

B = "lag"
ENTRIES = MAX_WAITING * 3
CT = "application/octet-stream"
START = 1_000_000


def _data(e: int, ts: int) -> bytes:
    return b"entry %d at %d" % (e, ts)


def _write_spread(conn, ts: int, entries: list) -> None:
    """One I/O API batch: record ``ts`` in each of ``entries`` (label k=<ts>)."""
    headers = [("x-reduct-entries", ",".join(f"e{e}" for e in entries)),
               ("x-reduct-start-ts", str(ts)), ("content-type", CT)]
    body = b""
    for i, e in enumerate(entries):
        data = _data(e, ts)
        headers.append((f"x-reduct-{i}-0", f"{len(data)},{CT},k={ts}"))
        body += data
    resp = conn.request("POST", f"/api/v1/io/{B}/write", body, headers)
    assert resp.status == 200, resp.body
    assert not [name for name, _ in resp.headers if name.startswith(b"x-reduct-error")]


def _head(conn, e: int) -> dict:
    resp = conn.request("GET", f"/api/v1/log/{B}/e{e}")
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def _leaves(e: int, stamps: list) -> list:
    return [rfc9162.leaf(n, ts, len(_data(e, ts)), CT, {"k": str(ts)},
                         hashlib.sha256(_data(e, ts)).digest())
            for n, ts in enumerate(stamps, 1)]


def _on_disk(data_path, e: int) -> int:
    """Leaves in the entry's log files (``offsets``: 8 bytes a leaf), without the daemon."""
    offsets = data_path / B / f"e{e}" / ".log" / "offsets"
    return offsets.stat().st_size // 8 if offsets.exists() else 0


def test_sigkill_with_entry_logs_left_behind(tmp_path):
    rng = random.Random(11)
    data_path = tmp_path / "data"
    written = {e: [] for e in range(ENTRIES)}
    heads = {}
    daemon = Twistd(data_path, environ={"RS_SYNC": "none"})
    port = daemon.start()
    try:
        with Connection(port) as conn:
            assert conn.request("POST", f"/api/v1/b/{B}").status == 200
            for round_ in range(8):
                ts = START + round_
                entries = rng.sample(range(ENTRIES), ENTRIES * 2 // 3)
                _write_spread(conn, ts, entries)
                for e in entries:
                    written[e].append(ts)
                if round_ in (3, 5):  # heads answered on the way: those entries catch up
                    for e in rng.sample(entries, 5):
                        heads.setdefault(e, []).append(_head(conn, e))
            relabelled = entries[0]
            resp = conn.request("PATCH", f"/api/v1/b/{B}/e{relabelled}?ts={written[relabelled][-1]}",
                                headers=[("x-reduct-label-k", "changed")])
            assert resp.status == 200, resp.body
    finally:
        daemon.kill()
    # At the kill most logs were behind: fewer leaves on disk than records written.
    behind = [e for e in range(ENTRIES) if written[e] and _on_disk(data_path, e) < len(written[e])]
    assert len(behind) > MAX_WAITING
    daemon = Twistd(data_path, environ={"RS_SYNC": "none"})
    port = daemon.start()
    try:
        with Connection(port) as conn:
            finals = {e: _head(conn, e) for e in range(ENTRIES) if written[e]}
            proofs = {(e, head["tree_size"]): json.loads(conn.request(
                "GET", f"/api/v1/log/{B}/e{e}?first={head['tree_size']}"
                       f"&second={finals[e]['tree_size']}").body)
                      for e, seen in heads.items() for head in seen if head["tree_size"]}
        assert daemon.alarms() == []
    finally:
        daemon.stop()
    assert len(finals) > MAX_WAITING * 2
    for e, final in finals.items():
        leaves = _leaves(e, written[e])
        assert final["tree_size"] == len(leaves), e
        assert final["root_hash"] == rfc9162.MTH(leaves).hex(), e
    for (e, size), proof in proofs.items():
        leaves = _leaves(e, written[e])
        old = next(h for h in heads[e] if h["tree_size"] == size)
        path = [bytes.fromhex(h) for h in proof["consistency_path"]]
        assert rfc9162.verify_consistency(size, len(leaves), bytes.fromhex(old["root_hash"]),
                                          rfc9162.MTH(leaves), path), (e, size)
