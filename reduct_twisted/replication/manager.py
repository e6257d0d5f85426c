# -*- test-case-name: tests.unit.test_replication_manager -*-
"""
The replications of this daemon (spec §3.13): the registry behind
``/api/v1/replications``, the storage engine's listener that feeds their
logs, and the service that starts and stops their senders.

Replications made through the API are kept in ``<data_path>/.replications.json``
(``registry_file.py``; replaced atomically, mode 0600: it holds the
destination tokens)::

    {"format": 2,
     "replications": [{"name": "to-central",
                       "settings": {"src_bucket": "cams", "dst_token": "…", …,
                                    "mode": "enabled"}}],
     "provisioned_modes": {"from-env": "paused"}}

Format 1 (before modes) is read as every replication ``enabled``; a file of
a newer format is left alone: nothing is loaded from it and nothing is
written over it (changes are refused with a 500) until it is moved away.

Provisioned replications (``RS_REPLICATION_<ID>_*``) come from the
environment at every start and live in memory only; one hides a stored
replication of the same name, which stays in the file.  They cannot be
changed or removed through the API, except for their mode
(``PATCH …/mode``, spec 1.20 §5.3), which is kept in ``provisioned_modes``:
without ``RS_REPLICATION_<ID>_MODE``, a replication provisioned again keeps
the mode it had.  Transaction logs live below
``<data_path>/.replications/<name>/`` (``txlog.py``); removing a
replication removes its logs.

A replication whose source bucket is removed stays: its pending items are
counted as errored (404) when their turn comes, and it replicates again if
a bucket of that name is created.  It is also loaded at start-up when its
source bucket is missing (upstream drops it then).
"""

from __future__ import annotations

import itertools
import os
import shutil
from functools import partial
from typing import Optional

from twisted.application.service import Service
import attr
from twisted.internet.defer import DeferredList
from twisted.logger import Logger
from zope.interface import implementer

from reduct_twisted.errors import Conflict, NotFound, ReductError
from reduct_twisted.interfaces import IEngineListener
from reduct_twisted.replication.remote import RemoteBucket
from reduct_twisted.replication.settings import (
    ENABLED, MODES, check_replication_name, parse_settings, validate,
)
from reduct_twisted.replication.task import ReplicationTask
from reduct_twisted.storage.disk.durability import DirtySet
from reduct_twisted.storage.disk.layout import REGISTRY_FILE
from reduct_twisted.storage.disk.layout import REPLICATION_LOG_DIR as LOG_DIR
from reduct_twisted.registry_file import RegistryFile

log = Logger()

#: The registry file (``REGISTRY_FILE``) and the log directory (``LOG_DIR``)
#: below ``data_path`` are named in ``storage/disk/layout.py``.
#: Where removed logs wait for deletion, below ``LOG_DIR``.
TRASH_DIR = ".trash"
#: 2: replications have a ``mode``, and ``provisioned_modes`` (API 1.18).
REGISTRY_FORMAT = 2


@implementer(IEngineListener)
class ReplicationManager(Service):
    """
    :param engine: the open ``StorageEngine``; the manager adds itself to
        its ``listeners``.
    :param clock: the reactor (``seconds``, ``callLater``).
    :param data_path: the data directory.
    :param capacity: ``RS_REPLICATION_LOG_SIZE``: items per entry log.
    :param timeout: ``RS_REPLICATION_TIMEOUT``: seconds without progress
        before a request to a destination is given up.
    :param http: the treq ``HTTPClient`` for destinations; made on the
        reactor if ``None``.
    :param remote_factory: ``(settings) -> RemoteBucket``; for tests.
    :param persist: ``persist(path, data) -> Deferred|None`` writes the
        registry (``SnapshotWriter.write`` in the daemon); at once by default.
    :param discard: ``discard(path)`` deletes a trashed log directory
        (in the thread pool in the daemon); at once by default.
    :param ports: ports this server listens on (``RS_PORT``), for the
        "replication onto itself" check.
    :param track_dirty: record log appends for :meth:`take_dirty` (sync
        policy ``always``).
    :param tls: the ``IPolicyForHTTPS`` of ``https`` destinations
        (``tls.replication_tls``); twisted.web's default if ``None``.
    """

    name = "replication"
    #: The ``$system`` event streams (an ``ISystemEvents``) told of every
    #: replication pass (:meth:`use_events`).
    events = None

    def use_events(self, events) -> None:
        """Tell ``events`` of every pass of every replication, present and future."""
        self.events = events
        for task in self._tasks.values():
            task.diagnostics.observer = partial(_report_pass, events, task)

    def __init__(self, engine, clock, data_path: str, *, capacity: int = 1_000_000,
                 timeout: float = 5.0, http=None, remote_factory=None, persist=None,
                 discard=None, ports=(), track_dirty: bool = True, tls=None) -> None:
        self.engine = engine
        self.clock = clock
        self.data_path = data_path
        self.capacity = capacity
        self.timeout = timeout
        self.ports = frozenset(ports)
        self.dirty = DirtySet(track_dirty)
        self._http = http
        self._tls = tls
        self._pool = None
        self._remote_factory = remote_factory or self._remote
        self._file = RegistryFile(os.path.join(data_path, REGISTRY_FILE), "replications",
                                  REGISTRY_FORMAT, MODES, "replication", persist=persist,
                                  missing_format=1)
        self._discard = discard or _remove_tree
        self._log_dir = os.path.join(data_path, LOG_DIR)
        self._trash_counter = itertools.count()
        self._tasks: dict = {}
        self._hidden: dict = {}
        #: name -> mode of provisioned replications (set by PATCH …/mode).
        self._provisioned_modes: dict = {}
        self._by_bucket: dict = {}
        _remove_tree(os.path.join(self._log_dir, TRASH_DIR))
        self._load()
        engine.listeners.append(self)

    # -- loading and saving ------------------------------------------------------

    def _load(self) -> None:
        items, self._provisioned_modes = self._file.load()
        for item in items:
            try:
                check_replication_name(item["name"])
                settings = parse_settings(item["settings"])
            except (ReductError, KeyError, TypeError) as exc:
                log.error("Skipping a replication of {path}: {reason}", path=self._file.path,
                          reason=getattr(exc, "message", repr(exc)))
                continue
            self._add(item["name"], settings)

    def _save(self):
        """Write the registry; :return: a Deferred firing once it is on disk."""
        items = dict(self._hidden)
        for name, task in self._tasks.items():
            if not task.provisioned:
                items[name] = task.settings.to_json(masked=False)
        return self._file.save(items, self._provisioned_modes)

    # -- tasks ---------------------------------------------------------------------

    def _remote(self, settings) -> RemoteBucket:
        if self._http is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            self._pool = HTTPConnectionPool(self.clock, persistent=True)
            self._pool._factory = _quiet_factory()
            tls = {} if self._tls is None else {"contextFactory": self._tls}
            agent = Agent(self.clock, connectTimeout=self.timeout, pool=self._pool, **tls)
            self._http = HTTPClient(agent)
        return RemoteBucket(self._http, self.clock, settings.dst_host, settings.dst_bucket,
                            settings.dst_token, self.timeout)

    def _add(self, name: str, settings, provisioned: bool = False) -> ReplicationTask:
        task = ReplicationTask(
            name, settings, engine=self.engine, directory=os.path.join(self._log_dir, name),
            capacity=self.capacity, dirty=self.dirty, clock=self.clock,
            remote_factory=self._remote_factory, provisioned=provisioned,
        )
        if self.events is not None:  # its passes, for the $system replications stream
            task.diagnostics.observer = partial(_report_pass, self.events, task)
        self._tasks[name] = task
        self._index()
        if self.running:
            task.start()
        return task

    def _index(self) -> None:
        by_bucket: dict = {}
        for task in self._tasks.values():
            by_bucket.setdefault(task.settings.src_bucket, []).append(task)
        self._by_bucket = by_bucket

    def _task(self, name: str) -> ReplicationTask:
        task = self._tasks.get(name)
        if task is None:
            raise NotFound(f"Replication '{name}' does not exist")
        return task

    def _trash(self, directory: str) -> None:
        # Renamed away at once (a replication of the same name may start
        # logging right after), deleted later.
        if not os.path.isdir(directory):
            return
        trash = os.path.join(self._log_dir, TRASH_DIR)
        os.makedirs(trash, exist_ok=True)
        target = os.path.join(trash, f"{next(self._trash_counter)}-{os.path.basename(directory)}")
        os.rename(directory, target)
        self._discard(target)

    # -- the API ---------------------------------------------------------------------

    def list(self) -> list:
        """:return: the ``ReplicationInfo`` of each replication, by name."""
        return [self._tasks[name].info() for name in sorted(self._tasks)]

    def stats(self) -> list:
        """
        What ``/metrics`` shows of each replication, by name: ``{"name",
        "active", "pending", "sent", "errors"}``; ``sent`` and ``errors``
        (``{status: records}``) count since the replication was made.
        """
        stats = []
        for name, task in sorted(self._tasks.items()):
            info = task.info()
            stats.append({"name": name, "active": info["is_active"],
                          "pending": info["pending_records"],
                          "sent": task.diagnostics.sent_total,
                          "errors": dict(task.diagnostics.errors_total)})
        return stats

    def get(self, name: str) -> dict:
        """:return: the ``GET /replications/:name`` answer. :raises NotFound:"""
        return self._task(name).full_info()

    def create(self, name: str, body, local_port: Optional[int] = None):
        """
        Create a replication (``POST``).

        :param body: the decoded JSON settings.
        :param local_port: the port the request came in on.
        :return: a Deferred firing once the registry is saved.
        :raises ReductError: 409 exists, 422/404 invalid settings (spec §3.13).
        """
        settings = parse_settings(body)
        if name in self._tasks:
            raise Conflict(f"Replication '{name}' already exists")
        check_replication_name(name)
        validate(name, settings, self.engine.has_bucket, self._ports(local_port))
        self._hidden.pop(name, None)
        self._add(name, settings)
        return self._save()

    def update(self, name: str, body, local_port: Optional[int] = None):
        """
        Replace the settings of a replication (``PUT``); a body without
        ``dst_token`` keeps the token.  Pending records stay pending unless
        the source bucket changed.

        :return: a Deferred firing once the registry is saved.
        :raises ReductError: 404 missing, 409 provisioned, 422/404 invalid.
        """
        task = self._task(name)
        if task.provisioned:
            raise Conflict(f"Can't update provisioned replication '{name}'")
        settings = parse_settings(body, task.settings)
        validate(name, settings, self.engine.has_bucket, self._ports(local_port))
        self._replace(task, settings)
        return self._save()

    def _replace(self, task: ReplicationTask, settings) -> None:
        same_source = settings.src_bucket == task.settings.src_bucket
        task.update(settings, keep_logs=same_source)
        if not same_source:
            self._trash(task.directory)
        self._index()

    def remove(self, name: str):
        """
        Remove a replication and its logs (``DELETE``).

        :return: a Deferred firing once the registry is saved.
        :raises ReductError: 404 missing, 409 provisioned.
        """
        task = self._task(name)
        if task.provisioned:
            raise Conflict(f"Can't remove provisioned replication '{name}'")
        task.stop()
        task.close_logs()
        del self._tasks[name]
        self._index()
        self._trash(task.directory)
        return self._save()

    def set_mode(self, name: str, mode: str):
        """
        Change only the mode of a replication (``PATCH …/mode``), provisioned
        ones included.

        :param mode: a valid mode (``settings.parse_mode``).
        :return: a Deferred firing once the registry is saved.
        :raises NotFound: no such replication.
        """
        task = self._task(name)
        task.set_mode(mode)
        if task.provisioned:
            self._provisioned_modes[name] = mode
        return self._save()

    def _ports(self, local_port) -> frozenset:
        return self.ports if local_port is None else self.ports | {local_port}

    def provision(self, replications) -> None:
        """
        Create or overwrite the provisioned replications; log, never raise,
        what is invalid (spec §3.14).

        :param replications: ``ProvisionedReplication`` items (``name``,
            ``settings`` as JSON; without ``mode`` the replication keeps the
            mode it had when last provisioned (from the environment or
            ``PATCH …/mode``), else that of the stored replication it
            hides, else ``enabled``).  The modes are saved with the registry.
        """
        before = dict(self._provisioned_modes)
        for item in replications:
            try:
                settings = parse_settings(item.settings)
                check_replication_name(item.name)
                validate(item.name, settings, self.engine.has_bucket, self.ports)
            except ReductError as exc:
                log.error("Cannot provision replication {name}: {reason}",
                          name=item.name, reason=exc.message)
                continue
            task = self._tasks.get(item.name)
            if "mode" not in item.settings:
                kept = self._provisioned_modes.get(item.name)
                if kept is None and task is not None:
                    kept = task.settings.mode
                settings = attr.evolve(settings, mode=kept or ENABLED)
            self._provisioned_modes[item.name] = settings.mode
            if task is None:
                task = self._add(item.name, settings, provisioned=True)
            else:
                if not task.provisioned:
                    self._hidden[item.name] = task.settings.to_json(masked=False)
                task.provisioned = True
                self._replace(task, settings)
            log.info("Provisioned replication {name}", name=item.name)
        if self._provisioned_modes != before:
            # (a failure is logged by _save; the modes stay in memory)
            self._save().addErrback(lambda _: None)

    # -- the engine's listener -------------------------------------------------------

    def record_written(self, bucket: str, entry: str, record) -> None:
        """See ``StorageEngine.listeners``."""
        tasks = self._by_bucket.get(bucket)
        if tasks:
            for task in tasks:
                try:
                    task.record_written(entry, record)
                except Exception:
                    log.failure("Replication {name} failed on a write", name=task.name)

    def labels_updated(self, bucket: str, entry: str, ts: int, labels: dict) -> None:
        """
        The labels of record ``ts`` were changed (called by the engine after
        the change is stored).

        :param labels: the update as applied: name → new value, ``""`` for a
            removed label (only those are used; the record's labels are
            read from the engine).
        """
        tasks = self._by_bucket.get(bucket)
        if tasks:
            for task in tasks:
                try:
                    task.labels_updated(entry, ts, labels)
                except Exception:
                    log.failure("Replication {name} failed on a label update", name=task.name)

    def take_dirty(self) -> tuple:
        """:return: ``(files, directories)`` of the logs changed since the last call."""
        return self.dirty.take()

    # -- the service -----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for task in self._tasks.values():
            task.start()

    def stopService(self):
        super().stopService()
        stopped = [task.stop() for task in self._tasks.values()]
        for task in self._tasks.values():
            task.close_logs()
        if self._pool is not None:
            stopped.append(self._pool.closeCachedConnections())
        return DeferredList(stopped, consumeErrors=True)


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _quiet_factory():
    from twisted.web.client import _HTTP11ClientFactory

    class QuietFactory(_HTTP11ClientFactory):
        # One "Starting factory" line per connection, and per retry while a
        # destination is down, would flood the log.
        noisy = False

    return QuietFactory


def _report_pass(events, task, status: int, message: str, count: int, size: int) -> None:
    events.replication_pass(task.name, status, message, count, size, task.pending)
