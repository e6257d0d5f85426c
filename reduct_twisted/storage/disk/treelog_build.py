# -*- test-case-name: tests.unit.test_treelog -*-
"""
What appending leaves to a tree log writes (``treelog.py``), made by pure
functions so that the leaf worker (``leafjob.py``) can make it in another
process: the leaves' bytes and packed ends, and the RFC 9162 tree hashes
they add in post order (the file layout is in ``treelog_files.py``).
"""

import hashlib
import struct
from itertools import accumulate

__all__ = ["build", "hash_leaves"]


def hash_leaves(leaves, n: int, peaks: list, out: list) -> None:
    """
    Append to ``out`` the post-order hashes of ``leaves`` added after leaf
    ``n``; ``peaks`` (the roots of the complete subtrees the first ``n``
    leaves split into, largest first) is updated in place.
    """
    sha256 = hashlib.sha256
    append = out.append
    for h in [sha256(b"\x00" + leaf).digest() for leaf in leaves]:
        append(h)
        n += 1
        m = n
        while not m & 1:
            h = sha256(b"\x01" + peaks.pop() + h).digest()
            append(h)
            m >>= 1
        peaks.append(h)


def build(leaves: list, n: int, peaks, leaves_end: int) -> tuple:
    """
    What appending ``leaves`` after leaf ``n`` (whose bytes end at
    ``leaves_end`` in the leaves file) writes (:meth:`TreeLog.append_built`):
    ``(joined, offsets, hashes, peaks)``, ``offsets`` the leaves' packed
    ends; ``peaks`` None: no hashes (a log kept without them).  Pure: it may
    run in another process.
    """
    out: list = []
    if peaks is not None:
        peaks = list(peaks)
        hash_leaves(leaves, n, peaks, out)
    ends = list(accumulate(map(len, leaves), initial=leaves_end))[1:]
    return b"".join(leaves), struct.pack(">%dQ" % len(ends), *ends), b"".join(out), peaks
