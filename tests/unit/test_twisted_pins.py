"""
The private or "not intended for users" parts of Twisted the daemon relies
on, pinned: each exists in the installed Twisted with the shape and the
behaviour the code expects, so an upgrade that renames, removes or reorders
one fails here, loudly, instead of silently slowing or breaking the hot path.

setup.cfg bounds Twisted to the major version these pins were written
against; raise the bound only with this module green.

Who relies on what:

* ``http/streaming.py`` (``StreamingRequest``): ``Request.gotLength`` and
  ``handleContentChunk`` (body hooks), ``channel._command``, ``_path`` and
  ``_version`` (the request line, read in ``gotLength`` before
  ``requestReceived``), ``Request._disconnected``, ``Expect`` handling after
  ``gotLength``, ``Site(parsePOSTFormSubmission=...)``.
* ``http/channel.py`` (``ReductChannel``): ``_respondToBadRequestAndDisconnect``,
  ``_maybeChooseTransferDecoder``, ``_transferDecoder``, ``_handlingRequest``,
  ``_buffer``, ``requests``, ``_ChunkedTransferDecoder`` and its
  ``_dataReceived_CHUNK_LENGTH``, ``length``, ``dataCallback`` and
  ``finishCallback``, ``_MalformedChunkedDataError``, and the limits
  ``MAX_LENGTH``, ``maxHeaders``, ``totalHeadersSize``; for the one-pass
  header block (``_parse_header_block``, ``headblock.py``): the request-line
  flag ``__first_line``, the counters ``_receivedHeaderSize`` and
  ``_receivedHeaderCount``, ``Headers._rawHeaders``, ``_NameEncoder`` and its
  ``_caseMappings``, and the token bytes of ``_abnf._istoken``.
* ``http/producers.py`` (sendfile path): ``server.Request._encoder`` and
  ``chunked``; a TCP transport's ``TLS``, ``dataBuffer``, ``offset``,
  ``_tempDataLen`` and ``doWrite``.
* ``shutdown.py``: the reactor's ``_exitSignal`` (``_ISupportsExitSignalCapturing``),
  read by twistd after the reactor stops.
* ``replication/manager.py``: ``twisted.web.client._HTTP11ClientFactory``
  as ``HTTPConnectionPool._factory``.
* ``replication/tls.py``: ``twisted.internet._sslverify.IOpenSSLTrustRoot``
  and its ``_addCACertsToContext``, called by ``optionsForClientTLS``.
"""

import configparser
import inspect
import signal
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from zope.interface import implementer
from twisted.application import app
from twisted.internet import abstract, base, tcp
from twisted.internet.interfaces import _ISupportsExitSignalCapturing
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.web import client, http, server
from twisted.web.resource import Resource

from tests.conftest import REPO_ROOT


#: Requests made here; a chunked body lives in a temporary file, closed after each test.
_made: list = []


@pytest.fixture(autouse=True)
def _close_bodies():
    yield
    while _made:
        content = getattr(_made.pop(), "content", None)
        if content is not None:
            content.close()


class _Request(server.Request):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _made.append(self)


def params(function) -> list:
    """The parameter names of ``function`` (``self`` included for plain functions)."""
    return list(inspect.signature(function).parameters)


# -- the request body hooks and the request line (streaming.py) ------------------------


class _Leaf(Resource):
    isLeaf = True

    def render(self, request):
        return b"ok"


class _Recorder(_Request):
    """Records what the hooks see, at the moment they see it."""

    seen: list = []
    drop_expect = False

    def gotLength(self, length):
        channel = self.channel
        self.seen.append(("gotLength", length, channel._command, channel._path,
                          channel._version, self.method))
        if self.drop_expect:
            self.requestHeaders.removeHeader(b"expect")
        super().gotLength(length)

    def handleContentChunk(self, data):
        self.seen.append(("chunk", data))
        super().handleContentChunk(data)


def _connect(request_factory):
    site = server.Site(_Leaf(), reactor=Clock())
    site.requestFactory = request_factory
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


@pytest.fixture
def recorder():
    _Recorder.seen = []
    _Recorder.drop_expect = False
    yield _Recorder
    _Recorder.seen = []


def test_body_hooks_exist_with_their_signatures():
    """Request.gotLength(length) and handleContentChunk(data) are still the body hooks."""
    assert params(http.Request.gotLength) == ["self", "length"]
    assert params(http.Request.handleContentChunk) == ["self", "data"]
    assert params(server.Request.gotLength) == ["self", "length"]


def test_got_length_sees_the_request_line_on_the_channel_before_the_body(recorder):
    """gotLength runs before any body byte, with _command, _path and _version set on the
    channel and the request's own method not yet set; then each chunk goes to handleContentChunk."""
    channel, transport = _connect(recorder)
    channel.dataReceived(b"POST /a/b?ts=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    assert recorder.seen == [("gotLength", 5, b"POST", b"/a/b?ts=1", b"HTTP/1.1",
                              http.Request.method)]
    assert http.Request.method == b"(no method yet)"
    channel.dataReceived(b"abc")
    channel.dataReceived(b"de")
    assert recorder.seen[1:] == [("chunk", b"abc"), ("chunk", b"de")]
    assert b"200 OK" in transport.value()


def test_chunked_body_has_no_length(recorder):
    """A chunked body calls gotLength(None), then handleContentChunk per decoded chunk."""
    channel, _ = _connect(recorder)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    channel.dataReceived(b"3\r\nabc\r\n0\r\n\r\n")
    assert recorder.seen[0][:2] == ("gotLength", None)
    assert ("chunk", b"abc") in recorder.seen


@pytest.mark.parametrize("drop, expected", [(False, True), (True, False)])
def test_100_continue_is_sent_after_got_length_only_if_expect_remains(recorder, drop, expected):
    """Twisted sends "100 Continue" after gotLength returns, and only if the Expect header is
    still there: removing it in gotLength keeps a refused body from being invited."""
    recorder.drop_expect = drop
    channel, transport = _connect(recorder)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         b"Content-Length: 5\r\n\r\n")
    assert (b"100 Continue" in transport.value()) is expected


def test_request_knows_whether_the_client_went_away():
    """http.Request has the _disconnected flag, false until the connection is lost."""
    assert http.Request._disconnected is False
    assert "startedWriting" in vars(http.Request) and "finished" in vars(http.Request)


def test_site_takes_the_form_parsing_switch():
    """Site(parsePOSTFormSubmission=False, reactor=..., timeout=...) turns form parsing off."""
    site = server.Site(_Leaf(), parsePOSTFormSubmission=False, reactor=Clock(), timeout=5)
    assert site._parsePOSTFormSubmission is False
    assert site.timeOut == 5
    assert server.Request.defaultContentType == b"text/html"


# -- the channel (channel.py) ----------------------------------------------------------


class _Channel(http.HTTPChannel):
    """Records the private calls ReductChannel overrides."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def _respondToBadRequestAndDisconnect(self):
        self.calls.append(("bad request",))
        super()._respondToBadRequestAndDisconnect()

    def _maybeChooseTransferDecoder(self, header, data):
        self.calls.append(("decoder", header, data, self.requests[-1]))
        return super()._maybeChooseTransferDecoder(header, data)


def _channel():
    channel = _Channel()
    channel.requestFactory = _Request
    channel.site = server.Site(_Leaf(), reactor=Clock())
    channel.makeConnection(StringTransport())
    return channel


def test_private_channel_methods_exist_with_their_signatures():
    """The HTTPChannel methods ReductChannel overrides or calls still exist, same signatures."""
    assert params(http.HTTPChannel._respondToBadRequestAndDisconnect) == ["self"]
    assert params(http.HTTPChannel._maybeChooseTransferDecoder) == ["self", "header", "data"]
    assert params(http.HTTPChannel.writeHeaders) == ["self", "version", "code", "reason",
                                                     "headers"]
    for name in ("allHeadersReceived", "allContentReceived", "timeoutConnection"):
        assert params(getattr(http.HTTPChannel, name)) == ["self"], name
    assert params(http.HTTPChannel.lineReceived) == ["self", "line"]
    assert params(http.HTTPChannel.rawDataReceived) == ["self", "data"]
    assert callable(http.HTTPChannel.callLater)


def test_channel_limits_are_class_attributes_it_reads():
    """MAX_LENGTH, maxHeaders and totalHeadersSize are the limits ReductChannel raises."""
    assert isinstance(http.HTTPChannel.MAX_LENGTH, int)
    assert isinstance(http.HTTPChannel.maxHeaders, int)
    assert isinstance(http.HTTPChannel.totalHeadersSize, int)
    assert issubclass(http.HTTPChannel, LineReceiver)


def test_channel_private_state_on_a_fresh_connection():
    """A new channel has the private state ReductChannel reads: no decoder, not handling a
    request, an empty line buffer, in line mode, no requests."""
    channel = _channel()
    assert channel._transferDecoder is None
    assert channel._handlingRequest is False
    assert channel._buffer == b""
    assert channel.line_mode
    assert channel.requests == []


def test_a_bad_request_line_goes_through_the_private_hook():
    """Twisted answers a malformed request line by calling _respondToBadRequestAndDisconnect."""
    channel = _channel()
    channel.dataReceived(b"NONSENSE\r\n")
    assert channel.calls == [("bad request",)]


def test_content_length_goes_through_the_decoder_choice_with_the_request_made():
    """The Content-Length header reaches _maybeChooseTransferDecoder (raw name and value)
    once the request object exists, and the choice lands in _transferDecoder."""
    channel = _channel()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n")
    [(_, header, data, request)] = [c for c in channel.calls if c[1] == b"Content-Length"]
    assert data == b"7"
    assert request is channel.requests[-1]
    assert isinstance(channel._transferDecoder, http._IdentityTransferDecoder)


def test_chunked_encoding_gets_the_chunked_decoder():
    """Transfer-Encoding: chunked makes a _ChunkedTransferDecoder with data and finish callbacks."""
    channel = _channel()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    decoder = channel._transferDecoder
    assert type(decoder) is http._ChunkedTransferDecoder
    assert callable(decoder.dataCallback) and callable(decoder.finishCallback)


def test_chunk_size_line_is_parsed_by_its_own_step():
    """_ChunkedTransferDecoder(dataCallback, finishCallback) parses the size line in
    _dataReceived_CHUNK_LENGTH, which returns True and leaves the size in ``length``."""
    assert params(http._ChunkedTransferDecoder.__init__) == ["self", "dataCallback",
                                                             "finishCallback"]
    seen = []

    class Decoder(http._ChunkedTransferDecoder):
        def _dataReceived_CHUNK_LENGTH(self):
            done = super()._dataReceived_CHUNK_LENGTH()
            seen.append((done, self.length))
            return done

    Decoder(lambda data: None, lambda rest: None).dataReceived(b"1f\r\n")
    assert seen == [(True, 31)]
    assert issubclass(http._MalformedChunkedDataError, Exception)


def test_malformed_chunk_error_becomes_a_bad_request():
    """A _MalformedChunkedDataError raised while decoding goes to the bad-request hook."""
    channel = _channel()

    class Refusing(http._ChunkedTransferDecoder):
        def _dataReceived_CHUNK_LENGTH(self):
            raise http._MalformedChunkedDataError("refused")

    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    old = channel._transferDecoder
    channel._transferDecoder = Refusing(old.dataCallback, old.finishCallback)
    channel.dataReceived(b"5\r\n")
    assert ("bad request",) in channel.calls


def test_header_block_state_the_one_pass_parser_keeps():
    """After a request line, __first_line is 0 and the counters hold the line's bytes;
    after its headers, the counters hold every line's bytes and the header count, and
    Headers._rawHeaders maps canonical names to value lists in order of first appearance."""
    channel = _channel()
    assert channel._HTTPChannel__first_line == 1
    channel.dataReceived(b"POST / HTTP/1.1\r\n")
    assert channel._HTTPChannel__first_line == 0
    assert (channel._receivedHeaderSize, channel._receivedHeaderCount) == (15, 0)
    channel.dataReceived(b"x-b: 1\r\nHost: x\r\nX-B: 2\r\nContent-Length: 3\r\n\r\n")
    assert (channel._receivedHeaderSize, channel._receivedHeaderCount) == (15 + 36, 4)
    headers = channel.requests[-1].requestHeaders
    assert headers._rawHeaders == {b"X-B": [b"1", b"2"], b"Host": [b"x"],
                                   b"Content-Length": [b"3"]}
    assert list(headers._rawHeaders) == [b"X-B", b"Host", b"Content-Length"]
    channel.dataReceived(b"abc")
    assert channel._HTTPChannel__first_line == 1
    assert (channel._receivedHeaderSize, channel._receivedHeaderCount) == (0, 0)


def test_header_names_are_tokens_in_canonical_case():
    """_istoken accepts exactly the bytes headblock.TOKEN_BYTES lists; _NameEncoder
    capitalizes each word and then applies _caseMappings."""
    from twisted.web import _abnf
    from twisted.web.http_headers import _NameEncoder, _nameEncoder

    from reduct_twisted.http.headblock import TOKEN_BYTES

    assert bytes(b for b in range(256) if _abnf._istoken(bytes([b]))) == bytes(
        sorted(TOKEN_BYTES))
    assert not _abnf._istoken(b"")
    assert _NameEncoder._caseMappings[b"Etag"] == b"ETag"
    assert _nameEncoder.encode(b"x-reduct-TIME-1") == b"X-Reduct-Time-1"
    assert _nameEncoder.encode(b"etag") == b"ETag"


# -- the sendfile path (producers.py) --------------------------------------------------


def test_request_encoder_and_chunked_flags():
    """server.Request has _encoder (None unless a content encoding wraps the body) and chunked."""
    assert server.Request._encoder is None
    assert http.Request.chunked == 0


def test_tcp_connection_says_whether_it_is_tls():
    """A TCP connection has TLS false until startTLS."""
    assert tcp.Connection.TLS is False
    assert issubclass(tcp.Server, tcp.Connection)
    assert issubclass(tcp.Connection, abstract.FileDescriptor)


class _Descriptor(abstract.FileDescriptor):
    def __init__(self):
        super().__init__(MemoryReactor())
        self.connected = 1
        self.sent = []

    def writeSomeData(self, data):
        self.sent.append(bytes(data))
        return len(data)


def test_write_buffer_attributes_tell_when_the_transport_is_idle():
    """write() queues bytes (counted in _tempDataLen) and doWrite() sends them, returning None
    and leaving dataBuffer consumed up to offset: the idle test of http/eager.py."""
    assert abstract.FileDescriptor.dataBuffer == b""
    assert abstract.FileDescriptor.offset == 0
    assert params(abstract.FileDescriptor.doWrite) == ["self"]
    fd = _Descriptor()
    assert fd._tempDataLen == 0 and len(fd.dataBuffer) == fd.offset
    fd.write(b"abc")
    assert fd._tempDataLen == 3
    assert fd.doWrite() is None
    assert fd.sent == [b"abc"]
    assert fd._tempDataLen == 0 and len(fd.dataBuffer) == fd.offset


# -- the exit signal (shutdown.py) -----------------------------------------------------


def test_reactor_captures_the_exit_signal():
    """Reactors capture the stopping signal in _exitSignal (None until one arrives)."""
    assert "_exitSignal" in _ISupportsExitSignalCapturing.names()
    assert _ISupportsExitSignalCapturing.implementedBy(base.ReactorBase)
    assert base.ReactorBase._exitSignal is None


def test_twistd_reads_the_captured_signal_after_the_reactor_stops():
    """ApplicationRunner.startReactor copies reactor._exitSignal, which twistd then re-raises."""
    assert callable(app._exitWithSignal)
    source = inspect.getsource(app.ApplicationRunner.startReactor)
    assert "reactor._exitSignal" in source
    from twisted.scripts import twistd

    assert "_exitWithSignal(runner._exitSignal)" in inspect.getsource(twistd.runApp)
    assert signal.SIGTERM  # what shutdown.py clears


# -- the replication client's factory (replication/manager.py) ------------------------------


def test_connection_pool_builds_its_protocols_with_the_private_factory():
    """HTTPConnectionPool._factory is _HTTP11ClientFactory, a Factory with a ``noisy`` switch."""
    assert client.HTTPConnectionPool._factory is client._HTTP11ClientFactory
    assert "noisy" in dir(client._HTTP11ClientFactory)
    assert params(client._HTTP11ClientFactory.__init__)[:3] == ["self", "quiescentCallback",
                                                                "metadata"]


# -- the bound in setup.cfg ----------------------------------------------------------------


def test_trust_roots_add_their_cas_through_the_private_interface():
    from types import SimpleNamespace

    from twisted.internet import ssl
    from twisted.internet._sslverify import IOpenSSLTrustRoot

    assert list(IOpenSSLTrustRoot.names()) == ["_addCACertsToContext"]
    seen = []

    @implementer(IOpenSSLTrustRoot)
    class Root:
        def _addCACertsToContext(self, context):
            seen.append(context)

    creator = ssl.optionsForClientTLS("example.com", trustRoot=Root())
    tls_protocol = SimpleNamespace(factory=SimpleNamespace(wrappedFactory=object()))
    connection = creator.clientConnectionForTLS(tls_protocol)
    assert len(seen) == 1 and connection.get_context() is seen[0]


def test_installed_twisted_is_within_the_declared_bound():
    """The Twisted these pins ran against is one setup.cfg allows (both move together)."""
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    requirements = [Requirement(line) for line in
                    config["options"]["install_requires"].split("\n") if line.strip()]
    [twisted] = [r for r in requirements if r.name.lower() == "twisted"]
    assert twisted.specifier.contains(version("twisted"))
    assert any(spec.operator == "<" for spec in twisted.specifier), "no upper bound"
