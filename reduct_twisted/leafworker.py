# -*- test-case-name: tests.integration.test_leafworker -*-
"""
The leaf worker process (issue #16): runs ``leafjob.serve`` in a Python
process beside the daemon, hands it jobs and fires each job's Deferred with
the answer (the protocol is in ``storage/leafjob.py``).  The storage service
starts it when the integrity log is on and gives its :meth:`LeafWorker.submit`
to the engine (``set_leaf_worker``); the process is spawned on the first job.

Jobs and answers travel over a Unix socket pair (the worker's standard
input and output are its end), read in large pieces into one buffer: a
pipe would be read 8 KiB per reactor turn.  If the worker exits, every job waiting fails (the
daemon makes those leaves itself, ``storage/entry_log_offload.py``) and it
is started again for the next job, at most once per :data:`RESTART_AFTER`
seconds; in between :meth:`submit` fails at once.  The worker reads nothing
but its input and writes nothing but its output; it ends by itself when
its input closes, so it never outlives the daemon (``kill -9`` included).
"""

import os
import socket
import sys

from twisted.internet import abstract, error, main
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from zope.interface import implementer

import reduct_twisted
from reduct_twisted.interfaces_integrity import ILeafWorker
from reduct_twisted.storage.leafjob import HEADER, MAX_PAYLOAD, frame_header

__all__ = ["LeafWorker", "WorkerGone", "RESTART_AFTER"]

#: The worker's program (``python -c``: the module is imported, not run as ``__main__``).
WORKER = ("import sys; from reduct_twisted.storage.leafjob import NICE, serve; "
          "sys.exit(serve(nice=NICE, idle=True))")
#: Seconds between two starts of the worker at most.
RESTART_AFTER = 10.0
#: Seconds a stopping worker has to exit before it is killed.
STOP_GRACE = 5.0
#: Socket buffers and read size of the channel.
CHANNEL_BUFFER = 1 << 20

log = Logger()


class WorkerGone(Exception):
    """The worker is not running (it exited, or is restarting)."""


class _Process(ProcessProtocol):
    """The worker process: its standard error goes to the log; ``ended`` fires when it exits."""

    def __init__(self, owner: "LeafWorker") -> None:
        self.owner = owner
        self.ended: Deferred = Deferred()
        self.channel = None

    def errReceived(self, data: bytes) -> None:
        log.warn("Leaf worker: {text}", text=data.decode("utf-8", "replace").rstrip())

    def processEnded(self, reason) -> None:
        self.owner._ended(self, reason)
        self.ended.callback(None)


class _Channel(abstract.FileDescriptor):
    """
    The daemon's end of the socket pair, read straight into one buffer
    (``recv_into``) and cut into answer frames there: an answer's bytes are
    copied once, into its payload.
    """

    def __init__(self, owner: "LeafWorker", process: _Process, sock, reactor) -> None:
        super().__init__(reactor)
        self.owner, self.process, self.socket = owner, process, sock
        self._buffer = bytearray(CHANNEL_BUFFER)
        self._fill = 0
        self.connected = 1
        self.startReading()

    def fileno(self) -> int:
        return self.socket.fileno()

    def doRead(self):
        buffer = self._buffer
        try:
            n = self.socket.recv_into(memoryview(buffer)[self._fill:])
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        if not n:
            return main.CONNECTION_DONE
        self._fill += n
        try:
            answers = self._frames()
        except ValueError as exc:
            log.error("Leaf worker sent a bad frame ({exc}); stopping it", exc=exc)
            _kill(self.process)
            return main.CONNECTION_LOST
        for job, payload in answers:
            self.owner._answered(self.process, job, payload)
        return None

    def _frames(self) -> list:
        # The whole frames in the buffer (the rest moves to its start; it
        # grows to hold a frame larger than itself).
        buffer, fill, start, out = self._buffer, self._fill, 0, []
        while fill - start >= HEADER.size:
            length, job = HEADER.unpack_from(buffer, start)
            if length > MAX_PAYLOAD:
                raise ValueError(f"frame of {length} bytes")
            end = start + HEADER.size + length
            if end > fill:
                if end - start > len(buffer):
                    buffer.extend(bytes(end - start - len(buffer)))
                break
            out.append((job, bytes(buffer[start + HEADER.size:end])))
            start = end
        if start:  # same length: copied in place
            buffer[:fill - start] = buffer[start:fill]
            self._fill = fill - start
        return out

    def send_frame(self, job: int, payload: bytes) -> None:
        """
        Send a job's frame: straight to the socket when nothing waits before
        it (the payload is not copied), the rest through the write buffer.
        """
        header = frame_header(job, payload)
        sent = 0
        if self.connected and not self.disconnecting and not self._tempDataLen \
                and self.offset >= len(self.dataBuffer):
            try:
                sent = self.socket.sendmsg([header, payload])
            except OSError:  # full, or gone: the write buffer finds out which
                sent = 0
        if sent < len(header):
            self.writeSequence([header[sent:], payload])
        elif sent < len(header) + len(payload):
            self.write(bytes(memoryview(payload)[sent - len(header):]))

    def writeSomeData(self, data):
        try:
            return self.socket.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            return main.CONNECTION_LOST

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        self.socket.close()
        self.owner._ended(self.process, reason)


def _environment() -> dict:
    """The daemon's environment, with this package importable first."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(reduct_twisted.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _socket_pair():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for sock in (ours, theirs):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHANNEL_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHANNEL_BUFFER)
    ours.setblocking(False)
    return ours, theirs


@implementer(ILeafWorker)
class LeafWorker:
    """
    :param reactor: spawns the process, carries the channel, times restarts.
    :param argv: the worker's command line (default: this Python running
        ``leafjob.serve``).
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
        process = _Process(self)
        ours, theirs = _socket_pair()
        try:
            self._reactor.spawnProcess(process, self._argv[0], self._argv, env=_environment(),
                                       childFDs={0: theirs.fileno(), 1: theirs.fileno(), 2: "r"})
        except OSError as exc:
            log.error("Could not start the leaf worker: {exc}", exc=exc)
            ours.close()
            return False
        finally:
            theirs.close()
        process.channel = _Channel(self, process, ours, self._reactor)
        self._proto = process
        self.starts += 1
        return True

    def submit(self, payload: bytes) -> Deferred:
        if self._proto is None and not self._start():
            return fail(WorkerGone("the leaf worker is not running"))
        self._next += 1
        job, d = self._next, Deferred()
        self._waiting[job] = d
        self._proto.channel.send_frame(job, payload)
        return d

    def _answered(self, process, job: int, payload: bytes) -> None:
        d = self._waiting.pop(job, None)
        if d is not None and process is self._proto:
            d.callback(payload)

    def _ended(self, process, reason) -> None:
        """The channel closed or the process exited (the first of the two counts)."""
        if process is not self._proto:
            return
        self._proto = None
        waiting, self._waiting = self._waiting, {}
        if not self._stopping:
            log.warn("The leaf worker exited ({why}); the daemon makes the leaves itself "
                     "until it is started again", why=reason.getErrorMessage())
        for d in waiting.values():
            d.errback(WorkerGone("the leaf worker exited"))
        if process.channel is not None and process.channel.connected:
            process.channel.loseConnection()

    def stop(self) -> Deferred:
        """Close the worker's input (it exits); kill it if it has not after :data:`STOP_GRACE`."""
        self._stopping = True
        process = self._proto
        if process is None:
            return succeed(None)
        process.channel.loseConnection()
        timer = self._reactor.callLater(STOP_GRACE, _kill, process)
        process.ended.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return process.ended


def _kill(process) -> None:
    try:
        process.transport.signalProcess("KILL")
    except error.ProcessExitedAlready:
        pass
