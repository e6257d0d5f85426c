"""
The replication API against the in-process daemon over real sockets
(spec §3.13): its answers and error texts, masking, authorization,
provisioning, and records really flowing between two in-process daemons.
"""

import json
import os

import pytest_twisted
from twisted.internet import task

from tests.integration.conftest import start_server
from tests.integration.helpers import assert_error, port_of, until

TOKEN = "replication-init-token"


def _body(server, **changes):
    settings = {"src_bucket": "src", "dst_bucket": "dst",
                "dst_host": "http://127.0.0.1:9", "dst_token": "remote-secret"}
    settings.update(changes)
    return json.dumps(settings).encode()


async def _call(server, method, path, body=b"", token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await server.http.request(method, server.api(path), data=body or None,
                                     headers=headers)


async def _json(resp, status=200):
    body = await resp.content()
    assert resp.code == status, (resp.code, body)
    assert resp.headers.getRawHeaders("content-type") == ["application/json"]
    return json.loads(body)


async def _ok(resp):
    body = await resp.content()
    assert (resp.code, body) == (200, b""), body


@pytest_twisted.ensureDeferred
async def test_crud_and_masking(server):
    """Create, list, get (token as null), update keeping the token, delete."""
    assert await _json(await _call(server, "GET", "/replications")) == {"replications": []}
    await _ok(await _call(server, "POST", "/b/src"))
    await _ok(await _call(server, "POST", "/replications/r1", _body(server)))
    listed = await _json(await _call(server, "GET", "/replications"))
    # (API 1.18 adds mode to both objects: spec 1.20 §10.5 says the 1.20 objects win)
    assert listed == {"replications": [{"name": "r1", "mode": "enabled", "is_active": True,
                                        "is_provisioned": False, "pending_records": 0}]}
    detail = await _json(await _call(server, "GET", "/replications/r1"))
    assert detail["settings"] == {
        "src_bucket": "src", "dst_bucket": "dst", "dst_host": "http://127.0.0.1:9",
        "dst_token": None, "entries": [], "include": {}, "exclude": {}, "each_n": None,
        "each_s": None, "when": None, "mode": "enabled",
    }
    assert set(detail["diagnostics"]["hourly"]) == {"ok", "errored", "errors"}
    # PUT without dst_token (as reduct-py sends it: null) keeps the stored one.
    body = json.loads(_body(server, entries=["a"], each_s=0.5))
    body["dst_token"] = None
    await _ok(await _call(server, "PUT", "/replications/r1", json.dumps(body).encode()))
    with open(os.path.join(str(server.data_path), ".replications.json")) as f:
        [stored] = json.load(f)["replications"]
    assert stored["settings"]["dst_token"] == "remote-secret"
    assert stored["settings"]["entries"] == ["a"]
    await _ok(await _call(server, "DELETE", "/replications/r1"))
    await assert_error(await _call(server, "GET", "/replications/r1"), 404,
                       "Replication 'r1' does not exist")


@pytest_twisted.ensureDeferred
async def test_error_texts(server):
    """Every refusal carries upstream's status and text."""
    await _ok(await _call(server, "POST", "/b/src"))
    await _ok(await _call(server, "POST", "/replications/r", _body(server)))
    own = f"http://127.0.0.1:{port_of(server)}"
    cases = [
        ("POST", "r", _body(server), 409, "Replication 'r' already exists"),
        ("PUT", "nope", _body(server), 404, "Replication 'nope' does not exist"),
        ("DELETE", "nope", b"", 404, "Replication 'nope' does not exist"),
        ("GET", "nope", b"", 404, "Replication 'nope' does not exist"),
        ("POST", "x", _body(server, dst_host="no-url"), 422, "Invalid destination host 'no-url'"),
        ("POST", "x", _body(server, src_bucket="none"), 404,
         "Source bucket 'none' for replication 'x' does not exist"),
        ("POST", "x", _body(server, dst_bucket="src", dst_host=own), 422,
         "Source and destination buckets must be different"),
        ("POST", "x", _body(server, when={"$nope": [1]}), 422,
         "Invalid replication condition: Operator '$nope' not supported"),
        ("POST", "x", b"{", 422, None),
        ("POST", "x", b"", 422,
         "Invalid JSON: expected an object with src_bucket, dst_bucket and dst_host"),
        ("POST", "x", json.dumps({"src_bucket": "src"}).encode(), 422,
         "Invalid JSON: missing field 'dst_bucket'"),
    ]
    for method, name, body, status, text in cases:
        resp = await _call(server, method, f"/replications/{name}", body)
        if text is None:
            await resp.content()
            assert resp.code == status
            assert resp.headers.getRawHeaders("x-reduct-error")[0].startswith("Invalid JSON")
        else:
            await assert_error(resp, status, text)
    names = [r["name"] for r in (await _json(await _call(server, "GET", "/replications")))[
        "replications"]]
    assert names == ["r"]


@pytest_twisted.ensureDeferred
async def test_full_access_required(tmp_path):
    """All routes need full access; a malformed body is refused before the token."""
    server, stop = await start_server(tmp_path / "data", api_token=TOKEN)
    try:
        await _ok(await _call(server, "POST", "/b/src", token=TOKEN))
        resp = await _call(server, "POST", "/tokens/reader", b'{"read": ["src"]}', TOKEN)
        reader = (await _json(resp))["value"]
        for method, path in [("GET", "/replications"), ("GET", "/replications/r"),
                             ("POST", "/replications/r"), ("PUT", "/replications/r"),
                             ("DELETE", "/replications/r"), ("PATCH", "/replications/r/mode")]:
            body = {"POST": _body(server), "PUT": _body(server),
                    "PATCH": b'{"mode": "paused"}'}.get(method, b"")
            await assert_error(await _call(server, method, path, body), 401,
                               "No bearer token in request header")
            await assert_error(await _call(server, method, path, body, reader), 403,
                               "Token 'reader' doesn't have full access")
        resp = await _call(server, "POST", "/replications/r", b"[1,")
        await resp.content()
        assert resp.code == 422
        # PATCH …/mode parses its body before the token too (spec 1.20 §5.3)
        await assert_error(await _call(server, "PATCH", "/replications/r/mode", b'{"mode": 1}'),
                           422, "Invalid JSON: unknown variant `1`, expected one of "
                                "`enabled`, `paused`, `disabled`")
        await _ok(await _call(server, "POST", "/replications/r", _body(server), TOKEN))
        await _ok(await _call(server, "PATCH", "/replications/r/mode", b'{"mode": "paused"}',
                              TOKEN))
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_provisioned_replication(tmp_path):
    """RS_REPLICATION_* makes a protected replication (after RS_BUCKET_* made its bucket)."""
    environ = {
        "RS_BUCKET_S_NAME": "src",
        "RS_REPLICATION_P_NAME": "prov",
        "RS_REPLICATION_P_SRC_BUCKET": "src",
        "RS_REPLICATION_P_DST_BUCKET": "dst",
        "RS_REPLICATION_P_DST_HOST": "http://127.0.0.1:9",
        "RS_REPLICATION_P_DST_TOKEN": "never-shown",
        "RS_REPLICATION_P_WHEN": '{"&k": {"$eq": "v"}}',
    }
    server, stop = await start_server(tmp_path / "data", environ=environ)
    try:
        detail = await _json(await _call(server, "GET", "/replications/prov"))
        assert detail["info"]["is_provisioned"] is True
        assert detail["settings"]["when"] == {"&k": {"$eq": "v"}}
        assert detail["settings"]["dst_token"] is None
        await assert_error(await _call(server, "PUT", "/replications/prov", _body(server)), 409,
                           "Can't update provisioned replication 'prov'")
        await assert_error(await _call(server, "DELETE", "/replications/prov"), 409,
                           "Can't remove provisioned replication 'prov'")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_records_flow_between_two_daemons(tmp_path):
    """Records written to the source reach the destination byte-exact, labels too."""
    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst", api_token=TOKEN)
    try:
        await _ok(await _call(src, "POST", "/b/src"))
        await _ok(await _call(dst, "POST", "/b/dst", token=TOKEN))
        body = _body(src, dst_host=dst.url, dst_token=TOKEN, when={"&kind": {"$ne": "skip"}})
        await _ok(await _call(src, "POST", "/replications/r", body))
        payloads = {ts: os.urandom(ts * 1000) for ts in range(1, 6)}
        payloads[6] = os.urandom(2_500_000)
        for ts, data in payloads.items():
            kind = "skip" if ts == 4 else "keep"
            resp = await src.http.post(src.api(f"/b/src/e?ts={ts}"), data=data,
                                       headers={"x-reduct-label-kind": kind,
                                                "content-type": "app/x-test"})
            await _ok(resp)

        async def drained():
            detail = await _json(await _call(src, "GET", "/replications/r"))
            return detail["info"]["pending_records"] == 0

        await until(drained)
        for ts, data in payloads.items():
            resp = await _call(dst, "GET", f"/b/dst/e?ts={ts}", token=TOKEN)
            content = await resp.content()
            if ts == 4:
                assert resp.code == 404
                continue
            assert (resp.code, content == data) == (200, True)
            assert resp.headers.getRawHeaders("x-reduct-label-kind") == ["keep"]
            assert resp.headers.getRawHeaders("content-type") == ["app/x-test"]
        detail = await _json(await _call(src, "GET", "/replications/r"))
        assert detail["info"]["is_active"] is True
        assert detail["diagnostics"]["hourly"]["errors"] == {}
        assert detail["diagnostics"]["hourly"]["ok"] > 0
    finally:
        await stop_src()
        await stop_dst()


@pytest_twisted.ensureDeferred
async def test_tricky_labels_and_content_types_replicate_intact(tmp_path):
    """
    Label values with quotes, commas and ``=``, unicode, and content types
    with commas reach the destination unchanged through the sender's batch
    headers: none is cut short or split into extra labels (#12).
    """
    labels = {"mixed": 'a",b', "quoted": '"q"', "open": '"open', "list": "[1, 2, 3]",
              "pairs": "x,y=1", "eq": "k=v", "uni": "grüße €"}
    ctypes = {1: "app/x; a=1,b=2", 2: 'multipart/mixed; boundary="p,q"', 3: "text/plain"}
    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst")
    try:
        await _ok(await _call(src, "POST", "/b/src"))
        await _ok(await _call(dst, "POST", "/b/dst"))
        await _ok(await _call(src, "POST", "/replications/r", _body(src, dst_host=dst.url)))
        for ts, ctype in ctypes.items():
            headers = {f"x-reduct-label-{name}": value for name, value in labels.items()}
            resp = await src.http.post(src.api(f"/b/src/e?ts={ts}"), data=b"x",
                                       headers={**headers, "content-type": ctype})
            await _ok(resp)

        async def drained():
            detail = await _json(await _call(src, "GET", "/replications/r"))
            return detail["info"]["pending_records"] == 0

        await until(drained)
        for ts, ctype in ctypes.items():
            record = dst.engine.read("dst", "e", ts).record
            assert (record.content_type, record.labels) == (ctype, labels)
    finally:
        await stop_src()
        await stop_dst()


@pytest_twisted.ensureDeferred
async def test_missing_destination_bucket_is_reported(tmp_path):
    """The destination bucket is never created: its 404 shows in the diagnostics."""
    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst")
    try:
        await _ok(await _call(src, "POST", "/b/src"))
        await _ok(await _call(src, "POST", "/replications/r", _body(src, dst_host=dst.url)))
        await _ok(await src.http.post(src.api("/b/src/e?ts=1"), data=b"x"))

        async def reported():
            detail = await _json(await _call(src, "GET", "/replications/r"))
            return "404" in detail["diagnostics"]["hourly"]["errors"]

        await until(reported)
        detail = await _json(await _call(src, "GET", "/replications/r"))
        assert detail["info"]["is_active"] is False
        assert detail["info"]["pending_records"] == 1
        assert detail["diagnostics"]["hourly"]["errors"]["404"]["last_message"] == \
            "Bucket 'dst' is not found"
        await _ok(await _call(dst, "POST", "/b/dst"))

        async def delivered(ts=1):
            resp = await _call(dst, "GET", f"/b/dst/e?ts={ts}")
            await resp.content()
            return resp.code == 200

        await until(delivered)
        await until(lambda: _pending_is(src, 0))

        # Removed while the sender needs no probe: the destination (1.18+)
        # answers each record of the batch with 404, and the record waits.
        detail = await _json(await _call(src, "GET", "/replications/r"))
        before = detail["diagnostics"]["hourly"]["errors"]["404"]["count"]
        await _ok(await _call(dst, "DELETE", "/b/dst"))
        await _ok(await src.http.post(src.api("/b/src/e?ts=2"), data=b"y"))

        async def refused_per_record():
            detail = await _json(await _call(src, "GET", "/replications/r"))
            return detail["diagnostics"]["hourly"]["errors"]["404"]["count"] > before

        await until(refused_per_record)
        detail = await _json(await _call(src, "GET", "/replications/r"))
        assert detail["info"]["is_active"] is False
        assert detail["info"]["pending_records"] == 1
        await _ok(await _call(dst, "POST", "/b/dst"))
        await until(lambda: delivered(2))
        await until(lambda: _pending_is(src, 0))
    finally:
        await stop_src()
        await stop_dst()


async def _pending_is(server, count: int, name: str = "r") -> bool:
    detail = await _json(await _call(server, "GET", f"/replications/{name}"))
    return detail["info"]["pending_records"] == count


@pytest_twisted.ensureDeferred
async def test_label_updates_follow_the_records(tmp_path):
    """
    ``PATCH`` on the source (single and batch) reaches the destination after
    the records: changed and new labels set, removed ones removed; a record
    the ``when`` filter let through only after its update is written whole.
    """
    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst")
    try:
        await _ok(await _call(src, "POST", "/b/src"))
        await _ok(await _call(dst, "POST", "/b/dst"))
        body = _body(src, dst_host=dst.url, when={"&kind": {"$ne": "skip"}})
        await _ok(await _call(src, "POST", "/replications/r", body))
        for ts, kind in ((1, "keep"), (2, "keep"), (3, "skip")):
            await _ok(await src.http.post(
                src.api(f"/b/src/e?ts={ts}"), data=b"rec-%d" % ts,
                headers={"x-reduct-label-kind": kind, "x-reduct-label-gone": "soon"}))
        await _ok(await src.http.request("PATCH", src.api("/b/src/e?ts=1"), headers={
            "x-reduct-label-gone": "", "x-reduct-label-new": "yes"}))
        await _ok(await src.http.request("PATCH", src.api("/b/src/e/batch"), headers={
            "x-reduct-time-2": "0,,kind=changed", "x-reduct-time-3": "0,,kind=now-kept"}))

        async def drained():
            detail = await _json(await _call(src, "GET", "/replications/r"))
            return detail["info"]["pending_records"] == 0

        await until(drained)
        expected = {
            1: {"kind": "keep", "new": "yes"},
            2: {"kind": "changed", "gone": "soon"},
            3: {"kind": "now-kept", "gone": "soon"},
        }
        for ts, labels in expected.items():
            resp = await _call(dst, "GET", f"/b/dst/e?ts={ts}")
            assert (resp.code, await resp.content()) == (200, b"rec-%d" % ts)
            found = {
                name.decode().lower()[len("x-reduct-label-"):]: values[-1].decode()
                for name, values in resp.headers.getAllRawHeaders()
                if name.lower().startswith(b"x-reduct-label-")
            }
            assert found == labels, ts
        detail = await _json(await _call(src, "GET", "/replications/r"))
        assert detail["diagnostics"]["hourly"]["errors"] == {}
    finally:
        await stop_src()
        await stop_dst()


class _CountingDestination:
    """An HTTP server on 127.0.0.1 that counts requests and answers 401, as a
    destination with authentication does to a replication without a token."""

    def __init__(self):
        self.requests = []

    async def start(self):
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        requests = self.requests

        class Refuse(Resource):
            isLeaf = True

            def render(self, request):
                requests.append((request.method, request.path))
                request.setResponseCode(401)
                request.setHeader(b"x-reduct-error", b"No bearer token in request header")
                return b'{"detail": "No bearer token in request header"}'

        self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(Refuse()))
        return f"http://127.0.0.1:{self.port.getHost().port}"


@pytest_twisted.ensureDeferred
async def test_new_replication_contacts_no_one_until_it_has_records(tmp_path):
    """
    Created without ``dst_token`` towards a destination with authentication
    (reduct-js's replication test): no request at all while nothing is
    written, ``is_active`` true (1.15+), no errors.  The first record is
    what reaches the destination, and its 401 then shows.
    """
    from twisted.internet import reactor

    fake = _CountingDestination()
    fake_url = await fake.start()
    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst", api_token=TOKEN)
    try:
        await _ok(await _call(src, "POST", "/b/src"))
        await _ok(await _call(dst, "POST", "/b/dst", token=TOKEN))
        for name, host in (("to-fake", fake_url), ("to-auth", dst.url)):
            body = json.loads(_body(src, dst_host=host))
            del body["dst_token"]
            await _ok(await _call(src, "POST", f"/replications/{name}",
                                  json.dumps(body).encode()))
        await task.deferLater(reactor, 0.5, lambda: None)
        assert fake.requests == []
        for name in ("to-fake", "to-auth"):
            detail = await _json(await _call(src, "GET", f"/replications/{name}"))
            assert detail["info"] == {"name": name, "mode": "enabled", "is_active": True,
                                      "is_provisioned": False, "pending_records": 0}
            assert detail["diagnostics"]["hourly"] == {"ok": 0, "errored": 0, "errors": {}}
        listed = await _json(await _call(src, "GET", "/replications"))
        assert [r["is_active"] for r in listed["replications"]] == [True, True]

        await _ok(await src.http.post(src.api("/b/src/e?ts=1"), data=b"x"))

        async def refused():
            details = [await _json(await _call(src, "GET", f"/replications/{name}"))
                       for name in ("to-fake", "to-auth")]
            return all("401" in d["diagnostics"]["hourly"]["errors"] for d in details)

        await until(refused)
        assert fake.requests[0] == (b"HEAD", b"/api/v1/b/dst")
        detail = await _json(await _call(src, "GET", "/replications/to-auth"))
        assert detail["info"]["is_active"] is False
        assert detail["info"]["pending_records"] == 1
    finally:
        await stop_src()
        await stop_dst()
        await fake.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_when_failures_show_in_the_diagnostics(tmp_path):
    """
    A record on which the replication's ``when`` fails (here a missing
    label) is not sent and is counted as errored with the condition's text;
    a record whose label has 5,000 digits is compared (it is +inf), and sent.
    """
    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst")
    try:
        await _ok(await _call(src, "POST", "/b/src"))
        await _ok(await _call(dst, "POST", "/b/dst"))
        body = _body(src, dst_host=dst.url, when={"&n": {"$gt": 1}})
        await _ok(await _call(src, "POST", "/replications/r", body))
        for ts, labels in ((1, {"n": "1" * 5000}), (2, {"other": "x"}), (3, {"n": "0"})):
            headers = {f"x-reduct-label-{k}": v for k, v in labels.items()}
            await _ok(await src.http.post(src.api(f"/b/src/e?ts={ts}"), data=b"r%d" % ts,
                                          headers=headers))

        async def delivered():
            # On the destination, and its answer taken in by the source (the
            # cursor moves once the answer is read, a moment after).
            resp = await _call(dst, "GET", "/b/dst/e?ts=1")
            await resp.content()
            detail = await _json(await _call(src, "GET", "/replications/r"))
            return resp.code == 200 and detail["info"]["pending_records"] == 0

        await until(delivered)
        detail = await _json(await _call(src, "GET", "/replications/r"))
        assert detail["info"]["pending_records"] == 0
        hourly = detail["diagnostics"]["hourly"]
        assert hourly["errored"] > 0
        assert hourly["errors"] == {"404": {
            "count": 1,
            "last_message": "Condition failed on record 2 of entry 'e': Reference 'n' not found",
        }}
        for ts in (2, 3):
            resp = await _call(dst, "GET", f"/b/dst/e?ts={ts}")
            await resp.content()
            assert resp.code == 404
    finally:
        await stop_src()
        await stop_dst()


# -- mode (API 1.18, spec 1.20 §5.3) ------------------------------------------------------


def _exact(name, settings, mode="enabled", active=True):
    """The whole GET answer the 1.20 suite expects right after a create (§10.5)."""
    return {"diagnostics": {"hourly": {"errored": 0, "errors": {}, "ok": 0}},
            "info": {"is_active": active, "is_provisioned": False, "name": name,
                     "mode": mode, "pending_records": 0},
            "settings": dict(settings, mode=mode)}


@pytest_twisted.ensureDeferred
async def test_mode_in_settings_and_info(server):
    """
    The exact objects with ``mode``; unknown keys of 1.21 clients accepted
    and not shown; ``PATCH …/mode`` changes only the mode; a ``PUT`` without
    ``mode`` sets ``enabled``; ``disabled`` is never active.
    """
    await _ok(await _call(server, "POST", "/b/src"))
    bare = {"src_bucket": "src", "dst_bucket": "dst", "dst_host": "http://127.0.0.1:9",
            "dst_token": None, "entries": [], "include": {}, "exclude": {},
            "each_n": None, "each_s": None, "when": None}
    body = dict(bare, dst_token="t", dst_prefix="pre/", compression="zstd")
    await _ok(await _call(server, "POST", "/replications/bare", json.dumps(body).encode()))
    assert await _json(await _call(server, "GET", "/replications/bare")) == _exact("bare", bare)
    full = dict(bare, entries=["a", "b-*"], include={"k": "v"}, exclude={"x": "y"},
                each_n=3, each_s=0.5, when={"&k": {"$eq": "v"}})
    await _ok(await _call(server, "POST", "/replications/full",
                          json.dumps(dict(full, mode="enabled")).encode()))
    assert await _json(await _call(server, "GET", "/replications/full")) == _exact("full", full)

    await _ok(await _call(server, "PATCH", "/replications/full/mode", b'{"mode": "paused"}'))
    detail = await _json(await _call(server, "GET", "/replications/full"))
    assert detail == _exact("full", full, mode="paused")
    listed = await _json(await _call(server, "GET", "/replications"))
    assert [(r["name"], r["mode"]) for r in listed["replications"]] == [
        ("bare", "enabled"), ("full", "paused")]
    with open(os.path.join(str(server.data_path), ".replications.json")) as f:
        registry = json.load(f)
    assert registry["format"] == 2
    assert {r["name"]: r["settings"]["mode"] for r in registry["replications"]} == {
        "bare": "enabled", "full": "paused"}
    assert "dst_prefix" not in registry["replications"][0]["settings"]
    # a PUT without mode: enabled again (serde's default, as upstream)
    await _ok(await _call(server, "PUT", "/replications/full", json.dumps(full).encode()))
    detail = await _json(await _call(server, "GET", "/replications/full"))
    assert detail["info"]["mode"] == detail["settings"]["mode"] == "enabled"

    await _ok(await _call(server, "POST", "/replications/off",
                          json.dumps(dict(bare, mode="disabled")).encode()))
    assert await _json(await _call(server, "GET", "/replications/off")) == _exact(
        "off", bare, mode="disabled", active=False)
    await _ok(await _call(server, "PATCH", "/replications/off/mode", b'{"mode": "enabled"}'))
    assert (await _json(await _call(server, "GET", "/replications/off")))["info"][
        "is_active"] is True


@pytest_twisted.ensureDeferred
async def test_mode_errors(server):
    """404 for a missing replication; every bad body is 422 'Invalid JSON: …'."""
    await _ok(await _call(server, "POST", "/b/src"))
    await _ok(await _call(server, "POST", "/replications/r", _body(server)))
    await assert_error(await _call(server, "PATCH", "/replications/nope/mode",
                                   b'{"mode": "paused"}'), 404, "Replication 'nope' does not exist")
    variant = "expected one of `enabled`, `paused`, `disabled`"
    cases = [
        (b"", "Invalid JSON: EOF while parsing a value at line 1 column 0"),
        (b"[]", "Invalid JSON: expected an object with 'mode'"),
        (b'{"x": 1}', "Invalid JSON: missing field `mode`"),
        (b'{"mode": "stopped"}', f"Invalid JSON: unknown variant `stopped`, {variant}"),
        (b'{"mode": "Paused"}', f"Invalid JSON: unknown variant `Paused`, {variant}"),
        (b'{"mode": null}', f"Invalid JSON: unknown variant `null`, {variant}"),
    ]
    for body, message in cases:
        await assert_error(await _call(server, "PATCH", "/replications/r/mode", body), 422,
                           message)
    resp = await _call(server, "PATCH", "/replications/r/mode", b'{"mode": ')
    await resp.content()
    assert resp.code == 422
    assert resp.headers.getRawHeaders("x-reduct-error")[0].startswith("Invalid JSON: ")
    await assert_error(await _call(server, "POST", "/replications/x",
                                   _body(server, mode="sometimes")), 422,
                       f"Invalid JSON: unknown variant `sometimes`, {variant}")
    detail = await _json(await _call(server, "GET", "/replications/r"))
    assert detail["info"]["mode"] == "enabled"


async def _pending(server, name="r"):
    return (await _json(await _call(server, "GET", f"/replications/{name}")))["info"]


@pytest_twisted.ensureDeferred
async def test_paused_logs_and_disabled_drops(tmp_path):
    """
    Paused: records are logged (pending grows) and nothing is sent, the
    destination stays probed (active); enabled again, they all arrive.
    Disabled: nothing is logged nor sent, never active; records written
    meanwhile never arrive.
    """
    from twisted.internet import reactor

    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst")
    try:
        await _ok(await _call(src, "POST", "/b/src"))
        await _ok(await _call(dst, "POST", "/b/dst"))
        await _ok(await _call(src, "POST", "/replications/r",
                              _body(src, dst_host=dst.url, mode="paused")))
        for ts in (1, 2, 3):
            await _ok(await src.http.post(src.api(f"/b/src/e?ts={ts}"), data=b"p%d" % ts))
        await task.deferLater(reactor, 0.5, lambda: None)
        info = await _pending(src)
        assert (info["mode"], info["pending_records"], info["is_active"]) == ("paused", 3, True)
        assert not dst.engine.bucket_info("dst")["entries"]
        await _ok(await _call(src, "PATCH", "/replications/r/mode", b'{"mode": "enabled"}'))
        await until(lambda: _pending_is(src, 0))
        assert [dst.engine.read("dst", "e", ts).record.size for ts in (1, 2, 3)] == [2, 2, 2]

        await _ok(await _call(src, "PATCH", "/replications/r/mode", b'{"mode": "disabled"}'))
        await _ok(await src.http.post(src.api("/b/src/e?ts=4"), data=b"lost"))
        info = await _pending(src)
        assert (info["mode"], info["pending_records"], info["is_active"]) == ("disabled", 0, False)
        await _ok(await _call(src, "PATCH", "/replications/r/mode", b'{"mode": "enabled"}'))
        await _ok(await src.http.post(src.api("/b/src/e?ts=5"), data=b"five"))
        await until(lambda: _pending_is(src, 0))
        await until(lambda: _has(dst, 5))
        assert not await _has(dst, 4)
        hourly = (await _json(await _call(src, "GET", "/replications/r")))["diagnostics"]["hourly"]
        assert hourly["errors"] == {}
    finally:
        await stop_src()
        await stop_dst()


async def _has(server, ts, bucket="dst", entry="e"):
    resp = await _call(server, "GET", f"/b/{bucket}/{entry}?ts={ts}")
    await resp.content()
    return resp.code == 200


@pytest_twisted.ensureDeferred
async def test_paused_probes_an_unreachable_destination(tmp_path):
    """A paused replication with records waiting probes its destination: unreachable, not active."""
    server, stop = await start_server(tmp_path / "data")
    try:
        await _ok(await _call(server, "POST", "/b/src"))
        await _ok(await _call(server, "POST", "/replications/r", _body(server, mode="paused")))
        await _ok(await server.http.post(server.api("/b/src/e?ts=1"), data=b"x"))

        async def inactive():
            return (await _pending(server))["is_active"] is False

        await until(inactive)
        info = await _pending(server)
        assert (info["mode"], info["pending_records"]) == ("paused", 1)
        # nothing was sent: the diagnostics count no attempt
        detail = await _json(await _call(server, "GET", "/replications/r"))
        assert detail["diagnostics"]["hourly"] == {"ok": 0, "errored": 0, "errors": {}}
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_mode_survives_restart_and_old_registries_load(tmp_path):
    """The mode is in the registry (format 2); a format-1 registry loads, every mode enabled."""
    data = tmp_path / "data"
    server, stop = await start_server(data)
    try:
        await _ok(await _call(server, "POST", "/b/src"))
        await _ok(await _call(server, "POST", "/replications/r", _body(server)))
        await _ok(await _call(server, "PATCH", "/replications/r/mode", b'{"mode": "paused"}'))
    finally:
        await stop()
    server, stop = await start_server(data)
    try:
        assert (await _pending(server))["mode"] == "paused"
    finally:
        await stop()
    settings = json.loads(_body(server))
    old = {"format": 1, "replications": [{"name": "old", "settings": settings}]}
    (data / ".replications.json").write_text(json.dumps(old))
    server, stop = await start_server(data)
    try:
        detail = await _json(await _call(server, "GET", "/replications/old"))
        assert detail["info"]["mode"] == detail["settings"]["mode"] == "enabled"
        await _ok(await _call(server, "PATCH", "/replications/old/mode", b'{"mode": "disabled"}'))
        with open(data / ".replications.json") as f:
            registry = json.load(f)
        assert registry["format"] == 2
        assert registry["replications"][0]["settings"]["dst_token"] == "remote-secret"
        assert registry["replications"][0]["settings"]["mode"] == "disabled"
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_newer_registry_is_left_alone(tmp_path):
    """A registry of a newer format loads nothing and is never written over."""
    data = tmp_path / "data"
    data.mkdir()
    newer = json.dumps({"format": 99, "replications": [], "future": True})
    (data / ".replications.json").write_text(newer)
    server, stop = await start_server(data)
    try:
        await _ok(await _call(server, "POST", "/b/src"))
        resp = await _call(server, "POST", "/replications/r", _body(server))
        await resp.content()
        assert resp.code == 500
        assert (data / ".replications.json").read_text() == newer
    finally:
        await stop()


PROVISIONED = {
    "RS_BUCKET_S_NAME": "src",
    "RS_REPLICATION_P_NAME": "prov",
    "RS_REPLICATION_P_SRC_BUCKET": "src",
    "RS_REPLICATION_P_DST_BUCKET": "dst",
    "RS_REPLICATION_P_DST_HOST": "http://127.0.0.1:9",
}


@pytest_twisted.ensureDeferred
async def test_provisioned_mode(tmp_path):
    """
    ``RS_REPLICATION_<ID>_MODE`` sets the mode; ``PATCH …/mode`` may change
    a provisioned one; provisioned again without ``_MODE`` it keeps the mode
    it had; an invalid ``_MODE`` provisions nothing.
    """
    data = tmp_path / "data"

    async def run(environ, check):
        server, stop = await start_server(data, environ=environ)
        try:
            await check(server)
        finally:
            await stop()

    async def paused_then_disabled(server):
        info = await _pending(server, "prov")
        assert (info["mode"], info["is_provisioned"]) == ("paused", True)
        await _ok(await _call(server, "PATCH", "/replications/prov/mode",
                              b'{"mode": "disabled"}'))
        assert (await _pending(server, "prov"))["mode"] == "disabled"

    def mode_is(expected):
        async def check(server):
            assert (await _pending(server, "prov"))["mode"] == expected
        return check

    async def missing(server):
        await assert_error(await _call(server, "GET", "/replications/prov"), 404,
                           "Replication 'prov' does not exist")

    await run(dict(PROVISIONED, RS_REPLICATION_P_MODE="Paused"), paused_then_disabled)
    await run(PROVISIONED, mode_is("disabled"))
    await run(dict(PROVISIONED, RS_REPLICATION_P_MODE="enabled"), mode_is("enabled"))
    await run(PROVISIONED, mode_is("enabled"))
    await run(dict(PROVISIONED, RS_REPLICATION_P_MODE="sometimes"), missing)
    with open(data / ".replications.json") as f:
        registry = json.load(f)
    assert registry["replications"] == []
    assert registry["provisioned_modes"] == {"prov": "enabled"}


@pytest_twisted.ensureDeferred
async def test_nested_entries_and_meta_replicate(tmp_path):
    """
    Entry paths (1.19) replicate to the same paths (pushed raw to
    ``/b/<dst>/a/b/batch``); ``entries: ["a/b"]`` takes ``a/b`` and its
    ``a/b/$meta``, not ``a/b/c``; the ``when`` filter leaves ``a/b``'s
    ``drop`` records out but never applies to ``$meta`` records; label
    updates of nested records follow.
    """
    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst")
    try:
        await _ok(await _call(src, "POST", "/b/src"))
        await _ok(await _call(dst, "POST", "/b/dst"))
        await _ok(await _call(src, "POST", "/replications/r", _body(
            src, dst_host=dst.url, entries=["a/b"], when={"&kind": {"$eq": "keep"}})))
        await _ok(await _call(src, "POST", "/replications/all", _body(
            src, dst_host=dst.url, dst_bucket="all")))
        await _ok(await _call(dst, "POST", "/b/all"))
        writes = [("a/b", 1, {"kind": "keep"}), ("a/b", 2, {"kind": "drop"}),
                  ("a/b/$meta", 3, {"key": "schema"}), ("a/b/c", 4, {"kind": "keep"}),
                  ("a/b/$meta", 5, {"key": "units"})]
        for entry, ts, labels in writes:
            headers = {f"x-reduct-label-{k}": v for k, v in labels.items()}
            resp = await src.http.post(src.api(f"/b/src/{entry}?ts={ts}"),
                                       data=b"%s:%d" % (entry.encode(), ts), headers=headers)
            await _ok(resp)
        resp = await src.http.patch(src.api("/b/src/a/b?ts=1"),
                                    headers={"x-reduct-label-extra": "yes"})
        await _ok(resp)
        for name in ("r", "all"):
            await until(lambda name=name: _pending_is(src, 0, name))
        stored = {(e, ts) for e, ts, _ in writes if await _has(dst, ts, entry=e)}
        assert stored == {("a/b", 1), ("a/b/$meta", 3), ("a/b/$meta", 5)}
        record = dst.engine.read("dst", "a/b", 1).record
        assert record.labels == {"kind": "keep", "extra": "yes"}
        assert {(e, ts) for e, ts, _ in writes
                if await _has(dst, ts, bucket="all", entry=e)} == {(e, ts) for e, ts, _ in writes}
        resp = await _call(dst, "GET", "/b/all/a/b/c?ts=4")
        assert await resp.content() == b"a/b/c:4"
        for name in ("r", "all"):
            detail = await _json(await _call(src, "GET", f"/replications/{name}"))
            assert detail["diagnostics"]["hourly"]["errors"] == {}, name
    finally:
        await stop_src()
        await stop_dst()
