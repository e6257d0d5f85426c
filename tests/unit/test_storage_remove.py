"""
Removing records by query (storage/removal.py, spec §3.7, §4.7): which
records go, the statistics, the block files, and what a restart or a crash
at each step of a removal leaves.

A "crash" is an engine that is never closed: its run marker stays, so the
next open is unclean.  Intermediate on-disk states are made by hand.
"""

import errno
import json
import os
import shutil

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import InsufficientStorage, NotFound, UnprocessableEntity
from reduct_twisted.storage import PENDING, SMALL_RECORD_MAX, StorageEngine
from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.testing import read_content, write_content, write_record
from reduct_twisted.storage.when import ReferenceNotFound

BIG = b"B" * (SMALL_RECORD_MAX + 7)


def _open(path):
    engine = StorageEngine(str(path), Clock())
    engine.open()
    return engine


def _populate(path, count=6, block_records=3):
    """Records 1..count (3 per block, record 2 large); the engine stays open."""
    engine = _open(path)
    engine.create_bucket("b", {"max_block_records": block_records})
    for ts in range(1, count + 1):
        data = BIG if ts == 2 else b"data-%d" % ts
        write_record(engine, "b", "e", ts, data, labels={"odd": str(ts % 2 == 1).lower()})
    return engine


def _remove(engine, entry="e", budget=None, **query):
    removal = engine.remove_records("b", entry, **query)
    if budget is not None:
        removal.budget = budget
    steps = 0
    while True:
        result = removal.step()
        steps += 1
        if result is not PENDING:
            return result, steps


def _stamps(engine, entry="e"):
    return [ts for ts, _ in engine.list_records("b", entry, 0, 2**63)]


def _entry(engine, entry="e"):
    return next(e for e in engine.bucket_info("b")["entries"] if e["name"] == entry)


def _meta_stamps(path):
    with open(path, "rb") as f:
        return [json.loads(line)["ts"] for line in list(f)[1:]]


def test_removal_updates_table_statistics_and_files(tmp_path):
    """Removed records leave reads, queries, the statistics and their
    block's .meta; a private segment is trashed, shared bytes stay dead."""
    engine = _populate(tmp_path)
    before = _entry(engine)
    assert _remove(engine, when={"&odd": {"$eq": False}}, stop=5)[0] == 2  # 2 and 4
    assert _stamps(engine) == [1, 3, 5, 6]
    with pytest.raises(NotFound):
        engine.read("b", "e", 4)
    after = _entry(engine)
    assert after["record_count"] == 4 and after["block_count"] == 2
    assert after["oldest_record"] == 1 and after["latest_record"] == 6
    size_2 = before["size"] - after["size"] - len(BIG) - len(b"data-4")
    assert 0 < size_2 < 100  # the metadata part of the two records
    entry_dir = tmp_path / "b" / "e"
    assert _meta_stamps(entry_dir / "1.meta") == [1, 3]
    assert _meta_stamps(entry_dir / "4.meta") == [5, 6]
    assert not (entry_dir / "1-2.blk").exists()
    stats = {s["id"]: s for s in engine.block_stats("b", "e")}
    assert stats[4]["dead_bytes"] == len(b"data-4")
    engine.close()
    reopened = _open(tmp_path)
    assert _entry(reopened) == after
    assert [read_content(reopened.read("b", "e", ts)) for ts in (1, 3, 5)] == [
        b"data-1", b"data-3", b"data-5"
    ]
    reopened.close()


def test_a_block_left_empty_is_removed_and_the_timestamp_can_be_reused(tmp_path):
    """Removing every record of a block removes the block (files included);
    a removed timestamp can be written again, also a large one."""
    engine = _populate(tmp_path)
    assert _remove(engine, start=4)[0] == 3
    assert _entry(engine)["block_count"] == 1 and _entry(engine)["latest_record"] == 3
    assert not any(n.startswith("4") for n in os.listdir(tmp_path / "b" / "e"))
    assert _remove(engine, start=2, stop=3)[0] == 1
    write_record(engine, "b", "e", 2, BIG[:-1])
    write_record(engine, "b", "e", 4, b"again")
    assert _stamps(engine) == [1, 2, 3, 4]
    engine.close()
    reopened = _open(tmp_path)
    assert read_content(reopened.read("b", "e", 2)) == BIG[:-1]
    assert read_content(reopened.read("b", "e", 4)) == b"again"
    reopened.close()


def test_removed_records_stay_removed_after_a_crash(tmp_path):
    """A crash right after a removal: the unclean open checks the rewritten
    blocks and keeps the removal; nothing else is dropped."""
    engine = _populate(tmp_path)
    assert _remove(engine, when={"&odd": {"$eq": True}})[0] == 3
    expected = _entry(engine)
    reopened = _open(tmp_path)  # the first engine was never closed
    report = reopened.recovery_report()
    assert report["unclean"] and report["dropped_records"] == 0
    assert report["verified_records"] > 0
    assert _stamps(reopened) == [2, 4, 6]
    assert _entry(reopened) == expected
    reopened.close()


def test_crash_before_the_rename_keeps_every_record(tmp_path):
    """A crash while the new .meta was being written (a .tmp beside the old
    one) leaves the block as it was; the .tmp is trashed."""
    _populate(tmp_path)  # left open: the process "crashed"
    meta = tmp_path / "b" / "e" / "1.meta"
    with open(str(meta) + ".tmp", "wb") as f:
        f.write(blockfile.encode_header(1))  # half of a rewrite
    reopened = _open(tmp_path)
    assert _stamps(reopened) == [1, 2, 3, 4, 5, 6]
    assert not os.path.exists(str(meta) + ".tmp")
    reopened.close()


def test_crash_after_the_rename_trashes_the_orphan_segment(tmp_path):
    """A crash after the .meta rename but before the private segment was
    trashed: the segment no metadata names is trashed at open."""
    engine = _populate(tmp_path)
    segment = tmp_path / "b" / "e" / "1-2.blk"
    kept = tmp_path / "kept-segment"
    shutil.copy(segment, kept)
    assert _remove(engine, start=2, stop=3)[0] == 1
    shutil.copy(kept, segment)  # as if the trash step never happened
    reopened = _open(tmp_path)
    assert _stamps(reopened) == [1, 3, 4, 5, 6]
    assert not segment.exists()
    reopened.close()


def test_removal_beside_a_record_being_written(tmp_path):
    """The .meta is rewritten while another record of the block is still
    being written: its commit appends to the new file; a block whose only
    finished record goes keeps its record in flight."""
    engine = _populate(tmp_path, count=2, block_records=4)
    alloc = engine.allocate("b", "e", 3, 5, "text/plain", {"late": "yes"})
    write_content(alloc, b"third")
    assert _remove(engine, stop=3)[0] == 2  # the started record is not matched
    assert _entry(engine)["record_count"] == 1
    engine.commit(alloc)
    assert _stamps(engine) == [3]
    engine.close()
    reopened = _open(tmp_path)
    view = reopened.read("b", "e", 3)
    assert read_content(view) == b"third" and view.record.labels == {"late": "yes"}
    assert _meta_stamps(tmp_path / "b" / "e" / "1.meta") == [3]
    reopened.close()


def test_strict_error_removes_nothing_and_bad_queries_are_refused(tmp_path):
    """A strict evaluation error ends the removal before anything is
    removed; bad parameters and names are 422; a missing bucket is 404."""
    engine = _populate(tmp_path)
    with pytest.raises(ReferenceNotFound) as info:
        _remove(engine, when={"&missing": {"$eq": 1}}, strict=True)
    assert info.value.message == "Reference 'missing' not found"
    assert _stamps(engine) == [1, 2, 3, 4, 5, 6]
    assert _remove(engine, when={"&missing": {"$eq": 1}})[0] == 0
    for query in ({"start": 5, "stop": 1}, {"each_n": 0}, {"when": {"$nope": 1}},
                  {"ext": {"x": {}}}):
        with pytest.raises(UnprocessableEntity):
            engine.remove_records("b", "e", **query)
    with pytest.raises(UnprocessableEntity):
        engine.remove_records("b", "bad.name", start=0)
    with pytest.raises(NotFound):
        engine.remove_records("nope", "e", start=0)
    assert [e["name"] for e in engine.bucket_info("b")["entries"]] == ["e"]
    engine.close()


def test_missing_entry_is_created_empty(tmp_path):
    """As upstream: a remove on a missing entry creates it (no records);
    like every entry without records it is kept over a restart (spec 1.20
    §5.9; it used not to be)."""
    engine = _populate(tmp_path)
    assert _remove(engine, entry="ghost", start=0)[0] == 0
    assert _entry(engine, "ghost")["record_count"] == 0
    engine.close()
    reopened = _open(tmp_path)
    assert [e["name"] for e in reopened.bucket_info("b")["entries"]] == ["e", "ghost"]
    reopened.close()


def test_disk_error_while_rewriting_changes_nothing(tmp_path, monkeypatch):
    """ENOSPC while the .meta is rewritten: 507, the block is unchanged."""
    engine = _populate(tmp_path)
    before = _entry(engine)

    def full(path, block_id, records):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blockfile, "replace_meta", full)
    with pytest.raises(InsufficientStorage) as info:
        _remove(engine, start=1, stop=2)
    assert info.value.message == "Failed to remove records: No space left on device"
    assert _entry(engine) == before and _stamps(engine) == [1, 2, 3, 4, 5, 6]
    engine.close()


def test_large_removals_run_in_slices(tmp_path):
    """The scan gives the reactor back every ``budget`` examined records."""
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 50})
    for ts in range(1, 501):
        write_record(engine, "b", "e", ts, b"x", labels={"k": str(ts % 10)})
    removed, steps = _remove(engine, budget=100, when={"&k": {"$eq": 3}})
    assert removed == 50 and steps >= 5
    assert _entry(engine)["record_count"] == 450
    engine.close()


def test_a_query_skips_records_removed_after_it_queued_them(tmp_path):
    """Records a query holds for #ctx_before are skipped once removed."""
    engine = _populate(tmp_path)
    when = {"#ctx_before": 5, "&odd": {"$eq": False}, "$gte": ["$timestamp", 4]}
    qid = engine.create_query("b", "e", when=when)
    assert engine.query_next("b", "e", qid).record.ts == 1  # 2, 3, 4 wait in the queue
    assert _remove(engine, start=2, stop=4)[0] == 2
    assert [engine.query_next("b", "e", qid).record.ts for _ in range(3)] == [4, 5, 6]
    assert engine.query_next("b", "e", qid) is None
    engine.close()
