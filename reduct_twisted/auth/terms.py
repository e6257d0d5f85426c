# -*- test-case-name: tests.unit.test_token_terms -*-
"""
The terms of a token beyond its permissions (API 1.19, spec 1.20 §4):
when it expires (``expires_at``, the inactivity timeout ``ttl``) and from
where it may be used (``ip_allowlist``), and the body of
``POST /tokens/<name>`` that sets them (§4.2).  Values only: no files, no
clock of its own (callers pass "now" in seconds).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Optional

from reduct_twisted.errors import Unauthorized, UnprocessableEntity

INVALID_BODY = "Invalid body"
EXPIRED = "Token has expired"
IP_REQUIRED = "Client IP is required for this token"

#: The keys of each create-body shape (spec 1.20 §4.2), tried in this order.
_V2_KEYS = frozenset({"permissions", "expires_at", "ttl", "ip_allowlist"})
_V1_KEYS = frozenset({"full_access", "read", "write", "ip_allowlist"})


def parse_rfc3339(text: Any) -> float:
    """
    :param text: an RFC 3339 date-time with an offset (``Z`` or ``+hh:mm``).
    :return: its seconds since the epoch.
    :raises ValueError: not a string, not a date-time, or no offset (naive).
    """
    if not isinstance(text, str):
        raise ValueError("not a string")
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a timestamp without an offset")
    return moment.timestamp()


def _network(item: str):
    """An allowlist item as an address or network, or None (never matches)."""
    try:
        if "/" in item:
            return ipaddress.ip_network(item, strict=False)
        return ipaddress.ip_address(item)
    except ValueError:
        return None


class IpAllowlist:
    """
    ``ip_allowlist`` items: exact addresses and ``<network>/<prefix>``
    ranges, IPv4 matching IPv4 and IPv6 matching IPv6 only; an item that
    does not parse never matches (spec 1.20 §4.3).

    :ivar items: the list as given (answered back verbatim).
    """

    __slots__ = ("items", "_addresses", "_networks")

    def __init__(self, items=()) -> None:
        self.items = tuple(items)
        addresses, networks = set(), []
        for item in self.items:
            parsed = _network(item)
            if isinstance(parsed, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                networks.append(parsed)
            elif parsed is not None:
                addresses.add(parsed)
        self._addresses = frozenset(addresses)
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.items)

    def allows(self, ip: str) -> bool:
        """:return: whether client address ``ip`` (text) is listed."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if address in self._addresses:
            return True
        return any(n.version == address.version and address in n for n in self._networks)


class TokenTerms:
    """
    When a token expires and where it may be used.

    :ivar expires_at: seconds since the epoch, or None.
    :ivar ttl: the inactivity timeout in whole seconds, or None.
    :ivar ip_allowlist: an :class:`IpAllowlist` (empty: any address).
    """

    __slots__ = ("expires_at", "ttl", "ip_allowlist")

    def __init__(self, expires_at: Optional[float] = None, ttl: Optional[int] = None, ip_allowlist=()) -> None:
        self.expires_at = expires_at
        self.ttl = ttl
        self.ip_allowlist = ip_allowlist if isinstance(ip_allowlist, IpAllowlist) else IpAllowlist(ip_allowlist)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenTerms):
            return NotImplemented
        return (self.expires_at, self.ttl, self.ip_allowlist.items) == (
            other.expires_at, other.ttl, other.ip_allowlist.items
        )

    def __repr__(self) -> str:
        return f"TokenTerms(expires_at={self.expires_at}, ttl={self.ttl}, ip_allowlist={list(self.ip_allowlist.items)})"

    def is_expired(self, now: float, created: float, last_access: Optional[float]) -> bool:
        """
        Spec 1.20 §4.3 rule 1: ``now >= expires_at``, or ``ttl`` set and
        more than ``ttl`` seconds since ``max(last_access ?? created, created)``.

        :param now: seconds since the epoch.
        :param created: the token's ``created_at`` in seconds.
        :param last_access: its last access in seconds, or None.
        """
        if self.expires_at is not None and now >= self.expires_at:
            return True
        if self.ttl is not None:
            since = created if last_access is None else max(last_access, created)
            return now - since > self.ttl
        return False

    def check_client(self, client_ip: Optional[str]) -> None:
        """
        Spec 1.20 §4.3 rule 2 (only for a non-empty allowlist).

        :raises Unauthorized: no client address, or one not listed.
        """
        if not self.ip_allowlist:
            return
        if not client_ip:
            raise Unauthorized(IP_REQUIRED)
        if not self.ip_allowlist.allows(client_ip):
            raise Unauthorized(f"Token is not allowed for client IP {client_ip}")


class CreateRequest:
    """
    A parsed ``POST /tokens/<name>`` body, not yet checked against the
    store or the clock (:meth:`check` does that after authorization).

    :ivar permissions: the ``permissions`` object (a dict, maybe empty).
    :ivar expires_at: seconds since the epoch, or None.
    :ivar ttl: whole seconds (maybe 0, refused by :meth:`check`), or None.
    :ivar ip_allowlist: a list of strings.
    """

    __slots__ = ("permissions", "expires_at", "ttl", "ip_allowlist")

    def __init__(self, permissions: dict, expires_at=None, ttl=None, ip_allowlist=()) -> None:
        self.permissions = permissions
        self.expires_at = expires_at
        self.ttl = ttl
        self.ip_allowlist = list(ip_allowlist)

    @classmethod
    def parse(cls, body: Any) -> "CreateRequest":
        """
        :param body: decoded JSON; ``None`` (an empty body) is ``{}``.
        :raises UnprocessableEntity: ``Invalid body``: neither the nested v2
            shape nor the flat v1 shape (spec 1.20 §4.2).
        """
        if body is None:
            body = {}
        if isinstance(body, dict):
            for shape in (cls._v2, cls._v1):
                try:
                    return shape(body)
                except (TypeError, ValueError, OverflowError):
                    continue
        raise UnprocessableEntity(INVALID_BODY)

    @classmethod
    def _v2(cls, body: dict) -> "CreateRequest":
        if "permissions" not in body or not set(body) <= _V2_KEYS:
            raise ValueError("not the nested shape")
        permissions = body["permissions"]
        if not isinstance(permissions, dict):
            raise TypeError("permissions is not an object")
        _check_permission_types(permissions)
        allowlist = body.get("ip_allowlist")
        if allowlist is None:  # the docs put it inside ``permissions``
            allowlist = permissions.get("ip_allowlist")
        expires_at = body.get("expires_at")
        if expires_at is not None:
            expires_at = parse_rfc3339(expires_at)
        ttl = body.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl < 2**64):
            raise ValueError("ttl is not a u64")
        return cls(permissions, expires_at, ttl, _string_list(allowlist))

    @classmethod
    def _v1(cls, body: dict) -> "CreateRequest":
        if not set(body) <= _V1_KEYS:
            raise ValueError("not the flat shape")
        permissions = {k: body[k] for k in ("full_access", "read", "write") if k in body}
        _check_permission_types(permissions)
        return cls(permissions, None, None, _string_list(body.get("ip_allowlist")))

    def check(self, now: float) -> None:
        """
        The checks made after authorization (spec 1.20 §4.2), but for the
        permission items (``Permissions.from_json``) and the name.

        :raises UnprocessableEntity: ``ttl`` 0, ``expires_at`` in the past.
        """
        if self.ttl == 0:
            raise UnprocessableEntity("Token TTL must be greater than zero")
        if self.expires_at is not None and self.expires_at < now:
            raise UnprocessableEntity("Token expiration date must not be in the past")

    def terms(self) -> TokenTerms:
        """:return: the :class:`TokenTerms` this body asks for."""
        return TokenTerms(self.expires_at, self.ttl, self.ip_allowlist)


def _string_list(value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise TypeError("not a list of strings")
    return value


def _check_permission_types(permissions: dict) -> None:
    """Types only (``null`` = not given); item syntax is checked after auth."""
    full_access = permissions.get("full_access")
    if full_access is not None and not isinstance(full_access, bool):
        raise TypeError("full_access is not a boolean")
    for key in ("read", "write", "ip_allowlist"):
        _string_list(permissions.get(key))
