# -*- test-case-name: tests.unit.test_auth -*-
"""
Who may do what: the single place every route asks.

Policies follow ReductStore (spec §1.5).  Two classes answer the same
questions, and the HTTP layer only uses what they have in common:

* ``OpenAccess`` when authentication is disabled (no ``RS_API_TOKEN``):
  every check passes, the caller is the ``AUTHENTICATION-DISABLED``
  pseudo-token and the token API answers as spec §2.4.6 says;
* ``TokenAccess`` when it is enabled: bearer tokens from a
  :class:`reduct_twisted.auth.tokens.TokenStore`.

The common interface (``interfaces.IAccessPolicy``): ``enabled``,
``check(authorization, policy, bucket, request)``, ``describe(token)``,
``may_read(token, bucket)``, ``list_tokens()``, ``create_token(name, body)``,
``get_token(name)``, ``rotate_token(name)``, ``remove_token(name)``,
``link_key(name)``, ``forget_bucket(bucket)``, ``rename_bucket(old, new)``
and ``saved()`` (a Deferred: the last change is on disk).

Nothing here knows about HTTP: the routes hand over the ``Authorization``
header value and the request as an opaque object, on which ``check`` sets
``reduct_token_name`` (issue #15 contract 2) and whose client address it
asks of the ``client_ip`` callable it was given (``http/clientip.py``), only
for a token with an IP allowlist.
"""

from __future__ import annotations

import enum
import os
from typing import Any, Callable, Iterable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from reduct_twisted.auth.model import iso_timestamp
from reduct_twisted.auth.terms import EXPIRED
from reduct_twisted.auth.tokens import AUTH_FILE, TokenStore
from reduct_twisted.errors import BadRequest, Forbidden, ReductError, Unauthorized
from reduct_twisted.interfaces import IAccessPolicy
from reduct_twisted.persist import SnapshotWriter

#: The name of the full-access token whose value is ``RS_API_TOKEN``.
INIT_TOKEN_NAME = "init-token"

_BEARER = b"Bearer "
_NO_BEARER = "No bearer token in request header"
_INVALID = "Invalid token"
_DISABLED = "Authentication is disabled"
_OPEN_LINK_KEY = b"AUTHENTICATION-DISABLED"
#: The caller's name when authentication is disabled.
ANONYMOUS_NAME = "AUTHENTICATION-DISABLED"


def _known_client_ip(request) -> Optional[str]:
    """The default ``client_ip``: what the HTTP layer resolved, if it did."""
    return getattr(request, "reduct_client_ip", None)


log = Logger()


class Policy(enum.Enum):
    """What an operation requires of the caller's token."""

    ANONYMOUS = "anonymous"
    AUTHENTICATED = "authenticated"
    FULL_ACCESS = "full_access"
    READ = "read"
    WRITE = "write"


@implementer(IAccessPolicy)
class OpenAccess:
    """
    Authorization with authentication disabled: every check passes.

    :param clock: provides ``seconds()``; ``/me`` reports "now" as upstream
        1.7+ does.
    """

    enabled = False

    def __init__(self, clock) -> None:
        self._clock = clock
        self._token: dict = {}
        self._token_second = -1

    def check(
        self, authorization: Optional[bytes], policy: Policy, bucket: Optional[str] = None,
        request: Any = None,
    ) -> dict:
        """
        Return the caller's token info, or raise ``Unauthorized`` /
        ``Forbidden``.  With authentication off this always succeeds, and
        the caller is ``AUTHENTICATION-DISABLED``.
        """
        if request is not None:
            request.reduct_token_name = ANONYMOUS_NAME
        return self.anonymous_token()

    def describe(self, token: dict) -> dict:
        """:return: ``token`` (the pseudo-token is built whole)."""
        return token

    def anonymous_token(self) -> dict:
        """
        The ``AUTHENTICATION-DISABLED`` pseudo-token, created "now" (it is
        built once per second: every request asks for it).
        """
        second = int(self._clock.seconds())
        if second != self._token_second:
            self._token_second = second
            self._token = {
                "name": ANONYMOUS_NAME,
                "value": "",
                "created_at": iso_timestamp(second),
                "permissions": {"full_access": True, "read": [], "write": []},
                "is_provisioned": False,
                "expires_at": None,
                "ttl": None,
                "last_access": None,
                "ip_allowlist": [],
                "is_expired": False,
            }
        return self._token

    def may_read(self, token: dict, bucket: str) -> bool:
        """:return: ``True``: every bucket is readable."""
        return True

    def list_tokens(self) -> list:
        """:return: no tokens (spec §2.4.6)."""
        return []

    def create_token(self, name: str, body: Any) -> dict:
        """:raises BadRequest: ``Authentication is disabled``."""
        raise BadRequest(_DISABLED)

    def get_token(self, name: str) -> dict:
        """:raises BadRequest: ``Authentication is disabled``."""
        raise BadRequest(_DISABLED)

    def rotate_token(self, name: str) -> dict:
        """:raises BadRequest: ``Authentication is disabled``."""
        raise BadRequest(_DISABLED)

    def remove_token(self, name: str) -> None:
        """Nothing to remove: ``DELETE /tokens/<name>`` answers 200."""

    def link_key(self, name: str) -> bytes:
        """:return: one constant: without tokens, links bind to nothing."""
        return _OPEN_LINK_KEY

    def forget_bucket(self, bucket: str) -> None:
        """No token refers to buckets."""

    def rename_bucket(self, old: str, new: str) -> None:
        """No token refers to buckets."""

    def saved(self) -> Deferred:
        """:return: a fired Deferred: there is nothing to save."""
        return succeed(None)


@implementer(IAccessPolicy)
class TokenAccess:
    """
    Authorization with authentication enabled: bearer tokens.

    :param store: a :class:`reduct_twisted.auth.tokens.TokenStore`.
    :ivar store: the same.
    :ivar writer: the :class:`reduct_twisted.persist.SnapshotWriter` saving
        the token file, when :meth:`open` made one, else ``None``.
    """

    enabled = True

    def __init__(self, store, writer=None, client_ip: Optional[Callable] = None, last_access: Optional[Callable] = None) -> None:
        self.store = store
        self.writer = writer
        self.client_ip = client_ip if client_ip is not None else _known_client_ip
        if last_access is not None:
            store.last_access = last_access

    def __repr__(self) -> str:
        return f"<TokenAccess {self.store!r}>"

    @classmethod
    def open(
        cls,
        data_path: str,
        clock,
        api_token: str,
        provisioned: Iterable = (),
        run_in_thread: Optional[Callable] = None,
        client_ip: Optional[Callable] = None,
        last_access: Optional[Callable] = None,
    ) -> "TokenAccess":
        """
        Load the token file of a data directory and install the
        provisioned tokens, ``init-token`` last (so it wins a name clash).

        :param data_path: the data directory; tokens live in its ``.auth.json``.
        :param clock: provides ``seconds()``.
        :param api_token: ``RS_API_TOKEN``, the value of ``init-token``
            (full access); must not be empty.
        :param provisioned: for each ``RS_TOKEN_<ID>_*`` token, an object
            with ``name``, ``value``, ``permissions`` and optionally
            ``expires_at`` (seconds or None) attributes (such as
            ``provision.ProvisionedToken``) or a ``(name, value,
            permissions)`` tuple, ``permissions`` being
            ``{"full_access": bool, "read": [...], "write": [...]}``; a bad
            one is logged and skipped, an empty value skips it.  They are
            written to the token file; stored tokens provisioned before but
            not now lose their mark.
        :param run_in_thread: ``run_in_thread(f, *args) -> Deferred``; when
            given, the file is written in a thread by a ``SnapshotWriter``
            (see ``writer``), else synchronously.
        :param client_ip: ``client_ip(request)``: the client address of the
            request handed to :meth:`check`, or None (``http.clientip``).
        :param last_access: ``last_access(name)``: a token's last access in
            microseconds, or None (``ISystemEvents.last_access``).
        :raises reduct_twisted.auth.tokens.TokenStoreError: the token file is
            unreadable or corrupt.
        """
        if not api_token:
            raise ValueError("TokenAccess needs a non-empty API token")
        path = os.path.join(data_path, AUTH_FILE)
        writer = SnapshotWriter(path, run_in_thread) if run_in_thread is not None else None
        store = TokenStore(path, clock, writer.write if writer is not None else None)
        for item in provisioned:
            if isinstance(item, tuple):
                name, value, permissions = item
                expires_at = None
            else:
                name, value, permissions = item.name, item.value, item.permissions
                expires_at = getattr(item, "expires_at", None)
            try:
                store.provision(name, value, permissions, expires_at)
            except ReductError as e:
                log.warn("Token '{name}' is not provisioned: {reason}", name=name, reason=e.message)
        store.provision(INIT_TOKEN_NAME, api_token, {"full_access": True})
        store.finish_provisioning(memory_only=(INIT_TOKEN_NAME,))
        return cls(store, writer, client_ip, last_access)

    def check(
        self, authorization: Optional[bytes], policy: Policy, bucket: Optional[str] = None,
        request: Any = None,
    ) -> dict:
        """
        Authenticate the caller (secret, expiry, IP allowlist: spec 1.20
        §4.3), then authorize ``policy``.

        :param authorization: the ``Authorization`` header value, or ``None``.
        :param policy: what the operation needs.
        :param bucket: the bucket, for ``READ`` and ``WRITE``.
        :param request: the request (opaque): gets ``reduct_token_name`` as
            soon as the secret is recognised; ``client_ip(request)`` is its
            address for an allowlist (None: no address known).
        :return: the caller's token object (shared: do not change it; its
            computed fields are not filled in, see :meth:`describe`), or
            ``{}`` for ``ANONYMOUS``.
        :raises Unauthorized: no bearer token, an unknown one, an expired
            one, or one not allowed from the client address.
        :raises Forbidden: the token lacks the permission.
        """
        if policy is Policy.ANONYMOUS:
            return {}
        if authorization is None or not authorization.startswith(_BEARER):
            raise Unauthorized(_NO_BEARER)
        token = self.store.authenticate(authorization[len(_BEARER):])
        if token is None:
            raise Unauthorized(_INVALID)
        if request is not None:
            request.reduct_token_name = token.name
        if token.limited:
            self._check_terms(token, request)
        permissions = token.permissions
        if policy is Policy.AUTHENTICATED or permissions.full_access:
            return token.public
        if policy is Policy.READ:
            if permissions.may_read(bucket):
                return token.public
            raise Forbidden(f"Token '{token.name}' doesn't have read access to bucket '{bucket}'")
        if policy is Policy.WRITE:
            if permissions.may_write(bucket):
                return token.public
            raise Forbidden(f"Token '{token.name}' doesn't have write access to bucket '{bucket}'")
        raise Forbidden(f"Token '{token.name}' doesn't have full access")

    def _check_terms(self, token, request) -> None:
        """Spec 1.20 §4.3: expiry, then the IP allowlist."""
        if self.store.is_expired(token):
            raise Unauthorized(EXPIRED)
        if token.terms.ip_allowlist:
            token.terms.check_client(self.client_ip(request) if request is not None else None)

    def may_read(self, token: dict, bucket: str) -> bool:
        """
        :param token: a token object returned by :meth:`check`.
        :return: whether that token may read ``bucket`` (for ``/list``).
        """
        stored = self.store.find(token.get("name"))
        if stored is None:
            return False
        return stored.permissions.full_access or stored.permissions.may_read(bucket)

    def list_tokens(self) -> list:
        """:return: every token object, sorted by name, values hidden."""
        return self.store.list()

    def create_token(self, name: str, body: Any) -> dict:
        """
        :param body: the decoded JSON body, ``None`` if empty.
        :return: ``{"value", "created_at"}``.
        :raises UnprocessableEntity: bad name or permissions.
        :raises Conflict: the name is taken.
        """
        return self.store.create(name, body)

    def describe(self, token: dict) -> dict:
        """
        :param token: a token object returned by :meth:`check`.
        :return: its whole object (spec 1.20 §4.1), computed now.
        """
        stored = self.store.find(token.get("name"))
        return self.store.describe(stored) if stored is not None else dict(token)

    def get_token(self, name: str) -> dict:
        """:raises NotFound: no such token."""
        return self.store.get(name)

    def rotate_token(self, name: str) -> dict:
        """
        :return: ``{"value", "created_at"}`` of the new secret.
        :raises Conflict: ``init-token`` or a provisioned token.
        :raises NotFound: no such token.
        :raises UnprocessableEntity: its ``expires_at`` has passed.
        """
        return self.store.rotate(name, protected=(INIT_TOKEN_NAME,))

    def remove_token(self, name: str) -> None:
        """:raises NotFound: no such token.  :raises Conflict: it is provisioned."""
        self.store.remove(name)

    def link_key(self, name: str) -> Optional[bytes]:
        """
        :return: what a link made with token ``name`` is bound to (its salt
            and secret hash: rotation changes it), ``None`` if unknown.
        """
        return self.store.link_key(name)

    def forget_bucket(self, bucket: str) -> None:
        """A bucket was removed: drop it from the tokens' permission lists."""
        self.store.forget_bucket(bucket)

    def rename_bucket(self, old: str, new: str) -> None:
        """A bucket was renamed: rename it in the tokens' permission lists."""
        self.store.rename_bucket(old, new)

    def saved(self) -> Deferred:
        """
        :return: a Deferred that fires once the token file holds the last
            change, or fails with ``InsufficientStorage`` if writing it failed.
        """
        return self.store.saved()
