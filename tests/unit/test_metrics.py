"""
Unit tests of ``reduct_twisted.metrics`` and the counters it reads: the
per-request accumulator and its families, the group-sync observer, the
engine traffic totals, the replication totals.  Socket-level behaviour is
``tests/integration/test_metrics.py``.
"""

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from reduct_twisted.errors import InternalError
from reduct_twisted.metrics import LATENCY_BUCKETS, Metrics, RequestStats
from reduct_twisted.replication.diagnostics import DiagnosticsCounter
from reduct_twisted.storage.traffic import Traffic
from reduct_twisted.sync import GroupSync

PATTERNS = {"write_record": "/api/v1/b/<bucket>/<entry_path:entry>",
            "info_v0": "/info"}


class FakeEngine:
    is_open = True

    def __init__(self):
        self.traffic = Traffic()
        self.stats = []

    def bucket_stats(self):
        return self.stats


def samples(metrics: Metrics) -> dict:
    body, content_type = metrics.render()
    assert content_type == b"text/plain; version=0.0.4; charset=utf-8"
    found = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def request(route, method=b"GET", code=200, started=10.0, received=0, sent=0):
    return SimpleNamespace(route=route, method=method, code=code, reduct_started=started,
                           received=received, sentLength=sent)


def test_requests_by_route_pattern_method_and_code():
    metrics = Metrics(PATTERNS, FakeEngine(), process=False)
    metrics.request_done(request("write_record", b"POST", 200, received=5), 10.002)
    metrics.request_done(request("write_record", b"POST", 200, received=7), 10.004)
    metrics.request_done(request("write_record", b"POST", 409, received=1), 10.0015)
    metrics.request_done(request("info_v0", sent=30), 10.0001)
    metrics.request_done(request(None, b"BREW", 404, sent=22), 10.0)
    found = samples(metrics)
    route = PATTERNS["write_record"]

    def get(name, **labels):
        return found.get((name, tuple(sorted(labels.items()))))

    assert get("reduct_http_requests_total", route=route, method="POST", code="200") == 2
    assert get("reduct_http_requests_total", route=route, method="POST", code="409") == 1
    assert get("reduct_http_requests_total", route="/info", method="GET", code="200") == 1
    # no route took it, and an unknown method is OTHER: no label from the request's text
    assert get("reduct_http_requests_total", route="unmatched", method="OTHER", code="404") == 1
    assert not any("BREW" in str(key) for key in found)
    # one histogram per route and method, every status code in it
    duration = "reduct_http_request_duration_seconds"
    assert get(duration + "_count", route=route, method="POST") == 3
    assert abs(get(duration + "_sum", route=route, method="POST") - 0.0075) < 1e-9
    assert get(duration + "_bucket", route=route, method="POST", le="0.001") == 0
    assert get(duration + "_bucket", route=route, method="POST", le="0.0025") == 2
    assert get(duration + "_bucket", route=route, method="POST", le="0.005") == 3
    assert get(duration + "_bucket", route=route, method="POST", le="+Inf") == 3
    assert get("reduct_http_request_body_bytes_total", route=route, method="POST") == 13
    assert get("reduct_http_response_body_bytes_total", route="/info", method="GET") == 30
    assert get("reduct_http_response_body_bytes_total", route="unmatched",
               method="OTHER") == 22


def test_latency_bucket_bounds_are_inclusive():
    """A request of exactly a bound's seconds is in that bound's bucket (``le``)."""
    stats = RequestStats()
    for seconds in LATENCY_BUCKETS:
        stats.add("x", b"GET", 200, seconds, 0, 0)
    stats.add("x", b"GET", 200, LATENCY_BUCKETS[-1] * 2, 0, 0)
    stats.add("x", b"GET", 200, -1.0, 0, 0)  # a clock step backwards: the first bucket
    (row,) = stats.rows.values()
    assert row[4:] == [2] + [1] * (len(LATENCY_BUCKETS) - 1) + [1]


def test_request_without_a_start_counts_zero_seconds():
    metrics = Metrics({}, FakeEngine(), process=False)
    req = request("me")
    del req.reduct_started
    metrics.request_done(req, 99.0)
    assert metrics.requests.rows[("me", b"GET", 200)][:2] == [1, 0.0]


def test_two_daemons_in_one_process_keep_their_own_series():
    first, second = Metrics({}, FakeEngine()), Metrics({}, FakeEngine())
    first.request_done(request("a"), 10.0)
    assert ("reduct_http_requests_total",
            (("code", "200"), ("method", "GET"), ("route", "a"))) in samples(first)
    assert not any(name == "reduct_http_requests_total" for name, _ in samples(second))
    assert any(name == "process_resident_memory_bytes" for name, _ in samples(second))


def test_bucket_figures_are_read_when_scraped():
    engine = FakeEngine()
    metrics = Metrics({}, engine, process=False)
    assert not any(name.startswith("reduct_bucket") for name, _ in samples(metrics))
    engine.stats = [{"name": "b", "size": 100, "entry_count": 2, "record_count": 7,
                     "evicted": [1, 3, 40]}]
    engine.traffic.wrote("b", 10)
    engine.traffic.read("b", 25, records=5)
    found = samples(metrics)
    b = (("bucket", "b"),)
    assert found["reduct_bucket_size_bytes", b] == 100
    assert found["reduct_bucket_records", b] == 7
    assert found["reduct_bucket_entries", b] == 2
    assert found["reduct_bucket_quota_evicted_blocks_total", b] == 1
    assert found["reduct_bucket_quota_evicted_records_total", b] == 3
    assert found["reduct_bucket_quota_evicted_bytes_total", b] == 40
    assert found["reduct_bucket_written_bytes_total", b] == 10
    assert found["reduct_bucket_records_written_total", b] == 1
    assert found["reduct_bucket_read_bytes_total", b] == 25
    assert found["reduct_bucket_records_read_total", b] == 5
    engine.is_open = False  # closed: nothing read from it
    assert not any(name.startswith("reduct_bucket") for name, _ in samples(metrics))


def test_traffic_totals_survive_takes():
    """The usage events take (and reset) the traffic; the totals keep adding up."""
    traffic = Traffic()
    traffic.wrote("a", 10)
    traffic.read("a", 4, records=2)
    assert traffic.take() == {"a": {"write_bytes": 10, "read_bytes": 4, "records_written": 1,
                                    "records_read": 2}}
    traffic.wrote("a", 5)
    traffic.wrote("b", 1)
    assert traffic.totals() == {"a": [15, 4, 2, 2], "b": [1, 0, 1, 0]}
    traffic.take()
    assert traffic.take() == {}
    assert traffic.totals() == {"a": [15, 4, 2, 2], "b": [1, 0, 1, 0]}


def test_group_sync_tells_its_observer_of_every_round():
    times = iter([1.0, 1.25, 2.0, 2.5])
    calls = []

    def run_in_thread(f, files, directories):
        d = Deferred()
        calls.append(d)
        return d

    group = GroupSync(lambda: (set(), set()), run_in_thread, timer=lambda: next(times))
    seen = []
    group.observer = lambda *args: seen.append(args)
    first = group.wait()
    later = [group.wait(), group.wait()]  # both served by the next round
    calls[0].callback(None)
    assert seen == [(0.25, 1, False)]
    errors = []
    for d in later:
        d.addErrback(lambda f: errors.append(f.check(InternalError)))
    calls[1].errback(OSError(5, "EIO"))
    assert seen == [(0.25, 1, False), (0.5, 2, True)]
    assert first.result is None and errors == [InternalError, InternalError]


def test_sync_rounds_in_the_registry():
    metrics = Metrics({}, FakeEngine(), process=False)
    metrics.sync_round(0.003, 4, False)
    metrics.sync_round(0.2, 1, True)
    found = samples(metrics)
    assert found["reduct_sync_round_seconds_count", ()] == 2
    assert found["reduct_sync_round_seconds_bucket", (("le", "0.005"),)] == 1
    assert found["reduct_sync_round_writes_total", ()] == 5
    assert found["reduct_sync_round_failures_total", ()] == 1


def test_replication_totals_outlive_the_hourly_window():
    clock = Clock()
    counter = DiagnosticsCounter(clock)
    counter.ok(3)
    counter.errored(404, "Bucket 'dst' is not found", 2)
    counter.errored(-3, "Connection refused")
    clock.advance(2 * 3600)
    assert counter.hourly()["ok"] == 0
    assert (counter.sent_total, counter.errors_total) == (3, {404: 2, -3: 1})


def test_replication_and_lifecycle_collectors():
    replications = SimpleNamespace(stats=lambda: [
        {"name": "r", "active": False, "pending": 4, "sent": 9, "errors": {-3: 2, 404: 1}}])
    lifecycles = SimpleNamespace(runtime=SimpleNamespace(
        runs={("clean", "delete", 200): [3, 50], ("clean", "delete", 500): [1, 0]}))
    found = samples(Metrics({}, FakeEngine(), replications, lifecycles,
                            SimpleNamespace(open_connections=5), process=False))
    r = (("replication", "r"),)
    assert found["reduct_replication_pending_records", r] == 4
    assert found["reduct_replication_active", r] == 0
    assert found["reduct_replication_sent_records_total", r] == 9
    assert found["reduct_replication_errors_total", (("replication", "r"), ("status", "-3"))] == 2
    assert found["reduct_replication_errors_total", (("replication", "r"), ("status", "404"))] == 1
    ok = (("lifecycle", "clean"), ("status", "200"), ("type", "delete"))
    assert found["reduct_lifecycle_runs_total", ok] == 3
    assert found["reduct_lifecycle_processed_records_total", ok] == 50
    failed = (("lifecycle", "clean"), ("status", "500"), ("type", "delete"))
    assert found["reduct_lifecycle_runs_total", failed] == 1
    assert found["reduct_http_open_connections", ()] == 5
