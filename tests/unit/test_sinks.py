"""
The write sinks without HTTP: water-mark backpressure, commit and abort.
"""

import os

import attr
import pytest

from reduct_twisted.errors import BadRequest
from reduct_twisted.http import sinks
from reduct_twisted.http.sinks import PrivateSegmentSink, SharedSegmentSink, in_pool
from reduct_twisted.storage.upload import RecordWriter


@attr.s
class FakeAlloc:
    path = attr.ib()
    length = attr.ib()
    offset = attr.ib(default=0)
    fd = attr.ib(default=None)
    private = attr.ib(default=True)
    written = attr.ib(default=0)
    ts = attr.ib(default=1)
    crc = attr.ib(default=0)
    sha = attr.ib(default=None)


class FakeEngine:
    def __init__(self):
        self.committed = []
        self.aborted = []

    def commit(self, alloc):
        if alloc.length is not None and alloc.written != alloc.length:
            self.aborted.append(alloc)
            raise BadRequest("Content is shorter than expected")
        self.committed.append(alloc)

    def abort(self, alloc):
        self.aborted.append(alloc)


def private_sink(engine, alloc, reactor, pool, transport):
    """A private sink over the storage writer of ``alloc``, its disk work in ``pool``."""
    return PrivateSegmentSink(RecordWriter(engine, alloc, in_pool(reactor, pool)), transport)


def shared_sink(engine, alloc):
    """A shared sink over the storage writer of ``alloc``."""
    return SharedSegmentSink(RecordWriter(engine, alloc))


class ManualPool:
    """A thread pool whose jobs run only when the test says so."""

    def __init__(self):
        self.jobs = []

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        self.jobs.append((on_result, f, args, kwargs))

    def run_all(self):
        while self.jobs:
            on_result, f, args, kwargs = self.jobs.pop(0)
            try:
                result = f(*args, **kwargs)
            except Exception as exc:
                from twisted.python.failure import Failure

                on_result(False, Failure(exc))
            else:
                on_result(True, result)


class ImmediateReactor:
    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class Transport:
    def __init__(self):
        self.events = []

    def pauseProducing(self):
        self.events.append("pause")

    def resumeProducing(self):
        self.events.append("resume")


def results(d):
    out = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    return out[0]


def test_private_sink_pauses_above_high_water_and_resumes_below_low(tmp_path):
    """Queued bytes beyond HIGH_WATER pause the client; draining below LOW_WATER resumes it."""
    pool, transport, engine = ManualPool(), Transport(), FakeEngine()
    total = sinks.HIGH_WATER + (1 << 20)
    alloc = FakeAlloc(path=str(tmp_path / "seg.blk"), length=total)
    sink = private_sink(engine, alloc, ImmediateReactor(), pool, transport)
    pool.run_all()  # the open
    chunk = b"q" * 65536
    for _ in range(total // len(chunk)):
        sink.write(chunk)
    assert transport.events == ["pause"]
    assert sink.max_queued <= sinks.HIGH_WATER + sinks.MAX_BATCH + len(chunk)
    d = sink.finish()
    pool.run_all()
    assert transport.events == ["pause", "resume"]
    assert results(d) is None
    assert engine.committed == [alloc]
    assert os.path.getsize(alloc.path) == total


def test_private_sink_abort_while_writing_closes_file(tmp_path):
    """Aborting with a write in flight aborts the record and leaks no descriptor."""
    pool, engine = ManualPool(), FakeEngine()
    alloc = FakeAlloc(path=str(tmp_path / "seg.blk"), length=10)
    sink = private_sink(engine, alloc, ImmediateReactor(), pool, Transport())
    pool.run_all()
    fd = sink._writer._fd
    sink.write(b"12345")
    sink.abort()
    pool.run_all()
    assert engine.aborted == [alloc]
    with pytest.raises(OSError):
        os.fstat(fd)


def test_private_sink_short_body_fails_finish(tmp_path):
    """A body shorter than declared fails with a 400 and the record is aborted."""
    pool, engine = ManualPool(), FakeEngine()
    alloc = FakeAlloc(path=str(tmp_path / "seg.blk"), length=10)
    sink = private_sink(engine, alloc, ImmediateReactor(), pool, Transport())
    sink.write(b"123")
    d = sink.finish()
    pool.run_all()
    failure = results(d)
    assert failure.check(BadRequest)
    assert engine.aborted == [alloc] and engine.committed == []


def test_shared_sink_writes_in_place_and_refuses_overflow(tmp_path):
    """Chunks land at the reserved offset; bytes beyond the declared length fail the record."""
    path = tmp_path / "shared.blk"
    path.write_bytes(b"AAAA")
    fd = os.open(path, os.O_RDWR)
    try:
        engine = FakeEngine()
        alloc = FakeAlloc(path=str(path), length=3, offset=4, fd=fd, private=False)
        sink = shared_sink(engine, alloc)
        sink.write(b"xy")
        sink.write(b"z")
        assert results(sink.finish()) is None
        assert path.read_bytes() == b"AAAAxyz"
        alloc2 = FakeAlloc(path=str(path), length=1, offset=7, fd=fd, private=False)
        sink2 = shared_sink(engine, alloc2)
        sink2.write(b"toolong")
        failure = results(sink2.finish())
        assert failure.check(BadRequest)
        assert failure.value.message == "Content is bigger than in content-length"
        assert engine.aborted == [alloc2]
    finally:
        os.close(fd)


def test_private_segment_exists_before_any_thread_work(tmp_path):
    """The segment is created synchronously, so an abort before any pool job
    runs cannot be followed by a late re-creation of the file."""
    pool = ManualPool()
    path = tmp_path / "seg.blk"
    path.write_bytes(b"stale bytes of an older record")
    alloc = FakeAlloc(path=str(path), length=10)
    sink = private_sink(FakeEngine(), alloc, ImmediateReactor(), pool, Transport())
    assert path.exists() and path.stat().st_size == 0
    os.unlink(path)  # what the engine's abort does (via the trash)
    sink.abort()
    pool.run_all()
    assert not path.exists()


def test_shared_sink_finish_now_commits_or_raises(tmp_path):
    """finish_now commits a complete small record at once; a short body
    raises the same error finish() fails with, and the record vanishes."""
    from twisted.internet.task import Clock

    from reduct_twisted.storage import StorageEngine

    engine = StorageEngine(str(tmp_path), Clock())
    engine.open()
    engine.create_bucket("b", None)
    sink = shared_sink(engine, engine.allocate("b", "e", 1, 3, "text/plain", {}))
    sink.write(b"abc")
    sink.finish_now()
    assert sink.done and engine.read_content(engine.read("b", "e", 1)) == b"abc"
    short = shared_sink(engine, engine.allocate("b", "e", 2, 3, "text/plain", {}))
    short.write(b"a")
    with pytest.raises(BadRequest):
        short.finish_now()
    assert short.done
    assert [r[0] for r in engine.list_records("b", "e", 0, 10)] == [1]
    with pytest.raises(BadRequest):
        short.finish_now()


def test_chunked_upload_crossing_hard_quota_is_refused_at_once(tmp_path):
    """
    A chunked upload whose bytes cross a HARD quota: the chunk that crosses
    is not accepted, the record is aborted at once (nothing counted, no
    file), ``refusal`` carries the quota error for the request to answer,
    and a paused client is resumed so the rest of its body can be dropped.
    """
    from twisted.internet.task import Clock

    from reduct_twisted.storage import StorageEngine

    engine = StorageEngine(str(tmp_path / "data"), Clock())
    engine.open()
    engine.create_bucket("b", {"quota_type": "HARD", "quota_size": sinks.HIGH_WATER + 1000})
    alloc = engine.allocate("b", "e", 1, None, "x", {})
    pool, transport = ManualPool(), Transport()
    sink = private_sink(engine, alloc, ImmediateReactor(), pool, transport)
    chunk = b"q" * 65536
    for _ in range(sinks.HIGH_WATER // len(chunk)):
        sink.write(chunk)
    assert sink.refusal is None and transport.events == ["pause"]
    sink.write(chunk)
    assert sink.refusal is not None and sink.refusal.status == 400
    assert sink.refusal.message == "Quota of 'b' exceeded"
    assert sink.done and transport.events == ["pause", "resume"]
    sink.write(chunk)  # the rest is ignored
    pool.run_all()
    assert engine.bucket_info("b")["info"]["size"] == 0
    assert engine._bucket("b").in_flight == 0
    assert not any(name.endswith(".blk") for _, _, names in os.walk(tmp_path) for name in names)
    assert results(sink.finish()).check(BadRequest)
    engine.close()


def _hash_writer(tmp_path, content_length):
    import hashlib

    pool, engine = ManualPool(), FakeEngine()
    alloc = FakeAlloc(path=str(tmp_path / "seg.blk"), length=content_length, sha=hashlib.sha256())
    writer = RecordWriter(engine, alloc, in_pool(ImmediateReactor(), pool))
    pool.run_all()  # the open
    return pool, alloc, writer


def _run_jobs(pool, name):
    """Run the queued pool jobs called ``name`` only (in order)."""
    kept = []
    while pool.jobs:
        job = pool.jobs.pop(0)
        if job[1].__name__ == name:
            pool.jobs[:0] = kept
            kept = []
            on_result, f, args, kwargs = job
            on_result(True, f(*args, **kwargs))
        else:
            kept.append(job)
    pool.jobs[:0] = kept


def test_the_hash_goes_on_beside_the_writes_and_close_waits_for_it(tmp_path):
    """A private segment's SHA-256 is computed by its own pool jobs, in content
    order: a batch's write answers without waiting for its hash; close() fires
    once every hash is done; CRC and SHA-256 cover the content in order."""
    import hashlib
    import zlib

    content = os.urandom(5 * 65536 + 7)
    pool, alloc, writer = _hash_writer(tmp_path, len(content))
    written = []
    for start in range(0, len(content), 65536):
        chunk = content[start:start + 65536]
        writer.admit(len(chunk))
        d = writer.write_chunks([chunk])
        d.addBoth(written.append)
        _run_jobs(pool, "_write_chunks")  # the write is done, its hash not yet
        assert written[-1] is None
    assert [f.__name__ for _, f, _, _ in pool.jobs] == ["_drain"]  # one at a time, in order
    closed = writer.close()
    _run_jobs(pool, "close_segment")
    done = []
    closed.addBoth(done.append)
    assert done == []  # waits for the hashing
    pool.run_all()
    assert done == [None]
    assert alloc.sha.digest() == hashlib.sha256(content).digest()
    assert alloc.crc == zlib.crc32(content)
    with open(alloc.path, "rb") as f:
        assert f.read() == content


def test_a_write_waits_for_a_hash_lagging_too_far(tmp_path, monkeypatch):
    """Beyond HASH_LAG bytes not hashed yet, a batch's write answers only once
    the hashing caught up (the chunks it holds stay bounded)."""
    from reduct_twisted.storage import upload

    monkeypatch.setattr(upload, "HASH_LAG", 100_000)
    pool, alloc, writer = _hash_writer(tmp_path, 3 * 65536)
    written = []
    for _ in range(2):
        writer.admit(65536)
        writer.write_chunks([b"h" * 65536]).addBoth(written.append)
        _run_jobs(pool, "_write_chunks")
    assert written == [None]  # the second batch is 131,072 bytes behind
    pool.run_all()
    assert written == [None, None]
    writer.admit(65536)
    writer.write_chunks([b"h" * 65536]).addBoth(written.append)
    _run_jobs(pool, "_write_chunks")
    assert written == [None, None, None]  # caught up: no wait
    closed = writer.close()
    pool.run_all()
    assert results(closed) is None


def test_one_hash_job_takes_the_batches_queued_while_it_runs(tmp_path):
    """A hash job goes on with the batches queued while it ran, without a
    job (a turn of the reactor) per batch; a batch queued after it saw the
    queue empty starts the next job, so none is left unhashed."""
    import hashlib

    from reduct_twisted.storage import upload

    pool, alloc, writer = _hash_writer(tmp_path, 4 * 65536)
    parts = [os.urandom(65536) for _ in range(4)]
    for part in parts[:2]:
        writer.admit(len(part))
        writer.write_chunks([part])
    _run_jobs(pool, "_write_chunks")
    assert [f.__name__ for _, f, _, _ in pool.jobs] == ["_drain"]
    on_result, drain, _, _ = pool.jobs.pop(0)
    hasher = writer._hasher
    original = hasher._drain

    def drain_then_more():
        original()  # the queue is empty now ...
        writer.admit(len(parts[2]))
        writer.write_chunks([parts[2]])  # ... and a batch comes before the job ends
    on_result(True, drain_then_more())
    assert [f.__name__ for _, f, _, _ in pool.jobs].count("_drain") == 1  # started again
    writer.admit(len(parts[3]))
    writer.write_chunks([parts[3]])  # joins the queued job
    assert [f.__name__ for _, f, _, _ in pool.jobs].count("_drain") == 1
    closed = writer.close()
    pool.run_all()
    assert results(closed) is None
    assert alloc.sha.digest() == hashlib.sha256(b"".join(parts)).digest()
    assert hasher.lag == 0 and upload.HASH_LAG > 0


def test_an_aborted_upload_hashes_no_more_and_closes(tmp_path):
    """After abort, the batches not hashed yet are dropped; close still fires."""
    pool, alloc, writer = _hash_writer(tmp_path, 3 * 65536)
    for _ in range(3):
        writer.admit(65536)
        writer.write_chunks([b"a" * 65536])
    _run_jobs(pool, "_write_chunks")
    writer.abort()
    closed = writer.close()
    pool.run_all()
    assert results(closed) is None
    assert writer._hasher.lag == 3 * 65536  # nothing hashed: dropped before the job ran


def test_a_failed_write_beside_the_hash_fails_with_its_own_error(tmp_path, monkeypatch):
    """The disk's OSError reaches the sink as itself (not wrapped by the gathering)."""
    import errno
    import hashlib

    from reduct_twisted.storage import writer as storage_writer

    def full(fd, chunks, crc=0, sha=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    pool, engine = ManualPool(), FakeEngine()
    alloc = FakeAlloc(path=str(tmp_path / "seg.blk"), length=65536, sha=hashlib.sha256())
    writer = RecordWriter(engine, alloc, in_pool(ImmediateReactor(), pool))
    pool.run_all()
    monkeypatch.setattr(storage_writer, "write_chunks", full)
    writer.admit(65536)
    d = writer.write_chunks([b"x" * 65536])
    pool.run_all()
    failure = results(d)
    assert failure.check(OSError) and failure.value.errno == errno.ENOSPC
    writer.close()
    pool.run_all()


class Connection(Transport):
    bufferSize = 65536


def test_concurrent_uploads_share_one_budget_and_the_share_returns(tmp_path):
    """64 uploads at once each queue at most their share of UPLOAD_BUDGET (and read
    a quarter of it at a time); as they end, the last one gets HIGH_WATER again."""
    before = sinks.UPLOADS.active
    pool, engine = ManualPool(), FakeEngine()
    size = 4 << 20
    conns = [Connection() for _ in range(64)]
    uploads = []
    for i, conn in enumerate(conns):
        alloc = FakeAlloc(path=str(tmp_path / f"seg{i}.blk"), length=size)
        uploads.append(private_sink(engine, alloc, ImmediateReactor(), pool, conn))
    pool.run_all()  # the opens
    share = sinks.UPLOAD_BUDGET // 64
    assert sinks.UPLOADS.high() == max(share, sinks.MIN_HIGH_WATER)
    chunk = b"q" * (64 << 10)
    for sink, conn in zip(uploads, conns):
        while "pause" not in conn.events:
            sink.write(chunk)
        assert conn.bufferSize == max(sinks.MIN_RECV, sinks.UPLOADS.high() // 4)
    assert sum(sink.max_queued for sink in uploads) <= 64 * (sinks.UPLOADS.high() + len(chunk))
    assert sum(sink.max_queued for sink in uploads) <= sinks.UPLOAD_BUDGET + 64 * len(chunk)
    for sink in uploads[:-1]:
        sink.abort()
    assert sinks.UPLOADS.active == before + 1 and sinks.UPLOADS.high() == sinks.HIGH_WATER
    pool.run_all()
    last, conn = uploads[-1], conns[-1]
    assert conn.events == ["pause", "resume"]  # drained below a quarter of its share
    while last._writer._alloc.written + last._queued < size:
        last.write(chunk)
        pool.run_all()
    assert conn.bufferSize == sinks.LARGE_UPLOAD_RECV  # alone: large reads again
    d = last.finish()
    pool.run_all()
    assert results(d) is None and sinks.UPLOADS.active == before
