"""
Giving the space of dead bytes back to the filesystem.

A small record aborted while a later record of the same block was already
allocated leaves a gap in the block's shared segment: offsets of the records
after it must not move.  ``punch_hole`` frees the gap's disk blocks in place
(``fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)``): the file keeps
its size and every offset stays valid, but whole pages inside the gap no
longer use disk space.  Filesystems without hole punching keep the bytes
until the block is removed; nothing else depends on it.
"""

import ctypes
import ctypes.util

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

_fallocate = None


def _load():
    global _fallocate
    if _fallocate is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            function = libc.fallocate
            function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            function.restype = ctypes.c_int
            _fallocate = function
        except (OSError, AttributeError):
            _fallocate = False
    return _fallocate


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """
    Free the disk space of ``length`` bytes at ``offset`` of ``fd``, keeping
    the file size; the range reads back as zeros.

    :return: whether the filesystem did it.
    """
    fallocate = _load()
    if not fallocate or length <= 0:
        return False
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    return fallocate(fd, mode, offset, length) == 0
