"""
The block index of an entry (issue #17): a cache of every block's summary,
so that opening an entry costs a ``stat`` per block instead of a parse of
every record line.

File ``<entry dir>/.blocks`` (:data:`INDEX_FILE`), two lines::

    {"format":"reduct-twisted-blocks","version":1,"rows":<n>,"length":<bytes>,"crc32":<crc>}
    [[<row>], [<row>], ...]

(``length`` and ``crc32``: those of line 2 without its newline.)

A row (:data:`ROW_FIELDS`, a JSON array) holds the validity key of one
block, the ``.meta`` file's ``st_size``, ``st_mtime_ns`` and ``st_ino`` and
the shared segment's size (``-1``: no shared segment), and everything
``Block.from_disk`` derives from the ``.meta``: counts, sizes, the
timestamp range, the shared tail, the entry-number summary, the
timestamps of the records with a private segment and the names of the
packed segments.  A row is only ever computed from the records of the
``.meta`` it is keyed by (never from a summary that also counts records
being written), so a row whose key matches the files describes them.

**It is a cache.**  A missing file, one that does not parse, whose
checksum fails, of another format or of a newer version is ignored (the
entry is opened by reading its ``.meta`` files, as without an index) and
the reason reported; a row whose key does not match the files, or whose
block has no ``.meta`` any more, is ignored alone.  The key changes
whenever the ``.meta`` does: an append grows it, a rewrite (removal,
relabel, compression, recovery) renames a new file (a new inode) over it,
a torn append is cut off at open (a new size).  A stale row would need a
``.meta`` of the same inode, size and modification time (in nanoseconds)
with other content, which only a hand edit that restores the timestamp
makes.  A row is used only if it names every file of its block found in
the directory (else the ``.meta`` is read: e.g. the private segment of an
upload cut by ``kill -9``), so a row never makes a file look unreferenced:
the index cannot get a file trashed.  A *tampered* row with a matching key
is believed otherwise, like a tampered ``.meta`` line: the statistics
follow it, and a file it names that the ``.meta`` does not is kept (where
reading the ``.meta`` would have trashed it as unreferenced).  Deleting ``.blocks`` is always safe: the next open reads every
``.meta`` and writes it again.

**Crash safety without flushing or renaming.**  The file is overwritten in
place (:func:`write_index`: one ``pwrite`` from offset 0, then cut to its
length) and never flushed.  A rename of a ``.tmp`` over it was measured at
1 ms per file on ext4 (``auto_da_alloc`` starts the write-back of a file
renamed over another; 10,000 entries: 10 s), an overwrite at 0.06 ms.
After a crash the file is the old one, the new one, or a mixture or a torn
write whose length or checksum does not match its header (then the whole
index is ignored: the entry's ``.meta`` files are read).  Any row that was
ever written describes the ``.meta`` its key names, so an old index is as
safe as a new one; the checksum only guards against rows cut in pieces.
A failed write removes the file.
Rows written while the daemon runs describe only state already flushed
when the sync policy flushes (``storage/indexing.py``), so after a power
loss a row cannot vouch for a ``.meta`` whose records' bytes were lost.
"""

import contextlib
import json
import os
import zlib

from reduct_twisted.storage.disk.layout import BLOCK_INDEX_FILE

#: The index file in an entry directory (a dot: never an entry or block name).
INDEX_FILE = BLOCK_INDEX_FILE
#: The ``format`` of its first line.
FORMAT_NAME = "reduct-twisted-blocks"
#: The version written and the newest read.
FORMAT_VERSION = 1

#: The fields of a row, in order.
ROW_FIELDS = (
    "block_id", "key_size", "key_mtime_ns", "key_ino", "key_shared",
    "meta_length", "record_count", "data_size", "meta_size", "first_ts", "latest_ts",
    "tail", "shared_live", "packed_count", "top_number", "unnumbered_number",
    "unnumbered_digest", "private_ts", "packed",
)
#: How many leading fields are integers (the rest: two lists).
INT_FIELDS = ROW_FIELDS.index("private_ts")
#: Where the summary fields begin (after the id and the key).
SUMMARY = ROW_FIELDS.index("meta_length")


class IndexIgnored(Exception):
    """The index file exists but cannot be used; ``str()`` says why."""


def key_of(meta_stat, shared_stat) -> tuple:
    """
    :param meta_stat: ``os.stat`` of the block's ``.meta``.
    :param shared_stat: that of its shared segment, or ``None`` if it has none.
    :return: the validity key of a row (its fields 1-4).
    """
    shared = -1 if shared_stat is None else shared_stat.st_size
    return (meta_stat.st_size, meta_stat.st_mtime_ns, meta_stat.st_ino, shared)


def valid_row(row) -> bool:
    """
    :return: whether ``row`` (from :func:`read_index`) has the shape of a row:
        non-negative integers (the shared size may be ``-1``), a list of
        integers and a list of strings.  Its values are not checked further.
    """
    if type(row) is not list or len(row) != len(ROW_FIELDS):
        return False
    for i in range(INT_FIELDS):
        value = row[i]
        if type(value) is not int or (value < 0 and not (i == 4 and value == -1)):
            return False
    private, packed = row[INT_FIELDS], row[INT_FIELDS + 1]
    return (type(private) is list and all(type(t) is int and t >= 0 for t in private)
            and type(packed) is list and all(type(n) is str for n in packed))


def encode_index(rows) -> bytes:
    """:return: the bytes of an index file holding ``rows`` (sequences of :data:`ROW_FIELDS`)."""
    rows = [list(row) for row in rows]
    body = json.dumps(rows, separators=(",", ":")).encode("ascii")
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "rows": len(rows),
              "length": len(body), "crc32": zlib.crc32(body)}
    return json.dumps(header, separators=(",", ":")).encode("ascii") + b"\n" + body + b"\n"


def decode_index(data: bytes) -> dict:
    """
    :return: the rows by block id (each a list; check it with :func:`valid_row`).
    :raises IndexIgnored: not an index of this version, or damaged.
    """
    head, sep, body = data.partition(b"\n")
    try:
        header = json.loads(head)
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise IndexIgnored("not a block index")
        version = header.get("version")
        if type(version) is not int or version < 1:
            raise IndexIgnored(f"bad version {version!r}")
        if version > FORMAT_VERSION:
            raise IndexIgnored(f"version {version} is newer than {FORMAT_VERSION}")
        if not sep or not body.endswith(b"\n"):
            raise IndexIgnored("torn")
        body = body[:-1]
        if len(body) != header.get("length") or zlib.crc32(body) != header.get("crc32"):
            raise IndexIgnored("checksum mismatch")
        rows = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise IndexIgnored(f"does not parse: {exc}") from None
    if type(rows) is not list or len(rows) != header.get("rows"):
        raise IndexIgnored("wrong number of rows")
    found = {}
    for row in rows:
        if type(row) is not list or not row or type(row[0]) is not int:
            raise IndexIgnored("bad row")
        found[row[0]] = row
    return found


def read_index(directory: str) -> dict:
    """
    Read ``<directory>/.blocks``.

    :return: the rows by block id; empty if there is no index.
    :raises IndexIgnored: it exists but cannot be used (unreadable, damaged, newer).
    """
    try:
        with open(os.path.join(directory, INDEX_FILE), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise IndexIgnored(f"unreadable: {exc.strerror or exc}") from None
    return decode_index(data)


def write_index(directory: str, rows) -> int:
    """
    Make ``<directory>/.blocks`` an index of ``rows``: overwritten in place,
    not flushed (see the module docstring).

    :return: the number of bytes written.
    :raises OSError: the write failed (the file was removed).
    """
    data = encode_index(rows)
    path = os.path.join(directory, INDEX_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            view, offset = memoryview(data), 0
            while offset < len(data):
                offset += os.pwrite(fd, view[offset:], offset)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return len(data)
