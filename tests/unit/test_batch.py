"""
The batch protocol without sockets (its headers: test_batch_wire): the
batched-write sink over a real engine (records cut out of arbitrary chunks,
per-record errors, backpressure, abort), the batched-read collector and the
multi-range sender.
"""

import hashlib
import os
import random

import pytest

from twisted.internet.defer import CancelledError

from reduct_twisted.config import Config
from reduct_twisted.errors import NoContent
from reduct_twisted.http import batch, sinks
from reduct_twisted.http.routes_records import drive
from reduct_twisted.http.batch import BatchLimits, BatchReader, BatchWriteSink, Wait
from reduct_twisted.wire import BatchedRecord, error_header
from reduct_twisted.http.producers import CHUNK, RangeSender
from reduct_twisted.storage import PENDING, SMALL_RECORD_MAX, writer
from reduct_twisted.storage.when import IoOverrides
from reduct_twisted.storage.content import ContentReader
from reduct_twisted.storage.records import Record, RecordView
from reduct_twisted.storage.testing import write_record
from tests.unit.test_sinks import ImmediateReactor, ManualPool, Transport, results

# -- batched write ---------------------------------------------------------------------


def make_sink(engine, records, pool=None, transport=None):
    return BatchWriteSink(
        engine, ImmediateReactor(), pool or ManualPool(), transport or Transport(),
        "b", "e", sorted(records, key=lambda r: r.ts),
    )


def announce(contents):
    """BatchedRecords for ``{ts: data}``, the body in ts order."""
    records = [BatchedRecord(ts, len(data), "t", {"n": str(ts)}) for ts, data in contents.items()]
    return records, b"".join(contents[ts] for ts in sorted(contents))


def stored(engine, ts):
    view = engine.read("b", "e", ts)
    with open(view.path, "rb") as f:
        f.seek(view.record.offset)
        return f.read(view.record.size), view


@pytest.mark.parametrize("chunking", ["1-byte", "7-byte", "random", "whole"])
def test_records_are_cut_out_of_any_chunking(engine, chunking):
    """Whatever the chunk boundaries, every record gets exactly its bytes and CRC."""
    engine.create_bucket("b", None)
    contents = {
        1: b"", 2: b"abc", 3: b"", 4: os.urandom(5000), 5: b"z",
        6: os.urandom(SMALL_RECORD_MAX + 1) if chunking != "1-byte" else b"q" * 3000, 7: b"",
    }
    records, body = announce(contents)
    pool = ManualPool()
    sink = make_sink(engine, records, pool)
    rnd = random.Random(5)
    pos = 0
    while pos < len(body):
        size = {"1-byte": 1, "7-byte": 7, "whole": len(body)}.get(chunking) or rnd.randint(1, 70000)
        sink.write(body[pos:pos + size])
        pos += size
        pool.run_all()
    d = sink.finish()
    pool.run_all()
    assert results(d) == {}
    for ts, data in contents.items():
        got, view = stored(engine, ts)
        assert got == data, ts
        assert view.record.digest == hashlib.sha256(data).digest()
        assert view.record.crc is None  # its SHA-256 checks it alone
        assert view.record.labels == {"n": str(ts)} and view.record.content_type == "t"


def test_refused_records_are_skipped_and_reported(engine):
    """A duplicate (small or large) becomes an error; its bytes go nowhere."""
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 2, b"old")
    write_record(engine, "b", "e", 3, b"old large")
    contents = {1: b"one", 2: b"new", 3: os.urandom(SMALL_RECORD_MAX + 5), 4: b"four"}
    records, body = announce(contents)
    pool = ManualPool()
    sink = make_sink(engine, records, pool)
    sink.write(body)
    d = sink.finish()
    pool.run_all()
    errors = results(d)
    assert {ts: (e.status, e.message) for ts, e in errors.items()} == {
        2: (409, "A record with timestamp 2 already exists"),
        3: (409, "A record with timestamp 3 already exists"),
    }
    assert [stored(engine, ts)[0] for ts in (1, 2, 3, 4)] == [b"one", b"old", b"old large", b"four"]
    assert error_header(errors[2]) == b"409,A record with timestamp 2 already exists"


def test_abort_keeps_complete_records_and_drops_the_rest(engine):
    """
    The client vanishes inside record 3: records 1 and 2 (2 still being
    flushed in the pool) are stored, 3 is gone, 4 was never begun.
    """
    engine.create_bucket("b", None)
    contents = {1: b"small", 2: os.urandom(SMALL_RECORD_MAX + 1), 3: os.urandom(100), 4: b"x"}
    records, body = announce(contents)
    pool = ManualPool()
    sink = make_sink(engine, records, pool)
    sink.write(body[:len(contents[1]) + len(contents[2]) + 50])
    sink.abort()
    assert sink.done
    pool.run_all()  # record 2's flush ends after the abort: it commits
    assert stored(engine, 1)[0] == b"small"
    assert stored(engine, 2)[0] == contents[2]
    assert [b["started"] for b in engine.block_stats("b", "e")] == [0] * len(
        engine.block_stats("b", "e"))
    for ts in (3, 4):
        with pytest.raises(Exception) as info:
            engine.read("b", "e", ts)
        assert info.value.status == 404
    sink.write(b"more")  # ignored after the abort
    assert results(sink.finish()).check(Exception)


def test_body_longer_than_the_records_fails_after_storing_them(engine):
    """
    Bytes beyond the last record (a chunked body held to
    x-reduct-content-length) fail the batch with 400 'bigger'; the records
    complete before them stay stored.
    """
    engine.create_bucket("b", None)
    records, body = announce({1: b"one", 2: b"two"})
    pool = ManualPool()
    sink = make_sink(engine, records, pool)
    sink.write(body + b"excess")
    d = sink.finish()
    pool.run_all()
    failure = results(d)
    assert (failure.value.status, failure.value.message) == (
        400, "Content is bigger than in content-length")
    assert [stored(engine, ts)[0] for ts in (1, 2)] == [b"one", b"two"]


def test_body_shorter_than_the_records_fails_with_upstream_text(engine):
    """A body ending inside a record: 400 with the 1.17.4 text; that record is not stored."""
    engine.create_bucket("b", None)
    records, body = announce({1: b"one", 2: b"two"})
    pool = ManualPool()
    sink = make_sink(engine, records, pool)
    sink.write(body[:-1])
    d = sink.finish()
    pool.run_all()
    failure = results(d)
    assert (failure.value.status, failure.value.message) == (
        400, "Content is shorter than expected: no more data to read")
    assert stored(engine, 1)[0] == b"one"
    with pytest.raises(Exception) as info:
        engine.read("b", "e", 2)
    assert info.value.status == 404


def test_large_records_stream_with_backpressure(engine):
    """
    A record above the high-water mark pauses the client while its queue is
    full; the gate resumes only when every pausing record has drained.
    """
    engine.create_bucket("b", None)
    size = sinks.HIGH_WATER + (2 << 20)
    contents = {1: b"a" * size, 2: b"b" * size}
    records, body = announce(contents)
    pool, transport = ManualPool(), Transport()
    sink = make_sink(engine, records, pool, transport)
    chunk = 1 << 20
    for pos in range(0, size, chunk):
        sink.write(body[pos:pos + chunk])
    assert transport.events == ["pause"]
    # the chunk that ends record 1 and begins record 2 (both sinks queue)
    sink.write(body[size:size + chunk])
    assert transport.events == ["pause"]
    pool.run_all()
    assert transport.events == ["pause", "resume"]
    for pos in range(size + chunk, len(body), chunk):
        sink.write(body[pos:pos + chunk])
    d = sink.finish()
    pool.run_all()
    assert results(d) == {}
    assert transport.events.count("pause") == transport.events.count("resume")
    assert stored(engine, 2)[0] == contents[2]


def test_disk_error_in_a_large_record_is_its_error(engine, monkeypatch):
    """
    A private segment the disk refuses (ENOSPC) fails its record with a 507
    header; the records around it are stored and no descriptor is left.
    """
    import errno

    engine.create_bucket("b", None)

    def full_disk(fd, chunks, crc=0, sha=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer, "write_chunks", full_disk)
    contents = {1: b"before", 2: os.urandom(SMALL_RECORD_MAX + 1), 3: b"after"}
    records, body = announce(contents)
    pool = ManualPool()
    sink = make_sink(engine, records, pool)
    sink.write(body[:1000])
    pool.run_all()  # the first write of record 2 fails ...
    sink.write(body[1000:])  # ... so its end closes the file at once
    d = sink.finish()
    pool.run_all()
    errors = results(d)
    assert {ts: (e.status, e.message) for ts, e in errors.items()} == {
        2: (507, "Failed to write record: No space left on device")
    }
    assert stored(engine, 1)[0] == b"before" and stored(engine, 3)[0] == b"after"
    assert not any(b["started"] for b in engine.block_stats("b", "e"))


def test_pause_gate_waits_for_every_pauser():
    transport = Transport()
    gate = sinks.PauseGate(transport)
    a, b = gate.handle(), gate.handle()
    a.pauseProducing()
    b.pauseProducing()
    a.resumeProducing()
    assert transport.events == ["pause"]
    a.resumeProducing()
    b.resumeProducing()
    b.resumeProducing()
    assert transport.events == ["pause", "resume"]


# -- batched read --------------------------------------------------------------------


def fill(engine, count, size=3, entry="e"):
    engine.create_bucket("b", None)
    for ts in range(1, count + 1):
        write_record(engine, "b", entry, ts, bytes([ts % 256]) * size, labels={"i": str(ts)})


def test_reader_takes_up_to_the_record_cap(engine):
    fill(engine, 10)
    qid = engine.create_query("b", "e")
    reader = BatchReader(engine, "b", "e", qid, head=False, limits=BatchLimits(max_records=4))
    assert reader.step() is reader
    assert [name for name, _ in reader.headers] == [b"x-reduct-time-%d" % ts for ts in (1, 2, 3, 4)]
    assert reader.headers[0][1] == b"3,application/octet-stream,i=1"
    assert reader.size == 12 and reader.last is False
    # the four records are back to back in one shared segment: one range, one descriptor
    content = reader._reader
    assert len(content.ranges) == 1 and content.ranges[0][1:] == (0, 12)
    assert content.file_count == 1
    reader.close()
    assert reader._reader is None and content.file_count == 0
    tail = BatchReader(engine, "b", "e", qid, head=False)
    assert tail.step() is tail and len(tail.headers) == 6 and tail.last is True
    tail.close()


def test_reader_size_and_metadata_caps(engine):
    fill(engine, 10, size=100)
    qid = engine.create_query("b", "e")
    reader = BatchReader(engine, "b", "e", qid, head=False, limits=BatchLimits(max_size=250))
    reader.step()
    assert len(reader.headers) == 3 and reader.size == 300  # closed after crossing
    reader.close()
    head = BatchReader(engine, "b", "e", qid, head=True,
                       limits=BatchLimits(max_size=250, max_metadata=100))
    head.step()
    # HEAD ignores the size cap, not the metadata cap (closed after the
    # header that crosses it, ~49 bytes each); it opens no file
    assert len(head.headers) == 3 and head.metadata > 100 and head._reader is None


def test_reader_yields_to_the_reactor_on_long_scans(engine, monkeypatch):
    """When its time slice is used up the reader returns PENDING and resumes later."""
    fill(engine, 5)
    qid = engine.create_query("b", "e")
    monkeypatch.setattr(batch, "SCAN_SLICE", -1.0)
    reader = BatchReader(engine, "b", "e", qid, head=True)
    steps = 1
    while reader.step() is PENDING:
        steps += 1
    assert steps == 6 and len(reader.headers) == 5 and reader.last


def test_reader_errors_before_and_after_records(engine):
    fill(engine, 3)
    with pytest.raises(Exception) as info:
        BatchReader(engine, "b", "e", 99, head=False).step()
    assert info.value.status == 404
    qid = engine.create_query("b", "e")
    reader = BatchReader(engine, "b", "e", qid, head=False, limits=BatchLimits(max_records=1))
    reader.step()
    engine.remove_bucket("b")
    # what was taken is still sent (descriptors stay valid); the next read reports the error
    reader.limits = BatchLimits(max_records=5)
    assert reader.step() is reader and len(reader.headers) == 1
    reader.close()


class ScriptedEngine:
    """
    ``query_next`` answers from a script (views, ``PENDING``, ``None``), on
    a Clock: drives the reader's time limits without a real scan.
    """

    def __init__(self, clock, script, alive=True) -> None:
        self.clock = clock
        self.script = list(script)
        self.alive = alive

    def query_next(self, bucket, entry, qid):
        return self.script.pop(0) if self.script else None

    def query_options(self, bucket, entry, qid):
        return {"only_metadata": False, "io": None} if self.alive else None


def view(ts):
    return RecordView(Record(ts, "seg", 0, 3, "text/plain", {}), "/nonexistent")


def test_limits_from_config_and_directives():
    """The server's io_batch_* settings, with a query's directives (µs timeouts) on top."""
    config = Config(io_batch_max_records=3, io_batch_max_size=100, io_batch_max_metadata_size=50,
                    io_batch_timeout=2.0, io_batch_records_timeout=0.5)
    limits = BatchLimits.from_config(config)
    assert limits == BatchLimits(3, 100, 50, 2.0, 0.5)
    assert BatchLimits.from_config(Config()) == BatchLimits()
    assert limits.overridden(None) is limits
    assert limits.overridden(IoOverrides()) is limits
    io = IoOverrides(batch_records=7, batch_size=9, batch_timeout_us=250_000,
                     record_timeout_us=0, io_timeout_us=5)
    assert limits.overridden(io) == BatchLimits(7, 9, 50, 0.25, 0.0)


def test_batch_timeout_answers_what_was_gathered(clock):
    """Once a batch holding records has gathered for ``timeout`` seconds, it is answered."""
    script = [view(1), PENDING, view(2), PENDING, view(3), PENDING, view(4)]
    engine = ScriptedEngine(clock, script)
    reader = BatchReader(engine, "b", "e", 1, head=True,
                         limits=BatchLimits(timeout=5.0, record_timeout=10.0))
    assert reader.step() is PENDING
    clock.advance(3)
    assert reader.step() is PENDING
    clock.advance(2.5)
    assert reader.step() is reader
    assert [name for name, _ in reader.headers] == [b"x-reduct-time-%d" % t for t in (1, 2, 3)]
    assert reader.last is False


def test_record_timeout_answers_a_batch_whose_next_record_is_slow(clock):
    """A batch holding records that scans ``record_timeout`` seconds without a match answers."""
    engine = ScriptedEngine(clock, [view(1)] + [PENDING] * 10)
    reader = BatchReader(engine, "b", "e", 1, head=True,
                         limits=BatchLimits(timeout=100.0, record_timeout=1.0))
    clock.advance(7)  # time before the first record counts for neither limit
    assert reader.step() is PENDING
    clock.advance(0.6)
    assert reader.step() is PENDING
    clock.advance(0.6)
    assert reader.step() is reader and len(reader.headers) == 1


def test_empty_batch_scans_on(clock):
    """Without a record the scan goes on past both limits (a 204 ends a client's reading)."""
    engine = ScriptedEngine(clock, [PENDING] * 3 + [view(9)])
    reader = BatchReader(engine, "b", "e", 1, head=True,
                         limits=BatchLimits(timeout=1.0, record_timeout=1.0))
    for _ in range(3):
        assert reader.step() is PENDING
        clock.advance(10)
    assert reader.step() is reader and reader.last is True
    assert [name for name, _ in reader.headers] == [b"x-reduct-time-9"]


def test_continuous_query_waits_for_a_new_record(engine, clock):
    """
    An empty batched read of a continuous query polls for up to
    ``record_timeout`` seconds; a record written meanwhile is answered.
    """
    fill(engine, 2)
    qid = engine.create_query("b", "e", continuous=True)
    limits = BatchLimits(record_timeout=1.0)
    first = BatchReader(engine, "b", "e", qid, head=True, limits=limits)
    assert first.step() is first and len(first.headers) == 2 and first.last is True

    reader = BatchReader(engine, "b", "e", qid, head=True, limits=limits)
    assert reader.step() == Wait(batch.WAIT_POLL)
    clock.advance(0.5)
    write_record(engine, "b", "e", 3, b"new")
    assert reader.step() is reader
    assert [name for name, _ in reader.headers] == [b"x-reduct-time-3"]

    idle = BatchReader(engine, "b", "e", qid, head=True, limits=limits)
    assert idle.step() == Wait(batch.WAIT_POLL)
    clock.advance(0.98)
    assert idle.step() == Wait(pytest.approx(0.02))
    clock.advance(0.02)
    assert idle.step() is idle and idle.headers == []
    with pytest.raises(NoContent):
        idle.answer(idle, None)
    # the continuous query stays for the next read
    assert engine.query_options("b", "e", qid) is not None


def test_ended_query_answers_at_once(engine):
    """A query that is not continuous and has nothing left answers (204) without waiting."""
    fill(engine, 1)
    qid = engine.create_query("b", "e", start=5, stop=9)
    reader = BatchReader(engine, "b", "e", qid, head=True)
    assert reader.step() is reader and reader.headers == []


def test_drive_waits_as_told(clock):
    """``drive`` calls a step again at once after PENDING, after ``s`` seconds after Wait(s)."""
    script = [PENDING, Wait(2.0), "done"]
    calls = []

    def step():
        calls.append(clock.seconds())
        return script.pop(0)

    d = drive(clock, step)
    assert calls == [0.0]
    clock.advance(0)
    assert calls == [0.0, 0.0]
    clock.advance(1.9)
    assert not d.called
    clock.advance(0.1)
    assert calls == [0.0, 0.0, 2.0] and results(d) == "done"


def test_drive_cancel_drops_the_wait(clock):
    """Cancelling (the client went away) leaves no delayed call behind."""
    d = drive(clock, lambda: Wait(5.0))
    d.addErrback(lambda f: f.trap(CancelledError))
    d.cancel()
    assert clock.getDelayedCalls() == []


# -- multi-range sender --------------------------------------------------------------


class FakeRequest:
    method = b"GET"

    def __init__(self):
        self.data = []
        self.producer = None

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.data.append(data)
        if self.producer is not None:
            self.producer.pauseProducing()


def _content(*ranges):
    """A storage reader over ``(path, offset, size)`` ranges, and its descriptors."""
    views = [RecordView(Record(i, "blk", offset, size, "t", {}), str(path))
             for i, (path, offset, size) in enumerate(ranges)]
    reader = ContentReader.of(views)
    return reader, [f._fd for f in reader._files.values()]


def test_range_sender_sends_ranges_in_order_and_closes_descriptors(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(os.urandom(CHUNK * 2 + 5))
    b.write_bytes(os.urandom(100))
    reader, fds = _content((a, 3, CHUNK + 10), (b, 0, 0), (b, 50, 50), (a, 0, 3))
    request = FakeRequest()
    done = []
    RangeSender(request, reader).start().addCallback(done.append)
    while request.producer is not None:
        request.producer.resumeProducing()
    assert done == [None]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    assert b"".join(request.data) == data_a[3:CHUNK + 13] + data_b[50:] + data_a[:3]
    assert len(fds) == 2
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_range_sender_stopped_midway_closes_descriptors(tmp_path):
    path = tmp_path / "a"
    path.write_bytes(os.urandom(CHUNK * 3))
    reader, [fd] = _content((path, 0, CHUNK), (path, CHUNK * 2, CHUNK))
    request = FakeRequest()
    sender = RangeSender(request, reader)
    done = []
    sender.start().addCallback(done.append)
    sender.stopProducing()
    sender.resumeProducing()
    assert done == [None] and len(request.data) == 1
    with pytest.raises(OSError):
        os.fstat(fd)
