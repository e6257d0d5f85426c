"""
Statistics rules of spec 1.20 §5.9 (1.19): an entry's ``oldest_record`` and
``latest_record`` come from the blocks that hold records, ``0`` for an entry
without any; a bucket's come from its visible entries with records
(``u64::MAX``/``0`` if none), so an emptied entry no longer drags
``oldest_record`` to 0; the server's from buckets with records; ``license``
is ``null``; FIFO keeps the entries it empties.
"""

from reduct_twisted.storage import PENDING, U64_MAX
from reduct_twisted.storage.testing import write_record


def _remove(engine, entry, **query):
    removal = engine.remove_records("b", entry, **query)
    while (result := removal.step()) is PENDING:
        pass
    return result


def _entry(engine, name):
    return next(e for e in engine.bucket_info("b")["entries"] if e["name"] == name)


def _span(info):
    return info["oldest_record"], info["latest_record"]


def test_entry_span_skips_blocks_emptied_by_removal(engine):
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in (100, 200, 300, 400, 500, 600):  # blocks 100, 300, 500
        write_record(engine, "b", "e", ts)
    assert (_span(_entry(engine, "e")), _entry(engine, "e")["block_count"]) == ((100, 600), 3)
    assert _remove(engine, "e", start=100, stop=300) == 2  # the whole first block
    assert _span(_entry(engine, "e")) == (300, 600)
    assert _remove(engine, "e", start=500, stop=601) == 2  # the whole last block
    assert _span(_entry(engine, "e")) == (300, 400)
    assert _remove(engine, "e", start=400, stop=401) == 1  # part of a block
    assert _span(_entry(engine, "e")) == (300, 300)
    assert _remove(engine, "e", start=0) == 1
    info = _entry(engine, "e")
    assert (_span(info), info["record_count"], info["block_count"]) == ((0, 0), 0, 0)


def test_bucket_and_server_span_over_entries_with_records(engine):
    engine.create_bucket("b", None)
    write_record(engine, "b", "early", 10)
    write_record(engine, "b", "late", 5000)
    write_record(engine, "b", "x/y", 700)  # the parent "x" has no records
    assert _span(engine.bucket_info("b")["info"]) == (10, 5000)
    _remove(engine, "early", start=0)  # an entry left without records
    bucket = engine.bucket_info("b")["info"]
    assert (bucket["entry_count"], _span(bucket)) == (4, (700, 5000))
    assert _span(_entry(engine, "early")) == (0, 0)
    assert _span(_entry(engine, "x")) == (0, 0)
    # A bucket with only empty entries does not count for the server.
    engine.create_bucket("hollow", None)
    write_record(engine, "hollow", "e", 1)
    removal = engine.remove_records("hollow", "e", start=0)
    while removal.step() is PENDING:
        pass
    hollow = next(b for b in engine.list_buckets() if b["name"] == "hollow")
    assert (hollow["entry_count"], _span(hollow)) == (1, (U64_MAX, 0))
    info = engine.info()
    assert (_span(info), info["license"], info["bucket_count"]) == ((700, 5000), None, 2)


def test_fifo_keeps_the_entries_it_empties_and_they_do_not_count(engine):
    engine.create_bucket("b", {"quota_type": "FIFO", "quota_size": 10**6,
                               "max_block_records": 1})
    write_record(engine, "b", "old", 1, b"x" * 100)
    write_record(engine, "b", "new", 2, b"x" * 100)
    used = engine.bucket_info("b")["info"]["size"]
    engine.update_bucket("b", {"quota_size": used})
    write_record(engine, "b", "new", 3, b"x" * 100)  # evicts old's only block
    entries = {e["name"]: e for e in engine.bucket_info("b")["entries"]}
    assert sorted(entries) == ["new", "old"]
    assert (entries["old"]["record_count"], _span(entries["old"])) == (0, (0, 0))
    assert _span(engine.bucket_info("b")["info"]) == (2, 3)
