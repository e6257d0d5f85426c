"""
What the storage core hands to a sync policy (take_dirty, sync at open and
close) and how it behaves when the disk refuses a write (ENOSPC, EACCES,
EROFS): the failing write gets a clear error, nothing stored is harmed,
reads go on, and writes resume once the disk takes them again.

Disk errors are injected by patching ``os`` functions for the paths concerned.
"""

import builtins
import errno
import hashlib
import os
import zlib

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import InsufficientStorage, InternalError, NotFound, ReductError
from reduct_twisted.http.sinks import in_pool
from reduct_twisted.storage import SMALL_RECORD_MAX, StorageEngine
from reduct_twisted.storage.disk import durability
from reduct_twisted.storage.disk.recovery import MARKER
from reduct_twisted.storage.testing import read_content, write_content, write_record
from tests.unit.test_sinks import (
    ImmediateReactor,
    ManualPool,
    Transport,
    private_sink,
    results,
    shared_sink,
)


def _open(path, **kwargs):
    engine = StorageEngine(str(path), Clock(), **kwargs)
    engine.open()
    return engine


@pytest.fixture
def data(tmp_path):
    return str(tmp_path / "data")


def _j(*parts):
    return os.path.join(*parts)


# -- take_dirty ------------------------------------------------------------------


def test_take_dirty_after_creating_a_bucket(data):
    """The settings file and every directory whose entries changed; then empty."""
    engine = _open(data)
    engine.take_dirty()
    engine.create_bucket("b", None)
    files, dirs = engine.take_dirty()
    assert files == {_j(data, "b", "settings.json")}
    assert dirs == {data, _j(data, "b"), _j(data, ".trash")}
    assert engine.take_dirty() == (set(), set())


def test_take_dirty_after_writes(data):
    """A first write names the new segment, .meta and directories; a second
    write into the same block only its files; a large record its own file."""
    engine = _open(data)
    engine.create_bucket("b", None)
    engine.take_dirty()
    entry = _j(data, "b", "e")
    write_record(engine, "b", "e", 1, b"one")
    assert engine.take_dirty() == (
        {_j(entry, "1.blk"), _j(entry, "1.meta")}, {entry, _j(data, "b")},
    )
    write_record(engine, "b", "e", 2, b"two")
    assert engine.take_dirty() == ({_j(entry, "1.blk"), _j(entry, "1.meta")}, set())
    write_record(engine, "b", "e", 3, b"x" * (SMALL_RECORD_MAX + 1))
    assert engine.take_dirty() == ({_j(entry, "1-3.blk"), _j(entry, "1.meta")}, {entry})
    write_record(engine, "b", "e", 4, b"chunked", chunked=True)
    assert engine.take_dirty() == ({_j(entry, "1-4.blk"), _j(entry, "1.meta")}, {entry})


def test_take_dirty_names_a_shared_segment_created_after_the_meta(data):
    """A block opened by a large record gets its shared segment later: its
    directory entry is reported when it is created."""
    engine = _open(data)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"x" * (SMALL_RECORD_MAX + 1))
    engine.take_dirty()
    write_record(engine, "b", "e", 2, b"small")
    entry = _j(data, "b", "e")
    assert engine.take_dirty() == ({_j(entry, "1.blk"), _j(entry, "1.meta")}, {entry})


def test_take_dirty_after_rotation_and_removal(data):
    """Rotation names the new block's files; eviction and bucket removal the
    directories the files left and .trash."""
    engine = _open(data)
    engine.create_bucket("b", {"max_block_records": 1, "quota_type": "FIFO",
                               "quota_size": 10**6})
    entry = _j(data, "b", "e")
    write_record(engine, "b", "e", 1, b"one")
    engine.take_dirty()
    write_record(engine, "b", "e", 2, b"two")
    assert engine.take_dirty() == ({_j(entry, "2.blk"), _j(entry, "2.meta")}, {entry})
    engine.update_bucket("b", {"quota_size": 50})
    assert engine.take_dirty() == ({_j(data, "b", "settings.json")}, {_j(data, "b")})
    assert engine.enforce_quotas() == 1
    # The number counter is saved before the block holding number 1 goes.
    assert engine.take_dirty() == ({_j(entry, ".numbers")}, {entry, _j(data, ".trash")})
    engine.remove_bucket("b")
    assert engine.take_dirty() == (set(), {data, _j(data, ".trash")})


def test_take_dirty_can_be_switched_off(data):
    engine = _open(data, track_dirty=False)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"one")
    assert engine.take_dirty() == (set(), set())


def test_a_dirty_set_nobody_takes_stops_growing(monkeypatch):
    monkeypatch.setattr(durability, "UNTAKEN_LIMIT", 3)
    dirty = durability.DirtySet()
    for n in range(3):
        dirty.created(f"/d/{n}")
    assert dirty.enabled and len(dirty.files) == 3
    dirty.file("/d/x")
    assert not dirty.enabled and dirty.take() == (set(), set())
    taken = durability.DirtySet()
    taken.take()
    for n in range(5):
        taken.file(f"/d/{n}")
    assert taken.enabled and len(taken.files) == 5


class RecordingSync:
    def __init__(self):
        self.calls = []

    def __call__(self, files, dirs):
        self.calls.append((set(files), set(dirs)))


def test_open_and_close_flush_through_the_injected_sync(data):
    """Open makes the format marker of a new directory durable (its
    temporary file, then the directory after the rename) and the run marker;
    close flushes everything written, then removes the run marker and
    flushes the data directory."""
    sync = RecordingSync()
    engine = _open(data, sync=sync)
    marker = _j(data, MARKER)
    assert sync.calls == [({_j(data, ".reduct-twisted.tmp")}, set()), (set(), {data}),
                          (set(), {os.path.dirname(data), data}), ({marker}, {data})]
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"one")
    sync.calls.clear()
    engine.close()
    entry = _j(data, "b", "e")
    assert sync.calls == [
        ({_j(data, "b", "settings.json"), _j(entry, "1.blk"), _j(entry, "1.meta")},
         {data, _j(data, ".trash"), _j(data, "b"), entry}),
        (set(), {data}),
    ]
    assert not os.path.exists(marker)
    engine.close()  # a second close does nothing
    assert len(sync.calls) == 2
    sync.calls.clear()
    _open(data, sync=sync)  # clean, and not a new directory: only the marker
    assert sync.calls == [({marker}, {data})]


def test_close_without_tracking_flushes_what_changed_during_the_run(data):
    sync = RecordingSync()
    engine = _open(data, sync=sync, track_dirty=False)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"one")
    sync.calls.clear()
    engine.close()
    files, dirs = sync.calls[0]
    entry = _j(data, "b", "e")
    assert files >= {_j(data, "b", "settings.json"), _j(entry, "1.blk"), _j(entry, "1.meta")}
    assert dirs >= {data, _j(data, "b"), entry}


def test_unclean_open_flushes_what_the_crashed_run_changed(data):
    """Files of the crashed run may not be durable yet: open flushes them
    (and the repaired .meta) before anything new is written."""
    engine = _open(data)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"one")
    sync = RecordingSync()
    _open(data, sync=sync)  # the first engine was never closed
    files, dirs = sync.calls[0]
    entry = _j(data, "b", "e")
    assert files >= {_j(entry, "1.blk"), _j(entry, "1.meta"), _j(data, "b", "settings.json")}
    assert dirs >= {data, _j(data, "b"), entry}
    assert sync.calls[1] == ({_j(data, MARKER)}, {data})


def test_a_failing_sync_at_close_keeps_the_marker(data):
    def failing(files, dirs):
        raise OSError(errno.EIO, "Input/output error")

    engine = StorageEngine(data, Clock(), sync=failing)
    with pytest.raises(OSError):
        engine.open()
    engine = _open(data)
    engine._sync = failing
    with pytest.raises(OSError):
        engine.close()
    assert os.path.exists(_j(data, MARKER))


# -- disk errors --------------------------------------------------------------------


class FailingDisk:
    """
    Patches ``os.pwrite``/``os.writev``/``os.open``/``os.mkdir``/``open`` so
    that operations on paths ending in one of ``suffixes`` fail with ``code``;
    ``partial`` lets the first write of each call write half its bytes.
    """

    def __init__(self, monkeypatch, code=errno.ENOSPC, suffixes=(".blk", ".meta")):
        self.code, self.suffixes, self.active, self.partial = code, suffixes, True, False
        self.failures = 0
        real_pwrite, real_writev, real_open = os.pwrite, os.writev, os.open
        real_mkdir, real_builtin_open = os.mkdir, builtins.open

        def hit(path):
            return self.active and str(path).endswith(self.suffixes)

        def fd_path(fd):
            return os.readlink(f"/proc/self/fd/{fd}")

        def fail():
            self.failures += 1
            raise OSError(self.code, os.strerror(self.code))

        def pwrite(fd, data, offset):
            if hit(fd_path(fd)):
                if self.partial and len(data) > 1:
                    self.partial = False
                    return real_pwrite(fd, bytes(data[: len(data) // 2]), offset)
                fail()
            return real_pwrite(fd, data, offset)

        def writev(fd, chunks):
            if hit(fd_path(fd)):
                fail()
            return real_writev(fd, chunks)

        def os_open(path, flags, *args, **kwargs):
            if hit(path) and flags & os.O_CREAT and not os.path.exists(path):
                fail()
            return real_open(path, flags, *args, **kwargs)

        def mkdir(path, *args, **kwargs):
            if hit(path):
                fail()
            return real_mkdir(path, *args, **kwargs)

        def open_(path, mode="r", *args, **kwargs):
            if hit(path) and ("w" in mode or "a" in mode):
                fail()
            return real_builtin_open(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "writev", writev)
        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(builtins, "open", open_)


@pytest.fixture
def stored(data):
    """An engine with records in two blocks of entry ``e``."""
    engine = _open(data)
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in (1, 2, 3):
        write_record(engine, "b", "e", ts, b"record %d" % ts)
    yield engine
    engine.close()


def _state(engine):
    """Everything a reader sees of entry ``e``."""
    records = engine.list_records("b", "e", 0, 100)
    contents = [read_content(engine.read("b", "e", ts)) for ts, _ in records]
    return engine.bucket_info("b"), records, contents, engine.block_stats("b", "e")


def _file_bytes(engine):
    entry = _j(engine.data_path, "b", "e")
    result = {}
    for name in sorted(os.listdir(entry)):
        with open(_j(entry, name), "rb") as f:
            result[name] = f.read()
    return result


@pytest.mark.parametrize("partial", [False, True])
def test_full_disk_on_the_meta_append_leaves_everything_as_it_was(stored, monkeypatch, partial):
    """507, the record invisible and uncounted, the .meta without a partial
    line; reads go on; the same write succeeds once there is space."""
    before, files = _state(stored), _file_bytes(stored)
    disk = FailingDisk(monkeypatch, suffixes=(".meta",))
    disk.partial = partial
    alloc = stored.allocate("b", "e", 4, 5, "t", {})
    write_content(alloc, b"fresh")
    with pytest.raises(InsufficientStorage) as info:
        stored.commit(alloc)
    assert info.value.status == 507
    assert info.value.message == "Failed to write record: No space left on device"
    assert _state(stored) == before
    assert _file_bytes(stored)["3.meta"] == files["3.meta"]
    with pytest.raises(NotFound):
        stored.read("b", "e", 4)
    disk.active = False
    write_record(stored, "b", "e", 4, b"fresh")
    assert read_content(stored.read("b", "e", 4)) == b"fresh"
    again = _open(stored.data_path)  # unclean: every record checks out
    assert again.recovery_report()["dropped_records"] == 0
    assert [ts for ts, _ in again.list_records("b", "e", 0, 100)] == [1, 2, 3, 4]


def test_full_disk_in_a_new_block_leaves_no_block(stored, monkeypatch):
    """The first append of a block fails: the block vanishes with its files."""
    before = _state(stored)
    disk = FailingDisk(monkeypatch, suffixes=(".meta",))
    alloc = stored.allocate("b", "e", 0, 1, "t", {})  # before block 1: a new block
    assert alloc.path.endswith("0.blk")
    write_content(alloc, b"x")
    with pytest.raises(InsufficientStorage):
        stored.commit(alloc)
    assert _state(stored) == before
    assert sorted(_file_bytes(stored)) == ["1.blk", "1.meta", "3.blk", "3.meta"]
    disk.active = False
    write_record(stored, "b", "e", 0, b"y")
    assert read_content(stored.read("b", "e", 0)) == b"y"


@pytest.mark.parametrize("partial", [False, True])
def test_full_disk_on_shared_data_fails_the_sink(stored, monkeypatch, partial):
    """A failed (or short, then failed) pwrite of the content: 507 from the
    sink, nothing counted; the next record goes to the same place."""
    before = _state(stored)
    disk = FailingDisk(monkeypatch, suffixes=(".blk",))
    disk.partial = partial
    alloc = stored.allocate("b", "e", 4, 6, "t", {})
    sink = shared_sink(stored, alloc)
    sink.write(b"abcdef")
    with pytest.raises(InsufficientStorage) as info:
        sink.finish_now()
    assert info.value.message == "Failed to write record: No space left on device"
    assert _state(stored) == before
    disk.active = False
    alloc = stored.allocate("b", "e", 4, 6, "t", {})
    assert alloc.offset == len(b"record 3")
    sink = shared_sink(stored, alloc)
    sink.write(b"abc")
    sink.write(b"def")
    sink.finish_now()
    view = stored.read("b", "e", 4)
    assert read_content(view) == b"abcdef"
    assert view.record.digest == hashlib.sha256(b"abcdef").digest() and view.record.crc is None


def test_full_disk_creating_a_private_segment(stored, monkeypatch):
    """The upload's writer cannot create its private file: 507 and the record is gone."""
    before = _state(stored)
    FailingDisk(monkeypatch, suffixes=(".blk",))
    with pytest.raises(InsufficientStorage):
        stored.upload("b", "e", 4, None, "t", {}, in_pool(ImmediateReactor(), ManualPool()))
    assert _state(stored) == before


def test_full_disk_writing_a_private_segment(stored, monkeypatch):
    before = _state(stored)
    disk = FailingDisk(monkeypatch, suffixes=("-4.blk",))
    disk.active = False
    pool = ManualPool()
    alloc = stored.allocate("b", "e", 4, None, "t", {})
    sink = private_sink(stored, alloc, ImmediateReactor(), pool, Transport())
    disk.active = True
    sink.write(b"chunk")
    failure = results(_finish(sink, pool))
    assert failure.check(InsufficientStorage)
    assert _state(stored) == before
    assert not os.path.exists(alloc.path)


def _finish(sink, pool):
    d = sink.finish()
    pool.run_all()
    return d


@pytest.mark.parametrize("digests", [False, True])
def test_private_sink_crc_survives_pause_and_resume(stored, digests):
    """The CRC (integrity off) or the SHA-256 (no CRC beside it) is computed
    batch by batch in the pool, in order."""
    from reduct_twisted.http import sinks

    stored.compute_digests(digests)
    pool, transport = ManualPool(), Transport()
    alloc = stored.allocate("b", "e", 4, None, "t", {})
    sink = private_sink(stored, alloc, ImmediateReactor(), pool, transport)
    body = b"".join(bytes([i % 251]) * 65536 for i in range(200))
    for i in range(0, len(body), 65536):
        sink.write(body[i: i + 65536])
        if i % (sinks.MAX_BATCH * 3) == 0:
            pool.run_all()
    assert "pause" in transport.events
    assert results(_finish(sink, pool)) is None
    record = stored.read("b", "e", 4).record
    if digests:
        assert alloc.crc is None and record.crc is None
        assert record.digest == hashlib.sha256(body).digest()
    else:
        assert alloc.crc == zlib.crc32(body) and record.crc == zlib.crc32(body)
        assert record.digest is None


@pytest.mark.parametrize("code, kind, status", [
    (errno.ENOSPC, InsufficientStorage, 507),
    (errno.EDQUOT, InsufficientStorage, 507),
    (errno.EACCES, InternalError, 500),
    (errno.EROFS, InternalError, 500),
])
def test_error_kinds(stored, monkeypatch, code, kind, status):
    """Full disk or quota: 507; other refusals: 500; the reason in the message."""
    FailingDisk(monkeypatch, code=code, suffixes=(".blk",))
    with pytest.raises(kind) as info:
        stored.allocate("b", "e", 0, 1, "t", {})  # a new block: its segment is created
    assert info.value.status == status
    assert info.value.message == f"Failed to write record: {os.strerror(code)}"
    assert [ts for ts, _ in stored.list_records("b", "e", 0, 100)] == [1, 2, 3]


def test_unwritable_entry_directory(stored, monkeypatch):
    """A new entry whose directory cannot be made: 500, no entry."""
    FailingDisk(monkeypatch, code=errno.EACCES, suffixes=("new",))
    with pytest.raises(InternalError) as info:
        stored.allocate("b", "new", 1, 1, "t", {})
    assert info.value.message == "Failed to write record: Permission denied"
    assert [e["name"] for e in stored.bucket_info("b")["entries"]] == ["e"]


def test_bucket_creation_on_a_full_disk_leaves_nothing(data, monkeypatch):
    engine = _open(data)
    disk = FailingDisk(monkeypatch, suffixes=("settings.json.tmp",))
    with pytest.raises(InsufficientStorage) as info:
        engine.create_bucket("b", None)
    assert info.value.message == "Failed to create bucket 'b': No space left on device"
    assert not engine.has_bucket("b")
    assert sorted(os.listdir(data)) == [".reduct-twisted", MARKER, ".trash"]
    assert os.listdir(_j(data, ".trash")) == []
    disk.active = False
    engine.create_bucket("b", {"quota_size": 7})
    assert _open(data).bucket_info("b")["settings"]["quota_size"] == 7


def test_bucket_creation_failing_at_mkdir(data, monkeypatch):
    engine = _open(data)
    FailingDisk(monkeypatch, suffixes=("-b",))
    with pytest.raises(InsufficientStorage):
        engine.create_bucket("b", None)
    assert sorted(os.listdir(data)) == [".reduct-twisted", MARKER, ".trash"]


def test_settings_update_on_a_full_disk_changes_nothing(stored, monkeypatch):
    path = _j(stored.data_path, "b", "settings.json")
    with open(path) as f:
        saved = f.read()
    FailingDisk(monkeypatch, suffixes=("settings.json.tmp",))
    with pytest.raises(InsufficientStorage):
        stored.update_bucket("b", {"max_block_records": 99})
    assert stored.bucket_info("b")["settings"]["max_block_records"] == 2
    with open(path) as f:
        assert f.read() == saved
    assert sorted(os.listdir(_j(stored.data_path, "b"))) == ["e", "settings.json"]


def test_bucket_removal_that_cannot_move_the_directory(stored, monkeypatch):
    """If the bucket directory cannot be moved away the bucket stays, whole."""
    real_rename = os.rename

    def rename(source, target):
        if source.endswith(os.sep + "b"):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        return real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(ReductError) as info:
        stored.remove_bucket("b")
    assert (info.value.status, info.value.message) == (
        500, "Failed to remove bucket 'b': Permission denied",
    )
    assert read_content(stored.read("b", "e", 2)) == b"record 2"


@pytest.mark.parametrize("code, status", [
    (errno.ENOSPC, 507), (errno.EDQUOT, 507), (errno.ENAMETOOLONG, 422), (errno.EIO, 500),
])
def test_storage_error_status(code, status):
    """A name the file system cannot hold is the request's fault (422), not the server's."""
    err = durability.storage_error(OSError(code, os.strerror(code)), "write record")
    assert (err.status, err.message) == (status, f"Failed to write record: {os.strerror(code)}")
