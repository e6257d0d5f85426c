"""
The packed (compressed) segment of a block: one zstd frame per record.

A compressed block keeps its ``.meta`` (JSON lines, ``blockfile.py``) and
moves the contents of its records into one new file::

    <id>-<gen>.zst    zstd frames back to back, one per record, each with
                      the content size in its header (level 3)

A record line of such a record names the file as its ``seg``, the frame's
offset as ``off``, the *content* length as ``size`` (what clients see) and
the frame's length as ``"z"``.  ``<gen>`` grows with every compression of
the block, so a new packed file never has the name of one a ``.meta``
still refers to.

Reads decompress one record at a time and never more than asked for: a
small record is decompressed whole (:func:`read_record`); a large one is
read through a :class:`FrameReader`, whose ``read(offset, length)`` returns
at most ``length`` bytes of the record's content and reads the frame in
bounded pieces (a sequential reader, as the response producers are).

zstd is the one the house rules name, through the ``zstandard`` package.
"""

import errno
import hashlib
import os
import zlib

import zstandard

#: Suffix of a packed segment.
PACKED_SUFFIX = ".zst"
#: zstd compression level of packed segments (as upstream).
LEVEL = 3
#: Compressed bytes read from the file at a time while decompressing.
READ_SIZE = 128 << 10


def packed_name(block_id: int, gen: int) -> str:
    """:return: the name of generation ``gen`` of block ``block_id``'s packed segment."""
    return f"{block_id}-{gen}{PACKED_SUFFIX}"


def compressor():
    """:return: a ``ZstdCompressor`` for packed segments (content size in every frame)."""
    return zstandard.ZstdCompressor(level=LEVEL, write_content_size=True)


class _FrameSource:
    """The compressed bytes of one frame as a file-like ``read`` (for ``stream_reader``)."""

    __slots__ = ("_fd", "_offset", "_left")

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd, self._offset, self._left = fd, offset, size

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            size = self._left
        if not size:
            return b""
        data = os.pread(self._fd, min(size, READ_SIZE), self._offset)
        self._offset += len(data)
        self._left -= len(data)
        return data


def _corrupt(what: str) -> OSError:
    return OSError(errno.EIO, f"corrupt compressed record: {what}")


class FrameReader:
    """
    The content of one compressed record, in the place of a ``DataFile``:
    ranges over it start at ``0`` and end at the record's content size.
    ``send_to`` is not offered (``sendable`` is false): the bytes must be
    decompressed by us.

    :param fd: the packed segment's descriptor (owned by the ``ContentReader``).
    :param offset: where the frame starts.
    :param zsize: the frame's length.
    """

    __slots__ = ("_fd", "_offset", "_zsize", "_reader", "_position")

    sendable = False

    def __init__(self, fd: int, offset: int, zsize: int) -> None:
        self._fd, self._offset, self._zsize = fd, offset, zsize
        self._reader = None
        self._position = 0

    def _restart(self) -> None:
        source = _FrameSource(self._fd, self._offset, self._zsize)
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            source, read_size=READ_SIZE, read_across_frames=False)
        self._position = 0

    def read(self, offset: int, length: int) -> bytes:
        """
        :return: up to ``length`` content bytes from ``offset`` (fewer only at
            the end); reading on from where the last read ended costs no seek.
        :raises OSError: the frame cannot be read or does not decompress.
        """
        if self._reader is None or offset < self._position:
            self._restart()
        try:
            while self._position < offset:  # skip forward, bounded pieces
                skipped = self._reader.read(min(offset - self._position, READ_SIZE))
                if not skipped:
                    return b""
                self._position += len(skipped)
            data = self._reader.read(length)
            while data and len(data) < length:  # fewer bytes only at the end
                more = self._reader.read(length - len(data))
                if not more:
                    break
                data += more
        except zstandard.ZstdError as exc:
            raise _corrupt(str(exc)) from None
        self._position += len(data)
        return data

    def send_to(self, socket_fd: int, offset: int, count: int) -> int:
        """Not possible for compressed bytes: ``EOPNOTSUPP``."""
        raise OSError(errno.EOPNOTSUPP, "compressed record")


def read_record(path: str, offset: int, zsize: int, size: int) -> bytes:
    """
    The whole content of a compressed record (small records only).

    :raises OSError: the file is missing, short, or the frame is bad.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        frame = os.pread(fd, zsize, offset)
    finally:
        os.close(fd)
    if len(frame) != zsize:
        raise _corrupt("frame cut short")
    try:
        data = zstandard.ZstdDecompressor().decompress(frame, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise _corrupt(str(exc)) from None
    if len(data) != size:
        raise _corrupt(f"{len(data)} bytes instead of {size}")
    return data


def frame_crc(fd: int, offset: int, zsize: int, size: int, sha=None):
    """
    :param sha: a ``hashlib.sha256`` fed the decompressed bytes too, or ``None``.
    :return: ``zlib.crc32`` of the decompressed frame, or ``None`` if it
        does not decompress to exactly ``size`` bytes (recovery's check).
    """
    reader = FrameReader(fd, offset, zsize)
    crc, done = 0, 0
    try:
        while True:
            chunk = reader.read(done, READ_SIZE * 8)
            if not chunk:
                break
            crc, done = zlib.crc32(chunk, crc), done + len(chunk)
            if sha is not None:
                sha.update(chunk)
    except OSError:
        return None
    return crc if done == size else None


#: Source bytes read (and compressed or copied) at a time by a :class:`Packer`.
PIECE = 1 << 20


class Packer:
    """
    Writes a block's records into a new packed segment, in the thread pool,
    in bounded slices (:meth:`step`); storage's ``compress.py`` drives it
    and swaps the block's ``.meta`` afterwards.  Plain records are checked
    against their CRC (or, without one, their SHA-256) while compressed (a record failing it stops the
    packing: the block stays as it is); compressed ones are copied frame
    by frame.

    :param directory: the entry directory.
    :param name: the new packed segment's name (:func:`packed_name`).
    :param records: the block's finished records (from its ``.meta``), in
        timestamp order.
    :ivar packed: copies of the records done so far, pointing into the new file.
    :ivar done: every record is in the new file.
    """

    def __init__(self, directory: str, name: str, records: list) -> None:
        self.directory, self.name = directory, name
        self.path = os.path.join(directory, name)
        self.packed: list = []
        self.done = not records
        self._records = records
        self._sources: dict = {}
        self._fd = None
        self._offset = 0
        self._index = 0
        self._consumed = 0
        self._start = None
        self._crc = 0
        self._sha = None
        self._cobj = None
        self._cctx = compressor()

    def step(self, budget: int) -> None:
        """Pack records until about ``budget`` source bytes were handled (thread pool)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        records = self._records
        while self._index < len(records) and budget > 0:
            record = records[self._index]
            if self._start is None:
                self._start, self._consumed, self._crc = self._offset, 0, 0
                if record.zsize is None:
                    self._cobj = self._cctx.compressobj(size=record.size)
                    # no CRC-32 (a record with a SHA-256 may have none): its digest checks it
                    self._sha = hashlib.sha256() if record.crc is None and record.digest else None
            left = record.stored - self._consumed
            if left:
                piece = self._read(record, min(PIECE, left))
                self._consumed += len(piece)
                budget -= len(piece)
                if record.zsize is None:
                    if self._sha is None:
                        self._crc = zlib.crc32(piece, self._crc)
                    else:
                        self._sha.update(piece)
                    piece = self._cobj.compress(piece)
                self._write(piece)
                continue
            if record.zsize is None:
                if (record.crc is not None and self._crc != record.crc) or (
                        self._sha is not None and self._sha.digest() != record.digest):
                    raise OSError(errno.EIO, f"record {record.ts} fails its checksum")
                self._write(self._cobj.flush())
            copy = record.copy()
            copy.segment, copy.offset, copy.zsize = self.name, self._start, self._offset - self._start
            self.packed.append(copy)
            self._index += 1
            self._start = self._cobj = None
        self.done = self._index == len(records)

    def _read(self, record, size: int) -> bytes:
        fd = self._sources.get(record.segment)
        if fd is None:
            path = os.path.join(self.directory, record.segment)
            fd = self._sources[record.segment] = os.open(path, os.O_RDONLY)
        data = os.pread(fd, size, record.offset + self._consumed)
        if not data:
            raise OSError(errno.EIO, f"record {record.ts}: content cut short")
        return data

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, self._offset)
            view, self._offset = view[written:], self._offset + written

    def close(self) -> None:
        """Close every descriptor (idempotent); the file stays."""
        fds = list(self._sources.values()) + ([] if self._fd is None else [self._fd])
        self._sources, self._fd = {}, None
        for fd in fds:
            os.close(fd)
