"""
Authentication and authorization against the real daemon (spec §1.5, §2.4,
§3.14): the permission matrix of every endpoint, the token API, secrets that
never reach disk or logs, tokens that survive a restart, provisioning from
the environment, and names that cannot escape the data directory.
"""

import json
import os

import attr
import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from tests.integration.conftest import start_server
from tests.integration.helpers import assert_error

INIT = "init-secret-0123456789"
BUCKET = "bkt"
ENTRY = "e"
TS = 1000

ANONYMOUS, AUTHENTICATED, FULL, READ, WRITE = "anon", "auth", "full", "read", "write"


@attr.s(frozen=True)
class Row:
    """One endpoint of the matrix."""

    id = attr.ib()
    method = attr.ib()
    path = attr.ib()  # relative to the server URL; may contain {ts} / {qid}
    policy = attr.ib()
    status = attr.ib(default=200)  # when the check passes
    text = attr.ib(default=None)  # the error text of that status, if it is one
    body = attr.ib(default=b"")
    prepare = attr.ib(default=None)  # async (server, ctx) -> None, before each request
    open_error = attr.ib(default=None)  # (status, text) with authentication off


# -- preparing state before a request (always with the init token) -----------


def admin_headers(server):
    return {"Authorization": f"Bearer {INIT}"} if server.auth_on else {}


async def admin(server, method, path, body=b""):
    resp = await server.http.request(method, server.url + path, data=body,
                                     headers=admin_headers(server))
    content = await resp.content()
    return resp.code, content


async def ensure_token_absent(server, ctx):
    await admin(server, "DELETE", "/api/v1/tokens/matrix-new")


async def ensure_victim_token(server, ctx):
    if server.auth_on:
        await admin(server, "POST", "/api/v1/tokens/matrix-victim", b"{}")


async def ensure_bucket_absent(server, ctx):
    await admin(server, "DELETE", "/api/v1/b/matrix-new")


async def ensure_victim_bucket(server, ctx):
    await admin(server, "POST", "/api/v1/b/matrix-victim")


async def next_ts(server, ctx):
    ctx["ts"] = ctx.get("ts", TS) + 1


async def next_ts_written(server, ctx):
    await next_ts(server, ctx)
    code, body = await admin(server, "POST", f"/api/v1/b/{BUCKET}/{ENTRY}?ts={ctx['ts']}", b"x")
    assert code == 200, body


async def ensure_victim_entry(server, ctx):
    await admin(server, "POST", f"/api/v1/b/{BUCKET}/matrix-victim?ts=1", b"x")


async def ensure_entry_rename(server, ctx):
    await admin(server, "DELETE", f"/api/v1/b/{BUCKET}/matrix-to")
    await ensure_victim_entry(server, ctx)


async def ensure_bucket_rename(server, ctx):
    await admin(server, "DELETE", "/api/v1/b/matrix-renamed")
    await ensure_victim_bucket(server, ctx)


async def fresh_query(server, ctx):
    code, body = await admin(server, "GET", f"/api/v1/b/{BUCKET}/{ENTRY}/q?start=0")
    assert code == 200, body
    ctx["qid"] = json.loads(body)["id"]


V1 = "/api/v1"
ROWS = [
    Row("info", "GET", V1 + "/info", AUTHENTICATED),
    Row("list", "GET", V1 + "/list", AUTHENTICATED),
    Row("alive-head", "HEAD", V1 + "/alive", ANONYMOUS),
    Row("alive-get", "GET", V1 + "/alive", ANONYMOUS),
    Row("ready-head", "HEAD", V1 + "/ready", ANONYMOUS),
    Row("ready-get", "GET", V1 + "/ready", ANONYMOUS),
    Row("me", "GET", V1 + "/me", AUTHENTICATED),
    Row("tokens-list", "GET", V1 + "/tokens", FULL),
    Row("token-create", "POST", V1 + "/tokens/matrix-new", FULL, body=b"{}",
        prepare=ensure_token_absent, open_error=(400, "Authentication is disabled")),
    Row("token-get", "GET", V1 + "/tokens/init-token", FULL,
        open_error=(400, "Authentication is disabled")),
    Row("token-delete", "DELETE", V1 + "/tokens/matrix-victim", FULL,
        prepare=ensure_victim_token),
    Row("bucket-get", "GET", V1 + f"/b/{BUCKET}", READ),
    Row("bucket-head", "HEAD", V1 + f"/b/{BUCKET}", AUTHENTICATED),
    Row("bucket-create", "POST", V1 + "/b/matrix-new", FULL, prepare=ensure_bucket_absent),
    Row("bucket-update", "PUT", V1 + f"/b/{BUCKET}", FULL, body=b"{}"),
    Row("bucket-remove", "DELETE", V1 + "/b/matrix-victim", FULL,
        prepare=ensure_victim_bucket),
    Row("record-write", "POST", V1 + f"/b/{BUCKET}/{ENTRY}?ts={{ts}}", WRITE, body=b"abc",
        prepare=next_ts),
    Row("record-read", "GET", V1 + f"/b/{BUCKET}/{ENTRY}?ts={TS}", READ),
    Row("record-head", "HEAD", V1 + f"/b/{BUCKET}/{ENTRY}?ts={TS}", READ),
    Row("record-latest", "GET", V1 + f"/b/{BUCKET}/{ENTRY}", READ),
    Row("query-create", "GET", V1 + f"/b/{BUCKET}/{ENTRY}/q?start=0", READ),
    Row("query-read", "GET", V1 + f"/b/{BUCKET}/{ENTRY}?q={{qid}}", READ, prepare=fresh_query),
    Row("record-labels", "PATCH", V1 + f"/b/{BUCKET}/{ENTRY}?ts={TS}", WRITE),
    Row("batch-labels", "PATCH", V1 + f"/b/{BUCKET}/{ENTRY}/batch", WRITE),
    Row("record-remove", "DELETE", V1 + f"/b/{BUCKET}/{ENTRY}?ts={{ts}}", WRITE,
        prepare=next_ts_written),
    Row("batch-remove", "DELETE", V1 + f"/b/{BUCKET}/{ENTRY}/batch", WRITE),
    Row("query-remove", "DELETE", V1 + f"/b/{BUCKET}/{ENTRY}/q?start=1&stop=2", WRITE),
    Row("entry-remove", "DELETE", V1 + f"/b/{BUCKET}/matrix-victim", WRITE,
        prepare=ensure_victim_entry),
    Row("entry-rename", "PUT", V1 + f"/b/{BUCKET}/matrix-victim/rename", WRITE,
        body=b'{"new_name": "matrix-to"}', prepare=ensure_entry_rename),
    Row("bucket-rename", "PUT", V1 + "/b/matrix-victim/rename", FULL,
        body=b'{"new_name": "matrix-renamed"}', prepare=ensure_bucket_rename),
    Row("v0-info", "GET", "/info", AUTHENTICATED),
    Row("v0-record-write", "POST", f"/b/{BUCKET}/{ENTRY}?ts={{ts}}", WRITE, body=b"abc",
        prepare=next_ts),
    Row("v0-record-list", "GET", f"/b/{BUCKET}/{ENTRY}/list?start=0&stop=2000", READ),
    Row("v0-auth-refresh", "POST", "/auth/refresh", AUTHENTICATED),
    Row("unknown-path", "GET", V1 + "/no/such/thing/here", ANONYMOUS, 404, "Not found"),
]

#: Credential kinds: the Authorization header each sends (None: no header).
CREDENTIALS = ("none", "malformed", "lowercase", "unknown", "noperm", "reader", "writer", "full")


def expected(row, kind, auth_on):
    """(status, error text or None) the spec gives for ``kind`` on ``row``."""
    passed = (row.status, row.text)
    if not auth_on:
        return row.open_error or passed
    if row.policy == ANONYMOUS:
        return passed
    if kind in ("none", "malformed", "lowercase"):
        return 401, "No bearer token in request header"
    if kind == "unknown":
        return 401, "Invalid token"
    name = "init-token" if kind == "full" else kind
    if row.policy == AUTHENTICATED or kind == "full":
        return passed
    if row.policy == FULL:
        return 403, f"Token '{name}' doesn't have full access"
    if row.policy == READ and kind != "reader":
        return 403, f"Token '{name}' doesn't have read access to bucket '{BUCKET}'"
    if row.policy == WRITE and kind != "writer":
        return 403, f"Token '{name}' doesn't have write access to bucket '{BUCKET}'"
    return passed


async def make_tokens(server):
    """Create the limited tokens; return the header each credential kind sends."""
    headers = {
        "none": None,
        "malformed": "Basic aW5pdC10b2tlbjo=",
        "lowercase": f"bearer {INIT}",
        "unknown": "Bearer no-such-token-00000000000000000000000000000000",
        "full": f"Bearer {INIT}",
    }
    permissions = {"noperm": {}, "reader": {"read": [BUCKET]}, "writer": {"write": [BUCKET]}}
    for name, perms in permissions.items():
        if server.auth_on:
            code, body = await admin(server, "POST", f"/api/v1/tokens/{name}",
                                     json.dumps(perms).encode())
            assert code == 200, body
            headers[name] = "Bearer " + json.loads(body)["value"]
        else:
            headers[name] = f"Bearer {name}-ignored"
    return headers


async def started(tmp_path, auth_on, **kwargs):
    config = {"api_token": INIT} if auth_on else {}
    server, stop = await start_server(tmp_path / "data", **config, **kwargs)
    server.auth_on = auth_on
    return server, stop


async def seed(server):
    code, body = await admin(server, "POST", f"/api/v1/b/{BUCKET}")
    assert code == 200, body
    code, body = await admin(server, "POST", f"/api/v1/b/{BUCKET}/{ENTRY}?ts={TS}", b"seed")
    assert code == 200, body


@pytest.mark.parametrize("auth_on", [True, False], ids=["auth-on", "auth-off"])
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
@pytest_twisted.ensureDeferred
async def test_permission_matrix(tmp_path, row, auth_on):
    """
    Every endpoint with every kind of caller answers the status and error
    text of spec §1.5: no/malformed header, unknown token, a token without
    permissions, read-only and write-only on the bucket, full access — with
    authentication on and off.
    """
    server, stop = await started(tmp_path, auth_on)
    try:
        await seed(server)
        headers = await make_tokens(server)
        ctx = {}
        for kind in CREDENTIALS:
            if row.prepare is not None:
                await row.prepare(server, ctx)
            path = row.path.format(ts=ctx.get("ts"), qid=ctx.get("qid"))
            sent = {} if headers[kind] is None else {"Authorization": headers[kind]}
            resp = await server.http.request(row.method, server.url + path, data=row.body,
                                             headers=sent)
            status, text = expected(row, kind, auth_on)
            where = f"{row.method} {path} as {kind}"
            if text is None:
                body = await resp.content()
                assert resp.code == status, (where, resp.code, body)
                assert not resp.headers.hasHeader("x-reduct-error"), where
            else:
                try:
                    await assert_error(resp, status, text)
                except AssertionError as e:
                    raise AssertionError(f"{where}: {e}") from None
    finally:
        await stop()


# -- beyond the matrix -----------------------------------------------------------


async def request(server, method, path, token=None, body=b""):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await server.http.request(method, server.api(path), data=body, headers=headers)


async def json_of(server, method, path, token=INIT, body=b"", status=200):
    resp = await request(server, method, path, token, body)
    content = await resp.content()
    assert resp.code == status, (method, path, resp.code, content)
    return json.loads(content) if content else None


async def new_token(server, name, permissions):
    created = await json_of(server, "POST", f"/tokens/{name}", body=json.dumps(permissions).encode())
    return created["value"]


@pytest_twisted.ensureDeferred
async def test_list_shows_only_readable_buckets(tmp_path):
    """[1.16] /list holds the buckets the token may read, wildcards included."""
    server, stop = await started(tmp_path, True)
    try:
        for name in ("alpha", "beta", "wild-1", "wild-2"):
            await json_of(server, "POST", f"/b/{name}")
        reader = await new_token(server, "reader", {"read": ["alpha", "wild-*"]})
        writer = await new_token(server, "writer", {"write": ["*"]})
        star = await new_token(server, "star", {"read": ["*"]})

        def names(answer):
            return [b["name"] for b in answer["buckets"]]

        assert names(await json_of(server, "GET", "/list", reader)) == ["alpha", "wild-1", "wild-2"]
        assert names(await json_of(server, "GET", "/list", writer)) == []
        assert names(await json_of(server, "GET", "/list", star)) == ["alpha", "beta", "wild-1", "wild-2"]
        assert len(names(await json_of(server, "GET", "/list"))) == 4
        # the wildcard grants reads of matching buckets only, not writes
        resp = await request(server, "POST", "/b/wild-1/e?ts=1", reader, b"x")
        await assert_error(resp, 403, "Token 'reader' doesn't have write access to bucket 'wild-1'")
        resp = await request(server, "POST", "/b/beta/e?ts=1", writer, b"x")
        assert resp.code == 200, await resp.content()
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_forbidden_before_not_found_and_json_before_auth(tmp_path):
    """403 wins over 404 (the check comes first); a malformed JSON body is 422 before 401."""
    server, stop = await started(tmp_path, True)
    try:
        reader = await new_token(server, "reader", {"read": ["other"]})
        resp = await request(server, "GET", "/b/missing", reader)
        await assert_error(resp, 403, "Token 'reader' doesn't have read access to bucket 'missing'")
        resp = await request(server, "GET", "/b/missing", INIT)
        await assert_error(resp, 404, "Bucket 'missing' is not found")
        resp = await request(server, "POST", "/b/x", None, b"{not json")
        assert resp.code == 422, await resp.content()
        resp = await request(server, "POST", "/tokens/x", None, b"[1, 2")
        assert resp.code == 422, await resp.content()
        resp = await request(server, "POST", "/b/x", None, b"{}")
        await assert_error(resp, 401, "No bearer token in request header")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_token_api(tmp_path):
    """Create, show, list and delete tokens with the objects and texts of spec §2.4."""
    server, stop = await started(tmp_path, True)
    try:
        created = await json_of(server, "POST", "/tokens/token-1",
                                body=b'{"full_access": false, "read": ["b1"], "write": null}')
        assert set(created) == {"value", "created_at"}
        assert created["value"].startswith("token-1-") and len(created["value"]) == 8 + 32
        shown = await json_of(server, "GET", "/tokens/token-1")
        assert shown == {
            "name": "token-1",
            "value": "",
            "created_at": created["created_at"],
            "permissions": {"full_access": False, "read": ["b1"], "write": []},
            "is_provisioned": False,
            # API 1.19 fields (spec 1.20 §4.1, §10.5: the 1.20 object wins)
            "expires_at": None,
            "ttl": None,
            "last_access": None,
            "ip_allowlist": [],
            "is_expired": False,
        }
        listed = (await json_of(server, "GET", "/tokens"))["tokens"]
        assert [t["name"] for t in listed] == ["init-token", "token-1"]
        assert all(t["value"] == "" for t in listed)
        assert listed[0]["is_provisioned"] is True
        assert listed[0]["permissions"] == {"full_access": True, "read": [], "write": []}

        resp = await request(server, "POST", "/tokens/token-1", INIT, b"{}")
        await assert_error(resp, 409, "Token 'token-1' already exists")
        resp = await request(server, "POST", "/tokens/token-2", INIT, b'{"read": ["a/b"]}')
        await assert_error(
            resp, 422, "Permission can contain only bucket names or wildcard '*', got 'a/b'"
        )
        for method in ("GET", "DELETE"):
            resp = await request(server, method, "/tokens/token-not-found", INIT)
            await assert_error(resp, 404, "Token 'token-not-found' doesn't exist")
        resp = await request(server, "DELETE", "/tokens/init-token", INIT)
        await assert_error(resp, 409, "Can't remove provisioned token 'init-token'")

        # removing a bucket takes it out of every token's permissions
        await json_of(server, "POST", "/b/b1")
        await json_of(server, "DELETE", "/b/b1")
        shown = await json_of(server, "GET", "/tokens/token-1")
        assert shown["permissions"]["read"] == []

        assert await json_of(server, "DELETE", "/tokens/token-1") is None
        resp = await request(server, "GET", "/me", created["value"])
        await assert_error(resp, 401, "Invalid token")
        me = await json_of(server, "GET", "/me")
        assert (me["name"], me["value"], me["is_provisioned"]) == ("init-token", "", True)
    finally:
        await stop()


def files_containing(root, needles):
    """Every file under ``root`` whose bytes contain one of ``needles``."""
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                data = f.read()
            found += [(path, n) for n in needles if n.encode() in data]
    return found


@pytest_twisted.ensureDeferred
async def test_token_values_never_reach_disk_or_logs(tmp_path):
    """
    After tokens are created, used and deleted (and the daemon restarted),
    no token value, nor its random part, is in any file under the data
    directory or in any log event.
    """
    from twisted.logger import formatEvent

    events = []

    def observer(event):
        events.append(f"{formatEvent(event)} {event!r}")

    globalLogPublisher.addObserver(observer)
    values = [INIT]
    try:
        server, stop = await started(tmp_path, True, log_level="DEBUG")
        try:
            for i in range(3):
                value = await new_token(server, f"leak-{i}", {"read": ["*"], "write": ["x"]})
                values += [value, value.rsplit("-", 1)[1]]
                assert (await json_of(server, "GET", "/me", value))["name"] == f"leak-{i}"
                resp = await request(server, "POST", "/b/x/e?ts=1", value, b"data")
                await resp.content()
            await json_of(server, "DELETE", "/tokens/leak-0")
            resp = await request(server, "GET", "/me", values[1])
            await assert_error(resp, 401, "Invalid token")
        finally:
            await stop()
        server, stop = await started(tmp_path, True)
        try:
            assert (await json_of(server, "GET", "/me", values[3]))["name"] == "leak-1"
        finally:
            await stop()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert os.path.exists(tmp_path / "data" / ".auth.json")
    assert files_containing(tmp_path, values) == []
    assert [v for v in values for e in events if v in e] == []


@pytest_twisted.ensureDeferred
async def test_tokens_survive_restart(tmp_path):
    """Created tokens work after a restart, deleted ones stay deleted, the init token follows RS_API_TOKEN."""
    server, stop = await started(tmp_path, True)
    try:
        kept = await new_token(server, "kept", {"read": ["b"]})
        gone = await new_token(server, "gone", {})
        created_at = (await json_of(server, "GET", "/tokens/kept"))["created_at"]
        await json_of(server, "DELETE", "/tokens/gone")
    finally:
        await stop()
    server, stop = await start_server(tmp_path / "data", api_token="another-init-value")
    try:
        me = await json_of(server, "GET", "/me", kept)
        assert me["name"] == "kept" and me["created_at"] == created_at
        assert me["permissions"] == {"full_access": False, "read": ["b"], "write": []}
        resp = await request(server, "GET", "/me", gone)
        await assert_error(resp, 401, "Invalid token")
        resp = await request(server, "GET", "/me", INIT)
        await assert_error(resp, 401, "Invalid token")
        me = await json_of(server, "GET", "/me", "another-init-value")
        assert me["name"] == "init-token"
    finally:
        await stop()
    # without RS_API_TOKEN the daemon runs open again, whatever is stored
    server, stop = await start_server(tmp_path / "data")
    try:
        me = await json_of(server, "GET", "/me", "anything")
        assert me["name"] == "AUTHENTICATION-DISABLED"
    finally:
        await stop()


NAME_ERROR = "Bucket or entry name can contain only letters, digests and [-,_] symbols"

ESCAPING_NAMES = [b"..", b".", b"%2e%2e", b"a.b", b"a%2Fb", b"a%00b", b"%00", b"a%5Cb",
                  b"x" * 300, b"%C3%A9t%C3%A9", b"a%20b", b"a%2F..%2Fb", b"..%2Fa", b"%2F",
                  b"a%2F.", b"a%2F%2E%2E"]
#: Entry names are paths since API 1.19 (spec 1.20 §2.1): their refusals.
ENTRY_ERRORS = (
    "Entry name must be non-empty and must not contain empty path segments",
    "Entry name can contain only letters, digits and [-,_,/] symbols or end with '/$meta'",
)


@pytest.mark.parametrize("auth_on", [True, False], ids=["auth-on", "auth-off"])
@pytest_twisted.ensureDeferred
async def test_names_cannot_escape_the_data_directory(tmp_path, auth_on):
    """
    Bucket and entry names with dots, separators, NUL, non-ASCII or absurd
    length are refused (422, or 404 where the path no longer names the
    route) and create nothing anywhere: not in the data directory, not
    beside it.
    """
    from tests.integration.helpers import port_of, raw_request

    server, stop = await started(tmp_path, auth_on)
    auth = f"Authorization: Bearer {INIT}\r\n".encode()
    try:
        await json_of(server, "POST", "/b/ok")
        before = sorted(os.listdir(tmp_path)), sorted(os.listdir(tmp_path / "data"))
        for name in ESCAPING_NAMES:
            for method, path in (
                (b"POST", b"/api/v1/b/" + name),
                (b"POST", b"/api/v1/b/ok/" + name + b"?ts=1"),
                (b"PUT", b"/api/v1/b/" + name),
                (b"POST", b"/b/" + name),
                (b"GET", b"/api/v1/b/ok/" + name),
                (b"GET", b"/api/v1/b/ok/" + name + b"/q"),
            ):
                if name == b"a%2Fb" and path.startswith(b"/api/v1/b/ok/"):
                    continue  # the entry a/b (spec 1.20 §2.2): a valid name now
                raw = await raw_request(
                    port_of(server),
                    method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + auth
                    + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                    read_until_close=True,
                )
                status_line = raw.split(b"\r\n", 1)[0]
                assert status_line.split(b" ")[1] in (b"404", b"422"), (method, path, raw[:300])
                if b" 422 " in status_line:
                    texts = (NAME_ERROR,) + (ENTRY_ERRORS if b"/b/ok/" in path else ())
                    assert any(t.encode() in raw for t in texts), (method, path, raw[:300])
        after = sorted(os.listdir(tmp_path)), sorted(os.listdir(tmp_path / "data"))
        assert after == before
        assert sorted(os.listdir(tmp_path / "data" / "ok")) == ["settings.json"]
    finally:
        await stop()


PROVISIONING = {
    "RS_BUCKET_A_NAME": "prov",
    "RS_BUCKET_A_QUOTA_TYPE": "HARD",
    "RS_BUCKET_A_QUOTA_SIZE": "1 KiB",
    "RS_BUCKET_A_MAX_BLOCK_RECORDS": "not-a-number",
    "RS_TOKEN_A_NAME": "prov-reader",
    "RS_TOKEN_A_VALUE": "prov-reader-secret",
    "RS_TOKEN_A_READ": "prov, other",
    "RS_TOKEN_B_NAME": "no-value",
}


@pytest_twisted.ensureDeferred
async def test_provisioned_buckets_and_tokens(tmp_path):
    """
    RS_BUCKET_* / RS_TOKEN_* create a bucket and a token marked
    ``is_provisioned`` and protected from change and removal (spec §3.14);
    an invalid value falls back to the default, a token without a value is
    left out; a restart overwrites changed settings.
    """
    server, stop = await start_server(tmp_path / "data", environ=PROVISIONING, api_token=INIT)
    try:
        bucket = await json_of(server, "GET", "/b/prov")
        assert bucket["info"]["is_provisioned"] is True
        assert bucket["settings"]["quota_type"] == "HARD"
        assert bucket["settings"]["quota_size"] == 1024
        assert bucket["settings"]["max_block_records"] == 1024  # the default
        listed = (await json_of(server, "GET", "/list"))["buckets"]
        assert [(b["name"], b["is_provisioned"]) for b in listed] == [("prov", True)]
        resp = await request(server, "PUT", "/b/prov", INIT, b'{"quota_size": 5}')
        await assert_error(resp, 409, "Can't change settings of provisioned bucket 'prov'")
        resp = await request(server, "DELETE", "/b/prov", INIT)
        await assert_error(resp, 409, "Can't remove provisioned bucket 'prov'")
        resp = await request(server, "POST", "/b/prov/e?ts=1", INIT, b"x" * 2048)
        await assert_error(resp, 400, "Quota of 'prov' exceeded")

        me = await json_of(server, "GET", "/me", "prov-reader-secret")
        assert me == {
            "name": "prov-reader",
            "value": "",
            "created_at": me["created_at"],
            "permissions": {"full_access": False, "read": ["prov", "other"], "write": []},
            "is_provisioned": True,
            # API 1.19 fields (spec 1.20 §4.7, §10.5: the 1.20 object wins)
            "expires_at": None,
            "ttl": None,
            "last_access": None,
            "ip_allowlist": [],
            "is_expired": False,
        }
        names = [t["name"] for t in (await json_of(server, "GET", "/tokens"))["tokens"]]
        assert names == ["init-token", "prov-reader"]
        resp = await request(server, "DELETE", "/tokens/prov-reader", INIT)
        await assert_error(resp, 409, "Can't remove provisioned token 'prov-reader'")
    finally:
        await stop()
    assert files_containing(tmp_path, ["prov-reader-secret", INIT]) == []
    # without the variables the bucket is an ordinary one again, its data kept
    server, stop = await start_server(tmp_path / "data")
    try:
        bucket = await json_of(server, "GET", "/b/prov")
        assert bucket["info"]["is_provisioned"] is False
        assert await json_of(server, "PUT", "/b/prov", body=b'{"quota_size": 4096}') is None
    finally:
        await stop()
    # provisioning again overwrites the changed setting
    server, stop = await start_server(tmp_path / "data", environ=PROVISIONING, api_token=INIT)
    try:
        bucket = await json_of(server, "GET", "/b/prov")
        assert bucket["settings"]["quota_size"] == 1024
    finally:
        await stop()
