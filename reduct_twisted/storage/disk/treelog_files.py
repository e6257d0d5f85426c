# -*- test-case-name: tests.unit.test_treelog -*-
"""
The files of a tree log (``treelog.py``) and the rule that finds, after a
crash, how much of them is a consistent log.

A tree log directory holds::

    format    one JSON line: {"format": "reduct-twisted-treelog",
              "version": 1, "merkle": true|false}
    leaves    the leaves' bytes back to back (append-only)
    offsets   per leaf, the 8-byte big-endian offset in ``leaves`` where it
              ends (append-only; leaf n spans [end(n-1), end(n)), end(0)=0)
    hashes    with ``"merkle": true``: the 32-byte hashes of every complete
              aligned power-of-two subtree, in post-order (append-only;
              appending leaf n writes its leaf hash, then the hashes of the
              2, 4, ... leaf subtrees it completes: as many as n has
              trailing zero bits).  The first n leaves own exactly
              ``nodes(n) = 2n - popcount(n)`` hashes, and the subtree of
              2^k leaves ending with leaf e (1-based) is hash number
              ``nodes(e - 1) + k`` (0-based): one read.

``format`` is written as ``format.tmp`` and renamed (a crash leaves no
``format``, and then a directory whose data files are all missing or
empty is simply made anew).  A ``format`` of another format or of a newer
version is refused (:class:`TreeLogError`; :func:`refusal` says so without
opening anything).

**The recovery rule** (:func:`recover`): after ``kill -9`` each file holds
every ``write()`` that returned, and maybe part of the one in progress.
The log's size is the largest n such that the offsets file holds n whole
offsets, leaf n's end offset is within ``leaves``, ``hashes`` holds
``nodes(n)`` whole hashes (merkle logs), and leaf n agrees with them (its
leaf hash, and the subtree hashes it completed, recompute to what is
stored).  Each file is then cut back to exactly n leaves' worth; nothing
before leaf n is changed.
"""

import json
import os
import struct

from reduct_twisted.integrity.merkle import HASH_SIZE, leaf_hash, node_hash

FORMAT_FILE = "format"
LEAVES_FILE = "leaves"
OFFSETS_FILE = "offsets"
HASHES_FILE = "hashes"
FORMAT_NAME = "reduct-twisted-treelog"
FORMAT_VERSION = 1
#: Names a tree log directory may hold (``format.tmp``: a format being written).
NAMES = frozenset({FORMAT_FILE, FORMAT_FILE + ".tmp", LEAVES_FILE, OFFSETS_FILE, HASHES_FILE})
OFFSET = struct.Struct(">Q")


class TreeLogError(Exception):
    """
    A tree log that cannot be opened; ``str()`` is one line saying why (with
    the log's path, for the daemon's log).

    :ivar reason: the same without the path (for clients: an HTTP error
        names the entry, never a server path), e.g. ``it has format version
        99, newer than this build reads (1)``.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or "it is damaged"


def nodes(n: int) -> int:
    """How many hashes the first ``n`` leaves own in ``hashes``."""
    return 2 * n - bin(n).count("1")


def hash_index(start: int, size: int) -> int:
    """Position in ``hashes`` of the complete subtree of ``size`` leaves at 0-based ``start``."""
    return nodes(start + size - 1) + size.bit_length() - 1


def read_format(directory: str):
    """
    :return: the ``merkle`` flag of the format file, or ``None`` if there is
        none and the data files are missing or empty (a log to create).
    :raises TreeLogError: unreadable, foreign or newer, or no format beside data.
    """
    path = os.path.join(directory, FORMAT_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read(4096)
    except FileNotFoundError:
        for name in (LEAVES_FILE, OFFSETS_FILE, HASHES_FILE):
            try:
                if os.path.getsize(os.path.join(directory, name)):
                    raise TreeLogError(f"tree log {directory} holds data but no format file: refusing it",
                                       "it holds data but no format file")
            except FileNotFoundError:
                pass
        return None
    try:
        header = json.loads(raw)
        ok = isinstance(header, dict) and header.get("format") == FORMAT_NAME
    except ValueError:
        ok = False
    if not ok or not raw.endswith(b"\n"):
        raise TreeLogError(f"{path} is not a tree log format file: refusing it",
                           "its format file is damaged (not a tree log format line)")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TreeLogError(f"{path} has no valid version: refusing it",
                           "its format file is damaged (no valid version)")
    if version > FORMAT_VERSION:
        raise TreeLogError(f"tree log {directory} has format version {version}, newer than this "
                           f"build reads ({FORMAT_VERSION}): refusing it",
                           f"it has format version {version}, newer than this build reads "
                           f"({FORMAT_VERSION})")
    if not isinstance(header.get("merkle"), bool):
        raise TreeLogError(f"{path} has no valid merkle flag: refusing it",
                           "its format file is damaged (no valid merkle flag)")
    return header["merkle"]


def refusal(directory: str):
    """
    What :meth:`TreeLog.open <reduct_twisted.storage.disk.treelog.TreeLog.open>`
    would refuse before it opens or changes anything: the format file
    (:func:`read_format`) and, beside a format, a lost ``leaves`` or
    ``offsets`` file.  Reads at most the format file (and a few ``stat``).

    :return: the :class:`TreeLogError`, or None (no log yet, or one that opens).
    :raises OSError: the format file cannot be read.
    """
    try:
        if read_format(directory) is not None:
            for name in (LEAVES_FILE, OFFSETS_FILE):
                if not os.path.exists(os.path.join(directory, name)):
                    raise TreeLogError(f"tree log {directory} has lost its {name} file: refusing it",
                                       f"it has lost its {name} file")
    except TreeLogError as exc:
        return exc
    return None


def write_format(directory: str, merkle: bool) -> None:
    """Write ``format`` (temporary file, rename); the caller's sync policy flushes both."""
    path = os.path.join(directory, FORMAT_FILE)
    line = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "merkle": merkle},
                      separators=(",", ":")).encode() + b"\n"
    with open(path + ".tmp", "wb") as f:
        f.write(line)
    os.replace(path + ".tmp", path)


def pread_exact(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``; :class:`TreeLogError` if the file is shorter."""
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise TreeLogError(f"tree log file ended at {offset + len(data)}, expected {offset + size}")
        data += more
    return data


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def end_of(offsets_fd: int, n: int) -> int:
    """Where leaf ``n`` (1-based) ends in ``leaves``; 0 for ``n == 0``."""
    return OFFSET.unpack(pread_exact(offsets_fd, 8, 8 * (n - 1)))[0] if n else 0


def recover(leaves_fd: int, offsets_fd: int, hashes_fd, merkle: bool) -> int:
    """
    The size of the consistent log the files hold (the module docstring's
    rule), reading O(log n) places; the caller cuts the files to it.
    """
    leaves_size = os.fstat(leaves_fd).st_size
    n = os.fstat(offsets_fd).st_size // 8
    # Offsets only grow, so the whole ones within ``leaves`` are a prefix.
    if end_of(offsets_fd, n) > leaves_size:
        low, high = 0, n - 1  # end(low) fits, end(high + 1) does not
        while low < high:
            middle = (low + high + 1) // 2
            if end_of(offsets_fd, middle) <= leaves_size:
                low = middle
            else:
                high = middle - 1
        n = low
    if not merkle:
        return n
    whole = os.fstat(hashes_fd).st_size // HASH_SIZE
    while n and nodes(n) > whole:
        n -= 1
    while n and not _agrees(leaves_fd, offsets_fd, hashes_fd, n):
        n -= 1
    return n


def _agrees(leaves_fd: int, offsets_fd: int, hashes_fd: int, n: int) -> bool:
    """Leaf ``n`` hashes to its stored leaf hash, and so do the subtrees it completed."""
    start = end_of(offsets_fd, n - 1)
    leaf = pread_exact(leaves_fd, end_of(offsets_fd, n) - start, start)
    first = nodes(n - 1)
    count = nodes(n) - first
    stored = pread_exact(hashes_fd, count * HASH_SIZE, first * HASH_SIZE)
    expected = leaf_hash(leaf)
    for level in range(count):
        if stored[level * HASH_SIZE:(level + 1) * HASH_SIZE] != expected:
            return False
        if level + 1 < count:
            size = 1 << level  # the left sibling of the same size, complete before
            left = pread_exact(hashes_fd, HASH_SIZE, hash_index(n - 2 * size, size) * HASH_SIZE)
            expected = node_hash(left, expected)
    return True


class LogFiles(dict):
    """
    name -> descriptor of an open log's files.  After ``TreeLog.park``
    (``parked``) a file is opened again on first use, without the checks
    of ``TreeLog.open``: what the log keeps in memory still holds.
    """

    __slots__ = ("directory", "parked")

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory
        self.parked = False

    def __missing__(self, name: str) -> int:
        if not self.parked:
            raise KeyError(name)
        fd = self[name] = os.open(os.path.join(self.directory, name), os.O_RDWR | os.O_CLOEXEC)
        return fd
