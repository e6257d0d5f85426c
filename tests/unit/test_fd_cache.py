"""
The descriptor cache (storage/cache.py ``FdCache``): a descriptor opened
while the cache is full goes in as the next one to close, so writes cycling
over more files than the cache holds keep most of it open from one cycle to
the next (plain LRU reopened every file every time), and a working set that
moves on still moves in.
"""

import os

from reduct_twisted.storage import cache
from reduct_twisted.storage.cache import FdCache


def _paths(tmp_path, names):
    return [str(tmp_path / name) for name in names]


def _cycle(fds: FdCache, paths) -> int:
    """Acquire and release each path in turn: :return: how many were opened."""
    before = fds._opened
    for path in paths:
        fds.release(fds.acquire(path))
    return fds._opened - before


def test_a_cycle_over_more_files_than_the_cache_keeps_most_open(tmp_path):
    fds = FdCache(4)
    paths = _paths(tmp_path, "abcdef")
    assert _cycle(fds, paths) == 6
    # Each later cycle: b, c and d stay open; a, e and f take turns in the
    # one cold place (plain LRU opened all six every cycle).
    assert [_cycle(fds, paths) for _ in range(4)] == [3, 3, 3, 3]
    assert len(fds) == 4
    fds.close()


def test_a_working_set_that_moves_on_moves_in(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "WARM_EVERY", 2)
    fds = FdCache(4)
    old, new = _paths(tmp_path, "abcd"), _paths(tmp_path, "uvwxyz")
    _cycle(fds, old)
    for _ in range(20):
        opened = _cycle(fds, new)
    assert opened < len(new)  # some of the new set stay open from cycle to cycle
    assert not set(old) & set(fds._items)  # the old set is gone
    fds.close()


def test_busy_descriptors_stay_open_and_a_cold_one_closes_first(tmp_path):
    fds = FdCache(2)
    a, b, c, d = _paths(tmp_path, "abcd")
    held = fds.acquire(a)  # in use throughout
    fds.release(fds.acquire(b))
    fds.release(fds.acquire(c))  # full: c goes in cold, b (idle) closes
    assert set(fds._items) == {a, c}
    fds.release(fds.acquire(d))  # c, the cold one, closes; a is busy
    assert set(fds._items) == {a, d}
    os.fstat(held.fd)  # still open
    fds.release(held)
    fds.close()
    assert len(fds) == 0
