# -*- test-case-name: tests.unit.test_metrics,tests.integration.test_metrics -*-
"""
The scrape-time collectors of ``metrics.Metrics``: each reads what a part
of the daemon keeps anyway, when ``{base}metrics`` is asked, on the
reactor thread (``prometheus_client``'s Twisted ``MetricsResource`` would
collect in the reactor's thread pool, beside the engine's own work: not
used for that reason).  Nothing here adds work to a write or a read.

* :class:`StorageCollector`: per bucket, size, entries and records (the
  figures of ``GET /b/:bucket``), FIFO quota evictions (``Bucket.evicted``)
  and the records and bytes written and read (the engine's ``Traffic``,
  which counts per record already for the ``$system`` usage events);
* :class:`ReplicationCollector`: per replication, pending records, whether
  it is active, records delivered and failed (``ReplicationManager.stats``);
* :class:`LifecycleCollector`: lifecycle runs by policy, type and status,
  and the records they processed (``Runtime.runs``);
* :class:`ConnectionCollector`: the site's open connections.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "ConnectionCollector",
    "LifecycleCollector",
    "ReplicationCollector",
    "StorageCollector",
    "info_collector",
]


class _Info(Collector):
    def __init__(self, version: str) -> None:
        self._version = version

    def collect(self):
        info = GaugeMetricFamily("reduct_build_info", "The server's version (always 1)",
                                 labels=("version",))
        info.add_metric((self._version,), 1)
        return [info]


def info_collector(version: str) -> Collector:
    """``reduct_build_info{version}``, always 1."""
    return _Info(version)


class ConnectionCollector(Collector):
    """:param connections: has ``open_connections`` (``drain.ConnectionDrain``)."""

    def __init__(self, connections: Any) -> None:
        self._connections = connections

    def collect(self):
        return [GaugeMetricFamily("reduct_http_open_connections",
                                  "HTTP connections open now",
                                  value=self._connections.open_connections)]


class StorageCollector(Collector):
    """:param engine: the ``StorageEngine`` (``bucket_stats``, ``traffic``)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def collect(self):
        engine = self._engine
        labels = ("bucket",)
        size = GaugeMetricFamily("reduct_bucket_size_bytes", "Bytes stored in the bucket",
                                 labels=labels)
        records = GaugeMetricFamily("reduct_bucket_records",
                                    "Records stored in the bucket (its entries' record_count)",
                                    labels=labels)
        entries = GaugeMetricFamily("reduct_bucket_entries", "Entries of the bucket",
                                    labels=labels)
        evicted = [
            CounterMetricFamily(f"reduct_bucket_quota_evicted_{unit}",
                                f"{text} removed by the bucket's FIFO quota", labels=labels)
            for unit, text in (("blocks", "Blocks"), ("records", "Records"), ("bytes", "Bytes"))
        ]
        traffic = [
            CounterMetricFamily(name, text, labels=labels)
            for name, text in (
                ("reduct_bucket_written_bytes", "Record bytes written to the bucket"),
                ("reduct_bucket_read_bytes", "Record bytes read from the bucket"),
                ("reduct_bucket_records_written", "Records written to the bucket"),
                ("reduct_bucket_records_read", "Records read from the bucket"),
            )
        ]
        if not engine.is_open:
            return []
        totals = engine.traffic.totals()
        for stats in engine.bucket_stats():
            name = (stats["name"],)
            size.add_metric(name, stats["size"])
            records.add_metric(name, stats["record_count"])
            entries.add_metric(name, stats["entry_count"])
            for family, value in zip(evicted, stats["evicted"]):
                family.add_metric(name, value)
            # write_bytes, read_bytes, records_written, records_read (storage/traffic.py)
            for family, value in zip(traffic, totals.get(stats["name"], (0, 0, 0, 0))):
                family.add_metric(name, value)
        return [size, records, entries, *evicted, *traffic]


class ReplicationCollector(Collector):
    """:param replications: the ``ReplicationManager`` (``stats``)."""

    def __init__(self, replications: Any) -> None:
        self._replications = replications

    def collect(self):
        labels = ("replication",)
        pending = GaugeMetricFamily("reduct_replication_pending_records",
                                    "Records waiting in the replication's logs", labels=labels)
        active = GaugeMetricFamily("reduct_replication_active",
                                   "1 if the replication's destination is reachable",
                                   labels=labels)
        sent = CounterMetricFamily("reduct_replication_sent_records",
                                   "Records the replication delivered", labels=labels)
        errors = CounterMetricFamily(
            "reduct_replication_errors",
            "Records the replication failed to deliver, by status (HTTP status, "
            "-2 timeout, -3 connection error)", labels=("replication", "status"))
        for stats in self._replications.stats():
            name = (stats["name"],)
            pending.add_metric(name, stats["pending"])
            active.add_metric(name, 1 if stats["active"] else 0)
            sent.add_metric(name, stats["sent"])
            for status, count in sorted(stats["errors"].items()):
                errors.add_metric((stats["name"], str(status)), count)
        return [pending, active, sent, errors]


class LifecycleCollector(Collector):
    """:param lifecycles: the ``LifecycleManager`` (``runtime.runs``)."""

    def __init__(self, lifecycles: Any) -> None:
        self._lifecycles = lifecycles

    def collect(self):
        labels = ("lifecycle", "type", "status")
        runs = CounterMetricFamily("reduct_lifecycle_runs",
                                   "Lifecycle policy runs ended, by policy, type and status",
                                   labels=labels)
        records = CounterMetricFamily("reduct_lifecycle_processed_records",
                                      "Records the lifecycle runs processed (removed, or "
                                      "counted in dry_run)", labels=labels)
        for (name, kind, status), (count, processed) in sorted(
                self._lifecycles.runtime.runs.items()):
            key = (name, kind, str(status))
            runs.add_metric(key, count)
            records.add_metric(key, processed)
        return [runs, records]
