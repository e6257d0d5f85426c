# -*- test-case-name: tests.unit.test_system_events -*-
"""
The usage statistics stream (spec 1.20 §8.3): ``usage/<instance>/total``
every 60 s and at shutdown, with the traffic the storage engine counted in
the interval (``storage/traffic.py``) and a snapshot of the storage; and,
as ``[1.21-dev]`` does, one ``usage/<instance>/<bucket>`` event per bucket
with its own traffic and snapshot (a bucket name outside the entry alphabet,
``$system``, is sanitized by the writer).

A snapshot walks the buckets' entry lists once per interval, off the
request path.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UsageMeter"]

_TRAFFIC = ("write_bytes", "read_bytes", "records_written", "records_read")


class UsageMeter:
    """
    :param engine: the ``StorageEngine`` (``traffic``, ``list_buckets``,
        ``bucket_info``).
    :param clock: ``seconds()``.
    """

    def __init__(self, engine: Any, clock: Any) -> None:
        self.engine = engine
        self.clock = clock
        self._since = clock.seconds()

    def restart(self) -> None:
        """Start a new interval now; forget the traffic counted so far."""
        self._since = self.clock.seconds()
        self._take_traffic()

    def _take_traffic(self) -> dict:
        traffic = getattr(self.engine, "traffic", None)
        return traffic.take() if traffic is not None else {}

    def take(self) -> list:
        """
        End the interval.

        :return: ``[("total", payload), (bucket, payload), ...]``.
        """
        now = self.clock.seconds()
        duration, self._since = max(0.0, now - self._since), now
        traffic = self._take_traffic()
        total = dict.fromkeys(_TRAFFIC, 0)
        for counters in traffic.values():
            for key in _TRAFFIC:
                total[key] += counters[key]
        per_bucket = []
        storage = entries = blocks = 0
        buckets = self.engine.list_buckets()
        for info in buckets:
            name = info["name"]
            block_count = sum(e["block_count"] for e in self.engine.bucket_info(name)["entries"])
            storage += info["size"]
            entries += info["entry_count"]
            blocks += block_count
            counters = traffic.get(name) or dict.fromkeys(_TRAFFIC, 0)
            per_bucket.append((name, {
                "duration": duration, **counters, "bucket": name,
                "storage_bytes": info["size"], "entry_count": info["entry_count"],
                "block_count": block_count,
            }))
        payload = {"duration": duration, **total, "storage_bytes": storage,
                   "bucket_count": len(buckets), "entry_count": entries, "block_count": blocks}
        return [("total", payload)] + per_bucket
