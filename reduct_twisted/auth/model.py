# -*- test-case-name: tests.unit.test_tokens -*-
"""
Tokens as values: names, permissions (and how they match buckets), the
stored form of a token (a salted hash, never the secret) and the
``created_at`` timestamps.  No files and no Deferreds: the token store
(``tokens.py``) and the access policy (``policy.py``) build on these.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

from reduct_twisted.auth.terms import TokenTerms, parse_rfc3339
from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.settings import is_valid_name

_SALT_SIZE = 16

_NAME_ERROR = "Token name can contain only letters, digests and [-,_] symbols"

_PERMISSION_RE = re.compile(r"[*a-zA-Z0-9_\-]+")


def iso_timestamp(seconds: float) -> str:
    """RFC 3339 UTC with microseconds and a ``Z``, stable for a given value."""
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timestamp_seconds(text: str) -> float:
    """
    The inverse of :func:`iso_timestamp` (any RFC 3339 text with an offset).

    :raises ValueError: not such a text.
    """
    return parse_rfc3339(text)


def check_token_name(name: str) -> None:
    """
    :param name: a token name from a URL or the environment.
    :raises UnprocessableEntity: it is empty, over 255 characters or has a
        character other than letters, digits, ``-`` and ``_``.
    """
    if not is_valid_name(name):  # the bucket and entry name rule
        raise UnprocessableEntity(_NAME_ERROR)


def is_permission_item(item: str) -> bool:
    """
    Whether ``item`` may stand in a read/write list: a bucket name or a
    wildcard, or any text starting with ``$`` (API 1.19: ``$system``).
    """
    return item.startswith("$") or _PERMISSION_RE.fullmatch(item) is not None


class BucketMatcher:
    """
    Whether a bucket name is matched by a permission list (spec §1.5): an
    item ending in ``*`` matches every name starting with what precedes it
    (``*`` alone matches all), any other item matches only itself.  A name
    starting with ``$`` (``$system``) is matched by an exact item only
    (spec 1.20 §4.3).

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
        if bucket in self._exact:
            return True
        if bucket.startswith("$"):
            return False
        if self._all:
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


def _optional_number(item: dict, key: str, kind) -> Any:
    value = item.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise ValueError(f"token '{item.get('name')}' has a bad {key}")
    return value


def _digest(salt: bytes, value: bytes) -> bytes:
    return hmac.new(salt, value, hashlib.sha256).digest()


class StoredToken:
    """
    One token as the store keeps it: no secret, only a salted hash.

    :ivar name: the token name.
    :ivar created_at: the ``created_at`` string (creation or last rotation).
    :ivar created: the same in seconds since the epoch.
    :ivar permissions: a :class:`Permissions`.
    :ivar terms: a :class:`TokenTerms` (expiry, inactivity timeout, allowlist).
    :ivar limited: ``terms`` restrict anything (else every request skips them).
    :ivar provisioned: the token comes from the environment.
    :ivar free_form: its secret may be any text (it came from the
        environment), not ``<name>-<32 hex>``: every lookup must try it.
    :ivar public: the fixed part of the token object of answers (``value``
        is ``""``); shared, do not change it.  :meth:`describe` adds the
        computed fields.
    """

    __slots__ = (
        "name", "created_at", "created", "permissions", "terms", "limited", "provisioned", "free_form", "public",
        "_salt", "_hash",
    )

    def __init__(
        self,
        name: str,
        salt: bytes,
        digest: bytes,
        created_at: str,
        permissions: Permissions,
        provisioned: bool = False,
        terms: Optional[TokenTerms] = None,
        free_form: Optional[bool] = None,
    ) -> None:
        self.name = name
        self.free_form = provisioned if free_form is None else free_form
        self.created_at = created_at
        try:
            self.created = timestamp_seconds(created_at)
        except ValueError:
            self.created = 0.0
        self.permissions = permissions
        self.terms = terms if terms is not None else TokenTerms()
        self.limited = (
            self.terms.expires_at is not None or self.terms.ttl is not None or bool(self.terms.ip_allowlist)
        )
        self.provisioned = provisioned
        self._salt = salt
        self._hash = digest
        expires_at = self.terms.expires_at
        self.public = {
            "name": name,
            "value": "",
            "created_at": created_at,
            "permissions": permissions.to_json(),
            "is_provisioned": provisioned,
            "expires_at": iso_timestamp(expires_at) if expires_at is not None else None,
            "ttl": self.terms.ttl,
            "last_access": None,
            "ip_allowlist": list(self.terms.ip_allowlist.items),
            "is_expired": False,
        }

    @classmethod
    def new(
        cls, name: str, value: str, created_at: str, permissions: Permissions,
        provisioned: bool = False, terms: Optional[TokenTerms] = None,
    ) -> "StoredToken":
        """
        :return: a token for the secret ``value``, hashed with a fresh salt
            (a provisioned one: with :meth:`provisioned_salt`).
        """
        salt = cls.provisioned_salt(name, value) if provisioned else secrets.token_bytes(_SALT_SIZE)
        return cls(name, salt, _digest(salt, value.encode("utf-8")), created_at, permissions, provisioned, terms)

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
            secret, so that its :attr:`link_key` and stored hash stay the
            same from one start to the next while the secret does.
        """
        material = name.encode("utf-8") + b"\0" + value.encode("utf-8")
        return _digest(b"reduct-twisted provisioned token", material)[:_SALT_SIZE]

    def is_expired(self, now: float, last_access: Optional[float]) -> bool:
        """:meth:`TokenTerms.is_expired` for this token."""
        return self.terms.is_expired(now, self.created, last_access)

    def describe(self, now: float, last_access: Optional[float]) -> dict:
        """
        :param last_access: seconds since the epoch, or None.
        :return: the whole token object of spec 1.20 §4.1 (a new dict).
        """
        answer = copy.deepcopy(self.public)
        if last_access is not None:
            answer["last_access"] = iso_timestamp(last_access)
        answer["is_expired"] = self.is_expired(now, last_access)
        return answer

    def with_permissions(self, permissions: Permissions) -> "StoredToken":
        """:return: the same token with other permissions."""
        return StoredToken(
            self.name, self._salt, self._hash, self.created_at, permissions, self.provisioned, self.terms,
            self.free_form,
        )

    def with_provisioned(self, provisioned: bool) -> "StoredToken":
        """:return: the same token, marked provisioned or not."""
        return StoredToken(
            self.name, self._salt, self._hash, self.created_at, self.permissions, provisioned, self.terms,
            self.free_form,
        )

    def same_as(self, other: "StoredToken") -> bool:
        """Whether ``other`` stores the same secret, permissions, terms and mark (``created_at`` aside)."""
        return (
            self.name == other.name and self._salt == other._salt and self._hash == other._hash
            and self.permissions == other.permissions and self.terms == other.terms
            and self.provisioned == other.provisioned and self.free_form == other.free_form
        )

    def to_json(self) -> dict:
        """:return: the token's entry in the token file (format 2)."""
        return {
            "name": self.name,
            "salt": self._salt.hex(),
            "hash": self._hash.hex(),
            "created_at": self.created_at,
            "permissions": self.permissions.to_json(),
            "expires_at": self.terms.expires_at,
            "ttl": self.terms.ttl,
            "ip_allowlist": list(self.terms.ip_allowlist.items),
            "provisioned": self.provisioned,
            "free_form": self.free_form,
        }

    @classmethod
    def from_json(cls, item: Any) -> "StoredToken":
        """
        :param item: an entry of the token file (format 1 entries have no
            ``expires_at``, ``ttl``, ``ip_allowlist``, ``provisioned``,
            ``free_form``).
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
        expires_at = _optional_number(item, "expires_at", (int, float))
        ttl = _optional_number(item, "ttl", int)
        allowlist = item.get("ip_allowlist") or []
        if not isinstance(allowlist, list) or not all(isinstance(i, str) for i in allowlist):
            raise ValueError(f"token '{name}' has a bad ip_allowlist")
        provisioned = item.get("provisioned", False)
        free_form = item.get("free_form", provisioned)
        if not isinstance(provisioned, bool) or not isinstance(free_form, bool):
            raise ValueError(f"token '{name}' has a bad provisioned mark")
        terms = TokenTerms(expires_at, ttl, allowlist)
        return cls(name, salt, digest, created_at, permissions, provisioned, terms, free_form)
