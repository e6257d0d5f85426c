"""
The engine-wide storage cap (spec 1.20 §5.10) and the free-space check
before a record is written (``storage/usage.py``).
"""

import errno
import os

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import InternalError, ReductError
from reduct_twisted.storage import PENDING, StorageEngine
from reduct_twisted.storage.testing import write_content, write_record
from reduct_twisted.storage.upload import RecordWriter
from reduct_twisted.storage.usage import LOW_WATER, REFRESH, SLACK, FreeSpace, Usage


def total(engine):
    """The sum of the bucket sizes, as /info reports it."""
    return engine.info()["usage"]


def stored(engine):
    return engine._context.usage.stored


def pending(engine):
    return engine._context.usage.pending


def remove(engine, bucket, entry, **query):
    removal = engine.remove_records(bucket, entry, **query)
    while True:
        result = removal.step()
        if result is not PENDING:
            return result


# -- the running total -------------------------------------------------------------


def test_running_total_follows_every_change(engine):
    """Writes, removals of records, entries and buckets, renames: the total
    kept without summing equals the sum of the bucket sizes each time."""
    engine.create_bucket("a", None)
    engine.create_bucket("b", {"max_block_records": 2})
    assert stored(engine) == total(engine) == 0
    for ts in range(1, 8):
        write_record(engine, "a", "x", ts, b"a" * 100)
        write_record(engine, "b", "y/z", ts, b"b" * 50)
        assert stored(engine) == total(engine)
    write_record(engine, "b", "big", 1, b"c" * (2 << 20))
    assert stored(engine) == total(engine) > (2 << 20)
    assert remove(engine, "a", "x", start=2, stop=4) == 2
    assert stored(engine) == total(engine)
    engine.remove_entry("b", "y")  # with its child y/z
    assert stored(engine) == total(engine)
    engine.rename_bucket("a", "c")
    engine.rename_entry("c", "x", "w")
    assert stored(engine) == total(engine)
    engine.remove_bucket("b")
    assert stored(engine) == total(engine) > 0
    assert pending(engine) == 0


def test_running_total_after_reopen_and_quota_round(tmp_path):
    clock = Clock()
    engine = StorageEngine(str(tmp_path / "d"), clock)
    engine.open()
    engine.create_bucket("b", {"quota_type": "FIFO", "quota_size": 3000,
                               "max_block_records": 1})
    for ts in range(1, 10):
        write_record(engine, "b", "e", ts, b"x" * 500)
    assert stored(engine) == total(engine)
    engine.enforce_quotas()
    assert stored(engine) == total(engine) <= 3000
    engine.close()
    again = StorageEngine(str(tmp_path / "d"), clock)
    again.open()
    try:
        assert stored(again) == total(again) == total(engine)
    finally:
        again.close()


# -- the cap --------------------------------------------------------------------------


def test_cap_refuses_the_record_that_does_not_fit(engine):
    """Over all buckets: 500 "storage limit exceeded", nothing stored or left pending."""
    engine.create_bucket("a", None)
    engine.create_bucket("b", None)
    write_record(engine, "a", "e", 1, b"x" * 1000)
    engine.limit_storage(total(engine) + 1500)
    write_record(engine, "b", "e", 1, b"y" * 1000)  # fits: 1000 + metadata < 1500
    with pytest.raises(InternalError) as e:
        engine.allocate("b", "e", 2, 1000, "t", {})
    assert (e.value.status, e.value.message) == (500, "storage limit exceeded")
    assert [ts for ts, _ in engine.list_records("b", "e", 0, 10)] == [1]
    assert pending(engine) == 0
    # A smaller record still fits; removing a bucket makes room again.
    write_record(engine, "b", "e", 3, b"z" * 10)
    engine.remove_bucket("a")
    write_record(engine, "b", "e", 2, b"y" * 1000)


def test_cap_counts_records_being_written(engine):
    """Two records of declared length written at once both count (from
    their allocation on, they are in the statistics)."""
    engine.create_bucket("b", None)
    engine.limit_storage(2500)
    first = engine.allocate("b", "e", 1, 1000, "t", {})
    second = engine.allocate("b", "e", 2, 1000, "t", {})
    assert stored(engine) == total(engine) > 2000
    with pytest.raises(InternalError, match="storage limit exceeded"):
        engine.allocate("b", "e", 3, 1000, "t", {})
    engine.abort(second)
    assert stored(engine) == total(engine) < 1500
    engine.allocate("b", "e", 3, 1000, "t", {})  # fits again
    write_content(first, b"x" * 1000)
    engine.commit(first)
    assert pending(engine) == 0 and stored(engine) == total(engine) > 2000


def test_cap_comes_before_a_fifo_quota(engine):
    """A FIFO bucket over the cap is refused; no block is evicted for it."""
    engine.create_bucket("b", {"quota_type": "FIFO", "quota_size": 2500,
                               "max_block_records": 1})
    for ts in (1, 2):
        write_record(engine, "b", "e", ts, b"x" * 1000)
    engine.limit_storage(total(engine) + 100)
    with pytest.raises(InternalError, match="storage limit exceeded"):
        engine.allocate("b", "e", 3, 1000, "t", {})
    assert [ts for ts, _ in engine.list_records("b", "e", 0, 10)] == [1, 2]


def test_cap_applies_to_chunked_records_as_they_arrive(engine):
    engine.create_bucket("b", None)
    engine.limit_storage(5000)
    alloc = engine.allocate("b", "e", 1, None, "t", {})
    upload = RecordWriter(engine, alloc)
    upload.admit(3000)
    with pytest.raises(InternalError, match="storage limit exceeded"):
        upload.admit(3000)
    assert pending(engine) == 3000
    upload.close()
    engine.abort(alloc)
    assert pending(engine) == 0 and total(engine) == 0


def test_no_cap_by_default(engine):
    engine.create_bucket("b", None)
    assert engine._context.usage.cap == 0
    write_record(engine, "b", "e", 1, b"x" * (3 << 20))


# -- free space -------------------------------------------------------------------------


class FakeFs:
    """``statvfs`` of a file system with ``free`` bytes available; counts the calls."""

    def __init__(self, free):
        self.free = free
        self.calls = 0

    def __call__(self, path):
        self.calls += 1
        return os.statvfs_result((4096, 4096, 1 << 30, 0, self.free // 4096, 0, 0, 0, 0, 255))


def test_free_space_asked_once_per_refresh_while_plenty():
    clock, fs = Clock(), FakeFs(10 << 30)
    space = FreeSpace("/", clock, fs)
    for _ in range(100):
        assert space.room_for(1 << 20)
    assert fs.calls == 1
    clock.advance(REFRESH)
    assert space.room_for(1)
    assert fs.calls == 2


def test_free_space_asked_every_time_near_full_and_exact():
    clock, fs = Clock(), FakeFs(LOW_WATER // 2)
    space = FreeSpace("/", clock, fs)
    assert space.room_for(1000)
    assert space.room_for(1000)
    assert fs.calls == 2
    fs.free = 4096 * 10
    assert not space.room_for(4096 * 10 - SLACK + 1)
    assert space.room_for(4096 * 10 - SLACK)


def test_admitted_bytes_count_until_the_next_statvfs():
    clock, fs = Clock(), FakeFs(LOW_WATER + (10 << 20))
    space = FreeSpace("/", clock, fs)
    assert space.room_for(8 << 20)
    assert fs.calls == 1
    # The estimate drops under the low-water mark: asked again at once.
    assert space.room_for(4 << 20)
    assert fs.calls == 2


def test_unreadable_file_system_does_not_refuse():
    def broken(path):
        raise OSError(errno.EIO, "I/O error")

    assert FreeSpace("/", Clock(), broken).room_for(1 << 40)


def test_full_file_system_refuses_before_writing(engine):
    """507 as for ENOSPC; nothing reserved, no file created, stored data intact."""
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"kept")
    fs = FakeFs(64 << 10)
    engine._context.space = FreeSpace(engine.data_path, engine.clock, fs)
    entry_dir = os.path.join(engine.data_path, "b", "e")
    before = sorted(os.listdir(entry_dir))
    for ts, length in ((2, 100 << 10), (3, 2 << 20)):
        with pytest.raises(ReductError) as e:
            engine.allocate("b", "e", ts, length, "t", {})
        assert e.value.status == 507
        assert e.value.message == "Failed to write record: No space left on device"
    assert sorted(os.listdir(entry_dir)) == before
    assert [ts for ts, _ in engine.list_records("b", "e", 0, 10)] == [1]
    assert pending(engine) == 0
    write_record(engine, "b", "e", 4, b"small")  # 5 bytes + slack fit in 64 KiB


def test_full_file_system_refuses_chunked_bytes(engine):
    engine.create_bucket("b", None)
    fs = FakeFs(1 << 20)
    engine._context.space = FreeSpace(engine.data_path, engine.clock, fs)
    alloc = engine.allocate("b", "e", 1, None, "t", {})
    upload = RecordWriter(engine, alloc)
    upload.admit(512 << 10)
    with pytest.raises(ReductError) as e:
        upload.admit((1 << 20) + 1)
    assert e.value.status == 507
    assert pending(engine) == 512 << 10
    upload.close()
    engine.abort(alloc)
    assert pending(engine) == 0


def test_usage_alone():
    usage = Usage(cap=10)
    usage.admit(6)
    with pytest.raises(InternalError):
        usage.admit(5)
    usage.release(6)
    usage.admit(10)
    assert usage.pending == 10
    with pytest.raises(ReductError):
        usage.admit(1)


def test_a_record_longer_than_the_file_system_is_the_requests_fault(engine):
    """413 for more bytes than the whole file system holds (a u64-max Content-Length):
    no removal could make room.  Within its size but beyond the free space: 507."""
    engine.create_bucket("b", None)
    fs = FakeFs(64 << 10)  # 4 TiB file system (FakeFs: 1 << 30 blocks of 4 KiB), 64 KiB free
    engine._context.space = FreeSpace(engine.data_path, engine.clock, fs)
    capacity = (1 << 30) * 4096
    for length in (capacity + 1, (1 << 64) - 1):
        with pytest.raises(ReductError) as e:
            engine.allocate("b", "e", 1, length, "t", {})
        assert e.value.status == 413
        assert e.value.message == (f"Record of {length} bytes is larger than the storage "
                                   f"({capacity} bytes)")
    with pytest.raises(ReductError) as e:
        engine.allocate("b", "e", 1, capacity - (1 << 20), "t", {})
    assert e.value.status == 507
    assert pending(engine) == 0
    assert not FreeSpace("/", Clock(), FakeFs(0), enabled=False).beyond_capacity(1 << 62)
