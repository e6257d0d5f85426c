"""
Queries: parameters, filter order, lifecycle, TTL, budget (spec §2.3.4, §3.5, §4.8).
"""

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.storage import PENDING, StorageEngine
from reduct_twisted.storage.testing import read_content, write_content, write_record

GONE = "Query {} not found and it might have expired. Check TTL in your query request."


@pytest.fixture
def engine(engine):
    """The shared engine with bucket ``b`` holding two records per block."""
    engine.create_bucket("b", {"max_block_records": 2})
    return engine


def _fill(engine, stamps=(1000, 2000, 3000), labels=None, entry="e"):
    for ts in stamps:
        write_record(engine, "b", entry, ts, b"%d" % ts, labels=(labels or {}).get(ts))


def _drain(engine, qid, entry="e", budget=2000):
    """Read a query until it reports nothing (more); return the timestamps."""
    found = []
    while True:
        view = engine.query_next("b", entry, qid, budget)
        if view is None:
            return found
        if view is not PENDING:
            assert read_content(view) == b"%d" % view.record.ts
            found.append(view.record.ts)


def _query(engine, entry="e", **kwargs):
    return _drain(engine, engine.create_query("b", entry, **kwargs), entry)


def _error(exc_type, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    return info.value.message


def test_range_and_lifecycle(engine):
    """[start, stop) in ascending order; the first empty read is None, the next 404."""
    _fill(engine, (5000, 1000, 3000, 2000, 4000))
    qid = engine.create_query("b", "e", start=2000, stop=4000)
    assert [engine.query_next("b", "e", qid).record.ts for _ in range(2)] == [2000, 3000]
    assert engine.query_next("b", "e", qid) is None
    assert _error(NotFound, engine.query_next, "b", "e", qid) == GONE.format(qid)


def test_default_range_covers_every_record(engine):
    """Default start is the oldest record and default stop latest + 1."""
    _fill(engine, (1000, 1500, 2000, 2500, 3000))
    assert _query(engine) == [1000, 1500, 2000, 2500, 3000]
    assert _query(engine, start=2000) == [2000, 2500, 3000]
    assert _query(engine, stop=2000) == [1000, 1500]


def test_belated_records_come_in_order(engine):
    """Records written out of order across blocks are returned ascending."""
    _fill(engine, (3000, 4000, 5000, 1000, 3500, 2000))
    assert _query(engine) == [1000, 2000, 3000, 3500, 4000, 5000]


def test_start_after_stop_is_422(engine):
    """start > stop is refused (also via the default stop); start == stop is empty."""
    _fill(engine)
    message = "Start time must be before stop time"
    assert _error(UnprocessableEntity, engine.create_query, "b", "e", start=5, stop=4) == message
    assert _error(UnprocessableEntity, engine.create_query, "b", "e", start=3002) == message
    assert _query(engine, start=2000, stop=2000) == []
    assert _query(engine, start=3002, continuous=True) == []


def test_missing_bucket_entry_and_bad_each(engine):
    """Query creation checks bucket, entry, each_n and each_s."""
    _fill(engine)
    assert _error(NotFound, engine.create_query, "x", "e") == "Bucket 'x' is not found"
    assert _error(NotFound, engine.create_query, "b", "x") == "Entry 'x' not found in bucket 'b'"
    assert _error(UnprocessableEntity, engine.create_query, "b", "e", each_n=0) == (
        "'each_n' must be greater than 0"
    )
    assert _error(UnprocessableEntity, engine.create_query, "b", "e", each_s=0.0) == (
        "Time must be greater than 0 seconds"
    )


def test_ids_and_entry_binding(engine):
    """Ids start at 1 and increase across entries; an id used with another
    entry or an unknown id is 404, and bucket/entry 404s come first."""
    _fill(engine)
    _fill(engine, entry="f")
    first = engine.create_query("b", "e")
    second = engine.create_query("b", "f")
    assert (first, second) == (1, 2)
    assert _error(NotFound, engine.query_next, "b", "f", first) == GONE.format(first)
    assert _error(NotFound, engine.query_next, "b", "e", 99) == GONE.format(99)
    assert _error(NotFound, engine.query_next, "x", "e", first) == "Bucket 'x' is not found"
    assert _error(NotFound, engine.query_next, "b", "x", first) == (
        "Entry 'x' not found in bucket 'b'"
    )
    assert _drain(engine, first) == [1000, 2000, 3000]


def test_include_and_exclude(engine):
    """include keeps records where all pairs match; exclude drops a record only
    when all of its pairs match."""
    labels = {1000: {"a": "1", "b": "2"}, 2000: {"a": "1"}, 3000: {"a": "2", "b": "2"}}
    _fill(engine, labels=labels)
    assert _query(engine, include={"a": "1"}) == [1000, 2000]
    assert _query(engine, include={"a": "1", "b": "2"}) == [1000]
    assert _query(engine, include={"A": "1"}) == []
    assert _query(engine, exclude={"a": "1"}) == [3000]
    assert _query(engine, exclude={"a": "1", "b": "2"}) == [2000, 3000]
    assert _query(engine, include={"b": "2"}, exclude={"a": "2"}) == [1000]


def test_each_n_and_each_s(engine):
    """each_n=2 and each_s=0.002 both return 1000 and 3000 of 1000/2000/3000."""
    _fill(engine)
    assert _query(engine, each_n=2) == [1000, 3000]
    assert _query(engine, each_s=0.002) == [1000, 3000]
    assert _query(engine, each_n=1) == [1000, 2000, 3000]
    assert _query(engine, each_s=10.0) == [1000]


def test_filter_order(engine):
    """include runs before each_s, each_s before each_n, each_n before limit."""
    stamps = range(1000, 9000, 1000)
    labels = {ts: {"k": "y" if ts != 2000 else "n"} for ts in stamps}
    _fill(engine, stamps, labels)
    # include drops 2000 before each_n counts 1000, 3000, 4000, 5000, ...
    assert _query(engine, include={"k": "y"}, each_n=2) == [1000, 4000, 6000, 8000]
    # each_s (2 ms) keeps 1000, 3000, 5000, 7000; each_n=2 then keeps 1000, 5000
    assert _query(engine, each_s=0.002, each_n=2) == [1000, 5000]
    assert _query(engine, each_n=2, limit=3) == [1000, 3000, 5000]


def test_limit_marks_last_and_ends(engine):
    """A limit query flags its final record and is gone after the next read."""
    _fill(engine)
    qid = engine.create_query("b", "e", limit=2)
    views = [engine.query_next("b", "e", qid) for _ in range(2)]
    assert [(v.record.ts, v.last) for v in views] == [(1000, False), (2000, True)]
    assert engine.query_next("b", "e", qid) is None
    with pytest.raises(NotFound):
        engine.query_next("b", "e", qid)
    assert _query(engine, limit=0) == []


def test_limit_wins_over_continuous(engine):
    """limit + continuous is a plain limited query: it ends instead of waiting."""
    _fill(engine)
    qid = engine.create_query("b", "e", continuous=True, limit=5)
    assert _drain(engine, qid) == [1000, 2000, 3000]
    with pytest.raises(NotFound):
        engine.query_next("b", "e", qid)


def test_continuous_sees_later_writes(engine):
    """A continuous query answers None while dry, stays alive and delivers
    records written later; stop is ignored."""
    _fill(engine, (1000,))
    qid = engine.create_query("b", "e", continuous=True, stop=1500)
    assert engine.query_next("b", "e", qid).record.ts == 1000
    assert engine.query_next("b", "e", qid) is None
    assert engine.query_next("b", "e", qid) is None
    _fill(engine, (2000, 3000))
    assert _drain(engine, qid) == [2000, 3000]
    _fill(engine, (500,))  # belated, behind the cursor: never delivered
    _fill(engine, (4000,))
    assert _drain(engine, qid) == [4000]


def test_records_being_written(engine):
    """Historical queries skip STARTED records; a continuous one waits at them
    and delivers them once finished, without reordering."""
    _fill(engine, (1000,))
    alloc = engine.allocate("b", "e", 2000, 4, "t", {})
    _fill(engine, (3000,))
    assert _query(engine) == [1000, 3000]
    qid = engine.create_query("b", "e", continuous=True)
    assert _drain(engine, qid) == [1000]
    write_content(alloc, b"2000")
    engine.commit(alloc)
    assert _drain(engine, qid) == [2000, 3000]


def test_ttl(engine, clock):
    """A query expires when not read for ttl seconds; reads refresh it."""
    _fill(engine, range(1000, 6000, 1000))
    qid = engine.create_query("b", "e", ttl=5)
    clock.advance(4)
    assert engine.query_next("b", "e", qid).record.ts == 1000
    clock.advance(4)
    assert engine.query_next("b", "e", qid).record.ts == 2000
    clock.advance(5)
    assert _error(NotFound, engine.query_next, "b", "e", qid) == GONE.format(qid)


def test_ttl_zero_and_default(engine, clock):
    """ttl=0 is already expired at the first read; the default TTL is 60 s."""
    _fill(engine)
    qid = engine.create_query("b", "e", ttl=0)
    with pytest.raises(NotFound):
        engine.query_next("b", "e", qid)
    qid = engine.create_query("b", "e")
    clock.advance(59)
    assert engine.query_next("b", "e", qid).record.ts == 1000
    clock.advance(60)
    with pytest.raises(NotFound):
        engine.query_next("b", "e", qid)


def test_lifetime_after_the_end(engine, clock):
    """
    Spec 1.20 §5.6: a finished plain query is discarded at once, whatever
    its TTL (the next read is the 404, which the 1.17 and 1.20 suites both
    accept); a dry continuous query answers None until it has not been
    read for its TTL.
    """
    _fill(engine, (1000,))
    qid = engine.create_query("b", "e", ttl=3600)
    assert engine.query_next("b", "e", qid).record.ts == 1000
    assert engine.query_next("b", "e", qid) is None
    assert _error(NotFound, engine.query_next, "b", "e", qid) == GONE.format(qid)
    qid = engine.create_query("b", "e", ttl=1, start=2000, continuous=True)
    for _ in range(5):
        clock.advance(0.9)
        assert engine.query_next("b", "e", qid) is None
    clock.advance(1.1)
    assert _error(NotFound, engine.query_next, "b", "e", qid) == GONE.format(qid)


def test_expire_queries(engine, clock):
    """expire_queries drops exactly the expired queries and reports how many."""
    _fill(engine)
    short = [engine.create_query("b", "e", ttl=1) for _ in range(3)]
    kept = engine.create_query("b", "e", ttl=10, continuous=True)
    clock.advance(2)
    assert engine.expire_queries() == 3
    assert engine.expire_queries() == 0
    assert engine.query_next("b", "e", kept).record.ts == 1000
    with pytest.raises(NotFound):
        engine.query_next("b", "e", short[0])


def test_budget_returns_pending(engine):
    """With a small budget a query that examines records without a match
    answers PENDING and resumes where it stopped."""
    stamps = list(range(1000, 8000, 1000))
    _fill(engine, stamps, {7000: {"hit": "1"}})
    qid = engine.create_query("b", "e", include={"hit": "1"})
    answers = [engine.query_next("b", "e", qid, budget=2) for _ in range(4)]
    assert answers[:3] == [PENDING, PENDING, PENDING]
    assert answers[3].record.ts == 7000
    assert engine.query_next("b", "e", qid, budget=2) is None


def test_query_loads_one_block_at_a_time(tmp_path):
    """A query keeps one table loaded at a time, however large the table
    cache: on a cold engine it loads each block's table and drops it again;
    a table already cached (the block last written) stays cached."""
    engine = StorageEngine(str(tmp_path), Clock())
    engine.open()
    engine.create_bucket("b", {"max_block_records": 1})
    _fill(engine, range(1, 11))
    engine.close()
    engine = StorageEngine(str(tmp_path), Clock(), table_cache_size=1 << 20)
    engine.open()
    engine.read("b", "e", 10)  # cached the ordinary way
    qid = engine.create_query("b", "e")
    for ts in range(1, 11):
        assert engine.query_next("b", "e", qid).record.ts == ts
        loaded = {b["id"] for b in engine.block_stats("b", "e") if b["loaded"]}
        assert ts in loaded and 10 in loaded and len(loaded - {10}) == 1, loaded
    # A read of a block the scan loaded moves it into the cache proper.
    engine.read("b", "e", 3)
    qid = engine.create_query("b", "e")
    for ts in range(1, 11):
        engine.query_next("b", "e", qid)
    # 3 and 10 cached, plus the one table the scan holds (9, its last but one).
    assert [b["id"] for b in engine.block_stats("b", "e") if b["loaded"]] == [3, 9, 10]
    engine.close()


def test_removing_bucket_drops_its_queries(engine):
    """Queries of a removed bucket are gone even if it is created again."""
    _fill(engine)
    qid = engine.create_query("b", "e")
    engine.remove_bucket("b")
    engine.create_bucket("b", None)
    _fill(engine)
    assert _error(NotFound, engine.query_next, "b", "e", qid) == GONE.format(qid)


def test_list_records(engine):
    """The legacy list gives (ts, size) of finished records in [start, stop)."""
    _fill(engine, (1000, 2000, 3000, 4000))
    alloc = engine.allocate("b", "e", 2500, 1, "t", {})
    assert engine.list_records("b", "e", 2000, 4000) == [(2000, 4), (3000, 4)]
    assert engine.list_records("b", "e", 0, 10**6) == [(t, 4) for t in (1000, 2000, 3000, 4000)]
    assert engine.list_records("b", "e", 4001, 5000) == []
    assert engine.list_records("b", "e", 0, 10**6, limit=3) == [(1000, 4), (2000, 4), (3000, 4)]
    engine.abort(alloc)
    with pytest.raises(NotFound):
        engine.list_records("b", "x", 0, 1)
    with pytest.raises(NotFound):
        engine.list_records("x", "e", 0, 1)
