# -*- test-case-name: tests.unit.test_timeouts,tests.unit.test_bad_requests,tests.unit.test_channel_headers -*-
"""
The daemon's ``HTTPChannel``: lowercase header names, room for batched
requests' large header sets, ReductStore-style answers to requests
twisted.web's parser refuses, the connection deadlines (the header
deadline against slow clients, the I/O timeout of a request body), and a
request's header block parsed in one pass when it arrives whole
(``headblock.py``; Twisted's line-by-line parser otherwise).

``ReductSite`` (``streaming.py``) builds one per connection.
"""

from typing import Optional

from twisted.logger import Logger
from twisted.web.http import (
    HTTPChannel,
    _ChunkedTransferDecoder,
    _MalformedChunkedDataError,
    datetimeToString,
)

from reduct_twisted import REDUCT_API, REDUCT_VERSION
from reduct_twisted.http import eager
from reduct_twisted.http.headblock import split_header_block
from reduct_twisted.http.headers import parse_content_length
from reduct_twisted.wire import U64_MAX

log = Logger()

SERVER_HEADER = f"ReductStore {REDUCT_VERSION}".encode("ascii")
API_HEADER = REDUCT_API.encode("ascii")

#: Seconds a half-closed connection may keep sending a refused body.
HALF_CLOSE_GRACE = 2.0


_date_cache = [-1, b""]


def _http_date(now: float) -> bytes:
    """The ``Date`` header value, formatted once per second."""
    second = int(now)
    if second != _date_cache[0]:
        _date_cache[1] = datetimeToString(second)
        _date_cache[0] = second
    return _date_cache[1]


class _U64ChunkedDecoder(_ChunkedTransferDecoder):
    """
    Twisted's chunked-body decoder, refusing a chunk size beyond u64 (it
    accepts any of up to 1 KiB of hex digits and waits for that many bytes;
    hyper refuses it).
    """

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        done = super()._dataReceived_CHUNK_LENGTH()
        if done and self.length > U64_MAX:
            raise _MalformedChunkedDataError("Chunk-size out of range.")
        return done


class ReductChannel(HTTPChannel):
    """
    HTTPChannel that writes header names in lowercase, as upstream (hyper)
    does: clients match ``x-reduct-*`` names case-sensitively.  It also
    allows the large header sets of batched requests (``ReductSite`` raises
    the three limits below further when the batch settings need more),
    gives a request body ``site.io_timeout`` seconds of silence instead of
    the idle timeout, and parses a request's header lines in one pass once
    they are all there (``_parse_header_block``, ``headblock.py``).
    """

    totalHeadersSize = 1 << 20
    maxHeaders = 2000
    #: Header lines written after a response's own (``CorsPolicy``'s).
    cors_lines = b""
    #: Longest request line or header line (Twisted's default is 16 KiB; a
    #: batch's record headers carry whole label sets).
    MAX_LENGTH = 1 << 17
    #: Parse a request's header block in one pass when it is all in the
    #: buffer (``_parse_header_block``); False: always line by line (tests
    #: compare the two).
    headers_at_once = True
    _host = None
    #: The answer's header block, until its first body bytes join it
    #: (``writeHeaders``, ``write``; ``StreamingRequest.write`` sends it
    #: alone if none follow).
    _held_head = None
    #: Answers go to the socket with ``eager.send_now`` (plain TCP).
    _eager = False
    #: When the current request's first byte came (``site.reactor`` time),
    #: or None: no header deadline runs.
    _header_since = None
    #: The deadline's timer, made only when a read ends with the headers
    #: incomplete (``_arm_header_timer``).
    _header_timer = None
    _refused_call = None
    _head_request = False
    #: The next line is a request line (the first of a request).
    _awaiting_request_line = True
    #: The timeout is ``site.io_timeout``: a request body is arriving.
    _body_timeout = False
    #: A request line is parsed, its header lines are held back in
    #: ``_buffer`` until the block is complete (``_gather_block``).
    _gathering = False

    # -- malformed requests ----------------------------------------------------

    def _respondToBadRequestAndDisconnect(self):
        # Twisted writes a bare 400 and closes at once: with the client's
        # request still unread, the close resets the connection and the
        # client often never sees the answer.  Answer like every other
        # error, half-close, ignore what still comes, and cut after a grace.
        if self._refused_call is not None:
            return
        current = self.requests[-1] if self.requests else None
        if current is not None and (current.startedWriting or current.finished):
            # Its answer is out already (an early refusal, then a broken body):
            # a second response would be read as the answer to the next request.
            # Half-close as below: an abort now would reset the connection
            # with the client's bytes unread, and the client could lose the
            # answer it has not read yet (issue #12).
            self._stop_header_timer()
            self._refused_call = self.callLater(HALF_CLOSE_GRACE, self.transport.abortConnection)
            self._half_close()
            return
        message = b"Bad request"
        # No body for HEAD (the client would read it as the next response).
        body = b"" if self._head_request else b'{"detail":"Bad request"}'
        head = b"".join(
            (
                b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\nserver: ",
                SERVER_HEADER,
                b"\r\nx-reduct-api: ",
                API_HEADER,
                b"\r\ndate: ",
                _http_date(self.site.reactor.seconds()),
                b"\r\nx-reduct-error: ",
                message,
                b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body),
            )
        )
        self._stop_header_timer()
        self.transport.write(head + body)
        access = getattr(self.site, "access_log", None)
        if access is not None and current is not None:
            access.refused(current, 400, len(body))
        self._refused_call = self.callLater(HALF_CLOSE_GRACE, self.transport.abortConnection)
        self._half_close()

    def _half_close(self) -> None:
        if hasattr(self.transport, "loseWriteConnection"):
            self.transport.loseWriteConnection()
        else:
            self.transport.loseConnection()

    def dataReceived(self, data):
        self._data_received(data)
        if self._header_since is not None and self._header_timer is None:
            self._arm_header_timer()

    def _data_received(self, data):
        if self._refused_call is None:
            if self._gathering:
                self.resetTimeout()  # as HTTPChannel.dataReceived does first
                if not self._gather_block(data):
                    return
                data = b""  # in the buffer now
            elif self._header_since is None and self.line_mode and not self._handlingRequest:
                # The first byte of a request (and of the connection): the
                # header deadline runs from here, not from a complete line.
                self._start_header_timer()
            super().dataReceived(data)
            if (
                self._header_since is None
                and self._buffer
                and self.line_mode
                and not self._handlingRequest
                and self._refused_call is None
            ):
                # The start of a next request, left over after the ones
                # before it were answered in this same read.
                self._start_header_timer()
            if (
                not self.line_mode
                and self._transferDecoder is not None
                and not self._body_timeout
                and self.timeOut
            ):
                self._body_timeout = True
                self.setTimeout(self.site.io_timeout)

    # -- header deadline (slow loris) -----------------------------------------
    # The idle timer restarts with every byte, so a client trickling a
    # header line (or its request line) a byte a second would hold a
    # connection forever.  A request's line and headers must arrive within
    # ``site.header_timeout`` of its first byte (issue #12): on a new
    # connection, the first byte it sends; on a keep-alive connection, the
    # first byte of the next request (or the end of the previous response,
    # if the next request's bytes came while it was being answered).  A
    # connection that sends nothing is the idle timeout's, as between
    # requests: a keep-alive connection may idle for ``idle_timeout``.

    def lineReceived(self, line):
        # After a refusal nothing more is parsed, not even the lines already
        # buffered (a true value stops LineReceiver's loop).
        if self._refused_call is not None:
            return True
        if self._header_since is None:
            # A pipelined request, replayed from the buffer once the one
            # before it was answered.
            self._start_header_timer()
        if self._awaiting_request_line and line:
            # The request line: remember HEAD even if the line is malformed,
            # so a refusal never sends it a body.
            self._awaiting_request_line = False
            self._head_request = line.startswith(b"HEAD ")
            # Twisted sets them only if the line parses: never the previous
            # request's in a refusal's access line.
            self._command = self._path = None
            super().lineReceived(line)
            if (
                self.headers_at_once
                and self._refused_call is None
                and self._HTTPChannel__first_line == 0
                and self._parse_header_block() is None
            ):
                # Twisted took it as a request line (and made the request),
                # but its headers are not all here: gather them
                # (_gather_block), LineReceiver's loop stops here.
                self._gathering = True
                return True
            return self._refused_call is not None
        return super().lineReceived(line) or self._refused_call is not None

    def _gather_block(self, data: bytes) -> bool:
        """
        Add ``data`` to the header lines gathered after a request line.

        A client sends a request's whole header block before it waits for
        anything (even ``Expect: 100-continue`` waits after it), so holding
        the lines back until the block is complete never stalls one; the
        header deadline still runs.  Once the lines held exceed
        ``totalHeadersSize`` (a request Twisted refuses, at the latest by
        then), they go to Twisted's line-by-line parser, which answers as
        it always has.

        :return: False while the block is still incomplete (keep
            gathering); True once ``dataReceived`` must go on with the
            buffer (the block parsed, or left to Twisted).
        """
        buffer = self._buffer + data
        self._buffer = buffer
        if buffer.find(b"\r\n\r\n", max(0, len(buffer) - len(data) - 3)) < 0 and (
            len(buffer) <= self.totalHeadersSize and buffer[:2] != b"\r\n"
        ):
            return False
        self._gathering = False
        # Parsed, or left to Twisted (also when too much came without an
        # end: its lines, and its refusal).
        self._parse_header_block()
        return True

    def _parse_header_block(self) -> Optional[bool]:
        """
        Parse the request's whole header block in one pass if it is in the
        buffer (``headblock.py``), and go on as ``HTTPChannel.lineReceived``
        does at the empty line that ends it; otherwise, or if anything in it
        is unusual, leave it to Twisted's line-by-line parser.

        Twisted's checks kept here: the block's lines and values
        (``split_header_block``); ``totalHeadersSize`` (the request line's
        bytes plus every header line's, without line ends) and
        ``maxHeaders``, each exceeded only by a request Twisted refuses;
        the framing headers, of which Twisted allows one ``Content-Length``
        or ``Transfer-Encoding`` (``chunked`` or ``identity``): a block with
        more than one of them, or another coding, is left to Twisted (it
        answers 400).  The one there is goes through
        ``_maybeChooseTransferDecoder`` like any other.

        :return: True once it parsed the block; False if it left it to
            Twisted; None if the block is not all in the buffer yet.
        """
        buffer = self._buffer
        if buffer[:2] == b"\r\n":
            raw, count, size, rest = {}, 0, 0, buffer[2:]
        else:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return None  # the block is not all here yet
            block = buffer[:end]
            raw = split_header_block(block, self.MAX_LENGTH)
            if raw is None:
                return False
            count = block.count(b"\n") + 1
            size = end - 2 * (count - 1)
            rest = buffer[end + 4:]
            if (
                self._receivedHeaderSize + size > self.totalHeadersSize
                or self._receivedHeaderCount + count > self.maxHeaders
            ):
                return False
        length = raw.get(b"Content-Length", ())
        coding = raw.get(b"Transfer-Encoding", ())
        if len(length) + len(coding) > 1 or (
            coding and coding[0].lower() not in (b"chunked", b"identity")
        ):
            return False
        headers = self.requests[-1].requestHeaders
        if headers._rawHeaders:
            return False  # never so: a new request's Headers are empty
        # From here on as Twisted would go: each header line filed (in
        # order: ``Headers._rawHeaders`` is what ``addRawHeader`` fills),
        # the framing header chosen, the counters it keeps advanced.
        self._buffer = rest
        headers._rawHeaders = raw
        self._receivedHeaderSize += size
        self._receivedHeaderCount += count
        if length:
            self._maybeChooseTransferDecoder(b"Content-Length", length[0])
        elif coding:
            self._maybeChooseTransferDecoder(b"Transfer-Encoding", coding[0])
        self.allHeadersReceived()
        if self.length == 0:
            self.allContentReceived()
        else:
            self.setRawMode()
        return True

    def lineLengthExceeded(self, line):
        # LineReceiver would close without a word.
        self._respondToBadRequestAndDisconnect()
        return True

    def rawDataReceived(self, data):
        if self._refused_call is None:
            super().rawDataReceived(data)

    def allHeadersReceived(self):
        self._stop_header_timer()
        self._awaiting_request_line = True
        if self._refused_call is None:
            super().allHeadersReceived()

    # -- body deadline ---------------------------------------------------------
    # A request body may stall for ``site.io_timeout`` seconds, not the idle
    # timeout.  The switch is made only once a read ends in the middle of a
    # body: a small request that arrives whole never moves the timer (moving
    # a timer sooner costs a search through the reactor's pending calls).

    def allContentReceived(self):
        if self._body_timeout:
            # Back to the idle timeout, which Twisted saves and suspends while
            # the request is answered and restores for the next one.
            self._body_timeout = False
            self.setTimeout(self.site.timeOut)
        super().allContentReceived()

    def connectionLost(self, reason):
        self._stop_header_timer()
        if self._refused_call is not None and self._refused_call.active():
            self._refused_call.cancel()
        super().connectionLost(reason)
        self.site.drain.connection_lost(self)  # the daemon may be waiting for it (drain.py)

    # The deadline runs from the request's first byte, but its timer is made
    # only if a read ends before the headers are complete: a request whose
    # headers arrive in one read (nearly all) costs no ``callLater`` and no
    # cancel (2.5 µs, and a heap the reactor must sift).

    def _start_header_timer(self) -> None:
        self._header_since = self.site.reactor.seconds()

    def _arm_header_timer(self) -> None:
        spent = self.site.reactor.seconds() - self._header_since
        self._header_timer = self.callLater(
            max(0.0, self.site.header_timeout - spent), self._headers_too_slow)

    def _stop_header_timer(self):
        self._header_since = None
        timer, self._header_timer = self._header_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _headers_too_slow(self):
        self._header_timer = self._header_since = None
        log.debug("Closing a connection whose request headers took too long")
        self.transport.abortConnection()

    def getHost(self):
        # twisted.web.http.Request.__init__ asks for it on every request, and
        # a TCP transport answers with a getsockname() system call each time;
        # the local address of a connection never changes.
        host = self._host
        if host is None:
            host = self._host = self.transport.getHost()
        return host

    def writeHeaders(self, version, code, reason, headers):
        seq = [version, b" ", code, b" ", reason, b"\r\n"]
        records = getattr(headers, "records", None)  # a batch answer's (batch_limits.RecordHeaders)
        for name, values in (headers._rawHeaders.items() if records is not None
                             else headers.getAllRawHeaders()):
            lname = name.lower()
            for value in values:
                seq.extend((lname, b": ", value, b"\r\n"))
        if records:
            seq.append(headers.block())
        seq.append(self.cors_lines)
        seq.append(b"\r\n")
        # One joined block, kept until the body's first bytes join it (one
        # send for a small answer): ``Request.write`` writes the headers and,
        # at once, the bytes it was given (``StreamingRequest.write`` sends
        # the block alone when there were none).
        self._held_head = b"".join(seq)

    def connectionMade(self):
        self._eager = eager.direct(self.transport)
        super().connectionMade()

    def _send(self, data: bytes) -> None:
        if self._eager:
            eager.send_now(self.transport, data)
        else:
            self.transport.write(data)

    def write(self, data):
        head = self._held_head
        if head is not None:
            self._held_head = None
            data = head + data
        self._send(data)

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def send_held_head(self) -> None:
        """Send the header block if it still waits (an answer without a body, or HEAD)."""
        head = self._held_head
        if head is not None:
            self._held_head = None
            self._send(head)

    def _maybeChooseTransferDecoder(self, header, data):
        # Twisted answers a bare 400 to a non-numeric Content-Length before
        # any resource runs; ReductStore answers 422 "content-length header
        # must be a number" after its auth and ts checks.  Remember it on the
        # request and let routing decide (the connection is closed after the
        # answer, since the body's framing is unknown).
        # A length beyond u64 is no number either (issue #12): Twisted would
        # take any digit string, and int() raises on more than 4300 digits.
        if header == b"Content-Length":
            length = parse_content_length(data)
            if length is None:
                self.requests[-1].malformed_length = True
                return True
            data = b"%d" % length
        ok = super()._maybeChooseTransferDecoder(header, data)
        decoder = self._transferDecoder
        if ok and type(decoder) is _ChunkedTransferDecoder:
            self._transferDecoder = _U64ChunkedDecoder(decoder.dataCallback, decoder.finishCallback)
        return ok

    def timeoutConnection(self):
        # The idle timer only restarts when bytes arrive, so a long download
        # to a slow reader would be cut mid-body: while a request is being
        # answered the connection is not idle.
        if self._handlingRequest:
            self.resetTimeout()
            return
        if self.requests and getattr(self.requests[-1].sink, "waiting", False):
            # Nor is a body we paused while its record waits for a writer
            # slot (``writers.py``): that wait has its own timeout.  (Once
            # timed out, resetTimeout does nothing: arm a new timer.)
            self.setTimeout(self.timeOut)
            return
        super().timeoutConnection()
