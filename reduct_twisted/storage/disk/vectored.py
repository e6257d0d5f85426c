"""
Writing a list of buffers back to back: bounded ``writev``/``pwritev`` calls.

Both content writers use it: a private segment's chunks (``writer.write_chunks``,
in a worker thread) and a run of small records (``runs.py``, one call per
contiguous range).  Each call takes at most :data:`IOV_MAX` buffers and at most
:data:`WRITE_MAX` bytes (a longer buffer is cut into views); a short write goes
on where it stopped.

Why bytes are bounded too: a ``write`` of more than about 1 MiB lets the kernel
fill the page cache with large folios, whose allocation is what a VM pays for
when its free memory was handed back to the host (free page reporting).  On the
2-vCPU VM of the README's "Measured", writing 1 GiB in 16 MiB ``writev`` calls
took 1.5-2.6 s of CPU (400-690 MB/s) after the file system had been idle for a
few seconds, and 0.23 s (4.4 GB/s) in 1 MiB calls; below 1 MiB the cost per
byte no longer changes, and the extra system calls are one per MiB.
"""

import errno
import os


def _iov_max() -> int:
    try:
        value = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):
        value = -1
    return value if value > 0 else 1024


#: Most buffers one ``writev`` takes (more fail with EINVAL).
IOV_MAX = _iov_max()

#: Most bytes one call writes (see the module docstring).
WRITE_MAX = 1 << 20


class ShortWrite(Exception):
    """
    A write stopped by an error: ``done`` bytes were written before it,
    ``error`` is the ``OSError`` (``ENOSPC`` when the disk took nothing).
    """

    def __init__(self, done: int, error: OSError) -> None:
        super().__init__(done, error)
        self.done, self.error = done, error


def _group(buffers: list, start: int, skip: int) -> list:
    # The next call's buffers: from ``buffers[start][skip:]`` on, at most
    # IOV_MAX of them and WRITE_MAX bytes (the last one cut to fit).
    group, size = [], 0
    for index in range(start, min(len(buffers), start + IOV_MAX)):
        buffer = buffers[index]
        if index == start and skip:
            buffer = memoryview(buffer)[skip:]
        room = WRITE_MAX - size
        if len(buffer) >= room:
            group.append(memoryview(buffer)[:room] if len(buffer) > room else buffer)
            return group
        group.append(buffer)
        size += len(buffer)
    return group


def _next(buffers: list, start: int, skip: int) -> tuple:
    # ``(start, skip, group, bytes)`` of the next call (0 bytes: nothing is
    # left); a group of empty buffers only is passed over.
    while start < len(buffers):
        group = _group(buffers, start, skip)
        wanted = sum(map(len, group))
        if wanted:
            return start, skip, group, wanted
        start, skip = start + len(group), 0
    return start, skip, [], 0


def _advance(buffers: list, start: int, skip: int, n: int) -> tuple:
    # Past ``n`` more bytes written from ``buffers[start][skip:]`` on.
    while n:
        left = len(buffers[start]) - skip
        if n < left:
            return start, skip + n
        n -= left
        start, skip = start + 1, 0
    return start, skip


def write_buffers(fd: int, buffers: list, offset=None) -> int:
    """
    Write every byte of ``buffers`` (bytes or byte memoryviews; the list is
    not changed) back to back: at ``offset`` with ``pwritev``, or at the
    file's position with ``writev`` (``offset=None``).  Safe in a worker thread.

    :return: the bytes written (all of them).
    :raises ShortWrite: an error stopped it (with the bytes written before).
    """
    done, start, skip, count = 0, 0, 0, len(buffers)
    group = buffers
    # The common case, one call, needs no group: the lengths are summed in C.
    wanted = sum(map(len, buffers)) if count <= IOV_MAX else WRITE_MAX + 1
    if wanted > WRITE_MAX:
        start, skip, group, wanted = _next(buffers, 0, 0)
    while wanted:
        try:
            n = os.writev(fd, group) if offset is None else os.pwritev(fd, group, offset + done)
        except OSError as exc:
            raise ShortWrite(done, exc) from None
        if not n:
            raise ShortWrite(done, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        done += n
        start, skip = _advance(buffers, start, skip, n)
        start, skip, group, wanted = _next(buffers, start, skip)
    return done
