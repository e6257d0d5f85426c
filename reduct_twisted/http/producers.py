# -*- test-case-name: tests.unit.test_producers -*-
"""
Streaming record contents to the client, read through storage's readers.

``send_record`` answers small records with one read through the engine
(``read_content``, which keeps descriptors cached); larger ones are sent
by a ``RangeSender`` over a ``ContentReader`` (``engine.open_reader``): a
push producer that stops as soon as the transport asks it to pause, so a
multi-GB download needs no more memory than one chunk plus the socket
buffer.  It also sends the records of a batched read back to back.

On a plain TCP connection ``RangeSender`` lets storage hand the bytes to
the kernel (``DataFile.send_to``, ``sendfile(2)``) whenever the transport's
own buffer is empty (so the bytes stay in order): no copy through Python.
When the socket is full it falls back to one chunk read
(``DataFile.read``) written through the transport, which pauses the sender
until the socket drains; TLS and other transports always get chunks.
A compressed record's range offers ``fetch`` instead: each chunk is
decompressed in storage's thread pool, one at a time, and written when it
arrives (the reactor thread never decompresses a streamed record).
This module never touches a file itself.
"""

import errno
from collections import deque
from typing import Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from reduct_twisted.http import eager
from reduct_twisted.storage.content import CAN_SEND

#: Bytes read per ``pread`` while streaming.
CHUNK = 256 << 10

#: Records up to this size are read in one call and returned as bytes.
INLINE_MAX = 64 << 10

#: Bytes handed to one ``sendfile`` call at most (Linux caps a call at ~2 GiB).
SENDFILE_MAX = 1 << 30


def _sendfile_socket(request) -> Optional[int]:
    """
    The socket descriptor ``sendfile`` may write the body of ``request`` to,
    or None: only a plain (non-TLS) TCP transport of twisted.internet.tcp,
    only for an unencoded, non-chunked body.
    """
    if not CAN_SEND or getattr(request, "chunked", True):
        return None
    if getattr(request, "_encoder", None) is not None:
        return None
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if not eager.direct(transport):  # the same plain sockets answers are sent to at once
        return None
    try:
        return transport.fileno()
    except (AttributeError, OSError, ValueError):
        return None


@implementer(IPushProducer)
class RangeSender:
    """
    Writes the byte ranges of a storage ``ContentReader`` to ``request``,
    back to back, in order.

    ``start()`` returns a Deferred that fires when every byte was written or
    the client went away; finishing happens in exactly one place
    (``_finish``), reached from completion and from ``stopProducing``.  The
    sender owns ``reader`` from ``start()`` on and closes it when it finishes.

    :param reader: a ``ContentReader`` (``engine.open_reader``).
    :param name: what error messages call the source.
    """

    def __init__(self, request, reader, name: str = "record data") -> None:
        self.request = request
        self.path = name
        self._reader = reader
        self._ranges: deque = deque(r for r in reader.ranges if r[2] > 0)
        self._file = None
        self.position = 0
        self.remaining = 0
        self.paused = False
        self._active = False
        self._done: Optional[Deferred] = None
        #: The socket for ``sendfile``, or None (see ``_sendfile_socket``).
        self._socket: Optional[int] = None
        #: A ``fetch`` is under way (its result resumes the sender).
        self._fetching = False
        #: ``resumeProducing``'s loop is running (a fetch done at once must
        #: not start another loop).
        self._looping = False

    def _next_range(self) -> bool:
        """Move on to the next non-empty range; False when none is left."""
        while self.remaining == 0 and self._ranges:
            self._file, self.position, self.remaining = self._ranges.popleft()
        return self.remaining > 0

    def start(self) -> Deferred:
        self._active = True
        done = self._done = Deferred()
        self.request.registerProducer(self, True)
        self._socket = _sendfile_socket(self.request)
        if self._socket is not None:
            # Put the headers on the wire now, so the body can follow with
            # sendfile at once instead of after a first copied chunk.
            self.request.write(b"")
            transport = self.request.channel.transport
            if not transport.connected or transport.disconnecting:
                self._socket = None
            elif transport.doWrite() is not None:
                self._socket = None  # the connection broke: the reactor will tell
        # This may send everything and finish (dropping self._done) before
        # returning, when the transport never asks for a pause.
        self.resumeProducing()
        return done

    def _sendfile(self) -> bool:
        """
        Send as much of the current range as the socket takes with ``sendfile``.

        :return: False if the caller should go on with a copied chunk (the
            socket is full, or ``sendfile`` cannot be used).
        """
        transport = self.request.channel.transport
        if not getattr(self._file, "sendable", True) or not eager.transport_idle(transport):
            return False  # a compressed record is decompressed and copied
        while self.remaining > 0 and self._active:
            try:
                sent = self._file.send_to(
                    self._socket, self.position, min(self.remaining, SENDFILE_MAX)
                )
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    self._socket = None  # not for this file or socket: copy
                    return False
                # The connection broke (EPIPE, ECONNRESET, ...).
                self._finish(exc)
                return True
            if sent == 0:
                self._finish(OSError(f"unexpected end of {self.path}"))
                return True
            self.position += sent
            self.remaining -= sent
            # The body bytes Request.write counts, for its own (metrics, logs).
            self.request.sentLength += sent
        return True

    def resumeProducing(self) -> None:
        self.paused = False
        if self._fetching or self._looping:
            return  # the fetch under way (or the running loop) goes on
        self._looping = True
        try:
            self._produce()
        finally:
            self._looping = False
        if not self._fetching and self.remaining == 0 and not self._ranges:
            self._finish(None)

    def _produce(self) -> None:
        # request.write may call pauseProducing (or, on disconnect,
        # stopProducing) re-entrantly: check both on every iteration.
        while not self.paused and self._active and (self.remaining > 0 or self._next_range()):
            if self._socket is not None and self._sendfile():
                continue
            fetch = getattr(self._file, "fetch", None)
            if fetch is not None:
                self._fetching = True
                fetch(self.position, min(CHUNK, self.remaining)).addBoth(self._fetched)
                if self._fetching:
                    return  # _fetched resumes
                continue
            self._write(self._file.read(self.position, min(CHUNK, self.remaining)))

    def _write(self, data: bytes) -> None:
        if not data:
            self._finish(OSError(f"unexpected end of {self.path}"))
            return
        self.position += len(data)
        self.remaining -= len(data)
        self.request.write(data)

    def _fetched(self, result) -> None:
        """A ``fetch`` ended: write its chunk and go on (unless paused or finished)."""
        self._fetching = False
        if not self._active:
            return
        if not isinstance(result, bytes):
            self._finish(OSError(f"cannot read {self.path}: {result.getErrorMessage()}"))
            return
        self._write(result)
        if not self._looping and not self.paused and self._active:
            self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self._finish(None)

    def _finish(self, error: Optional[Exception]) -> None:
        if not self._active:
            return
        self._active = False
        self._ranges.clear()
        self._file = None
        self._reader.close()
        self.request.unregisterProducer()
        done, self._done = self._done, None
        if error is not None:
            # Headers are out: the only honest signal left is to cut the
            # connection rather than finish a short body.
            self.request.channel.transport.abortConnection()
        if done is not None:
            done.callback(None)


def send_record(request, view, source) -> "bytes | Deferred":
    """
    The body of a record answer: bytes for small records and HEAD requests,
    otherwise a Deferred that fires once a ``RangeSender`` has sent it all.

    :param view: the record (a ``RecordView``).
    :param source: the engine: ``read_content(view)`` reads a small record
        whole, ``open_reader([view])`` opens a large one for streaming.
    """
    size = view.record.size
    if request.method == b"HEAD" or size == 0:
        return b""
    if size <= INLINE_MAX:
        return source.read_content(view)
    sender = RangeSender(request, source.open_reader((view,)))
    return sender.start().addCallback(lambda _: b"")
