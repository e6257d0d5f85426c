"""
``StorageService``: the storage engine, its disk thread pool and its two
periodic loops, started and stopped as one Twisted service.

The engine is opened synchronously in the constructor: ``MultiService``
ignores Deferreds returned by a child's ``startService``, so a store that
cannot be opened must fail while ``makeService`` runs, before twistd starts.

Loops (each a ``TimerService`` on the injected clock, run once at start):

* quota enforcement, every ``quota_interval`` seconds;
* query expiry, every ``query_expiry_interval`` seconds;
* the block indexes (``storage/indexing.py``), every ``block_index_interval``
  seconds: rows for the blocks changed since the last pass are computed
  on the reactor (bounded), the block files they describe flushed in the
  thread pool when the sync policy is ``always`` (so an index never vouches
  for bytes a power loss could take), then the indexes written;
* the entry logs left behind their records (``storage/entry_log_lag.py``),
  swept every ``SWEEP_INTERVAL`` seconds: those behind for ``LAG_SWEEPS``
  sweeps are caught up, in steps on the cooperator.

A ``TimerService`` stops for good the first time its callable raises, so each
step catches and logs its own failure and the next step runs as usual.

Long entry-log work runs in steps on a ``task.Cooperator`` (started with the
service, stopped before the engine closes; ``storage/entry_log_catchup.py``).

Stopping: wait for an in-flight step (the timers' own ``stopService``), stop
the entry-log steps, the thread pool (it finishes queued discards and any other queued disk work
first), close the engine, then release the data directory lock (``datadir.py``).
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Cooperator
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from reduct_twisted.config import Config
from reduct_twisted.storage.entry_log_lag import SWEEP_INTERVAL
from reduct_twisted.sync import fsync_paths


def remove_paths(paths: list[str]) -> list[tuple[str, str]]:
    """
    Delete each path, a file or a whole directory tree; paths already gone
    are fine.  Runs in a worker thread.

    :return: ``(path, reason)`` for each path that could not be removed.
    """
    problems = []
    for path in paths:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            problems.append((path, f"{type(e).__name__}: {e.strerror or e}"))
    return problems


#: Seconds of entry-log steps per reactor turn (at least one step runs).
STEP_BUDGET = 0.002


def _turn_budget() -> Callable[[], bool]:
    """A ``Cooperator`` termination predicate: true once ``STEP_BUDGET`` has passed."""
    end = time.monotonic() + STEP_BUDGET
    return lambda: time.monotonic() >= end


def _default_engine_factory(data_path: str, clock: Any, **kwargs: Any) -> Any:
    from reduct_twisted.storage import StorageEngine

    return StorageEngine(data_path, clock, **kwargs)


class StorageService(MultiService):
    """
    Owns the storage engine and the thread pool its disk work runs in.

    :ivar engine: the open ``StorageEngine`` (give it to ``wiring.assemble``).
    :ivar threadpool: the disk ``ThreadPool`` (give it to ``wiring.assemble``);
        running between ``startService`` and ``stopService``.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        engine_factory: Callable[..., Any] | None = None,
        lock: Any = None,
    ) -> None:
        """
        Create the pool, then create and open the engine.

        :param reactor: the clock for the loops and the engine, and where
            thread results are delivered (``callFromThread``).
        :param engine_factory: called as ``(data_path, clock, discard=...,
            sync=..., track_dirty=..., table_cache_size=...,
            reserve_size=...)``; the real ``StorageEngine`` by default.
        :param lock: the held data directory lock (``datadir.DataDirLock``),
            or ``None``; its owner is written again at start (after twistd
            daemonised) and it is released at the end of the stop.
        :raises OSError: if the data directory cannot be used.
        :raises DataDirRefused: the data directory is not ours.
        """
        super().__init__()
        self.setName("storage")
        self._reactor = reactor
        self._config = config
        self._lock = lock
        self.leaf_worker = None
        self.threadpool = ThreadPool(
            minthreads=0, maxthreads=config.threadpool_size, name="reduct-storage"
        )
        from reduct_twisted.storage.disk.reserve import DEFAULT_SIZE as RESERVE_SIZE

        factory = engine_factory or _default_engine_factory
        self.engine = factory(
            config.data_path,
            reactor,
            discard=self.discard,
            sync=fsync_paths,
            track_dirty=config.sync == "always",
            table_cache_size=config.table_cache_size,
            reserve_size=RESERVE_SIZE,
        )
        if hasattr(self.engine, "run_in_thread"):
            # Block compression packs in the disk thread pool (storage/compress.py).
            self.engine.run_in_thread = self._in_thread
        # Long entry-log work (catch-ups, hash builds) in steps, a few per
        # reactor turn (storage/entry_log_catchup.py); runs once started.
        self.cooperator = Cooperator(scheduler=lambda step: reactor.callLater(0, step),
                                     terminationPredicateFactory=_turn_budget, started=False)
        if hasattr(self.engine, "set_cooperator"):
            self.engine.set_cooperator(self.cooperator.cooperate)
        self.engine.open()
        self._report_recovery(self.engine.recovery_report())
        self._add_loop("quota", config.quota_interval, self._enforce_quotas)
        self._add_loop("query-expiry", config.query_expiry_interval, self._expire_queries)
        if hasattr(self.engine, "catch_up_logs"):  # logs behind their records (sync = none)
            self._add_loop("entry-logs", SWEEP_INTERVAL, self._catch_up_logs)
        if hasattr(self.engine, "index_snapshot"):  # not a stand-in engine (tests)
            self._add_loop("block-index", config.block_index_interval, self._write_block_indexes)

    def _report_recovery(self, report: dict) -> None:
        """Log what start-up recovery found (storage itself has no logger)."""
        if report.get("unclean"):
            self.log.warn(
                "The previous run did not stop cleanly: verified {verified} records, "
                "dropped {dropped} whose data was incomplete, quarantined {quarantined} blocks",
                verified=report.get("verified_records", 0),
                dropped=report.get("dropped_records", 0),
                quarantined=len(report.get("quarantined_blocks", ())),
            )
        for problem in report.get("problems", ()):
            self.log.error("Storage recovery: {problem}", problem=problem)
        for line in report.get("left_in_place", ()):
            self.log.warn("Storage: {line}", line=line)
        index = report.get("block_index")
        if index:
            for line in index["ignored"]:
                self.log.warn("Storage: {line}", line=line)
            self.log.info("Opened {rows} blocks from their block index, read {read}",
                          rows=index["rows_used"], read=index["blocks_read"])

    def _add_loop(self, name: str, interval: float, step: Callable[[], None]) -> None:
        timer = TimerService(interval, step)
        timer.clock = self._reactor
        timer.setName(name)
        timer.setServiceParent(self)

    def _enforce_quotas(self) -> None:
        self._run_step(
            "Quota enforcement",
            self.engine.enforce_quotas,
            LogLevel.info,
            "Quota enforcement removed {count} blocks",
        )

    def _catch_up_logs(self) -> None:
        try:
            self.engine.catch_up_logs()
        except Exception:
            self.log.failure("Entry log catch-up failed; will try again")

    def _expire_queries(self) -> None:
        self._run_step(
            "Query expiry", self.engine.expire_queries, LogLevel.debug, "Expired {count} queries"
        )

    def _write_block_indexes(self) -> Deferred[None] | None:
        """One block index pass (see the module docstring); failures are logged."""
        try:
            pending, paths = self.engine.index_snapshot()
        except Exception:
            self.log.failure("Block index pass failed; will try again")
            return None
        if not pending:
            return None
        if self._config.sync == "always" and paths:
            d = self._in_thread(fsync_paths, sorted(set(paths)), [])
        else:
            d = succeed(None)
        d.addCallback(lambda _: self.engine.index_write(pending))
        d.addCallbacks(
            lambda count: self.log.debug("Wrote {count} block indexes", count=count),
            lambda f: self.log.failure("Block index pass failed; will try again", f),
        )
        return d

    def _run_step(self, what: str, step: Callable[[], int], level: LogLevel, done: str) -> None:
        """
        Run one maintenance step: a failure is logged and swallowed (see the
        module docstring), a non-zero count is logged at ``level``.

        :param what: names the step in the failure message.
        :param step: does the work; returns how many things it handled.
        :param done: the format of the count message (``{count}``).
        """
        try:
            count = step()
        except Exception:
            self.log.failure("{what} failed; will try again", what=what)
        else:
            if count:
                self.log.emit(level, done, count=count)

    def _in_thread(self, f: Callable[..., Any], *args: Any) -> Any:
        """Run ``f(*args)`` in the disk thread pool: a Deferred of its result."""
        return deferToThreadPool(self._reactor, self.threadpool, f, *args)

    def discard(self, paths: list[str]) -> None:
        """
        Remove files or directory trees in the thread pool, fire-and-forget;
        failures are logged.  Once the pool has stopped (while the engine
        closes) the removal runs at once in the calling thread.
        """
        paths = list(paths)
        if not paths:
            return
        if self.threadpool.joined:
            self._report_discard(remove_paths(paths))
            return
        d: Deferred[list[tuple[str, str]]] = deferToThreadPool(
            self._reactor, self.threadpool, remove_paths, paths
        )
        d.addCallbacks(self._report_discard, self._discard_failed)

    def _report_discard(self, problems: list[tuple[str, str]]) -> None:
        for path, reason in problems:
            self.log.error("Could not discard {path}: {reason}", path=path, reason=reason)

    def _discard_failed(self, failure: Failure) -> None:
        self.log.failure("Discarding files failed", failure)

    def startService(self) -> None:
        if self._lock is not None:
            self._lock.record_owner()
        self.threadpool.start()
        super().startService()
        self.cooperator.start()
        self._start_backfill()
        if self._config.integrity != "off" and hasattr(self.engine, "set_leaf_worker"):
            # Entry-log leaves and hashes made in a worker process (issue #16).
            from reduct_twisted.leafworker import LeafWorker

            self.leaf_worker = LeafWorker(self._reactor)
            self.engine.set_leaf_worker(self.leaf_worker.submit)
        self.log.info(
            "Storage open at {path}; quotas every {quota}s, query expiry every {expiry}s",
            path=os.path.abspath(self._config.data_path),
            quota=self._config.quota_interval,
            expiry=self._config.query_expiry_interval,
        )

    def _start_backfill(self) -> None:
        """
        RS_INTEGRITY on the engine, then the background pass giving records
        stored before issue #16 their numbers and digests (storage/backfill.py).
        """
        if not hasattr(self.engine, "backfill"):
            return  # a stand-in engine (tests)
        self.engine.set_integrity(
            self._config.integrity,
            warn=lambda line: self.log.error("Storage: {line}", line=line))
        d = self.engine.backfill()

        def done(report: dict) -> None:
            for problem in report["problems"]:
                self.log.error("Backfill: {problem}", problem=problem)
            if report["numbered"] or report["digested"]:
                self.log.info("Backfill: {numbered} older records numbered, {digested} "
                              "given a digest", **report)

        d.addCallbacks(done, lambda f: self.log.failure("Backfill failed", f))

    def stopService(self) -> Deferred[None]:
        d = super().stopService()  # waits for an in-flight loop step

        def shut_down(_: object) -> Deferred[None] | None:
            worker, self.leaf_worker = self.leaf_worker, None
            if worker is not None:
                self.engine.set_leaf_worker(None)  # close() appends what is pending itself
            if self.cooperator.running:
                self.cooperator.stop()  # steps left: the next start goes on from the logs
            self.threadpool.stop()
            try:
                self.engine.close()
            finally:
                # Last: another daemon may take the directory over now.
                if self._lock is not None:
                    self._lock.release()
            # The worker's input closes, it exits (killed after STOP_GRACE).
            return None if worker is None else worker.stop()

        return d.addCallback(shut_down)
