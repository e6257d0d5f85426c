# -*- test-case-name: tests.unit.test_system_events,tests.integration.test_system -*-
"""
:class:`SystemEvents`: the ``$system`` bucket's event streams (spec 1.20 §8),
a service of the daemon.

Callers hand events over and go on: :meth:`SystemEvents.emit` appends to an
in-memory queue, :meth:`SystemEvents.record_call` adds a finished request to
its audit aggregate (``aggregate.py``).  Nothing is written on a caller's
time.  A tick of the reactor (every :data:`TICK` seconds) takes the audit and
replication aggregates that are due, and writes the queue in slices of
:data:`SLICE` records, through the storage engine's own write path (a small
record goes into its block's shared segment, as the API's writes do); a
longer queue continues in the next reactor turns.  Usage statistics
(``usage.py``) are queued every :data:`USAGE_INTERVAL` seconds.  Stopping
the service queues the last usage event and every open aggregate and
writes them all before the storage closes.

Each event is one record of entry ``<stream>/<instance>/<name>`` at the
event's time: a flat JSON object (``timestamp``, ``instance``, ``status``,
``message``, then the stream's payload), ``application/json``, label
``status``.  The bucket is created on the first write (FIFO quota
``RS_SYSTEM_EVENTS_QUOTA_SIZE`` when set), and again after it is removed.
A write that fails (a timestamp taken already: spec 1.20 §8.2 drops the
event; a full disk; a removed bucket) is logged at debug level and dropped:
event writing never affects requests.

``last_access(token)`` is the newest audit event time written for that
token (spec 1.20 §4.4), loaded at start from the newest record of each
``audit/*/<token>`` entry (one look per entry) and kept in memory since.
"""

from __future__ import annotations

import json
import re
import socket
from collections import deque
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from reduct_twisted.errors import ReductError
from reduct_twisted.interfaces import ISystemEvents
from reduct_twisted.storage.settings import SYSTEM_BUCKET
from reduct_twisted.system.aggregate import AuditAggregates, ReplicationAggregates
from reduct_twisted.system.usage import UsageMeter

__all__ = ["SystemEvents", "instance_name", "sanitize", "TICK", "SLICE", "USAGE_INTERVAL"]

log = Logger()

#: Seconds between two looks at the aggregates and the queue.
TICK = 1.0
#: Records written in one reactor turn.
SLICE = 200
#: Seconds between two usage events.
USAGE_INTERVAL = 60.0
#: Events queued beyond this are dropped (a stalled or full disk).
MAX_QUEUE = 100_000

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def sanitize(name: str) -> str:
    """``name`` as an entry name segment: characters outside ``[A-Za-z0-9_-]`` become ``_``."""
    return _UNSAFE.sub("_", name) or "_"


def instance_name(configured: Optional[str]) -> str:
    """``RS_INSTANCE_NAME``, else the host name, else ``unknown``; sanitized."""
    name = configured or socket.gethostname() or "unknown"
    return sanitize(name)


@implementer(ISystemEvents)
class SystemEvents(Service):
    """
    The event streams, written to ``$system`` (see the module docstring).

    :param engine: the open ``StorageEngine``.
    :param clock: ``seconds()`` and ``callLater`` (the reactor, or a
        ``task.Clock`` in tests).
    :param instance: the instance segment of entry names (sanitized).
    :param quota_size: FIFO quota of a ``$system`` bucket this creates, or None.
    """

    enabled = True
    name = "system-events"

    def __init__(self, engine: Any, clock: Any, instance: str,
                 quota_size: Optional[int] = None) -> None:
        self.engine = engine
        self.clock = clock
        self.instance = sanitize(instance)
        self.quota_size = quota_size
        self.audit = AuditAggregates()
        self.replication = ReplicationAggregates()
        self.usage = UsageMeter(engine, clock)
        #: Events waiting to be written: ``(stream, name, ts, status, message, payload)``.
        self.queue: deque = deque()
        self.dropped = 0
        self.written = 0
        self._access: dict = {}
        self._tick = LoopingCall(self.tick)
        self._tick.clock = clock
        self._usage = LoopingCall(self.queue_usage)
        self._usage.clock = clock
        self._more = None

    # -- ISystemEvents ----------------------------------------------------------

    def emit(self, stream, name, timestamp, status, message, payload) -> None:
        """Queue one event (dropped when :data:`MAX_QUEUE` are waiting)."""
        if len(self.queue) >= MAX_QUEUE:
            self.dropped += 1
            return
        self.queue.append((stream, name, timestamp, status, message, payload))

    def last_access(self, token_name):
        """:return: the newest audit event time of ``token_name`` (µs), or ``None``."""
        return self._access.get(token_name)

    def record_call(self, token, method, path, status, message, client_ip, started,
                    duration) -> None:
        """Add one finished request to its audit aggregate (``http/audit.py``)."""
        self.audit.add(token, method, path, status, message, client_ip, started, duration)

    def replication_pass(self, name, status, message, records, size, pending) -> None:
        """Add one replication pass to its running aggregate (``replication/``)."""
        self.replication.add(name, status, message, records, size, pending,
                             self.clock.seconds())

    # -- service ----------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self.load_access()
        self.usage.restart()
        self._tick.start(TICK, now=False)
        self._usage.start(USAGE_INTERVAL, now=False)

    def stopService(self) -> None:
        Service.stopService(self)
        for loop in (self._tick, self._usage):
            if loop.running:
                loop.stop()
        if self._more is not None and self._more.active():
            self._more.cancel()
        self._more = None
        if self.engine.is_open:
            self.flush(everything=True)  # first: the usage snapshot then counts them
            self.queue_usage()
            self.flush(everything=True)

    # -- the work -----------------------------------------------------------------

    def tick(self) -> None:
        """Queue the aggregates that are due, then write a slice of the queue."""
        try:  # whatever happens, the loop goes on (a LoopingCall stops on an error)
            self.take_due(everything=False)
            self._write_slice()
        except Exception:
            log.failure("System events: tick failed")

    def take_due(self, everything: bool) -> None:
        now = self.clock.seconds()
        for token, ts, status, message, payload in self.audit.due(now, everything):
            self.emit("audit", token, ts, status, message, payload)
        for name, ts, status, message, payload in self.replication.due(now, everything):
            self.emit("replications", name, ts, status, message, payload)

    def flush(self, everything: bool = True) -> int:
        """
        Queue the due aggregates (all, with ``everything``) and write the
        whole queue now.  For the stop, and for tests.

        :return: the number of records written.
        """
        self.take_due(everything)
        before = self.written
        while self.queue:
            self._write(*self.queue.popleft())
        return self.written - before

    def queue_usage(self) -> None:
        """Queue the usage events of the interval that ends now."""
        try:  # never stops the loop
            taken = self.usage.take()
        except Exception:
            log.failure("System events: usage statistics failed")
            return
        for name, payload in taken:
            self.emit("usage", name, int(self.clock.seconds() * 1_000_000), 200, "", payload)

    def _write_slice(self) -> None:
        self._more = None
        queue = self.queue
        for _ in range(min(SLICE, len(queue))):
            self._write(*queue.popleft())
        if queue and self.running:
            self._more = self.clock.callLater(0, self._write_slice)

    def _write(self, stream, name, timestamp, status, message, payload) -> None:
        entry = f"{stream}/{self.instance}/{sanitize(str(name))}"
        try:
            body = {"timestamp": timestamp, "instance": self.instance, "status": status,
                    "message": message}
            body.update(payload)
            data = json.dumps(body).encode("utf-8")
        except (TypeError, ValueError) as e:  # a payload that is not JSON
            self._drop(entry, timestamp, e)
            return
        try:
            self._ensure_bucket()
            writer = self.engine.upload(SYSTEM_BUCKET, entry, timestamp, len(data),
                                        "application/json", {"status": str(status)})
        except ReductError as e:  # e.g. 409: the timestamp is taken (spec: drop)
            self._drop(entry, timestamp, e)
            return
        try:
            writer.write(data)
            writer.close()
            writer.commit()
        except (ReductError, OSError) as e:
            writer.abort()
            self._drop(entry, timestamp, e)
            return
        self.written += 1
        if stream == "audit" and timestamp > self._access.get(name, -1):
            self._access[name] = timestamp

    def _drop(self, entry: str, timestamp: int, error: Exception) -> None:
        self.dropped += 1
        log.debug("System event {entry}@{ts} dropped: {error}", entry=entry, ts=timestamp,
                  error=str(error))

    def _ensure_bucket(self) -> None:
        if self.engine.has_bucket(SYSTEM_BUCKET):
            return
        settings = None
        if self.quota_size is not None:
            settings = {"quota_type": "FIFO", "quota_size": self.quota_size}
        self.engine.create_bucket(SYSTEM_BUCKET, settings, system=True)
        log.info("Created bucket {name} for system events", name=SYSTEM_BUCKET)

    def load_access(self) -> None:
        """
        ``last_access`` of every token with audit events: the newest record
        of each ``audit/<instance>/<token>`` entry (any instance).
        """
        if not self.engine.has_bucket(SYSTEM_BUCKET):
            return
        try:
            entries = self.engine.bucket_info(SYSTEM_BUCKET)["entries"]
        except ReductError:
            return
        for entry in entries:
            parts = entry["name"].split("/")
            if len(parts) == 3 and parts[0] == "audit" and entry["record_count"]:
                token, latest = parts[2], entry["latest_record"]
                if latest > self._access.get(token, -1):
                    self._access[token] = latest
