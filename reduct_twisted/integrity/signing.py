# -*- test-case-name: tests.unit.test_integrity_signing -*-
"""
The Ed25519 key that signs the integrity log's tree heads (issue #16).

Either configured (a path: the file is read, never created or changed), or
kept in the data directory, ``<data_path>/.log-key`` (listed with the
other names of the data directory in ``storage/disk/layout.py``), made at
the first start.  Both hold the 32-byte Ed25519 private key (RFC 8032
seed) in hex under a versioned first line::

    reduct-twisted log key 1\\n<64 hex digits>\\n

written like the links' key (``reduct_twisted/keyfile.py``: ``.log-key.tmp``
with mode 0600, flushed, renamed, directory flushed).  A file that does not
match exactly is refused with one line (:class:`LogKeyError`) and left
alone.

A signed tree head (contract 5) is the JSON object ``{"bucket", "entry",
"tree_size", "root_hash" (hex), "timestamp" (µs), "key_id", "signature"}``;
``signature`` is the base64 Ed25519 signature of the RFC 8785 canonical
JSON of the head without ``signature``; ``key_id`` the hex SHA-256 of the
32 raw public key bytes.
"""

import base64
import binascii
import hashlib
import os
from typing import Callable, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from reduct_twisted import keyfile
from reduct_twisted.integrity.jcs import canonical

#: The key file below ``data_path`` and its temporary file (the same names
#: as ``storage.disk.layout.LOG_KEY_FILE`` / ``LOG_KEY_TMP_FILE``).
KEY_FILE = ".log-key"
KEY_TMP_FILE = KEY_FILE + ".tmp"
_HEADER = b"reduct-twisted log key 1\n"
#: Bytes of a private key (the Ed25519 seed) and of a public key.
KEY_SIZE = 32
ALGORITHM = "ed25519"
#: The fields of a signed head, ``signature`` aside.
HEAD_FIELDS = ("bucket", "entry", "tree_size", "root_hash", "timestamp", "key_id")


class LogKeyError(Exception):
    """The key file is missing (configured), unreadable or not ours; ``str()`` is one line."""


def key_id_of(public_bytes: bytes) -> str:
    """The hex SHA-256 of a raw public key."""
    return hashlib.sha256(public_bytes).hexdigest()


class LogKey:
    """The signing key of tree heads."""

    def __init__(self, private_bytes: bytes) -> None:
        if len(private_bytes) != KEY_SIZE:
            raise ValueError("an Ed25519 private key is 32 bytes")
        self._private = Ed25519PrivateKey.from_private_bytes(private_bytes)
        self.public_bytes = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id_of(self.public_bytes)

    @classmethod
    def load_or_create(cls, data_path: str, configured_path: Optional[str] = None,
                       random: Callable[[int], bytes] = os.urandom) -> "LogKey":
        """
        The configured key, else the data directory's, made if there is none.

        :raises LogKeyError: the file is not a key file of ours, or the
            configured one cannot be read.
        :raises OSError: the data directory's file cannot be read or written.
        """
        if configured_path is not None:
            try:
                data = keyfile.read(configured_path)
            except OSError as exc:
                raise LogKeyError(f"the configured log key file {configured_path} cannot be read: "
                                  f"{exc.strerror or exc}") from None
            if data is None:
                raise LogKeyError(f"the configured log key file {configured_path} does not exist: "
                                  f"refusing to start")
            return cls(cls._parse(configured_path, data))
        path = os.path.join(data_path, KEY_FILE)
        data = keyfile.read(path)
        if data is not None:
            return cls(cls._parse(path, data))
        seed = random(KEY_SIZE)
        keyfile.create(path, os.path.join(data_path, KEY_TMP_FILE), _HEADER, seed)
        return cls(seed)

    @staticmethod
    def _parse(path: str, data: bytes) -> bytes:
        seed = keyfile.parse(data, _HEADER, KEY_SIZE)
        if seed is None:
            raise LogKeyError(f"the log key file {path} is not valid (expected "
                              f"{_HEADER[:-1].decode()!r} and 64 hex digits): refusing to start")
        return seed

    def describe(self) -> dict:
        """The ``/api/v1/log-key`` answer."""
        return {"algorithm": ALGORITHM, "public_key": base64.b64encode(self.public_bytes).decode(),
                "key_id": self.key_id}

    def sign_head(self, bucket: str, entry: str, tree_size: int, root_hash: bytes, timestamp_us: int) -> dict:
        """
        :return: the signed tree head of ``entry`` of ``bucket`` (module docstring).
        :raises ValueError: a field of the wrong type (``root_hash`` not 32 bytes...).
        """
        if not isinstance(root_hash, (bytes, bytearray)) or len(root_hash) != 32:
            raise ValueError("root_hash must be 32 bytes")
        for name, value in (("tree_size", tree_size), ("timestamp", timestamp_us)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int")
        if not isinstance(bucket, str) or not isinstance(entry, str):
            raise ValueError("bucket and entry must be strings")
        head = {"bucket": bucket, "entry": entry, "tree_size": tree_size,
                "root_hash": bytes(root_hash).hex(), "timestamp": timestamp_us, "key_id": self.key_id}
        head["signature"] = base64.b64encode(self._private.sign(canonical(head))).decode()
        return head


def verify_head(head, public_bytes: bytes) -> bool:
    """
    :return: whether ``head`` is a tree head with exactly the fields of
        :data:`HEAD_FIELDS` and ``signature``, signed by the key
        ``public_bytes`` (raw, 32 bytes), whose ``key_id`` it names.
        Never raises for a malformed head: it is simply not valid.
    """
    try:
        if not isinstance(head, dict) or set(head) != set(HEAD_FIELDS) | {"signature"}:
            return False
        if head["key_id"] != key_id_of(public_bytes):
            return False
        signature = base64.b64decode(head["signature"], validate=True)
        unsigned = {k: v for k, v in head.items() if k != "signature"}
        Ed25519PublicKey.from_public_bytes(public_bytes).verify(signature, canonical(unsigned))
        return True
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        return False
