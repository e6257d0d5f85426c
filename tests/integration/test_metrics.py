"""
``{base}metrics`` (issue #18 item 2) against the real site over real
sockets: the deltas of a scrape before and after writes, batched writes,
reads, a batched read and a 404; the per-bucket figures against the bucket
API; FIFO evictions; replication and lifecycle counters; who may scrape
(authentication on and off, ``metrics_auth``, ``metrics = off``); the base
path; and a real ``twistd`` daemon.  Scrapes are parsed with
``prometheus_client``'s own parser.
"""

import json

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import running_server, start_server
from tests.integration.daemon import Connection, Twistd
from tests.integration.helpers import assert_error, body_of, call, ok, until
from tests.integration.test_batch import batch_request, new_query, read_batch
from tests.integration.test_lifecycles import BODY, HOUR_US, US, drive_lifecycles

TOKEN = "metrics-init-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RECORD = "/api/v1/b/<bucket>/<entry_path:entry>"
BATCH = RECORD + "/batch"


def parse(text: str) -> dict:
    """``{(sample name, ((label, value), ...)): value}`` of an exposition."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """The sample ``name{labels}``, 0 if absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(server, path="/metrics", headers=None) -> dict:
    resp = await server.http.get(server.url + path, headers=headers)
    body = await body_of(resp)
    assert resp.code == 200, (resp.code, body)
    assert resp.headers.getRawHeaders("content-type") == [
        "text/plain; version=0.0.4; charset=utf-8"]
    return parse(body.decode("utf-8"))


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def bucket_figures(server, bucket: str, headers=None) -> tuple:
    """``(size, records, entries)`` of ``bucket`` as ``GET /b/:bucket`` tells them."""
    info = json.loads(await ok(await call(server, "GET", f"/b/{bucket}", headers=headers)))
    records = sum(entry["record_count"] for entry in info["entries"])
    return info["info"]["size"], records, info["info"]["entry_count"]


@pytest_twisted.ensureDeferred
async def test_scrape_deltas_after_writes_batches_reads_and_a_404(server):
    await ok(await call(server, "POST", "/b/bkt"))
    before = await scrape(server)

    singles = {1: b"a" * 10, 2: b"b" * 20, 3: b"c" * 30}
    for ts, data in singles.items():
        await ok(await call(server, "POST", f"/b/bkt/e?ts={ts}", raw=data))
    batch = [(ts, b"%d" % ts * ts, "text/plain", {"k": "v"}) for ts in range(10, 14)]
    headers, body = batch_request(batch)
    resp = await server.http.post(server.api("/b/bkt/b/batch"), data=body, headers=headers)
    await ok(resp)
    resp = await server.http.get(server.api("/b/bkt/e?ts=2"))
    assert await ok(resp) == singles[2]
    qid = await new_query(server, "e")
    resp, records, last = await read_batch(server, "e", qid)
    assert resp.code == 200 and len(records) == 3 and last
    await assert_error(await call(server, "GET", "/nowhere"), 404, "Not found")

    after = await scrape(server)
    requests = "reduct_http_requests_total"
    assert delta(before, after, requests, route=RECORD, method="POST", code="200") == 3
    assert delta(before, after, requests, route=BATCH, method="POST", code="200") == 1
    assert delta(before, after, requests, route=RECORD, method="GET", code="200") == 1
    assert delta(before, after, requests, route=RECORD + "/q", method="GET", code="200") == 1
    assert delta(before, after, requests, route=BATCH, method="GET", code="200") == 1
    assert delta(before, after, requests, route="unmatched", method="GET", code="404") == 1
    # the first scrape itself
    assert delta(before, after, requests, route="/metrics", method="GET", code="200") == 1
    assert not any(name == requests and "/nowhere" in str(labels)
                   for name, labels in after)

    latency = "reduct_http_request_duration_seconds"
    assert delta(before, after, latency + "_count", route=RECORD, method="POST") == 3
    assert delta(before, after, latency + "_bucket", route=RECORD, method="POST",
                 le="+Inf") == 3
    assert delta(before, after, latency + "_sum", route=RECORD, method="POST") > 0

    assert delta(before, after, "reduct_http_request_body_bytes_total",
                 route=RECORD, method="POST") == 60
    assert delta(before, after, "reduct_http_request_body_bytes_total",
                 route=BATCH, method="POST") == len(body)
    assert delta(before, after, "reduct_http_response_body_bytes_total",
                 route=RECORD, method="GET") == 20
    assert delta(before, after, "reduct_http_response_body_bytes_total",
                 route=BATCH, method="GET") == 60

    # records and bytes in and out of the bucket, a batch counted by its records
    bucket = {"bucket": "bkt"}
    assert delta(before, after, "reduct_bucket_records_written_total", **bucket) == 7
    assert delta(before, after, "reduct_bucket_written_bytes_total", **bucket) == \
        60 + sum(len(r[1]) for r in batch)
    assert delta(before, after, "reduct_bucket_records_read_total", **bucket) == 1 + 3
    assert delta(before, after, "reduct_bucket_read_bytes_total", **bucket) == 20 + 60

    size, records, entries = await bucket_figures(server, "bkt")
    assert value(after, "reduct_bucket_size_bytes", **bucket) == size > 0
    assert value(after, "reduct_bucket_records", **bucket) == records == 7
    assert value(after, "reduct_bucket_entries", **bucket) == entries == 2

    # sync policy always: every write was made durable by a group-sync round
    assert delta(before, after, "reduct_sync_round_seconds_count") >= 1
    assert delta(before, after, "reduct_sync_round_writes_total") >= 4
    assert value(after, "reduct_http_open_connections") >= 1
    assert value(after, "reduct_build_info", version=_version()) == 1


def _version() -> str:
    from reduct_twisted import REDUCT_VERSION

    return REDUCT_VERSION


@pytest_twisted.ensureDeferred
async def test_bucket_figures_follow_the_bucket_api_through_fifo_evictions(server):
    settings = {"quota_type": "FIFO", "quota_size": 2000, "max_block_records": 2}
    await ok(await call(server, "POST", "/b/fifo", settings))
    for ts in range(1, 21):
        await ok(await call(server, "POST", f"/b/fifo/e?ts={ts}", raw=b"x" * 200))
    samples = await scrape(server)
    size, records, _ = await bucket_figures(server, "fifo")
    bucket = {"bucket": "fifo"}
    assert value(samples, "reduct_bucket_size_bytes", **bucket) == size <= 2000
    assert value(samples, "reduct_bucket_records", **bucket) == records < 20
    evicted = value(samples, "reduct_bucket_quota_evicted_records_total", **bucket)
    assert evicted + records == 20
    assert value(samples, "reduct_bucket_quota_evicted_blocks_total", **bucket) == evicted / 2
    assert value(samples, "reduct_bucket_quota_evicted_bytes_total", **bucket) >= evicted * 200
    assert value(samples, "reduct_bucket_records_written_total", **bucket) == 20


@pytest_twisted.ensureDeferred
async def test_authentication_on_needs_a_valid_token(tmp_path):
    async with running_server(tmp_path / "data", api_token=TOKEN) as server:
        for path in ("/metrics", "/api/v1/metrics"):
            resp = await server.http.get(server.url + path)
            await assert_error(resp, 401, "No bearer token in request header")
            resp = await server.http.get(server.url + path,
                                         headers={"Authorization": ["Bearer wrong"]})
            await assert_error(resp, 401, "Invalid token")
            await scrape(server, path, headers=AUTH)
        # any valid token will do, whatever its permissions
        body = {"permissions": {"full_access": False, "read": [], "write": []}}
        created = json.loads(await ok(await call(server, "POST", "/tokens/scraper", body,
                                                  headers=AUTH)))
        samples = await scrape(server, headers={"Authorization": [f"Bearer {created['value']}"]})
        # refusals are counted like any answer: two per path above
        for route in ("/metrics", "/api/v1/metrics"):
            assert value(samples, "reduct_http_requests_total", route=route, method="GET",
                         code="401") == 2


@pytest_twisted.ensureDeferred
async def test_metrics_auth_off_lets_anyone_scrape(tmp_path):
    async with running_server(tmp_path / "data", api_token=TOKEN, metrics_auth=False) as server:
        await scrape(server)
        await scrape(server, "/api/v1/metrics")
        # the rest of the API still needs the token
        await assert_error(await call(server, "GET", "/info"), 401,
                           "No bearer token in request header")


@pytest_twisted.ensureDeferred
async def test_metrics_off_is_no_route(tmp_path):
    async with running_server(tmp_path / "data", metrics=False) as server:
        assert server.site.metrics is None
        for path in ("/metrics", "/api/v1/metrics"):
            await assert_error(await server.http.get(server.url + path), 404, "Not found")
        await ok(await call(server, "GET", "/info"))


@pytest_twisted.ensureDeferred
async def test_served_under_the_base_path(tmp_path):
    async with running_server(tmp_path / "data", api_base_path="/reduct/") as server:
        await assert_error(await server.http.get(server.url + "/metrics"), 404, "Not found")
        samples = await scrape(server, "/reduct/metrics")
        assert value(samples, "reduct_http_requests_total", route="unmatched", method="GET",
                     code="404") == 1
        # the route label is the table's pattern, whatever the base path
        await ok(await server.http.post(server.url + "/reduct/api/v1/b/bkt"))
        samples = await scrape(server, "/reduct/api/v1/metrics")
        assert value(samples, "reduct_http_requests_total", route="/api/v1/b/<bucket>",
                     method="POST", code="200") == 1


@pytest_twisted.ensureDeferred
async def test_openmetrics_when_asked(server):
    resp = await server.http.get(server.url + "/metrics",
                                 headers={"Accept": ["application/openmetrics-text"]})
    body = await ok(resp)
    assert resp.headers.getRawHeaders("content-type")[0].startswith(
        "application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")


@pytest_twisted.ensureDeferred
async def test_replication_pending_sent_and_errors(tmp_path):
    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst")
    try:
        await ok(await call(src, "POST", "/b/src"))
        settings = {"src_bucket": "src", "dst_bucket": "dst", "dst_host": dst.url}
        await ok(await call(src, "POST", "/replications/r", settings))
        for ts in (1, 2, 3):
            await ok(await call(src, "POST", f"/b/src/e?ts={ts}", raw=b"x"))

        # the destination bucket is missing: refused (404), the records wait
        async def refused():
            samples = await scrape(src)
            return value(samples, "reduct_replication_errors_total", replication="r",
                         status="404") > 0
        await until(refused)
        samples = await scrape(src)
        assert value(samples, "reduct_replication_pending_records", replication="r") == 3
        assert value(samples, "reduct_replication_active", replication="r") == 0
        assert value(samples, "reduct_replication_sent_records_total", replication="r") == 0

        await ok(await call(dst, "POST", "/b/dst"))

        async def delivered():
            samples = await scrape(src)
            return value(samples, "reduct_replication_sent_records_total", replication="r") == 3
        await until(delivered)
        samples = await scrape(src)
        assert value(samples, "reduct_replication_pending_records", replication="r") == 0
        assert value(samples, "reduct_replication_active", replication="r") == 1
    finally:
        await stop_src()
        await stop_dst()


@pytest_twisted.ensureDeferred
async def test_lifecycle_runs_are_counted(tmp_path):
    server, stop = await start_server(tmp_path / "data")
    try:
        clock, events = drive_lifecycles(server)
        now = int(clock.seconds() * US)
        await ok(await call(server, "POST", "/b/bkt"))
        for i in range(5):
            await ok(await call(server, "POST", f"/b/bkt/e?ts={now - 5 * HOUR_US + i}",
                                raw=b"old"))
        await ok(await call(server, "POST", "/lifecycles/clean", BODY))
        labels = {"lifecycle": "clean", "type": "delete", "status": "200"}
        assert value(await scrape(server), "reduct_lifecycle_runs_total", **labels) == 0
        ran = events.next()
        clock.advance(600)
        await ran
        samples = await scrape(server)
        assert value(samples, "reduct_lifecycle_runs_total", **labels) == 1
        assert value(samples, "reduct_lifecycle_processed_records_total", **labels) == 5
        assert value(samples, "reduct_bucket_records", bucket="bkt") == 0
    finally:
        await stop()


@pytest.mark.slow
def test_real_daemon_serves_metrics_with_authentication(tmp_path):
    """``twistd -n reduct`` wires /metrics the same way, behind its token."""
    daemon = Twistd(tmp_path / "data", environ={"RS_API_TOKEN": TOKEN})
    try:
        port = daemon.start()
        token = [("Authorization", f"Bearer {TOKEN}")]
        with Connection(port) as conn:
            assert conn.request("GET", "/metrics").status == 401
            assert conn.request("POST", "/api/v1/b/b", headers=token).status == 200
            assert conn.request("POST", "/api/v1/b/b/e?ts=1", b"abc", headers=token).status == 200
            resp = conn.request("GET", "/metrics", headers=token)
        assert resp.status == 200
        samples = parse(resp.body.decode("utf-8"))
        assert value(samples, "reduct_http_requests_total", route="/metrics", method="GET",
                     code="401") == 1
        assert value(samples, "reduct_http_requests_total", route=RECORD, method="POST",
                     code="200") == 1
        assert value(samples, "reduct_bucket_records", bucket="b") == 1
        assert value(samples, "reduct_bucket_written_bytes_total", bucket="b") == 3
        assert value(samples, "process_resident_memory_bytes") > 0
        assert daemon.alarms() == []
    finally:
        daemon.stop()
