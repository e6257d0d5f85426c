"""
The ``$system`` bucket (spec 1.20 §8) over real sockets: audit aggregates,
usage statistics, the quota given at creation, ``/info`` counting it, the
bucket name the API cannot create, and no bucket at all when events are off.

Aggregates are written by a tick after their window (5 s); most tests make
the in-process daemon write what is pending at once (``events.flush()``,
what its stop does) instead of sleeping; one test waits for the real tick.
"""

import json

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.integration.conftest import running_server
from tests.integration.helpers import assert_error, body_of

INIT = "init-secret"
AUTH = {"Authorization": f"Bearer {INIT}"}


def events_of(server):
    """The daemon's ``SystemEvents`` (``ReductAPI.events``)."""
    return server.site.router.events


async def system_records(server, entry, headers=AUTH):
    """``[(labels, body dict), ...]`` of ``$system`` entry ``entry``, through the API (v1 batch read)."""
    resp = await server.http.post(
        server.api(f"/b/$system/{entry}/q"), json.dumps({"query_type": "QUERY"}).encode(),
        headers=headers,
    )
    assert resp.code == 200, await body_of(resp)
    qid = json.loads(await body_of(resp))["id"]
    found = []
    while True:
        resp = await server.http.get(server.api(f"/b/$system/{entry}/batch?q={qid}"),
                                     headers=headers)
        body = await body_of(resp)
        if resp.code == 204:
            return found
        assert resp.code == 200, body
        offset = 0
        for name, values in sorted(resp.headers.getAllRawHeaders()):
            name = name.decode().lower()
            if not name.startswith("x-reduct-time-"):
                continue
            size, rest = values[0].decode().split(",", 1)
            content_type, _, labels = rest.partition(",")
            found.append((content_type, labels, json.loads(body[offset:offset + int(size)])))
            offset += int(size)
        if resp.headers.getRawHeaders(b"x-reduct-last") == [b"true"]:
            return found


@pytest_twisted.ensureDeferred
async def test_audit_record_fields_exact(tmp_path):
    """Three calls of one token on one path become one audit record with the §8.3 fields."""
    async with running_server(tmp_path / "data", api_token=INIT, instance_name="node.1") as server:
        for _ in range(3):
            resp = await server.http.get(server.api("/info?x=1"), headers=AUTH)
            assert resp.code == 200
            await body_of(resp)
        assert events_of(server).flush() >= 1
        records = await system_records(server, "audit/node_1/init-token")
    [(content_type, labels, body)] = [r for r in records if r[2]["path"] == "/api/v1/info"]
    assert content_type == "application/json"
    assert labels == "status=200"
    assert body.pop("duration") > 0
    assert isinstance(body.pop("timestamp"), int)
    assert body == {
        "instance": "node_1", "status": 200, "message": "", "token_name": "init-token",
        "method": "GET", "path": "/api/v1/info", "client_ip": "127.0.0.1", "call_count": 3,
    }


@pytest_twisted.ensureDeferred
async def test_audit_unauthorized_and_errors_and_skipped_paths(tmp_path):
    """401s are recorded as ``unauthorized`` with the error text; /alive and /ready never."""
    async with running_server(tmp_path / "data", api_token=INIT, instance_name="n") as server:
        await assert_error(await server.http.get(server.api("/info")), 401,
                           "No bearer token in request header")
        await assert_error(await server.http.get(server.api("/b/nope"), headers=AUTH), 404,
                           "Bucket 'nope' is not found")
        for path in ("/alive", "/ready"):
            await body_of(await server.http.get(server.api(path), headers=AUTH))
        events_of(server).flush()
        [(_, labels, unauth)] = await system_records(server, "audit/n/unauthorized")
        mine = await system_records(server, "audit/n/init-token")
    assert labels == "status=401"
    assert unauth["message"] == "No bearer token in request header"
    assert (unauth["token_name"], unauth["path"], unauth["status"]) == (
        "unauthorized", "/api/v1/info", 401)
    paths = {(b["path"], b["status"], b["message"]) for _, _, b in mine}
    assert ("/api/v1/b/nope", 404, "Bucket 'nope' is not found") in paths
    assert not any(p.endswith(("/alive", "/ready")) for p, _, _ in paths)


@pytest_twisted.ensureDeferred
async def test_audit_written_by_the_tick_after_five_seconds(tmp_path):
    """Without any flush, the aggregate appears after its 5 s window (as upstream's fixture waits 6 s)."""
    async with running_server(tmp_path / "data", instance_name="n") as server:
        await body_of(await server.http.get(server.api("/info")))
        await deferLater(reactor, 6.5, lambda: None)
        records = await system_records(server, "audit/n/AUTHENTICATION-DISABLED", headers={})
        resp = await server.http.get(server.api("/b/$system"))
        info = json.loads(await body_of(resp))
    assert [b["path"] for _, _, b in records][0] == "/api/v1/info"
    assert info["info"]["name"] == "$system"
    assert info["info"]["entry_count"] >= 1


@pytest_twisted.ensureDeferred
async def test_usage_record_and_last_access_survive_restart(tmp_path):
    """The stop writes usage/<instance>/total and per-bucket records; last_access is reloaded."""
    data = tmp_path / "data"
    async with running_server(data, instance_name="n") as server:
        resp = await server.http.post(server.api("/b/bkt"))
        assert resp.code == 200
        await body_of(resp)
        resp = await server.http.post(server.api("/b/bkt/e?ts=1"), b"x" * 1000)
        assert resp.code == 200
        await body_of(resp)
        resp = await server.http.get(server.api("/b/bkt/e?ts=1"))
        assert await body_of(resp) == b"x" * 1000
    async with running_server(data, instance_name="n") as server:
        events = events_of(server)
        assert events.last_access("AUTHENTICATION-DISABLED") is not None
        [(_, labels, total)] = await system_records(server, "usage/n/total", headers={})
        [(_, _, bucket)] = await system_records(server, "usage/n/bkt", headers={})
    assert labels == "status=200"
    assert total["write_bytes"] >= 1000 and total["records_written"] >= 1
    assert total["read_bytes"] >= 1000 and total["records_read"] >= 1
    assert total["bucket_count"] == 2  # bkt and $system
    assert total["storage_bytes"] > 0 and total["entry_count"] >= 1 and total["block_count"] >= 1
    assert set(total) >= {"timestamp", "instance", "status", "message", "duration"}
    assert bucket["bucket"] == "bkt"
    assert (bucket["write_bytes"], bucket["records_written"]) == (1000, 1)
    assert (bucket["read_bytes"], bucket["records_read"]) == (1000, 1)
    assert (bucket["entry_count"], bucket["block_count"]) == (1, 1)


@pytest_twisted.ensureDeferred
async def test_info_counts_system_and_quota_applied_at_creation(tmp_path):
    """/info counts $system once it exists; RS_SYSTEM_EVENTS_QUOTA_SIZE is its FIFO quota."""
    async with running_server(tmp_path / "data", system_events_quota_size=10_000_000) as server:
        before = json.loads(await body_of(await server.http.get(server.api("/info"))))
        assert before["bucket_count"] == 0
        events_of(server).flush()
        after = json.loads(await body_of(await server.http.get(server.api("/info"))))
        settings = json.loads(await body_of(await server.http.get(server.api("/b/$system"))))
        listed = json.loads(await body_of(await server.http.get(server.api("/list"))))
    assert after["bucket_count"] == 1 and after["usage"] > 0
    assert settings["settings"]["quota_type"] == "FIFO"
    assert settings["settings"]["quota_size"] == 10_000_000
    assert [b["name"] for b in listed["buckets"]] == ["$system"]


@pytest_twisted.ensureDeferred
async def test_not_creatable_through_the_api_and_recreated_after_removal(tmp_path):
    """POST /b/$system is a 422 (bucket name rules); a removed $system comes back with the next event."""
    async with running_server(tmp_path / "data") as server:
        await assert_error(await server.http.post(server.api("/b/$system")), 422,
                           "Bucket or entry name can contain only letters, digests and [-,_] symbols")
        events_of(server).flush()
        assert server.engine.has_bucket("$system")
        resp = await server.http.delete(server.api("/b/$system"))
        assert resp.code == 200
        await body_of(resp)
        assert not server.engine.has_bucket("$system")
        events_of(server).flush()
        assert server.engine.has_bucket("$system")


@pytest_twisted.ensureDeferred
async def test_disabled_writes_no_bucket(tmp_path):
    """RS_SYSTEM_EVENTS_ENABLED=false: no $system, before or after the stop."""
    data = tmp_path / "data"
    async with running_server(data, system_events_enabled=False) as server:
        await body_of(await server.http.get(server.api("/info")))
        assert not events_of(server).enabled
        assert events_of(server).last_access("AUTHENTICATION-DISABLED") is None
    async with running_server(data, system_events_enabled=False) as server:
        info = json.loads(await body_of(await server.http.get(server.api("/info"))))
        assert info["bucket_count"] == 0
        assert not server.engine.has_bucket("$system")


@pytest_twisted.ensureDeferred
async def test_replication_passes_recorded(tmp_path):
    """A replication between two buckets of the daemon: its passes become a replications/ record."""
    async with running_server(tmp_path / "data", instance_name="n") as server:
        for name in ("src", "dst"):
            resp = await server.http.post(server.api(f"/b/{name}"))
            assert resp.code == 200
            await body_of(resp)
        settings = {"src_bucket": "src", "dst_bucket": "dst", "dst_host": server.url}
        resp = await server.http.post(server.api("/replications/rep"),
                                      json.dumps(settings).encode())
        assert resp.code == 200, await body_of(resp)
        await body_of(resp)
        for ts in (1, 2, 3):
            resp = await server.http.post(server.api(f"/b/src/e?ts={ts}"), b"x" * 100)
            assert resp.code == 200
            await body_of(resp)
        runs = events_of(server).replication._runs  # the open aggregates
        for _ in range(200):  # until the sender has counted all three as delivered
            if "rep" in runs and runs["rep"].written == 3:
                break
            await deferLater(reactor, 0.05, lambda: None)
        events_of(server).flush()
        found = await system_records(server, "replications/n/rep", headers={})
    [(_, labels, body)] = found
    assert labels == "status=200"
    assert (body["status"], body["message"], body["written_records"], body["failed_records"]) == (
        200, "", 3, 0)
    assert body["replicated_data_size"] == 300 and body["pending_records"] == 0


def test_real_daemon_writes_events_at_sigterm_and_reads_them_after_restart(tmp_path):
    """
    ``twistd reduct`` (the service tree of tap.py): audited calls and the
    final usage event are written when SIGTERM stops it, before the storage
    closes; the next start serves them, and a SIGKILL right after writes
    leaves a daemon that starts and serves $system again (events are
    ordinary records: no new on-disk structure).
    """
    from tests.integration.daemon import Connection, Twistd

    data_path = tmp_path / "data"
    environ = {"RS_INSTANCE_NAME": "real", "RS_SYSTEM_EVENTS_QUOTA_SIZE": "1 MB"}
    daemon = Twistd(data_path, environ=environ)
    try:
        port = daemon.start()
        with Connection(port) as conn:
            assert conn.request("GET", "/api/v1/info").status == 200
            assert conn.request("GET", "/api/v1/info").status == 200
    finally:
        daemon.stop()
    assert daemon.alarms() == []
    daemon = Twistd(data_path, environ=environ)
    try:
        port = daemon.start()
        with Connection(port) as conn:
            settings = json.loads(conn.request("GET", "/api/v1/b/$system").body)
            names = {e["name"] for e in settings["entries"]}
            assert {"audit/real/AUTHENTICATION-DISABLED", "usage/real/total"} <= names
            assert (settings["settings"]["quota_type"], settings["settings"]["quota_size"]) == (
                "FIFO", 1_000_000)
            resp = conn.request("GET", "/api/v1/b/$system/audit/real/AUTHENTICATION-DISABLED")
            assert resp.status == 200
            assert json.loads(resp.body)["call_count"] == 2
    finally:
        daemon.kill()
    daemon = Twistd(data_path, environ=environ)
    try:
        port = daemon.start()
        with Connection(port) as conn:
            assert conn.request("GET", "/api/v1/b/$system").status == 200
        assert daemon.alarms() == []
    finally:
        daemon.stop()


@pytest_twisted.ensureDeferred
async def test_system_readable_only_with_exact_permission(tmp_path):
    """A wildcard read token gets 403 and no $system in /list; read: ["$system"] gets both (§4.3)."""
    async with running_server(tmp_path / "data", api_token=INIT) as server:
        events_of(server).flush()
        tokens = {}
        for name, read in (("wild", ["*"]), ("exact", ["$system"])):
            body = json.dumps({"full_access": False, "read": read, "write": []}).encode()
            resp = await server.http.post(server.api(f"/tokens/{name}"), body, headers=AUTH)
            assert resp.code == 200
            tokens[name] = {"Authorization": "Bearer " + json.loads(await body_of(resp))["value"]}
        events_of(server).flush()  # the audit of these calls creates $system
        resp = await server.http.get(server.api("/b/$system"), headers=AUTH)
        assert resp.code == 200
        await body_of(resp)
        resp = await server.http.get(server.api("/b/$system"), headers=tokens["wild"])
        assert resp.code == 403
        await body_of(resp)
        wild = json.loads(await body_of(await server.http.get(server.api("/list"),
                                                              headers=tokens["wild"])))
        resp = await server.http.get(server.api("/b/$system"), headers=tokens["exact"])
        assert resp.code == 200
        await body_of(resp)
        exact = json.loads(await body_of(await server.http.get(server.api("/list"),
                                                               headers=tokens["exact"])))
    assert "$system" not in [b["name"] for b in wild["buckets"]]
    assert "$system" in [b["name"] for b in exact["buckets"]]
