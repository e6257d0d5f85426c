"""
The read side of record contents: readers over finished records' bytes.

Storage hands out no descriptor and no path: a :class:`ContentReader`
opens the data files of the records added to it (each file once; a shared
segment's descriptor is the engine's cached one, held open until the
reader closes) and
offers its byte ranges, in the order added, as :class:`DataFile` extents
(a compressed record's range is a ``packed.FrameReader``, which
decompresses as it reads and has no ``sendfile``) with two ways to move
the bytes on: :meth:`DataFile.read` (one ``pread``)
and :meth:`DataFile.send_to` (``sendfile(2)`` straight into a socket, no
copy through Python).  The caller (a response producer) chooses per call;
the files stay open, so a block removed meanwhile (by a FIFO quota) cannot
take the bytes away, until :meth:`ContentReader.close`.

Small records are read whole by ``StorageEngine.read_content`` instead,
through the engine's descriptor cache (``cache.read_whole``).
"""

import os

from twisted.internet.defer import maybeDeferred

from reduct_twisted.storage.disk.packed import FrameReader


def _run_now(f, *args):
    return f(*args)


class DataFile:
    """One open data file of a :class:`ContentReader` (its descriptor stays inside)."""

    __slots__ = ("_fd",)

    #: Whether :meth:`send_to` may be used (a compressed record's
    #: ``packed.FrameReader`` in its place says no).
    sendable = True

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self, offset: int, length: int) -> bytes:
        """
        :return: up to ``length`` bytes at ``offset`` (fewer only at the end
            of the file).
        :raises OSError: the read failed.
        """
        return os.pread(self._fd, length, offset)

    def send_to(self, socket_fd: int, offset: int, count: int) -> int:
        """
        Send up to ``count`` bytes at ``offset`` into the socket ``socket_fd``
        with ``sendfile(2)`` (no copy through Python).

        :return: the number of bytes sent (``0``: end of the file).
        :raises OSError: as ``os.sendfile`` (``BlockingIOError`` when the
            socket is full; ``EINVAL`` and the like when this file or socket
            cannot be used so).
        """
        return os.sendfile(socket_fd, self._fd, offset, count)


#: Whether :meth:`DataFile.send_to` is available on this platform.
CAN_SEND = hasattr(os, "sendfile")


class CompressedRange:
    """
    The source of a compressed record's range (offsets into its content):
    :meth:`read` decompresses on the calling thread, :meth:`fetch` in the
    thread its reader was given (a response producer uses it, so the
    reactor thread never decompresses); no ``send_to`` (``sendable`` is false).
    """

    __slots__ = ("_frame", "_owner")

    sendable = False

    def __init__(self, frame: FrameReader, owner: "ContentReader") -> None:
        self._frame, self._owner = frame, owner

    def read(self, offset: int, length: int) -> bytes:
        """:return: up to ``length`` content bytes at ``offset`` (fewer only at the end)."""
        return self._frame.read(offset, length)

    def send_to(self, socket_fd: int, offset: int, count: int) -> int:
        """Not for compressed bytes: ``EOPNOTSUPP``."""
        return self._frame.send_to(socket_fd, offset, count)

    def fetch(self, offset: int, length: int):
        """
        :meth:`read` in the reader's thread; one call at a time.  The
        reader's files stay open until it returns, even if the reader is
        closed meanwhile.

        :return: a Deferred of the bytes (fails with ``OSError``).
        """
        owner = self._owner
        owner._busy += 1

        def done(result):
            owner._busy -= 1
            if owner._closed and not owner._busy:
                owner._close_files()
            return result

        return maybeDeferred(owner._run, self._frame.read, offset, length).addBoth(done)


class ContentReader:
    """
    The contents of finished records, to be read back to back.

    :ivar ranges: ``(DataFile, offset, size)`` triples in the order the
        records were added; records back to back in one file share a range.
    :ivar size: the sum of the record sizes.
    """

    def __init__(self, run_in_thread=None, fds=None) -> None:
        self._fds = fds
        self._files: dict = {}
        self.ranges: list = []
        self.size = 0
        self._run = run_in_thread or _run_now
        self._busy = 0
        self._closed = False
        #: The cache's slots whose descriptors this reader uses (``_open``).
        self._held: list = []

    @classmethod
    def of(cls, views, run_in_thread=None, fds=None) -> "ContentReader":
        """
        :param views: ``RecordView`` objects, in the order to read them.
        :param run_in_thread: where compressed ranges' ``fetch`` decompresses
            (``run_in_thread(f, *args)``; default: at once).
        :param fds: the engine's ``FdCache``, or None: a shared segment's
            descriptor is then the cached one, held until :meth:`close`.
        :return: a reader over their contents (see :meth:`add`).
        :raises OSError: a data file cannot be opened (none is left open).
        """
        reader = cls(run_in_thread, fds)
        try:
            for view in views:
                reader.add(view)
        except OSError:
            reader.close()
            raise
        return reader

    def add(self, view) -> None:
        """
        Append the content of the record of ``view`` (a ``RecordView``),
        opening its data file if this reader has not already.

        :raises OSError: the file cannot be opened (nothing is added).
        """
        self._add(view.path, view.record)

    def add_stored(self, block, record) -> None:
        """
        :meth:`add` for a stored ``record`` of ``block`` (a batch take:
        ``Query.take``), without a ``RecordView``.

        :raises OSError: the file cannot be opened (nothing is added).
        """
        segment = record.segment
        path = block.shared_path if segment == block.shared_segment else block.path(segment)
        self._add(path, record)

    def open_shared(self, block) -> None:
        """
        Open ``block``'s shared segment for :meth:`add_run` (if it holds
        any content), so that cannot fail later.

        :raises OSError: the file cannot be opened.
        """
        path = block.shared_path
        if block.tail and path not in self._files:
            self._files[path] = DataFile(self._open(path, True))

    def add_run(self, block, records) -> None:
        """
        :meth:`add_stored` for finished, uncompressed records of
        ``block``'s shared segment, in order, after :meth:`open_shared`:
        back to back ones make one range.
        """
        data_file = self._files.get(block.shared_path)
        ranges = self.ranges
        start = length = None
        if ranges and ranges[-1][0] is data_file:
            _, start, length = ranges.pop()
        total = 0
        for record in records:
            size = record.size
            if not size:
                continue
            total += size
            offset = record.offset
            if start is not None and start + length == offset:
                length += size
                continue
            if start is not None:
                ranges.append((data_file, start, length))
            start, length = offset, size
        if start is not None:
            ranges.append((data_file, start, length))
        self.size += total

    def _add(self, path: str, record) -> None:
        size = record.size
        if not size:
            return
        data_file = self._files.get(path)
        if data_file is None:
            data_file = self._files[path] = DataFile(self._open(path, "-" not in record.segment))
        ranges = self.ranges
        offset = record.offset
        if record.zsize is not None:
            # Compressed: a range of its own over the decompressed content.
            frame = FrameReader(data_file._fd, offset, record.zsize)
            ranges.append((CompressedRange(frame, self), 0, size))
            self.size += size
            return
        self.size += size
        if ranges:
            last_file, last_offset, last_size = ranges[-1]
            if last_file is data_file and last_offset + last_size == offset:
                # Back to back in the same file: one range.
                ranges[-1] = (data_file, last_offset, last_size + size)
                return
        ranges.append((data_file, offset, size))

    def _open(self, path: str, shared: bool) -> int:
        """
        A descriptor for data file ``path``: for a shared segment, the
        engine's cached one, held (a user of its ``FdSlot``) until the
        reader closes, so the cache keeps it open meanwhile, even if it
        forgets the file (a removed block); otherwise one of its own (a
        private segment's path may be reused by a later record, so it is
        never cached: ``cache.read_whole``).  Holding instead of ``dup``
        spares two system calls a file a batch (the descriptor is the same
        open file either way).
        """
        fds = self._fds
        if shared and fds is not None:
            try:
                slot = fds.acquire(path, create=False)
            except OSError:
                pass  # opened below (read-only file system) or failing there
            else:
                self._held.append(slot)
                return slot.fd
        return os.open(path, os.O_RDONLY)

    def narrow(self, offset: int, length: int) -> None:
        """
        Keep only the bytes ``[offset, offset + length)`` of the contents
        read back to back (an HTTP ``Range``); the files stay open.

        :raises ValueError: the span is not inside the contents.
        """
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"bytes {offset}+{length} are not within {self.size}")
        kept, skip = [], offset
        for data_file, start, size in self.ranges:
            if skip >= size:
                skip -= size
                continue
            take = min(size - skip, length)
            if take <= 0:
                break
            kept.append((data_file, start + skip, take))
            length -= take
            skip = 0
        self.ranges = kept
        self.size = sum(r[2] for r in kept)

    @property
    def file_count(self) -> int:
        """How many data files this reader holds open."""
        return len(self._files)

    def close(self) -> None:
        """
        Close the data files (after the ``fetch`` under way, if any);
        idempotent.  The ranges must not be read after.
        """
        self._closed = True
        self.ranges = []
        if not self._busy:
            self._close_files()

    def _close_files(self) -> None:
        files, self._files = self._files, {}
        held, self._held = self._held, []
        cached = {slot.fd for slot in held}
        for data_file in files.values():
            if data_file._fd not in cached:
                os.close(data_file._fd)
        for slot in held:
            self._fds.release(slot)
