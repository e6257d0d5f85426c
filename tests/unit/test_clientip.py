"""Client address resolution behind trusted proxies (spec 1.20 §4.6)."""

import pytest
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.web.test.requesthelper import DummyRequest

from reduct_twisted.http.clientip import client_ip, resolve, trusted_proxy


@pytest.mark.parametrize("peer", [
    "127.0.0.1", "127.3.2.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.9.9", "::1", "fd00::1", "fc00::5", "fe80::1", "::ffff:127.0.0.1",
])
def test_trusted_peers(peer):
    assert trusted_proxy(peer)


@pytest.mark.parametrize("peer", [
    "8.8.8.8", "172.32.0.1", "172.15.255.255", "192.169.0.1", "2001:db8::1", "garbage", "",
])
def test_untrusted_peers(peer):
    assert not trusted_proxy(peer)


def test_public_peer_is_the_client_whatever_the_headers_say():
    assert resolve("203.0.113.5", "for=1.2.3.4", "5.6.7.8") == "203.0.113.5"


def test_trusted_peer_without_headers_is_the_client():
    assert resolve("127.0.0.1", None, None) == "127.0.0.1"


def test_x_forwarded_for_first_item():
    assert resolve("127.0.0.1", None, " 203.0.113.10 , 10.0.0.1") == "203.0.113.10"


def test_unparsable_x_forwarded_for_falls_back_to_the_peer():
    assert resolve("10.0.0.2", None, "unknown, 1.2.3.4") == "10.0.0.2"


@pytest.mark.parametrize("value, expected", [
    ("for=203.0.113.7", "203.0.113.7"),
    ('For="203.0.113.7:4711"', "203.0.113.7"),
    ('for="[2001:db8::17]:4711"', "2001:db8::17"),
    ('for="[2001:db8::17]"', "2001:db8::17"),
    ("proto=https;for=198.51.100.1;by=10.0.0.1", "198.51.100.1"),
    ("for=2001:db8::1", "2001:db8::1"),
])
def test_forwarded_for(value, expected):
    assert resolve("127.0.0.1", value, "9.9.9.9") == expected


@pytest.mark.parametrize("value", ["for=unknown", "for=_hidden", "secret;for=1.2.3.4", "by=1.1.1.1"])
def test_unusable_forwarded_falls_back_to_x_forwarded_for(value):
    assert resolve("127.0.0.1", value, "9.9.9.9") == "9.9.9.9"


def test_no_ip_peer():
    assert resolve(None, "for=1.2.3.4", "1.2.3.4") is None


def test_client_ip_of_a_request_is_kept():
    request = DummyRequest([b""])
    request.client = IPv4Address("TCP", "127.0.0.1", 5000)
    request.requestHeaders.setRawHeaders(b"x-forwarded-for", [b"203.0.113.10"])
    assert client_ip(request) == "203.0.113.10"
    request.requestHeaders.setRawHeaders(b"x-forwarded-for", [b"203.0.113.11"])
    assert client_ip(request) == "203.0.113.10"


def test_client_ip_of_a_unix_socket_request():
    request = DummyRequest([b""])
    request.client = UNIXAddress(b"/tmp/sock")
    assert client_ip(request) is None
