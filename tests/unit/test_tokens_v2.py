"""Tokens v2 (API 1.19, spec 1.20 §4): terms, checks, rotation, file format 2, provisioning, via store and policy."""

import json
import os

import pytest

from reduct_twisted.auth.model import iso_timestamp
from reduct_twisted.auth.policy import INIT_TOKEN_NAME, OpenAccess, Policy, TokenAccess
from reduct_twisted.auth.tokens import AUTH_FILE
from reduct_twisted.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, UnprocessableEntity
from tests.unit.conftest import error_message

START = 1_800_000_000.0
INIT = b"Bearer init-secret"


class Request:
    """What the policy sees of a request: attributes only."""

    def __init__(self, ip=None):
        if ip is not None:
            self.reduct_client_ip = ip


class Events:
    """``last_access(name)`` in microseconds, as ISystemEvents answers it."""

    def __init__(self):
        self.seen = {}

    def last_access(self, name):
        return self.seen.get(name)


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def access(tmp_path, clock, events):
    clock.advance(START)
    return TokenAccess.open(str(tmp_path), clock, "init-secret", last_access=events.last_access)


def bearer(value):
    return b"Bearer " + value.encode()


def create(access, name, body):
    return bearer(access.create_token(name, body)["value"])


def test_nested_create_and_whole_object(access, clock):
    """The object of GET has exactly the ten keys of §4.1; expires_at echoed, ttl and allowlist kept."""
    answer = access.create_token("t", {
        "permissions": {"full_access": False, "read": ["a"], "write": []},
        "expires_at": "2028-01-15T08:00:00Z", "ttl": 3600, "ip_allowlist": ["10.0.0.0/8"],
    })
    assert answer["created_at"] == iso_timestamp(START)
    assert access.get_token("t") == {
        "name": "t",
        "value": "",
        "created_at": iso_timestamp(START),
        "permissions": {"full_access": False, "read": ["a"], "write": []},
        "is_provisioned": False,
        "expires_at": "2028-01-15T08:00:00.000000Z",
        "ttl": 3600,
        "last_access": None,
        "ip_allowlist": ["10.0.0.0/8"],
        "is_expired": False,
    }
    assert [t["ttl"] for t in access.list_tokens()] == [None, 3600]


def test_checks_after_auth_in_order(access):
    """409 first, then the permission items, then ttl, then expires_at; nothing is created on a 422."""
    access.create_token("t", {})
    bad = {"permissions": {"read": ["a b"]}, "ttl": 0, "expires_at": "2000-01-01T00:00:00Z"}
    assert error_message(Conflict, access.create_token, "t", bad) == "Token 't' already exists"
    assert error_message(UnprocessableEntity, access.create_token, "u", bad) == (
        "Permission can contain only bucket names or wildcard '*', got 'a b'"
    )
    bad["permissions"] = {}
    assert error_message(UnprocessableEntity, access.create_token, "u", bad) == "Token TTL must be greater than zero"
    del bad["ttl"]
    assert error_message(UnprocessableEntity, access.create_token, "u", bad) == (
        "Token expiration date must not be in the past"
    )
    assert [t["name"] for t in access.list_tokens()] == ["init-token", "t"]


def test_dollar_buckets_need_exact_items(access):
    """`$system` is matched only by an exact item, in checks and in may_read (/list)."""
    wildcard = create(access, "w", {"read": ["*"], "write": ["$*"]})
    exact = create(access, "e", {"permissions": {"read": ["$system"]}})
    me_w = access.check(wildcard, Policy.READ, "data")
    assert error_message(Forbidden, access.check, wildcard, Policy.READ, "$system") == (
        "Token 'w' doesn't have read access to bucket '$system'"
    )
    assert error_message(Forbidden, access.check, wildcard, Policy.WRITE, "$system") == (
        "Token 'w' doesn't have write access to bucket '$system'"
    )
    assert access.may_read(me_w, "$system") is False and access.may_read(me_w, "data") is True
    me_e = access.check(exact, Policy.READ, "$system")
    assert access.may_read(me_e, "$system") is True
    assert access.may_read(access.check(INIT, Policy.AUTHENTICATED), "$system") is True


def test_expires_at_refuses_at_once_and_names_the_request(access, clock):
    header = create(access, "t", {"permissions": {}, "expires_at": iso_timestamp(START + 10)})
    request = Request()
    access.check(header, Policy.AUTHENTICATED, None, request)
    clock.advance(10)
    request = Request()
    assert error_message(Unauthorized, access.check, header, Policy.AUTHENTICATED, None, request) == (
        "Token has expired"
    )
    assert request.reduct_token_name == "t"  # set before the expiry check (contract 2)
    assert access.get_token("t")["is_expired"] is True


def test_ttl_inactivity_with_last_access(access, clock, events):
    """TTL counts from created_at, or from the last access reported by the system events."""
    header = create(access, "t", {"permissions": {}, "ttl": 60})
    clock.advance(50)
    events.seen["t"] = int((START + 50) * 1_000_000)
    clock.advance(59)
    access.check(header, Policy.AUTHENTICATED)
    token = access.get_token("t")
    assert token["last_access"] == iso_timestamp(START + 50)
    assert token["is_expired"] is False
    clock.advance(2)
    assert error_message(Unauthorized, access.check, header, Policy.AUTHENTICATED) == "Token has expired"
    assert access.get_token("t")["is_expired"] is True


def test_ttl_without_access_runs_from_created(access, clock):
    header = create(access, "t", {"permissions": {}, "ttl": 5})
    clock.advance(5)
    access.check(header, Policy.AUTHENTICATED)
    clock.advance(0.5)
    assert error_message(Unauthorized, access.check, header, Policy.AUTHENTICATED) == "Token has expired"


def test_ip_allowlist(access):
    header = create(access, "t", {"permissions": {"read": ["*"]}, "ip_allowlist": ["203.0.113.10", "10.0.0.0/8"]})
    access.check(header, Policy.READ, "b", Request("203.0.113.10"))
    access.check(header, Policy.READ, "b", Request("10.1.2.3"))
    assert error_message(Unauthorized, access.check, header, Policy.READ, "b", Request("203.0.113.11")) == (
        "Token is not allowed for client IP 203.0.113.11"
    )
    assert error_message(Unauthorized, access.check, header, Policy.READ, "b", Request()) == (
        "Client IP is required for this token"
    )
    assert error_message(Unauthorized, access.check, header, Policy.READ, "b") == (
        "Client IP is required for this token"
    )


def test_client_ip_asked_only_for_allowlisted_tokens(tmp_path, clock):
    asked = []
    auth = TokenAccess.open(str(tmp_path), clock, "init-secret", client_ip=lambda r: asked.append(r) or "10.0.0.1")
    plain = create(auth, "p", {})
    listed = create(auth, "l", {"ip_allowlist": ["10.0.0.1"]})
    request = Request()
    auth.check(plain, Policy.AUTHENTICATED, None, request)
    assert asked == []
    auth.check(listed, Policy.AUTHENTICATED, None, request)
    assert asked == [request]


def test_unknown_token_leaves_the_request_unnamed(access):
    request = Request()
    with pytest.raises(Unauthorized):
        access.check(b"Bearer nope-0123", Policy.AUTHENTICATED, None, request)
    assert not hasattr(request, "reduct_token_name")


def test_rotate(access, clock, tmp_path):
    old = create(access, "t", {"permissions": {"read": ["a"]}, "ttl": 100, "ip_allowlist": ["10.0.0.1"]})
    key = access.link_key("t")
    clock.advance(7)
    rotated = access.rotate_token("t")
    assert rotated["created_at"] == iso_timestamp(START + 7)
    assert error_message(Unauthorized, access.check, old, Policy.AUTHENTICATED) == "Invalid token"
    new = bearer(rotated["value"])
    access.check(new, Policy.READ, "a", Request("10.0.0.1"))
    token = access.get_token("t")
    assert (token["created_at"], token["ttl"], token["ip_allowlist"]) == (iso_timestamp(START + 7), 100, ["10.0.0.1"])
    assert access.link_key("t") != key
    again = TokenAccess.open(str(tmp_path), clock, "init-secret")
    again.check(new, Policy.AUTHENTICATED, None, Request("10.0.0.1"))
    assert error_message(Unauthorized, again.check, old, Policy.AUTHENTICATED) == "Invalid token"


def test_rotate_restarts_the_inactivity_clock(access, clock):
    create(access, "t", {"permissions": {}, "ttl": 10})
    clock.advance(20)
    assert access.get_token("t")["is_expired"] is True
    new = bearer(access.rotate_token("t")["value"])  # a TTL-expired token can be rotated
    access.check(new, Policy.AUTHENTICATED)


def test_rotate_errors(tmp_path, clock):
    clock.advance(START)
    auth = TokenAccess.open(str(tmp_path), clock, "init-secret", [("p", "p-secret", {})])
    assert error_message(Conflict, auth.rotate_token, INIT_TOKEN_NAME) == "Can't rotate init token"
    assert error_message(NotFound, auth.rotate_token, "nobody") == "Token 'nobody' doesn't exist"
    assert error_message(Conflict, auth.rotate_token, "p") == "Can't rotate provisioned token 'p'"
    auth.create_token("x", {"permissions": {}, "expires_at": iso_timestamp(START + 1)})
    clock.advance(1)
    assert error_message(UnprocessableEntity, auth.rotate_token, "x") == "Can't rotate expired token 'x'"


def test_open_access_v2(clock):
    auth = OpenAccess(clock)
    request = Request()
    token = auth.check(None, Policy.FULL_ACCESS, None, request)
    assert request.reduct_token_name == "AUTHENTICATION-DISABLED"
    assert auth.describe(token) == {
        "name": "AUTHENTICATION-DISABLED", "value": "", "created_at": iso_timestamp(0),
        "permissions": {"full_access": True, "read": [], "write": []}, "is_provisioned": False,
        "expires_at": None, "ttl": None, "last_access": None, "ip_allowlist": [], "is_expired": False,
    }
    assert error_message(BadRequest, auth.rotate_token, "t") == "Authentication is disabled"


def test_describe_me(access, events):
    header = create(access, "t", {"permissions": {"read": ["a"]}})
    events.seen["t"] = int((START + 1) * 1_000_000)
    assert access.describe(access.check(header, Policy.AUTHENTICATED))["last_access"] == iso_timestamp(START + 1)
    me = access.describe(access.check(INIT, Policy.AUTHENTICATED))
    assert me["ip_allowlist"] == [] and me["permissions"] == {"full_access": True, "read": [], "write": []}


# -- the file ------------------------------------------------------------------------


def test_format_1_file_is_read_and_upgraded(tmp_path, clock):
    """A token file of before API 1.19 keeps working; the next change writes format 2."""
    clock.advance(START)
    first = TokenAccess.open(str(tmp_path), clock, "init-secret")
    value = first.create_token("old", {"read": ["a"]})["value"]
    path = os.path.join(str(tmp_path), AUTH_FILE)
    with open(path) as f:
        document = json.load(f)
    for item in document["tokens"]:
        for key in ("expires_at", "ttl", "ip_allowlist", "provisioned"):
            del item[key]
    document["format"] = 1
    with open(path, "w") as f:
        json.dump(document, f)
    again = TokenAccess.open(str(tmp_path), clock, "init-secret")
    token = again.check(bearer(value), Policy.READ, "a")
    assert again.describe(token)["ip_allowlist"] == [] and again.get_token("old")["ttl"] is None
    again.create_token("new", {})
    with open(path) as f:
        assert json.load(f)["format"] == 2
    assert TokenAccess.open(str(tmp_path), clock, "init-secret").check(bearer(value), Policy.READ, "a")


def test_terms_survive_a_restart(access, clock, tmp_path):
    access.create_token("t", {"permissions": {}, "expires_at": "2028-01-15T08:00:00Z", "ttl": 9, "ip_allowlist": ["::1"]})
    before = access.get_token("t")
    again = TokenAccess.open(str(tmp_path), clock, "init-secret")
    assert again.get_token("t") == before


# -- provisioning ----------------------------------------------------------------------


class Provisioned:
    def __init__(self, name, value, permissions, expires_at=None):
        self.name, self.value, self.permissions, self.expires_at = name, value, permissions, expires_at


def test_provisioned_token_dropped_from_config_stays_unmarked(tmp_path, clock):
    """Upstream 1.18.9: a token removed from the configuration loses is_provisioned at the next start."""
    clock.advance(START)
    first = TokenAccess.open(str(tmp_path), clock, "init-secret", [Provisioned("p", "p-secret", {"read": ["a"]})])
    assert first.get_token("p")["is_provisioned"] is True
    second = TokenAccess.open(str(tmp_path), clock, "init-secret")
    token = second.get_token("p")
    assert token["is_provisioned"] is False
    assert token["permissions"] == {"full_access": False, "read": ["a"], "write": []}
    second.check(b"Bearer p-secret", Policy.READ, "a")
    assert INIT_TOKEN_NAME not in [t["name"] for t in TokenAccess.open(str(tmp_path), clock, "other").list_tokens()
                                   if not t["is_provisioned"]]
    second.remove_token("p")
    assert error_message(NotFound, second.get_token, "p") == "Token 'p' doesn't exist"


def test_provisioning_overwrites_a_stored_token(tmp_path, clock):
    clock.advance(START)
    first = TokenAccess.open(str(tmp_path), clock, "init-secret")
    stored = first.create_token("p", {"full_access": True})["value"]
    second = TokenAccess.open(str(tmp_path), clock, "init-secret", [Provisioned("p", "env", {})])
    assert error_message(Unauthorized, second.check, bearer(stored), Policy.AUTHENTICATED) == "Invalid token"
    third = TokenAccess.open(str(tmp_path), clock, "init-secret")
    assert third.get_token("p")["is_provisioned"] is False
    third.check(b"Bearer env", Policy.AUTHENTICATED)


def test_same_provisioning_does_not_rewrite_the_file(tmp_path, clock):
    clock.advance(START)
    config = [Provisioned("p", "env", {"write": ["b"]})]
    TokenAccess.open(str(tmp_path), clock, "init-secret", config)
    path = os.path.join(str(tmp_path), AUTH_FILE)
    with open(path, "rb") as f:
        before = f.read()
    os.chmod(path, 0o400)  # a write would have to replace it (rename), a read works
    clock.advance(60)
    mtime = os.stat(path).st_mtime_ns
    TokenAccess.open(str(tmp_path), clock, "init-secret", config)
    assert os.stat(path).st_mtime_ns == mtime
    with open(path, "rb") as f:
        assert f.read() == before


def test_provisioned_expires_at(tmp_path, clock):
    clock.advance(START)
    auth = TokenAccess.open(str(tmp_path), clock, "init-secret", [Provisioned("p", "env", {}, START + 5)])
    assert auth.get_token("p")["expires_at"] == iso_timestamp(START + 5)
    auth.check(b"Bearer env", Policy.AUTHENTICATED)
    clock.advance(5)
    assert error_message(Unauthorized, auth.check, b"Bearer env", Policy.AUTHENTICATED) == "Token has expired"
