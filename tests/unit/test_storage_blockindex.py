"""
The block index (issue #17; storage/disk/blockindex.py, storage/indexing.py):
an entry opened from its ``.blocks`` rows is the entry opened by reading
every ``.meta``, field by field, after every kind of change; a damaged,
missing, newer or stale index costs only the reread.
"""

import json
import os
import shutil

import pytest
from twisted.internet.task import Clock

from reduct_twisted.storage import PENDING, SMALL_RECORD_MAX, StorageEngine
from reduct_twisted.storage import indexing
from reduct_twisted.storage.disk import blockindex
from reduct_twisted.storage.disk.recovery import MARKER
from reduct_twisted.storage.testing import read_content, write_record

from tests.unit.test_storage_compress import _result  # the Deferred's result, or raise

#: Every summary field ``Block.from_disk`` derives (``version``, the table,
#: paths and the in-memory flags aside).
FIELDS = ("block_id", "record_count", "data_size", "meta_size", "first_ts", "latest_ts", "tail",
          "shared_live", "private_ts", "started", "meta_length", "packed", "packed_count",
          "top_number", "unnumbered", "shared_known", "size", "dead_bytes")

BIG = b"0123456789abcdef" * (SMALL_RECORD_MAX // 16 + 4)  # a private segment


def _open(path):
    engine = StorageEngine(str(path), Clock())
    engine.open()
    return engine


def _remove(engine, entry, **query):
    removal = engine.remove_records("b", entry, **query)
    while (count := removal.step()) is PENDING:
        pass
    return count


def summary(engine) -> dict:
    """Every entry's blocks, field by field, and the entry's totals and counter."""
    found = {}
    for bucket_name, bucket in engine._buckets.items():
        for name, entry in bucket.entries.items():
            found[(bucket_name, name)] = {
                "blocks": [{f: getattr(b, f) for f in FIELDS} for b in entry.blocks],
                "size": entry.size, "record_count": entry.record_count,
                "next_number": entry.numbers.next, "legacy": entry.numbers.legacy,
            }
    return found


def files(root) -> dict:
    """Every file below ``root`` (block indexes, the trash and the run marker aside) by size."""
    found = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".trash"]
        for name in names:
            if name not in (".blocks", MARKER):
                path = os.path.join(directory, name)
                found[os.path.relpath(path, root)] = os.path.getsize(path)
    return found


def contents(engine) -> dict:
    """Every record of every entry: labels and bytes."""
    found = {}
    for (bucket, name), _ in summary(engine).items():
        qid = engine.create_query(bucket, name)
        while (view := engine.query_next(bucket, name, qid)) is not None:
            found[(name, view.record.ts)] = (dict(view.record.labels), read_content(view))
    return found


def open_both(tmp_path, source):
    """
    Open ``source`` as it is (with its indexes) and a copy of it without
    them; :return: both engines (``with``, ``without``).
    """
    copy = tmp_path / "copy"
    shutil.copytree(source, copy, symlinks=True)
    for directory, _, names in os.walk(copy):
        if ".blocks" in names:
            os.unlink(os.path.join(directory, ".blocks"))
    return _open(source), _open(copy)


def assert_same(with_index, without_index, used=True):
    assert summary(with_index) == summary(without_index)
    assert files(with_index.data_path) == files(without_index.data_path)
    report, plain = with_index.recovery_report(), without_index.recovery_report()
    assert report.pop("block_index")["ignored"] == []
    plain_index = plain.pop("block_index")
    assert plain_index["rows_used"] == 0
    # After kill -9 the blocks opened from their rows are not checked again.
    assert report.pop("verified_records") <= plain.pop("verified_records")
    assert {**report, "quarantined_blocks": None} == {**plain, "quarantined_blocks": None}
    if used:  # the index did the work: the comparison compares something
        assert with_index.recovery_report()["block_index"]["rows_used"] > 0
    assert contents(with_index) == contents(without_index)


def build(path, crash=False):
    """
    A data directory that went through every kind of change: shared and
    private segments, chunked records, relabels, removals (a block's tail
    record too), an aborted record, FIFO eviction, compression.  With
    ``crash`` an index pass runs half-way, more changes follow and the
    engine is dropped without ``close`` (as ``kill -9`` leaves it).
    """
    engine = _open(path)
    engine.create_bucket("b", {"max_block_records": 5})
    engine.create_bucket("fifo", {"max_block_records": 3, "quota_type": "FIFO",
                                  "quota_size": 900})
    for ts in range(1, 31):
        data = BIG if ts % 11 == 0 else b"record %d " % ts * (ts % 4 + 1)
        write_record(engine, "b", "e", ts, data, labels={"n": str(ts), "k": "x" * (ts % 3)})
        write_record(engine, "b", "f", ts * 10, b"f%d" % ts, chunked=ts % 7 == 0)
        write_record(engine, "fifo", "q", ts, b"q" * 60)
    write_record(engine, "b", "e/child", 5, b"child")
    engine.update_labels("b", "e", {3: {"n": "three", "new": "yes"}, 12: {"k": ""}})
    assert _remove(engine, "e", start=7, stop=9) == 2
    assert _remove(engine, "e", start=15, stop=16) == 1          # the tail record of block 11
    alloc = engine.allocate("b", "f", 305, 10, "text/plain", {})  # aborted: dead bytes
    engine.abort(alloc)
    engine.enforce_quotas()
    assert _result(engine.compress_blocks("b", "e", 20))[1] >= 1
    if crash:
        pending, _ = engine.index_snapshot()
        assert engine.index_write(pending) >= 3
        write_record(engine, "b", "e", 40, b"after the pass")
        write_record(engine, "b", "f", 1000, b"after the pass")
        engine.update_labels("b", "e", {21: {"n": "late"}})
        assert _remove(engine, "f", start=20, stop=21) == 1
        engine._context.fds.close()
        return None
    engine.close()
    return engine


def test_a_clean_close_reopens_the_same_from_the_index_as_from_the_meta_files(tmp_path):
    build(tmp_path / "data")
    with_index, without_index = open_both(tmp_path, tmp_path / "data")
    assert with_index.recovery_report()["block_index"]["blocks_read"] == 0
    assert_same(with_index, without_index)


def test_after_kill_9_the_changed_blocks_are_read_and_the_rest_come_from_the_index(tmp_path):
    build(tmp_path / "data", crash=True)
    assert (tmp_path / "data" / MARKER).exists()
    with_index, without_index = open_both(tmp_path, tmp_path / "data")
    report = with_index.recovery_report()
    assert report["unclean"]
    assert report["block_index"]["blocks_read"] >= 3  # e's 40 and 21, f's 1000 and 20
    assert_same(with_index, without_index)
    assert contents(with_index)[("e", 21)][0]["n"] == "late"


def test_a_torn_meta_tail_and_an_aborted_shared_tail_are_cut_as_without_index(tmp_path):
    build(tmp_path / "data")
    entry = tmp_path / "data" / "b" / "e"
    with open(entry / "26.meta", "ab") as f:  # a torn append after the index was written
        f.write(b'{"k":"r","ts":31,"se')
    with open(entry / "26.blk", "ab") as f:   # content whose line never came
        f.write(b"orphan bytes")
    (entry / "21-33.blk").write_bytes(b"a large upload cut by kill -9")  # not in 21's row
    with_index, without_index = open_both(tmp_path, tmp_path / "data")
    assert_same(with_index, without_index)
    assert os.path.getsize(entry / "26.meta") == with_index._buckets["b"].entries["e"].blocks[-1].meta_length


def _rewrite_index(directory, change):
    rows = blockindex.read_index(str(directory))
    change(rows)
    blockindex.write_index(str(directory), rows.values())


def test_a_row_that_does_not_name_every_file_of_its_block_is_not_used(tmp_path):
    """A tampered row cannot get a file trashed: the block is read instead."""
    engine = _open(tmp_path)
    engine.create_bucket("b", {})
    write_record(engine, "b", "e", 1, b"small")
    write_record(engine, "b", "e", 2, BIG)
    engine.close()
    entry = tmp_path / "b" / "e"
    names = sorted(os.listdir(entry))
    assert "1-2.blk" in names

    def forget_private(rows):
        rows[1][blockindex.ROW_FIELDS.index("private_ts")] = []
    _rewrite_index(entry, forget_private)
    again = _open(tmp_path)
    assert again.recovery_report()["block_index"] == {"rows_used": 0, "blocks_read": 1, "ignored": []}
    assert sorted(os.listdir(entry)) == names
    assert read_content(again.read("b", "e", 2)) == BIG


def test_a_row_whose_shared_segment_outgrew_its_tail_is_cut_like_from_disk(tmp_path):
    """Removing a block's last shared record leaves its bytes until the next open."""
    engine = _open(tmp_path / "data")
    engine.create_bucket("b", {"max_block_records": 5})
    for ts in range(1, 5):
        write_record(engine, "b", "e", ts, b"x" * 100)
    _remove(engine, "e", start=4, stop=5)
    engine.close()
    assert os.path.getsize(tmp_path / "data" / "b" / "e" / "1.blk") == 400
    with_index, without_index = open_both(tmp_path, tmp_path / "data")
    assert with_index.recovery_report()["block_index"]["rows_used"] == 1
    assert_same(with_index, without_index)
    assert os.path.getsize(tmp_path / "data" / "b" / "e" / "1.blk") == 300


@pytest.mark.parametrize("damage", ["garbage", "checksum", "newer", "torn", "bad row", "unreadable"])
def test_an_unusable_index_is_ignored_with_a_note_and_rewritten(tmp_path, damage):
    build(tmp_path / "data")
    path = tmp_path / "data" / "b" / "e" / ".blocks"
    data = path.read_bytes()
    head, body = data.split(b"\n", 1)
    header = json.loads(head)
    if damage == "garbage":
        data = b"\x00not an index\n"
    elif damage == "checksum":
        data = head + b"\n" + body.replace(b"[", b"[ ", 1)
    elif damage == "newer":
        data = json.dumps({**header, "version": blockindex.FORMAT_VERSION + 1}).encode() + b"\n" + body
    elif damage == "torn":
        data = data[: len(data) // 2]
    elif damage == "bad row":
        rows = json.loads(body)
        rows[0] = "row"
        body = json.dumps(rows).encode()
        data = json.dumps({**header, "crc32": blockindex.zlib.crc32(body)}).encode() + b"\n" + body + b"\n"
    if damage == "unreadable":
        path.unlink()
        path.mkdir()  # not a file: reported as not ours, the blocks read
    else:
        path.write_bytes(data)
    with_index, without_index = open_both(tmp_path, tmp_path / "data")
    report = with_index.recovery_report()
    if damage == "unreadable":
        assert any(".blocks" in line for line in report["left_in_place"])
        assert path.is_dir()
        assert summary(with_index) == summary(without_index)
        return
    assert len(report["block_index"]["ignored"]) == 1
    assert "b/e" in report["block_index"]["ignored"][0]
    report["block_index"]["ignored"] = []
    assert summary(with_index) == summary(without_index)
    assert contents(with_index) == contents(without_index)
    with_index.close()
    again = _open(tmp_path / "data")  # the close wrote a good index again
    assert again.recovery_report()["block_index"]["blocks_read"] == 0
    assert again.recovery_report()["block_index"]["ignored"] == []


def test_a_row_is_used_only_while_its_key_matches(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in range(1, 7):
        write_record(engine, "b", "e", ts, b"data %d" % ts)
    engine.close()
    entry = tmp_path / "b" / "e"
    rows = blockindex.read_index(str(entry))
    assert sorted(rows) == [1, 3, 5]
    # Another content, same size and name (a hand edit): a new inode and mtime.
    data = (entry / "3.meta").read_bytes()
    (entry / "3.meta").unlink()
    (entry / "3.meta").write_bytes(data)
    again = _open(tmp_path)
    assert again.recovery_report()["block_index"] == {"rows_used": 2, "blocks_read": 1, "ignored": []}
    again.close()
    # Rows of blocks gone are dropped; the rewritten index has the three again.
    assert sorted(blockindex.read_index(str(entry))) == [1, 3, 5]
    again = _open(tmp_path)
    assert again.recovery_report()["block_index"]["rows_used"] == 3


def test_leftover_tmp_is_trashed_and_an_emptied_entry_loses_its_index(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {})
    write_record(engine, "b", "e", 1, b"one")
    engine.close()
    entry = tmp_path / "b" / "e"
    (entry / ".blocks.tmp").write_bytes(b"half")
    engine = _open(tmp_path)
    assert sorted(os.listdir(entry)) == [".blocks", "1.blk", "1.meta"]
    assert engine.recovery_report()["left_in_place"] == []
    _remove(engine, "e", start=1, stop=2)
    engine.close()
    assert not {".blocks", ".blocks.tmp", "1.meta"} & set(os.listdir(entry))


def test_a_periodic_pass_writes_only_rows_of_unchanged_finished_blocks(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 3})
    for ts in range(1, 8):
        write_record(engine, "b", "e", ts, b"x%d" % ts)
    pending, paths = engine.index_snapshot()
    assert [e.name for e, _ in pending] == ["e"]
    assert str(tmp_path / "b" / "e" / "7.meta") in paths
    # Block 7 changes between the snapshot and the write: its row waits.
    write_record(engine, "b", "e", 8, b"x8")
    alloc = engine.allocate("b", "e", 4_000, 2, "text/plain", {})  # being written: no row
    assert engine.index_write(pending) == 1
    assert sorted(blockindex.read_index(str(tmp_path / "b" / "e"))) == [1, 4]
    pending, _ = engine.index_snapshot()
    engine.index_write(pending)
    assert sorted(blockindex.read_index(str(tmp_path / "b" / "e"))) == [1, 4]
    engine.abort(alloc)
    pending, _ = engine.index_snapshot()
    engine.index_write(pending)
    assert sorted(blockindex.read_index(str(tmp_path / "b" / "e"))) == [1, 4, 7]
    assert engine.index_snapshot() == ([], [])  # nothing changed since


def test_a_periodic_pass_is_bounded_and_takes_entries_in_turn(tmp_path, monkeypatch):
    monkeypatch.setattr(indexing, "PASS_ENTRIES", 2)
    engine = _open(tmp_path)
    engine.create_bucket("b", {})
    for n in range(5):
        write_record(engine, "b", f"e{n}", 1, b"x")
    seen = []
    for _ in range(3):
        pending, _ = engine.index_snapshot()
        seen += [e.name for e, _ in pending]
        engine.index_write(pending)
    assert sorted(seen) == ["e0", "e1", "e2", "e3", "e4"]
    assert engine.index_snapshot() == ([], [])


def test_an_unloaded_changed_block_keeps_its_old_row_until_close_reads_it(tmp_path):
    engine = StorageEngine(str(tmp_path), Clock(), table_cache_size=1)
    engine.open()
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in range(1, 5):
        write_record(engine, "b", "e", ts, b"x%d" % ts)
    engine.close()
    engine = StorageEngine(str(tmp_path), Clock(), table_cache_size=1)
    engine.open()
    engine.update_labels("b", "e", {1: {"a": "b"}})
    write_record(engine, "b", "e", 3_000, b"y" * 5)  # evicts block 1's table
    block = engine._buckets["b"].entries["e"].blocks[0]
    assert block.table is None
    pending, _ = engine.index_snapshot()
    engine.index_write(pending)
    row = blockindex.read_index(str(tmp_path / "b" / "e"))[1]
    assert row[1] != os.path.getsize(tmp_path / "b" / "e" / "1.meta")  # the old row, stale
    engine.close()
    row = blockindex.read_index(str(tmp_path / "b" / "e"))[1]
    assert row[1] == os.path.getsize(tmp_path / "b" / "e" / "1.meta")
    again = _open(tmp_path)
    assert again.recovery_report()["block_index"]["blocks_read"] == 0


def test_a_renamed_entry_keeps_its_index(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in range(1, 6):
        write_record(engine, "b", "e", ts, b"x%d" % ts)
    engine.close()
    engine = _open(tmp_path)
    engine.rename_entry("b", "e", "renamed")
    assert engine.index_snapshot() == ([], [])  # the rows still hold
    engine.close()
    again = _open(tmp_path)
    assert again.recovery_report()["block_index"] == {"rows_used": 3, "blocks_read": 0, "ignored": []}


def test_the_index_loads_ten_thousand_rows_quickly_enough_to_matter(tmp_path):
    rows = [[i, 100, 10**18, 5, 200, 100, 3, 300, 90, i, i + 2, 300, 300, 0, 3, 0, 0, [], []]
            for i in range(10_000)]
    blockindex.write_index(str(tmp_path), rows)
    found = blockindex.read_index(str(tmp_path))
    assert len(found) == 10_000 and all(blockindex.valid_row(r) for r in found.values())
    assert found[9_999] == rows[9_999]


def _reference_meta_size(ts, begin, end, content_type, labels):
    # record_meta_size as it was before it was inlined (issue #17).
    def varint(value):
        return (value.bit_length() + 6) // 7 or 1

    def field(size):
        return 1 + varint(size) + size

    def text(value):
        size = len(value.encode("utf-8", "surrogatepass"))
        return field(size) if size else 0

    def integer(value):
        return 1 + varint(value) if value else 0

    seconds, micros = divmod(ts, 1_000_000)
    timestamp = integer(seconds) + integer(micros * 1000)
    size = field(timestamp) + integer(begin) + integer(end)
    for name, value in labels.items():
        size += field(text(name) + text(value))
    return size + text(content_type)


def test_the_inlined_record_meta_size_equals_the_reference():
    import random

    from reduct_twisted.storage.disk import blockfile

    rng = random.Random(17)
    words = ["", "a", "é", "\ud800", "x" * 127, "y" * 128, "z" * 20000, "日本", "text/plain"]
    cases = [(0, 0, 0, "", {}), (1_000_000, 0, 8, "", {}), (2**64 - 1, 2**40, 2**41, "b", {"": ""})]
    for _ in range(3000):
        labels = {rng.choice(words) + str(rng.randint(0, 9)): rng.choice(words)
                  for _ in range(rng.randint(0, 4))}
        begin = rng.choice([0, rng.randint(0, 2**35)])
        cases.append((rng.choice([0, rng.randint(0, 2**63), rng.randint(0, 10**7) * 1_000_000]),
                      begin, begin + rng.choice([0, rng.randint(0, 2**30)]), rng.choice(words),
                      labels))
    for case in cases:
        assert blockfile.record_meta_size(*case) == _reference_meta_size(*case), case
