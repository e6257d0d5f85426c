# -*- test-case-name: tests.unit.test_metrics,tests.integration.test_metrics -*-
"""
The daemon's Prometheus metrics (issue #18): one :class:`Metrics` per
site, with its own ``prometheus_client`` registry (never the process-wide
default one, so two daemons in one process, as in the tests, never share a
series), rendered by ``GET {base}metrics`` (``http/routes_metrics.py``).

What it costs where:

* per request, one call from ``ReductSite.log`` (:meth:`Metrics.request_done`):
  a dict lookup and a few additions into :class:`RequestStats`, plain
  integers on the reactor thread (no lock, no label formatting; a
  ``prometheus_client`` child counter and histogram cost about ten times
  more, measured); turned into counters and histograms when scraped;
* per group-sync round, one histogram observation (:meth:`Metrics.sync_round`);
* nothing per record: the per-bucket figures (size, records, traffic,
  quota evictions), the replications' and the lifecycles' counts and the
  open connections are read from what the engine and the managers keep
  anyway, at scrape time (``metrics_collectors.py``).

The route label is the route table's pattern (``/api/v1/b/<bucket>/<entry_path:entry>``),
never the raw path: a request names its endpoint (``request.route``, set by
the router), the pattern is looked up when scraped; a request no route
took is ``unmatched``.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from reduct_twisted import REDUCT_VERSION
from reduct_twisted.metrics_collectors import (
    ConnectionCollector,
    LifecycleCollector,
    ReplicationCollector,
    StorageCollector,
    info_collector,
)

__all__ = ["LATENCY_BUCKETS", "Metrics", "RequestStats"]

#: Upper bounds (seconds) of the request latency histogram's buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0)
#: Upper bounds (seconds) of the sync-round histogram's buckets.
SYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: The route label of a request no route took (404, 405, refused before routing).
UNMATCHED = "unmatched"
#: Methods counted under their own name; any other is ``OTHER``.
METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"))
_OTHER = b"OTHER"

# Indexes in a RequestStats row.
_COUNT, _SECONDS, _IN, _OUT, _BUCKETS = range(5)


class RequestStats:
    """
    Finished requests, per ``(endpoint, method, code)``: how many, their
    seconds in all, body bytes received and sent, and their latency
    histogram (counts per bucket of :data:`LATENCY_BUCKETS`, not cumulative,
    the last for the ones beyond).  Rows are never removed: there are at
    most routes x methods x status codes of them.
    """

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: dict = {}

    def add(self, endpoint, method: bytes, code: int, seconds: float, received: int,
            sent: int) -> None:
        """Count one request."""
        key = (endpoint, method if method in METHODS else _OTHER, code)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0, 0.0, 0, 0] + [0] * (len(LATENCY_BUCKETS) + 1)
        row[_COUNT] += 1
        row[_SECONDS] += seconds
        row[_IN] += received
        row[_OUT] += sent
        row[_BUCKETS + bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def collect(self, patterns: Mapping[str, str]) -> Iterable[Any]:
        """
        The ``reduct_http_*`` families; ``patterns`` maps an endpoint to its
        route pattern (an endpoint not in it is shown by its name).
        """
        requests = CounterMetricFamily(
            "reduct_http_requests", "HTTP requests answered, by route, method and status code",
            labels=("route", "method", "code"))
        received = CounterMetricFamily(
            "reduct_http_request_body_bytes", "Request body bytes received, by route and method",
            labels=("route", "method"))
        sent = CounterMetricFamily(
            "reduct_http_response_body_bytes", "Response body bytes sent, by route and method",
            labels=("route", "method"))
        latency = HistogramMetricFamily(
            "reduct_http_request_duration_seconds",
            "Seconds from a request's headers to the end of its answer, by route and method",
            labels=("route", "method"))
        by_route: dict = {}
        for (endpoint, method, code), row in sorted(self.rows.items(), key=_row_order):
            route = UNMATCHED if endpoint is None else patterns.get(endpoint, endpoint)
            name = method.decode("ascii")
            requests.add_metric((route, name, str(code)), row[_COUNT])
            total = by_route.get((route, name))
            if total is None:
                by_route[(route, name)] = list(row)
            else:
                for i, value in enumerate(row):
                    total[i] += value
        for (route, name), row in by_route.items():
            received.add_metric((route, name), row[_IN])
            sent.add_metric((route, name), row[_OUT])
            cumulative, buckets = 0, []
            for bound, count in zip(LATENCY_BUCKETS + (float("inf"),), row[_BUCKETS:]):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            latency.add_metric((route, name), buckets, row[_SECONDS])
        return [requests, latency, received, sent]


def _row_order(item) -> tuple:
    (endpoint, method, code), _ = item
    return (endpoint or "", method, code)


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class _RequestCollector:
    """The :class:`RequestStats` of a :class:`Metrics`, as a registry collector."""

    def __init__(self, stats: RequestStats, patterns: Mapping[str, str]) -> None:
        self._stats = stats
        self._patterns = patterns

    def collect(self):
        return self._stats.collect(self._patterns)


class Metrics:
    """
    The metrics of one daemon (one site).

    :param patterns: ``{endpoint: route pattern}`` of the route table
        (the request label); see ``wiring.make_metrics``.
    :param engine: the open ``StorageEngine`` (per-bucket figures).
    :param replications: the ``ReplicationManager``, or None.
    :param lifecycles: the ``LifecycleManager``, or None.
    :param connections: has ``open_connections`` (the site's ``ConnectionDrain``), or None.
    :param process: add the ``process_*`` and ``python_info`` series of
        ``prometheus_client`` (read from ``/proc`` when scraped).
    :ivar registry: this daemon's own ``CollectorRegistry``.
    :ivar requests: the :class:`RequestStats`.
    """

    def __init__(self, patterns: Mapping[str, str], engine: Any, replications: Any = None,
                 lifecycles: Any = None, connections: Any = None, process: bool = True) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.requests = RequestStats()
        registry.register(info_collector(REDUCT_VERSION))
        registry.register(_RequestCollector(self.requests, dict(patterns)))
        if connections is not None:
            registry.register(ConnectionCollector(connections))
        registry.register(StorageCollector(engine))
        if replications is not None:
            registry.register(ReplicationCollector(replications))
        if lifecycles is not None:
            registry.register(LifecycleCollector(lifecycles))
        self._sync_seconds = Histogram(
            "reduct_sync_round_seconds",
            "Seconds a group-sync round (fdatasync of the files written, sync policy always) took",
            buckets=SYNC_BUCKETS, registry=registry)
        self._sync_writes = Counter(
            "reduct_sync_round_writes", "Writes made durable by group-sync rounds",
            registry=registry)
        self._sync_failures = Counter(
            "reduct_sync_round_failures", "Group-sync rounds that failed (the writes answered 500)",
            registry=registry)
        if process:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)

    def request_done(self, request, now: float) -> None:
        """
        Count ``request``, finished at ``now`` (seconds, the clock of
        ``request.reduct_started``); ``ReductSite.log`` calls it once per
        finished request.
        """
        started = getattr(request, "reduct_started", None)
        seconds = now - started if started is not None and now > started else 0.0
        self.requests.add(request.route, request.method, request.code, seconds,
                          request.received, request.sentLength)

    def sync_round(self, seconds: float, writes: int, failed: bool) -> None:
        """One group-sync round ended (``GroupSync.observer``)."""
        self._sync_seconds.observe(seconds)
        self._sync_writes.inc(writes)
        if failed:
            self._sync_failures.inc()

    def render(self, accept: str = "") -> tuple:
        """
        Every series, read now, in the format ``accept`` (a request's
        ``Accept`` header) prefers: OpenMetrics if it asks for it, else
        Prometheus' text format 0.0.4.

        :return: ``(body, content type)``, both bytes.
        """
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type.encode("ascii")
