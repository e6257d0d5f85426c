# -*- test-case-name: tests.unit.test_links -*-
"""
The server's link signing key.

Either configured (``link_signing_key`` / ``RS_LINK_SIGNING_KEY``, so that
several daemons behind one name accept each other's links), or a random
key kept in the data directory, ``<data_path>/.link-key`` (a name of ours,
``storage/disk/layout.py``), created at the first start:

    reduct-twisted link key 1\\n<64 hex digits>\\n

The first line is the format and its version; a file that does not match
it exactly is refused (the daemon does not start, nothing is changed).
Creation is crash-safe: the key is written to ``.link-key.tmp`` (created
with mode 0600, truncated if a crash left one), flushed, renamed over
``.link-key`` and the directory flushed, so after ``kill -9`` there is
either no key (and a fresh one is made at the next start: links made
before were never handed out, since none can be made without a key) or
the whole one (``reduct_twisted/keyfile.py``, shared with the integrity
log's key).  It runs once at start, before the reactor.
"""

import os
from typing import Callable

from reduct_twisted import keyfile
# The key file below ``data_path`` and the file a new key is written to
# before it is renamed into place (named with the other names of the data
# directory in storage/disk/layout.py).
from reduct_twisted.storage.disk.layout import LINK_KEY_FILE as KEY_FILE
from reduct_twisted.storage.disk.layout import LINK_KEY_TMP_FILE as KEY_TMP_FILE

_HEADER = b"reduct-twisted link key 1\n"
#: Random bytes of a new key.
KEY_SIZE = 32


class LinkKeyError(Exception):
    """The key file is unreadable or not ours; ``str()`` is one line saying so."""


def load_or_create_key(data_path: str, random: Callable[[int], bytes] = os.urandom) -> bytes:
    """
    The data directory's signing key, made (see the module docstring and
    ``reduct_twisted/keyfile.py``) if there is none yet.

    :raises LinkKeyError: the file exists but is not a key file of ours.
    :raises OSError: it cannot be read or written.
    """
    path = os.path.join(data_path, KEY_FILE)
    data = keyfile.read(path)
    if data is not None:
        key = keyfile.parse(data, _HEADER, KEY_SIZE)
        if key is None:
            raise LinkKeyError(f"the link key file {path} is not valid: refusing to start "
                               f"(move it away to have a new key made; links made before stop working)")
        return key
    key = random(KEY_SIZE)
    keyfile.create(path, os.path.join(data_path, KEY_TMP_FILE), _HEADER, key)
    return key
