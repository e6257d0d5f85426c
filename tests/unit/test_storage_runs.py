"""
Batch-granular writes (storage/runs.py): the small records of a batch are
written with one ``pwritev`` per run of contiguous content and one ``.meta``
append per block at the flush; nothing is visible before; every path that
reads, rewrites or removes block files flushes first; a disk error in the
middle of a run fails exactly the records it stopped.
"""

import errno
import hashlib
import os

import pytest

from reduct_twisted.errors import Conflict, InsufficientStorage, NotFound, TooEarly
from reduct_twisted.http.batch import BatchWriteSink
from reduct_twisted.storage import PENDING
from reduct_twisted.storage.engine import StorageEngine
from reduct_twisted.storage.testing import read_content, write_record
from reduct_twisted.wire import BatchedRecord
from tests.unit.test_sinks import ImmediateReactor, ManualPool, Transport, results


class Syscalls:
    """Counts ``os.pwritev`` (content) and ``os.pwrite`` (``.meta`` lines) by file suffix;
    ``fail_pwritev_after``: the n-th ``pwritev`` writes half its bytes, then fails."""

    def __init__(self, monkeypatch) -> None:
        self.pwritev, self.pwrite = [], []
        self.fail_pwritev, self.fail_meta = None, False
        real_pwritev, real_pwrite = os.pwritev, os.pwrite

        def name(fd):
            return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))

        def pwritev(fd, buffers, offset):
            self.pwritev.append((name(fd), offset, sum(map(len, buffers))))
            if self.fail_pwritev is not None:
                if self.fail_pwritev == "half":
                    self.fail_pwritev = "now"
                    data = b"".join(buffers)
                    return real_pwrite(fd, data[: len(data) // 2], offset)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_pwritev(fd, buffers, offset)

        def pwrite(fd, data, offset):
            self.pwrite.append((name(fd), offset, len(data)))
            if self.fail_meta and name(fd).endswith(".meta"):
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "pwritev", pwritev)
        monkeypatch.setattr(os, "pwrite", pwrite)


def batch(engine, records, entry="e", digests=None):
    """Upload ``[(ts, data)]`` as small records of a batch; :return: ``{ts: error}`` of
    records refused at once or failed at the flush (not flushed yet)."""
    errors = {}
    for ts, data in records:
        try:
            upload = engine.upload("b", entry, ts, len(data), "t", {"k": str(ts)},
                                   digest=(digests or {}).get(ts),
                                   failed=lambda err, ts=ts: errors.__setitem__(ts, err))
        except Exception as exc:
            errors[ts] = exc
            continue
        upload.write(data)
        try:
            upload.commit()
        except Exception as exc:
            errors[ts] = exc
    return errors


def listed(engine, entry="e"):
    return [ts for ts, _ in engine.list_records("b", entry, 0, 1 << 60)]


def test_a_run_is_one_pwritev_and_one_meta_write_per_block(engine, monkeypatch):
    """Ten small records, two blocks: two content writes, two .meta appends; the
    records are invisible until the flush, then stored with CRC, digest and numbers."""
    engine.create_bucket("b", {"max_block_records": 6})
    calls = Syscalls(monkeypatch)
    contents = [(ts, os.urandom(100 + ts)) for ts in range(1, 11)]
    assert batch(engine, contents) == {}
    assert calls.pwritev == [] and calls.pwrite == []
    engine.flush_writes()
    assert [c[0] for c in calls.pwritev] == ["1.blk", "7.blk"]
    assert [c[0] for c in calls.pwrite] == ["1.meta", "7.meta"]
    assert listed(engine) == list(range(1, 11))
    for ts, data in contents:
        view = engine.read("b", "e", ts)
        assert read_content(view) == data
        assert view.record.digest == hashlib.sha256(data).digest()
        assert view.record.number == ts
    engine.flush_writes()  # nothing pending: no write
    assert len(calls.pwritev) == 2 and len(calls.pwrite) == 2


def test_a_run_writes_the_same_files_as_record_by_record(tmp_path, clock):
    """Byte-identical .meta and segments whether records go through a run or one by one."""
    contents = [(ts, os.urandom(50 * ts)) for ts in range(1, 30)]
    trees = []
    for mode in ("run", "single"):
        engine = StorageEngine(str(tmp_path / mode), clock)
        engine.open()
        engine.create_bucket("b", {"max_block_records": 8})
        if mode == "run":
            assert batch(engine, contents) == {}
            engine.flush_writes()
        else:
            for ts, data in contents:
                write_record(engine, "b", "e", ts, data, "t", {"k": str(ts)})
        engine.close()
        directory = tmp_path / mode / "b" / "e"
        trees.append({n: (directory / n).read_bytes() for n in sorted(os.listdir(directory))
                      if n.endswith((".meta", ".blk"))})
    assert trees[0] == trees[1]


def test_refusals_are_immediate_and_the_same(engine):
    """Duplicates (stored or pending), a digest mismatch: refused at once with today's
    errors; the other records of the run are stored."""
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 5, b"old")
    good = hashlib.sha256(b"data3").digest()
    errors = batch(engine, [(1, b"data1"), (1, b"again"), (3, b"data3"), (4, b"data4"),
                            (5, b"dup")],
                   digests={3: good, 4: good})
    assert sorted(errors) == [1, 4, 5]
    assert isinstance(errors[1], Conflict) and isinstance(errors[5], Conflict)
    assert errors[4].status == 400 and "digest mismatch" in errors[4].message
    engine.flush_writes()
    assert listed(engine) == [1, 3, 5]
    assert read_content(engine.read("b", "e", 1)) == b"data1"


def test_pending_records_are_invisible_and_a_read_flushes_first(engine, monkeypatch):
    """A record of the run is not listed by a sync of the dirty set nor half-read:
    a read of it (through ``Entry.find``) flushes the run first and gets it whole."""
    engine.create_bucket("b", None)
    calls = Syscalls(monkeypatch)
    batch(engine, [(1, b"one"), (2, b"two")])
    assert calls.pwrite == []
    view = engine.read("b", "e", 2)  # load_block settles
    assert read_content(view) == b"two"
    assert len(calls.pwritev) == 1 and len(calls.pwrite) == 1
    assert listed(engine) == [1, 2]


def test_a_query_flushes_first(engine):
    engine.create_bucket("b", None)
    batch(engine, [(1, b"one"), (2, b"two")])
    qid = engine.create_query("b", "e")
    got = []
    while True:
        view = engine.query_next("b", "e", qid)
        if view is None:
            break
        if view is not PENDING:
            got.append(read_content(view))
    assert got == [b"one", b"two"]


def test_sync_round_takes_the_pending_records(engine):
    """take_dirty (sync rounds) writes the run first: its files are in the set."""
    engine.create_bucket("b", None)
    engine.take_dirty()
    batch(engine, [(1, b"one")])
    files, _ = engine.take_dirty()
    assert {os.path.basename(f) for f in files} >= {"1.blk", "1.meta"}
    assert listed(engine) == [1]


def test_fifo_eviction_in_the_middle_of_a_run_flushes_first(engine):
    """A FIFO quota evicting the block that holds pending records: they are stored
    and then evicted, exactly as records committed one by one would be."""
    engine.create_bucket("b", {"quota_type": "FIFO", "quota_size": 2500,
                               "max_block_records": 2})
    contents = [(ts, bytes([ts]) * 400) for ts in range(1, 9)]
    errors = batch(engine, contents)
    engine.flush_writes()
    assert errors == {}
    run_listed = listed(engine)

    other = StorageEngine(engine.data_path + "-single", engine.clock)
    other.open()
    other.create_bucket("b", {"quota_type": "FIFO", "quota_size": 2500, "max_block_records": 2})
    for ts, data in contents:
        write_record(other, "b", "e", ts, data, "t", {"k": str(ts)})
    assert run_listed == listed(other) and run_listed[0] > 1
    assert engine.bucket_info("b")["info"]["size"] == other.bucket_info("b")["info"]["size"]
    other.close()


def test_removal_and_label_update_flush_first(engine):
    """Rewriting a .meta (removal, label update) with pending records: they are written
    first, so the rewrite keeps them (or removes them, if asked)."""
    engine.create_bucket("b", None)
    batch(engine, [(1, b"one"), (2, b"two"), (3, b"three")])
    assert engine.remove_stamps("b", "e", [2]) == {}
    batch(engine, [(4, b"four")])
    engine.update_labels("b", "e", {1: {"x": "y"}})
    engine.flush_writes()
    assert listed(engine) == [1, 3, 4]
    assert engine.read("b", "e", 1).record.labels == {"k": "1", "x": "y"}
    reopened = StorageEngine(engine.data_path, engine.clock)
    engine.close()
    reopened.open()
    assert listed(reopened) == [1, 3, 4]
    assert [read_content(reopened.read("b", "e", t)) for t in (1, 3, 4)] == [
        b"one", b"three", b"four"]
    reopened.close()


def test_content_write_fails_in_the_middle_of_a_run(engine, monkeypatch):
    """pwritev writes half the run, then the disk is full: the records wholly
    written are stored, the others fail with 507 and vanish; the next run goes on."""
    engine.create_bucket("b", None)
    calls = Syscalls(monkeypatch)
    calls.fail_pwritev = "half"
    contents = [(ts, bytes([ts]) * 100) for ts in range(1, 11)]  # 1000 bytes
    errors = batch(engine, contents)
    assert errors == {}
    engine.flush_writes()
    assert sorted(errors) == list(range(6, 11))
    assert all(isinstance(e, InsufficientStorage) for e in errors.values())
    assert listed(engine) == [1, 2, 3, 4, 5]
    for ts in range(6, 11):
        with pytest.raises(NotFound):
            engine.read("b", "e", ts)
    assert sum(s for _, s in engine.list_records("b", "e", 0, 100)) == 500
    assert engine.block_stats("b", "e")[0]["started"] == 0
    calls.fail_pwritev = None
    assert batch(engine, [(6, b"again")]) == {}
    engine.flush_writes()
    assert listed(engine) == [1, 2, 3, 4, 5, 6]
    reopened = StorageEngine(engine.data_path, engine.clock)
    engine.close()
    reopened.open()  # unclean: every record checks out
    assert reopened.recovery_report()["dropped_records"] == 0
    assert [read_content(reopened.read("b", "e", t)) for t in (1, 5, 6)] == [
        bytes([1]) * 100, bytes([5]) * 100, b"again"]
    reopened.close()


def test_meta_append_fails_for_one_block_of_a_run(engine, monkeypatch):
    """The .meta append of a block fails: its records of the run fail (500), the
    .meta is as before; numbers are given back; nothing of them is visible."""
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"first")
    calls = Syscalls(monkeypatch)
    calls.fail_meta = True
    errors = batch(engine, [(2, b"two"), (3, b"three")])
    engine.flush_writes()
    assert sorted(errors) == [2, 3] and errors[2].status == 500
    assert listed(engine) == [1]
    calls.fail_meta = False
    assert batch(engine, [(2, b"two")]) == {}
    engine.flush_writes()
    assert engine.read("b", "e", 2).record.number == 2
    with open(os.path.join(engine.data_path, "b", "e", "1.meta"), "rb") as f:
        assert f.read().count(b'"k":"r"') == 2


def test_private_record_in_the_middle_keeps_commit_order(engine):
    """A large record committed while small ones are pending: they come first
    (entry numbers in commit order, as record by record)."""
    engine.create_bucket("b", None)
    batch(engine, [(1, b"a"), (2, b"b")])
    upload = engine.upload("b", "e", 3, None, "t", {})
    upload.write_chunks([b"large"])
    upload.admit(5)
    upload.close()
    upload.commit()
    batch(engine, [(4, b"d")])
    engine.flush_writes()
    assert [engine.read("b", "e", t).record.number for t in (1, 2, 3, 4)] == [1, 2, 3, 4]


def test_abort_of_a_pending_neighbour(engine):
    """A record aborted after others of its run: they stay, it vanishes."""
    engine.create_bucket("b", None)
    batch(engine, [(1, b"one")])
    upload = engine.upload("b", "e", 2, 3, "t", {}, failed=lambda e: None)
    upload.write(b"tw")
    upload.abort()
    engine.flush_writes()
    assert listed(engine) == [1]
    with pytest.raises(NotFound):
        engine.read("b", "e", 2)


def test_removed_entry_with_pending_records(engine):
    """Removing the entry flushes first; the removal then takes everything."""
    engine.create_bucket("b", None)
    batch(engine, [(1, b"one")])
    engine.remove_entry("b", "e")
    engine.flush_writes()
    with pytest.raises(NotFound):
        engine.read("b", "e", 1)


def test_sink_flushes_each_received_chunk(engine, monkeypatch):
    """The batched-write sink: one content write and one .meta append per received
    chunk (its complete small records), a record split across chunks included."""
    engine.create_bucket("b", None)
    calls = Syscalls(monkeypatch)
    contents = {ts: bytes([ts]) * 300 for ts in range(1, 21)}
    records = [BatchedRecord(ts, len(d), "t", {}) for ts, d in contents.items()]
    body = b"".join(contents[ts] for ts in sorted(contents))
    sink = BatchWriteSink(engine, ImmediateReactor(), ManualPool(), Transport(), "b", "e",
                          records)
    sink.write(body[:3000])  # 10 records
    assert len(calls.pwritev) == 1 and len(calls.pwrite) == 1
    assert listed(engine) == list(range(1, 11))
    sink.write(body[3000:3150])  # half of record 11: its bytes, no line
    assert len(calls.pwritev) == 2 and len(calls.pwrite) == 1
    with pytest.raises((NotFound, TooEarly)):
        engine.read("b", "e", 11)
    sink.write(body[3150:])
    assert len(calls.pwritev) == 3 and len(calls.pwrite) == 2
    assert results(sink.finish()) == {}
    assert [read_content(engine.read("b", "e", t)) for t in contents] == list(contents.values())


def test_sink_disk_error_is_the_records_error(engine, monkeypatch):
    """A full disk while a chunk's records are flushed: their x-reduct-error-<ts>."""
    engine.create_bucket("b", None)
    calls = Syscalls(monkeypatch)
    records = [BatchedRecord(ts, 4, "t", {}) for ts in (1, 2, 3)]
    sink = BatchWriteSink(engine, ImmediateReactor(), ManualPool(), Transport(), "b", "e",
                          records)
    sink.write(b"aaaa")
    calls.fail_pwritev = "now"
    sink.write(b"bbbbcccc")
    errors = results(sink.finish())
    assert sorted(errors) == [2, 3] and errors[2].status == 507
    assert listed(engine) == [1]


def test_rename_flushes_first(engine):
    """Pending records are not "being written": the rename goes ahead, with them."""
    engine.create_bucket("b", None)
    batch(engine, [(1, b"one"), (2, b"two")])
    engine.rename_entry("b", "e", "f")
    assert listed(engine, "f") == [1, 2]
    assert read_content(engine.read("b", "f", 2)) == b"two"
    batch(engine, [(3, b"three")], entry="f")
    engine.rename_bucket("b", "c")
    assert [ts for ts, _ in engine.list_records("c", "f", 0, 10)] == [1, 2, 3]


def test_compression_flushes_first(engine):
    """A compression asked for with pending records compresses them too."""
    engine.create_bucket("b", None)
    batch(engine, [(1, b"one" * 100), (2, b"two" * 100)])
    done = engine.compress_blocks("b", "e", 1 << 60)
    assert results(done) == (2, 1)
    assert engine.block_stats("b", "e")[0]["compressed"] == 2
    assert read_content(engine.read("b", "e", 2)) == b"two" * 100


@pytest.mark.parametrize("worker", [False, True])
def test_a_run_longer_than_a_log_batch_logs_every_record_as_written(engine, worker):
    """One run holds more records than a log batch, over two entries: the numbers
    of the whole run are taken before the first record is logged, yet no record
    is logged as a skipped number, none is rebuilt from its block, and each
    entry's head is the RFC 9162 root of its leaves as written."""
    from reduct_twisted.storage import entry_log, leafjob
    from tests import rfc9162

    engine.set_integrity("log")
    engine.create_bucket("b", {"max_block_records": 100})
    jobs = []
    if worker:
        def submit(payload):
            from twisted.internet.defer import succeed
            jobs.append(payload)
            return succeed(leafjob.run_job(payload))
        engine.set_leaf_worker(submit)
    count = entry_log.BATCH + 44
    contents = {entry: [(ts, b"%s-%d" % (entry.encode(), ts)) for ts in range(1, count + 1)]
                for entry in ("e", "f")}
    for ts in range(count):  # interleaved, one run
        for entry in ("e", "f"):
            assert batch(engine, [contents[entry][ts]], entry=entry) == {}
    engine.flush_writes()
    for entry, records in contents.items():
        log = engine._bucket("b").entry(entry)._log
        assert log.catching is None
        leaves = [rfc9162.leaf(n, ts, len(data), "t", {"k": str(ts)}, hashlib.sha256(data).digest())
                  for n, (ts, data) in enumerate(records, 1)]
        assert engine.log_head("b", entry) == (count, rfc9162.MTH(leaves))
        assert log.removed().rank(count + 1) == 0  # no number logged as skipped
    assert bool(jobs) == worker


def test_sink_allocates_a_run_at_once_and_abort_drops_the_rest(engine, monkeypatch):
    """The small records of a batch are allocated together when the first one
    begins (engine.upload_run); a client gone mid-body leaves the complete
    ones stored and nothing else reserved."""
    engine.create_bucket("b", None)
    runs = []
    real = engine.upload_run
    monkeypatch.setattr(engine, "upload_run", lambda *a: runs.append(len(a[2])) or real(*a))
    contents = {ts: bytes([ts]) * 100 for ts in range(1, 21)}
    records = [BatchedRecord(ts, len(d), "t", {}) for ts, d in contents.items()]
    body = b"".join(contents[ts] for ts in sorted(contents))
    sink = BatchWriteSink(engine, ImmediateReactor(), ManualPool(), Transport(), "b", "e",
                          records)
    sink.write(body[:550])  # 5 records and half of the 6th
    assert runs == [20]
    sink.abort()
    assert listed(engine) == [1, 2, 3, 4, 5]
    series = engine._bucket("b").entry("e")
    assert sum(block.started for block in series.blocks) == 0
    assert series.record_count == 5
    assert batch(engine, [(ts, contents[ts]) for ts in range(6, 21)]) == {}  # none left reserved
    engine.flush_writes()
    assert listed(engine) == list(range(1, 21))


def test_a_refused_record_inside_a_run_is_its_own_error(engine):
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 5, b"old")
    contents = {ts: b"%02d" % ts for ts in range(1, 11)}
    records = [BatchedRecord(ts, len(d), "t", {}) for ts, d in contents.items()]
    sink = BatchWriteSink(engine, ImmediateReactor(), ManualPool(), Transport(), "b", "e",
                          records)
    sink.write(b"".join(contents[ts] for ts in sorted(contents)))
    errors = results(sink.finish())
    assert list(errors) == [5] and isinstance(errors[5], Conflict)
    assert listed(engine) == list(range(1, 11))
    assert read_content(engine.read("b", "e", 5)) == b"old"
    assert read_content(engine.read("b", "e", 6)) == b"06"
