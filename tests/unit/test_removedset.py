"""``storage/disk/removedset.py``: removed entry numbers, for listing positions (issue #16)."""

import random

import pytest

from reduct_twisted.storage.disk.removedset import RemovedFormatError, RemovedSet


def check(found: RemovedSet, removed: set, size: int) -> None:
    stored = [n for n in range(1, size + 1) if n not in removed]
    assert len(found) == len(removed)
    for n in range(1, size + 2):
        assert (n in found) == (n in removed), n
        assert found.rank(n) == sum(1 for r in removed if r < n), n
    for k, n in enumerate(stored, 1):
        assert found.select(k, size) == n, k
    assert found.select(len(stored) + 1, size) is None
    assert found.select(0, size) is None


def test_random_removals_against_a_reference_and_after_reopening(tmp_path):
    rng = random.Random(7)
    found = RemovedSet.open(str(tmp_path))
    removed, size = set(), 300
    for _ in range(40):
        if rng.random() < 0.3:  # a block: a run of numbers
            a = rng.randrange(1, size)
            batch = range(a, min(size, a + rng.randrange(1, 30)) + 1)
        else:
            batch = rng.sample(range(1, size + 1), rng.randrange(1, 5))
        found.add(batch)
        removed.update(batch)
    check(found, removed, size)
    check(RemovedSet.open(str(tmp_path)), removed, size)


def test_repeated_and_overlapping_lines_merge(tmp_path):
    found = RemovedSet.open(str(tmp_path))
    found.add([3, 4, 5])
    found.add([4, 5, 6, 10])
    found.add([5])
    check(RemovedSet.open(str(tmp_path)), {3, 4, 5, 6, 10}, 12)


def test_a_torn_last_line_is_cut_off(tmp_path):
    found = RemovedSet.open(str(tmp_path))
    found.add([2])
    with open(tmp_path / "removed", "ab") as f:
        f.write(b"7 9")  # no newline: the crash came mid-append
    again = RemovedSet.open(str(tmp_path))
    check(again, {2}, 10)
    assert (tmp_path / "removed").read_bytes().endswith(b"2 2\n")
    again.add([7])
    check(RemovedSet.open(str(tmp_path)), {2, 7}, 10)


def test_an_empty_set(tmp_path):
    found = RemovedSet.open(str(tmp_path))
    check(found, set(), 5)
    assert not (tmp_path / "removed").exists()
    found.add([])
    assert not (tmp_path / "removed").exists()


@pytest.mark.parametrize("data", [
    b'{"format": 2}\n', b"nonsense\n", b'{"format": 1}\n5 x\n', b'{"format": 1}\n5 4\n',
    b'{"format": 1}\n0 1\n',
])
def test_newer_or_malformed_files_are_refused_and_left_alone(tmp_path, data):
    (tmp_path / "removed").write_bytes(data)
    with pytest.raises(RemovedFormatError):
        RemovedSet.open(str(tmp_path))
    assert (tmp_path / "removed").read_bytes() == data
