"""
RS_IO_MAX_WRITERS_IN_FLIGHT without HTTP (``http/writers.py``): the slot
counter on a ``task.Clock`` (first come first served, timeout, cancel) and
the sink of a record waiting for its slot (body paused, held bytes replayed,
429, slots released on commit, failure and abort).
"""

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from reduct_twisted.config import Config
from reduct_twisted.errors import BadRequest, ReductError
from reduct_twisted.http.sinks import PauseGate, SharedSegmentSink
from reduct_twisted.http.writers import TOO_MANY_WRITERS, SlotSink, WriterSlots
from reduct_twisted.interfaces import IRecordSink, IUploadSink


class FakeTransport:
    def __init__(self):
        self.paused = False
        self.pauses = 0

    def pauseProducing(self):
        assert not self.paused
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        assert self.paused
        self.paused = False


class FakeUpload:
    """What a ``SharedSegmentSink`` needs of a storage ``RecordWriter``."""

    def __init__(self, length, fail_commit=None):
        self.length = length
        self.data = b""
        self.committed = self.aborted = False
        self.fail_commit = fail_commit

    def overflows(self, size):
        return len(self.data) + size > self.length

    def write(self, data):
        self.data += bytes(data)

    def commit(self):
        if self.fail_commit is not None:
            raise self.fail_commit
        self.committed = True

    def abort(self):
        self.aborted = True


def results(d):
    got = []
    d.addBoth(got.append)
    return got


def slots(limit=1, timeout=5.0):
    clock = Clock()
    return WriterSlots(limit, timeout, clock), clock


# -- the counter ----------------------------------------------------------------------


def test_free_slots_are_taken_without_waiting():
    s, _ = slots(limit=2)
    a, b = s.try_acquire(), s.try_acquire()
    assert a is not None and b is not None
    assert s.try_acquire() is None
    assert s.in_use == 2
    a.release()
    a.release()  # idempotent: counted once
    assert s.in_use == 1


def test_waiters_are_served_first_come_first_served():
    s, clock = slots(limit=1)
    held = s.try_acquire()
    order = []
    waits = [s.wait() for _ in range(3)]
    for i, d in enumerate(waits):
        d.addCallback(lambda slot, i=i: order.append((i, slot)))
    # A newcomer never overtakes the queue, even at the moment a slot frees.
    assert s.try_acquire() is None
    held.release()
    assert [i for i, _ in order] == [0]
    assert s.in_use == 1 and s.waiting == 2
    order[0][1].release()
    order[1][1].release()
    assert [i for i, _ in order] == [0, 1, 2]
    order[2][1].release()
    assert s.in_use == 0 and s.waiting == 0
    assert clock.getDelayedCalls() == []


def test_a_wait_times_out_with_429():
    s, clock = slots(limit=1, timeout=5.0)
    held = s.try_acquire()
    got = results(s.wait())
    clock.advance(4.9)
    assert got == []
    clock.advance(0.1)
    err = got[0].value
    assert isinstance(err, ReductError)
    assert (err.status, err.message) == (429, TOO_MANY_WRITERS)
    assert s.waiting == 0
    # The slot that frees later is not given to the expired waiter.
    held.release()
    assert s.in_use == 0


def test_a_cancelled_wait_leaves_the_queue():
    s, clock = slots(limit=1)
    held = s.try_acquire()
    first = s.wait()
    second = results(s.wait())
    first.addErrback(lambda f: f.trap(CancelledError))
    first.cancel()
    assert s.waiting == 1
    held.release()
    assert s.in_use == 1 and second[0] is not None
    second[0].release()
    assert s.in_use == 0 and clock.getDelayedCalls() == []


def test_acquire_at_once_or_after_a_wait():
    s, _ = slots(limit=1)
    first = results(s.acquire())
    second = results(s.acquire())
    assert len(first) == 1 and second == []
    first[0].release()
    assert len(second) == 1


def test_from_config():
    clock = Clock()
    assert WriterSlots.from_config(Config(), clock) is None
    assert WriterSlots.from_config(Config(io_max_writers_in_flight=0), clock) is None
    s = WriterSlots.from_config(
        Config(io_max_writers_in_flight=3, io_operation_timeout=2.5), clock
    )
    assert (s.limit, s.timeout) == (3, 2.5)
    with pytest.raises(ValueError):
        WriterSlots(0, 1.0, clock)


# -- a record's sink --------------------------------------------------------------------


def opener(uploads, fail=None):
    """``open_sink`` of WriterSlots.open: a small-record sink over a FakeUpload."""

    def open_sink(gate):
        if fail is not None:
            raise fail
        upload = FakeUpload(5)
        uploads.append(upload)
        return SharedSegmentSink(upload)

    return open_sink


def test_a_free_slot_opens_the_record_at_once_and_commit_releases_it():
    s, _ = slots(limit=1)
    uploads = []
    transport = FakeTransport()
    sink = s.open(opener(uploads), PauseGate(transport))
    assert isinstance(sink, SharedSegmentSink) and s.in_use == 1
    sink.write(b"hello")
    sink.finish_now()
    assert uploads[0].committed and s.in_use == 0
    assert transport.pauses == 0


def test_a_refused_record_releases_its_slot():
    s, _ = slots(limit=1)
    with pytest.raises(BadRequest):
        s.open(opener([], fail=BadRequest("no")), PauseGate(FakeTransport()))
    assert s.in_use == 0


@pytest.mark.parametrize("how", ["finish_now", "finish", "abort", "failed commit"])
def test_the_slot_is_released_however_the_record_ends(how):
    s, _ = slots(limit=1)
    fail = ReductError("disk", 500) if how == "failed commit" else None

    def open_sink(gate):
        return SharedSegmentSink(FakeUpload(5, fail_commit=fail))

    sink = s.open(open_sink, PauseGate(FakeTransport()))
    sink.write(b"hello")
    if how == "finish_now":
        sink.finish_now()
    elif how == "abort":
        sink.abort()
    else:
        got = results(sink.finish())
        assert (got[0] is None) == (fail is None)
    assert s.in_use == 0


def test_waiting_record_pauses_the_body_then_gets_its_bytes():
    s, clock = slots(limit=1)
    held = s.try_acquire()
    uploads = []
    transport = FakeTransport()
    sink = s.open(opener(uploads), PauseGate(transport))
    assert isinstance(sink, SlotSink)
    assert verifyObject(IRecordSink, sink) and verifyObject(IUploadSink, sink)
    assert sink.waiting and transport.paused and uploads == []
    # Bytes read before the pause took effect are held, not lost.
    sink.write(b"he")
    sink.write(memoryview(b"llo"))
    got = results(sink.finish())
    assert got == [] and not sink.done
    held.release()
    assert not sink.waiting and not transport.paused
    assert got == [None]
    assert uploads[0].data == b"hello" and uploads[0].committed
    assert s.in_use == 0 and clock.getDelayedCalls() == []


def test_waiting_record_fed_after_its_slot_comes():
    s, _ = slots(limit=1)
    held = s.try_acquire()
    uploads = []
    sink = s.open(opener(uploads), PauseGate(FakeTransport()))
    sink.write(b"he")
    held.release()
    assert uploads[0].data == b"he" and s.in_use == 1
    sink.write(b"llo")
    assert results(sink.finish()) == [None]
    assert uploads[0].committed and s.in_use == 0


def test_timeout_before_the_body_ends_refuses_at_once():
    s, clock = slots(limit=1, timeout=3.0)
    held = s.try_acquire()
    refused = []
    transport = FakeTransport()
    uploads = []
    sink = s.open(opener(uploads), PauseGate(transport), refuse=refused.append)
    sink.write(b"he")
    clock.advance(3.0)
    assert [e.status for e in refused] == [429] and sink.refusal is refused[0]
    assert sink.done and not transport.paused
    sink.write(b"llo")  # the rest is dropped
    failure = results(sink.finish())[0]
    assert failure.value.message == TOO_MANY_WRITERS
    held.release()
    assert uploads == [] and s.in_use == 0


def test_timeout_after_the_body_ends_fails_finish():
    s, clock = slots(limit=1, timeout=3.0)
    held = s.try_acquire()
    refused = []
    sink = s.open(opener([]), PauseGate(FakeTransport()), refuse=refused.append)
    sink.write(b"hello")
    got = results(sink.finish())
    clock.advance(3.0)
    assert got[0].value.status == 429 and refused == []
    held.release()
    assert s.in_use == 0


def test_batch_record_timeout_drops_its_bytes_without_refusing_the_request():
    s, clock = slots(limit=1, timeout=1.0)
    held = s.try_acquire()
    transport = FakeTransport()
    sink = s.open(opener([]), PauseGate(transport))
    clock.advance(1.0)
    assert not transport.paused and sink.refusal is None
    sink.write(b"hello")
    assert results(sink.finish())[0].value.status == 429
    held.release()


def test_record_refused_once_its_slot_comes_releases_it():
    s, _ = slots(limit=1)
    held = s.try_acquire()
    refused = []
    transport = FakeTransport()
    sink = s.open(opener([], fail=ReductError("A record with timestamp 1 already exists", 409)),
                  PauseGate(transport), refuse=refused.append)
    held.release()
    assert [e.status for e in refused] == [409]
    assert s.in_use == 0 and not transport.paused


@pytest.mark.parametrize("finished", [False, True])
def test_abort_while_waiting_leaves_the_queue(finished):
    s, clock = slots(limit=1)
    held = s.try_acquire()
    transport = FakeTransport()
    sink = s.open(opener([]), PauseGate(transport))
    got = results(sink.finish()) if finished else None
    sink.abort()
    assert sink.done and s.waiting == 0 and not transport.paused
    if finished:
        assert got[0].check(CancelledError)
    held.release()
    assert s.in_use == 0 and clock.getDelayedCalls() == []


def test_cancelling_finish_while_waiting_aborts():
    s, clock = slots(limit=1)
    held = s.try_acquire()
    sink = s.open(opener([]), PauseGate(FakeTransport()))
    d = sink.finish()
    d.addErrback(lambda f: f.trap(CancelledError))
    d.cancel()
    assert sink.done and s.waiting == 0
    held.release()
    assert s.in_use == 0


def test_many_aborted_records_leak_no_slot():
    """After hundreds of records dropped at every stage, the whole limit is free."""
    s, clock = slots(limit=3, timeout=2.0)
    uploads = []
    for round in range(100):
        sinks = [s.open(opener(uploads), PauseGate(FakeTransport())) for _ in range(6)]
        for i, sink in enumerate(sinks):
            sink.write(b"he")
            if i % 3 == 0:
                sink.abort()
            elif i % 3 == 1:
                sink.finish().addErrback(lambda f: None)
        clock.advance(2.0)  # the waiters still queued time out
        for sink in sinks:
            sink.abort()
    assert s.in_use == 0 and s.waiting == 0
    held = [s.try_acquire() for _ in range(3)]
    assert all(held) and s.try_acquire() is None


# -- the connection while a record waits (ReductChannel's body timeout) ------------------


class SlotRouter:
    """A router whose every body is one small record behind ``slots``."""

    def __init__(self, slots):
        self.slots = slots
        self.uploads = []

    def open_body(self, request, length):
        return self.slots.open(opener(self.uploads), PauseGate(request.channel.transport),
                               refuse=request.refuse_body, touch=request.channel.resetTimeout)

    def encoded_slash_ok(self, raw_path):
        return True

    def direct_handler(self, request):
        return None


def waiting_connection(io=5.0, wait=8.0):
    from twisted.internet.testing import StringTransport
    from twisted.web.resource import Resource

    from reduct_twisted.http.streaming import ReductSite

    clock = Clock()
    s = WriterSlots(1, wait, clock)
    held = s.try_acquire()
    router = SlotRouter(s)
    site = ReductSite(Resource(), router=router, reactor=clock, timeout=60.0, io_timeout=io)
    channel = site.buildProtocol(None)
    class HalfClosing(StringTransport):
        def loseWriteConnection(self):
            self.write_closed = True

    transport = HalfClosing()
    channel.makeConnection(transport)
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe")
    assert transport.producerState == "paused"
    return clock, held, router, transport


def test_a_waiting_body_is_not_cut_by_the_io_timeout_and_gets_429():
    clock, held, router, transport = waiting_connection(io=5.0, wait=8.0)
    clock.advance(7.9)
    assert not transport.disconnecting and transport.value() == b""
    clock.advance(0.2)
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 429 ")
    assert b"x-reduct-error: " + TOO_MANY_WRITERS.encode() in answer
    assert answer.endswith(b'{"detail":"' + TOO_MANY_WRITERS.encode() + b'"}')
    assert transport.producerState == "producing" and transport.write_closed
    held.release()
    assert router.slots.in_use == 0 and router.uploads == []


def test_the_body_timeout_counts_from_the_end_of_the_wait():
    clock, held, router, transport = waiting_connection(io=5.0, wait=8.0)
    clock.advance(5.0)  # the body timeout comes while waiting: not cut
    clock.advance(2.0)
    assert not transport.disconnecting
    held.release()  # the record gets its slot at t=7; the client then stalls
    assert transport.producerState == "producing" and router.slots.in_use == 1
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting or transport.disconnected
