# -*- test-case-name: tests.unit.test_replication_task -*-
"""
One replication at work: the changes of its source bucket that pass its
filters go into its transaction logs (one per entry, ``txlog.py``); its
sender ships them to the destination (``remote.py``), oldest first, one
request at a time, and moves a log's cursor only once the destination
answered for them.

What the sender does with an answer:

* 200: every record is delivered, except those named in
  ``x-reduct-error-<ts>``.  A 409 (the destination already has the record)
  counts as delivered: that is how items sent again after a crash or a lost
  answer end up stored once.  Other per-record errors are counted as
  errored and given up, as upstream does.
* no answer, a timeout, 5xx, 408, 425, 429, 401, 403, 404: nothing moves;
  ``is_active`` turns false, and the sender probes the destination bucket
  and sends the same items again after a back-off (0.25 s, doubling, at
  most :data:`MAX_BACKOFF` s).
* other 4xx: the items are counted as errored and given up.

A label update is sent as ``PATCH …/batch`` with the record's labels as
they are when it is sent, and an empty value for each label the update
removed; a record the destination does not have (404) is written in full
instead, as upstream does.  A record removed from the source before it
was sent is counted as errored (404) and skipped.  Record removals are not
replicated (upstream neither).

Writes to the source never wait for any of this: appending to a log is a
short write to a file, and a full log drops its oldest item (``txlog.py``),
reported in the diagnostics as errored with status 507.  A record whose
``when`` cannot be evaluated (strictly, as upstream does: a missing label,
a type error) is not logged; it is counted as errored with the condition's
status and text (404, 422), and the first such failure of a replication's
settings is logged.

The mode [1.18] (spec 1.20 §5.3): ``enabled`` works as above; ``paused``
keeps logging (``pending_records`` grows) and sends nothing, but probes the
destination every :data:`PAUSED_PROBE` seconds while items wait, so
``is_active`` says whether it is reachable; ``disabled`` logs nothing
and sends nothing, and is never active.  Items logged before stay for
when the replication is enabled again.

Entries may be paths ``a/b/c`` [1.19]: a log's directory is the entry name
percent-encoded into one file name (``a%2Fb%2Fc``, ``a%2F%24meta``; plain
names stay as they are), so logs never nest into each other; a path too
long for a file name gets a hashed one and an ``entry`` file naming it.

Nothing goes to the destination, not even a probe, until there is
something to send: a new (or restarted, or updated) replication with empty
logs makes no request, stays ``is_active`` (1.15+ reports a replication
that has not met a failure as active) and its diagnostics stay empty.
"""

from __future__ import annotations

import hashlib
import os
from urllib.parse import quote, unquote

import attr
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from reduct_twisted.errors import ReductError
from reduct_twisted.replication.diagnostics import DiagnosticsCounter
from reduct_twisted.replication.filters import FilterFailed, TransactionFilter
from reduct_twisted.replication.remote import BATCH_MAX_RECORDS, RemoteError
from reduct_twisted.replication.shipping import Attempt, Shipment
from reduct_twisted.replication.txlog import LABELS, WRITE, EntryLog
from reduct_twisted.replication.settings import DISABLED, ENABLED, PAUSED
from reduct_twisted.storage.settings import entry_segments_valid

log = Logger()

#: Seconds of the first back-off, and the most it grows to.
BASE_BACKOFF = 0.25
MAX_BACKOFF = 5.0

#: Diagnostics status of items dropped from a full log.
LOG_FULL = 507

#: Seconds between two probes of a paused replication's destination.
PAUSED_PROBE = 5.0


#: Longest log directory name spelling its entry; longer paths are hashed.
LOG_DIR_NAME_MAX = 200
#: In a hashed log directory: the entry's name.
ENTRY_NAME_FILE = "entry"


def log_dir_name(entry: str) -> str:
    """
    The directory name of an entry's log: ``entry`` percent-encoded, ``/``
    included; for a path too long for one file name, ``~`` and its SHA-256
    (the name is then in the directory's :data:`ENTRY_NAME_FILE`).
    """
    name = quote(entry, safe="")
    if len(name) <= LOG_DIR_NAME_MAX:
        return name
    return "~" + hashlib.sha256(entry.encode("utf-8")).hexdigest()


def log_dir_entry(directory: str, name: str):
    """:return: the entry whose log directory is ``directory``/``name``, or None (not ours)."""
    if name.startswith("~"):
        try:
            with open(os.path.join(directory, name, ENTRY_NAME_FILE), "rb") as f:
                entry = f.read(1 << 16).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    else:
        entry = unquote(name)
    if entry_segments_valid(entry) and log_dir_name(entry) == name:
        return entry
    return None


class ReplicationTask:
    """
    :param name: the replication's name.
    :param settings: its validated ``ReplicationSettings``.
    :param engine: the ``StorageEngine`` records are read from.
    :param directory: its log directory (``.replications/<name>``).
    :param capacity: ``RS_REPLICATION_LOG_SIZE``, per entry log.
    :param dirty: the ``DirtySet`` log appends are recorded in.
    :param clock: ``seconds`` and ``callLater``.
    :param remote_factory: ``(settings) -> RemoteBucket`` (or a fake).
    :param provisioned: it comes from ``RS_REPLICATION_*``.
    """

    def __init__(self, name: str, settings, *, engine, directory: str, capacity: int, dirty,
                 clock, remote_factory, provisioned: bool = False) -> None:
        self.name = name
        self.provisioned = provisioned
        self.directory = directory
        self.diagnostics = DiagnosticsCounter(clock)
        self._engine = engine
        self._capacity = capacity
        self._dirty = dirty
        self._clock = clock
        self._remote_factory = remote_factory
        self._logs: dict = {}
        self._call = None
        self._in_flight = None
        self._stopped = True
        self._turn = 0
        self._use(settings)
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                entry = log_dir_entry(directory, name)
                if entry is not None:
                    self._log(entry)

    def _use(self, settings) -> None:
        self.settings = settings
        self._filter = TransactionFilter(settings)
        self.remote = self._remote_factory(settings)
        #: 1.15+: true from creation until the destination fails to answer.
        self.active = True
        #: Probe the destination before the next request (once there is one).
        self._needs_probe = True
        self._failures = 0
        self._filter_failure_logged = False

    def _log(self, entry: str) -> EntryLog:
        entry_log = self._logs.get(entry)
        if entry_log is None:
            path = os.path.join(self.directory, log_dir_name(entry))
            if os.path.basename(path).startswith("~"):
                self._name_log_dir(path, entry)
            entry_log = EntryLog(path, self._capacity, self._dirty)
            self._logs[entry] = entry_log
        return entry_log

    def _name_log_dir(self, path: str, entry: str) -> None:
        # A hashed log directory gets its entry's name before its first item
        # (flushed with it): without the name, a directory is not loaded.
        target = os.path.join(path, ENTRY_NAME_FILE)
        if os.path.exists(target):
            return
        if not os.path.isdir(path):
            os.makedirs(path)
            self._dirty.new_dir(path)
        temporary = target + ".tmp"
        with open(temporary, "wb") as f:
            f.write(entry.encode("utf-8"))
        os.replace(temporary, target)
        self._dirty.created(target)

    # -- what the engine tells -------------------------------------------------

    def _accept(self, entry: str, ts: int, labels: dict) -> bool:
        """Whether the filters take the change; a ``when`` failure is counted."""
        try:
            return self._filter.accept(entry, ts, labels)
        except FilterFailed as exc:
            message = f"Condition failed on record {ts} of entry '{entry}': {exc.message}"
            self.diagnostics.errored(exc.status, message)
            if not self._filter_failure_logged:
                self._filter_failure_logged = True
                log.warn("Replication {name}: {message}; such records are not replicated "
                         "(counted in the diagnostics, logged once)",
                         name=self.name, message=message)
            return False

    def record_written(self, entry: str, record) -> None:
        """A record of the source bucket was committed."""
        if self.settings.mode == DISABLED:
            return
        if self._accept(entry, record.ts, record.labels):
            self._append(entry, WRITE, record.ts)

    def labels_updated(self, entry: str, ts: int, changes: dict) -> None:
        """
        The labels of a record of the source bucket were changed.

        :param changes: the update as applied (name → value, ``""`` removed).
        """
        if self.settings.mode == DISABLED:
            return
        try:
            labels = self._engine.read(self.settings.src_bucket, entry, ts).record.labels
        except ReductError:
            return
        if self._accept(entry, ts, labels):
            removed = tuple(n for n, v in changes.items() if v == "" and n not in labels)
            self._append(entry, LABELS, ts, removed)

    def _append(self, entry: str, kind: str, ts: int, removed=()) -> None:
        try:
            dropped = self._log(entry).append(kind, ts, removed)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            log.error("Replication {name}: cannot log record {ts} of {entry}: {reason}",
                      name=self.name, ts=ts, entry=entry, reason=reason)
            self.diagnostics.errored(500, f"Failed to log record {ts} of entry '{entry}': {reason}")
            return
        if dropped is not None:
            self.diagnostics.errored(
                LOG_FULL,
                f"Transaction log of entry '{entry}' is full ({self._capacity} records): "
                f"record {dropped.ts} dropped without replication",
            )
        self.kick()

    # -- state -----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Items waiting in all logs."""
        return sum(entry_log.pending for entry_log in self._logs.values())

    def info(self) -> dict:
        """:return: the ``ReplicationInfo`` JSON."""
        return {"name": self.name, "mode": self.settings.mode,
                "is_active": self.active and self.settings.mode != DISABLED,
                "is_provisioned": self.provisioned, "pending_records": self.pending}

    def full_info(self) -> dict:
        """:return: the ``GET /replications/:name`` answer."""
        return {"info": self.info(), "settings": self.settings.to_json(),
                "diagnostics": {"hourly": self.diagnostics.hourly()}}

    # -- life cycle -------------------------------------------------------------

    def start(self) -> None:
        """Start sending what is pending (nothing is asked of the destination before)."""
        self._stopped = False
        self._schedule(0)

    def stop(self) -> Deferred:
        """Stop sending; a request in flight is cancelled (its items stay pending)."""
        self._stopped = True
        self._cancel_call()
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.cancel()
        return succeed(None)

    def update(self, settings, keep_logs: bool) -> None:
        """
        Take new settings; the sender starts over with them.

        :param keep_logs: keep the pending items (else they are dropped).
        """
        running = not self._stopped
        self.stop()
        if not keep_logs:
            self.close_logs(delete=True)
        self._use(settings)
        if running:
            self.start()

    def set_mode(self, mode: str) -> None:
        """
        Change only the mode: logs, filter state and diagnostics stay.
        Enabled again, the sender starts at once (a paused one's next probe
        is not waited for).
        """
        self.settings = attr.evolve(self.settings, mode=mode)
        if mode == ENABLED and self._in_flight is None and not self._stopped:
            self._schedule(0)

    def close_logs(self, delete: bool = False) -> list:
        """Close the logs; :return: their directories (to delete, if ``delete``)."""
        directories = [entry_log.directory for entry_log in self._logs.values()]
        for entry_log in self._logs.values():
            entry_log.close()
        if delete:
            self._logs = {}
        return directories

    def kick(self) -> None:
        """Send soon, unless busy or waiting out a back-off (a call is scheduled)."""
        if not self._stopped and self._call is None and self._in_flight is None:
            self._schedule(0)

    def _schedule(self, delay: float) -> None:
        self._cancel_call()
        self._call = self._clock.callLater(delay, self._run)

    def _cancel_call(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    # -- the sender ---------------------------------------------------------------

    def _run(self) -> None:
        self._call = None
        if self._stopped:
            return
        if not self.pending or self.settings.mode == DISABLED:
            return  # idle: no request, not even a probe, until a record is logged
        if self.settings.mode == PAUSED:
            self._probe_paused()
            return
        if self._needs_probe:
            self._track(self.remote.probe(), self._probed, self._waiting_records())
            return
        job = self._next_job()
        if job is not None:
            self._track(Deferred.fromCoroutine(job), self._sent, None)

    def _probe_paused(self) -> None:
        # Paused: only whether the destination answers (is_active); nothing
        # is counted in the diagnostics.  The next look is a probe again,
        # or, enabled meanwhile, the sending.
        d = self.remote.probe()
        self._in_flight = d

        def settled(result):
            if self._in_flight is not d:  # stopped (or restarted) meanwhile
                return None
            self._in_flight = None
            failed = isinstance(result, Failure)
            if failed and result.check(CancelledError):
                return None
            self._set_active(not failed, "" if not failed else result.getErrorMessage())
            self._needs_probe = failed
            if not self._stopped:
                self._schedule(PAUSED_PROBE if self.settings.mode == PAUSED else 0)
            return None

        d.addBoth(settled)

    def _waiting_records(self) -> int:
        return max(1, min(self.pending, BATCH_MAX_RECORDS))

    def _track(self, d: Deferred, on_success, records) -> None:
        self._in_flight = d

        def settled(result):
            if self._in_flight is not d:  # stopped (or restarted) meanwhile
                return None
            self._in_flight = None
            if isinstance(result, BaseException):
                self._failed(result, records)
            else:
                on_success(result)
            return None

        d.addCallbacks(settled, lambda f: settled(f.value))

    def _probed(self, _) -> None:
        # The back-off grows on: only a batch delivered resets it.
        self._needs_probe = False
        self._set_active(True)
        if self.pending:
            self._schedule(0)

    def _sent(self, _) -> None:
        self._set_active(True)
        self._failures = 0
        if self.pending:
            self._schedule(0)

    def _set_active(self, active: bool, reason: str = "") -> None:
        if active != self.active:
            if active:
                log.info("Replication {name}: destination {host} available again",
                         name=self.name, host=self.settings.dst_host)
            else:
                log.warn("Replication {name}: destination {host} unavailable ({reason}); "
                         "retrying", name=self.name, host=self.settings.dst_host, reason=reason)
        self.active = active

    def _failed(self, error, records) -> None:
        if isinstance(error, CancelledError):
            return
        if isinstance(error, RemoteError):  # a probe
            error = Attempt(error, records)
        elif not isinstance(error, Attempt):
            log.error("Replication {name}: sending failed: {error!r}", name=self.name,
                      error=error)
            error = Attempt(RemoteError(500, str(error), retry=True), records or 1)
        remote = error.error
        self.diagnostics.errored(remote.status, remote.message, error.records)
        self._set_active(False, f"{remote.status}: {remote.message}")
        self._needs_probe = True
        self._failures += 1
        self._schedule(min(MAX_BACKOFF, BASE_BACKOFF * 2 ** (self._failures - 1)))

    def _next_job(self):
        entries = sorted(e for e, entry_log in self._logs.items() if entry_log.pending)
        if not entries:
            return None
        entry = entries[self._turn % len(entries)]
        self._turn += 1
        entry_log = self._logs[entry]
        items = entry_log.peek(BATCH_MAX_RECORDS)
        if not items:
            return None
        shipment = Shipment(self._engine, self.settings.src_bucket, self.remote, entry)
        return self._ship(shipment, entry_log, items)

    async def _ship(self, shipment, entry_log: EntryLog, items: list) -> None:
        # Send the longest run of items of one kind from the front of the
        # log, then acknowledge it.  Raises Attempt to retry later.
        run, errors = await shipment.send(items)
        if self._stopped:
            raise CancelledError()
        cursor = entry_log.cursor
        ok = sum(1 for item in run if item.seq >= cursor) - len(errors)
        entry_log.ack(run[-1])  # first: the counts below see what is still pending
        self.diagnostics.ok(max(0, ok), shipment.sent_bytes)
        for status, message in errors:
            self.diagnostics.errored(status, message)
