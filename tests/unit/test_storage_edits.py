"""
Label updates, removal by timestamp, entry removal and renames in the
storage engine (storage/edits.py, spec §3.5–§3.8): statistics, the block
files, failures that must change nothing, in-flight writes, and what a
restart (clean or not) reads back.
"""

import errno
import os

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import Conflict, InsufficientStorage, NotFound, UnprocessableEntity
from reduct_twisted.storage import SMALL_RECORD_MAX, StorageEngine
from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.edits import merge_labels
from reduct_twisted.storage.testing import read_content, write_content, write_record

BIG = b"B" * (SMALL_RECORD_MAX + 7)


def _open(path):
    engine = StorageEngine(str(path), Clock())
    engine.open()
    return engine


def _populate(path, count=6):
    """Records 1..count, three per block, record 2 large; the engine stays open."""
    engine = _open(path)
    engine.create_bucket("b", {"max_block_records": 3})
    for ts in range(1, count + 1):
        data = BIG if ts == 2 else b"data-%d" % ts
        write_record(engine, "b", "e", ts, data, labels={"n": str(ts), "k": "v"})
    return engine


def _labels(engine, ts, entry="e", bucket="b"):
    return list(engine.read(bucket, entry, ts).record.labels.items())


def _entry(engine, entry="e", bucket="b"):
    return next(e for e in engine.bucket_info(bucket)["entries"] if e["name"] == entry)


@pytest.mark.parametrize("labels, changes, expected", [
    ({"a": "1", "b": "2"}, {"b": "", "c": "3", "a": "x"}, {"a": "x", "c": "3"}),
    ({}, {"gone": ""}, {}),
    ({"a": "1"}, {}, {"a": "1"}),
])
def test_merge_labels(labels, changes, expected):
    merged = merge_labels(labels, changes)
    assert list(merged.items()) == list(expected.items())


def test_update_labels_rewrites_each_block_once_and_keeps_statistics_exact(tmp_path):
    engine = _populate(tmp_path)
    errors = engine.update_labels("b", "e", {
        1: {"n": "", "new": "x"}, 2: {"k": "w"}, 5: {"n": "five"}, 99: {"a": "b"},
    })
    assert list(errors) == [99]
    assert errors[99].status == 404 and errors[99].message == "Record 99 not found in entry b/e"
    assert _labels(engine, 1) == [("k", "v"), ("new", "x")]
    assert _labels(engine, 2) == [("n", "2"), ("k", "w")]
    assert _labels(engine, 5) == [("n", "five"), ("k", "v")]
    size = _entry(engine)["size"]
    engine.close()
    again = _open(tmp_path)
    # The statistics computed after the update equal those read from disk.
    assert _entry(again)["size"] == size
    assert _labels(again, 1) == [("k", "v"), ("new", "x")]
    assert _labels(again, 5) == [("n", "five"), ("k", "v")]
    assert read_content(again.read("b", "e", 2)) == BIG
    again.close()


def test_update_labels_failure_changes_nothing(tmp_path, monkeypatch):
    engine = _populate(tmp_path)
    size = _entry(engine)["size"]

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blockfile, "replace_file", full)
    with pytest.raises(InsufficientStorage):
        engine.update_labels("b", "e", {1: {"n": "changed"}})
    monkeypatch.undo()
    assert _labels(engine, 1) == [("n", "1"), ("k", "v")]
    assert _entry(engine)["size"] == size
    # The block still takes appends at the right place.
    write_record(engine, "b", "e", 7, b"seven")
    engine.close()
    again = _open(tmp_path)
    assert _labels(again, 1) == [("n", "1"), ("k", "v")]
    assert read_content(again.read("b", "e", 7)) == b"seven"
    again.close()


def test_update_while_a_record_of_the_block_is_written(tmp_path):
    engine = _populate(tmp_path, count=4)
    alloc = engine.allocate("b", "e", 5, 4, "text/plain", {"late": "1"})
    errors = engine.update_labels("b", "e", {4: {"n": "x"}, 5: {"n": "y"}})
    assert (errors[5].status, errors[5].message) == (
        425, "Record with timestamp 5 in b/e is still being written")
    errors = engine.remove_stamps("b", "e", [5])
    assert (errors[5].status, errors[5].message) == (
        425, "Record with timestamp 5 in b/e is still being written")
    write_content(alloc, b"five")
    engine.commit(alloc)
    engine.close()
    again = _open(tmp_path)
    assert _labels(again, 4) == [("n", "x"), ("k", "v")]
    assert _labels(again, 5) == [("late", "1")]
    assert read_content(again.read("b", "e", 5)) == b"five"
    again.close()


def test_remove_stamps_across_blocks_and_a_whole_block(tmp_path):
    engine = _populate(tmp_path)
    errors = engine.remove_stamps("b", "e", [4, 5, 6, 2, 42])
    assert list(errors) == [42]
    # removals name the entry, never the block (spec 1.20 §5.5)
    assert errors[42].message == "Record 42 not found in entry b/e"
    info = _entry(engine)
    assert (info["record_count"], info["block_count"], info["latest_record"]) == (2, 1, 3)
    for ts in (2, 4, 5, 6):
        with pytest.raises(NotFound):
            engine.read("b", "e", ts)
    # The large record's private segment went to the trash.
    assert not os.path.exists(tmp_path / "b" / "e" / blockfile.private_name(1, 2))
    engine.close()
    again = _open(tmp_path)
    assert [ts for ts, _ in again.list_records("b", "e", 0, 100)] == [1, 3]
    again.close()


def test_remove_entry_fails_writes_in_flight_and_frees_the_name(tmp_path):
    engine = _populate(tmp_path, count=2)
    alloc = engine.allocate("b", "e", 10, 3, "text/plain", {})
    qid = engine.create_query("b", "e")
    engine.remove_entry("b", "e")
    write_content(alloc, b"abc")
    with pytest.raises(NotFound):
        engine.commit(alloc)
    with pytest.raises(NotFound):
        engine.query_next("b", "e", qid)
    with pytest.raises(NotFound):
        engine.remove_entry("b", "e")
    write_record(engine, "b", "e", 1, b"new")
    engine.close()
    again = _open(tmp_path)
    assert [ts for ts, _ in again.list_records("b", "e", 0, 100)] == [1]
    assert read_content(again.read("b", "e", 1)) == b"new"
    again.close()


def test_rename_bucket_then_write_read_update_and_remove_under_the_new_name(tmp_path):
    engine = _populate(tmp_path)
    qid = engine.create_query("b", "e")
    engine.read("b", "e", 1)  # tables and descriptors cached under the old paths
    engine.rename_bucket("b", "c")
    assert not engine.has_bucket("b") and engine.has_bucket("c")
    with pytest.raises(NotFound):
        engine.query_next("c", "e", qid)
    write_record(engine, "c", "e", 7, b"seven")
    assert engine.update_labels("c", "e", {1: {"n": "one"}}) == {}
    assert engine.remove_stamps("c", "e", [3]) == {}
    assert read_content(engine.read("c", "e", 2)) == BIG
    assert not os.path.exists(tmp_path / "b")
    engine.close()
    again = _open(tmp_path)
    assert [ts for ts, _ in again.list_records("c", "e", 0, 100)] == [1, 2, 4, 5, 6, 7]
    assert _labels(again, 1, bucket="c") == [("n", "one"), ("k", "v")]
    again.close()


def test_rename_refusals(tmp_path):
    engine = _populate(tmp_path, count=1)
    engine.create_bucket("other", {})
    write_record(engine, "b", "x", 1, b"x")
    with pytest.raises(Conflict, match="Bucket 'other' already exists"):
        engine.rename_bucket("b", "other")
    with pytest.raises(UnprocessableEntity):
        engine.rename_bucket("b", "../escape")
    with pytest.raises(NotFound, match="Bucket 'none' is not found"):
        engine.rename_bucket("none", "x")
    with pytest.raises(Conflict, match="Entry 'x' already exists in bucket 'b'"):
        engine.rename_entry("b", "e", "x")
    with pytest.raises(NotFound, match="Entry 'none' not found in bucket 'b'"):
        engine.rename_entry("b", "none", "y")
    engine.provision_bucket("prov", {})
    with pytest.raises(Conflict, match="Can't rename provisioned bucket 'prov'"):
        engine.rename_bucket("prov", "y")
    alloc = engine.allocate("b", "e", 5, 3, "text/plain", {})
    with pytest.raises(Conflict, match="has records being written"):
        engine.rename_bucket("b", "y")
    with pytest.raises(Conflict, match="has records being written"):
        engine.rename_entry("b", "e", "y")
    write_content(alloc, b"abc")
    engine.commit(alloc)
    # A directory the engine does not know is never merged into.
    os.makedirs(tmp_path / "stray" / "junk")
    with pytest.raises(Conflict, match="exists on disk"):
        engine.rename_bucket("b", "stray")
    engine.rename_entry("b", "e", "y")
    assert read_content(engine.read("b", "y", 5)) == b"abc"
    engine.close()
