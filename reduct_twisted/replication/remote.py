# -*- test-case-name: tests.unit.test_replication_remote -*-
"""
The destination of a replication: another ReductStore (this daemon or
upstream) reached over HTTP with treq, with the v1 batch protocol.

* :meth:`RemoteBucket.probe`: ``HEAD /api/v1/b/<dst_bucket>`` (upstream
  reads the bucket with ``GET``, which needs read access since 1.16; HEAD
  needs only a valid token).
* :meth:`RemoteBucket.write`: ``POST /api/v1/b/<dst_bucket>/<entry>/batch``
  (a nested entry ``a/b/c`` as a raw path, spec 1.20 §2.5)
  (spec §3.4), the contents read through a storage ``ContentReader`` by a
  :class:`RangeBodyProducer`, one slice per reactor turn.
* :meth:`RemoteBucket.update`: ``PATCH /api/v1/b/<dst_bucket>/<entry>/batch``
  (spec §3.6), ``x-reduct-time-<ts>: 0,,<labels>`` per record; an empty
  value removes a label.

Answers: a 200 gives the per-record errors of its ``x-reduct-error-<ts>``
headers as ``{ts: (status, message)}``; anything else raises
:class:`RemoteError`, whose ``retry`` says whether sending the same items
later may succeed (no answer, a timeout, 5xx, 408, 425, 429, and 401, 403
and 404, which an operator can fix on the destination) or not (other 4xx:
the destination refuses these items as they are).

A request is cancelled when nothing moved for ``timeout`` seconds
(``RS_REPLICATION_TIMEOUT``): no body slice went out and no answer came.
"""

from __future__ import annotations

from urllib.parse import quote

import attr
import treq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import TaskStopped
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from reduct_twisted.replication.diagnostics import CONNECTION_ERROR, TIMEOUT
from reduct_twisted.storage.content import ContentReader
from reduct_twisted.wire.digest import DIGEST_PREFIX, format_digest
from reduct_twisted.wire import (
    BATCH_MAX_METADATA_SIZE, BATCH_MAX_RECORDS, BATCH_MAX_SIZE, ERROR_PREFIX, format_record_header,
)

#: Bytes read from a block file per reactor turn.
SLICE = 1 << 16

def _entry_path(entry: str) -> str:
    """
    An entry name in a destination URL: a path ``a/b/c`` [1.19] goes raw,
    as upstream's sender sends it (names are ``[A-Za-z0-9_-]`` segments, the
    last possibly ``$meta``; anything else is percent-encoded).
    """
    return quote(entry, safe="/$")


#: Request-level answers after which the same items may be sent again.
RETRY_STATUSES = frozenset({401, 403, 404, 408, 425, 429})


class RemoteError(Exception):
    """
    A request to the destination failed as a whole.

    :ivar status: the HTTP status, or ``-2`` (timeout) / ``-3`` (no
        connection or no answer), as upstream counts them.
    :ivar message: the destination's ``x-reduct-error`` or the reason.
    :ivar retry: whether sending the same items later may succeed.
    """

    def __init__(self, status: int, message: str, retry: bool) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry = retry


@attr.s(eq=False)
class OutgoingBatch:
    """
    Records to write in one request, their contents open for reading.

    :ivar headers: ``[(ts, x-reduct-time value)]`` in timestamp order.
    :ivar digests: ``{ts: SHA-256}`` of the records whose digest is known,
        sent as ``x-reduct-digest-<ts>`` so the destination checks the
        content it receives (issue #16; other servers ignore the header).
    :ivar reader: the ``ContentReader`` of the contents, in the same order.
    :ivar size: the body length.
    """

    headers: list = attr.ib(factory=list)
    digests: dict = attr.ib(factory=dict)
    reader: ContentReader = attr.ib(factory=ContentReader)
    size: int = attr.ib(default=0)
    metadata: int = attr.ib(default=0)

    @property
    def ranges(self) -> list:
        """The contents' ``(DataFile, offset, size)`` ranges, in order."""
        return self.reader.ranges

    def full(self) -> bool:
        """Whether the batch reached a limit (85 records, 8 MB of contents)."""
        return len(self.headers) >= BATCH_MAX_RECORDS or self.size >= BATCH_MAX_SIZE

    def add(self, view) -> bool:
        """
        Take the record of ``view`` (a ``RecordView``) and open its content.

        :return: ``False`` if its header would take the batch past the
            metadata limit (it is not taken then, unless the batch is empty).
        :raises OSError: the file cannot be opened.
        """
        record = view.record
        value = format_record_header(record.size, record.content_type, record.labels)
        cost = len(value) + 40 + (0 if record.digest is None else 80)
        if self.headers and self.metadata + cost > BATCH_MAX_METADATA_SIZE:
            return False
        self.reader.add(view)
        self.headers.append((record.ts, value))
        if record.digest is not None:
            self.digests[record.ts] = record.digest
        self.metadata += cost
        self.size += record.size
        return True

    def close(self) -> None:
        """Close the files (after the request, whatever its outcome)."""
        self.reader.close()


@implementer(IBodyProducer)
class RangeBodyProducer:
    """
    A request body made of record contents, read one slice per reactor turn
    (``DataFile.read`` of a page-cached block file), paused and resumed by
    the transport.  :meth:`finish` stops it for good before its files close.

    :param ranges: ``[(DataFile, offset, size)]`` (``ContentReader.ranges``).
    :param clock: provides ``callLater``.
    :param progress: called after every slice written.
    """

    def __init__(self, ranges, clock, progress=lambda: None, slice_size: int = SLICE) -> None:
        self.length = sum(size for _, _, size in ranges)
        self._ranges = list(ranges)
        self._clock = clock
        self._progress = progress
        self._slice = slice_size
        self._index = 0
        self._done_in_range = 0
        self._consumer = None
        self._deferred = None
        self._call = None
        self._paused = False
        self._finished = False

    def startProducing(self, consumer) -> Deferred:
        self._consumer = consumer
        self._deferred = Deferred()
        self._schedule()
        return self._deferred

    def _schedule(self) -> None:
        if self._call is None and not self._paused and not self._finished:
            self._call = self._clock.callLater(0, self._step)

    def _step(self) -> None:
        self._call = None
        if self._paused or self._finished:
            return
        while self._index < len(self._ranges):
            data_file, offset, size = self._ranges[self._index]
            if self._done_in_range < size:
                break
            self._index += 1
            self._done_in_range = 0
        else:
            self._finished = True
            self._deferred.callback(None)
            return
        want = min(self._slice, size - self._done_in_range)
        data = data_file.read(offset + self._done_in_range, want)
        if not data:
            self.finish()
            self._deferred.errback(OSError(f"record file ended {want} bytes early"))
            return
        self._done_in_range += len(data)
        self._consumer.write(data)
        self._progress()
        self._schedule()

    def pauseProducing(self) -> None:
        self._paused = True
        self._cancel_call()

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        if not self._finished:
            self.finish()
            if self._deferred is not None and not self._deferred.called:
                self._deferred.errback(TaskStopped())

    def finish(self) -> None:
        """Never read again (idempotent)."""
        self._finished = True
        self._cancel_call()

    def _cancel_call(self) -> None:
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None


class _Watchdog:
    """Cancels ``deferred`` once ``touch`` was not called for ``timeout`` seconds."""

    def __init__(self, clock, timeout: float, deferred: Deferred) -> None:
        self._clock = clock
        self._timeout = timeout
        self._deferred = deferred
        self.fired = False
        self._call = clock.callLater(timeout, self._fire)
        deferred.addBoth(self._stop)

    def touch(self) -> None:
        if self._call is not None and self._call.active():
            self._call.reset(self._timeout)

    def _fire(self) -> None:
        self._call = None
        self.fired = True
        self._deferred.cancel()

    def _stop(self, result):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return result


def _header(response, name: bytes):
    values = response.headers.getRawHeaders(name)
    return values[-1].decode("utf-8", "replace") if values else None


def record_errors(response) -> dict:
    """:return: ``{ts: (status, message)}`` from the ``x-reduct-error-<ts>`` headers."""
    errors = {}
    for name, values in response.headers.getAllRawHeaders():
        name = name.lower()
        if not name.startswith(ERROR_PREFIX) or not values:
            continue
        suffix = name[len(ERROR_PREFIX):]
        # A u64 has at most 20 digits; never hand int() a longer string (it
        # refuses more than 4300 digits with a ValueError).
        if not suffix.isdigit() or len(suffix) > 20:
            continue
        status, _, message = values[-1].decode("utf-8", "replace").partition(",")
        code = status.strip()
        valid = code.lstrip("-").isdigit() and code.lstrip("-").isascii() and len(code) <= 6
        errors[int(suffix)] = (int(code) if valid else -1, message)
    return errors


def _response_error(response) -> RemoteError:
    code = response.code
    message = _header(response, b"x-reduct-error")
    if message is None:
        phrase = response.phrase.decode("latin-1", "replace") if response.phrase else ""
        message = f"{code} {phrase}".strip()
    return RemoteError(code, message, retry=code >= 500 or code in RETRY_STATUSES)


def failure_error(failure, timed_out: bool) -> RemoteError:
    """:return: the :class:`RemoteError` for a request that got no answer."""
    if timed_out or failure.check(CancelledError):
        return RemoteError(TIMEOUT, "Timeout", retry=True)
    # treq's ResponseFailed & co. carry the underlying failures in ``reasons``.
    reasons = getattr(failure.value, "reasons", None)
    inner = reasons[0] if reasons else failure
    text = inner.getErrorMessage() or type(inner.value).__name__
    return RemoteError(CONNECTION_ERROR, text, retry=True)


class RemoteBucket:
    """
    The destination bucket of one replication.

    :param http: a treq ``HTTPClient`` (or ``StubTreq`` in tests).
    :param clock: ``callLater`` for the body producer and the timeout.
    :param host: ``dst_host``, the destination's base URL.
    :param bucket: ``dst_bucket``.
    :param token: ``dst_token``; ``""`` sends no ``Authorization``.
    :param timeout: seconds a request may stay without progress.
    """

    def __init__(self, http, clock, host: str, bucket: str, token: str, timeout: float) -> None:
        self._http = http
        self._clock = clock
        self._base = host.rstrip("/") + "/api/v1/b/" + quote(bucket, safe="")
        self._token = token
        self._timeout = timeout

    def _headers(self) -> dict:
        headers = {b"content-type": [b"application/octet-stream"]}
        if self._token:
            headers[b"authorization"] = [b"Bearer " + self._token.encode("utf-8")]
        return headers

    def _request(self, method: str, url: str, headers: dict, producer=None) -> Deferred:
        # The request and its body, cancelled by the watchdog; the answer is
        # (response, body) or a RemoteError.
        d = Deferred.fromCoroutine(self._exchange(method, url, headers, producer))
        dog = _Watchdog(self._clock, self._timeout, d)
        if producer is not None:
            producer._progress = dog.touch

        def failed(failure):
            if producer is not None:
                producer.finish()
            if failure.check(RemoteError):
                return failure
            raise failure_error(failure, dog.fired)

        def done(result):
            if producer is not None:
                producer.finish()
            return result

        return d.addCallbacks(done, failed)

    async def _exchange(self, method, url, headers, producer):
        response = await self._http.request(method, url, headers=headers, data=producer)
        await treq.content(response)
        if response.code != 200:
            raise _response_error(response)
        return response

    def probe(self) -> Deferred:
        """:return: fires ``None`` if the bucket answers ``HEAD`` with 200; else a :class:`RemoteError`."""
        headers = self._headers()
        del headers[b"content-type"]
        return self._request("HEAD", self._base, headers).addCallback(lambda _: None)

    def write(self, entry: str, batch: OutgoingBatch) -> Deferred:
        """
        Write the records of ``batch`` to ``entry``.

        :return: fires ``{ts: (status, message)}`` of the records refused.
        """
        headers = self._headers()
        for ts, value in batch.headers:
            headers[b"x-reduct-time-%d" % ts] = [value]
        for ts, digest in batch.digests.items():
            headers[DIGEST_PREFIX + b"%d" % ts] = [format_digest(digest)]
        producer = RangeBodyProducer(batch.ranges, self._clock)
        url = f"{self._base}/{_entry_path(entry)}/batch"
        return self._request("POST", url, headers, producer).addCallback(record_errors)

    def update(self, entry: str, updates) -> Deferred:
        """
        Set the labels of records of ``entry``.

        :param updates: ``[(ts, labels, removed names)]``.
        :return: fires ``{ts: (status, message)}`` of the records refused.
        """
        headers = self._headers()
        headers[b"content-length"] = [b"0"]
        for ts, labels, removed in updates:
            fields = dict.fromkeys(removed, "")  # an empty value removes the label
            fields.update(labels)
            # ``0,,<labels>``: length and content type are ignored by PATCH.
            headers[b"x-reduct-time-%d" % ts] = [format_record_header(0, "", fields)]
        url = f"{self._base}/{_entry_path(entry)}/batch"
        return self._request("PATCH", url, headers).addCallback(record_errors)

