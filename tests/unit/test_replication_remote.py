"""
The destination client (``replication/remote.py``): the requests it sends
(against an in-memory HTTP server through ``StubTreq``), how it reads the
answers, its timeout, and the streaming body producer.
"""

import base64
import hashlib

import pytest
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock, TaskStopped
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from reduct_twisted.replication.remote import (
    OutgoingBatch,
    RangeBodyProducer,
    RemoteBucket,
    RemoteError,
    failure_error,
)
from reduct_twisted.storage.content import ContentReader
from reduct_twisted.storage.records import Record, RecordView
from reduct_twisted.storage.testing import write_record


class Destination(Resource):
    """Records every request; answers with ``status`` and ``headers`` (or never)."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []
        self.status = 200
        self.headers = {}
        self.silent = False

    def render(self, request):
        self.requests.append((request.method, request.path, request.requestHeaders,
                              request.content.read()))
        if self.silent:
            return NOT_DONE_YET
        request.setResponseCode(self.status)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        return b""


@pytest.fixture
def destination():
    return Destination()


@pytest.fixture
def stub(destination):
    """A treq client talking to ``destination`` in memory (``flush`` pumps the bytes)."""
    agent = RequestTraversalAgent(destination)
    client = HTTPClient(agent)
    client.flush = agent.flush
    return client


def _remote(stub, clock, token="tok", host="http://central:8383/base/"):
    return RemoteBucket(stub, clock, host, "dst", token, timeout=5)


def _wait(d, clock, stub):
    """Run the fake clock and the in-memory connection until ``d`` fires."""
    result = []
    d.addBoth(result.append)
    for _ in range(200):
        if result:
            break
        clock.advance(0)
        stub.flush()
    assert result, "the request did not finish"
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]


def _header(headers, name):
    values = headers.getRawHeaders(name)
    return values[-1] if values else None


def test_write_sends_a_batch(engine, clock, stub, destination):
    """POST …/batch: one x-reduct-time header per record, contents in order, bearer token."""
    engine.create_bucket("src", None)
    write_record(engine, "src", "e", 2, b"two", "text/plain", {"b": "x,y", "a": "1"})
    write_record(engine, "src", "e", 5, b"5" * 100_000, "image/png")
    write_record(engine, "src", "e", 7, b"")
    batch = OutgoingBatch()
    for ts in (2, 5, 7):
        assert batch.add(engine.read("src", "e", ts))
    destination.headers = {b"x-reduct-error-5": b"409,A record with timestamp 5 already exists"}
    try:
        errors = _wait(_remote(stub, clock).write("e", batch), clock, stub)
    finally:
        batch.close()
    assert errors == {5: (409, "A record with timestamp 5 already exists")}
    [(method, path, headers, body)] = destination.requests
    assert (method, path) == (b"POST", b"/base/api/v1/b/dst/e/batch")
    assert body == b"two" + b"5" * 100_000
    assert _header(headers, "authorization") == "Bearer tok"
    assert _header(headers, "content-length") == str(100_003)
    assert _header(headers, "x-reduct-time-2") == "3,text/plain,a=1,b=\"x,y\""
    assert _header(headers, "x-reduct-time-5") == "100000,image/png"
    assert _header(headers, "x-reduct-time-7") == "0,application/octet-stream"
    # Issue #16: each record's SHA-256, for the destination to check.
    for ts, data in ((2, b"two"), (5, b"5" * 100_000), (7, b"")):
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        assert _header(headers, f"x-reduct-digest-{ts}") == f"sha-256=:{digest}:"


def test_per_record_errors_with_huge_numbers(clock, stub, destination):
    """A destination answering with 5,000-digit numbers: skipped or -1, never a ValueError."""
    destination.headers = {
        b"x-reduct-error-" + b"1" * 5000: b"409,huge timestamp",
        b"x-reduct-error-3": b"4" * 5000 + b",huge status",
        b"x-reduct-error-4": b"\xd9\xa4\xd9\xa0\xd9\xa9,arabic digits",
        b"x-reduct-error-5": b" 409 ,padded",
    }
    errors = _wait(_remote(stub, clock).update("e", [(3, {}, []), (4, {}, [])]), clock, stub)
    assert errors == {3: (-1, "huge status"), 4: (-1, "arabic digits"), 5: (409, "padded")}


def test_update_sends_labels_and_removals(clock, stub, destination):
    """PATCH …/batch: ``0,,<labels>``, removed labels with an empty value."""
    remote = _remote(stub, clock, token="")
    updates = [(1, {"z": "1", "a": "b,c"}, ["gone"]), (3, {}, [])]
    assert _wait(remote.update("e", updates), clock, stub) == {}
    [(method, path, headers, body)] = destination.requests
    assert (method, path, body) == (b"PATCH", b"/base/api/v1/b/dst/e/batch", b"")
    assert _header(headers, "authorization") is None
    assert _header(headers, "x-reduct-time-1") == "0,,a=\"b,c\",gone=,z=1"
    assert _header(headers, "x-reduct-time-3") == "0,"


def test_nested_entry_goes_raw_in_the_path(clock, stub, destination):
    """An entry path ``a/b/c`` (and its ``$meta``) is sent raw: ``/b/<dst>/a/b/c/batch`` (1.19)."""
    remote = _remote(stub, clock)
    for entry in ("a/b/c", "a/b/$meta", "$meta"):
        assert _wait(remote.update(entry, [(1, {"k": "v"}, [])]), clock, stub) == {}
    assert [path for _, path, _, _ in destination.requests] == [
        b"/base/api/v1/b/dst/a/b/c/batch",
        b"/base/api/v1/b/dst/a/b/$meta/batch",
        b"/base/api/v1/b/dst/$meta/batch",
    ]


def test_probe_is_a_head_of_the_bucket(clock, stub, destination):
    """The probe asks HEAD /api/v1/b/<bucket>."""
    assert _wait(_remote(stub, clock).probe(), clock, stub) is None
    assert [(m, p) for m, p, _, _ in destination.requests] == [(b"HEAD", b"/base/api/v1/b/dst")]


@pytest.mark.parametrize("status, message, retry", [
    (404, "Bucket 'dst' is not found", True),
    (401, "Invalid token", True),
    (403, "Token 'x' doesn't have write access to bucket 'dst'", True),
    (500, "Internal server error", True),
    (503, None, True),
    (429, None, True),
    (422, "Invalid batched header", False),
    (400, "Content is shorter than expected", False),
])
def test_request_errors(clock, stub, destination, status, message, retry):
    """A non-200 answer is a RemoteError with the destination's text and whether to retry."""
    destination.status = status
    if message is not None:
        destination.headers = {b"x-reduct-error": message.encode()}
    with pytest.raises(RemoteError) as e:
        _wait(_remote(stub, clock).probe(), clock, stub)
    assert (e.value.status, e.value.retry) == (status, retry)
    if message is not None:
        assert e.value.message == message
    else:
        assert e.value.message.startswith(str(status))


def test_silent_destination_times_out(clock, stub, destination):
    """No progress for ``timeout`` seconds: the request is cancelled, status -2 Timeout."""
    destination.silent = True
    d = _remote(stub, clock).probe()
    result = []
    d.addBoth(result.append)
    stub.flush()
    clock.advance(4.9)
    assert result == []
    clock.advance(0.2)
    assert isinstance(result[0], Failure)
    error = result[0].value
    assert (error.status, error.message, error.retry) == (-2, "Timeout", True)
    assert clock.getDelayedCalls() == []


def test_no_connection_is_status_minus_3():
    """A refused connection is counted as upstream's ConnectionError (-3)."""
    error = failure_error(Failure(ConnectionRefusedError("111: Connection refused")), False)
    assert (error.status, error.retry) == (-3, True)
    assert "Connection refused" in error.message


# -- the body producer ----------------------------------------------------------


class Consumer:
    def __init__(self, producer=None, pause_after=None):
        self.data = []
        self.producer = producer
        self.pause_after = pause_after

    def write(self, data):
        self.data.append(data)
        if self.pause_after and len(self.data) == self.pause_after:
            self.producer.pauseProducing()


@pytest.fixture
def ranges(tmp_path):
    """Four ranges of one file (one of them empty); the file is closed afterwards."""
    path = tmp_path / "blk"
    path.write_bytes(bytes(range(256)) * 1000)
    views = [RecordView(Record(i, "blk", offset, size, "t", {}), str(path))
             for i, (offset, size) in enumerate([(10, 150_000), (0, 5), (200_000, 0),
                                                 (255_000, 1000)])]
    reader = ContentReader.of(views)
    yield reader.ranges
    reader.close()


def test_producer_streams_ranges_in_slices(ranges):
    """The ranges go out in order, one slice per reactor turn."""
    clock = Clock()
    turns = []
    call_later = clock.callLater
    clock.callLater = lambda *a: turns.append(a) or call_later(*a)
    producer = RangeBodyProducer(ranges, clock, slice_size=65_536)
    assert producer.length == 151_005
    consumer = Consumer()
    d = producer.startProducing(consumer)
    assert consumer.data == []
    clock.advance(0)
    assert d.called
    source = bytes(range(256)) * 1000
    assert b"".join(consumer.data) == source[10:150_010] + source[:5] + source[255_000:]
    assert [len(c) for c in consumer.data] == [65_536, 65_536, 18_928, 5, 1000]
    assert len(turns) == 6  # one per slice, one to finish


def _paused(ranges):
    """A producer the consumer paused (inside write) after two slices."""
    clock = Clock()
    producer = RangeBodyProducer(ranges, clock, slice_size=1000)
    consumer = Consumer(producer, pause_after=2)
    d = producer.startProducing(consumer)
    clock.advance(0)
    assert len(consumer.data) == 2 and clock.getDelayedCalls() == []
    return clock, producer, consumer, d


def test_producer_pauses_and_resumes(ranges):
    """Paused (by the transport, even inside write), nothing is read until resumed."""
    clock, producer, consumer, d = _paused(ranges)
    producer.resumeProducing()
    clock.advance(0)
    assert d.called and sum(map(len, consumer.data)) == producer.length


def test_producer_stop_and_finish(ranges):
    """Stopped, it fails with TaskStopped and never reads again."""
    clock, producer, consumer, d = _paused(ranges)
    producer.stopProducing()
    failures = []
    d.addErrback(failures.append)
    assert failures[0].check(TaskStopped)
    producer.resumeProducing()
    assert clock.getDelayedCalls() == []
    assert len(consumer.data) == 2


def test_batch_limits(engine):
    """A batch is full at 85 records or 8 MB; the header metadata is bounded too."""
    engine.create_bucket("src", None)
    batch = OutgoingBatch()
    for ts in range(1, 86):
        write_record(engine, "src", "e", ts, b"")
        assert not batch.full()
        assert batch.add(engine.read("src", "e", ts))
    assert batch.full()
    batch.close()
    big = OutgoingBatch()
    write_record(engine, "src", "big", 1, b"", labels={"l": "v" * 300_000})
    write_record(engine, "src", "big", 2, b"", labels={"l": "v" * 300_000})
    assert big.add(engine.read("src", "big", 1))  # alone, it goes however large
    assert not big.add(engine.read("src", "big", 2))
    big.close()
