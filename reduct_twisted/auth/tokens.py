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

import copy
import hashlib
import json
import secrets
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from reduct_twisted.auth.model import Permissions, StoredToken, check_token_name, iso_timestamp
from reduct_twisted.errors import Conflict, InsufficientStorage, NotFound
from reduct_twisted.persist import remove_temporaries, write_atomically
# AUTH_FILE: the token file below ``data_path`` (named with the other
# names of the data directory in storage/disk/layout.py).
from reduct_twisted.storage.disk.layout import AUTH_FILE  # noqa: F401

#: Version of the token file layout.
AUTH_FORMAT = 1

log = Logger()


class TokenStoreError(Exception):
    """
    The token file cannot be read or makes no sense.  The message is one
    line naming the file; the daemon prints it and exits.
    """


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
        remove_temporaries(path)

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

    def link_key(self, name: str) -> Optional[bytes]:
        """:return: :attr:`StoredToken.link_key` of token ``name``, or ``None``."""
        token = self._tokens.get(name)
        return token.link_key if token is not None else None

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
        if isinstance(body, dict) and "permissions" in body:
            body = body["permissions"]  # the nested body of API 1.19+ (spec 1.20 §4.2)
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
