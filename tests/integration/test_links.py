"""
Query links against the real daemon over real sockets (spec 1.20 §6.1,
§6.2, §5.7, §10.4 b): create and download, the record identity and the
legacy index, multi-entry queries, ranges, expiry, the issuing token's
checks, and every error text of the two routes.
"""

import json
import os
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest_twisted

from tests.integration.conftest import running_server, start_server
from tests.integration.helpers import assert_error, body_of, call, ok

INIT = "init-secret-0123456789"
BUCKET = "lnk"
BIG = 1 << 20  # past INLINE_MAX: streamed by the RangeSender


def future(seconds=600) -> int:
    return int(time.time()) + seconds


def link_body(**fields) -> dict:
    body = {"bucket": BUCKET, "entry": "test", "query": {"query_type": "QUERY"},
            "expire_at": future()}
    body.update(fields)
    return body


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def write(server, entry, ts, data, headers=None):
    resp = await server.http.post(server.api(f"/b/{BUCKET}/{entry}?ts={ts}"), data=data,
                                  headers=headers or {})
    await ok(resp)


async def make_bucket(server, headers=None):
    await ok(await call(server, "POST", f"/b/{BUCKET}", headers=headers))


async def create(server, file_name="file.bin", headers=None, **fields) -> str:
    """:return: a new link; its base is the server's own URL unless ``base_url=None``."""
    fields.setdefault("base_url", server.url)
    body = {k: v for k, v in link_body(**fields).items() if v is not None}
    resp = await call(server, "POST", f"/links/{file_name}", body=body, headers=headers)
    content = await ok(resp)
    assert resp.headers.getRawHeaders("content-type") == ["application/json"]
    return json.loads(content)["link"]


async def fetch(server, link, method="GET", headers=None):
    """:return: ``(response, body)`` of ``link`` (always fetched anonymously)."""
    resp = await server.http.request(method, link, headers=headers or {})
    return resp, await body_of(resp)


def with_params(link, **changes) -> str:
    parts = urlsplit(link)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return parts._replace(query=urlencode(params)).geturl()


def header(resp, name):
    values = resp.headers.getRawHeaders(name)
    return values[-1] if values else None


@pytest_twisted.ensureDeferred
async def test_create_and_download_with_identity(tmp_path):
    """
    The upstream v1.20.11 case: a link to ``test@19999`` (``record_entry`` +
    ``record_timestamp``) downloads ``Hello, World!`` anonymously, with the
    headers of a single-record read, the file name as attachment and
    ``accept-ranges: bytes``; the link is ``<base_url>api/v1/links/<file>``
    with exactly ``ct``, ``s``, ``i``, ``n``; HEAD answers the same headers.
    """
    async with running_server(tmp_path / "data") as server:
        await make_bucket(server)
        await write(server, "test", 19998, b"before")
        await write(server, "test", 19999, b"Hello, World!",
                    {"Content-Type": "text/plain", "x-reduct-label-kind": "greeting"})
        await write(server, "test", 20000, b"after")
        link = await create(server, "dir/hello.txt", record_entry="test",
                            record_timestamp=19999, base_url=server.url)
        parts = urlsplit(link)
        assert link.startswith(server.url + "/api/v1/links/dir/hello.txt?")
        assert [k for k, _ in parse_qsl(parts.query)] == ["ct", "s", "i", "n"]
        assert dict(parse_qsl(parts.query))["i"] == "AUTHENTICATION-DISABLED"
        resp, body = await fetch(server, link)
        assert resp.code == 200 and body == b"Hello, World!"
        assert header(resp, "content-type") == "text/plain"
        assert resp.length == 13  # twisted.web.client keeps content-length for framing
        assert header(resp, "x-reduct-time") == "19999"
        assert header(resp, "x-reduct-entry") == "test"
        assert header(resp, "x-reduct-label-kind") == "greeting"
        assert header(resp, "content-disposition") == 'attachment; filename="dir/hello.txt"'
        assert header(resp, "accept-ranges") == "bytes"
        head, body = await fetch(server, link, "HEAD")
        assert head.code == 200 and body == b""
        assert header(head, "content-length") == ["13"][0] or head.length == 13
        assert header(head, "x-reduct-time") == "19999"
        # Two links for the same record differ (fresh nonce), both work.
        again = await create(server, "dir/hello.txt", record_entry="test",
                             record_timestamp=19999, base_url=server.url)
        assert again != link
        assert (await fetch(server, again))[1] == b"Hello, World!"
        # Only queries that were looked up are kept: none is left behind.
        assert server.engine._multi._live == {}


@pytest_twisted.ensureDeferred
async def test_without_file_name(tmp_path):
    """
    ``POST /api/v1/links`` (no file name, what the v1.20.11 suite sends):
    the link is ``…/api/v1/links/?ct=…`` and its download a plain attachment;
    ``/api/v1/linksx`` is no link route.
    """
    async with running_server(tmp_path / "data") as server:
        await make_bucket(server)
        await write(server, "test", 19999, b"Hello, World!")
        resp = await call(server, "POST", "/links", body=link_body(
            record_entry="test", record_timestamp=19999, base_url=server.url + "/"))
        link = json.loads(await ok(resp))["link"]
        assert link.startswith(server.url + "/api/v1/links/?ct=")
        resp, body = await fetch(server, link)
        assert resp.code == 200 and body == b"Hello, World!"
        assert header(resp, "content-disposition") == "attachment"
        resp = await call(server, "POST", "/linksx", body=link_body())
        await assert_error(resp, 404, "Not found")


@pytest_twisted.ensureDeferred
async def test_public_url_is_the_default_base(tmp_path):
    """Without ``base_url`` the link starts with ``public_url`` (``RS_PUBLIC_URL``)."""
    async with running_server(tmp_path / "data", public_url="https://files.example/r") as server:
        await make_bucket(server)
        await write(server, "test", 1, b"x")
        link = await create(server, "a b.bin", record_entry="test", record_timestamp=1,
                            base_url=None)
        assert link.startswith("https://files.example/r/api/v1/links/a%20b.bin?ct=")
        # The same link on this server's own address works.
        local = server.url + link[len("https://files.example/r"):]
        resp, body = await fetch(server, local)
        assert resp.code == 200 and body == b"x"


@pytest_twisted.ensureDeferred
async def test_identity_override_and_not_found(tmp_path):
    """
    ``e`` + ``ts`` pick another record of the same query; a record the query
    does not produce (filtered out by ``when``, out of its range, another
    entry, missing) is ``404 "Record <entry>/<ts> not found in query result"``.
    """
    async with running_server(tmp_path / "data") as server:
        await make_bucket(server)
        for ts in range(1, 6):
            await write(server, "test", ts, b"rec%d" % ts,
                        {"x-reduct-label-odd": "yes" if ts % 2 else "no"})
        query = {"query_type": "QUERY", "start": 2, "when": {"&odd": {"$eq": "yes"}}}
        link = await create(server, query=query, record_entry="test", record_timestamp=3)
        assert (await fetch(server, link))[1] == b"rec3"
        resp, body = await fetch(server, with_params(link, e="test", ts="5"))
        assert resp.code == 200 and body == b"rec5"
        for entry, ts in (("test", 4), ("test", 1), ("other", 3), ("test", 99)):
            resp, _ = await fetch(server, with_params(link, e=entry, ts=str(ts)))
            await assert_error(resp, 404, f"Record {entry}/{ts} not found in query result")


@pytest_twisted.ensureDeferred
async def test_legacy_index(tmp_path):
    """
    Spec 1.20 §10.4 b: a body without ``record_entry``/``record_timestamp``
    (reduct-py 1.17–1.19.0, reduct-js ≤1.19.2) selects the ``index``-th
    (0-based, default 0) record of the query; beyond the end
    ``404 "Record number out of range"``.
    """
    async with running_server(tmp_path / "data") as server:
        await make_bucket(server)
        for ts in (10, 20, 30):
            await write(server, "test", ts, b"r%d" % ts)
        assert (await fetch(server, await create(server)))[1] == b"r10"
        assert (await fetch(server, await create(server, index=0)))[1] == b"r10"
        assert (await fetch(server, await create(server, index=2)))[1] == b"r30"
        query = {"query_type": "QUERY", "start": 15}
        assert (await fetch(server, await create(server, index=1, query=query)))[1] == b"r30"
        resp, _ = await fetch(server, await create(server, index=3))
        await assert_error(resp, 404, "Record number out of range")
        # The identity parameters of a GET still override the index.
        link = await create(server, index=2)
        assert (await fetch(server, with_params(link, e="test", ts="20")))[1] == b"r20"


@pytest_twisted.ensureDeferred
async def test_multi_entry_query(tmp_path):
    """
    ``query.entries`` runs the link's query over several entries (names and
    ``prefix*`` patterns; ``entry`` may be empty then): a record of either
    entry is found by identity, the legacy index counts in the merged order
    (time, then entry name), nested names work.
    """
    async with running_server(tmp_path / "data") as server:
        await make_bucket(server)
        await write(server, "cam-a", 1, b"a1")
        await write(server, "cam-b", 1, b"b1")
        await write(server, "cam-a", 2, b"a2")
        await write(server, "site/cam-c", 3, b"c3")
        await write(server, "other", 2, b"o2")
        query = {"query_type": "QUERY", "entries": ["cam-a", "cam-b"]}
        link = await create(server, entry="", query=query, record_entry="cam-b",
                            record_timestamp=1)
        resp, body = await fetch(server, link)
        assert body == b"b1" and header(resp, "x-reduct-entry") == "cam-b"
        assert (await fetch(server, with_params(link, e="cam-a", ts="2")))[1] == b"a2"
        resp, _ = await fetch(server, with_params(link, e="other", ts="2"))
        await assert_error(resp, 404, "Record other/2 not found in query result")
        # Merged order: a1, b1, a2.
        got = [(await fetch(server, await create(server, entry="", query=query, index=i)))[1]
               for i in range(3)]
        assert got == [b"a1", b"b1", b"a2"]
        nested = {"query_type": "QUERY", "entries": ["site/*"]}
        resp, body = await fetch(server, await create(
            server, entry="", query=nested, record_entry="site/cam-c", record_timestamp=3))
        assert body == b"c3" and header(resp, "x-reduct-entry") == "site/cam-c"


@pytest_twisted.ensureDeferred
async def test_ranges(tmp_path):
    """
    ``Range``: 206 with ``content-range: bytes a-b/len`` for ``a-b``, ``a-``
    and ``-n`` (a small record and a 1 MiB one streamed from its file);
    several ranges: the first satisfiable one; none satisfiable: 416 with
    ``bytes */len``; a header that does not parse is ignored (200).
    """
    async with running_server(tmp_path / "data") as server:
        await make_bucket(server)
        small = bytes(range(200))
        big = os.urandom(BIG)
        await write(server, "test", 1, small)
        await write(server, "test", 2, big)
        for ts, data in ((1, small), (2, big)):
            link = await create(server, record_entry="test", record_timestamp=ts)
            size = len(data)
            cases = [("bytes=0-9", 0, 9), ("bytes=10-", 10, size - 1),
                     ("bytes=-5", size - 5, size - 1), ("bytes=150-100000000", 150, size - 1),
                     (f"bytes={size}-, 3-4", 3, 4), ("bytes=-99999999", 0, size - 1)]
            for spec, first, last in cases:
                resp, body = await fetch(server, link, headers={"Range": [spec]})
                assert resp.code == 206, (spec, resp.code, body[:200])
                assert header(resp, "content-range") == f"bytes {first}-{last}/{size}", spec
                assert resp.length == last - first + 1
                assert body == data[first:last + 1], spec
            for spec in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
                resp, _ = await fetch(server, link, headers={"Range": [spec]})
                await assert_error(resp, 416, "Requested range not satisfiable")
                assert header(resp, "content-range") == f"bytes */{size}"
            for spec in ("items=0-1", "bytes=5-2", "bytes=x-1", "bytes=", "bytes=1"):
                resp, body = await fetch(server, link, headers={"Range": [spec]})
                assert resp.code == 200 and body == data, spec
            head, body = await fetch(server, link, "HEAD", headers={"Range": ["bytes=1-2"]})
            assert head.code == 206 and body == b""
            assert header(head, "content-range") == f"bytes 1-2/{size}"


@pytest_twisted.ensureDeferred
async def test_download_parameter_errors(tmp_path):
    """Every parameter text of spec §6.2, and a tampered link."""
    async with running_server(tmp_path / "data") as server:
        await make_bucket(server)
        await write(server, "test", 1, b"x")
        link = await create(server, record_entry="test", record_timestamp=1)
        for name in ("ct", "s", "i", "n"):
            resp, _ = await fetch(server, with_params(link, **{name: None}))
            await assert_error(resp, 422, f"Missing '{name}' parameter")
        for extra in ({"e": "test"}, {"ts": "1"}):
            resp, _ = await fetch(server, with_params(link, **extra))
            await assert_error(resp, 422,
                               "Both 'e' and 'ts' parameters must be provided together")
        resp, _ = await fetch(server, with_params(link, e="test", ts="-1"))
        await assert_error(resp, 422, "Invalid 'ts' parameter: '-1' is not a u64 timestamp")
        params = dict(parse_qsl(urlsplit(link).query))
        resp, _ = await fetch(server, with_params(link, ct=params["ct"] + "*"))
        assert resp.code == 422
        assert header(resp, "x-reduct-error") == (
            f"Invalid base64 in 'ct' parameter: Invalid symbol 42, offset {len(params['ct'])}.")

        def changed(text, at):
            return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]

        # Any changed character of ct, s or n, a cut s: the signature fails.
        tampered = [("ct", changed(params["ct"], len(params["ct"]) // 2)),
                    ("s", changed(params["s"], 0)), ("n", changed(params["n"], 3)),
                    ("s", params["s"][:-1])]
        for name, value in tampered:
            resp, _ = await fetch(server, with_params(link, **{name: value}))
            assert resp.code == 422, name
            assert header(resp, "x-reduct-error").startswith("Failed to decrypt query: "), name
            await body_of(resp)


@pytest_twisted.ensureDeferred
async def test_expired_link(tmp_path):
    """``expire_at`` in the past: ``422 "Query link has expired"``."""
    async with running_server(tmp_path / "data") as server:
        await make_bucket(server)
        await write(server, "test", 1, b"x")
        link = await create(server, record_entry="test", record_timestamp=1,
                            expire_at=int(time.time()) - 1)
        resp, _ = await fetch(server, link)
        await assert_error(resp, 422, "Query link has expired")


@pytest_twisted.ensureDeferred
async def test_create_errors(tmp_path):
    """The create texts of spec §6.1, each before anything is made."""
    async with running_server(tmp_path / "data") as server:
        await make_bucket(server)
        resp = await call(server, "POST", "/links/f", raw=b"\xff\xfe{")
        await assert_error(resp, 422, "Invalid body")
        resp = await call(server, "POST", "/links/f", raw=b"{nope")
        assert resp.code == 422
        assert header(resp, "x-reduct-error").startswith("Invalid JSON: ")
        await body_of(resp)
        for missing in ("bucket", "entry", "query", "expire_at"):
            body = link_body()
            del body[missing]
            resp = await call(server, "POST", "/links/f", body=body)
            await assert_error(resp, 422, f"Invalid JSON: missing field `{missing}`")
        for half in ({"record_entry": "test"}, {"record_timestamp": 1}):
            resp = await call(server, "POST", "/links/f", body=link_body(**half))
            await assert_error(
                resp, 422, "Both 'record_entry' and 'record_timestamp' must be provided in payload")
        resp = await call(server, "POST", "/links/f", body=link_body(
            query={"query_type": "REMOVE", "start": 1}, record_entry="t", record_timestamp=1))
        await assert_error(resp, 422, "Only 'Query' type is supported for query links")
        for url, reason in (("not a url", "relative URL without a base"),
                            ("http://", "missing host"), ("file:///tmp/x", "missing host")):
            resp = await call(server, "POST", "/links/f", body=link_body(
                base_url=url, record_entry="t", record_timestamp=1))
            await assert_error(resp, 422, f"Invalid base_url provided for query link: {reason}")
        resp = await call(server, "POST", "/links/f", body=link_body(
            bucket="nosuch", record_entry="t", record_timestamp=1))
        await assert_error(resp, 404, "Bucket 'nosuch' is not found")
        resp = await call(server, "POST", "/links/f", body=link_body(
            query={"query_type": "QUERY", "each_n": 0}, record_entry="t", record_timestamp=1))
        await assert_error(resp, 422, "'each_n' must be greater than 0")
        assert server.engine._multi._live == {}


@pytest_twisted.ensureDeferred
async def test_tokens(tmp_path):
    """
    With authentication: create needs a token (401 texts) with Read on the
    bucket (the 403 text of the v1.20.11 suite); the link is downloaded
    without any token and names its issuer in ``i``; another token's name
    in ``i`` fails the signature; rotating the issuing token ends its links
    (``422 "Failed to decrypt query: …"``); deleting it ends them
    (``404 "Token '<i>' doesn't exist"``), re-creating a token of the same
    name does not revive it (``422 "Failed to decrypt query: …"``).
    """
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        admin = bearer(INIT)
        await make_bucket(server, admin)
        await write(server, "test", 19999, b"Hello, World!", admin)
        reader_body = {"full_access": False, "read": [BUCKET]}
        reader = json.loads(await ok(await call(server, "POST", "/tokens/reader",
                                                body=reader_body, headers=admin)))["value"]
        none = json.loads(await ok(await call(server, "POST", "/tokens/none",
                                              body={"full_access": False},
                                              headers=admin)))["value"]
        body = link_body(record_entry="test", record_timestamp=19999, base_url=server.url)
        resp = await call(server, "POST", "/links/f.bin", body=body, headers=bearer(""))
        assert resp.code == 401  # (what the v1.20.11 suite checks; the text is the policy's)
        await body_of(resp)
        resp = await call(server, "POST", "/links/f.bin", body=body, headers=bearer("nosuch"))
        await assert_error(resp, 401, "Invalid token")
        resp = await call(server, "POST", "/links/f.bin", body=body)
        await assert_error(resp, 401, "No bearer token in request header")
        resp = await call(server, "POST", "/links/f.bin", body=body, headers=bearer(none))
        await assert_error(resp, 403, f"Token 'none' doesn't have read access to bucket '{BUCKET}'")
        # The body is checked before the token.
        resp = await call(server, "POST", "/links/f.bin", raw=b"{", headers=bearer(""))
        assert resp.code == 422
        await body_of(resp)
        link = await create(server, "f.bin", headers=bearer(reader), record_entry="test",
                            record_timestamp=19999)
        assert dict(parse_qsl(urlsplit(link).query))["i"] == "reader"
        resp, data = await fetch(server, link)
        assert resp.code == 200 and data == b"Hello, World!"
        # i swapped for another existing token: the signature no longer holds.
        resp, _ = await fetch(server, with_params(link, i="init-token"))
        assert resp.code == 422
        assert header(resp, "x-reduct-error").startswith("Failed to decrypt query: ")
        # Rotated (spec 1.20 §4.5): links made before stop working, new ones work.
        rotated = await create(server, "f.bin", headers=bearer(reader), record_entry="test",
                               record_timestamp=19999)
        reader = json.loads(await ok(await call(server, "POST", "/tokens/reader/rotate",
                                                headers=admin)))["value"]
        resp, _ = await fetch(server, rotated)
        assert resp.code == 422
        assert header(resp, "x-reduct-error").startswith("Failed to decrypt query: ")
        link = await create(server, "f.bin", headers=bearer(reader), record_entry="test",
                            record_timestamp=19999)
        assert (await fetch(server, link))[1] == b"Hello, World!"
        # Deleted: 404; re-created under the same name: the old link stays dead.
        await ok(await call(server, "DELETE", "/tokens/reader", headers=admin))
        resp, _ = await fetch(server, link)
        await assert_error(resp, 404, "Token 'reader' doesn't exist")
        await ok(await call(server, "POST", "/tokens/reader", body={"full_access": True},
                            headers=admin))
        resp, _ = await fetch(server, link)
        assert resp.code == 422
        assert header(resp, "x-reduct-error").startswith("Failed to decrypt query: ")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_lost_read_permission(tmp_path):
    """A link whose issuing token no longer reads the bucket: 403 on download."""
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        admin = bearer(INIT)
        await make_bucket(server, admin)
        await write(server, "test", 1, b"x", admin)
        value = json.loads(await ok(await call(
            server, "POST", "/tokens/rd", body={"full_access": False, "read": [BUCKET]},
            headers=admin)))["value"]
        link = await create(server, headers=bearer(value), record_entry="test",
                            record_timestamp=1, base_url=server.url)
        assert (await fetch(server, link))[1] == b"x"
        # Removing the bucket drops it from the token's read list; a new
        # bucket of the same name is not readable by it.
        await ok(await call(server, "DELETE", f"/b/{BUCKET}", headers=admin))
        await make_bucket(server, admin)
        resp, _ = await fetch(server, link)
        await assert_error(resp, 403, f"Token 'rd' doesn't have read access to bucket '{BUCKET}'")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_links_survive_a_restart_and_need_the_key(tmp_path):
    """
    The signing key lives in ``<data>/.link-key`` (mode 0600): a link works
    after a restart; another data directory's server (another key) refuses
    it; a configured ``link_signing_key`` makes two servers accept each
    other's links.
    """
    data = tmp_path / "data"
    async with running_server(data) as server:
        await make_bucket(server)
        await write(server, "test", 1, b"kept")
        link = await create(server, record_entry="test", record_timestamp=1)
        path = urlsplit(link)
        relative = path.path + "?" + path.query
    key_file = data / ".link-key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = key_file.read_bytes()
    async with running_server(data) as server:
        resp, body = await fetch(server, server.url + relative)
        assert resp.code == 200 and body == b"kept"
    assert key_file.read_bytes() == key
    async with running_server(tmp_path / "other") as other:
        await make_bucket(other)
        await write(other, "test", 1, b"kept")
        resp, _ = await fetch(other, other.url + relative)
        assert resp.code == 422
        assert header(resp, "x-reduct-error").startswith("Failed to decrypt query: ")
    shared = "s" * 40
    async with running_server(tmp_path / "one", link_signing_key=shared) as one:
        await make_bucket(one)
        await write(one, "test", 1, b"one")
        link = await create(one, record_entry="test", record_timestamp=1)
        path = urlsplit(link)
        relative = path.path + "?" + path.query
    assert not (tmp_path / "one" / ".link-key").exists()
    async with running_server(tmp_path / "two", link_signing_key=shared) as two:
        await make_bucket(two)
        await write(two, "test", 1, b"two")
        resp, body = await fetch(two, two.url + relative)
        assert resp.code == 200 and body == b"two"
