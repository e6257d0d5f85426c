"""
Lifecycle policies over real sockets (spec 1.20 §7): the six routes, every
error text with its ``x-reduct-error`` header and JSON body, bodies refused
before the token, provisioned policies, persistence across a restart, and
runs that really delete and compress old records.

The runs are timed by the in-process server's lifecycle clock, which these
tests replace with a ``task.Clock`` set to the wall time before any policy
exists (``LifecycleManager.runtime.clock``: an attribute of the in-process
object, nothing a user of the daemon can reach); a run's slices still go
through the real reactor, and the run is awaited through a recording event
sink in place of the server's (``runtime.events``).
"""

import json
import time
from datetime import datetime

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer

from reduct_twisted.interfaces import ISystemEvents
from tests.integration.conftest import start_server
from tests.integration.helpers import assert_error, call, ok

TOKEN = "lifecycle-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
US = 1_000_000
HOUR_US = 3600 * US
BODY = {"type": "delete", "bucket": "bkt", "older_than": "2h", "interval": "10m"}


@implementer(ISystemEvents)
class WaitableEvents:
    """Keeps the lifecycle events; :meth:`next` fires with the next one."""

    enabled = False

    def __init__(self):
        self.events = []
        self._waiting = []

    def emit(self, stream, name, timestamp, status, message, payload):
        self.events.append((stream, name, timestamp, status, message, payload))
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self.events[-1])

    def next(self) -> Deferred:
        d = Deferred()
        self._waiting.append(d)
        return d.addTimeout(30, _reactor())

    def last_access(self, token_name):
        return None


def _reactor():
    from twisted.internet import reactor

    return reactor


def drive_lifecycles(server):
    """Give the server's lifecycle policies a Clock at the wall time; :return: it, the events."""
    manager = server.parts.lifecycles
    clock = Clock()
    clock.advance(time.time())
    events = WaitableEvents()
    manager.runtime.clock = clock
    manager.runtime.events = events
    return clock, events


async def make_bucket(server, name="bkt", **settings):
    await ok(await call(server, "POST", f"/b/{name}", settings or None, headers=AUTH))


async def write(server, entry, ts, data=b"x", bucket="bkt", labels=None):
    headers = dict(AUTH, **{f"x-reduct-label-{k}": v for k, v in (labels or {}).items()})
    await ok(await call(server, "POST", f"/b/{bucket}/{entry}?ts={ts}", raw=data,
                        headers=headers))


async def stamps(server, entry, bucket="bkt"):
    resp = await call(server, "POST", f"/b/{bucket}/{entry}/q", {"query_type": "QUERY"},
                      headers=AUTH)
    qid = json.loads(await ok(resp))["id"]
    found = []
    while True:
        resp = await server.http.get(server.api(f"/b/{bucket}/{entry}/batch?q={qid}"),
                                     headers={"Authorization": [f"Bearer {TOKEN}"]})
        body = await resp.content()
        if resp.code == 204:
            return found
        assert resp.code == 200, body
        found += sorted(int(name[len(b"x-reduct-time-"):])
                        for name, _ in resp.headers.getAllRawHeaders()
                        if name.lower().startswith(b"x-reduct-time-"))
        if resp.headers.getRawHeaders("x-reduct-last") == ["true"]:
            return found


@pytest_twisted.async_yield_fixture()
async def authed(tmp_path):
    srv, stop = await start_server(tmp_path / "data", api_token=TOKEN)
    yield srv
    await stop()


@pytest_twisted.ensureDeferred
async def test_crud(authed):
    server = authed
    await make_bucket(server)
    for name in ("zeta", "alpha"):
        assert await ok(await call(server, "POST", f"/lifecycles/{name}", BODY,
                                   headers=AUTH)) == b""
    # reduct-py sends "interval": null and 1.21's processing_interval.
    body = dict(BODY, interval=None, processing_interval=None, entries=["cam-*"],
                when={"&kind": {"$eq": "raw"}}, older_than="1d 12h")
    await ok(await call(server, "POST", "/lifecycles/mid", body, headers=AUTH))
    listed = json.loads(await ok(await call(server, "GET", "/lifecycles", headers=AUTH)))
    assert [i["name"] for i in listed["lifecycles"]] == ["alpha", "mid", "zeta"]
    assert listed["lifecycles"][0] == {"name": "alpha", "is_provisioned": False,
                                       "is_running": True, "type": "delete",
                                       "mode": "enabled", "last_run": None}
    got = json.loads(await ok(await call(server, "GET", "/lifecycles/mid", headers=AUTH)))
    assert got == {
        "info": {"name": "mid", "is_provisioned": False, "is_running": True,
                 "type": "delete", "mode": "enabled", "last_run": None},
        "settings": {"type": "delete", "bucket": "bkt", "entries": ["cam-*"],
                     "older_than": "1d 12h", "interval": "3600s",
                     "when": {"&kind": {"$eq": "raw"}}, "mode": "enabled"},
    }
    await ok(await call(server, "PUT", "/lifecycles/mid",
                        dict(BODY, type="compress", mode="dry_run"), headers=AUTH))
    await ok(await call(server, "PATCH", "/lifecycles/mid/mode", {"mode": "disabled"},
                        headers=AUTH))
    got = json.loads(await ok(await call(server, "GET", "/lifecycles/mid", headers=AUTH)))
    assert (got["info"]["type"], got["info"]["mode"], got["settings"]["mode"],
            got["settings"]["interval"]) == ("compress", "disabled", "disabled", "10m")
    await ok(await call(server, "DELETE", "/lifecycles/mid", headers=AUTH))
    await assert_error(await call(server, "GET", "/lifecycles/mid", headers=AUTH), 404,
                       "Lifecycle 'mid' does not exist")
    on_disk = json.loads((server.data_path / ".lifecycles").read_text())
    assert [i["name"] for i in on_disk["lifecycles"]] == ["alpha", "zeta"]


@pytest_twisted.ensureDeferred
async def test_error_texts(authed):
    server = authed
    await make_bucket(server)
    await ok(await call(server, "POST", "/lifecycles/p", BODY, headers=AUTH))
    cases = [
        ("POST", "/lifecycles/p", BODY, 409, "Lifecycle 'p' already exists"),
        ("GET", "/lifecycles/q", None, 404, "Lifecycle 'q' does not exist"),
        ("PUT", "/lifecycles/q", BODY, 404, "Lifecycle 'q' does not exist"),
        ("PATCH", "/lifecycles/q/mode", {"mode": "enabled"}, 404,
         "Lifecycle 'q' does not exist"),
        ("DELETE", "/lifecycles/q", None, 404, "Lifecycle 'q' does not exist"),
        ("POST", "/lifecycles/n", dict(BODY, bucket="nope"), 404,
         "Bucket 'nope' for lifecycle 'n' does not exist"),
        ("POST", "/lifecycles/n", dict(BODY, older_than="30days"), 422,
         "Invalid lifecycle older_than '30days': [UnprocessableEntity] "
         "Invalid duration unit: days"),
        ("POST", "/lifecycles/n", dict(BODY, older_than="59m"), 422,
         "Lifecycle older_than '59m' is shorter than minimum allowed value of 1h"),
        ("PUT", "/lifecycles/p", dict(BODY, interval="ten"), 422,
         "Invalid lifecycle interval 'ten': [UnprocessableEntity] Invalid duration value: ten"),
        ("POST", "/lifecycles/n", dict(BODY, interval="5m"), 422,
         "Lifecycle interval '5m' is shorter than minimum allowed value of 10m"),
        ("POST", "/lifecycles/n", dict(BODY, type="compress", when={}), 422,
         "Lifecycle type 'compress' does not support 'when' condition"),
        ("POST", "/lifecycles/n", dict(BODY, when={"$bad": 1}), 422,
         "Invalid lifecycle condition: Operator '$bad' not supported"),
        ("POST", "/lifecycles/n", dict(BODY, when={"#ext": {}}), 422,
         "Lifecycle condition cannot use '#ext' directive"),
        ("POST", "/lifecycles/n", dict(BODY, type="archive"), 422,
         "Invalid JSON: unknown variant `archive`, expected `delete` or `compress`"),
        ("POST", "/lifecycles/n", {"bucket": "bkt", "older_than": "2h"}, 422,
         "Invalid JSON: missing field `type`"),
        ("PATCH", "/lifecycles/p/mode", {"mode": "paused"}, 422,
         "Invalid JSON: unknown variant `paused`, expected one of `enabled`, `disabled`, "
         "`dry_run`"),
    ]
    for method, path, body, status, message in cases:
        await assert_error(await call(server, method, path, body, headers=AUTH), status, message)
    for name in ("a%20b", "%00", "x" * 256, "..", "%C3%BC"):
        await assert_error(await call(server, "POST", f"/lifecycles/{name}", BODY, headers=AUTH),
                           422, "Bucket or entry name can contain only letters, digests and "
                                "[-,_] symbols")
    await assert_error(await call(server, "POST", "/lifecycles/n", raw=b"\xff\xfe",
                                  headers=AUTH), 422, "Invalid body")
    await assert_error(await call(server, "POST", "/lifecycles/n", raw=b"{", headers=AUTH),
                       422, "Invalid JSON: Expecting property name enclosed in double quotes: "
                            "line 1 column 2 (char 1)")
    # Nothing of the refused requests was stored or changed.
    listed = json.loads(await ok(await call(server, "GET", "/lifecycles", headers=AUTH)))
    assert [i["name"] for i in listed["lifecycles"]] == ["p"]
    got = json.loads(await ok(await call(server, "GET", "/lifecycles/p", headers=AUTH)))
    assert got["settings"] == dict(BODY, entries=[], when=None, mode="enabled")


@pytest_twisted.ensureDeferred
async def test_bodies_are_parsed_before_the_token_and_full_access_is_needed(authed):
    server = authed
    await make_bucket(server)
    await assert_error(await call(server, "POST", "/lifecycles/n", raw=b"[1"), 422,
                       "Invalid JSON: Expecting ',' delimiter: line 1 column 3 (char 2)")
    await assert_error(await call(server, "PATCH", "/lifecycles/n/mode", {"mode": 1}), 422,
                       "Invalid JSON: invalid type: integer `1`, expected a string")
    resp = await call(server, "POST", "/tokens/reader", raw=b'{"read": ["bkt"]}', headers=AUTH)
    reader = {"Authorization": "Bearer " + json.loads(await ok(resp))["value"]}
    for method, path, body in [("GET", "/lifecycles", None), ("GET", "/lifecycles/n", None),
                               ("POST", "/lifecycles/n", BODY), ("PUT", "/lifecycles/n", BODY),
                               ("DELETE", "/lifecycles/n", None),
                               ("PATCH", "/lifecycles/n/mode", {"mode": "enabled"})]:
        await assert_error(await call(server, method, path, body), 401,
                           "No bearer token in request header")
        await assert_error(await call(server, method, path, body, headers=reader), 403,
                           "Token 'reader' doesn't have full access")
    assert server.parts.lifecycles.list() == []


@pytest_twisted.ensureDeferred
async def test_provisioned_policies(tmp_path):
    environ = {"RS_BUCKET_A_NAME": "bkt", "RS_LIFECYCLE_A_NAME": "env",
               "RS_LIFECYCLE_A_TYPE": "delete", "RS_LIFECYCLE_A_BUCKET": "bkt",
               "RS_LIFECYCLE_A_OLDER_THAN": "7d", "RS_LIFECYCLE_A_ENTRIES": "a,b*",
               "RS_LIFECYCLE_B_NAME": "broken", "RS_LIFECYCLE_B_TYPE": "delete",
               "RS_LIFECYCLE_B_BUCKET": "missing", "RS_LIFECYCLE_B_OLDER_THAN": "7d"}
    server, stop = await start_server(tmp_path / "data", environ)
    try:
        listed = json.loads(await ok(await call(server, "GET", "/lifecycles")))
        assert listed["lifecycles"] == [{"name": "env", "is_provisioned": True,
                                         "is_running": True, "type": "delete",
                                         "mode": "enabled", "last_run": None}]
        got = json.loads(await ok(await call(server, "GET", "/lifecycles/env")))
        assert got["settings"]["entries"] == ["a", "b*"]
        await assert_error(await call(server, "PUT", "/lifecycles/env", BODY), 409,
                           "Can't update provisioned lifecycle 'env'")
        await assert_error(await call(server, "DELETE", "/lifecycles/env"), 409,
                           "Can't remove provisioned lifecycle 'env'")
        await ok(await call(server, "PATCH", "/lifecycles/env/mode", {"mode": "dry_run"}))
    finally:
        await stop()
    # Restarted with the same variables (no _MODE): the mode set by PATCH stays.
    server, stop = await start_server(tmp_path / "data", environ)
    try:
        got = json.loads(await ok(await call(server, "GET", "/lifecycles/env")))
        assert got["info"]["mode"] == "dry_run" and got["info"]["is_provisioned"] is True
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_policies_survive_a_restart(tmp_path):
    server, stop = await start_server(tmp_path / "data")
    try:
        await make_bucket(server)
        await ok(await call(server, "POST", "/lifecycles/keep", dict(BODY, mode="dry_run")))
        await ok(await call(server, "POST", "/lifecycles/gone", BODY))
        await ok(await call(server, "DELETE", "/lifecycles/gone"))
    finally:
        await stop()
    server, stop = await start_server(tmp_path / "data")
    try:
        listed = json.loads(await ok(await call(server, "GET", "/lifecycles")))
        assert listed["lifecycles"] == [{"name": "keep", "is_provisioned": False,
                                         "is_running": True, "type": "delete",
                                         "mode": "dry_run", "last_run": None}]
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_a_delete_run_removes_old_records(tmp_path):
    server, stop = await start_server(tmp_path / "data")
    try:
        clock, events = drive_lifecycles(server)
        now = int(clock.seconds() * US)
        await make_bucket(server)
        old = [now - 5 * HOUR_US + i for i in range(50)]
        young = [now - HOUR_US, now]
        for ts in old + young:
            await write(server, "cam-1", ts, labels={"kind": "raw"})
        await write(server, "cam-2/raw", old[0], labels={"kind": "keep"})
        await write(server, "other", old[0])
        await ok(await call(server, "POST", "/lifecycles/clean",
                            dict(BODY, entries=["cam-*"], when={"&kind": {"$ne": "keep"}})))
        await ok(await call(server, "POST", "/lifecycles/count",
                            dict(BODY, mode="dry_run", entries=["other"])))
        ran = events.next()
        clock.advance(600)
        await ran
        while len(events.events) < 2:
            await events.next()
        by_name = {e[1]: e for e in events.events}
        assert by_name["clean"][3:5] == (200, "")
        assert by_name["clean"][5]["processed_records"] == 50
        assert by_name["count"][5]["processed_records"] == 1
        assert await stamps(server, "cam-1") == young
        assert await stamps(server, "cam-2/raw") == [old[0]]
        assert await stamps(server, "other") == [old[0]]
        got = json.loads(await ok(await call(server, "GET", "/lifecycles/clean")))
        last_run = datetime.strptime(got["info"]["last_run"], "%Y-%m-%dT%H:%M:%S.%f%z")
        assert abs(last_run.timestamp() - clock.seconds()) < 0.001
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_a_compress_run_keeps_every_record_readable(tmp_path):
    server, stop = await start_server(tmp_path / "data")
    try:
        clock, events = drive_lifecycles(server)
        now = int(clock.seconds() * US)
        await make_bucket(server, max_block_records=4)
        contents = {}
        for i in range(10):
            ts = now - 5 * HOUR_US + i
            contents[ts] = (b"lifecycle %d " % i) * 500
            await write(server, "e", ts, contents[ts])
        await write(server, "e", now, b"young")
        before = json.loads(await ok(await call(server, "GET", "/b/bkt")))["info"]["size"]
        await ok(await call(server, "POST", "/lifecycles/pack", dict(BODY, type="compress")))
        ran = events.next()
        clock.advance(600)
        event = await ran
        assert event[3] == 200 and event[5]["action_type"] == "compress"
        # Blocks of 4 records: the two full ones are old; the third is still written to.
        assert (event[5]["processed_records"], event[5]["processed_blocks"]) == (8, 2)
        after = json.loads(await ok(await call(server, "GET", "/b/bkt")))["info"]["size"]
        assert after < before / 2
        for ts, data in contents.items():
            resp = await server.http.get(server.api(f"/b/bkt/e?ts={ts}"))
            assert await resp.content() == data and resp.code == 200
    finally:
        await stop()
