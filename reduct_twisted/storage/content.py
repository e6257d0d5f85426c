"""
The read side of record contents: readers over finished records' bytes.

Storage hands out no descriptor and no path: a :class:`ContentReader`
opens the data files of the records added to it (each file once) and
offers its byte ranges, in the order added, as :class:`DataFile` extents
with two ways to move the bytes on: :meth:`DataFile.read` (one ``pread``)
and :meth:`DataFile.send_to` (``sendfile(2)`` straight into a socket, no
copy through Python).  The caller (a response producer) chooses per call;
the files stay open, so a block removed meanwhile (by a FIFO quota) cannot
take the bytes away, until :meth:`ContentReader.close`.

Small records are read whole by ``StorageEngine.read_content`` instead,
through the engine's descriptor cache (``cache.read_whole``).
"""

import os


class DataFile:
    """One open data file of a :class:`ContentReader` (its descriptor stays inside)."""

    __slots__ = ("_fd",)

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


class ContentReader:
    """
    The contents of finished records, to be read back to back.

    :ivar ranges: ``(DataFile, offset, size)`` triples in the order the
        records were added; records back to back in one file share a range.
    :ivar size: the sum of the record sizes.
    """

    def __init__(self) -> None:
        self._files: dict = {}
        self.ranges: list = []
        self.size = 0

    @classmethod
    def of(cls, views) -> "ContentReader":
        """
        :param views: ``RecordView`` objects, in the order to read them.
        :return: a reader over their contents (see :meth:`add`).
        :raises OSError: a data file cannot be opened (none is left open).
        """
        reader = cls()
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
        record = view.record
        size = record.size
        if not size:
            return
        data_file = self._files.get(view.path)
        if data_file is None:
            data_file = self._files[view.path] = DataFile(os.open(view.path, os.O_RDONLY))
        ranges = self.ranges
        offset = record.offset
        if ranges:
            last_file, last_offset, last_size = ranges[-1]
            if last_file is data_file and last_offset + last_size == offset:
                # Back to back in the same file: one range.
                ranges[-1] = (data_file, last_offset, last_size + size)
                self.size += size
                return
        ranges.append((data_file, offset, size))
        self.size += size

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
        """Close the data files; idempotent.  The ranges must not be read after."""
        files, self._files = self._files, {}
        self.ranges = []
        for data_file in files.values():
            os.close(data_file._fd)
