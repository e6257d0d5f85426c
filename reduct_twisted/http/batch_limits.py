# -*- test-case-name: tests.unit.test_batch -*-
"""
What the batched reads of both protocols (``batch.py``, ``io_read.py``)
share besides their reader: the limits that close a batch and the setting
of a batch answer's record headers in one go.
"""

import attr
from twisted.web.http_headers import Headers

from reduct_twisted.config import Config
from reduct_twisted.wire import (
    BATCH_MAX_METADATA_SIZE,
    BATCH_MAX_RECORDS,
    BATCH_MAX_SIZE,
)

_DEFAULTS = Config()


@attr.s(frozen=True, slots=True)
class BatchLimits:
    """
    When a batched read is closed (spec §3.3, §3.16): after the record that
    reaches ``max_records`` or takes the body past ``max_size`` (GET only)
    or the record headers past ``max_metadata``; or, once it holds a
    record, when it has gathered for ``timeout`` seconds or looked for the
    next record for ``record_timeout`` seconds.  An empty batched read of a
    continuous query waits up to ``record_timeout`` for a new record.
    """

    max_records: int = attr.ib(default=BATCH_MAX_RECORDS)
    max_size: int = attr.ib(default=BATCH_MAX_SIZE)
    max_metadata: int = attr.ib(default=BATCH_MAX_METADATA_SIZE)
    timeout: float = attr.ib(default=_DEFAULTS.io_batch_timeout)
    record_timeout: float = attr.ib(default=_DEFAULTS.io_batch_records_timeout)

    @classmethod
    def from_config(cls, config: Config) -> "BatchLimits":
        """The server's limits: the ``io_batch_*`` settings."""
        return cls(
            config.io_batch_max_records,
            config.io_batch_max_size,
            config.io_batch_max_metadata_size,
            config.io_batch_timeout,
            config.io_batch_records_timeout,
        )

    def overridden(self, io) -> "BatchLimits":
        """
        These limits with a query's directives applied.

        :param io: the query's ``IoOverrides`` (``None`` where a directive
            is absent), or ``None`` for none.
        """
        if io is None:
            return self
        changes = {}
        for name, value in (("max_records", io.batch_records), ("max_size", io.batch_size),
                            ("max_metadata", io.batch_metadata_size)):
            if value is not None:
                changes[name] = value
        for name, us in (("timeout", io.batch_timeout_us),
                         ("record_timeout", io.record_timeout_us)):
            if us is not None:
                changes[name] = us / 1e6
        return attr.evolve(self, **changes) if changes else self


class RecordHeaders(Headers):
    """
    A batch answer's response headers: Twisted's, plus its record headers
    kept as they were made (``(name, value)``: lowercase token names, values
    without line breaks), which ``ReductChannel.writeHeaders`` writes as one
    block after the others.  Read back (``getAllRawHeaders``,
    ``getRawHeaders``, ``hasHeader``), they are what ``setHeader`` would
    have set.
    """

    __slots__ = ("records",)

    def __init__(self, rawHeaders=None) -> None:
        super().__init__(rawHeaders)
        self.records: list = []

    def block(self) -> bytes:
        """The record header lines, for the wire."""
        return b"".join([b"%s: %s\r\n" % pair for pair in self.records])

    def _record(self, name):
        key = (name if isinstance(name, bytes) else name.encode("ascii", "replace")).lower()
        for found, value in self.records:
            if found == key:
                return value
        return None

    def getAllRawHeaders(self):
        yield from self._rawHeaders.items()
        for name, value in self.records:
            yield name.title(), [value]

    def getRawHeaders(self, name, default=None):
        values = super().getRawHeaders(name)
        if values is not None:
            return values
        value = self._record(name)
        if value is None:
            return default
        return [value if isinstance(name, bytes) else value.decode("latin-1")]

    def hasHeader(self, name) -> bool:
        return super().hasHeader(name) or self._record(name) is not None

    def copy(self) -> "RecordHeaders":
        twin = RecordHeaders(self._rawHeaders)
        twin.records = list(self.records)
        return twin


def set_raw_headers(request, headers) -> None:
    """
    Set the record headers of a batch answer at once: their names are
    tokens and their values are free of line breaks (``wire`` makes both),
    so they skip ``setHeader``'s check and canonical casing of each name,
    which costs microseconds a record and whose cache unique names defeat:
    the response headers become :class:`RecordHeaders` holding them.  A
    value with a line break (none should have one) takes ``setHeader``.
    """
    current = request.responseHeaders
    values = b"".join([value for _, value in headers])
    if type(current) not in (Headers, RecordHeaders) or b"\r" in values or b"\n" in values:
        for name, value in headers:
            request.setHeader(name, value)
        return
    if type(current) is Headers:
        replaced = RecordHeaders()
        replaced._rawHeaders = current._rawHeaders  # the same dict: later headers land there
        request.responseHeaders = current = replaced
    current.records.extend(headers)
