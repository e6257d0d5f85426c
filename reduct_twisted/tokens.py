# -*- test-case-name: tests.unit.test_tokens -*-
"""
API tokens: creation, lookup, permissions and their file (spec §2.4, §3.14).

Secrets are never kept.  Each token holds a random 16-byte salt and
``HMAC-SHA256(salt, value)``; a presented value is checked with
:func:`hmac.compare_digest`.  The plain value exists only in the answer to
:meth:`TokenStore.create` (and in the caller's environment for provisioned
tokens): it is never written to disk, logged or shown by ``repr``.

Looking a value up must be cheap (every request does it), so:

* values made by :meth:`TokenStore.create` are ``<name>-<32 hex>``: only the
  token named by the part before the last ``-`` (a decoy if none, so timing
  shows no names) and the provisioned ones (few, any value) are checked;
* a value that matched is remembered under ``sha256(value)`` (never under
  the value itself) until the tokens next change.

Tokens made through the API are kept in ``<data_path>/.auth.json``::

    {"format": 1,
     "tokens": [{"name": "t", "salt": "<32 hex>", "hash": "<64 hex>",
                 "created_at": "2025-01-02T03:04:05.000000Z",
                 "permissions": {"full_access": false, "read": ["b*"], "write": []}},
                ...]}

Provisioned tokens (``init-token`` from ``RS_API_TOKEN``, ``RS_TOKEN_<ID>_*``)
come from the environment on every start and live in memory only.  One of
them hides a stored token of the same name, which stays in the file.

Every change builds the new file contents first and hands them to the
``persist`` callable; the change takes effect only if that call returns.  The
daemon passes :meth:`SnapshotWriter.write`, which writes in a worker thread
and returns a Deferred: :meth:`TokenStore.saved` waits for it (the HTTP
layer answers a change once it is on disk); its failure is logged.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from typing import Any, Callable, Iterable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from reduct_twisted.auth import iso_timestamp
from reduct_twisted.errors import Conflict, InsufficientStorage, NotFound, UnprocessableEntity
# AUTH_FILE: the token file below ``data_path`` (named with the other
# names of the data directory in storage/layout.py).
from reduct_twisted.storage.layout import AUTH_FILE  # noqa: F401
from reduct_twisted.storage.settings import is_valid_name

#: Version of the token file layout.
AUTH_FORMAT = 1

_SALT_SIZE = 16

_NAME_ERROR = "Token name can contain only letters, digests and [-,_] symbols"

_PERMISSION_RE = re.compile(r"[*a-zA-Z0-9_\-]+")

log = Logger()


class TokenStoreError(Exception):
    """
    The token file cannot be read or makes no sense.  The message is one
    line naming the file; the daemon prints it and exits.
    """


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
        """:return: a token for the secret ``value``, hashed with a fresh salt."""
        salt = secrets.token_bytes(_SALT_SIZE)
        return cls(name, salt, _digest(salt, value.encode("utf-8")), created_at, permissions, provisioned)

    def __repr__(self) -> str:
        return f"<StoredToken {self.name!r} provisioned={self.provisioned}>"

    def verify(self, value: bytes) -> bool:
        """:return: whether ``value`` (UTF-8) is this token's secret."""
        return hmac.compare_digest(_digest(self._salt, value), self._hash)

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


def write_atomically(path: str, data: bytes) -> None:
    """
    Replace the file ``path`` with ``data`` so that a crash leaves either
    the old or the new contents: write a temporary file (mode 0600) in the
    same directory, fsync it, rename it over ``path``, fsync the directory.
    Blocking; the daemon runs it in a worker thread.

    :raises OSError: writing failed (``path`` is then unchanged).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # The rename is durable only once the directory is.
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _remove_temporaries(path: str) -> None:
    """Delete what a crash in :func:`write_atomically` may have left."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = os.path.basename(path) + "."
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if name.startswith(prefix) and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))


class SnapshotWriter:
    """
    Writes successive contents of one file in a worker thread, one write at
    a time, skipping contents that a newer one replaces before its turn.

    :param path: the file, written with :func:`write_atomically`.
    :param run_in_thread: ``run_in_thread(f, *args) -> Deferred`` runs
        ``f(*args)`` away from the reactor (e.g. ``deferToThreadPool``).
    """

    def __init__(self, path: str, run_in_thread: Callable[..., defer.Deferred]) -> None:
        self.path = path
        self._run_in_thread = run_in_thread
        self._running = False
        self._pending: Optional[bytes] = None
        self._pending_waiters: list = []
        self._idle_waiters: list = []

    def __repr__(self) -> str:
        return f"<SnapshotWriter {self.path!r} running={self._running}>"

    def write(self, data: bytes) -> defer.Deferred:
        """
        Put ``data`` in the file, after the write in progress if any.

        :return: a Deferred that fires with ``None`` once ``data`` or newer
            contents are on disk, or fails as the write that was to store it.
        """
        waiter: defer.Deferred = defer.Deferred()
        if self._running:
            # Only the newest contents matter: replace what was waiting.
            self._pending = data
            self._pending_waiters.append(waiter)
        else:
            self._start(data, [waiter])
        return waiter

    def idle(self) -> defer.Deferred:
        """:return: a Deferred that fires once no write is running or waiting."""
        if not self._running:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _start(self, data: bytes, waiters: list) -> None:
        self._running = True
        done = defer.maybeDeferred(self._run_in_thread, write_atomically, self.path, data)
        done.addBoth(self._finished, waiters)

    def _finished(self, result: Any, waiters: list) -> None:
        # Still "running" while the waiters' callbacks run, so a write they
        # make waits for (and replaces) the pending one instead of racing it.
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)
        if self._pending_waiters:
            data, waiters = self._pending, self._pending_waiters
            self._pending, self._pending_waiters = None, []
            self._start(data, waiters)
            return
        self._running = False
        idle, self._idle_waiters = self._idle_waiters, []
        for waiter in idle:
            waiter.callback(None)


class _Save:
    """One write of the token file, as :meth:`TokenStore.saved` waits for it."""

    __slots__ = ("done", "error", "waiters")

    def __init__(self) -> None:
        self.done = False
        self.error: Optional[str] = None
        self.waiters: list = []

    def fire(self, waiter: defer.Deferred) -> None:
        if self.error is None:
            waiter.callback(None)
        else:
            waiter.errback(InsufficientStorage(self.error))


class TokenStore:
    """
    The tokens: made through the API (kept in a file) or provisioned from
    the environment (kept in memory).

    :param path: the token file (normally ``<data_path>/.auth.json``); read
        now, a missing file meaning no tokens.
    :param clock: provides ``seconds()`` for ``created_at``.
    :param persist: ``persist(data: bytes)`` stores the new file contents
        after each change; may return a Deferred.  By default the file is
        written synchronously with :func:`write_atomically`.
    :raises TokenStoreError: the file cannot be read or is corrupt.
    """

    def __init__(self, path: str, clock, persist: Optional[Callable[[bytes], Any]] = None) -> None:
        self.path = path
        self._clock = clock
        self._persist = persist if persist is not None else self._write_now
        self._stored: dict = self._load()
        self._provisioned: dict = {}
        self._tokens: dict = {}
        self._provisioned_tokens: tuple = ()
        self._verified: dict = {}
        self._decoy = StoredToken.new("", secrets.token_hex(16), "", Permissions())
        self._last_save: Optional[_Save] = None
        self._refresh()
        _remove_temporaries(path)

    def __repr__(self) -> str:
        return f"<TokenStore {self.path!r} tokens={sorted(self._tokens)}>"

    # -- reading -----------------------------------------------------------------

    def _load(self) -> dict:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise TokenStoreError(f"Cannot read token file '{self.path}': {e.strerror or e}") from None
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("format") != AUTH_FORMAT:
                raise ValueError(f"not a format {AUTH_FORMAT} token file")
            items = document.get("tokens")
            if not isinstance(items, list):
                raise ValueError("no token list")
            tokens = {}
            for item in items:
                token = StoredToken.from_json(item)
                if token.name in tokens:
                    raise ValueError(f"token '{token.name}' appears twice")
                tokens[token.name] = token
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError too
            reason = " ".join(str(e).split())
            raise TokenStoreError(f"Corrupt token file '{self.path}': {reason}") from None
        return tokens

    def find(self, name: Optional[str]) -> Optional[StoredToken]:
        """:return: the token called ``name`` (provisioned first), or ``None``."""
        return self._tokens.get(name)

    def authenticate(self, value: bytes) -> Optional[StoredToken]:
        """
        :param value: a presented secret (the bytes after ``Bearer ``).
        :return: the token whose secret it is, or ``None``.
        """
        key = hashlib.sha256(value).digest()
        token = self._verified.get(key)
        if token is None:
            token = self._match(value)
            if token is not None:
                self._verified[key] = token
        return token

    def _match(self, value: bytes) -> Optional[StoredToken]:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not text:
            return None
        # Same checks whether <name> exists or not (the decoy), none skipped,
        # so the time taken does not tell which names exist (#12).
        named = self._tokens.get(text.rpartition("-")[0], self._decoy)
        found = None
        for token in (named, *self._provisioned_tokens):
            if token.verify(value) and found is None:
                found = token
        return found if found is not self._decoy else None

    def get(self, name: str) -> dict:
        """
        :return: the token object of ``GET /tokens/<name>`` (a copy).
        :raises NotFound: there is no such token.
        """
        return copy.deepcopy(self._get(name).public)

    def _get(self, name: str) -> StoredToken:
        token = self._tokens.get(name)
        if token is None:
            raise NotFound(f"Token '{name}' doesn't exist")
        return token

    def list(self) -> list:
        """:return: every token object (copies), sorted by name."""
        return [copy.deepcopy(self._tokens[name].public) for name in sorted(self._tokens)]

    # -- changes -----------------------------------------------------------------

    def create(self, name: str, body: Any) -> dict:
        """
        Make a token with a new random secret and keep it.

        :param name: the token name.
        :param body: the decoded JSON body (see :meth:`Permissions.from_json`).
        :return: ``{"value": <secret>, "created_at": ...}``, the only time
            the secret is shown.
        :raises UnprocessableEntity: bad name or permissions.
        :raises Conflict: the name is taken.
        """
        check_token_name(name)
        if name in self._tokens:
            raise Conflict(f"Token '{name}' already exists")
        permissions = Permissions.from_json(body)
        value = f"{name}-{secrets.token_hex(16)}"
        token = StoredToken.new(name, value, iso_timestamp(self._clock.seconds()), permissions)
        self._commit({**self._stored, name: token})
        return {"value": value, "created_at": token.created_at}

    def remove(self, name: str) -> None:
        """
        :raises NotFound: there is no such token.
        :raises Conflict: the token is provisioned.
        """
        if self._get(name).provisioned:
            raise Conflict(f"Can't remove provisioned token '{name}'")
        self._commit({n: t for n, t in self._stored.items() if n != name})

    def forget_bucket(self, bucket: str) -> None:
        """A bucket was removed: drop it from every ``read`` and ``write`` list."""
        self._change_permissions(lambda p: p.without_bucket(bucket))

    def rename_bucket(self, old: str, new: str) -> None:
        """A bucket was renamed: replace ``old`` by ``new`` in every list."""
        self._change_permissions(lambda p: p.with_bucket_renamed(old, new))

    def _change_permissions(self, change: Callable[[Permissions], Permissions]) -> None:
        self._last_save = None
        def changed(tokens):
            result = {}
            for name, token in tokens.items():
                permissions = change(token.permissions)
                result[name] = token if permissions == token.permissions else token.with_permissions(permissions)
            return result

        stored = changed(self._stored)
        if any(stored[n] is not self._stored[n] for n in stored):
            self._commit(stored)
        provisioned = changed(self._provisioned)
        if any(provisioned[n] is not self._provisioned[n] for n in provisioned):
            self._provisioned = provisioned
            self._refresh()

    def provision(self, name: str, value: str, permissions: Optional[dict] = None) -> bool:
        """
        Install a token from the environment, in memory only, marked
        ``is_provisioned`` and hiding a stored token of the same name.

        :param name: the token name.
        :param value: its secret; an empty one means "no token".
        :param permissions: ``{"full_access": bool, "read": [...],
            "write": [...]}``, every key optional.
        :return: whether the token was installed.
        :raises UnprocessableEntity: bad name or permissions.
        """
        check_token_name(name)
        parsed = Permissions.from_json(permissions)
        if not value:
            log.warn("Token '{name}' is not provisioned: its value is empty", name=name)
            return False
        token = StoredToken.new(name, value, iso_timestamp(self._clock.seconds()), parsed, provisioned=True)
        self._provisioned = {**self._provisioned, name: token}
        self._refresh()
        log.info("Provisioned token '{name}'", name=name)
        return True

    def _commit(self, stored: dict) -> None:
        """Persist the new stored tokens, then use them."""
        self._last_save = None
        self._save(self._snapshot(stored))
        self._stored = stored
        self._refresh()

    def _refresh(self) -> None:
        self._tokens = {**self._stored, **self._provisioned}
        self._provisioned_tokens = tuple(self._provisioned.values())
        self._verified.clear()

    # -- writing -----------------------------------------------------------------

    @staticmethod
    def _snapshot(stored: dict) -> bytes:
        tokens = [stored[name].to_json() for name in sorted(stored)]
        return json.dumps({"format": AUTH_FORMAT, "tokens": tokens}, indent=1).encode() + b"\n"

    def _save(self, data: bytes) -> None:
        try:
            result = self._persist(data)
        except OSError as e:
            raise InsufficientStorage(f"Failed to save tokens: {e.strerror or e}") from None
        if isinstance(result, defer.Deferred):
            save = self._last_save = _Save()
            result.addBoth(self._save_finished, save)

    def _save_finished(self, result: Any, save: "_Save") -> None:
        if isinstance(result, Failure):
            log.failure("Could not write the token file {path}", result, path=self.path)
            reason = result.value.strerror if isinstance(result.value, OSError) else None
            save.error = f"Failed to save tokens: {reason or result.getErrorMessage()}"
        save.done = True
        waiters, save.waiters = save.waiters, []
        for waiter in waiters:
            save.fire(waiter)

    def saved(self) -> defer.Deferred:
        """
        :return: a Deferred that fires with ``None`` once the file holds the
            last change made (at once if it made no write or wrote
            synchronously), or fails with :class:`InsufficientStorage` if
            that write failed.
        """
        save = self._last_save
        waiter: defer.Deferred = defer.Deferred()
        if save is None:
            waiter.callback(None)
        elif save.done:
            save.fire(waiter)
        else:
            save.waiters.append(waiter)
        return waiter

    def _write_now(self, data: bytes) -> None:
        write_atomically(self.path, data)
