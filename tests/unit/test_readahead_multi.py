"""
Read-ahead of the I/O API's batched reads (``storage/readahead.py``,
``http/io_read.read_ahead``): the batch taken ahead is exactly the batch the
read would have taken, it is handed out only while nothing it read has
changed (else the merge is put back and the read sees the change), it holds
no file, and its traffic is counted once.
"""

import os

import pytest

from reduct_twisted.errors import NotFound
from reduct_twisted.http.batch_limits import BatchLimits
from reduct_twisted.http.io_read import IoBatchReader, read_ahead
from reduct_twisted.storage.readahead import MAX_PARTS, PlannedReader
from reduct_twisted.storage.testing import write_record
from tests.unit.readahead_helpers import changes, read_all, read_once, spy_claims

LIMITS = BatchLimits()
NAMES = ["a", "b", "c", "d"]


@pytest.fixture
def engine(engine):
    """The shared engine with bucket ``m`` (100 records a block) holding
    ``a``..``d``: 400 records, runs of 20 per entry, interleaved in time."""
    engine.create_bucket("m", {"max_block_records": 100})
    for k in range(400):
        name = NAMES[(k // 20) % 4]
        write_record(engine, "m", name, 1000 + k, b"<%s%d>" % (name.encode(), k),
                     labels={"k": str(k)})
    return engine


def _read(engine, qid, head=False):
    """One ``GET /io/m/read`` as ``io_read`` does it: ``(headers, body, last, claimed)``."""
    return read_once(engine.multi_claim("m", qid, use=not head),
                     lambda: IoBatchReader(engine, "m", qid, head, LIMITS),
                     lambda reader: reader.encoder.headers())


def _read_all(engine, qid, ahead=True):
    return read_all(lambda: _read(engine, qid),
                    (lambda: read_ahead(engine, "m", qid, LIMITS)) if ahead else None)


def test_batches_read_ahead_are_the_batches_read_without(engine):
    plain = _read_all(engine, engine.create_multi_query("m", None), ahead=False)
    claims = spy_claims(engine, "multi_claim")
    ahead = _read_all(engine, engine.create_multi_query("m", None))
    assert ahead == plain and len(plain) == 5  # 4 x 20 records a batch (spec 1.20 §1.9)
    # every batch after the first was read ahead but the last (which ends the query)
    assert [c is not None for c in claims] == [False, True, True, True, False]
    assert sum(body.count(b"<") for _, body, _ in ahead) == 400


@pytest.mark.parametrize("change, kept", changes(
    "m", relabel=("a", 1080), removed=("b", [1100, 1119]), rewritten=("a", 1085),
    append=("c", 1401)))  # c's block is full: 1401 goes to a new one
def test_a_change_since_the_read_ahead_voids_it(engine, change, kept):
    """
    The batch after a change is what a query without read-ahead reads; the
    one read ahead is used only if the change is in no block it read.
    """
    ahead, plain = engine.create_multi_query("m", None), engine.create_multi_query("m", None)
    assert _read(engine, ahead)[:3] == _read(engine, plain)[:3]  # records 0..79
    assert read_ahead(engine, "m", ahead, LIMITS)  # 80..159
    change(engine)
    got, expected = _read(engine, ahead), _read(engine, plain)
    assert got[:3] == expected[:3] and got[3] is kept
    assert _read_all(engine, ahead) == _read_all(engine, plain, ahead=False)


def test_a_change_is_seen_in_the_batch_read_ahead_of(engine):
    qid = engine.create_multi_query("m", None)
    _read(engine, qid)
    assert read_ahead(engine, "m", qid, LIMITS)
    assert engine.update_labels("m", "a", {1080: {"k": "new"}}) == {}
    headers, body, _, claimed = _read(engine, qid)
    assert not claimed and (b"x-reduct-0-0", b"5,application/octet-stream,0=new") in headers
    assert read_ahead(engine, "m", qid, LIMITS)  # 160..239
    assert engine.remove_stamps("m", "a", [1160, 1161]) == {}
    headers, body, _, claimed = _read(engine, qid)
    assert not claimed and body.startswith(b"<a162>") and body.count(b"<") == 78


def test_a_plan_left_unclaimed_is_undone_before_any_other_step(engine):
    plain = _read_all(engine, engine.create_multi_query("m", None), ahead=False)
    qid = engine.create_multi_query("m", None)
    _read(engine, qid)
    assert read_ahead(engine, "m", qid, LIMITS)
    # a record-by-record read (not through multi_claim) starts where the plan started
    name, view = engine.multi_next("m", qid)
    assert (name, view.record.ts) == ("a", 1080)
    qid = engine.create_multi_query("m", None)
    _read(engine, qid)
    assert read_ahead(engine, "m", qid, LIMITS)
    # a HEAD cannot use it: the merge is put back, then the GET reads the same batch
    head = _read(engine, qid, head=True)
    assert head[0] == plain[1][0] and head[1] == b"" and not head[3]
    assert read_ahead(engine, "m", qid, LIMITS)
    assert read_ahead(engine, "m", qid, LIMITS) is False  # one plan at a time
    assert _read(engine, qid)[:3] == plain[2]


def test_the_last_batch_is_not_read_ahead(engine):
    qid = engine.create_multi_query("m", ["a", "b"], start=1240)
    headers, body, last, _ = _read(engine, qid)  # a 240..259, b 260..279: closed before a's 320
    assert not last and body.count(b"<") == 40
    assert read_ahead(engine, "m", qid, LIMITS) is False  # a 320..339, b 340..359: the end
    assert engine.multi_options("m", qid) is not None
    headers, body, last, claimed = _read(engine, qid)
    assert last and not claimed and body.count(b"<") == 40 and body.startswith(b"<a320>")


@pytest.mark.parametrize("options", [
    {"continuous": True}, {"limit": 500}, {"each_n": 2}, {"each_s": 0.00001},
    {"when": {"&k": {"$ne": "x"}}},
])
def test_only_plain_merges_are_read_ahead(engine, options):
    plain = _read_all(engine, engine.create_multi_query("m", None, **options), ahead=False)
    qid = engine.create_multi_query("m", None, **options)
    got = [_read(engine, qid)[:3]]
    assert read_ahead(engine, "m", qid, LIMITS) is False
    got.append(_read(engine, qid)[:3])
    assert got == plain[:2]


def test_a_merge_of_too_many_entries_is_not_read_ahead(engine):
    for n in range(MAX_PARTS - 3):
        write_record(engine, "m", "z%d" % n, 5000 + n, b"z")
    qid = engine.create_multi_query("m", None)
    _read(engine, qid)
    assert read_ahead(engine, "m", qid, LIMITS) is False


def test_a_plan_holds_no_file_and_a_removed_block_voids_it(engine, tmp_path):
    qid = engine.create_multi_query("m", None)
    _read(engine, qid)
    fds = set(os.listdir("/proc/self/fd"))
    taken = []
    original = engine.multi_read_ahead

    def spy(bucket, qid, take):
        return original(bucket, qid, lambda planned: taken.append(planned) or take(planned))

    engine.multi_read_ahead = spy
    assert read_ahead(engine, "m", qid, LIMITS)
    assert isinstance(taken[0], PlannedReader) and set(os.listdir("/proc/self/fd")) <= fds
    engine.remove_entry("m", "b")  # b's records 100..119 were in the batch
    headers, body, _, claimed = _read(engine, qid)
    assert not claimed and b"<b" not in body and body.startswith(b"<a80>")


def test_an_expired_query_is_not_handed_out(engine, clock):
    qid = engine.create_multi_query("m", None, ttl=5)
    _read(engine, qid)
    assert read_ahead(engine, "m", qid, LIMITS)
    clock.advance(5)
    assert engine.multi_claim("m", qid) is None
    with pytest.raises(NotFound):
        engine.multi_take("m", qid, lambda *a: True)


def test_the_ttl_runs_from_the_read_that_claims(engine, clock):
    qid = engine.create_multi_query("m", None, ttl=5)
    _read(engine, qid)
    assert read_ahead(engine, "m", qid, LIMITS)
    clock.advance(4)
    assert _read(engine, qid)[3]
    clock.advance(4)
    assert _read(engine, qid)[2] is False  # alive: 4 s since the claiming read


def test_traffic_is_counted_once(engine):
    engine.traffic.take()
    _read_all(engine, engine.create_multi_query("m", None), ahead=False)
    plain = engine.traffic.take()["m"]
    qid = engine.create_multi_query("m", None)
    _read(engine, qid)
    read_ahead(engine, "m", qid, LIMITS)
    engine.update_labels("m", "a", {1080: {"k": "x"}})  # the plan is voided, read again
    _read_all(engine, qid)
    ahead = engine.traffic.take()["m"]
    assert ahead["records_read"] == plain["records_read"] == 400
    assert ahead["read_bytes"] == plain["read_bytes"]
