"""``storage/disk/digestindex.py``: entry numbers by content digest (issue #16)."""

import hashlib
import os
import random

import pytest

from reduct_twisted.storage.disk.digestindex import DigestIndex, IndexFormatError


def digest(i: int) -> bytes:
    return hashlib.sha256(str(i % 97).encode()).digest()  # 97 distinct contents


def test_lookup_from_tail_runs_and_merges_matches_a_reference(tmp_path):
    index = DigestIndex.open(str(tmp_path), tail_size=16)
    reference = {}
    rng = random.Random(1)
    for number in range(1, 2001):
        d = digest(rng.randrange(1000))
        reference.setdefault(d, []).append(number)
        index.add([(d, number)])
    assert len(index.run_sizes) < 12  # merged: O(log n) runs
    assert sum(index.run_sizes) + len(index._tail) == 2000
    for d, numbers in reference.items():
        assert index.lookup(d) == numbers
    assert index.lookup(hashlib.sha256(b"absent").digest()) == []


def test_reopen_after_close_keeps_everything(tmp_path):
    index = DigestIndex.open(str(tmp_path), tail_size=8)
    index.add([(digest(i), i) for i in range(1, 21)])
    index.close()
    again = DigestIndex.open(str(tmp_path), tail_size=8)
    assert again.covered == 20
    assert again.lookup(digest(5)) == [5]


def test_a_crash_loses_only_the_tail_and_covered_says_what_to_add_again(tmp_path):
    index = DigestIndex.open(str(tmp_path), tail_size=8)
    index.add([(digest(i), i) for i in range(1, 9)])  # a full tail: written
    index.add([(digest(i), i) for i in range(9, 12)])  # 3 in the tail
    # no close(): the process dies
    again = DigestIndex.open(str(tmp_path), tail_size=8)
    assert again.covered == 8
    assert again.lookup(digest(10)) == []
    again.add([(digest(i), i) for i in range(again.covered + 1, 12)])
    assert again.lookup(digest(10)) == [10]


def test_leftovers_of_a_cut_merge_are_removed_and_foreign_files_kept(tmp_path):
    index = DigestIndex.open(str(tmp_path), tail_size=4)
    index.add([(digest(i), i) for i in range(1, 9)])
    index.close()
    (tmp_path / "run-999.idx").write_bytes(b"\0" * 16)   # written, not yet in the manifest
    (tmp_path / "run-1000.idx.tmp").write_bytes(b"\0" * 5)
    (tmp_path / "notes.txt").write_text("mine")
    again = DigestIndex.open(str(tmp_path), tail_size=4)
    names = sorted(os.listdir(tmp_path))
    assert "run-999.idx" not in names and "run-1000.idx.tmp" not in names
    assert "notes.txt" in names
    assert again.lookup(digest(3)) == [3]
    again.add([(digest(50), 50)] * 4)  # a new run does not reuse a removed name's number
    assert again.lookup(digest(50)) == [50]


@pytest.mark.parametrize("manifest", [
    b'{"format": 2, "runs": [], "covered": 0}', b"{not json", b'{"format": 1}',
    b'{"format": 1, "runs": ["../x"], "covered": 0}',
])
def test_a_newer_or_broken_manifest_is_refused_and_left_alone(tmp_path, manifest):
    (tmp_path / "manifest").write_bytes(manifest)
    with pytest.raises(IndexFormatError):
        DigestIndex.open(str(tmp_path))
    assert (tmp_path / "manifest").read_bytes() == manifest


def test_prefix_collisions_are_returned_for_the_caller_to_check(tmp_path):
    index = DigestIndex.open(str(tmp_path), tail_size=2)
    a = bytes(8) + b"\x01" * 24
    b = bytes(8) + b"\x02" * 24
    index.add([(a, 1), (b, 2), (a, 3)])
    assert index.lookup(a) == [1, 2, 3] == index.lookup(b)
