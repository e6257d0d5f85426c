# -*- test-case-name: tests.unit.test_integrity_signing -*-
"""
The daemon's secret key files: one key, hex, under a versioned first line,
in a file of its own below the data directory (the query links' key,
``links/key.py``, and the integrity log's signing key,
``integrity/signing.py``), e.g.::

    reduct-twisted link key 1\\n<64 hex digits>\\n

:func:`parse` accepts exactly that; anything else is refused by the caller
(the daemon does not start, the file is left alone).  :func:`create`
writes a new one crash-safely: ``<name>.tmp`` (created with mode 0600,
truncated if a crash left one) written and flushed, renamed over the key
file, the directory flushed; after ``kill -9`` there is either no key file
or the whole one.  Both run once at start, before the reactor.
"""

import binascii
import os
from typing import Optional


def read(path: str) -> Optional[bytes]:
    """:return: the start of file ``path`` (enough for any key file), ``None`` if there is none."""
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except FileNotFoundError:
        return None


def parse(data: bytes, header: bytes, size: int) -> Optional[bytes]:
    """:return: the ``size``-byte key of a key file ``header + hex + "\\n"``, ``None`` if ``data`` is not one."""
    body = data[len(header):]
    if not data.startswith(header) or len(body) != 2 * size + 1 or not body.endswith(b"\n"):
        return None
    try:
        return binascii.unhexlify(body[:-1])
    except (binascii.Error, ValueError):
        return None


def create(path: str, tmp_path: str, header: bytes, key: bytes) -> None:
    """
    Write the key file ``path`` holding ``key`` (see the module docstring).

    :raises OSError: it cannot be written.
    """
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover of another umask or owner
        data = header + binascii.hexlify(key) + b"\n"
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp_path, path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
