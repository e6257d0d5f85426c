# -*- test-case-name: tests.unit.test_leafworker -*-
"""
The leaf worker process (issue #16): runs ``leafjob.serve`` in a Python
process beside the daemon, hands it jobs over its
standard input and fires each job's Deferred with the answer read from its
standard output (the protocol is in ``storage/leafjob.py``).  The storage
service starts it when the integrity log is on and gives its
:meth:`LeafWorker.submit` to the engine (``set_leaf_worker``).

If the worker exits, every job waiting fails (the daemon makes those
leaves itself, ``storage/entry_log_offload.py``) and it is started again
for the next job, at most once per :data:`RESTART_AFTER` seconds; in
between, :meth:`submit` fails at once.  The worker reads nothing but its
input and writes nothing but its output; it ends by itself when its input
closes, so it never outlives the daemon (``kill -9`` included).
"""

import os
import sys

from twisted.internet import error
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from zope.interface import implementer

import reduct_twisted
from reduct_twisted.interfaces_integrity import ILeafWorker
from reduct_twisted.storage.leafjob import FrameReader, frame

__all__ = ["LeafWorker", "WorkerGone", "RESTART_AFTER"]

#: The worker's program (``python -c``: the module is imported, not run as ``__main__``).
WORKER = "import sys; from reduct_twisted.storage.leafjob import serve; sys.exit(serve())"
#: Seconds between two starts of the worker at most.
RESTART_AFTER = 10.0
#: Seconds a stopping worker has to exit before it is killed.
STOP_GRACE = 5.0

log = Logger()


class WorkerGone(Exception):
    """The worker is not running (it exited, or is restarting)."""


class _Protocol(ProcessProtocol):
    def __init__(self, owner: "LeafWorker") -> None:
        self.owner = owner
        self.reader = FrameReader()
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        try:
            answers = self.reader.feed(data)
        except ValueError as exc:
            log.error("Leaf worker sent a bad frame ({exc}); stopping it", exc=exc)
            self.transport.signalProcess("KILL")
            return
        for job, payload in answers:
            self.owner._answered(self, job, payload)

    def errReceived(self, data: bytes) -> None:
        log.warn("Leaf worker: {text}", text=data.decode("utf-8", "replace").rstrip())

    def processEnded(self, reason) -> None:
        self.owner._ended(self, reason)
        self.ended.callback(None)


def _environment() -> dict:
    """The daemon's environment, with this package importable first."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(reduct_twisted.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


@implementer(ILeafWorker)
class LeafWorker:
    """
    :param reactor: spawns the process and times restarts.
    :param argv: the worker's command line (default: this Python running
        ``reduct_twisted.storage.leafjob``).
    """

    def __init__(self, reactor, argv=None) -> None:
        self._reactor = reactor
        self._argv = argv or [sys.executable, "-c", WORKER]
        self._proto = None
        self._waiting: dict = {}
        self._next = 0
        self._started_at = None
        self._stopping = False
        #: How many times the worker was started (for tests and logs).
        self.starts = 0

    def _start(self) -> bool:
        now = self._reactor.seconds()
        if self._stopping or (self._started_at is not None and now - self._started_at < RESTART_AFTER):
            return False
        self._started_at = now
        proto = _Protocol(self)
        try:
            self._reactor.spawnProcess(proto, self._argv[0], self._argv, env=_environment(),
                                       childFDs={0: "w", 1: "r", 2: "r"})
        except OSError as exc:
            log.error("Could not start the leaf worker: {exc}", exc=exc)
            return False
        self._proto = proto
        self.starts += 1
        return True

    def submit(self, payload: bytes) -> Deferred:
        if self._proto is None and not self._start():
            return fail(WorkerGone("the leaf worker is not running"))
        self._next += 1
        job, d = self._next, Deferred()
        self._waiting[job] = d
        self._proto.transport.write(frame(job, payload))
        return d

    def _answered(self, proto, job: int, payload: bytes) -> None:
        d = self._waiting.pop(job, None)
        if d is not None and proto is self._proto:
            d.callback(payload)

    def _ended(self, proto, reason) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        waiting, self._waiting = self._waiting, {}
        if not self._stopping and not reason.check(error.ProcessDone):
            log.warn("The leaf worker exited ({why}); the daemon makes the leaves itself "
                     "until it is started again", why=reason.getErrorMessage())
        for d in waiting.values():
            d.errback(WorkerGone("the leaf worker exited"))

    def stop(self) -> Deferred:
        """Close the worker's input (it exits); kill it if it has not after :data:`STOP_GRACE`."""
        self._stopping = True
        proto = self._proto
        if proto is None:
            return succeed(None)
        proto.transport.closeStdin()
        timer = self._reactor.callLater(STOP_GRACE, _kill, proto)
        proto.ended.addBoth(lambda r: timer.cancel() if timer.active() else None)
        return proto.ended


def _kill(proto) -> None:
    try:
        proto.transport.signalProcess("KILL")
    except error.ProcessExitedAlready:
        pass
