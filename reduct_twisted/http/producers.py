# -*- test-case-name: tests.unit.test_producers -*-
"""
Streaming record contents out of block files.

``send_record`` answers small records with one ``pread``; larger ones are
sent by ``RecordSender``, a push producer that ``pread``-s 256 KiB at a time
and stops as soon as the transport asks it to pause, so a multi-GB download
needs no more memory than one chunk plus the socket buffer.
"""

import os
from typing import Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

#: Bytes read per ``pread`` while streaming.
CHUNK = 256 << 10

#: Records up to this size are read in one call and returned as bytes.
INLINE_MAX = 64 << 10


def read_range(path: str, offset: int, size: int) -> bytes:
    """Read ``size`` bytes at ``offset`` of ``path`` (short read = error)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, size, offset)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(f"short read from {path}: {len(data)} of {size} bytes")
    return data


@implementer(IPushProducer)
class RecordSender:
    """
    Writes ``size`` bytes from ``path`` at ``offset`` to ``request``.

    ``start()`` returns a Deferred that fires when every byte was written or
    the client went away; finishing happens in exactly one place
    (``_finish``), reached from completion and from ``stopProducing``.
    """

    def __init__(self, request, path: str, offset: int, size: int) -> None:
        self.request = request
        self.path = path
        self.position = offset
        self.remaining = size
        self.paused = False
        self._fd: Optional[int] = None
        self._done: Optional[Deferred] = None

    def start(self) -> Deferred:
        self._fd = os.open(self.path, os.O_RDONLY)
        done = self._done = Deferred()
        self.request.registerProducer(self, True)
        # This may send everything and finish (dropping self._done) before
        # returning, when the transport never asks for a pause.
        self.resumeProducing()
        return done

    def resumeProducing(self) -> None:
        self.paused = False
        # request.write may call pauseProducing (or, on disconnect,
        # stopProducing) re-entrantly: check both on every iteration.
        while not self.paused and self._fd is not None and self.remaining > 0:
            data = os.pread(self._fd, min(CHUNK, self.remaining), self.position)
            if not data:
                self._finish(OSError(f"unexpected end of {self.path}"))
                return
            self.position += len(data)
            self.remaining -= len(data)
            self.request.write(data)
        if self.remaining == 0:
            self._finish(None)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self._finish(None)

    def _finish(self, error: Optional[Exception]) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        os.close(fd)
        self.request.unregisterProducer()
        done, self._done = self._done, None
        if error is not None:
            # Headers are out: the only honest signal left is to cut the
            # connection rather than finish a short body.
            self.request.channel.transport.abortConnection()
        if done is not None:
            done.callback(None)


def send_record(request, view) -> "bytes | Deferred":
    """
    The body of a record answer: bytes for small records and HEAD requests,
    otherwise a Deferred that fires once ``RecordSender`` has sent it all.
    """
    size, offset = view.record.size, view.record.offset
    if request.method == b"HEAD" or size == 0:
        return b""
    if size <= INLINE_MAX:
        return read_range(view.path, offset, size)
    sender = RecordSender(request, view.path, offset, size)
    return sender.start().addCallback(lambda _: b"")
