# -*- test-case-name: tests.unit.test_storage_usage -*-
"""
Two checks every record write passes before anything is written (spec 1.20
§5.10, issue #15): the engine-wide storage cap and the free space of the
file system.

:class:`Usage` keeps a running total of the ``size`` statistics of every
entry of every bucket (``$system`` included): ``Entry.size`` reports each
change to it and a removed entry takes its bytes away, so no request ever
sums the buckets.  Records being written count too: one of declared length
is in its entry's statistics from ``allocate`` on, a chunked one counts
the bytes claimed so far (:attr:`Usage.pending`) until its commit or abort.  A record that would take ``stored + pending``
past ``RS_ENGINE_MAX_STORAGE_SIZE`` is refused with 500 :data:`LIMIT_TEXT`,
before any bucket quota is applied.  :meth:`Usage.recount` rebuilds the
total from the entries (at open and every quota round), so it cannot drift.

:class:`FreeSpace` refuses a record the file system has no room for (507,
as a write that fails with ``ENOSPC``), before a byte of it is written; a
record longer than the whole file system is the request's fault
(:meth:`FreeSpace.beyond_capacity`, answered 413).
``statvfs`` is asked at most once per :data:`REFRESH` seconds while there
is plenty of room: in between, the bytes admitted since are subtracted
from the last answer.  Within :data:`LOW_WATER` bytes of full it is asked
before every record, so the refusal is exact.
"""

import os

from reduct_twisted.errors import InternalError

#: The refusal of a record beyond the storage cap (spec 1.20 §5.10).
LIMIT_TEXT = "storage limit exceeded"

#: Seconds a ``statvfs`` answer is used while far from full.
REFRESH = 1.0
#: Below this many free bytes (estimated), ``statvfs`` is asked every time.
LOW_WATER = 64 << 20
#: Room kept beyond a record's content: its metadata line, block rounding.
SLACK = 16 << 10


class Usage:
    """
    The bytes all buckets hold and the engine-wide cap.

    :param cap: ``RS_ENGINE_MAX_STORAGE_SIZE`` in bytes; ``0``: no cap.
    :ivar stored: the sum of every live entry's ``size``.
    :ivar pending: bytes claimed by chunked records being written.
    """

    __slots__ = ("cap", "stored", "pending")

    def __init__(self, cap: int = 0) -> None:
        self.cap = cap
        self.stored = 0
        self.pending = 0

    def check(self, size: int) -> None:
        """
        :raises InternalError: ``storage limit exceeded``: ``size`` more
            bytes do not fit under the cap.
        """
        if self.cap and self.stored + self.pending + size > self.cap:
            raise InternalError(LIMIT_TEXT)

    def admit(self, size: int) -> None:
        """
        :meth:`check`, then count ``size`` more bytes of a chunked record
        being written (not in any entry's statistics until its commit).
        """
        self.check(size)
        self.pending += size

    def release(self, size: int) -> None:
        """The record of ``size`` admitted bytes was committed or aborted."""
        self.pending -= size

    def recount(self, buckets) -> None:
        """Set :attr:`stored` to the sum over ``buckets``' entries."""
        self.stored = sum(bucket.size for bucket in buckets)


class FreeSpace:
    """
    Whether the file system of ``path`` has room for a record (see the
    module docstring).

    :param path: a directory on the file system (the data directory).
    :param clock: provides ``seconds()``.
    :param statvfs: ``os.statvfs`` (replaceable in tests).
    :param enabled: ``False`` admits everything (an engine built without it).
    """

    def __init__(self, path: str, clock, statvfs=os.statvfs, enabled: bool = True) -> None:
        self.path = path
        self._clock = clock
        self._statvfs = statvfs
        self.enabled = enabled
        self._free = 0
        self._since = 0
        self._at = None
        #: The file system's size (``None`` when unknown).
        self.capacity = None

    def _refresh(self) -> None:
        try:
            fs = self._statvfs(self.path)
        except OSError:
            self._free, self._since, self._at = 1 << 62, 0, self._clock.seconds()
            self.capacity = None
            return
        self._free = fs.f_bavail * fs.f_frsize
        self.capacity = fs.f_blocks * fs.f_frsize
        self._since = 0
        self._at = self._clock.seconds()

    def room_for(self, size: int, slack: int = SLACK) -> bool:
        """
        Whether ``size`` more bytes (plus ``slack``) fit; if so they are
        counted against the free space until the next ``statvfs``.
        """
        if not self.enabled:
            return True
        need = size + slack
        if (self._at is None or self._clock.seconds() - self._at >= REFRESH
                or self._free - self._since - need < LOW_WATER):
            self._refresh()
        if self._free - self._since < need:
            return False
        self._since += size
        return True

    def beyond_capacity(self, size: int) -> bool:
        """
        Whether ``size`` bytes are more than the whole file system holds
        (known after a :meth:`room_for`): no removal could ever make room,
        so the request, not the disk, is at fault (413, not 507).
        """
        return self.enabled and self.capacity is not None and size > self.capacity
