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
    if forwarded is not None:
        found = _forwarded_for(forwarded)
        if found is not None:
            return found
    if x_forwarded_for is not None:
        address = _address(x_forwarded_for.split(",", 1)[0].strip())
        if address is not None:
            return str(address)
    return peer


def _header(request, name: bytes) -> Optional[str]:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def client_ip(request) -> Optional[str]:
    """
    The client address of a ``twisted.web`` ``request``, resolved once and
    kept on it (``request.reduct_client_ip``).
    """
    try:
        return request.reduct_client_ip
    except AttributeError:
        pass
    channel = getattr(request, "channel", None)
    try:  # one connection, one peer: asked once per connection
        peer = channel.reduct_peer
    except AttributeError:
        peer = getattr(request.getClientAddress(), "host", None)
        if channel is not None:
            channel.reduct_peer = peer
    found = resolve(
        peer, _header(request, b"forwarded"), _header(request, b"x-forwarded-for"),
    )
    request.reduct_client_ip = found
    return found
