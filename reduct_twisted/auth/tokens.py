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

Tokens are kept in ``<data_path>/.auth.json``::

    {"format": 2,
     "tokens": [{"name": "t", "salt": "<32 hex>", "hash": "<64 hex>",
                 "created_at": "2025-01-02T03:04:05.000000Z",
                 "permissions": {"full_access": false, "read": ["b*"], "write": []},
                 "expires_at": 1767225600.0, "ttl": 3600,
                 "ip_allowlist": ["10.0.0.0/8"], "provisioned": false,
                 "free_form": false},
                ...]}

(``expires_at`` in seconds since the epoch or ``null``, ``ttl`` in seconds
or ``null``, ``free_form``: the secret came from the environment, so it is
not ``<name>-<hex>`` and every lookup tries it.)  A format 1 file (the same
without the last five keys, from before API 1.19) is read as it is and written as format 2 at the first
change.

Provisioned tokens (``init-token`` from ``RS_API_TOKEN``, ``RS_TOKEN_<ID>_*``)
come from the environment on every start.  ``init-token`` lives in memory
only; the ``RS_TOKEN_*`` ones are also written to the file, marked
``provisioned``, over a stored token of the same name (as upstream), so
that a token dropped from the configuration stays, as an ordinary token, at
the next start (:meth:`TokenStore.finish_provisioning`).

Every change builds the new file contents first and hands them to the
``persist`` callable; the change takes effect only if that call returns.  The
daemon passes :meth:`SnapshotWriter.write`, which writes in a worker thread
and returns a Deferred: :meth:`TokenStore.saved` waits for it (the HTTP
layer answers a change once it is on disk); its failure is logged.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from reduct_twisted.auth.model import Permissions, StoredToken, check_token_name, iso_timestamp
from reduct_twisted.auth.terms import CreateRequest, TokenTerms
from reduct_twisted.errors import Conflict, InsufficientStorage, NotFound, UnprocessableEntity
from reduct_twisted.persist import remove_temporaries, write_atomically
# AUTH_FILE: the token file below ``data_path`` (named with the other
# names of the data directory in storage/disk/layout.py).
from reduct_twisted.storage.disk.layout import AUTH_FILE  # noqa: F401

#: Version of the token file layout written; :data:`READ_FORMATS` are read.
AUTH_FORMAT = 2
READ_FORMATS = (1, 2)

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
    :param clock: provides ``seconds()`` for ``created_at`` and expiry.
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
        #: ``last_access(name)``: the token's last access in microseconds,
        #: or None (``ISystemEvents.last_access``); the policy sets it.
        self.last_access: Callable[[str], Optional[int]] = lambda name: None
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
            version = document.get("format") if isinstance(document, dict) else None
            if type(version) is not int or version not in READ_FORMATS:
                raise ValueError(f"not a format {' or '.join(map(str, READ_FORMATS))} token file")
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

    def last_access_seconds(self, name: str) -> Optional[float]:
        """:return: the last access of token ``name`` in seconds, or None."""
        micros = self.last_access(name)
        return micros / 1_000_000 if micros is not None else None

    def is_expired(self, token: StoredToken) -> bool:
        """Whether ``token`` has expired now (spec 1.20 §4.3 rule 1)."""
        terms = token.terms
        if terms.expires_at is None and terms.ttl is None:
            return False
        last = self.last_access_seconds(token.name) if terms.ttl is not None else None
        return token.is_expired(self._clock.seconds(), last)

    def describe(self, token: StoredToken) -> dict:
        """:return: the whole token object of ``token`` (spec 1.20 §4.1), a new dict."""
        return token.describe(self._clock.seconds(), self.last_access_seconds(token.name))

    def get(self, name: str) -> dict:
        """
        :return: the token object of ``GET /tokens/<name>`` (a new dict).
        :raises NotFound: there is no such token.
        """
        return self.describe(self._get(name))

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
        """:return: every token object (new dicts), sorted by name."""
        return [self.describe(self._tokens[name]) for name in sorted(self._tokens)]

    # -- changes -----------------------------------------------------------------

    def create(self, name: str, body: Any) -> dict:
        """
        Make a token with a new random secret and keep it.

        :param name: the token name.
        :param body: a :class:`CreateRequest`, or the decoded JSON body
            (parsed with :meth:`CreateRequest.parse`).
        :return: ``{"value": <secret>, "created_at": ...}``, the only time
            the secret is shown.
        :raises UnprocessableEntity: bad body, name, permissions, ``ttl``
            or ``expires_at`` (in this order after the name is checked
            free, spec 1.20 §4.2).
        :raises Conflict: the name is taken.
        """
        request = body if isinstance(body, CreateRequest) else CreateRequest.parse(body)
        check_token_name(name)
        if name in self._tokens:
            raise Conflict(f"Token '{name}' already exists")
        permissions = Permissions.from_json(request.permissions)
        now = self._clock.seconds()
        request.check(now)
        value = f"{name}-{secrets.token_hex(16)}"
        token = StoredToken.new(name, value, iso_timestamp(now), permissions, terms=request.terms())
        self._commit({**self._stored, name: token})
        return {"value": value, "created_at": token.created_at}

    def rotate(self, name: str, protected: tuple = ()) -> dict:
        """
        Give token ``name`` a new random secret (spec 1.20 §4.5): the old
        one stops working at once, ``created_at`` becomes now (restarting
        the inactivity clock).

        :param protected: names that cannot be rotated (``init-token``).
        :return: ``{"value": <new secret>, "created_at": ...}``.
        :raises Conflict: ``name`` is protected or provisioned.
        :raises NotFound: there is no such token.
        :raises UnprocessableEntity: its ``expires_at`` has passed.
        """
        if name in protected:
            raise Conflict("Can't rotate init token")
        token = self._get(name)
        if token.provisioned:
            raise Conflict(f"Can't rotate provisioned token '{name}'")
        now = self._clock.seconds()
        if token.terms.expires_at is not None and now >= token.terms.expires_at:
            raise UnprocessableEntity(f"Can't rotate expired token '{name}'")
        value = f"{name}-{secrets.token_hex(16)}"
        rotated = StoredToken.new(name, value, iso_timestamp(now), token.permissions, terms=token.terms)
        self._commit({**self._stored, name: rotated})
        return {"value": value, "created_at": rotated.created_at}

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

    def provision(
        self, name: str, value: str, permissions: Optional[dict] = None, expires_at: Optional[float] = None,
    ) -> bool:
        """
        Install a token from the environment, marked ``is_provisioned`` and
        hiding a stored token of the same name (until
        :meth:`finish_provisioning` writes it over that one).

        :param name: the token name.
        :param value: its secret; an empty one means "no token".
        :param permissions: ``{"full_access": bool, "read": [...],
            "write": [...]}``, every key optional.
        :param expires_at: ``RS_TOKEN_<ID>_EXPIRES_AT`` in seconds, or None.
        :return: whether the token was installed.
        :raises UnprocessableEntity: bad name or permissions.
        """
        check_token_name(name)
        parsed = Permissions.from_json(permissions)
        if not value:
            log.warn("Token '{name}' is not provisioned: its value is empty", name=name)
            return False
        token = StoredToken.new(
            name, value, iso_timestamp(self._clock.seconds()), parsed, provisioned=True,
            terms=TokenTerms(expires_at=expires_at),
        )
        self._provisioned = {**self._provisioned, name: token}
        self._refresh()
        log.info("Provisioned token '{name}'", name=name)
        return True

    def finish_provisioning(self, memory_only: tuple = ()) -> None:
        """
        After every :meth:`provision` of a start: write the provisioned
        tokens (but ``memory_only``) to the file, over stored tokens of the
        same name, and unmark the stored tokens marked provisioned that the
        configuration no longer has: they stay as ordinary tokens (spec
        1.20 §4.7).  Writes only if that changes the file.
        """
        stored = dict(self._stored)
        for name, token in stored.items():
            if token.provisioned and name not in self._provisioned:
                stored[name] = token.with_provisioned(False)
                log.info("Token '{name}' is no longer provisioned", name=name)
        for name, token in self._provisioned.items():
            if name not in memory_only:
                stored[name] = token
        changed = set(stored) != set(self._stored) or any(
            not stored[n].same_as(self._stored[n]) for n in stored
        )
        if changed:
            self._commit(stored)

    def _commit(self, stored: dict) -> None:
        """Persist the new stored tokens, then use them."""
        self._last_save = None
        self._save(self._snapshot(stored))
        self._stored = stored
        self._refresh()

    def _refresh(self) -> None:
        self._tokens = {**self._stored, **self._provisioned}
        # Every token whose secret may be any text (provisioned now or before).
        self._provisioned_tokens = tuple(t for t in self._tokens.values() if t.free_form)
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
