"""
Record writes and reads: placement, block rotation, belated records,
duplicates, aborts and the write protocol (spec §2.3.1, §4.2–§4.4).
"""

import os

import pytest
from twisted.internet.task import Clock

from tests.unit.conftest import error_message
from reduct_twisted.errors import BadRequest, Conflict, InternalError, NotFound, TooEarly
from reduct_twisted.storage import SMALL_RECORD_MAX, StorageEngine
from reduct_twisted.storage.testing import read_content, write_content, write_record


@pytest.fixture
def engine(engine):
    """The shared engine with an empty bucket ``b``."""
    engine.create_bucket("b", None)
    return engine


def _block_ids(engine, entry="e"):
    return [b["id"] for b in engine.block_stats("b", entry)]


def _entry_dir(engine, entry="e"):
    return os.path.join(engine.data_path, "b", entry)


def test_round_trip_small_record(engine):
    """A small record is written into the shared segment and read back by ts."""
    alloc = engine.allocate("b", "e", 1000, 5, "text/plain", {"x": "1", "a": "2"})
    assert not alloc.private and alloc.fd is not None
    assert alloc.path == os.path.join(_entry_dir(engine), "1000.blk")
    write_content(alloc, b"he")
    write_content(alloc, b"llo")
    engine.commit(alloc)
    view = engine.read("b", "e", 1000)
    record = view.record
    assert (record.ts, record.size, record.content_type) == (1000, 5, "text/plain")
    assert list(record.labels.items()) == [("x", "1"), ("a", "2")]
    assert read_content(view) == b"hello"
    assert view.last is False


def test_small_records_share_one_segment_back_to_back(engine):
    """Consecutive small records of a block get consecutive offsets in one file."""
    for ts, data in [(1, b"aaa"), (2, b"bb"), (3, b"")]:
        write_record(engine, "b", "e", ts, data)
    views = [engine.read("b", "e", ts) for ts in (1, 2, 3)]
    assert {v.path for v in views} == {os.path.join(_entry_dir(engine), "1.blk")}
    assert [(v.record.offset, v.record.size) for v in views] == [(0, 3), (3, 2), (5, 0)]
    assert [read_content(v) for v in views] == [b"aaa", b"bb", b""]
    assert os.path.getsize(views[0].path) == 5


def test_labels_view_is_a_copy(engine):
    """Mutating a view's labels does not change the stored record."""
    write_record(engine, "b", "e", 1, b"x", labels={"k": "v"})
    engine.read("b", "e", 1).record.labels["k"] = "changed"
    assert engine.read("b", "e", 1).record.labels == {"k": "v"}


@pytest.mark.parametrize("length", [SMALL_RECORD_MAX + 1, None])
def test_large_and_chunked_records_get_a_private_segment(engine, length):
    """Records over SMALL_RECORD_MAX or of unknown length get their own file."""
    alloc = engine.allocate("b", "e", 7, length, "application/x", {})
    assert alloc.private and alloc.fd is None and alloc.offset == 0
    assert alloc.path == os.path.join(_entry_dir(engine), "7-7.blk")
    data = b"z" * (SMALL_RECORD_MAX + 1)
    write_content(alloc, data)
    engine.commit(alloc)
    view = engine.read("b", "e", 7)
    assert (view.path, view.record.offset, view.record.size) == (alloc.path, 0, len(data))
    assert read_content(view) == data


def test_chunked_commit_sets_size_and_statistics(engine):
    """A chunked record counts 0 bytes while written and its real size after commit."""
    alloc = engine.allocate("b", "e", 1_000_000, None, "application/octet-stream", {})
    assert engine.bucket_info("b")["entries"][0]["size"] == 32 - 2  # end == 0 is omitted
    write_content(alloc, b"somedata")
    engine.commit(alloc)
    assert engine.read("b", "e", None).record.size == 8
    assert engine.bucket_info("b")["entries"][0]["size"] == 40


def test_empty_chunked_record_is_readable(engine):
    """A chunked record with no bytes at all still has a (empty) data file."""
    alloc = engine.allocate("b", "e", 5, None, "t", {})
    engine.commit(alloc)
    assert read_content(engine.read("b", "e", 5)) == b""


def test_read_latest_and_errors(engine):
    """
    ts None reads the latest record; missing things give the exact 404
    texts (1.18, spec 1.20 §5.5): the block with the greatest id at or
    before ``ts`` is named if there is one, else the entry.
    """
    write_record(engine, "b", "e", 2000, b"new")
    write_record(engine, "b", "e", 1000, b"old")
    assert _block_ids(engine) == [1000, 2000]
    assert read_content(engine.read("b", "e", None)) == b"new"
    assert error_message(NotFound, engine.read, "x", "e", 1) == "Bucket 'x' is not found"
    assert error_message(NotFound, engine.read, "b", "x", 1) == "Entry 'x' not found in bucket 'b'"
    assert error_message(NotFound, engine.read, "b", "e", 1500) == (
        "Record 1500 not found in block b/e/1000")
    assert error_message(NotFound, engine.read, "b", "e", 3000) == (
        "Record 3000 not found in block b/e/2000")
    assert error_message(NotFound, engine.read, "b", "e", 999) == (
        "Record 999 not found in entry b/e")


def test_started_record_is_too_early(engine):
    """Reading a record that is still being written answers 425, also as latest."""
    alloc = engine.allocate("b", "e", 10, 3, "t", {})
    assert error_message(TooEarly, engine.read, "b", "e", 10) == (
        "Record with timestamp 10 in b/e is still being written"
    )
    assert error_message(TooEarly, engine.read, "b", "e", None) == (
        "Record with timestamp 10 in b/e is still being written"
    )
    write_content(alloc, b"abc")
    engine.commit(alloc)
    assert read_content(engine.read("b", "e", 10)) == b"abc"


def test_write_checks_bucket_then_entry_name(engine):
    """A missing bucket wins over a bad entry name; bad names create nothing."""
    assert error_message(NotFound, engine.allocate, "x", "bad name", 1, 1, "t", {}) == (
        "Bucket 'x' is not found"
    )
    # Entry names are paths since API 1.19 (spec 1.20 §2.1): the entry texts.
    assert error_message(Exception, engine.allocate, "b", "../../escape", 1, 1, "t", {}) == (
        "Entry name can contain only letters, digits and [-,_,/] symbols or end with '/$meta'"
    )
    for bad in ("a//b", "/a", "a/", ""):
        assert error_message(Exception, engine.allocate, "b", bad, 1, 1, "t", {}) == (
            "Entry name must be non-empty and must not contain empty path segments"
        )
    assert sorted(os.listdir(os.path.join(engine.data_path, "b"))) == ["settings.json"]


def test_rotation_by_record_count(engine):
    """At most max_block_records records go into a block (1.9+ rule)."""
    engine.update_bucket("b", {"max_block_records": 2})
    for ts in range(1, 6):
        write_record(engine, "b", "e", ts, b"x")
    assert _block_ids(engine) == [1, 3, 5]
    assert [b["record_count"] for b in engine.block_stats("b", "e")] == [2, 2, 1]


def test_rotation_by_size_and_oversized_record(engine):
    """A block is closed when a record would overflow it; an oversized record
    gets a block of its own and the next record opens another."""
    engine.update_bucket("b", {"max_block_size": 10})
    for ts, size in [(1, 4), (2, 4), (3, 4), (4, 50), (5, 1)]:
        write_record(engine, "b", "e", ts, b"x" * size)
    assert _block_ids(engine) == [1, 3, 4, 5]
    assert [b["data_size"] for b in engine.block_stats("b", "e")] == [8, 4, 50, 1]


def test_new_block_limits_apply_to_future_rotations(engine):
    """Changing max_block_records affects the last block from now on."""
    engine.update_bucket("b", {"max_block_records": 1})
    write_record(engine, "b", "e", 1)
    write_record(engine, "b", "e", 2)
    engine.update_bucket("b", {"max_block_records": 3})
    for ts in (3, 4, 5):
        write_record(engine, "b", "e", ts)
    assert [b["record_count"] for b in engine.block_stats("b", "e")] == [1, 3, 1]


def test_belated_records_go_into_the_right_block(engine):
    """Older timestamps land in the block covering them, ignoring its limits,
    or open a new first block when older than every block."""
    engine.update_bucket("b", {"max_block_records": 2})
    for ts in (1000, 2000, 3000):
        write_record(engine, "b", "e", ts, b"%d" % ts)
    assert _block_ids(engine) == [1000, 3000]
    write_record(engine, "b", "e", 1500, b"1500")  # into the full block 1000
    write_record(engine, "b", "e", 500, b"500")  # older than everything
    write_record(engine, "b", "e", 2500, b"2500")  # into block 1000 (range [1000, 3000))
    assert _block_ids(engine) == [500, 1000, 3000]
    assert [b["record_count"] for b in engine.block_stats("b", "e")] == [1, 4, 1]
    for ts in (500, 1000, 1500, 2000, 2500, 3000):
        view = engine.read("b", "e", ts)
        assert read_content(view) == b"%d" % ts
    assert os.path.basename(engine.read("b", "e", 2500).path) == "1000.blk"


@pytest.mark.parametrize("ts", [1000, 2000, 1500])
def test_duplicates_are_conflicts(engine, ts):
    """A timestamp that exists (latest, older block, belated) is a 409."""
    engine.update_bucket("b", {"max_block_records": 2})
    for t in (1000, 1500, 2000):
        write_record(engine, "b", "e", t, b"x")
    assert error_message(Conflict, engine.allocate, "b", "e", ts, 1, "t", {}) == (
        f"A record with timestamp {ts} already exists"
    )


def test_in_flight_timestamp_is_reserved(engine):
    """A STARTED record's timestamp is taken until it is aborted."""
    alloc = engine.allocate("b", "e", 1000, 1, "t", {})
    assert error_message(Conflict, engine.allocate, "b", "e", 1000, 1, "t", {}) == (
        "A record with timestamp 1000 already exists"
    )
    engine.abort(alloc)
    write_record(engine, "b", "e", 1000, b"y")
    assert read_content(engine.read("b", "e", 1000)) == b"y"


def test_abort_at_tail_truncates_and_leaves_no_trace(engine):
    """Aborting the last record of the shared segment rolls the tail back,
    truncates the file and restores the statistics."""
    write_record(engine, "b", "e", 1, b"abcd")
    before = engine.bucket_info("b")
    alloc = engine.allocate("b", "e", 2, 6, "t", {"l": "v"})
    write_content(alloc, b"123")
    assert engine.bucket_info("b") != before
    engine.abort(alloc)
    engine.abort(alloc)  # idempotent
    assert engine.bucket_info("b") == before
    assert os.path.getsize(os.path.join(_entry_dir(engine), "1.blk")) == 4
    assert engine.block_stats("b", "e")[0]["dead_bytes"] == 0
    write_record(engine, "b", "e", 2, b"zz")
    assert engine.read("b", "e", 2).record.offset == 4


def test_abort_not_at_tail_leaves_dead_bytes(engine):
    """Aborting a record followed by another one leaves reclaimable dead bytes."""
    first = engine.allocate("b", "e", 1, 4, "t", {})
    second = engine.allocate("b", "e", 2, 3, "t", {})
    write_content(second, b"xyz")
    engine.abort(first)
    engine.commit(second)
    stats = engine.block_stats("b", "e")
    assert (stats[0]["dead_bytes"], stats[0]["data_size"], stats[0]["record_count"]) == (4, 3, 1)
    assert read_content(engine.read("b", "e", 2)) == b"xyz"
    # 3 data bytes + metadata: timestamp 5, begin 4 -> 2, end 7 -> 2, "t" -> 3
    assert engine.bucket_info("b")["info"]["size"] == 3 + 12


def test_abort_not_at_tail_gives_the_disk_space_back(engine):
    """The dead bytes of a record aborted before a later one are punched out of
    the shared segment: the disk space returns, later records read back intact."""
    size = 512 << 10
    first = engine.allocate("b", "e", 1, size, "t", {})
    second = engine.allocate("b", "e", 2, 3, "t", {})
    write_content(first, os.urandom(size - 100))  # most of it arrived, then the client left
    write_content(second, b"xyz")
    engine.commit(second)
    shared = engine.read("b", "e", 2).path
    used_before = os.stat(shared).st_blocks * 512
    engine.abort(first)
    used_after = os.stat(shared).st_blocks * 512
    assert used_before - used_after >= size - 2 * 4096
    assert os.path.getsize(shared) == size + 3  # offsets of later records stay valid
    assert read_content(engine.read("b", "e", 2)) == b"xyz"
    third = engine.allocate("b", "e", 3, 2, "t", {})
    write_content(third, b"ok")
    engine.commit(third)
    assert read_content(engine.read("b", "e", 3)) == b"ok"


def test_abort_of_an_entrys_only_record_removes_the_entry(engine):
    """An aborted first write leaves neither entry nor block files behind."""
    alloc = engine.allocate("b", "e", 1, 2, "t", {})
    write_content(alloc, b"ab")
    engine.abort(alloc)
    assert engine.bucket_info("b")["entries"] == []
    assert not os.path.exists(_entry_dir(engine))
    assert error_message(NotFound, engine.read, "b", "e", 1) == "Entry 'e' not found in bucket 'b'"


def test_abort_discards_private_segment(engine):
    """An aborted large record's file is discarded and its block vanishes."""
    write_record(engine, "b", "e", 1, b"a")
    alloc = engine.allocate("b", "e", 2, SMALL_RECORD_MAX + 1, "t", {})
    write_content(alloc, b"partial")
    assert os.path.exists(alloc.path)
    engine.abort(alloc)
    assert not os.path.exists(alloc.path)
    assert sorted(os.listdir(_entry_dir(engine))) == ["1.blk", "1.meta"]
    assert engine.bucket_info("b")["entries"][0]["record_count"] == 1


@pytest.mark.parametrize(
    "data, message",
    [(b"ab", "Content is shorter than expected"), (b"abcdef", "Content is bigger than in content-length")],
)
def test_commit_with_wrong_length_aborts(engine, data, message):
    """A length mismatch at commit is a 400 and the record vanishes."""
    alloc = engine.allocate("b", "e", 1, 4, "t", {})
    write_content(alloc, data)
    assert error_message(BadRequest, engine.commit, alloc) == message
    assert engine.bucket_info("b")["entries"] == []
    assert error_message(InternalError, engine.commit, alloc).endswith("is not being written")


def test_fd_of_busy_allocation_survives_cache_pressure(tmp_path):
    """With a descriptor cache of one, in-flight allocations keep their fds open."""
    engine = StorageEngine(str(tmp_path), Clock(), fd_cache_size=1)
    engine.open()
    engine.create_bucket("b", None)
    allocs = [engine.allocate("b", name, 1, 2, "t", {}) for name in ("e1", "e2", "e3")]
    for alloc in allocs:
        write_content(alloc, b"ok")
        engine.commit(alloc)
    assert len(engine._context.fds) == 1
    assert [read_content(engine.read("b", n, 1)) for n in ("e1", "e2", "e3")] == [b"ok"] * 3
    engine.close()
    assert len(engine._context.fds) == 0
    with pytest.raises(OSError):
        os.fstat(allocs[0].fd)


#: The estimated table size of a block holding one record of content type
#: "t" without labels (``block.record_bytes``).
ONE_RECORD = 401


def test_record_table_lru_is_bounded_and_pins_started_blocks(tmp_path):
    """At most table_cache_size bytes of idle record tables stay loaded; a
    block with a record in flight is never evicted but counts."""
    engine = StorageEngine(str(tmp_path), Clock(), table_cache_size=2 * ONE_RECORD)
    engine.open()
    engine.create_bucket("b", {"max_block_records": 1})
    pinned = engine.allocate("b", "e", 0, 1, "t", {})
    for ts in range(1, 9):
        write_record(engine, "b", "e", ts, b"x", content_type="t")
    for ts in range(1, 9):
        engine.read("b", "e", ts)
        assert [b["id"] for b in engine.block_stats("b", "e") if b["loaded"]] == [0, ts]
    write_content(pinned, b"p")
    engine.commit(pinned)
    engine.read("b", "e", 5)
    engine.read("b", "e", 6)
    assert [b["id"] for b in engine.block_stats("b", "e") if b["loaded"]] == [5, 6]
    assert engine._context.tables.total == 2 * ONE_RECORD


def test_table_cache_smaller_than_pinned_blocks(tmp_path):
    """Even with the byte budget taken by tables of blocks being written, the
    block being read or written is kept loaded while it is used."""
    engine = StorageEngine(str(tmp_path), Clock(), table_cache_size=ONE_RECORD)
    engine.open()
    engine.create_bucket("b", {"max_block_records": 1})
    write_record(engine, "b", "e", 1, b"one")
    pinned = [engine.allocate("b", "e", ts, 1, "t", {}) for ts in (2, 3)]
    assert read_content(engine.read("b", "e", 1)) == b"one"
    qid = engine.create_query("b", "e")
    assert engine.query_next("b", "e", qid).record.ts == 1
    write_record(engine, "b", "e", 4, b"four")
    for alloc in pinned:
        write_content(alloc, b"p")
        engine.commit(alloc)
    assert engine.list_records("b", "e", 0, 10) == [(1, 3), (2, 1), (3, 1), (4, 4)]


def test_read_content_shared_and_private(engine):
    """read_content returns a record's bytes: shared segments through the
    descriptor cache (kept open), private ones opened per read."""
    write_record(engine, "b", "e", 1, b"first")
    write_record(engine, "b", "e", 2, b"second")
    alloc = engine.allocate("b", "e", 3, None, "text/plain", {})
    with open(alloc.path, "wb") as f:
        f.write(b"chunked")
    alloc.written = 7
    engine.commit(alloc)
    assert engine.read_content(engine.read("b", "e", 2)) == b"second"
    assert engine.read_content(engine.read("b", "e", 1)) == b"first"
    assert engine.read_content(engine.read("b", "e", 3)) == b"chunked"
    shared = engine.read("b", "e", 1).path
    assert shared in engine._context.fds._items
    assert engine.read("b", "e", 3).path not in engine._context.fds._items


def test_read_content_short_file_is_an_error(engine):
    """A segment shorter than the record is an OSError, not a short body."""
    write_record(engine, "b", "e", 1, b"0123456789")
    view = engine.read("b", "e", 1)
    os.truncate(view.path, 4)
    with pytest.raises(OSError):
        engine.read_content(view)


# -- the content writers and the quota of chunked records (issue #12) ---------------


def test_write_chunks_takes_more_buffers_than_iov_max(tmp_path, monkeypatch):
    """
    ``write_chunks`` writes any number of buffers (bytes, memoryviews,
    empty ones) in order, never handing one ``writev`` more than IOV_MAX,
    going on after short writes; it returns the running CRC-32.
    """
    import zlib

    from reduct_twisted.storage import writer
    from reduct_twisted.storage.disk import vectored

    chunks = [os.urandom(i % 5) for i in range(3 * vectored.IOV_MAX + 17)]
    chunks[7] = memoryview(b"view" * 10)[3:25]
    expected = b"".join(bytes(c) for c in chunks)
    calls = []
    real_writev = os.writev

    def short_writev(fd, buffers):
        # Like a disk that takes at most 1000 bytes a call.
        calls.append(len(buffers))
        taken, size = [], 0
        for buffer in buffers:
            piece = bytes(buffer)[: 1000 - size]
            taken.append(piece)
            size += len(piece)
            if size == 1000:
                break
        return real_writev(fd, taken)

    path = tmp_path / "seg.blk"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        copy = list(chunks)
        crc = writer.write_chunks(fd, copy, 123)
        with monkeypatch.context() as patch:
            patch.setattr(os, "writev", short_writev)
            crc2 = writer.write_chunks(fd, chunks, crc)
    finally:
        os.close(fd)
    assert copy == chunks  # the caller's list is left alone
    assert path.read_bytes() == expected * 2
    assert crc == zlib.crc32(expected, 123)
    assert crc2 == zlib.crc32(expected, crc)
    assert max(calls) <= vectored.IOV_MAX and len(calls) > 3


def _hard(engine, quota=1000):
    engine.update_bucket("b", {"quota_type": "HARD", "quota_size": quota})


def test_chunked_bytes_in_flight_count_against_hard_quota(engine):
    """
    Chunked records claim their bytes as they arrive: the claims of all
    records in flight and the declared lengths of new ones share the
    quota; commit moves a claim into the statistics, abort gives it back.
    """
    _hard(engine)
    a = engine.allocate("b", "e", 1, None, "x", {})
    b = engine.allocate("b", "e", 2, None, "x", {})
    size = engine.bucket_info("b")["info"]["size"]  # the metadata of a and b
    engine.claim(a, 500)
    engine.claim(b, 300)
    with pytest.raises(BadRequest) as exc:
        engine.claim(b, 1000 - size - 800 + 1)
    assert exc.value.message == "Quota of 'b' exceeded"
    with pytest.raises(BadRequest):
        engine.allocate("b", "e", 3, 1000 - size - 800 + 1, "x", {})
    assert engine.bucket_info("b")["info"]["size"] == size  # claims are not statistics
    engine.abort(b)
    write_content(a, b"a" * 500)
    engine.commit(a)
    assert engine._bucket("b").in_flight == 0
    stored = engine.bucket_info("b")["info"]["size"]
    assert 500 < stored < 500 + size
    # b's claim was given back: 300 bytes more fit again
    c = engine.allocate("b", "e", 3, None, "x", {})
    engine.claim(c, 1000 - engine.bucket_info("b")["info"]["size"])
    engine.abort(c)
    assert engine._bucket("b").in_flight == 0


def test_unclaimed_chunked_bytes_are_checked_at_commit(engine):
    """A chunked record written without claims is still held to a HARD
    quota: its commit fails and nothing of it stays."""
    _hard(engine)
    alloc = engine.allocate("b", "e", 1, None, "x", {})
    write_content(alloc, b"z" * 2000)
    with pytest.raises(BadRequest):
        engine.commit(alloc)
    assert engine.bucket_info("b")["info"]["size"] == 0
    assert engine._bucket("b").in_flight == 0
    with pytest.raises(NotFound):
        engine.read("b", "e", 1)


def test_claims_never_refuse_under_fifo_or_none(engine):
    """FIFO and NONE buckets take any chunked size (FIFO evicts instead)."""
    for quota in ("NONE", "FIFO"):
        engine.update_bucket("b", {"quota_type": quota, "quota_size": 10})
        alloc = engine.allocate("b", "e", 1, None, "x", {})
        engine.claim(alloc, 5000)
        write_content(alloc, b"y" * 5000)
        engine.commit(alloc)
        engine.remove_entry("b", "e")
        assert engine._bucket("b").in_flight == 0


@pytest.mark.parametrize("integrity", ["log", "off"])
def test_an_allocation_is_built_field_by_field_right(tmp_path, integrity):
    """``writer.new_allocation`` passes every field by position: each lands
    where its name says (and the class keeps the order it relies on)."""
    import attr

    from reduct_twisted.storage.records import STARTED, Allocation
    assert [f.name for f in attr.fields(Allocation)] == [
        "bucket", "entry", "length", "path", "private", "fd", "written", "crc", "sha",
        "expected", "claimed", "admitted", "_owner", "_block", "_record", "_slot", "_state"]
    engine = StorageEngine(str(tmp_path / "data"), Clock())
    engine.set_integrity(integrity)
    engine.open()
    engine.create_bucket("b", None)
    alloc = engine.allocate("b", "e", 5, 3, "t", {"a": "1"})
    owner = engine._bucket("b")
    series = owner.entry("e")
    block = series.blocks[-1]
    assert (alloc.bucket, alloc.entry, alloc.length, alloc.private) == ("b", "e", 3, False)
    assert alloc.path == block.shared_path and alloc.fd == alloc._slot.fd
    assert (alloc.written, alloc.expected, alloc.claimed, alloc.admitted) == (0, None, 0, 0)
    if integrity == "off":
        assert alloc.crc == 0 and alloc.sha is None
    else:
        assert alloc.crc is None and alloc.sha.name == "sha256"
    assert alloc._owner == (owner, series) and alloc._block is block
    assert alloc._record is block.table[5] and alloc._state == STARTED
    engine.abort(alloc)
