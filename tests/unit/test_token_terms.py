"""``reduct_twisted.auth.terms``: token expiry, IP allowlists and the create body (spec 1.20 §4.2, §4.3)."""

import pytest

from reduct_twisted.auth.terms import CreateRequest, IpAllowlist, TokenTerms, parse_rfc3339
from reduct_twisted.errors import Unauthorized, UnprocessableEntity
from tests.unit.conftest import error_message

NOW = 1_800_000_000.0


# -- RFC 3339 ------------------------------------------------------------------------


def test_rfc3339_with_offsets():
    assert parse_rfc3339("1970-01-01T00:00:10Z") == 10
    assert parse_rfc3339("1970-01-01T01:00:10+01:00") == 10
    assert parse_rfc3339("1970-01-01T00:00:10.5Z") == 10.5


@pytest.mark.parametrize("text", ["1970-01-01T00:00:10", "1970-01-01", "tomorrow", "", 10, None])
def test_rfc3339_naive_or_garbage_refused(text):
    """A timestamp without an offset is a parse error (spec 1.20 §4.2)."""
    with pytest.raises(ValueError):
        parse_rfc3339(text)


# -- expiry ------------------------------------------------------------------------


def test_expires_at_rule():
    terms = TokenTerms(expires_at=NOW)
    assert not terms.is_expired(NOW - 0.001, created=0, last_access=None)
    assert terms.is_expired(NOW, created=0, last_access=None)  # now >= expires_at


def test_ttl_counts_from_created_without_access():
    terms = TokenTerms(ttl=60)
    assert not terms.is_expired(NOW + 60, created=NOW, last_access=None)
    assert terms.is_expired(NOW + 60.001, created=NOW, last_access=None)


def test_ttl_counts_from_the_later_of_access_and_created():
    terms = TokenTerms(ttl=60)
    assert not terms.is_expired(NOW + 100, created=NOW, last_access=NOW + 50)
    assert terms.is_expired(NOW + 111, created=NOW, last_access=NOW + 50)
    # an access older than created_at (before a rotation) does not count
    assert terms.is_expired(NOW + 61, created=NOW, last_access=NOW - 1000)


def test_no_terms_never_expire():
    assert not TokenTerms().is_expired(1e12, created=0, last_access=None)


# -- IP allowlist -----------------------------------------------------------------


@pytest.mark.parametrize(
    "items, ip, allowed",
    [
        (["203.0.113.10"], "203.0.113.10", True),
        (["203.0.113.10"], "203.0.113.11", False),
        (["10.0.0.0/8"], "10.200.3.4", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        (["10.1.2.3/8"], "10.9.9.9", True),  # host bits set: the network still counts
        (["2001:db8::/32"], "2001:db8::1", True),
        (["2001:db8::/32"], "2001:db9::1", False),
        (["::ffff:10.0.0.0/104"], "10.0.0.1", False),  # v4 never matches a v6 range
        (["0.0.0.0/0"], "::1", False),  # nor v6 a v4 range
        (["10.0.0.0/33"], "10.0.0.1", False),  # prefix too long: never matches
        (["not an ip", "10.0.0.1"], "10.0.0.1", True),
        (["not an ip"], "10.0.0.1", False),
        (["10.0.0.1"], "garbage", False),
    ],
)
def test_allowlist(items, ip, allowed):
    assert IpAllowlist(items).allows(ip) is allowed


def test_check_client_texts():
    terms = TokenTerms(ip_allowlist=["203.0.113.10"])
    terms.check_client("203.0.113.10")
    assert error_message(Unauthorized, terms.check_client, None) == "Client IP is required for this token"
    assert (
        error_message(Unauthorized, terms.check_client, "203.0.113.11")
        == "Token is not allowed for client IP 203.0.113.11"
    )
    TokenTerms().check_client(None)  # no allowlist: no address needed


# -- the create body ----------------------------------------------------------------


def test_nested_body():
    request = CreateRequest.parse({
        "permissions": {"full_access": True, "read": ["a"]},
        "expires_at": "1970-01-01T00:01:40Z",
        "ttl": 30,
        "ip_allowlist": ["10.0.0.1"],
    })
    assert request.permissions == {"full_access": True, "read": ["a"]}
    assert (request.expires_at, request.ttl, request.ip_allowlist) == (100, 30, ["10.0.0.1"])
    assert request.terms() == TokenTerms(100, 30, ["10.0.0.1"])


def test_flat_body():
    request = CreateRequest.parse({"full_access": False, "write": ["b"], "ip_allowlist": ["::1"]})
    assert request.permissions == {"full_access": False, "write": ["b"]}
    assert (request.expires_at, request.ttl, request.ip_allowlist) == (None, None, ["::1"])


@pytest.mark.parametrize("body", [None, {}, {"permissions": {}}, {"full_access": None, "read": None}])
def test_empty_bodies_give_no_rights(body):
    request = CreateRequest.parse(body)
    assert request.terms() == TokenTerms()


def test_nested_nulls_are_not_given():
    request = CreateRequest.parse({"permissions": {}, "expires_at": None, "ttl": None, "ip_allowlist": None})
    assert request.terms() == TokenTerms()


@pytest.mark.parametrize(
    "body",
    [
        [], "x", 1,
        {"full_access": True, "ttl": 10},  # ttl only in the nested shape
        {"read": ["a"], "expires_at": "2099-01-01T00:00:00Z"},
        {"permissions": {}, "colour": "red"},
        {"colour": "red"},
        {"permissions": []},
        {"permissions": {"full_access": "yes"}},
        {"permissions": {"read": "a"}},
        {"permissions": {}, "expires_at": "2099-01-01T00:00:00"},  # naive
        {"permissions": {}, "expires_at": 12},
        {"permissions": {}, "ttl": -1},
        {"permissions": {}, "ttl": 1.5},
        {"permissions": {}, "ttl": True},
        {"permissions": {}, "ttl": 2**64},
        {"permissions": {}, "ip_allowlist": "10.0.0.1"},
        {"permissions": {}, "ip_allowlist": [1]},
        {"full_access": 1},
        {"write": [None]},
    ],
)
def test_invalid_bodies(body):
    assert error_message(UnprocessableEntity, CreateRequest.parse, body) == "Invalid body"


def test_checks_after_auth():
    CreateRequest.parse({"permissions": {}, "ttl": 1}).check(NOW)
    zero = CreateRequest.parse({"permissions": {}, "ttl": 0})
    assert error_message(UnprocessableEntity, zero.check, NOW) == "Token TTL must be greater than zero"
    past = CreateRequest.parse({"permissions": {}, "expires_at": "1970-01-01T00:00:00Z"})
    assert error_message(UnprocessableEntity, past.check, NOW) == "Token expiration date must not be in the past"
