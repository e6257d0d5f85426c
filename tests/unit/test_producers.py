"""RangeSender over a storage reader: chunked, pausable, re-entrancy safe."""

import os

from reduct_twisted.http import producers
from reduct_twisted.http.producers import RangeSender, send_record
from reduct_twisted.storage.content import ContentReader
from reduct_twisted.storage.records import Record, RecordView
from reduct_twisted.storage.testing import read_content


def _view(path, offset, size):
    return RecordView(Record(1, "blk", offset, size, "application/octet-stream", {}), str(path))


def RecordSender(request, path, offset, size):
    """A sender of one record's range, as ``send_record`` makes for a large record."""
    return RangeSender(request, ContentReader.of([_view(path, offset, size)]))


class Source:
    """What ``send_record`` reads through (the engine's two read methods)."""

    read_content = staticmethod(read_content)
    open_reader = staticmethod(ContentReader.of)


class FakeRequest:
    """A consumer that pauses its producer after every write, like a full socket."""

    method = b"GET"

    def __init__(self, pause_after_write=True):
        self.data = []
        self.producer = None
        self.pause_after_write = pause_after_write

    def registerProducer(self, producer, streaming):
        assert streaming
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.data.append(data)
        if self.pause_after_write and self.producer is not None:
            self.producer.pauseProducing()


def test_sender_writes_one_chunk_per_resume(tmp_path):
    """Each resume sends at most one chunk when the consumer pauses; the whole range arrives."""
    payload = os.urandom(producers.CHUNK * 3 + 17)
    path = tmp_path / "blk"
    path.write_bytes(b"head" + payload)
    request = FakeRequest()
    done = []
    RecordSender(request, str(path), 4, len(payload)).start().addCallback(done.append)
    assert len(request.data) == 1 and not done
    while request.producer is not None:
        request.producer.resumeProducing()
    assert done == [None]
    assert b"".join(request.data) == payload
    assert max(map(len, request.data)) <= producers.CHUNK


def test_stop_producing_finishes_once(tmp_path):
    """stopProducing (client gone) fires done once; a later resume is a no-op."""
    path = tmp_path / "blk"
    path.write_bytes(os.urandom(producers.CHUNK * 2))
    request = FakeRequest()
    sender = RecordSender(request, str(path), 0, producers.CHUNK * 2)
    done = []
    sender.start().addCallback(done.append)
    sender.stopProducing()
    sender.resumeProducing()
    sender.stopProducing()
    assert done == [None] and len(request.data) == 1


def test_small_records_and_head_are_inline(tmp_path):
    """Small records come back as bytes; HEAD sends no body."""
    path = tmp_path / "blk"
    path.write_bytes(b"0123456789")
    view = _view(path, 2, 3)
    assert send_record(FakeRequest(), view, Source()) == b"234"
    head = FakeRequest()
    head.method = b"HEAD"
    assert send_record(head, view, Source()) == b""


def test_sender_that_never_pauses_still_returns_its_deferred(tmp_path):
    """When the consumer takes the whole body at once, start() returns a fired Deferred."""
    payload = os.urandom(producers.INLINE_MAX + 12345)
    path = tmp_path / "blk"
    path.write_bytes(payload)
    request = FakeRequest(pause_after_write=False)
    done = []
    RecordSender(request, str(path), 0, len(payload)).start().addCallback(done.append)
    assert done == [None]
    assert b"".join(request.data) == payload
    assert request.producer is None
