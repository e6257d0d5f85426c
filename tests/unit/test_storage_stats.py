"""
Statistics (spec §4.5, 1.11+) and quotas (spec §3.9, §4.6).
"""

import os

import pytest

from reduct_twisted import REDUCT_VERSION
from reduct_twisted.errors import BadRequest, InternalError, NotFound
from reduct_twisted.storage import U64_MAX
from reduct_twisted.storage.disk.blockfile import record_meta_size
from reduct_twisted.storage.testing import write_content, write_record

OCTET = "application/octet-stream"


def _entries(engine, bucket="b"):
    return {e["name"]: e for e in engine.bucket_info(bucket)["entries"]}


def test_upstream_size_example(engine, clock):
    """"somedata"@1s and "anotherdata"@2s give sizes 40, 43 and 83 (1.11+)."""
    engine.create_bucket("b", None)
    write_record(engine, "b", "entry_1", 1_000_000, b"somedata")
    write_record(engine, "b", "entry_2", 2_000_000, b"anotherdata")
    info = engine.bucket_info("b")
    assert info["info"] == {
        "name": "b", "entry_count": 2, "size": 83, "oldest_record": 1_000_000,
        "latest_record": 2_000_000, "is_provisioned": False, "status": "READY",
    }
    assert info["entries"] == [
        {"name": "entry_1", "size": 40, "record_count": 1, "block_count": 1,
         "oldest_record": 1_000_000, "latest_record": 1_000_000, "status": "READY"},
        {"name": "entry_2", "size": 43, "record_count": 1, "block_count": 1,
         "oldest_record": 2_000_000, "latest_record": 2_000_000, "status": "READY"},
    ]
    clock.advance(12.7)
    assert engine.info() == {
        "version": REDUCT_VERSION, "bucket_count": 1, "usage": 83, "uptime": 12,
        "oldest_record": 1_000_000, "latest_record": 2_000_000, "license": None,
        "defaults": {"bucket": {"max_block_size": 64_000_000, "max_block_records": 1024,
                                "quota_type": "NONE", "quota_size": 0}},
    }


def test_metadata_size_formula():
    """The metadata size follows protobuf encoding of begin, end, labels, type."""
    assert record_meta_size(1_000_000, 0, 8, OCTET, {}) == 32
    # a non-zero begin adds tag + one-byte varint
    assert record_meta_size(1_000_000, 8, 16, OCTET, {}) == 34
    # timestamp with nanos: (1 + v(1)) + (1 + v(5000)) = 5, as a field 1 + 1 + 5
    assert record_meta_size(1_000_005, 0, 0, "", {}) == 7
    # label "a"="b": 1 + 1 + (3 + 3); empty value omitted: 1 + 1 + 3
    assert record_meta_size(0, 0, 0, "", {"a": "b"}) == 2 + 8
    assert record_meta_size(0, 0, 0, "", {"a": ""}) == 2 + 5
    # a 200-byte end needs a two-byte varint; "é" is two UTF-8 bytes
    assert record_meta_size(0, 0, 200, "é", {}) == 2 + 3 + 4


def test_empty_server_and_bucket(engine):
    """Without data oldest is u64::MAX and latest 0, for the server and a bucket."""
    info = engine.info()
    assert (info["bucket_count"], info["usage"]) == (0, 0)
    assert (info["oldest_record"], info["latest_record"]) == (U64_MAX, 0)
    engine.create_bucket("b", None)
    assert engine.list_buckets() == [
        {"name": "b", "entry_count": 0, "size": 0, "oldest_record": U64_MAX,
         "latest_record": 0, "is_provisioned": False, "status": "READY"},
    ]
    assert engine.info()["oldest_record"] == U64_MAX
    with pytest.raises(NotFound) as e:
        engine.bucket_info("nope")
    assert e.value.message == "Bucket 'nope' is not found"


def test_list_buckets_sorted_and_server_min_max(engine):
    """/list is sorted by name; /info takes min/max over buckets."""
    for name, ts in [("zz", 5), ("aa", 9), ("mm", 7)]:
        engine.create_bucket(name, None)
        write_record(engine, name, "e", ts, b"x")
    assert [b["name"] for b in engine.list_buckets()] == ["aa", "mm", "zz"]
    info = engine.info()
    assert (info["oldest_record"], info["latest_record"], info["bucket_count"]) == (5, 9, 3)


def test_oldest_is_first_block_id_and_latest_is_max_of_last_block(engine):
    """oldest_record = first block's id; latest_record = greatest ts in the last
    block, not lowered by a belated write into it."""
    engine.create_bucket("b", {"max_block_records": 3})
    for ts in (100, 300, 200):
        write_record(engine, "b", "e", ts)
    entry = _entries(engine)["e"]
    assert (entry["oldest_record"], entry["latest_record"], entry["block_count"]) == (100, 300, 1)
    write_record(engine, "b", "e", 400)  # block full: new block 400
    write_record(engine, "b", "e", 50)  # older than all: new first block 50
    entry = _entries(engine)["e"]
    assert (entry["oldest_record"], entry["latest_record"], entry["block_count"]) == (50, 400, 3)
    assert entry["record_count"] == 5


def test_started_records_count(engine):
    """A record being written counts in record_count and size (declared length)."""
    engine.create_bucket("b", None)
    alloc = engine.allocate("b", "e", 1_000_000, 8, OCTET, {})
    assert _entries(engine)["e"]["record_count"] == 1
    assert _entries(engine)["e"]["size"] == 40
    write_content(alloc, b"somedata")
    engine.commit(alloc)
    assert _entries(engine)["e"]["size"] == 40


def _fifo_bucket(engine, quota):
    engine.create_bucket("b", {"quota_type": "FIFO", "quota_size": quota,
                               "max_block_records": 2})


def test_fifo_removes_oldest_blocks_first(engine):
    """FIFO removes whole blocks of the entry with the smallest oldest_record,
    one at a time, until the new record fits; emptied entries are kept
    (spec 1.20 §5.9; they used to be dropped)."""
    _fifo_bucket(engine, 10**6)
    for ts in (1000, 1001, 3000):
        write_record(engine, "b", "a", ts, b"x" * 100)
    write_record(engine, "b", "c", 2000, b"x" * 100)
    sizes = {n: e["size"] for n, e in _entries(engine).items()}
    engine.update_bucket("b", {"quota_size": sum(sizes.values())})
    write_record(engine, "b", "a", 4000, b"x" * 50)  # removes a's block 1000 only
    entries = _entries(engine)
    assert (entries["a"]["oldest_record"], entries["a"]["record_count"]) == (3000, 2)
    assert entries["c"]["record_count"] == 1
    write_record(engine, "b", "a", 5000, b"x" * 200)  # now c (2000) is oldest: emptied
    assert {n: e["record_count"] for n, e in _entries(engine).items()} == {"a": 3, "c": 0}
    with pytest.raises(NotFound) as e:
        engine.read("b", "c", 2000)
    assert e.value.message == "Record 2000 not found in entry b/c"  # 1.18 text (§5.5)
    # Only the number counter stays (issue #16: numbers are never reused).
    assert os.listdir(os.path.join(engine.data_path, "b", "c")) == [".numbers"]
    assert engine.bucket_info("b")["info"]["size"] <= sum(sizes.values())


def test_fifo_skips_blocks_being_written(engine):
    """The oldest block is skipped while it has a record in flight."""
    _fifo_bucket(engine, 10**6)
    busy = engine.allocate("b", "a", 1000, 10, OCTET, {})
    write_record(engine, "b", "c", 2000, b"x" * 10)
    engine.update_bucket("b", {"quota_size": engine.bucket_info("b")["info"]["size"]})
    write_record(engine, "b", "a", 3000, b"x" * 5)
    assert _entries(engine)["c"]["record_count"] == 0  # evicted, kept (spec 1.20 §5.9)
    write_content(busy, b"y" * 10)
    engine.commit(busy)
    assert _entries(engine)["a"]["record_count"] == 2


def test_fifo_impossible_is_500_and_deletes_nothing(engine):
    """A record bigger than the whole quota is refused before anything is evicted."""
    _fifo_bucket(engine, 100)
    write_record(engine, "b", "a", 1, b"x" * 10)
    before = engine.bucket_info("b")
    with pytest.raises(InternalError) as e:
        engine.allocate("b", "a", 2, 101, OCTET, {})
    assert e.value.message == "Failed to keep quota of 'b'"
    assert engine.bucket_info("b") == before


def test_fifo_impossible_when_blocks_are_busy_is_500(engine):
    """When the only removable space is being written, FIFO gives up with a 500."""
    _fifo_bucket(engine, 100)
    busy = engine.allocate("b", "a", 1, 40, OCTET, {})
    with pytest.raises(InternalError) as e:
        engine.allocate("b", "a", 2, 80, OCTET, {})
    assert e.value.message == "Failed to keep quota of 'b'"
    engine.abort(busy)


def test_hard_quota_is_400_and_deletes_nothing(engine):
    """HARD refuses a write that would exceed the quota; data stays."""
    engine.create_bucket("b", {"quota_type": "HARD", "quota_size": 100})
    write_record(engine, "b", "a", 1, b"x" * 50)
    used = engine.bucket_info("b")["info"]["size"]
    with pytest.raises(BadRequest) as e:
        engine.allocate("b", "a", 2, 100 - used + 1, OCTET, {})
    assert e.value.message == "Quota of 'b' exceeded"
    write_record(engine, "b", "a", 2, b"x" * (100 - used))
    assert _entries(engine)["a"]["record_count"] == 2


def test_quota_check_precedes_duplicate_check(engine):
    """A duplicate in a bucket over its HARD quota reports the quota."""
    engine.create_bucket("b", {"quota_type": "HARD", "quota_size": 60})
    write_record(engine, "b", "a", 1, b"x" * 20)
    with pytest.raises(BadRequest):
        engine.allocate("b", "a", 1, 100, OCTET, {})


def test_chunked_writes_pass_and_enforce_quotas_catches_up(engine):
    """A chunked record counts 0 bytes at the check; enforce_quotas later
    applies the quota, also after it was lowered."""
    _fifo_bucket(engine, 100)
    write_record(engine, "b", "a", 1, b"x" * 500, chunked=True)
    assert engine.bucket_info("b")["info"]["size"] > 100
    assert engine.enforce_quotas() == 1
    assert _entries(engine)["a"]["record_count"] == 0  # kept, empty (spec 1.20 §5.9)
    assert engine.enforce_quotas() == 0
    engine.update_bucket("b", {"quota_size": 10**6})
    for ts in (2, 3, 4):
        write_record(engine, "b", "a", ts, b"x" * 10)
    engine.update_bucket("b", {"quota_size": 50})
    assert engine.enforce_quotas() == 1
    assert _entries(engine)["a"]["oldest_record"] == 4
    engine.update_bucket("b", {"quota_type": "HARD", "quota_size": 0})
    assert engine.enforce_quotas() == 0
