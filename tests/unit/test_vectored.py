"""
``storage/disk/vectored.py``: buffers written back to back in bounded calls.

Every call is checked against both bounds (buffers and bytes), the file
against the concatenation, through short writes, empty buffers, buffers
longer than a call and errors part way.
"""

import errno
import os
import random

import pytest

from reduct_twisted.storage.disk import vectored


class _Calls:
    """``os.writev``/``os.pwritev`` recorded; ``cap`` bytes at most per call; ``fail_at``: the n-th call fails."""

    def __init__(self, monkeypatch, cap=None, fail_at=None, zero_at=None):
        self.sizes, self.counts = [], []
        self.cap, self.fail_at, self.zero_at = cap, fail_at, zero_at
        real_writev, real_pwritev = os.writev, os.pwritev

        def take(buffers):
            self.counts.append(len(buffers))
            self.sizes.append(sum(len(b) for b in buffers))
            n = len(self.sizes)
            if n == self.fail_at:
                raise OSError(errno.EIO, "disk said no")
            if n == self.zero_at:
                return None
            if self.cap is None:
                return buffers
            taken, size = [], 0
            for buffer in buffers:
                piece = memoryview(buffer)[: self.cap - size]
                taken.append(piece)
                size += len(piece)
                if size == self.cap:
                    break
            return taken

        def writev(fd, buffers):
            taken = take(buffers)
            return 0 if taken is None else real_writev(fd, taken)

        def pwritev(fd, buffers, offset):
            taken = take(buffers)
            return 0 if taken is None else real_pwritev(fd, taken, offset)

        monkeypatch.setattr(os, "writev", writev)
        monkeypatch.setattr(os, "pwritev", pwritev)


def _buffers(rng, count):
    # Mostly small and empty ones, some of a third of a call, three longer than one.
    out = []
    for i in range(count):
        size = (3 << 20) + i if i in (5, 6, count - 2) else rng.choice((0, 0, 1, 7, 4096, 300_000))
        data = rng.randbytes(size)
        out.append(memoryview(b"xx" + data)[2:] if i % 3 == 0 else data)
    return out


@pytest.mark.parametrize("positional", [False, True])
@pytest.mark.parametrize("cap", [None, 1000, 700_001])
def test_every_byte_in_order_within_both_bounds(tmp_path, monkeypatch, positional, cap):
    rng = random.Random(f"{positional}{cap}")
    buffers = _buffers(rng, 2 * vectored.IOV_MAX + 40 if cap != 1000 else 300)
    expected = b"".join(bytes(b) for b in buffers)
    before = list(buffers)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        if positional:
            os.pwrite(fd, b"HEAD", 0)
            calls = _Calls(monkeypatch, cap=cap)
            done = vectored.write_buffers(fd, buffers, 4)
        else:
            calls = _Calls(monkeypatch, cap=cap)
            done = vectored.write_buffers(fd, buffers)
    finally:
        os.close(fd)
    assert done == len(expected)
    assert path.read_bytes() == (b"HEAD" if positional else b"") + expected
    assert buffers == before  # the caller's list is left alone
    assert max(calls.sizes) <= vectored.WRITE_MAX
    assert max(calls.counts) <= vectored.IOV_MAX
    assert min(calls.sizes) > 0  # no call for nothing


def test_a_small_list_is_one_call(tmp_path, monkeypatch):
    buffers = [b"a" * 1024] * 80
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        calls = _Calls(monkeypatch)
        assert vectored.write_buffers(fd, buffers, 0) == 80 * 1024
    finally:
        os.close(fd)
    assert calls.counts == [80]


def test_one_long_buffer_is_cut_into_calls_of_the_bound(tmp_path, monkeypatch):
    data = os.urandom(5 * vectored.WRITE_MAX + 3)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        calls = _Calls(monkeypatch)
        vectored.write_buffers(fd, [data])
    finally:
        os.close(fd)
    assert calls.sizes == [vectored.WRITE_MAX] * 5 + [3]
    assert (tmp_path / "f").read_bytes() == data


def test_empty_buffers_only_make_no_call(tmp_path, monkeypatch):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        calls = _Calls(monkeypatch)
        assert vectored.write_buffers(fd, [b""] * (vectored.IOV_MAX + 5)) == 0
        # More empty buffers than one call takes, then data: it still arrives.
        assert vectored.write_buffers(fd, [b""] * (vectored.IOV_MAX + 5) + [b"end"]) == 3
    finally:
        os.close(fd)
    assert calls.sizes == [3]
    assert (tmp_path / "f").read_bytes() == b"end"


@pytest.mark.parametrize("how", ["error", "nothing taken"])
def test_a_failure_part_way_says_how_much_was_written(tmp_path, monkeypatch, how):
    buffers = [os.urandom(600_000) for _ in range(6)]
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        if how == "error":
            _Calls(monkeypatch, fail_at=3)
        else:
            _Calls(monkeypatch, zero_at=3)
        with pytest.raises(vectored.ShortWrite) as caught:
            vectored.write_buffers(fd, buffers, 0)
    finally:
        os.close(fd)
    assert caught.value.done == 2 * vectored.WRITE_MAX
    expected_errno = errno.EIO if how == "error" else errno.ENOSPC
    assert caught.value.error.errno == expected_errno
    assert (tmp_path / "f").read_bytes() == b"".join(buffers)[: 2 * vectored.WRITE_MAX]


def test_a_private_segment_is_written_in_calls_of_the_bound(tmp_path, monkeypatch):
    """``writer.write_chunks`` (large uploads) goes through the bound: 16 MiB of 64 KiB chunks."""
    from reduct_twisted.storage import writer

    chunks = [os.urandom(65536) for _ in range(256)]
    fd = os.open(tmp_path / "seg", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        calls = _Calls(monkeypatch)
        writer.write_chunks(fd, chunks, 0)
    finally:
        os.close(fd)
    assert calls.sizes == [vectored.WRITE_MAX] * 16
    assert (tmp_path / "seg").read_bytes() == b"".join(chunks)
