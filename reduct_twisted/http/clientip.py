# -*- test-case-name: tests.unit.test_clientip -*-
"""
The client address of a request (spec 1.20 §4.6), for IP allowlists,
rate limits and audit events.

The TCP peer is the client, unless the peer is a trusted proxy: a loopback,
private (RFC 1918, IPv6 unique-local) or link-local address.  Behind a
trusted peer the first ``for=`` of ``Forwarded`` names the client, else the
first item of ``X-Forwarded-For``, else the peer itself.  A header whose
value does not parse as an address is passed over, never trusted in part.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Optional

__all__ = ["client_ip", "resolve", "trusted_proxy"]

_UNSET = object()

_TRUSTED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
        "::1/128", "fc00::/7", "fe80::/10",
    )
)


def _address(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def trusted_proxy(peer: str) -> bool:
    """
    Whether the TCP peer ``peer`` may name the client in forwarding headers
    (cached: parsing and matching an address costs ~10 µs, and every
    audited request asks).
    """
    address = _address(peer)
    if address is None:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return any(address.version == net.version and address in net for net in _TRUSTED)


def _forwarded_for(value: str) -> Optional[str]:
    """The client of a ``Forwarded`` value: its first ``for=`` pair, or None."""
    for part in value.split(";"):
        key, sep, raw = part.partition("=")
        if not sep:
            return None
        if key.strip().lower() != "for":
            continue
        raw = raw.strip().strip('"')
        if raw.startswith("["):
            raw = raw[1:].partition("]")[0]
        elif raw.count(":") == 1:
            raw = raw.partition(":")[0]  # IPv4:port
        address = _address(raw)
        return str(address) if address is not None else None
    return None


def resolve(
    peer: Optional[str], forwarded: Optional[str], x_forwarded_for: Optional[str]
) -> Optional[str]:
    """
    The client address of a request from TCP peer ``peer`` (``None`` when
    the transport has no IP peer, e.g. a UNIX socket) with those header
    values (``None`` when absent).
    """
    if peer is None or not trusted_proxy(peer):
        return peer
    return _behind_proxy(peer, forwarded, x_forwarded_for)


def _behind_proxy(peer: str, forwarded: Optional[str], x_forwarded_for: Optional[str]) -> str:
    """:func:`resolve` once ``peer`` is known to be a trusted proxy."""
    if forwarded is not None:
        found = _forwarded_for(forwarded)
        if found is not None:
            return found
    if x_forwarded_for is not None:
        address = _address(x_forwarded_for.split(",", 1)[0].strip())
        if address is not None:
            return str(address)
    return peer


def _last(values) -> Optional[str]:
    """The last of a header's raw values as text (as ``Request.getHeader``), or None."""
    if values is None:
        return None
    value = values[-1]
    return value.decode("latin-1") if isinstance(value, bytes) else value


def client_ip(request) -> Optional[str]:
    """
    The client address of a ``twisted.web`` ``request``, resolved once and
    kept on it (``request.reduct_client_ip``).  The peer and whether it is
    a trusted proxy are asked once per connection; the forwarding headers
    are read only behind a trusted proxy.
    """
    found = getattr(request, "reduct_client_ip", _UNSET)
    if found is not _UNSET:
        return found
    channel = getattr(request, "channel", None)
    peer = getattr(channel, "reduct_peer", None)
    if peer is None:  # one connection, one peer
        host = getattr(request.getClientAddress(), "host", None)
        peer = (host, host is not None and trusted_proxy(host))
        if channel is not None:
            channel.reduct_peer = peer
    host, trusted = peer
    found = host
    if trusted:
        headers = request.requestHeaders
        forwarded = headers.getRawHeaders(b"forwarded")
        x_forwarded_for = headers.getRawHeaders(b"x-forwarded-for")
        if forwarded is not None or x_forwarded_for is not None:
            found = _behind_proxy(host, _last(forwarded), _last(x_forwarded_for))
    request.reduct_client_ip = found
    return found
