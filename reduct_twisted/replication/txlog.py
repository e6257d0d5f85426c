# -*- test-case-name: tests.unit.test_replication_log -*-
"""
The transaction log of a replication: what is still to be sent, on disk,
in order, across restarts and crashes.

One log per replication and source entry, as upstream keeps them::

    <data_path>/.replications/<replication>/<entry>/
        00000000000000000000.log    segment: the items from seq 0 on
        00000000000000065536.log    the next segment (SEGMENT_ITEMS each)
        cursor                      seq of the first item not yet done

Every item has a sequence number (``seq``): the first seq of its segment,
named in the file name, plus its line index.  A segment is a text file of
one line per item, appended to and never rewritten::

    W <ts>\\n                       record <ts> was written
    L <ts>[ <name>,<name>…]\\n      labels of record <ts> changed; the names
                                    (percent-encoded) are labels it lost

Items from the cursor on are pending; the sender reads them from there
(:meth:`EntryLog.peek`) and moves the cursor past them once the destination
has them or they are given up (:meth:`EntryLog.ack`).  A segment wholly
behind the cursor is deleted.  The cursor file is rewritten in place and
never flushed: a cursor lost in a crash only means sending items again,
which the destination answers with 409 for records it has (taken as
delivered), so nothing is duplicated.

Crash safety: a torn last line (no newline) and damaged lines at the end
of the last segment (zeros after a power loss) are cut off when the log is
opened; the appends are recorded in a ``DirtySet``, so the daemon's group
commit flushes them before the write that caused them is answered.

Bound: at most ``capacity`` items are pending.  An item appended to a full
log makes room by dropping the oldest pending one, which :meth:`append`
returns so the caller can report it (upstream drops the oldest too).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Optional
from urllib.parse import quote, unquote

import attr

#: Items per segment file.
SEGMENT_ITEMS = 65_536
#: Kinds of items: a record written, labels updated.
WRITE, LABELS = "W", "L"

CURSOR_FILE = "cursor"
_SEGMENT_RE = re.compile(r"(\d{20})\.log")
_LINE_RE = re.compile(rb"([WL]) (\d{1,20})(?: ([^\s]+))?")
_READ_SIZE = 1 << 16


@attr.s(frozen=True, slots=True)
class LogItem:
    """
    One pending item.

    :ivar seq: its sequence number.
    :ivar kind: :data:`WRITE`, :data:`LABELS`, or ``None`` for a line that
        could not be read (damaged).
    :ivar ts: the record's timestamp (0 for a damaged line).
    :ivar removed: for :data:`LABELS`, names of labels the update removed.
    """

    seq: int = attr.ib()
    kind: Optional[str] = attr.ib()
    ts: int = attr.ib()
    removed: tuple = attr.ib(default=())
    #: (first seq of its segment, offset just past its line)
    end: tuple = attr.ib(default=(0, 0), repr=False)


def format_item(kind: str, ts: int, removed=()) -> bytes:
    """:return: the line of an item (see the module docstring)."""
    if removed:
        names = ",".join(quote(name, safe="") for name in removed)
        return f"{kind} {ts} {names}\n".encode("ascii")
    return f"{kind} {ts}\n".encode("ascii")


def parse_item(line: bytes):
    """:return: ``(kind, ts, removed)`` of a line without its newline, or ``None``."""
    match = _LINE_RE.fullmatch(line)
    if match is None:
        return None
    kind, ts, names = match.groups()
    removed = tuple(unquote(n) for n in names.decode("ascii").split(",")) if names else ()
    return kind.decode("ascii"), int(ts), removed


def _segment_name(first: int) -> str:
    return "%020d.log" % first


def _lines(path: str, offset: int, limit: int) -> list:
    """Up to ``limit`` complete lines from ``offset``: ``[(line, end offset)]``."""
    found: list = []
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return found
    try:
        buffer = b""
        while len(found) < limit:
            chunk = os.pread(fd, _READ_SIZE, offset + len(buffer))
            if not chunk:
                break
            buffer += chunk
            start = 0
            while len(found) < limit:
                newline = buffer.find(b"\n", start)
                if newline < 0:
                    break
                found.append((buffer[start:newline], offset + newline + 1))
                start = newline + 1
            offset += start
            buffer = buffer[start:]
    finally:
        os.close(fd)
    return found


class EntryLog:
    """
    The log of one entry (see the module docstring); opened at once.

    :param directory: its directory (created if missing).
    :param capacity: most items pending at once (``RS_REPLICATION_LOG_SIZE``).
    :param dirty: a ``DirtySet`` told of every file and directory changed.
    :param segment_items: items per segment file.
    """

    def __init__(self, directory: str, capacity: int, dirty,
                 segment_items: int = SEGMENT_ITEMS) -> None:
        self.directory = directory
        self.capacity = capacity
        self._dirty = dirty
        self._segment_items = segment_items
        self._segments: list = []
        self._append_fd = None
        self._cursor_fd = None
        self._open()

    # -- opening -------------------------------------------------------------

    def _open(self) -> None:
        if not os.path.isdir(self.directory):
            os.makedirs(self.directory)
            self._dirty.new_dir(self.directory)
        names = sorted(n for n in os.listdir(self.directory) if _SEGMENT_RE.fullmatch(n))
        self._segments = [int(n[:20]) for n in names]
        cursor_path = os.path.join(self.directory, CURSOR_FILE)
        self._cursor_fd = os.open(cursor_path, os.O_RDWR | os.O_CREAT, 0o644)
        stored = os.pread(self._cursor_fd, 64, 0).strip()
        saved = int(stored) if stored.isdigit() else None
        if self._segments:
            last = self._segments[-1]
            self._next = last + self._repair(self._path(last))
            first = self._segments[0]
        else:
            first = self._next = saved or 0
        self.cursor = min(max(saved if saved is not None else first, first), self._next)
        self._position(first)
        self._forget_done()

    def _repair(self, path: str) -> int:
        # Cut the last segment after its last whole, readable line; a
        # damaged line before a good one stays (peek reports it).
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")[:-1]
        while lines and parse_item(lines[-1]) is None:
            lines.pop()
        count = len(lines)
        good = sum(len(line) + 1 for line in lines)
        if good != len(data):
            os.truncate(path, good)
            self._dirty.file(path)
        return count

    def _position(self, first: int) -> None:
        # Find the line of the cursor: skip cursor - first lines of its segment.
        segment = max((s for s in self._segments if s <= self.cursor), default=first)
        offset = 0
        skip = self.cursor - segment
        if skip and self._segments:
            lines = _lines(self._path(segment), 0, skip)
            offset = lines[-1][1] if lines else 0
        self._pos = (segment, offset)

    def _path(self, first: int) -> str:
        return os.path.join(self.directory, _segment_name(first))

    # -- state ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        """How many items are waiting."""
        return self._next - self.cursor

    @property
    def next_seq(self) -> int:
        """The seq the next appended item gets."""
        return self._next

    # -- writing -------------------------------------------------------------

    def append(self, kind: str, ts: int, removed=()) -> Optional[LogItem]:
        """
        Add an item at the end.

        :return: the oldest pending item if it had to be dropped to make
            room (the log was full), else ``None``.
        :raises OSError: the disk refused; nothing was appended.
        """
        dropped = None
        if self.pending >= self.capacity:
            oldest = self.peek(1)
            if oldest:
                dropped = oldest[0]
                self.ack(dropped)
        if not self._segments or self._next - self._segments[-1] >= self._segment_items:
            self._rotate()
        self._ensure_append_fd()
        os.write(self._append_fd, format_item(kind, ts, removed))
        self._dirty.file(self._path(self._segments[-1]))
        self._next += 1
        return dropped

    def _rotate(self) -> None:
        path = self._path(self._next)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._dirty.created(path)
        self._close_append()
        self._append_fd = fd
        self._segments.append(self._next)
        self._forget_done()

    def _ensure_append_fd(self) -> None:
        if self._append_fd is None and self._segments:
            self._append_fd = os.open(self._path(self._segments[-1]),
                                      os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # -- reading ---------------------------------------------------------------

    def peek(self, limit: int) -> list:
        """:return: up to ``limit`` pending items from the cursor on, in order."""
        items: list = []
        segment, offset = self._pos
        seq = self.cursor
        while len(items) < limit and seq < self._next:
            lines = _lines(self._path(segment), offset, limit - len(items))
            for line, end in lines:
                parsed = parse_item(line)
                kind, ts, removed = parsed if parsed is not None else (None, 0, ())
                items.append(LogItem(seq, kind, ts, removed, (segment, end)))
                seq += 1
            later = [s for s in self._segments if s > segment]
            if len(items) >= limit or not later:
                break
            # The end of this segment: continue with the next one.
            segment, offset, seq = later[0], 0, later[0]
        return items

    def ack(self, item: LogItem) -> None:
        """
        Everything up to ``item`` is done (sent, or given up): move the
        cursor past it.  Items behind the cursor already are ignored.
        """
        if item.seq < self.cursor:
            return
        self.cursor = item.seq + 1
        self._pos = item.end
        self._forget_done()
        if self._cursor_fd is None:
            self._cursor_fd = os.open(os.path.join(self.directory, CURSOR_FILE), os.O_WRONLY)
        os.pwrite(self._cursor_fd, b"%020d\n" % self.cursor, 0)

    def _forget_done(self) -> None:
        # Delete segments wholly behind the cursor (never the last one).
        while len(self._segments) > 1 and self._segments[1] <= self.cursor:
            gone = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(gone))
            self._dirty.dir(self.directory)
            if self._pos[0] == gone:
                self._pos = (self._segments[0], 0)
        self._ensure_append_fd()

    def _close_append(self) -> None:
        if self._append_fd is not None:
            os.close(self._append_fd)
            self._append_fd = None

    def close(self) -> None:
        """Close the files; a later append or ack opens them again."""
        self._close_append()
        if self._cursor_fd is not None:
            os.close(self._cursor_fd)
            self._cursor_fd = None
