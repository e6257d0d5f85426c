"""
An entry log this build refuses (storage/entry_log_refused.py): a newer
format version, a damaged format file, a lost data file, or a refusal met
while the engine runs.  Reads of the log and the listing raise 409
``Conflict`` naming the entry and the reason (through the route table:
status, ``x-reduct-error``, JSON ``detail``); writes, label updates and
removals of records go on; the problem is reported once; nothing in the
entry's ``.log/`` is changed.
"""

import json
import os
import pathlib

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import Conflict
from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.entry_log import BATCH
from reduct_twisted.storage.entry_log_refused import RefusedLog
from reduct_twisted.storage.listing import ListingSpec
from reduct_twisted.storage.testing import write_record
from tests.unit.test_http_errors import answer, api_stub

CT = "application/octet-stream"
FORMAT = b'{"format":"reduct-twisted-treelog","version":%d,"merkle":true}\n'


def _engine(path, warnings=None):
    engine = StorageEngine(str(path), Clock())
    engine.set_integrity("log", warn=None if warnings is None else warnings.append)
    engine.open()
    return engine


def _write(engine, stamps, entry="e"):
    for ts in stamps:
        write_record(engine, "b", entry, ts, b"content %d" % ts, CT, {"k": str(ts)})


def _snapshot(directory) -> dict:
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = (f.read(), os.stat(path).st_mtime_ns)
    return found


def _reads(engine):
    """Every log and listing read of entry b/e: the Conflict each raises."""
    errors = []
    for call in (lambda: engine.log_head("b", "e"),
                 lambda: engine.log_inclusion("b", "e", 1, 1),
                 lambda: engine.log_consistency("b", "e", 1, 2),
                 lambda: engine.record_item("b", "e", 1)):
        with pytest.raises(Conflict) as info:
            call()
        errors.append(info.value)
    for spec in (ListingSpec(), ListingSpec(stop_ts=10), ListingSpec(digest=bytes(32))):
        found = []
        engine.list_page("b", "e", spec).addErrback(lambda f: f.trap(Conflict) and f.value).addCallback(found.append)
        assert isinstance(found[0], Conflict), found
        errors.append(found[0])
    return errors


def _records_go_on(engine):
    """Writes past a batch of leaves, a label update, a removal, reads: all fine."""
    base = 10 * BATCH  # above the stamps the tests wrote before
    _write(engine, range(base, base + BATCH + 5))
    engine.update_labels("b", "e", {base + 1: {"k": "new"}})
    assert engine.remove_records("b", "e", start=base + 2, stop=base + 3).step() == 1
    entry = engine._bucket("b").entry("e")
    assert entry.find(base + BATCH + 4) is not None and entry.find(base + 2) is None
    assert entry.find(base + 1)[1].labels["k"] == "new"
    engine.take_dirty()  # a sync: the logs' pending leaves first


@pytest.mark.parametrize("damage, reason", [
    (lambda d: pathlib.Path(d, "format").write_bytes(FORMAT % 99),
     "it has format version 99, newer than this build reads (1)"),
    (lambda d: pathlib.Path(d, "format").write_bytes(b"\x00garbage\n"),
     "its format file is damaged (not a tree log format line)"),
    (lambda d: pathlib.Path(d, "format").write_bytes(FORMAT.replace(b"%d", b'"one"')),
     "its format file is damaged (no valid version)"),
    (lambda d: os.unlink(os.path.join(d, "offsets")), "it has lost its offsets file"),
    (lambda d: pathlib.Path(d, "removed").write_bytes(b'{"format": 99}\n5 5\n'),
     "its removed-records file is of a newer format or damaged"),
])
def test_a_refused_log_is_left_alone_and_the_records_go_on(tmp_path, damage, reason):
    engine = _engine(tmp_path)
    engine.create_bucket("b", {"max_block_records": 4})
    _write(engine, range(1, 6))
    assert engine.remove_records("b", "e", start=5, stop=6).step() == 1
    _write(engine, [1], entry="other")
    assert engine.log_head("b", "e")[0] == 5
    engine.close()
    log_dir = tmp_path / "b" / "e" / ".log"
    assert (log_dir / "removed").exists()
    damage(str(log_dir))
    before = _snapshot(log_dir)
    warnings = []
    engine = _engine(tmp_path, warnings)
    for error in _reads(engine):
        assert error.status == 409
        assert error.message == (f"The integrity log of entry 'b/e' cannot be read by this server: {reason}; "
                                 "the entry's records are still kept and served")
    _records_go_on(engine)
    _reads(engine)
    assert engine.log_head("b", "other")[0] == 1  # other entries keep their logs
    engine.close()
    assert len(warnings) == 1 and "Entry log refused: " in warnings[0] and str(log_dir) in warnings[0]
    assert _snapshot(log_dir) == before


def test_a_refusal_met_while_running(tmp_path):
    """The format changes under a running engine with leaves pending: the next
    flush (a sync, a read, the batch's own) sets the log aside, records go on."""
    warnings = []
    engine = _engine(tmp_path, warnings)
    engine.create_bucket("b", {"max_block_records": 4})
    _write(engine, [1])
    engine.close()
    engine = _engine(tmp_path, warnings)
    _write(engine, range(2, 2 + BATCH - 2))  # pending, the log not opened yet
    log_dir = tmp_path / "b" / "e" / ".log"
    (log_dir / "format").write_bytes(FORMAT % 7)
    before = _snapshot(log_dir)
    _write(engine, range(5 * BATCH, 5 * BATCH + 10))  # the batch is full: its flush meets the refusal
    assert isinstance(engine._bucket("b").entry("e")._log, RefusedLog)
    _records_go_on(engine)
    for error in _reads(engine):
        assert "format version 7, newer than this build reads (1)" in error.message
    engine.close()
    assert len(warnings) == 1
    assert _snapshot(log_dir) == before


def test_routes_answer_409_with_the_error_contract(tmp_path):
    clock = Clock()
    engine = _engine(tmp_path)
    engine.create_bucket("b", {})
    _write(engine, [1, 2])
    engine.close()
    (tmp_path / "b" / "e" / ".log" / "format").write_bytes(FORMAT % 99)
    engine = _engine(tmp_path)
    stub = api_stub(engine, clock)
    try:
        for target in ("/api/v1/log/b/e", "/api/v1/log/b/e?proof=1", "/api/v1/log/b/e?first=1&second=2",
                       "/api/v1/records/b/e", "/api/v1/records/b/e?number=1",
                       "/api/v1/records/b/e?where[k]=1&include_removed=true"):
            response, body = answer(stub, "GET", "http://x" + target)
            assert response.code == 409, (target, body)
            [header] = response.headers.getRawHeaders(b"x-reduct-error")
            assert json.loads(body) == {"detail": header.decode()}
            assert "'b/e'" in header.decode() and "format version 99" in header.decode()
        # the records are still served (writes: the real-socket test, test_log_refused.py)
        response, body = answer(stub, "GET", "http://x/api/v1/b/b/e?ts=2")
        assert (response.code, body) == (200, b"content 2")
    finally:
        engine.close()


def test_a_newer_removed_set_met_by_a_removal(tmp_path):
    """The removed set turns out newer when a removal first opens it: the removal
    goes on, the log is set aside, the file is left as it is."""
    warnings = []
    engine = _engine(tmp_path, warnings)
    engine.create_bucket("b", {"max_block_records": 4})
    _write(engine, range(1, 6))
    assert engine.log_head("b", "e")[0] == 5
    log_dir = tmp_path / "b" / "e" / ".log"
    (log_dir / "removed").write_bytes(b'{"format": 2}\n1 1\n')
    before = _snapshot(log_dir)
    assert engine.remove_records("b", "e", start=3, stop=4).step() == 1
    assert engine._bucket("b").entry("e").find(3) is None
    assert isinstance(engine._bucket("b").entry("e")._log, RefusedLog)
    for error in _reads(engine):
        assert "its removed-records file is of a newer format or damaged" in error.message
    _records_go_on(engine)
    engine.close()
    assert len(warnings) == 1 and "format 2 is newer than 1" in warnings[0]
    assert _snapshot(log_dir) == before
