"""
What the engine wrote and read, per bucket, between two looks: the traffic
counters of the ``$system`` usage events (spec 1.20 §8.3).

Counting costs one dict lookup and two additions per record; the counters
are taken (and reset) by whoever reports them (``system/usage.py``).  What
was taken is added up once per take, for :meth:`Traffic.totals`
(``/metrics``): nothing more per record.
"""

__all__ = ["Traffic"]

#: Indexes of a bucket's counters.
WRITE_BYTES, READ_BYTES, RECORDS_WRITTEN, RECORDS_READ = range(4)


class Traffic:
    """Bytes and records written and read per bucket since the last :meth:`take`."""

    __slots__ = ("_buckets", "_taken")

    def __init__(self) -> None:
        self._buckets: dict = {}
        #: What earlier :meth:`take` calls handed out, added up per bucket.
        self._taken: dict = {}

    def wrote(self, bucket: str, size: int) -> None:
        """Count one record of ``size`` bytes committed to ``bucket``."""
        counters = self._buckets.get(bucket)
        if counters is None:
            counters = self._buckets[bucket] = [0, 0, 0, 0]
        counters[WRITE_BYTES] += size
        counters[RECORDS_WRITTEN] += 1

    def read(self, bucket: str, size: int, records: int = 1) -> None:
        """Count ``records`` records of ``size`` bytes in all handed out of ``bucket`` to a reader."""
        counters = self._buckets.get(bucket)
        if counters is None:
            counters = self._buckets[bucket] = [0, 0, 0, 0]
        counters[READ_BYTES] += size
        counters[RECORDS_READ] += records

    def take(self) -> dict:
        """
        :return: ``{bucket: {"write_bytes", "read_bytes", "records_written",
            "records_read"}}`` counted since the last call; the counters
            start again from zero.
        """
        taken, self._buckets = self._buckets, {}
        _add(self._taken, taken)
        return {
            name: {
                "write_bytes": c[WRITE_BYTES],
                "read_bytes": c[READ_BYTES],
                "records_written": c[RECORDS_WRITTEN],
                "records_read": c[RECORDS_READ],
            }
            for name, c in taken.items()
        }

    def totals(self) -> dict:
        """
        :return: ``{bucket: [write_bytes, read_bytes, records_written,
            records_read]}`` since the engine opened (taken or not).
        """
        totals = {name: list(c) for name, c in self._taken.items()}
        _add(totals, self._buckets)
        return totals


def _add(into: dict, counters: dict) -> None:
    for name, c in counters.items():
        total = into.get(name)
        if total is None:
            into[name] = list(c)
        else:
            for i, value in enumerate(c):
                total[i] += value
