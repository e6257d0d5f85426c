"""
Bad input (issue #5): more than 10 000 generated malformed requests thrown
at one running ``twistd -n reduct`` over raw sockets, several connections at
a time.  Hypothesis generates them (``derandomize``: the same requests on
every run), from malformed request lines, methods and versions, header
names and values (bad, duplicate and huge ``Content-Length``, ``Expect``,
``Transfer-Encoding``, non-UTF-8, bearer tokens), bad timestamps, names and
query parameters, truncated, oversized and mis-framed bodies, bodies on
GET, pipelined garbage, JSON bodies that are invalid or of the wrong
types for bucket settings and token permissions, and requests to the I/O API
with malformed batch protocol v2 headers.

Asserted: no 5xx answer; every byte that comes back parses as HTTP/1.1; a
complete request is answered before the connection closes (a 400 and a
close is an answer; a reset is tolerated after a request over twisted.web's
size limits, as it may destroy an answer already sent); no hang; no traceback or unhandled error in the
daemon's log; afterwards the daemon serves, and records written before the
barrage are intact byte-exact.  Run once without authentication (10 000+
requests) and once with ``RS_API_TOKEN`` (so bearer parsing is fuzzed too).
"""

import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.integration.daemon import (
    U64_MAX,
    Connection,
    Malformed,
    Twistd,
    parse_responses,
    payload,
)

pytestmark = pytest.mark.slow

TOKEN = "fuzz-token-value"
#: Seconds a connection may stay silent before its request counts as hung.
ANSWER_TIMEOUT = 10.0
#: Connections in flight at once.
PARALLEL = 8
#: Connections per generated example.
BATCH = 24
#: twisted.web's limits on a request line or header line, and on a request head.
MAX_LINE = 16384
MAX_HEAD = 1 << 20
#: The bucket holding the records checked after the barrage; no generated
#: request can name it.
PRECIOUS = "precious-Q7x"

# -- generated parts -------------------------------------------------------------
#
# Hypothesis draws, per example, a seeded ``Random`` and a handful of JSON
# values (the recursive part it is good at); the requests of the example are
# built from those with plain ``Random`` calls, because drawing every byte
# through Hypothesis costs ~10 ms a request and the budget is 10 000 in < 60 s.

GOOD_NAMES = ["fz", "fz2", "e", "e2", "a-b_c"]
BAD_NAMES = ["..", ".", "%2F", "a%2Fb", "%2f..%2f", "%00", "a%00b", "x" * 300, "%C3%BC",
             "\u00fc", "%FF", "%", "%zz", "a%20b", "~", "*", "cam-*", "%2e%2e", "CON", "a;b",
             "a?b", "-", "_", "x" * 255, "\u4e2d\u6587", "a\u0000b", "%E2%80%AE"]
NAME_CHARS = "abc-_.%/\x00\u00e9\u4e2d0123456789"


def name(rng):
    pick = rng.random()
    if pick < 0.5:
        return rng.choice(GOOD_NAMES)
    if pick < 0.85:
        return rng.choice(BAD_NAMES)
    return "".join(rng.choice(NAME_CHARS) for _ in range(rng.randint(0, 12)))


BAD_NUMBERS = ["-1", "", "abc", "1.5", str(U64_MAX + 1), str(U64_MAX), "0", "1e3", " 1", "+1",
               "0x10", "\uff11\uff12", "%00", "NaN", "inf", "-inf", "true", "TRUE", "9" * 100,
               "1" * 5000, "00000000000000000000001", "%31", "1%00", "\u0661", "1 ", "%20"]
PARAMS = ["ts", "q", "start", "stop", "ttl", "limit", "each_n", "each_s", "continuous",
          "include-a", "exclude-a", "include-", "x", ""]
ODD_QUERIES = ["&&&", "=", "ts", "%%%", "ts==1", "ts=1&ts=", "?", "#x", "ts=1;q=2", "ts[]=1",
               "a=%ZZ", "\u00e9=\u00e9", "ts=" + "1" * 70000]


def number(rng):
    pick = rng.random()
    if pick < 0.5:
        return rng.choice(BAD_NUMBERS)
    if pick < 0.8:
        return str(rng.randint(0, 2000))
    return str(rng.randint(-2**70, 2**70))


def query_string(rng):
    if rng.random() < 0.1:
        return rng.choice(ODD_QUERIES)
    pairs = [(rng.choice(PARAMS), number(rng) if rng.random() < 0.8 else
              rng.choice(["false", "true", "1", "yes", "continuous"]))
             for _ in range(rng.randint(0, 4))]
    return "&".join(f"{k}={v}" for k, v in pairs)


TEMPLATES = ["/api/v1/info", "/api/v1/list", "/api/v1/alive", "/api/v1/me", "/api/v1/tokens",
             "/api/v1/tokens/{n}", "/api/v1/b/{n}", "/api/v1/b/{n}/{m}", "/api/v1/b/{n}/{m}/q",
             "/api/v1/b/{n}/{m}/batch", "/b/{n}/{m}/list", "/info", "/list", "/alive", "/b/{n}",
             "/b/{n}/{m}", "/b/{n}/{m}/q", "/auth/refresh", "/", "", "*", "//api/v1/info",
             "/api/v1/b/{n}/", "/api/v1/b//{m}", "/api/v1/../v1/info", "/api/v1/b/{n}/{m}/{m}",
             "http://127.0.0.1/api/v1/info", "/api/v1/NOTEXIST/{n}", "/api%2Fv1/info"]
ODD_TARGETS = [b"/api/v1/b/\xff\xfe", b"/api/v1/info\x00", b"/api/v1/b/a b",
               b"/api/v1/b/" + b"x" * 70000, b"/\r/", b"/api/v1/b/\tx", b"/api/v1/b/fz/e?ts=\xff"]


def target(rng):
    # The record routes most, as they do the most before the body arrives.
    template = rng.choice(TEMPLATES) if rng.random() < 0.6 else "/api/v1/b/{n}/{m}"
    path = template.format(n=name(rng), m=name(rng))
    if rng.random() < 0.7:
        path += "?" + query_string(rng)
    if rng.random() < 0.05:
        return rng.choice(ODD_TARGETS)
    return path.encode("utf-8", "surrogatepass")


METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE"]
ODD_METHODS = [b"PATCH", b"OPTIONS", b"TRACE", b"CONNECT", b"get", b"G\x00T", b"", b"X" * 300,
               b"\xff", b"GET GET", b"PRI"]
VERSIONS = [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1x", b"", b"http/1.1", b"HTTP/1",
            b"HTTP/1.10", b"HTTP/9.9"]

SETTING_KEYS = ["max_block_size", "max_block_records", "quota_type", "quota_size", "full_access",
                "read", "write", "x", ""]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
    st.text(max_size=8), st.sampled_from(["FIFO", "HARD", "NONE", "fifo", "", "*", "cam-*",
                                          "../x", "fz", "a b", "\u00fc"]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(SETTING_KEYS) | st.text(max_size=4), inner, max_size=4),
    max_leaves=8)
BAD_JSON = [b"xxx", b"{", b"{\"max_block_size\": }", b"\xff\xfe{}", b"[" * 100_000,
            b"{\"a\":" * 50_000, b"1" * 5000, b"{\"max_block_size\": 1" + b"0" * 5000 + b"}",
            b"\x00", b"{\"quota_type\": \"FIFO\", \"quota_size\": -1}", b"null", b"[]",
            b"\"s\"", b"{\"read\": \"fz\"}", b"{\"read\": [1, 2]}", b"{\"full_access\": \"yes\"}",
            b"{\"max_block_size\": NaN}", b"{\"max_block_size\": Infinity}", b"{\"read\": [\"*\"]}",
            b"{\"write\": [\"../x\"]}", b"{\"max_block_records\": 1.0}", b"{\"quota_type\": 1}",
            b"{\"max_block_size\": true}", b"\xef\xbb\xbf{}", b"  ", b"{}" * 3,
            b"{\"read\": [\"" + b"a" * 300 + b"\"]}", b"{\"read\": [\"\\u0000\"]}"]


def body(rng, json_pool):
    pick = rng.random()
    if pick < 0.3:
        return b""
    if pick < 0.6:
        return rng.choice(json_pool)
    if pick < 0.8:
        return rng.choice(BAD_JSON)
    if pick < 0.98:
        return rng.randbytes(rng.randint(0, 40))
    # Larger than the buffered-body limit of JSON routes, or just large.
    n = rng.choice([70_000, (1 << 20) + 1])
    return b"{" + b" " * (n - 2) + b"}"


AUTH_VALUES = [b"Bearer", b"Bearer ", b"Bearer x", b"bearer " + TOKEN.encode(), b"Basic abc",
               b"Bearer  " + TOKEN.encode(), b"Bearer " + TOKEN.encode() + b" ", b"\xff\xfe",
               b"Bearer \xff", b"Bearer " + b"t" * 10000, b"Token " + TOKEN.encode(), b""]
ODD_HEADERS = [
    (b"Content-Type", b"\xff\xfe"), (b"Content-Type", b"a" * 5000), (b"Content-Type", b""),
    (b"x-reduct-label-a", b"\xff"), (b"x-reduct-label-", b"v"), (b"x-reduct-label-\xff", b"v"),
    (b"X-Reduct-Label-Big", b"v" * 20000), (b"Expect", b"100-continue"), (b"Expect", b"foo"),
    (b"Expect", b"100-Continue"), (b"Expect", b""), (b"Host", b""), (b"Host", b"\xff"),
    (b"Connection", b"upgrade"), (b"Upgrade", b"h2c"), (b"Connection", b"keep-alive, close"),
    (b"Bad Header", b"x"), (b"X:Y", b"z"), (b"\xff\xfe", b"v"), (b"X-Huge", b"h" * 70000),
    (b"Range", b"bytes=0-1"), (b"Accept-Encoding", b"gzip"), (b"Content-Encoding", b"gzip"),
    (b"Transfer-Encoding", b"gzip"), (b"Transfer-Encoding", b"identity"), (b"Cookie", b"\x00"),
    (b"X-Reduct-Time", b"-1"), (b"Content-Length", b"abc"), (b"Content-Length", b"-1"),
    (b"x-reduct-label-" + b"n" * 300, b"v"), (b"Content-Type", b"text/plain\r\nX-Injected: 1"),
    (b"Host", b"a..b"), (b"Host", b"a" * 64), (b"Host", b"."),
]
#: How the body is framed: mostly right, otherwise in one of many wrong ways.
FRAMINGS = ["cl"] * 22 + ["chunked"] * 3 + [
    "none", "cl_short", "cl_long", "cl_bad", "cl_dup", "cl_dup_diff", "cl_neg", "cl_huge",
    "cl_plus", "chunked_bad", "chunked_cl", "te_unknown", "te_chunked_gzip", "chunked_truncated"]
ODD_RAW = [b"\r\n\r\n", b"GET\r\n\r\n", b"\x16\x03\x01\x02\x00\x01",
           b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x00" * 100 + b"\r\n\r\n",
           b" GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3000 + b"\r\n",
           b"GET /api/v1/info HTTP/1.1\r\n" + b"X: " + b"y" * (2 << 20) + b"\r\n\r\n"]


class Req:
    """
    One generated request: its bytes, the methods of the requests the server
    will see in them (usually one; a body longer than its Content-Length
    smuggles in another), and whether it is incomplete (the server may wait
    for more bytes, so no answer is required).
    """

    def __init__(self, raw: bytes, method: bytes, incomplete: bool, extra=()):
        self.raw = raw
        self.methods = [method, *extra]
        self.incomplete = incomplete
        head = raw.split(b"\r\n\r\n", 1)[0]
        #: Over twisted.web's limits (a 16 KiB line, 1 MiB of headers): the
        #: server may stop reading, and its close then resets the connection,
        #: which can destroy an answer already sent.
        self.oversize = len(head) > MAX_HEAD or max(map(len, head.split(b"\r\n"))) > MAX_LINE

    def __repr__(self):
        more = "..." if len(self.raw) > 600 else ""
        return f"Req({self.raw[:600]!r}{more}, {len(self.raw)} bytes)"


#: The I/O API (spec 1.20 §1): each route with its method.
IO_ROUTES = [(b"POST", "write"), (b"POST", "q"), (b"GET", "read"), (b"HEAD", "read"),
             (b"PATCH", "update"), (b"DELETE", "remove")]
IO_NAMES = ["fz", "e", "a%2Fb", "%24meta", "a%2F%24meta", "%zz", "%", "%FF", "", " ", "a,b",
            "x" * 300, "\u00e9", "%C3%A9", "*"]
IO_VALUES = ["3,text/plain", "0", "1", "", ",", "0,,", "5,t,0=a", "2,,a=1,b=", '4,t,a="x,y"',
             '1,t,a="open', "x,t", "-1,t", "18446744073709551616,t", "1,t,@a=1", "1,t,novalue",
             "1,t,9=z", "0,,remove=true,key=k", "1" * 30 + ",t", "\u00e9,t", "1,\xff"]


def io_headers(rng) -> list:
    """v2 batch headers (§1.2): entries, start, labels and record headers, often malformed."""
    headers = []
    if rng.random() < 0.9:
        names = [rng.choice(IO_NAMES) for _ in range(rng.randint(0, 4))]
        headers.append((b"x-reduct-entries", ",".join(names).encode("utf-8", "surrogatepass")))
    if rng.random() < 0.9:
        headers.append((b"x-reduct-start-ts", number(rng).encode("utf-8", "surrogatepass")))
    if rng.random() < 0.3:
        headers.append((b"x-reduct-labels", rng.choice([b"a,b", b"", b"a%zz", b"\xff", b"@c"])))
    if rng.random() < 0.3:
        headers.append((b"x-reduct-query-id", number(rng).encode("utf-8", "surrogatepass")))
    for _ in range(rng.randint(0, 6)):
        index = rng.choice(["0", "1", "2", "9", "", "a", "time", "99999999999999999999999"])
        delta = rng.choice(["0", "1", "10", "", "x", str(U64_MAX), str(U64_MAX + 1)])
        headers.append((f"x-reduct-{index}-{delta}".encode(),
                        rng.choice(IO_VALUES).encode("latin-1", "replace")))
    return headers


def chunked(data: bytes, parts: int) -> bytes:
    step = max(1, -(-len(data) // max(parts, 1)))
    pieces = [data[i:i + step] for i in range(0, len(data), step)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def request(rng, json_pool, token_share=0.0) -> Req:
    """One generated request (usually a valid frame around bad contents)."""
    if rng.random() < 0.02:
        raw = rng.choice(ODD_RAW)
        return Req(raw, b"GET", raw.startswith(b"\x16"))
    method = rng.choice(METHODS) if rng.random() < 0.95 else rng.choice(ODD_METHODS)
    version = b"HTTP/1.1" if rng.random() < 0.95 else rng.choice(VERSIONS)
    data = body(rng, json_pool)
    if method in (b"GET", b"HEAD", b"DELETE") and rng.random() < 0.75:
        data = b""
    framing = rng.choice(FRAMINGS)
    eol = b"\r\n" if rng.random() < 0.95 else b"\n"
    headers = [(b"Host", b"127.0.0.1")]
    if token_share and rng.random() < token_share:
        headers.append((b"Authorization", b"Bearer " + TOKEN.encode()))
    elif rng.random() < 0.2:
        headers.append((b"Authorization", rng.choice(AUTH_VALUES)))
    headers += rng.sample(ODD_HEADERS, rng.choice([0, 0, 0, 1, 1, 2]))
    if rng.random() < 0.02:
        headers += [(b"X-Many-%d" % i, b"v") for i in range(rng.choice([150, 2100]))]
    if rng.random() < 0.03:
        headers.append((b"X-Folded", b"a\r\n continued"))
    incomplete = False
    extra = []
    n = len(data)
    if framing == "cl":
        if data or method in (b"POST", b"PUT") or rng.random() < 0.5:
            headers.append((b"Content-Length", b"%d" % n))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        data = chunked(data, rng.randint(1, 3))
    elif framing == "cl_short":
        headers.append((b"Content-Length", b"%d" % (n + rng.randint(1, 5000))))
        incomplete = True
    elif framing == "cl_long":
        headers.append((b"Content-Length", b"%d" % max(0, n - rng.randint(1, 10))))
        smuggled = rng.choice([b"GARBAGE", b"GET / HTTP/1.1"])
        data += smuggled + b"\r\n\r\n"
        extra = [smuggled.split()[0]]
    elif framing == "cl_bad":
        headers.append((b"Content-Length", rng.choice([b"abc", b"", b"1.0", b"0x10", b"1 2",
                                                        b"\xff", b" "])))
    elif framing == "cl_dup":
        headers += [(b"Content-Length", b"%d" % n)] * 2
    elif framing == "cl_dup_diff":
        headers += [(b"Content-Length", b"%d" % n), (b"Content-Length", b"%d" % (n + 1))]
        incomplete = True
    elif framing == "cl_neg":
        headers.append((b"Content-Length", b"-%d" % max(n, 1)))
    elif framing == "cl_huge":
        headers.append((b"Content-Length", rng.choice(
            [b"99999999999999999999999", b"18446744073709551616", b"9223372036854775807",
             b"4294967296", b"1" * 5000])))
        incomplete = True
    elif framing == "cl_plus":
        headers.append((b"Content-Length", b"+%d" % n))
    elif framing == "chunked_bad":
        # Some of these announce a chunk the server then waits for.
        incomplete = True
        headers.append((b"Transfer-Encoding", b"chunked"))
        data = rng.choice([b"zz\r\nab\r\n0\r\n\r\n", b"5\r\nab\r\n0\r\n\r\n",
                           b"-1\r\n\r\n", b"1;x=y\r\na\r\n0\r\n\r\n",
                           b"ffffffffffffffffff\r\n", b"0\r\nTrailer: x\r\n\r\n",
                           b"3\nabc\n0\n\n"])
    elif framing == "chunked_truncated":
        headers.append((b"Transfer-Encoding", b"chunked"))
        data = b"a\r\nabc"
        incomplete = True
    elif framing == "chunked_cl":
        headers += [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"%d" % n)]
        data = chunked(data, 1)
    elif framing == "te_unknown":
        incomplete = True  # "Chunked" is chunked: the server waits for chunks
        headers.append((b"Transfer-Encoding", rng.choice([b"gzip", b"foo", b"Chunked",
                                                          b"chunked, chunked"])))
    elif framing == "te_chunked_gzip":
        headers.append((b"Transfer-Encoding", b"gzip, chunked"))
        data = chunked(data, 1)
    if rng.random() < 0.8:
        headers.append((b"Connection", b"close"))
    if rng.random() < 0.25:
        rng.shuffle(headers)
    if rng.random() < 0.12:  # the I/O API, with its v2 batch headers
        method, route = rng.choice(IO_ROUTES)
        path = f"/api/v1/io/{name(rng)}/{route}".encode("utf-8", "surrogatepass")
        headers += io_headers(rng)
    else:
        path = target(rng)
    line = method + b" " + path + (b" " + version if version else b"")
    raw = line + eol + b"".join(k + b": " + v + eol for k, v in headers) + eol + data
    # twisted.web ends lines at CRLF only: with bare LFs the head never ends.
    return Req(raw, method, incomplete or eol == b"\n", extra)


def connection_requests(rng, json_pool, token_share=0.0) -> list:
    """A connection's worth of requests: usually one, sometimes a pipelined few."""
    count = 1 if rng.random() < 0.75 else rng.randint(2, 4)
    return [request(rng, json_pool, token_share) for _ in range(count)]


# -- sending and judging -----------------------------------------------------------------


def exchange(port: int, reqs: list):
    """
    Send ``reqs`` on one connection and collect what comes back.

    :return: ``(problem or None, statuses)``.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT)
    methods_sent = [m for r in reqs for m in r.methods]
    incomplete = any(r.incomplete for r in reqs)
    data = b""
    reset = False
    try:
        try:
            sock.sendall(b"".join(r.raw for r in reqs))
            if incomplete:
                # The server may wait for more: tell it there is none.
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed early (it refused the request): read its answer
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except socket.timeout:
                return "no answer and no close within %ss" % ANSWER_TIMEOUT, [], 0
            except ConnectionResetError:
                reset = True
                break
            if not chunk:
                break
            data += chunk
            try:
                finals = [s for s, _, _ in parse_responses(data, methods_sent) if s >= 200]
            except Malformed:
                finals = []
            if len(finals) >= len(methods_sent) and -1 not in finals:
                break
            if time.monotonic() > deadline:
                return "answer incomplete after %ss" % ANSWER_TIMEOUT, [], 0
    finally:
        sock.close()
    try:
        responses = parse_responses(data, methods_sent)
    except Malformed as e:
        return f"malformed response: {e}; got {data[:300]!r}", [], 0
    statuses = [s for s, _, _ in responses]
    app = sum(1 for _, headers, _ in responses if any(n == b"x-reduct-api" for n, _ in headers))
    if -1 in statuses and not (reset and any(r.oversize for r in reqs)):
        # (A reset after an oversized request may cut an answer mid-way, as
        # it may destroy one whole: see the module docstring.)
        return f"response cut short: {data[:300]!r}", statuses, app
    if any(s >= 500 for s in statuses):
        return f"5xx answer: {data[:400]!r}", statuses, app
    if not incomplete and not [s for s in statuses if s >= 200]:
        if reset and any(r.oversize for r in reqs):
            return None, statuses, app
        how = "reset" if reset else "closed"
        return f"{how} without an answer (got {data[:200]!r})", statuses, app
    return None, statuses, app


class Barrage:
    """Runs generated connections against one daemon and keeps the tally."""

    def __init__(self, port):
        self.port = port
        self.pool = ThreadPoolExecutor(PARALLEL)
        self.requests = 0
        self.connections = 0
        self.statuses = {}
        self.problems = []
        #: Answers from the API (with x-reduct-api), not from twisted.web's parser.
        self.app_answers = 0

    def run(self, batch):
        results = list(self.pool.map(lambda reqs: (reqs, exchange(self.port, reqs)), batch))
        for reqs, (problem, statuses, app) in results:
            self.app_answers += app
            self.connections += 1
            self.requests += len(reqs)
            for s in statuses:
                self.statuses[s] = self.statuses.get(s, 0) + 1
            if problem:
                self.problems.append((problem, reqs))


#: Requests that once went wrong, sent first on every run.
EXPLICIT = [
    # An empty chunked record upload.
    [Req(b"POST /api/v1/b/fz/e?ts=77 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         b"Connection: close\r\n\r\n0\r\n\r\n", b"POST", False)],
    # JSON nested deeper than the decoder's recursion limit.
    [Req(b"POST /api/v1/b/deep HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
         b"Connection: close\r\n\r\n" + b"[" * 100_000, b"POST", False)],
    # A timestamp longer than int() converts (4300 digits), on a write and a read.
    [Req(b"POST /api/v1/b/fz/e?ts=" + b"1" * 5000 + b" HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 1\r\nConnection: close\r\n\r\nx", b"POST", False)],
    [Req(b"GET /api/v1/b/fz/e?ts=" + b"1" * 5000 + b" HTTP/1.1\r\nHost: x\r\n"
         b"Connection: close\r\n\r\n", b"GET", False)],
    # A label value longer than twisted.web's 16 KiB line limit.
    [Req(b"POST /api/v1/b/fz/e?ts=78 HTTP/1.1\r\nHost: x\r\nx-reduct-label-big: " + b"v" * 17000
         + b"\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", b"POST", False)],
]


# -- the tests -----------------------------------------------------------------------------


def prepare(conn, headers):
    """The precious records (checked after the barrage) and a fuzz bucket with data."""
    written = {}
    for name in (PRECIOUS, "fz"):
        resp = conn.request("POST", f"/api/v1/b/{name}", b'{"max_block_records": 5}', headers)
        assert resp.status == 200, resp
    for ts, size in enumerate([0, 1, 100, 5000, 70_000, (1 << 20) + 5, 3], start=1):
        for bucket in (PRECIOUS, "fz"):
            for entry in ("e", "e2"):
                body = payload(bucket, entry, ts, size)
                resp = conn.request("POST", f"/api/v1/b/{bucket}/{entry}?ts={ts}", body,
                                    headers + [("x-reduct-label-a", "1")])
                assert resp.status == 200, resp
                if bucket == PRECIOUS:
                    written[(entry, ts)] = body
    return written


def check_after(daemon, written, headers):
    with Connection(daemon.port) as conn:
        assert conn.request("HEAD", "/api/v1/alive").status == 200
        for (entry, ts), body in written.items():
            resp = conn.request("GET", f"/api/v1/b/{PRECIOUS}/{entry}?ts={ts}", headers=headers)
            assert resp.status == 200 and resp.body == body, (entry, ts, resp)
        info = json.loads(conn.request("GET", f"/api/v1/b/{PRECIOUS}", headers=headers).body)
        assert {e["name"]: e["record_count"] for e in info["entries"]} == {"e": 7, "e2": 7}
        resp = conn.request("POST", f"/api/v1/b/{PRECIOUS}/e?ts=1000", b"after", headers)
        assert resp.status == 200, resp
        resp = conn.request("GET", f"/api/v1/b/{PRECIOUS}/e?ts=1000", headers=headers)
        assert resp.body == b"after", resp


def log_alarms(log: str) -> dict:
    """
    Errors in a twistd log, grouped: ``{"<log line> -> <exception>": count}``
    for every unhandled error, critical or error event and traceback.
    """
    lines = log.splitlines()
    found = {}
    for i, line in enumerate(lines):
        if not any(a in line for a in ("Unhandled", "#critical", "#error", "Traceback")):
            continue
        if "Traceback" in line and i and any(
                a in lines[i - 1] for a in ("Unhandled", "#critical", "#error", "Traceback")):
            continue  # the traceback of the event on the line before
        if "Traceback" in line and i:
            line = lines[i - 1]  # the event this traceback belongs to
        head = re.sub(r"^\S+ \[([^\],]+)[^\]]*\]", r"[\1]", line)
        exc = next((x.strip() for x in lines[i + 1:i + 60]
                    if re.match(r"\s*(builtins\.|\w+(\.\w+)*(Error|Exception)\b)", x)), "")
        key = re.sub(r"\d+", "N", f"{head[:160]} -> {exc[:200]}")
        found[key] = found.get(key, 0) + 1
    return found


def run_barrage(tmp_path, examples, token_share, environ=None):
    daemon = Twistd(tmp_path / "data", environ=environ)
    daemon.start()
    auth = [("Authorization", f"Bearer {TOKEN}")] if environ else []
    barrage = Barrage(daemon.port)
    try:
        with Connection(daemon.port) as conn:
            written = prepare(conn, auth)
        started = time.monotonic()
        barrage.run(EXPLICIT)

        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(st.randoms(use_true_random=True),
               st.lists(json_values.map(lambda v: json.dumps(v).encode()), min_size=6,
                        max_size=6))
        def fuzz(rng, json_pool):
            barrage.run([connection_requests(rng, json_pool, token_share) for _ in range(BATCH)])

        fuzz()
        elapsed = time.monotonic() - started
        assert daemon.alive(), "the daemon died:\n" + daemon.output[-5000:]
        check_after(daemon, written, auth)
        log = daemon.stop()
    finally:
        barrage.pool.shutdown()
        daemon.kill()
    print(f"\n{barrage.requests} requests on {barrage.connections} connections in {elapsed:.1f}s"
          f" (auth {'on' if environ else 'off'}); statuses {dict(sorted(barrage.statuses.items()))}"
          f" ({barrage.app_answers} from the API);"
          f" problems {len(barrage.problems)}")
    kinds = {}
    for problem, reqs in barrage.problems:
        kind = problem.split(":")[0][:40]
        if any(r.oversize for r in reqs):
            kind += " (a request over twisted.web's limits)"
        kinds.setdefault(kind, []).append((problem, reqs))
    report = "\n".join(
        f"{len(found)} x {kind}:\n" + "\n".join(
            f"  {problem[:500]}\n    sent: {reqs!r}" for problem, reqs in found[:3])
        for kind, found in kinds.items())
    alarms = log_alarms(log)
    alarm_report = "\n".join(f"{n} x {kind}" for kind, n in alarms.items())
    assert not barrage.problems and not alarms, (
        f"{len(barrage.problems)} bad exchanges:\n{report}\n\n"
        f"{sum(alarms.values())} errors in the daemon's log:\n{alarm_report}")
    return barrage


def test_malformed_requests_without_auth(tmp_path):
    """10 000+ malformed requests get no 5xx, no hang, no unhandled error; data stays intact."""
    barrage = run_barrage(tmp_path, examples=320, token_share=0.0)
    assert barrage.requests >= 10_000


def test_malformed_requests_with_token(tmp_path):
    """With RS_API_TOKEN, malformed requests and bearer headers are handled the same way."""
    barrage = run_barrage(tmp_path, examples=100, token_share=0.5,
                          environ={"RS_API_TOKEN": TOKEN})
    assert barrage.requests >= 2_000
