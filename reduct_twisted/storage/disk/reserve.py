"""
The space reserve (issue #12): ``<data_path>/.reserve``, a file of a few
MiB whose blocks are allocated (``posix_fallocate``) while there is room,
so that removing records still works when the disk is full.

Removing records (and a label update that does not make a ``.meta`` file
longer) rewrites a block's ``.meta``: the new file is written beside the
old one and renamed over it (``blockfile.replace_meta``), so for a moment
both exist and the rewrite needs free space even though it shrinks the
block.  When that write fails with ``ENOSPC``/``EDQUOT`` the reserve is
released (truncated to zero bytes) and the rewrite is tried once more
(:func:`rewrite_meta`); afterwards the disk has at least the reserve's
size free again, as the old ``.meta`` is gone.  The reserve is allocated
again by :meth:`Reserve.ensure`: at open, by every quota round and before a
record is written: a write is refused (507) rather than let it take the
space of a missing reserve, so records never fill the reserve's place.

The file holds nothing: its name and size are its whole format, a crash
at any instant leaves it at some length between zero and its size, and
each open simply allocates it again.  A ``.meta`` file longer than the
reserve may still not be rewritten on a completely full disk (507); a
block all of whose records are removed goes whole, by renames only.
"""

import contextlib
import errno
import os

from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.disk.durability import NO_SPACE, storage_error

#: The reserve's file name below ``data_path`` (not a valid bucket name).
RESERVE_NAME = ".reserve"
#: The reserve size the daemon asks for.
DEFAULT_SIZE = 4 << 20
#: The reserve takes at most this fraction of the file system (1/64).
FS_SHARE = 64
#: The reserve is a whole number of these.
GRAIN = 4096


class Reserve:
    """
    The space reserve of one data directory (see the module docstring).

    :param data_path: the data directory.
    :param size: the bytes wanted; ``0`` disables the reserve.
    :ivar size: the bytes actually reserved, set by :meth:`open` (at most
        1/:data:`FS_SHARE` of the file system; ``0``: none).
    :ivar held: the reserve is allocated.
    """

    def __init__(self, data_path: str, size: int) -> None:
        self.path = os.path.join(data_path, RESERVE_NAME)
        self.wanted = size
        self.size = 0
        self.held = False

    def open(self) -> None:
        """Size the reserve for its file system and allocate it if there is room."""
        if self.wanted <= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        fs = os.statvfs(os.path.dirname(self.path))
        share = fs.f_frsize * fs.f_blocks // FS_SHARE
        self.size = min(self.wanted, share) // GRAIN * GRAIN
        self.ensure()

    def ensure(self) -> bool:
        """
        Allocate the reserve unless it is held.

        :return: whether it is held now (or disabled: ``True``); ``False``
            when the disk has no room for it.
        """
        if self.held or not self.size:
            return True
        fallocate = getattr(os, "posix_fallocate", None)
        if fallocate is None:  # not on this platform: do without
            self.size = 0
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            return self._failed(exc)
        try:
            if os.fstat(fd).st_size > self.size:
                os.ftruncate(fd, self.size)
            fallocate(fd, 0, self.size)
        except OSError as exc:
            # Give back what a failed allocation may have taken.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            return self._failed(exc)
        finally:
            os.close(fd)
        self.held = True
        return True

    def _failed(self, exc: OSError) -> bool:
        if exc.errno in NO_SPACE:
            return False
        # Not supported here (or not writable): do without a reserve.
        self.size = 0
        return True

    def release(self) -> bool:
        """
        Give the reserve's space back to the file system.

        :return: whether anything was released.
        """
        if not self.held:
            return False
        self.held = False
        try:
            os.truncate(self.path, 0)
        except OSError:
            return False
        return True


def no_space(doing: str):
    """:return: the 507 of an operation refused because the disk is full."""
    return storage_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), doing)


def rewrite_meta(context, block, records, doing: str) -> int:
    """
    Replace ``block``'s ``.meta`` by one holding ``records``
    (``blockfile.replace_meta``: old file or new one after a crash) and
    report it to the dirty set.  If the disk is full and the new file is
    not longer than the old one, the space reserve is released and the
    rewrite tried again.

    :param context: the engine-wide context (its ``reserve`` and ``dirty``).
    :param block: the block; its ``meta_length`` is the current length.
    :param records: the finished records the new file holds.
    :param doing: names the operation in the error message.
    :return: the new file's length.
    :raises ReductError: nothing was replaced (507 if the disk is full).
    """
    path = block.meta_path
    if context.logs is not None:  # the as-written labels reach the log first
        context.logs.before_rewrite(block.directory)
    try:
        length = blockfile.replace_meta(path, block.block_id, records)
    except OSError as exc:
        if not (exc.errno in NO_SPACE and _length(block, records) <= block.meta_length
                and context.reserve.release()):
            raise storage_error(exc, doing) from None
        try:
            length = blockfile.replace_meta(path, block.block_id, records)
        except OSError as again:
            raise storage_error(again, doing) from None
    context.dirty.created(path)
    return length


def _length(block, records) -> int:
    return len(blockfile.encode_meta(block.block_id, records))
