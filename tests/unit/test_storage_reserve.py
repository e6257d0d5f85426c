"""
The space reserve (issue #12): ``<data_path>/.reserve`` is allocated at
open; a removal (or a label update that does not grow the ``.meta``) whose
rewrite hits ENOSPC releases it and succeeds; writes never take its place;
quota rounds and writes allocate it again.

A full disk is simulated by making ``blockfile.replace_meta`` fail with
ENOSPC while the reserve still holds its bytes (the real thing, on a
tmpfs, is ``tests/integration/test_enospc.py``).
"""

import errno
import os

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import InsufficientStorage
from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.disk.reserve import RESERVE_NAME
from reduct_twisted.storage.records import PENDING
from reduct_twisted.storage.testing import write_record

SIZE = 64 << 10
FULL = "No space left on device"


def _open(tmp_path, size=SIZE):
    engine = StorageEngine(str(tmp_path), Clock(), reserve_size=size)
    engine.open()
    return engine


def _reserve(tmp_path):
    path = tmp_path / RESERVE_NAME
    return os.stat(path).st_size if path.exists() else None


def _allocated(tmp_path):
    return os.stat(tmp_path / RESERVE_NAME).st_blocks * 512


def _populate(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 10})
    for ts in range(1, 7):
        write_record(engine, "b", "e", ts, b"x" * ts, labels={"k": "v" * ts})
    return engine


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A .meta rewrite fails with ENOSPC unless the reserve was emptied;
    ``calls`` counts the attempts."""
    real = blockfile.replace_meta
    calls = []

    def replace_meta(path, block_id, records):
        calls.append(path)
        if _reserve(tmp_path):
            raise OSError(errno.ENOSPC, FULL)
        return real(path, block_id, records)

    monkeypatch.setattr(blockfile, "replace_meta", replace_meta)
    return calls


def _no_room(monkeypatch):
    def fallocate(fd, offset, length):
        raise OSError(errno.ENOSPC, FULL)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)


def _stamps(engine):
    return [ts for ts, _ in engine.list_records("b", "e", 0, 100)]


def test_reserve_is_allocated_at_open(tmp_path):
    """The reserve file holds its size in allocated blocks; size 0 means none
    (and a leftover one is removed)."""
    engine = _open(tmp_path)
    assert _reserve(tmp_path) == SIZE and _allocated(tmp_path) >= SIZE
    engine.close()
    engine = _open(tmp_path, size=0)
    assert _reserve(tmp_path) is None
    engine.close()


def test_removal_on_a_full_disk_uses_the_reserve(tmp_path, full_disk):
    """By timestamp and by query: the first rewrite fails, the reserve is
    emptied, the rewrite retried and the records are gone, also after a reopen."""
    engine = _populate(tmp_path)
    assert engine.remove_stamps("b", "e", [2]) == {}
    assert len(full_disk) == 2 and _reserve(tmp_path) == 0
    removal = engine.remove_records("b", "e", start=4, stop=6)
    while (count := removal.step()) is PENDING:
        pass
    assert count == 2
    assert _stamps(engine) == [1, 3, 6]
    engine.close()
    full_disk.clear()
    engine = _open(tmp_path)
    assert _stamps(engine) == [1, 3, 6] and _reserve(tmp_path) == SIZE
    engine.close()


def test_without_the_reserve_a_full_disk_still_refuses(tmp_path, monkeypatch):
    """If the retry fails too (no reserve left, or not enough), 507 and the
    block is unchanged."""
    engine = _populate(tmp_path)

    def full(path, block_id, records):
        raise OSError(errno.ENOSPC, FULL)

    monkeypatch.setattr(blockfile, "replace_meta", full)
    with pytest.raises(InsufficientStorage):
        engine.remove_stamps("b", "e", [2])
    assert _reserve(tmp_path) == 0
    with pytest.raises(InsufficientStorage):
        engine.remove_stamps("b", "e", [3])
    assert _stamps(engine) == [1, 2, 3, 4, 5, 6]
    engine.close()


def test_label_updates_use_the_reserve_unless_they_grow(tmp_path, full_disk):
    """A label update that makes the .meta longer gets 507 and keeps the
    reserve; one that removes labels or keeps their size uses it."""
    engine = _populate(tmp_path)
    with pytest.raises(InsufficientStorage):
        engine.update_labels("b", "e", {1: {"more": "labels"}})
    assert _reserve(tmp_path) == SIZE
    assert engine.update_labels("b", "e", {1: {"k": ""}, 2: {"k": "w" * 2}}) == {}
    assert _reserve(tmp_path) == 0
    engine.close()
    full_disk.clear()
    engine = _open(tmp_path)
    assert engine.read("b", "e", 1).record.labels == {}
    assert engine.read("b", "e", 2).record.labels == {"k": "ww"}
    engine.close()


def test_writes_never_take_the_place_of_the_reserve(tmp_path, full_disk, monkeypatch):
    """Once used, the reserve is allocated again before the next write; a
    write is refused (507, nothing left behind) while it cannot be."""
    engine = _populate(tmp_path)
    engine.remove_stamps("b", "e", [1])
    assert _reserve(tmp_path) == 0
    with monkeypatch.context() as patch:
        _no_room(patch)
        with pytest.raises(InsufficientStorage) as info:
            write_record(engine, "b", "e", 10, b"new")
        assert info.value.message == f"Failed to write record: {FULL}"
        assert _stamps(engine) == [2, 3, 4, 5, 6]
        engine.enforce_quotas()  # a quota round cannot allocate it either
        assert _reserve(tmp_path) == 0
    write_record(engine, "b", "e", 10, b"new")
    assert _reserve(tmp_path) == SIZE and _stamps(engine) == [2, 3, 4, 5, 6, 10]
    engine.close()


def test_quota_round_allocates_the_reserve_again(tmp_path, full_disk):
    engine = _populate(tmp_path)
    engine.remove_stamps("b", "e", [1])
    assert _reserve(tmp_path) == 0
    engine.enforce_quotas()
    assert _reserve(tmp_path) == SIZE and _allocated(tmp_path) >= SIZE
    engine.close()
