"""
Tokens v2 against the real daemon over real sockets (API 1.19, spec 1.20
§4): both create bodies, the ten-key token object, IP allowlists behind a
trusted proxy (X-Forwarded-For, Forwarded), expiry, rotation, exact-only
``$`` buckets, ``/me`` with authentication off, and provisioned tokens
that leave the configuration.
"""

import json
import os
from datetime import datetime, timedelta, timezone

import pytest_twisted

from tests.integration.conftest import start_server
from tests.integration.helpers import assert_error

INIT = "init-secret-0123456789"


async def request(server, method, path, token=INIT, body=b"", headers=None):
    sent = {"Authorization": [f"Bearer {token}"]} if token else {}
    sent.update({k: [v] for k, v in (headers or {}).items()})
    return await server.http.request(method, server.api(path), data=body, headers=sent)


async def json_of(server, method, path, token=INIT, body=None, status=200, headers=None):
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    resp = await request(server, method, path, token, data, headers)
    content = await resp.content()
    assert resp.code == status, (method, path, resp.code, content)
    return json.loads(content) if content else None


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest_twisted.ensureDeferred
async def test_nested_create_and_exact_object(tmp_path):
    """The upstream test__create_v2_token: nested body with expires_at, GET gives exactly ten keys."""
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        permissions = {"full_access": True, "read": ["b"], "write": ["b"]}
        expires = (datetime.now(timezone.utc) + timedelta(days=1)).replace(microsecond=0)
        body = {"permissions": permissions, "ip_allowlist": [], "expires_at": rfc3339(expires)}
        created = await json_of(server, "POST", "/tokens/v2-token", body=body)
        assert created["value"].startswith("v2-token-")
        shown = await json_of(server, "GET", "/tokens/v2-token")
        assert shown == {
            "name": "v2-token",
            "created_at": created["created_at"],
            "value": "",
            "permissions": permissions,
            "ip_allowlist": [],
            "is_provisioned": False,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "ttl": None,
            "last_access": None,
            "is_expired": False,
        }
        listed = (await json_of(server, "GET", "/tokens"))["tokens"]
        assert [t["name"] for t in listed] == ["init-token", "v2-token"]
        assert listed[1] == shown
        await json_of(server, "POST", "/tokens/ttl-token", body={"permissions": {}, "ttl": 60})
        assert (await json_of(server, "GET", "/tokens/ttl-token"))["ttl"] == 60
        me = await json_of(server, "GET", "/me")
        assert (me["name"], me["ip_allowlist"], me["is_expired"]) == ("init-token", [], False)
        assert me["permissions"] == {"full_access": True, "read": [], "write": []}
        # the flat body of the older clients still works
        await json_of(server, "POST", "/tokens/flat", body={"full_access": False, "read": ["x"]})
        assert (await json_of(server, "GET", "/tokens/flat"))["permissions"]["read"] == ["x"]
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_create_refusals(tmp_path):
    """Invalid body (before the token is looked at), then 409 and the 422 checks after it."""
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        for raw in (b"{not json", b"[]", b'{"full_access": true, "ttl": 5}', b'{"permissions": {}, "x": 1}',
                    b'{"permissions": {}, "expires_at": "2099-01-01T00:00:00"}'):
            for token in (INIT, None):
                resp = await request(server, "POST", "/tokens/t", token, raw)
                await assert_error(resp, 422, "Invalid body")
        await json_of(server, "POST", "/tokens/t", body={})
        resp = await request(server, "POST", "/tokens/t", body=b'{"permissions": {"read": ["a b"]}}')
        await assert_error(resp, 409, "Token 't' already exists")
        resp = await request(server, "POST", "/tokens/u", body=b'{"permissions": {"read": ["a b"]}}')
        await assert_error(resp, 422, "Permission can contain only bucket names or wildcard '*', got 'a b'")
        resp = await request(server, "POST", "/tokens/u", body=b'{"permissions": {}, "ttl": 0}')
        await assert_error(resp, 422, "Token TTL must be greater than zero")
        resp = await request(server, "POST", "/tokens/u", body=b'{"permissions": {}, "expires_at": "2001-01-01T00:00:00Z"}')
        await assert_error(resp, 422, "Token expiration date must not be in the past")
        names = [t["name"] for t in (await json_of(server, "GET", "/tokens"))["tokens"]]
        assert names == ["init-token", "t"]
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_ip_allowlist_behind_a_trusted_proxy(tmp_path):
    """The upstream test__token_ip_allowlist_enforced, plus Forwarded, IPv6 and CIDR items."""
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        body = {"permissions": {"full_access": False, "read": ["*"], "write": []},
                "ip_allowlist": ["203.0.113.10", "2001:db8::/32", "198.51.100.0/24"]}
        value = (await json_of(server, "POST", "/tokens/listed", body=body))["value"]
        for headers in ({"X-Forwarded-For": "203.0.113.10"}, {"X-Forwarded-For": "198.51.100.77, 10.0.0.1"},
                        {"Forwarded": "for=203.0.113.10;proto=http"}, {"Forwarded": 'for="[2001:db8::5]"'}):
            me = await json_of(server, "GET", "/me", value, headers=headers)
            assert me["name"] == "listed" and me["ip_allowlist"] == body["ip_allowlist"]
        resp = await request(server, "GET", "/me", value, headers={"X-Forwarded-For": "203.0.113.11"})
        await assert_error(resp, 401, "Token is not allowed for client IP 203.0.113.11")
        resp = await request(server, "GET", "/me", value, headers={"Forwarded": "for=203.0.113.11:4711"})
        await assert_error(resp, 401, "Token is not allowed for client IP 203.0.113.11")
        # without a forwarding header the client is the loopback peer itself
        resp = await request(server, "GET", "/me", value)
        await assert_error(resp, 401, "Token is not allowed for client IP 127.0.0.1")
        resp = await request(server, "GET", "/b/any", value, headers={"X-Forwarded-For": "203.0.113.11"})
        await assert_error(resp, 401, "Token is not allowed for client IP 203.0.113.11")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_rotation(tmp_path):
    """The upstream test__rotate_token and its error texts (spec 1.20 §4.5)."""
    server, stop = await start_server(tmp_path / "data", api_token=INIT,
                                      environ={"RS_TOKEN_P_NAME": "prov", "RS_TOKEN_P_VALUE": "prov-secret"})
    try:
        body = {"full_access": False, "read": ["*"], "write": []}
        created = await json_of(server, "POST", "/tokens/rot", body=body)
        old = created["value"]
        assert (await json_of(server, "GET", "/me", old))["name"] == "rot"
        rotated = await json_of(server, "POST", "/tokens/rot/rotate")
        assert set(rotated) == {"value", "created_at"}
        assert rotated["value"].startswith("rot-") and rotated["value"] != old
        assert rotated["created_at"] >= created["created_at"]
        assert (await json_of(server, "GET", "/tokens/rot"))["created_at"] == rotated["created_at"]
        resp = await request(server, "GET", "/me", old)
        await assert_error(resp, 401, "Invalid token")
        assert (await json_of(server, "GET", "/me", rotated["value"]))["name"] == "rot"
        # reduct-js sends {} as the body: ignored
        again = await json_of(server, "POST", "/tokens/rot/rotate", body={})
        resp = await request(server, "GET", "/me", rotated["value"])
        await assert_error(resp, 401, "Invalid token")

        resp = await request(server, "POST", "/tokens/init-token/rotate")
        await assert_error(resp, 409, "Can't rotate init token")
        resp = await request(server, "POST", "/tokens/nobody/rotate")
        await assert_error(resp, 404, "Token 'nobody' doesn't exist")
        resp = await request(server, "POST", "/tokens/prov/rotate")
        await assert_error(resp, 409, "Can't rotate provisioned token 'prov'")
        resp = await request(server, "POST", "/tokens/rot/rotate", again["value"])
        await assert_error(resp, 403, "Token 'rot' doesn't have full access")
        resp = await request(server, "POST", "/tokens/rot/rotate", None)
        await assert_error(resp, 401, "No bearer token in request header")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_expired_token(tmp_path):
    """A token past its expires_at is refused, shown is_expired, and cannot be rotated."""
    data = tmp_path / "data"
    server, stop = await start_server(data, api_token=INIT)
    try:
        soon = rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))
        value = (await json_of(server, "POST", "/tokens/old", body={"permissions": {}, "expires_at": soon}))["value"]
        await json_of(server, "GET", "/me", value)
    finally:
        await stop()
    # An hour passes: move the stored expiry into the past instead.
    path = os.path.join(data, ".auth.json")
    with open(path) as f:
        document = json.load(f)
    [item] = [t for t in document["tokens"] if t["name"] == "old"]
    item["expires_at"] = datetime.now(timezone.utc).timestamp() - 1
    with open(path, "w") as f:
        json.dump(document, f)
    server, stop = await start_server(data, api_token=INIT)
    try:
        resp = await request(server, "GET", "/me", value)
        await assert_error(resp, 401, "Token has expired")
        assert (await json_of(server, "GET", "/tokens/old"))["is_expired"] is True
        resp = await request(server, "POST", "/tokens/old/rotate")
        await assert_error(resp, 422, "Can't rotate expired token 'old'")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_dollar_buckets_need_exact_items(tmp_path):
    """`*` never grants `$system`; an exact item does (the 403 comes before the bucket lookup)."""
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        await json_of(server, "POST", "/b/data")
        wild = (await json_of(server, "POST", "/tokens/wild", body={"read": ["*"]}))["value"]
        exact = (await json_of(server, "POST", "/tokens/exact", body={"permissions": {"read": ["$system"]}}))["value"]
        assert (await json_of(server, "GET", "/tokens/exact"))["permissions"]["read"] == ["$system"]
        resp = await request(server, "GET", "/b/$system", wild)
        await assert_error(resp, 403, "Token 'wild' doesn't have read access to bucket '$system'")
        resp = await request(server, "GET", "/b/$system", exact)
        await assert_error(resp, 404, "Bucket '$system' is not found")
        await json_of(server, "GET", "/b/data", wild)
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_auth_disabled(tmp_path):
    """Spec 1.20 §4.7: /me has the new fields, rotation is 400 like create and get."""
    server, stop = await start_server(tmp_path / "data")
    try:
        me = await json_of(server, "GET", "/me", None)
        assert me["name"] == "AUTHENTICATION-DISABLED"
        assert {k: me[k] for k in ("expires_at", "ttl", "last_access", "ip_allowlist", "is_expired")} == {
            "expires_at": None, "ttl": None, "last_access": None, "ip_allowlist": [], "is_expired": False,
        }
        assert len(me) == 10
        resp = await request(server, "POST", "/tokens/t/rotate", None)
        await assert_error(resp, 400, "Authentication is disabled")
        resp = await request(server, "POST", "/tokens/t", None, b'{"permissions": {}}')
        await assert_error(resp, 400, "Authentication is disabled")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_provisioned_token_leaves_the_configuration(tmp_path):
    """Upstream 1.18.9 / spec 1.20 §4.7: dropped from RS_TOKEN_*, a token stays, unmarked and removable."""
    data = tmp_path / "data"
    environ = {"RS_TOKEN_A_NAME": "prov", "RS_TOKEN_A_VALUE": "prov-secret", "RS_TOKEN_A_READ": "b",
               "RS_TOKEN_A_EXPIRES_AT": "2099-01-01T00:00:00Z"}
    server, stop = await start_server(data, environ=environ, api_token=INIT)
    try:
        shown = await json_of(server, "GET", "/tokens/prov")
        assert (shown["is_provisioned"], shown["expires_at"]) == (True, "2099-01-01T00:00:00.000000Z")
        resp = await request(server, "DELETE", "/tokens/prov")
        await assert_error(resp, 409, "Can't remove provisioned token 'prov'")
    finally:
        await stop()
    server, stop = await start_server(data, api_token=INIT)
    try:
        shown = await json_of(server, "GET", "/tokens/prov")
        assert shown["is_provisioned"] is False
        assert shown["permissions"] == {"full_access": False, "read": ["b"], "write": []}
        assert (await json_of(server, "GET", "/me", "prov-secret"))["name"] == "prov"
        assert await json_of(server, "DELETE", "/tokens/prov") is None
        resp = await request(server, "GET", "/me", "prov-secret")
        await assert_error(resp, 401, "Invalid token")
    finally:
        await stop()
