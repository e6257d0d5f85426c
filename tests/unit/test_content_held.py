"""
A ``ContentReader`` reads a shared segment through the engine's cached
descriptor, held as a user of its ``FdCache`` slot until the reader closes
(storage/content.py ``_open``), instead of a ``dup`` of it: no descriptor of
its own, and the cache never closes one a reader still uses, even when it
forgets the file (its block was removed) or is full.
"""

import os
from types import SimpleNamespace

from reduct_twisted.storage.cache import FdCache
from reduct_twisted.storage.content import ContentReader


def _shared(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _record(offset: int, size: int):
    # A finished, uncompressed record of a shared segment (no "-" in its name).
    return SimpleNamespace(offset=offset, size=size, zsize=None, segment="1000")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _read_all(reader) -> bytes:
    return b"".join(f.read(offset, size) for f, offset, size in reader.ranges)


def test_the_reader_uses_the_cached_descriptor_and_releases_it(tmp_path):
    path = _shared(tmp_path, "1000.blk", b"0123456789")
    fds = FdCache(8)
    fds.release(fds.acquire(path, create=False))  # cached, as after a write
    slot = fds._items[path]
    before = _open_fds()
    reader = ContentReader(fds=fds)
    reader._add(path, _record(2, 3))
    reader._add(path, _record(5, 4))
    assert _open_fds() == before  # (a dup would be one more)
    assert slot.users == 1 and reader.ranges[0][0]._fd == slot.fd
    assert _read_all(reader) == b"2345678"
    reader.close()
    assert slot.users == 0
    os.fstat(slot.fd)  # still cached, open
    fds.close()


def test_a_file_forgotten_meanwhile_stays_open_until_the_reader_closes(tmp_path):
    path = _shared(tmp_path, "1000.blk", b"abcdefgh")
    fds = FdCache(8)
    reader = ContentReader(fds=fds)
    reader._add(path, _record(0, 8))
    fd = reader.ranges[0][0]._fd
    fds.forget(path)  # the block was removed
    os.unlink(path)
    assert _read_all(reader) == b"abcdefgh"
    reader.close()
    try:
        os.fstat(fd)
    except OSError:
        pass
    else:
        raise AssertionError("the forgotten descriptor was left open")
    fds.close()


def test_a_full_cache_does_not_close_a_descriptor_a_reader_holds(tmp_path):
    first = _shared(tmp_path, "1000.blk", b"first")
    others = [_shared(tmp_path, f"{n}.blk", b"x") for n in range(2000, 2005)]
    fds = FdCache(1)
    reader = ContentReader(fds=fds)
    reader._add(first, _record(0, 5))
    for path in others:  # cycle the cache past its capacity
        fds.release(fds.acquire(path, create=False))
    assert _read_all(reader) == b"first"
    reader.close()
    fds.close()


def test_without_a_cache_the_reader_opens_and_closes_its_own(tmp_path):
    path = _shared(tmp_path, "1000.blk", b"own")
    before = _open_fds()
    reader = ContentReader()
    reader._add(path, _record(0, 3))
    assert _open_fds() == before + 1
    assert _read_all(reader) == b"own"
    reader.close()
    assert _open_fds() == before
