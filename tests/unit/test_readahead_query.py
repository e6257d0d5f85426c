"""
Read-ahead of v1 batched reads (``GET /b/:b/:e/batch?q=``;
``storage/readahead.py``, ``http/routes_records._read_ahead``): the batch
taken ahead is exactly the batch the read would have taken, it is handed
out only while nothing it read has changed (else the query is put back and
the read sees the change), it holds no file, and its traffic is counted once.
"""

import os

import pytest

from reduct_twisted.http.batch import BatchReader
from reduct_twisted.http.batch_limits import BatchLimits
from reduct_twisted.http.routes_records import _read_ahead
from reduct_twisted.storage.testing import write_record
from tests.unit.readahead_helpers import changes, read_all, read_once, spy_claims

LIMITS = BatchLimits(max_records=50)


@pytest.fixture
def engine(engine):
    """The shared engine with entry ``b/e`` of 230 records (100 a block)."""
    engine.create_bucket("b", {"max_block_records": 100})
    for k in range(230):
        write_record(engine, "b", "e", 1000 + k, b"<%d>" % k, labels={"k": str(k)})
    return engine


def _read(engine, qid, head=False):
    """One ``GET /b/b/e/batch?q=``: ``(headers, body, last, claimed)``."""
    return read_once(engine.query_claim("b", "e", qid, use=not head),
                     lambda: BatchReader(engine, "b", "e", qid, head, LIMITS))


def _read_all(engine, qid, ahead=True):
    return read_all(lambda: _read(engine, qid),
                    (lambda: _read_ahead(engine, "b", "e", qid, LIMITS)) if ahead else None)


def test_batches_read_ahead_are_the_batches_read_without(engine):
    plain = _read_all(engine, engine.create_query("b", "e"), ahead=False)
    claims = spy_claims(engine, "query_claim")
    ahead = _read_all(engine, engine.create_query("b", "e"))
    assert ahead == plain and [len(h) for h, _, _ in plain] == [50, 50, 50, 50, 30]
    assert [c is not None for c in claims] == [False, True, True, True, False]


@pytest.mark.parametrize("change, kept", changes(
    "b", relabel=("e", 1060), removed=("e", [1050, 1099]), rewritten=("e", 1070),
    append=("e", 1300)))  # 1300: the last block, which the batch did not read
def test_a_change_since_the_read_ahead_voids_it(engine, change, kept):
    ahead, plain = engine.create_query("b", "e"), engine.create_query("b", "e")
    assert _read(engine, ahead)[:3] == _read(engine, plain)[:3]  # 0..49
    assert _read_ahead(engine, "b", "e", ahead, LIMITS)  # 50..99
    change(engine)
    got, expected = _read(engine, ahead), _read(engine, plain)
    assert got[:3] == expected[:3] and got[3] is kept
    assert _read_all(engine, ahead) == _read_all(engine, plain, ahead=False)


def test_a_plan_left_unclaimed_is_undone_before_any_other_step(engine):
    plain = _read_all(engine, engine.create_query("b", "e"), ahead=False)
    qid = engine.create_query("b", "e")
    _read(engine, qid)
    assert _read_ahead(engine, "b", "e", qid, LIMITS)
    assert engine.query_next("b", "e", qid).record.ts == 1050  # a single-record read
    qid = engine.create_query("b", "e")
    _read(engine, qid)
    assert _read_ahead(engine, "b", "e", qid, LIMITS)
    head = _read(engine, qid, head=True)  # a HEAD cannot use it
    assert head[0] == plain[1][0] and head[1] == b"" and not head[3]
    assert _read_ahead(engine, "b", "e", qid, LIMITS)
    assert _read_ahead(engine, "b", "e", qid, LIMITS) is False  # one plan at a time
    assert _read(engine, qid)[:3] == plain[2]


def test_the_last_batch_is_not_read_ahead(engine):
    qid = engine.create_query("b", "e", start=1150)
    _read(engine, qid)  # 150..199
    assert _read_ahead(engine, "b", "e", qid, LIMITS) is False  # 200..229 ends it
    assert engine.query_options("b", "e", qid) is not None
    headers, body, last, claimed = _read(engine, qid)
    assert last and not claimed and len(headers) == 30


@pytest.mark.parametrize("options", [
    {"continuous": True}, {"limit": 500}, {"each_n": 2}, {"each_s": 0.00001},
    {"when": {"&k": {"$ne": "x"}}},
])
def test_only_plain_queries_are_read_ahead(engine, options):
    qid = engine.create_query("b", "e", **options)
    _read(engine, qid)
    assert _read_ahead(engine, "b", "e", qid, LIMITS) is False


def test_a_label_filter_keeps_no_state_and_is_read_ahead(engine):
    plain = _read_all(engine, engine.create_query("b", "e", exclude={"k": "60"}), ahead=False)
    qid = engine.create_query("b", "e", exclude={"k": "60"})
    _read(engine, qid)
    assert _read_ahead(engine, "b", "e", qid, LIMITS)
    assert _read(engine, qid)[3] and _read_all(engine, qid)[-1] == plain[-1]


def test_a_plan_holds_no_file_and_a_removed_block_voids_it(engine):
    qid = engine.create_query("b", "e")
    _read(engine, qid)
    fds = set(os.listdir("/proc/self/fd"))
    assert _read_ahead(engine, "b", "e", qid, LIMITS)
    assert set(os.listdir("/proc/self/fd")) <= fds
    assert engine.remove_entry("b", "e") is None
    with pytest.raises(Exception) as err:
        _read(engine, qid)
    assert getattr(err.value, "status", None) == 404


def test_an_expired_query_is_not_handed_out(engine, clock):
    qid = engine.create_query("b", "e", ttl=5)
    _read(engine, qid)
    assert _read_ahead(engine, "b", "e", qid, LIMITS)
    clock.advance(5)
    assert engine.query_claim("b", "e", qid) is None
    assert engine.query_options("b", "e", qid) is not None  # until a read drops it
    with pytest.raises(Exception) as err:
        _read(engine, qid)
    assert getattr(err.value, "status", None) == 404


def test_traffic_is_counted_once(engine):
    engine.traffic.take()
    _read_all(engine, engine.create_query("b", "e"), ahead=False)
    plain = engine.traffic.take()["b"]
    qid = engine.create_query("b", "e")
    _read(engine, qid)
    _read_ahead(engine, "b", "e", qid, LIMITS)
    engine.update_labels("b", "e", {1060: {"k": "x"}})  # the plan is voided, read again
    _read_all(engine, qid)
    ahead = engine.traffic.take()["b"]
    assert ahead["records_read"] == plain["records_read"] == 230
    assert ahead["read_bytes"] == plain["read_bytes"]


def test_nothing_is_read_ahead_once_the_engine_is_closed(engine):
    """A read-ahead scheduled by the last answers of a stopping daemon does nothing."""
    qid, multi = engine.create_query("b", "e"), engine.create_multi_query("b", None)
    _read(engine, qid)
    engine.close()
    assert _read_ahead(engine, "b", "e", qid, LIMITS) is False
    assert engine.multi_read_ahead("b", multi, lambda planned: pytest.fail("taken")) is False
