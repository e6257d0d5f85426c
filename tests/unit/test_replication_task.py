"""
The replication sender (``replication/task.py``) through the manager, with
a real storage engine, fake time and a fake destination: order, filters,
409 as delivered, per-record and request errors, back-off, restarts,
label updates, the log bound.
"""

import hashlib
import os
from types import SimpleNamespace

import pytest
from twisted.internet.defer import Deferred, fail, succeed

from reduct_twisted.wire import parse_record_header
from reduct_twisted.replication.manager import ReplicationManager
from reduct_twisted.replication.remote import RemoteError
from reduct_twisted.replication.task import MAX_BACKOFF, PAUSED_PROBE
from reduct_twisted.storage.testing import write_record

BODY = {"src_bucket": "src", "dst_bucket": "dst", "dst_host": "http://dst.invalid:8383"}


class FakeDestination:
    """
    A destination bucket in memory that speaks like ``RemoteBucket``.

    :ivar store: ``{entry: {ts: (content, content_type, labels)}}``.
    :ivar requests: ``[(method, entry, [ts…])]`` in order.
    :ivar down: the error every request fails with, or ``None``.
    :ivar refuse: ``{ts: (status, message)}`` answered per record.
    :ivar hold: keep answers back (in ``held``) instead of answering at once.
    """

    def __init__(self):
        self.store = {}
        self.requests = []
        self.down = None
        self.refuse = {}
        self.hold = False
        self.held = []

    def _answer(self, make):
        if self.down is not None:
            return fail(self.down)
        if self.hold:
            d = Deferred()
            self.held.append((d, make))
            return d
        return succeed(make())

    def release(self):
        held, self.held = self.held, []
        for d, make in held:
            d.callback(make())

    def probe(self):
        self.requests.append(("HEAD", None, []))
        return self._answer(lambda: None)

    def write(self, entry, batch):
        stamps = [ts for ts, _ in batch.headers]
        self.requests.append(("POST", entry, stamps))
        # Read the bodies now, as the request would, before the files close.
        body = b"".join(f.read(offset, size) for f, offset, size in batch.ranges)
        records, position = [], 0
        for ts, value in batch.headers:
            length, ctype, labels = parse_record_header(value.decode())
            records.append((ts, body[position:position + length], ctype, labels))
            position += length

        def answer():
            errors = {}
            entry_store = self.store.setdefault(entry, {})
            for ts, data, ctype, labels in records:
                if ts in self.refuse:
                    errors[ts] = self.refuse[ts]
                elif ts in entry_store:
                    errors[ts] = (409, f"A record with timestamp {ts} already exists")
                else:
                    entry_store[ts] = (data, ctype, labels)
            return errors

        return self._answer(answer)

    def update(self, entry, updates):
        self.requests.append(("PATCH", entry, [ts for ts, _, _ in updates]))

        def answer():
            errors = {}
            for ts, labels, removed in updates:
                stored = self.store.get(entry, {}).get(ts)
                if stored is None:
                    errors[ts] = (404, f"No record with timestamp {ts}")
                    continue
                new = {k: v for k, v in stored[2].items() if k not in removed}
                new.update(labels)
                self.store[entry][ts] = (stored[0], stored[1], new)
            return errors

        return self._answer(answer)


@pytest.fixture
def destination():
    return FakeDestination()


def _manager(engine, clock, destination, capacity=1000, **kwargs):
    manager = ReplicationManager(
        engine, clock, engine.data_path, capacity=capacity,
        remote_factory=lambda settings: destination, **kwargs,
    )
    manager.startService()
    return manager


@pytest.fixture
def setup(engine, clock, destination):
    """``setup(**settings)``: bucket ``src``, a started manager, replication ``r``."""
    made = []

    def make(capacity=1000, **settings):
        if not engine.has_bucket("src"):
            engine.create_bucket("src", None)
        manager = _manager(engine, clock, destination, capacity)
        manager.create("r", dict(BODY, **settings))
        clock.advance(0)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.stopService()
    assert clock.getDelayedCalls() == []


def _write(engine, ts, data=None, entry="e", labels=None, ctype="text/plain"):
    write_record(engine, "src", entry, ts, data if data is not None else b"x%d" % ts, ctype,
                 labels or {})


def _hourly(manager, name="r"):
    return manager.get(name)["diagnostics"]["hourly"]


def _info(manager, name="r"):
    return manager.get(name)["info"]


def test_records_arrive_in_order_byte_exact(setup, engine, clock, destination):
    """Written records reach the destination with content, type and labels, in order."""
    manager = setup()
    _write(engine, 3, b"three", labels={"a": "1", "b": "x,y"})
    _write(engine, 1, b"", ctype="application/x-empty")
    _write(engine, 2, b"\0" * 70_000)
    clock.advance(0)
    assert destination.store["e"] == {
        3: (b"three", "text/plain", {"a": "1", "b": "x,y"}),
        1: (b"", "application/x-empty", {}),
        2: (b"\0" * 70_000, "text/plain", {}),
    }
    posts = [r for r in destination.requests if r[0] == "POST"]
    assert [ts for _, _, stamps in posts for ts in stamps] == [3, 1, 2]
    assert _info(manager) == {"name": "r", "mode": "enabled", "is_active": True, "is_provisioned": False,
                              "pending_records": 0}
    # Upstream scales the first minute to an hour: 3 records -> 180.
    assert _hourly(manager) == {"ok": 180, "errored": 0, "errors": {}}


def test_when_filter(setup, engine, clock, destination):
    """Only records matching ``when`` are logged and sent."""
    setup(when={"&kind": {"$eq": "keep"}})
    for ts in range(1, 7):
        _write(engine, ts, labels={"kind": "keep" if ts % 3 == 0 else "drop"})
    clock.advance(0)
    assert sorted(destination.store["e"]) == [3, 6]


def test_other_buckets_and_entries_ignored(setup, engine, clock, destination):
    """Records of other buckets, and of entries not listed, are not replicated."""
    manager = setup(entries=["keep"])
    engine.create_bucket("other", None)
    write_record(engine, "other", "keep", 1, b"o")
    _write(engine, 2, entry="skip")
    _write(engine, 3, entry="keep")
    clock.advance(0)
    assert destination.store == {"keep": {3: (b"x3", "text/plain", {})}}
    assert _info(manager)["pending_records"] == 0


def test_conflict_counts_as_delivered(setup, engine, clock, destination):
    """A 409 means the destination has the record (a resend): delivered, not errored."""
    destination.store["e"] = {2: (b"x2", "text/plain", {})}
    manager = setup()
    for ts in (1, 2, 3):
        _write(engine, ts)
    clock.advance(0)
    assert sorted(destination.store["e"]) == [1, 2, 3]
    assert _hourly(manager) == {"ok": 180, "errored": 0, "errors": {}}


def test_per_record_errors_are_counted_and_given_up(setup, engine, clock, destination):
    """Other per-record errors are errored in the diagnostics and not sent again."""
    manager = setup()
    destination.refuse = {2: (400, "Quota of 'dst' exceeded")}
    for ts in (1, 2, 3):
        _write(engine, ts)
    clock.advance(0)
    assert sorted(destination.store["e"]) == [1, 3]
    assert _hourly(manager) == {
        "ok": 120, "errored": 60,
        "errors": {"400": {"count": 1, "last_message": "Quota of 'dst' exceeded"}},
    }
    assert _info(manager)["pending_records"] == 0
    assert [r for r in destination.requests if r[0] == "POST"] == [("POST", "e", [1, 2, 3])]


def test_missing_bucket_per_record_is_retried(setup, engine, clock, destination):
    """
    A 1.18+ destination answers a missing bucket per record (200 with
    ``404,Bucket '<b>' is not found`` each): retried like its old
    request-level 404, nothing given up; delivered once the bucket exists.
    """
    manager = setup()
    gone = (404, "Bucket 'dst' is not found")
    destination.refuse = {1: gone, 2: gone}
    for ts in (1, 2):
        _write(engine, ts)
    clock.advance(0)
    assert _info(manager)["is_active"] is False
    assert _info(manager)["pending_records"] == 2
    assert _hourly(manager)["errors"]["404"]["last_message"] == "Bucket 'dst' is not found"
    assert "e" not in destination.store or destination.store["e"] == {}
    destination.refuse = {}
    clock.advance(MAX_BACKOFF)
    assert sorted(destination.store["e"]) == [1, 2]
    assert _info(manager)["pending_records"] == 0 and _info(manager)["is_active"] is True


def test_dead_destination_backs_off_and_recovers(setup, engine, clock, destination):
    """No answer: nothing is lost, is_active turns false, retries back off, then all arrive."""
    destination.down = RemoteError(-3, "Connection refused", retry=True)
    manager = setup()
    for ts in (1, 2):
        _write(engine, ts)
    clock.advance(0)
    assert _info(manager)["is_active"] is False
    delays = []
    for _ in range(8):
        [call] = clock.getDelayedCalls()
        delays.append(call.getTime() - clock.seconds())
        clock.advance(delays[-1])
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    assert _info(manager) == {"name": "r", "mode": "enabled", "is_active": False, "is_provisioned": False,
                              "pending_records": 2}
    errors = _hourly(manager)["errors"]
    assert list(errors) == ["-3"] and errors["-3"]["last_message"] == "Connection refused"
    destination.down = None
    clock.advance(MAX_BACKOFF)
    assert sorted(destination.store["e"]) == [1, 2]
    assert _info(manager)["is_active"] is True and _info(manager)["pending_records"] == 0


@pytest.mark.parametrize("status, retried", [(500, True), (503, True), (404, True),
                                             (401, True), (429, True), (422, False)])
def test_request_errors(setup, engine, clock, destination, status, retried):
    """5xx, 404, 401, 429 are retried; a 422 for the request gives its records up."""
    manager = setup()
    _write(engine, 0)
    clock.advance(0)  # probed and delivered: the next write goes straight to POST
    destination.down = RemoteError(status, "no", retry=status != 422)
    _write(engine, 1)
    clock.advance(0)
    destination.down = None
    clock.advance(MAX_BACKOFF)
    assert (1 in destination.store["e"]) == retried
    assert _info(manager)["pending_records"] == 0
    assert _hourly(manager)["errors"][str(status)] == {"count": 1, "last_message": "no"}


def _stopped_with_pending(engine, clock, destination, stamps):
    """Run a manager whose destination is down, write ``stamps``, stop it."""
    engine.create_bucket("src", None)
    destination.down = RemoteError(-3, "Connection refused", retry=True)
    first = _manager(engine, clock, destination)
    first.create("r", dict(BODY))
    for ts in stamps:
        _write(engine, ts)
    clock.advance(1)
    assert _info(first)["pending_records"] == len(stamps)
    first.stopService()
    engine.listeners.remove(first)
    assert clock.getDelayedCalls() == []
    destination.down = None


def test_restart_resumes_pending(engine, clock, destination):
    """Items still pending when the service stops are sent after a restart."""
    _stopped_with_pending(engine, clock, destination, (1, 2, 3))
    second = _manager(engine, clock, destination)
    assert _info(second)["pending_records"] == 3
    clock.advance(0)
    assert sorted(destination.store["e"]) == [1, 2, 3]
    assert _info(second)["pending_records"] == 0
    second.stopService()


def test_resend_after_lost_answer_is_not_duplicated(engine, clock, destination):
    """A batch stored but unanswered (crash) is sent again: 409s, stored once."""
    engine.create_bucket("src", None)
    destination.hold = True
    first = _manager(engine, clock, destination)
    first.create("r", dict(BODY))
    _write(engine, 1)
    _write(engine, 2)
    clock.advance(0)
    destination.release()  # the probe
    clock.advance(0)
    [(d, make)] = destination.held
    make()  # the destination stored them; the answer never comes back
    first.stopService()
    engine.listeners.remove(first)
    destination.hold = False
    second = _manager(engine, clock, destination)
    clock.advance(0)
    assert sorted(destination.store["e"]) == [1, 2]
    assert _hourly(second) == {"ok": 120, "errored": 0, "errors": {}}
    second.stopService()


def test_batches_are_capped(setup, engine, clock, destination):
    """At most 85 records, and about 8 MB, per request."""
    setup()
    destination.hold = True
    for ts in range(1, 201):
        _write(engine, ts, b"")
    big = b"b" * 3_000_000
    for ts in range(1001, 1005):
        _write(engine, ts, big, entry="big")
    clock.advance(0)
    while destination.held:
        destination.release()
        clock.advance(0)
    sizes = {entry: [len(s) for m, e, s in destination.requests if e == entry]
             for entry in ("e", "big")}
    assert sizes == {"e": [85, 85, 30], "big": [3, 1]}
    assert destination.store["big"][1004][0] == big


def test_record_removed_before_sending(setup, engine, clock, destination):
    """A record gone from the source before its turn is errored (404) and skipped."""
    manager = setup()
    destination.hold = True
    _write(engine, 1)
    _write(engine, 2)
    engine.remove_records("src", "e", start=1, stop=2).step()
    destination.hold = False
    destination.release()
    clock.advance(0)
    assert sorted(destination.store["e"]) == [2]
    assert _hourly(manager)["errors"] == {
        "404": {"count": 1, "last_message": "Record 1 not found in block src/e/1"},
    }


def test_source_bucket_removed(setup, engine, clock, destination):
    """The replication stays when its bucket goes; pending items become errors."""
    manager = setup()
    destination.down = RemoteError(-3, "down", retry=True)
    _write(engine, 1)
    engine.remove_bucket("src")
    destination.down = None
    clock.advance(MAX_BACKOFF)
    assert _info(manager)["pending_records"] == 0
    assert _hourly(manager)["errors"]["404"]["last_message"] == "Bucket 'src' is not found"
    engine.create_bucket("src", None)
    _write(engine, 5)
    clock.advance(0)
    assert sorted(destination.store["e"]) == [5]


def _set_labels(engine, entry, ts, changes):
    # What the label update of the storage engine does (issue #6, PATCH).
    _, record = engine._bucket("src").entry(entry).find(ts)
    for name, value in changes.items():
        if value:
            record.labels[name] = value
        else:
            record.labels.pop(name, None)


def test_label_updates_follow(setup, engine, clock, destination):
    """labels_updated sends a PATCH with the labels as they are and the removed ones empty."""
    manager = setup()
    _write(engine, 1, labels={"a": "1", "b": "2"})
    clock.advance(0)
    _set_labels(engine, "e", 1, {"a": "9", "b": "", "c": "3"})
    manager.labels_updated("src", "e", 1, {"a": "9", "b": "", "c": "3"})
    assert _info(manager)["pending_records"] == 1
    clock.advance(0)
    assert destination.requests[-1] == ("PATCH", "e", [1])
    assert destination.store["e"][1][2] == {"a": "9", "c": "3"}
    assert _hourly(manager)["ok"] == 120


def test_label_update_of_record_missing_there_writes_it(setup, engine, clock, destination):
    """A record the destination lacks (filtered out before) is written in full (upstream)."""
    setup(when={"&kind": {"$eq": "keep"}})
    _write(engine, 1, b"late", labels={"kind": "drop"})
    clock.advance(0)
    assert destination.store == {}
    _set_labels(engine, "e", 1, {"kind": "keep"})
    engine.listeners[-1].labels_updated("src", "e", 1, {"kind": "keep"})
    clock.advance(0)
    assert [r[0] for r in destination.requests[-2:]] == ["PATCH", "POST"]
    assert destination.store["e"] == {1: (b"late", "text/plain", {"kind": "keep"})}


def test_label_updates_keep_order_with_writes(setup, engine, clock, destination):
    """Writes and updates of one entry go in log order, one kind per request."""
    manager = setup()
    destination.hold = True
    _write(engine, 1, labels={"v": "1"})
    _write(engine, 2)
    _set_labels(engine, "e", 1, {"v": "2"})
    manager.labels_updated("src", "e", 1, {"v": "2"})
    _write(engine, 3)
    clock.advance(0)
    while destination.held:
        destination.release()
        clock.advance(0)
    assert [(m, s) for m, e, s in destination.requests if m != "HEAD"] == [
        ("POST", [1, 2]), ("PATCH", [1]), ("POST", [3]),
    ]
    assert destination.store["e"][1][2] == {"v": "2"}


def test_full_log_drops_oldest_and_reports(setup, engine, clock, destination):
    """At the bound, the oldest pending record is dropped and reported as errored (507)."""
    destination.down = RemoteError(-3, "down", retry=True)
    manager = setup(capacity=3)
    for ts in range(1, 6):
        _write(engine, ts)
    assert _info(manager)["pending_records"] == 3
    errors = _hourly(manager)["errors"]
    assert errors["507"] == {
        "count": 2,
        "last_message": "Transaction log of entry 'e' is full (3 records): "
                        "record 2 dropped without replication",
    }
    destination.down = None
    clock.advance(MAX_BACKOFF)
    assert sorted(destination.store["e"]) == [3, 4, 5]


def test_writes_never_wait_for_the_destination(setup, engine, clock, destination):
    """With a request hanging, writes still commit at once and queue up."""
    manager = setup()
    destination.hold = True
    _write(engine, 1)
    clock.advance(0)
    for ts in range(2, 101):
        _write(engine, ts)
        clock.advance(0)
    assert _info(manager)["pending_records"] == 100
    assert len(destination.held) == 1


def _one_in_flight(setup, engine, clock, destination):
    """A replication whose request carrying record 1 is still unanswered."""
    manager = setup()
    destination.hold = True
    _write(engine, 1)
    clock.advance(0)
    destination.release()  # the probe
    clock.advance(0)
    [(d, _)] = destination.held
    assert destination.requests[-1] == ("POST", "e", [1])
    return manager, d


def test_stop_cancels_request_in_flight(setup, engine, clock, destination):
    """Stopping cancels the request in flight; its items stay pending."""
    manager, d = _one_in_flight(setup, engine, clock, destination)
    manager.stopService()
    assert d.called  # cancelled
    assert clock.getDelayedCalls() == []
    assert manager.get("r")["info"]["pending_records"] == 1


def test_damaged_log_line_is_skipped(engine, clock, destination):
    """A damaged line is counted as errored and skipped; the rest goes on."""
    _stopped_with_pending(engine, clock, destination, (1, 2, 3))
    segment = os.path.join(engine.data_path, ".replications", "r", "e", "%020d.log" % 0)
    with open(segment, "r+b") as f:
        f.seek(4)
        f.write(b"?")  # "W 2" -> "? 2"
    second = _manager(engine, clock, destination)
    clock.advance(0)
    assert sorted(destination.store["e"]) == [1, 3]
    assert _hourly(second)["errors"]["500"]["last_message"] == \
        "Damaged transaction log line of entry 'e'"
    second.stopService()


def test_update_restarts_the_sender(setup, engine, clock, destination):
    """PUT while a request is in flight: it is dropped, the items go with the new settings."""
    manager, old = _one_in_flight(setup, engine, clock, destination)
    manager.update("r", dict(BODY, dst_bucket="other"))
    assert old.called
    destination.hold = False
    clock.advance(0)
    assert sorted(destination.store["e"]) == [1]
    assert _info(manager)["pending_records"] == 0


# -- mode (API 1.18) -------------------------------------------------------------------


def test_paused_logs_probes_and_sends_nothing(setup, engine, clock, destination):
    """
    Paused: writes and label updates are logged, nothing is sent; while
    items wait, the destination is probed every PAUSED_PROBE seconds, which
    is_active follows, without counting in the diagnostics.  Enabled again,
    everything is sent at once.
    """
    manager = setup(mode="paused")
    for ts in (1, 2, 3):
        _write(engine, ts)
    engine.update_labels("src", "e", {1: {"x": "y"}})
    clock.advance(0)
    assert _info(manager)["pending_records"] == 4
    assert [r[0] for r in destination.requests] == ["HEAD"]
    assert _info(manager)["is_active"] is True
    destination.down = RemoteError(-3, "Connection refused", retry=True)
    clock.advance(PAUSED_PROBE)
    assert _info(manager) == {"name": "r", "mode": "paused", "is_active": False,
                              "is_provisioned": False, "pending_records": 4}
    destination.down = None
    clock.advance(PAUSED_PROBE)
    assert _info(manager)["is_active"] is True
    assert [r[0] for r in destination.requests] == ["HEAD"] * 3
    assert _hourly(manager) == {"ok": 0, "errored": 0, "errors": {}}
    manager.set_mode("r", "enabled")
    clock.advance(0)
    assert sorted(destination.store["e"]) == [1, 2, 3]
    assert destination.store["e"][1][2] == {"x": "y"}
    assert _info(manager)["pending_records"] == 0
    assert [call.getTime() for call in clock.getDelayedCalls()] == []


def test_paused_without_items_asks_nothing(setup, engine, clock, destination):
    """Paused with nothing logged: no probe, nothing scheduled."""
    setup(mode="paused")
    clock.advance(60)
    assert destination.requests == [] and clock.getDelayedCalls() == []


def test_disabled_logs_nothing_and_is_never_active(setup, engine, clock, destination):
    """
    Disabled: new records are neither logged nor sent, not even counted by
    the filters; items logged before wait for the replication to be enabled.
    """
    manager = setup(each_n=2)
    destination.down = RemoteError(-3, "Connection refused", retry=True)
    _write(engine, 1)  # logged (each_n keeps the first), not delivered
    clock.advance(0)
    manager.set_mode("r", "disabled")
    for ts in (2, 3, 4):
        _write(engine, ts)
    engine.update_labels("src", "e", {1: {"x": "y"}})
    clock.advance(MAX_BACKOFF)
    info = _info(manager)
    assert (info["mode"], info["is_active"], info["pending_records"]) == ("disabled", False, 1)
    destination.down = None
    manager.set_mode("r", "enabled")
    clock.advance(0)
    assert sorted(destination.store["e"]) == [1]
    _write(engine, 5)  # each_n counted 1 only: 5 is the second, left out
    _write(engine, 6)
    clock.advance(0)
    assert sorted(destination.store["e"]) == [1, 6]
    assert _info(manager)["is_active"] is True


def test_paused_when_a_batch_is_in_flight(setup, engine, clock, destination):
    """Paused while a request is out: its answer is taken, then nothing more is sent."""
    manager = setup()
    _write(engine, 0)
    clock.advance(0)  # probed and delivered: the next write goes straight to POST
    destination.hold = True
    _write(engine, 1)
    clock.advance(0)
    assert destination.requests[-1] == ("POST", "e", [1])
    manager.set_mode("r", "paused")
    _write(engine, 2)
    destination.hold = False
    destination.release()
    clock.advance(0)
    assert sorted(destination.store["e"]) == [0, 1]
    assert destination.requests[-1][0] == "HEAD"
    assert _info(manager)["pending_records"] == 1


def _Committed(ts, labels):
    """What the engine tells its listeners of a committed record (``ts``, ``labels``)."""
    return SimpleNamespace(ts=ts, labels=labels)


def test_nested_entries_have_flat_log_directories(engine, clock, destination):
    """
    Entry paths and ``$meta`` entries (1.19) are logged in one directory
    each, the name percent-encoded; after a restart every log is found
    again and sent to ``/b/<dst>/<path>/batch``.
    """
    engine.create_bucket("src", None)
    destination.down = RemoteError(-3, "Connection refused", retry=True)
    first = _manager(engine, clock, destination)
    first.create("r", dict(BODY))
    long = "/".join(["x" * 255] * 3)  # too long for one file name: hashed
    entries = ["e", "a/b/c", "a/b/$meta", "$meta", "a", long]
    for entry in entries:
        for ts in (1, 2):
            first.record_written("src", entry, _Committed(ts=ts, labels={}))
    clock.advance(1)
    assert _info(first)["pending_records"] == 12
    logs = os.path.join(engine.data_path, ".replications", "r")
    hashed = "~" + hashlib.sha256(long.encode()).hexdigest()
    assert sorted(os.listdir(logs)) == [
        "%24meta", "a", "a%2Fb%2F%24meta", "a%2Fb%2Fc", "e", hashed]
    assert all(os.path.isfile(os.path.join(logs, name, "cursor")) for name in os.listdir(logs))
    with open(os.path.join(logs, hashed, "entry")) as f:
        assert f.read() == long
    first.stopService()
    engine.listeners.remove(first)
    # directories not made by us are left alone: not loaded, not removed
    os.makedirs(os.path.join(logs, "a%2F..%2Fx"))
    os.makedirs(os.path.join(logs, "~" + "0" * 64))
    second = _manager(engine, clock, destination)
    assert _info(second)["pending_records"] == 12
    assert sorted(second._tasks["r"]._logs) == sorted(entries)
    second.stopService()
    assert os.path.isdir(os.path.join(logs, "a%2F..%2Fx"))


def test_meta_records_skip_the_filters(setup, engine, clock, destination):
    """A replication of entry ``e`` also sends ``e/$meta``, whatever its when/include say."""
    manager = setup(entries=["e"], when={"&kind": {"$eq": "keep"}})
    _write(engine, 1, entry="e", labels={"kind": "keep"})
    _write(engine, 2, entry="e", labels={"kind": "drop"})
    manager.record_written("src", "e/$meta", _Committed(ts=3, labels={"key": "schema"}))
    manager.record_written("src", "other/$meta", _Committed(ts=4, labels={"key": "schema"}))
    assert [(entry, log.pending) for entry, log in sorted(manager._tasks["r"]._logs.items())] == [
        ("e", 1), ("e/$meta", 1)]
    assert _hourly(manager)["errors"] == {}
