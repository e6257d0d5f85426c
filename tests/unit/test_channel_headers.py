"""
``ReductChannel``'s one-pass header parser (``http/headblock.py``, issue
#17) against Twisted's own line-by-line parser: the same requests fed to a
channel with ``headers_at_once`` on and off must give byte-identical
answers (status, headers, echoed request headers, body), and
``split_header_block`` must never accept a block Twisted's
``HTTPChannel`` refuses, nor file any header differently.

Every channel runs over Twisted's ``StringTransport`` on a ``Clock``.
"""

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import http, server
from twisted.web.http_headers import _nameEncoder
from twisted.web.resource import Resource

from reduct_twisted.http import channel as channel_module
from reduct_twisted.http import headblock
from reduct_twisted.http.headblock import TOKEN_BYTES, canonical_name, split_header_block
from reduct_twisted.http.streaming import ReductChannel, ReductSite


class Echo(Resource):
    """Answers with what the request carried: line, headers in order, body."""

    isLeaf = True

    def render(self, request):
        body = request.content.read()
        request.content.close()
        return json.dumps(
            {
                "method": request.method.decode("latin-1"),
                "uri": request.uri.decode("latin-1"),
                "version": request.clientproto.decode("latin-1"),
                "headers": [
                    [name.decode("latin-1"), [v.decode("latin-1") for v in values]]
                    for name, values in request.requestHeaders.getAllRawHeaders()
                ],
                "body": body.decode("latin-1"),
                "malformed_length": request.malformed_length,
            }
        ).encode("ascii")


def connect(at_once: bool):
    clock = Clock()
    site = ReductSite(Echo(), router=None, reactor=clock)
    channel = site.buildProtocol(None)
    channel.headers_at_once = at_once
    transport = StringTransport()
    channel.makeConnection(transport)
    return clock, channel, transport


def run(data, at_once: bool, pieces=None):
    """Feed ``data`` (in one piece, or cut at ``pieces`` offsets); what the client sees."""
    clock, channel, transport = connect(at_once)
    cuts = [0] + sorted(pieces or []) + [len(data)]
    for start, end in zip(cuts, cuts[1:]):
        channel.dataReceived(data[start:end])
    clock.advance(5)
    return transport.value(), bool(transport.disconnecting), channel


@pytest.fixture
def blocks(monkeypatch):
    """What ``split_header_block`` answered, call by call."""
    seen = []

    def spy(block, max_line):
        result = split_header_block(block, max_line)
        seen.append(result is not None)
        return result

    monkeypatch.setattr(channel_module, "split_header_block", spy)
    return seen


@pytest.fixture
def one_pass(monkeypatch):
    """Whether ``_parse_header_block`` took each request's headers (False: Twisted did)."""
    seen = []
    original = ReductChannel._parse_header_block

    def spy(self):
        result = original(self)
        seen.append(result)
        return result

    monkeypatch.setattr(ReductChannel, "_parse_header_block", spy)
    return seen


def responses(value: bytes) -> list:
    """``(status line, {lowercase name: value}, body)`` of each response in ``value``."""
    found = []
    while value:
        head, _, value = value.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        fields = dict(line.lower().split(b": ", 1) for line in lines)
        if status_line.startswith(b"HTTP/1.1 100"):
            found.append((status_line, fields, b""))
            continue
        size = int(fields.get(b"content-length", len(value)))
        found.append((status_line, fields, value[:size]))
        value = value[size:]
    return found


def echoed(value: bytes) -> dict:
    """What the resource saw of the first request answered with 200."""
    [body] = [body for line, _, body in responses(value)[:2] if b" 200 " in line][:1]
    return json.loads(body)


def same_as_twisted(data, pieces=None):
    """Both parsers give the same answer; return it."""
    fast = run(data, True, pieces)[:2]
    slow = run(data, False, pieces)[:2]
    assert fast == slow
    return fast


def status(answer) -> bytes:
    return answer[0].split(b"\r\n", 1)[0]


BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request",
    b"x-reduct-error: Bad request",
    b'{"detail":"Bad request"}',
)


def assert_bad_request(answer):
    value, disconnecting = answer
    for part in BAD_REQUEST:
        assert part in value
    assert value.count(b"HTTP/1.1 ") == 1, "nothing after the refusal is answered"
    assert disconnecting


NEXT = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"


# -- refused header blocks ----------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [
        [b"Host a"],  # no colon
        [b": empty-name"],
        [b"Bad Name: x"],  # space in the name
        [b"Host : x"],  # space before the colon
        [b"(x): y"],
        [b"N\xe4me: x"],  # not ASCII
        [b"X: a\x00b"],
        [b"X: a\rb"],
        [b"X: a\nb"],
        [b"X: ok", b"Y: a\x00"],
        [b" Leading: fold"],  # a continuation line with no header before it
    ],
    ids=lambda lines: repr(b"|".join(lines))[:40],
)
def test_malformed_header_is_refused_as_twisted_refuses_it(lines, blocks):
    data = b"POST /x HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" + NEXT
    assert_bad_request(same_as_twisted(data))
    assert True not in blocks, "the one-pass parser accepted a block Twisted refuses"


@pytest.mark.parametrize(
    "lines",
    [
        [b"Content-Length: 1", b"Content-Length: 2"],
        [b"Content-Length: 1", b"Content-Length: 1"],
        [b"Content-Length: 1", b"Transfer-Encoding: chunked"],
        [b"Transfer-Encoding: chunked", b"Content-Length: 1"],
        [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
        [b"Transfer-Encoding: gzip"],
        [b"Transfer-Encoding: chunked, gzip"],
    ],
    ids=lambda lines: repr(b"|".join(lines))[:40],
)
def test_refused_framing_is_twisteds(lines):
    """More than one framing header, or a coding Twisted does not know: left to Twisted,
    which refuses it."""
    data = b"POST /x HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" + NEXT
    assert_bad_request(same_as_twisted(data))


def test_obs_fold_is_joined_as_twisted_joins_it(one_pass):
    """A continuation line (obsolete line folding) is Twisted's: joined with one space."""
    data = b"GET /x HTTP/1.1\r\nX-Long: a\r\n \t b\r\nHost: h\r\n\r\n" + NEXT
    value, _ = same_as_twisted(data)
    assert echoed(value)["headers"] == [["X-Long", ["a b"]], ["Host", ["h"]]]
    assert value.count(b"HTTP/1.1 200 OK") == 2
    assert one_pass[:2] == [False, True]  # the fold is Twisted's, NEXT is ours


@pytest.mark.parametrize("extra", [0, 1], ids=["at-limit", "over"])
def test_header_count_limit(extra, one_pass):
    clock, channel, transport = connect(True)
    limit = channel.maxHeaders
    lines = [b"X-H-%d: v" % i for i in range(limit + extra)]
    data = b"GET /x HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
    answer = same_as_twisted(data)
    if extra:
        assert_bad_request(answer)
    else:
        assert status(answer) == b"HTTP/1.1 200 OK"
        assert one_pass[-1] is True


@pytest.mark.parametrize("extra", [0, 1], ids=["at-limit", "over"])
def test_total_header_size_limit(extra, one_pass):
    """totalHeadersSize counts the request line and every header line, without line ends."""
    _, channel, _ = connect(True)
    request_line = b"GET /x HTTP/1.1"
    room = channel.totalHeadersSize - len(request_line)
    filler = [b"X-F: " + b"v" * 60_000 for _ in range(room // 60_005)]
    used = sum(map(len, filler))
    last = b"X-Last: " + b"w" * (room - used - len(b"X-Last: ") + extra)
    data = request_line + b"\r\n" + b"\r\n".join(filler + [last]) + b"\r\n\r\n"
    answer = same_as_twisted(data)
    if extra:
        assert_bad_request(answer)
    else:
        assert status(answer) == b"HTTP/1.1 200 OK"
        assert one_pass[-1] is True


@pytest.mark.parametrize("extra", [0, 1], ids=["at-limit", "over"])
def test_line_length_limit(extra, one_pass):
    _, channel, _ = connect(True)
    line = b"X-Long: " + b"v" * (channel.MAX_LENGTH - len(b"X-Long: ") + extra)
    data = b"GET /x HTTP/1.1\r\n" + line + b"\r\n\r\n"
    answer = same_as_twisted(data)
    if extra:
        assert_bad_request(answer)
    else:
        assert status(answer) == b"HTTP/1.1 200 OK"
        assert one_pass[-1] is True


# -- accepted requests --------------------------------------------------------------


ACCEPTED = [
    b"GET /x HTTP/1.1\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n" + NEXT,  # not persistent: NEXT is dropped
    b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n" + NEXT,
    b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nX-B:3\r\nX-C:\t 4 \t\r\nX-Empty:\r\n\r\n",
    b"GET /x HTTP/1.1\r\nETag: x\r\nwww-authenticate: y\r\nTE: z\r\nte-x: q\r\nDNT: 1\r\n\r\n",
    b"GET /x HTTP/1.1\r\nX: \x01\x7f\x80\xff\"\r\n\r\n",
    b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + NEXT,
    b"POST /x HTTP/1.1\r\ncontent-length: 0005\r\n\r\nhello" + NEXT,
    b"POST /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",  # ours: 422 later, not Twisted's 400
    b"POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + NEXT,
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n" + NEXT,
    b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab" + NEXT,
    b"POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
    b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n" * 3,  # pipelined
    b"\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",  # the empty line Twisted tolerates once
    b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n",
    b"GET /x HTTP/1.1\r\n\r\n\r\nGET /y HTTP/1.1\r\n\r\n",
]


@pytest.mark.parametrize("data", ACCEPTED, ids=lambda d: repr(d)[:50])
def test_accepted_request_is_answered_as_twisted_answers_it(data, one_pass):
    value, _ = same_as_twisted(data)
    first = [line for line, _, _ in responses(value) if b" 100 " not in line][0]
    assert first.endswith(b" 200 OK")
    assert True in one_pass, "the one-pass parser was never used"


@pytest.mark.parametrize("data", ACCEPTED, ids=lambda d: repr(d)[:50])
def test_request_cut_anywhere_is_answered_the_same(data):
    """Header lines that arrive in pieces are gathered until the block is complete: the same
    answer as for the request sent whole, and as Twisted gives for the same pieces."""
    whole = same_as_twisted(data)
    for cut in range(1, len(data)):
        assert same_as_twisted(data, [cut]) == whole, cut


@pytest.mark.parametrize("lines", [
    [b"Host a"], [b"Bad Name: x"], [b"X: a\x00b"], [b"X: a\nb"], [b"Content-Length: 1",
                                                                 b"Content-Length: 2"],
], ids=lambda lines: repr(b"|".join(lines))[:40])
def test_malformed_request_cut_anywhere_is_refused_the_same(lines):
    data = b"POST /x HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" + NEXT
    whole = same_as_twisted(data)
    assert_bad_request(whole)
    for cut in range(1, len(data)):
        assert same_as_twisted(data, [cut]) == whole, cut


def big_batch(records: int) -> bytes:
    lines = [b"POST /api/v1/b/bucket/entry/batch HTTP/1.1", b"Host: a",
             b"Content-Length: %d" % records]
    lines += [b"x-reduct-time-%d: 1,text/plain,sensor=s%d,run=%d" % (10**15 + i, i % 7, i)
              for i in range(records)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + b"x" * records + NEXT


def test_a_large_header_block_in_many_reads_is_parsed_in_one_pass(one_pass):
    """2,000 record headers (~110 KB) arriving 4 KiB a read: gathered, then one pass."""
    data = big_batch(1990)
    pieces = list(range(4096, len(data), 4096))
    value, _ = same_as_twisted(data, pieces)
    assert one_pass == [None, True, True]  # the batch: not all there, then whole; NEXT
    assert len(echoed(value)["headers"]) == 1992
    assert value.count(b" 200 OK") == 2


def test_gathering_stops_at_the_header_size_limit(one_pass):
    """A block that never ends is held back only up to totalHeadersSize, then Twisted's
    parser refuses it, as it does line by line."""
    clock, channel, transport = connect(True)
    line = b"X-Filler: " + b"f" * 1000 + b"\r\n"
    channel.dataReceived(b"GET /x HTTP/1.1\r\n")
    sent = 0
    while not transport.value() and sent < 2 * channel.totalHeadersSize:
        channel.dataReceived(line * 16)
        sent += len(line) * 16
    assert_bad_request((transport.value(), transport.disconnecting))
    assert channel.totalHeadersSize < sent <= channel.totalHeadersSize + len(line) * 16
    assert one_pass == [None, None]  # at the request line, at the limit


def test_gathered_lines_keep_the_connection_alive_until_the_header_deadline():
    """Every read while the block is gathered restarts the idle timer; the header deadline
    still runs from the request's first byte."""
    for at_once in (True, False):
        clock, channel, transport = connect(at_once)
        channel.site.header_timeout = 10.0
        channel.setTimeout(3.0)
        channel.dataReceived(b"GET /x HTTP/1.1\r\n")
        for i in range(4):
            clock.advance(2)
            channel.dataReceived(b"X-%d: y\r\n" % i)
            assert not transport.disconnecting, (at_once, i)
        channel.dataReceived(b"\r\n")
        assert b"200 OK" in transport.value()


def test_headers_filed_under_twisted_names_in_order(one_pass):
    data = (b"POST /b HTTP/1.1\r\nx-reduct-time-2: 1,t\r\nHOST: a\r\nx-reduct-TIME-1: 2,t\r\n"
            b"content-type: text/plain\r\nX-Reduct-Time-2: 3,t\r\ncontent-length: 0\r\n\r\n")
    value, _ = same_as_twisted(data)
    assert one_pass == [True]  # (the second run is Twisted's alone)
    assert echoed(value)["headers"] == [
        ["X-Reduct-Time-2", ["1,t", "3,t"]],
        ["Host", ["a"]],
        ["X-Reduct-Time-1", ["2,t"]],
        ["Content-Type", ["text/plain"]],
        ["Content-Length", ["0"]],
    ]


def test_counters_match_twisted_while_a_body_arrives():
    """Between the headers and the end of the body, Twisted's counters hold what it counted."""
    data = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"
    states = []
    for at_once in (True, False):
        _, _, channel = run(data, at_once)
        request = channel.requests[-1]
        states.append((channel._receivedHeaderSize, channel._receivedHeaderCount,
                       channel.length, type(channel._transferDecoder),
                       list(request.requestHeaders.getAllRawHeaders())))
    assert states[0] == states[1]
    assert states[0][:2] == (len(b"POST /x HTTP/1.1Host: aContent-Length: 10"), 2)


def test_malformed_length_is_left_to_the_route():
    """A non-numeric Content-Length is remembered on the request, as on Twisted's path."""
    value, _ = same_as_twisted(b"POST /x HTTP/1.1\r\nContent-Length: 1x\r\n\r\n")
    assert echoed(value)["malformed_length"] is True


# -- split_header_block against Twisted's HTTPChannel --------------------------------


class _Capture(server.Request):
    captured: list = []

    def requestReceived(self, command, path, version):
        self.captured.append((list(self.requestHeaders.getAllRawHeaders()),
                              self.channel.length))
        if self.content is not None:
            self.content.close()


def twisted_parse(block: bytes):
    """What a plain twisted.web HTTPChannel makes of ``block``: its headers in order, or
    None if it refuses the request."""
    _Capture.captured = []
    channel = http.HTTPChannel()
    channel.requestFactory = _Capture
    channel.site = server.Site(Resource(), reactor=Clock())
    channel.maxHeaders = 10_000
    channel.totalHeadersSize = channel.MAX_LENGTH = 1 << 20
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET / HTTP/1.1\r\n" + block + b"\r\n\r\n")
    channel.connectionLost(None)
    if not _Capture.captured:
        assert b"400 Bad Request" in transport.value()
        return None
    return _Capture.captured[0][0]


_TOKEN = st.sampled_from(list(TOKEN_BYTES)).map(lambda b: bytes([b]))
_NOT_TOKEN = st.sampled_from([b" ", b"\t", b"(", b"\"", b"\x00", b"\x7f", b"\x80", b"\xe4",
                              b"/", b"@", b"[", b"{"])
_NAME = st.one_of(
    st.lists(_TOKEN, min_size=1, max_size=12).map(b"".join),
    st.sampled_from([b"content-type", b"Host", b"x-reduct-time-17", b"X-REDUCT-LABEL-a-b",
                     b"etag", b"te", b"te-x", b"-", b"a--b", b"www-authenticate",
                     b"x-xss-protection", b"content-md5", b"P3P", b"x-reduct-0-15"]),
    st.lists(st.one_of(_TOKEN, _NOT_TOKEN), min_size=0, max_size=8).map(b"".join),
)
_VALUE_BYTE = st.one_of(
    st.sampled_from([b"a", b"1", b",", b"=", b" ", b"\t", b"\"", b":", b"\x7f", b"\xc3\xa4"]),
    st.sampled_from([b"\x00", b"\r", b"\n", b"\x0b", b"\x0c", b"\x1c", b"\x85"]),
)
_VALUE = st.lists(_VALUE_BYTE, max_size=12).map(b"".join)
_LINE = st.one_of(
    st.tuples(_NAME, st.sampled_from([b":", b": ", b":\t", b" :", b""]), _VALUE).map(b"".join),
    _VALUE.map(lambda v: b" " + v),  # obs-fold
    st.just(b""),
)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_LINE, min_size=1, max_size=10))
def test_split_header_block_agrees_with_twisted(lines):
    block = b"\r\n".join(lines)
    if not block or b"\r\n\r\n" in b"\r\n" + block + b"\r\n" or block.startswith(b"\r\n"):
        return  # a block never holds an empty line (it would end the headers)
    ours = split_header_block(block, 1 << 20)
    theirs = twisted_parse(block)
    if ours is not None:
        assert theirs is not None, block
        assert list(ours.items()) == theirs, block


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.lists(_TOKEN, min_size=1, max_size=12).map(b"".join),
                          st.lists(st.sampled_from([b"a", b" ", b",", b"\t", b"\xff", b":"]),
                                   max_size=10).map(b"".join)),
                min_size=1, max_size=10))
def test_valid_blocks_take_the_one_pass(pairs):
    """Token names and values without control bytes: never left to Twisted."""
    block = b"\r\n".join(name + b":" + value for name, value in pairs)
    ours = split_header_block(block, 1 << 20)
    assert ours is not None
    assert list(ours.items()) == twisted_parse(block)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_NAME.filter(lambda n: n and not n.translate(None, TOKEN_BYTES)),
                 st.lists(st.sampled_from([b"a", b"B", b"-", b"1", b"_", b"x"]),
                          min_size=1, max_size=10).map(b"".join)))
def test_canonical_name_is_twisteds(name):
    assert canonical_name(name) == _nameEncoder.encode(name)


def test_generated_requests_are_answered_as_twisted_answers_them():
    """Whole requests made of random lines, valid and not, through both channels."""
    rng = random.Random(17)
    names = [b"Host", b"X-A", b"x-reduct-time-5", b"Content-Length", b"Transfer-Encoding",
             b"Bad Name", b"", b"Expect", b"Connection", b"X\x00"]
    values = [b"a", b"5", b"chunked", b"identity", b"close", b"100-continue", b"x\x00",
              b" spaced ", b"abc", b"0"]
    for _ in range(300):
        lines = []
        for _ in range(rng.randint(0, 6)):
            kind = rng.random()
            if kind < 0.05:
                lines.append(b" folded")
            elif kind < 0.1:
                lines.append(b"no colon")
            else:
                lines.append(rng.choice(names) + b":" + rng.choice(values))
        data = b"POST /x HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines)
        data += b"\r\n" + b"hello" + NEXT
        same_as_twisted(data)


def test_the_cache_of_name_heads_is_bounded(monkeypatch):
    """Heads of invented names are cached only up to a count and a length."""
    monkeypatch.setattr(headblock, "_HEADS", {})
    long_head = b"x" * 1000
    assert canonical_name(long_head + b"-y") == _nameEncoder.encode(long_head + b"-y")
    assert headblock._HEADS == {}
    for i in range(headblock._HEADS_MAX + 10):
        split_header_block(b"x-%d-a: 1\r\nbad head-%d-b: 2" % (i, i), 1 << 20)
    assert len(headblock._HEADS) == headblock._HEADS_MAX
    assert canonical_name(b"new-head-z") == b"New-Head-Z"
    assert b"new-head" not in headblock._HEADS
