# -*- test-case-name: tests.unit.test_tokens -*-
"""
Tokens as values: names, permissions (and how they match buckets), the
stored form of a token (a salted hash, never the secret) and the
``created_at`` timestamps.  No files and no Deferreds: the token store
(``tokens.py``) and the access policy (``policy.py``) build on these.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timezone
from typing import Any, Iterable

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.settings import is_valid_name

_SALT_SIZE = 16

_NAME_ERROR = "Token name can contain only letters, digests and [-,_] symbols"

_PERMISSION_RE = re.compile(r"[*a-zA-Z0-9_\-]+")


def iso_timestamp(seconds: float) -> str:
    """RFC 3339 UTC with microseconds and a ``Z``, stable for a given value."""
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_token_name(name: str) -> None:
    """
    :param name: a token name from a URL or the environment.
    :raises UnprocessableEntity: it is empty, over 255 characters or has a
        character other than letters, digits, ``-`` and ``_``.
    """
    if not is_valid_name(name):  # the bucket and entry name rule
        raise UnprocessableEntity(_NAME_ERROR)


def is_permission_item(item: str) -> bool:
    """Whether ``item`` may stand in a read/write list: a bucket name or a wildcard."""
    return _PERMISSION_RE.fullmatch(item) is not None


class BucketMatcher:
    """
    Whether a bucket name is matched by a permission list (spec §1.5): an
    item ending in ``*`` matches every name starting with what precedes it
    (``*`` alone matches all), any other item matches only itself.

    :param items: the permission list.
    """

    __slots__ = ("_all", "_exact", "_prefixes")

    def __init__(self, items: Iterable[str]) -> None:
        exact = set()
        prefixes = []
        for item in items:
            if item.endswith("*"):
                prefixes.append(item[:-1])
            else:
                exact.add(item)
        self._all = "" in prefixes
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __call__(self, bucket: str) -> bool:
        """:return: whether ``bucket`` is matched."""
        if self._all or bucket in self._exact:
            return True
        for prefix in self._prefixes:
            if bucket.startswith(prefix):
                return True
        return False


class Permissions:
    """
    What a token may do, checked and ready for matching.

    :ivar full_access: everything is allowed.
    :ivar read: the ``read`` list, as given.
    :ivar write: the ``write`` list, as given.
    :ivar may_read: a :class:`BucketMatcher` over ``read``.
    :ivar may_write: a :class:`BucketMatcher` over ``write``.
    """

    __slots__ = ("full_access", "read", "write", "may_read", "may_write")

    def __init__(self, full_access: bool = False, read: Iterable[str] = (), write: Iterable[str] = ()) -> None:
        self.full_access = bool(full_access)
        self.read = tuple(read)
        self.write = tuple(write)
        self.may_read = BucketMatcher(self.read)
        self.may_write = BucketMatcher(self.write)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Permissions):
            return NotImplemented
        return (self.full_access, self.read, self.write) == (other.full_access, other.read, other.write)

    def __repr__(self) -> str:
        return f"Permissions(full_access={self.full_access}, read={list(self.read)}, write={list(self.write)})"

    def to_json(self) -> dict:
        """:return: the ``permissions`` object of token answers."""
        return {"full_access": self.full_access, "read": list(self.read), "write": list(self.write)}

    def without_bucket(self, bucket: str) -> "Permissions":
        """:return: these permissions with the items equal to ``bucket`` dropped."""
        return Permissions(
            self.full_access,
            [i for i in self.read if i != bucket],
            [i for i in self.write if i != bucket],
        )

    def with_bucket_renamed(self, old: str, new: str) -> "Permissions":
        """:return: these permissions with items equal to ``old`` replaced by ``new``."""

        def rename(items):
            return list(dict.fromkeys(new if i == old else i for i in items))

        return Permissions(self.full_access, rename(self.read), rename(self.write))

    @classmethod
    def from_json(cls, body: Any) -> "Permissions":
        """
        Check a permissions object: the body of ``POST /tokens/<name>``.

        :param body: decoded JSON: ``None`` or an object whose optional
            fields are ``full_access`` (bool), ``read`` and ``write`` (lists
            of bucket names or wildcards); ``null`` means "not given",
            unknown fields are ignored.
        :raises UnprocessableEntity: a field has the wrong type or an item
            is not a bucket name or wildcard.
        """
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise UnprocessableEntity("Token permissions must be a JSON object")
        full_access = body.get("full_access")
        if full_access is None:
            full_access = False
        elif not isinstance(full_access, bool):
            raise UnprocessableEntity("'full_access' must be a boolean")
        return cls(full_access, _permission_list(body, "read"), _permission_list(body, "write"))


def _permission_list(body: dict, field: str) -> list:
    items = body.get(field)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise UnprocessableEntity(f"'{field}' must be a list of bucket names")
    for item in items:
        if not is_permission_item(item):
            raise UnprocessableEntity(
                f"Permission can contain only bucket names or wildcard '*', got '{item}'"
            )
    return items


def _digest(salt: bytes, value: bytes) -> bytes:
    return hmac.new(salt, value, hashlib.sha256).digest()


class StoredToken:
    """
    One token as the store keeps it: no secret, only a salted hash.

    :ivar name: the token name.
    :ivar created_at: the ``created_at`` string, fixed at creation.
    :ivar permissions: a :class:`Permissions`.
    :ivar provisioned: the token comes from the environment.
    :ivar public: the token object of answers (``value`` is ``""``); shared,
        do not change it.
    """

    __slots__ = ("name", "created_at", "permissions", "provisioned", "public", "_salt", "_hash")

    def __init__(
        self,
        name: str,
        salt: bytes,
        digest: bytes,
        created_at: str,
        permissions: Permissions,
        provisioned: bool = False,
    ) -> None:
        self.name = name
        self.created_at = created_at
        self.permissions = permissions
        self.provisioned = provisioned
        self._salt = salt
        self._hash = digest
        self.public = {
            "name": name,
            "value": "",
            "created_at": created_at,
            "permissions": permissions.to_json(),
            "is_provisioned": provisioned,
        }

    @classmethod
    def new(cls, name: str, value: str, created_at: str, permissions: Permissions, provisioned: bool = False):
        """
        :return: a token for the secret ``value``, hashed with a fresh salt
            (a provisioned one: with :meth:`provisioned_salt`).
        """
        salt = cls.provisioned_salt(name, value) if provisioned else secrets.token_bytes(_SALT_SIZE)
        return cls(name, salt, _digest(salt, value.encode("utf-8")), created_at, permissions, provisioned)

    def __repr__(self) -> str:
        return f"<StoredToken {self.name!r} provisioned={self.provisioned}>"

    def verify(self, value: bytes) -> bool:
        """:return: whether ``value`` (UTF-8) is this token's secret."""
        return hmac.compare_digest(_digest(self._salt, value), self._hash)

    @property
    def link_key(self) -> bytes:
        """
        The salt and hash: they change when the secret does (rotation,
        re-creation), never show the secret, and are stable across restarts
        (stored tokens keep them in the file; provisioned ones are salted
        deterministically, see :meth:`provisioned_salt`).
        """
        return self._salt + self._hash

    @staticmethod
    def provisioned_salt(name: str, value: str) -> bytes:
        """
        :return: the salt of a provisioned token: derived from its name and
            secret so that its :attr:`link_key` survives a restart (it lives
            in memory only, rebuilt from the environment every start).
        """
        material = name.encode("utf-8") + b"\0" + value.encode("utf-8")
        return _digest(b"reduct-twisted provisioned token", material)[:_SALT_SIZE]

    def with_permissions(self, permissions: Permissions) -> "StoredToken":
        """:return: the same token with other permissions."""
        return StoredToken(self.name, self._salt, self._hash, self.created_at, permissions, self.provisioned)

    def to_json(self) -> dict:
        """:return: the token's entry in the token file."""
        return {
            "name": self.name,
            "salt": self._salt.hex(),
            "hash": self._hash.hex(),
            "created_at": self.created_at,
            "permissions": self.permissions.to_json(),
        }

    @classmethod
    def from_json(cls, item: Any) -> "StoredToken":
        """
        :param item: an entry of the token file.
        :raises ValueError: it is malformed.
        """
        if not isinstance(item, dict):
            raise ValueError("a token is not an object")
        name = item.get("name")
        if not is_valid_name(name):
            raise ValueError(f"bad token name {name!r}")
        try:
            salt = bytes.fromhex(item["salt"])
            digest = bytes.fromhex(item["hash"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"token '{name}' has no valid salt and hash") from None
        if len(salt) != _SALT_SIZE or len(digest) != hashlib.sha256().digest_size:
            raise ValueError(f"token '{name}' has no valid salt and hash")
        created_at = item.get("created_at")
        if not isinstance(created_at, str):
            raise ValueError(f"token '{name}' has no created_at")
        try:
            permissions = Permissions.from_json(item.get("permissions"))
        except UnprocessableEntity as e:
            raise ValueError(f"token '{name}': {e.message}") from None
        return cls(name, salt, digest, created_at, permissions)
