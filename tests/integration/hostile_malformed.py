"""
More hostile-request generators for ``test_hostile`` (issue #12): malformed
headers, bad names, bad bodies, wrong methods, wrong tokens, and the
existing fuzz test's generator.  Same conventions as ``hostile_cases``.
"""

import json
import random

from tests.integration import test_fuzz
from tests.integration.daemon import U64_MAX
from tests.integration.hostile_cases import DIGITS, TOKEN, Case, build

#: Header sets that are wrong on a record write, batched write or read:
#: ``(headers, framing, complete)`` where framing ``raw`` means the headers
#: given frame the body themselves.
BAD_HEADERS = [
    ([("x-reduct-label-", "v")], "cl", True),
    ([("x-reduct-label-a", b"\xff\xfe")], "cl", True),
    ([("x-reduct-label-\xff", "v")], "cl", True),
    ([("x-reduct-label-a\x00b", "v")], "cl", True),
    ([("x-reduct-label-a", "v\x00w")], "cl", True),
    ([("x-reduct-label-" + "n" * 300, "v")], "cl", True),
    ([("x-reduct-label-k%d" % i, "v" * 50) for i in range(300)], "cl", True),
    ([("x-reduct-label-big", "v" * 100_000)], "cl", True),
    ([("x-reduct-time", "abc")], "cl", True),
    ([("x-reduct-time", "-1")], "cl", True),
    ([("Content-Type", b"\xff\xfe\x00")], "cl", True),
    ([("Content-Type", "t" * 20000)], "cl", True),
    ([("Content-Length", "5"), ("Content-Length", "5")], "raw", True),
    ([("Content-Length", "5"), ("Content-Length", "6")], "raw", False),
    ([("Content-Length", "5, 5")], "raw", True),
    ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], "both", True),
    ([("Transfer-Encoding", "chunked"), ("Content-Length", "5")], "both", True),
    ([("X-Folded", "a\r\n continued"), ("Content-Length", "5")], "raw", True),
    ([("X-Folded", "a\r\n\tcontinued")], "cl", True),
    ([("X-Nul\x00", "v")], "cl", True),
    ([("X-Nul", "\x00\x00")], "cl", True),
    ([("\xff\xfe", "non-utf8 name")], "cl", True),
    ([("X-Latin", b"caf\xe9")], "cl", True),
    ([("Bad Header", "x")], "cl", True),
    ([("X-Sp ", "x")], "cl", True),
    ([("", "empty name")], "cl", True),
    ([("Expect", "100-continue")], "cl", True),
    ([("Expect", "nonsense")], "cl", True),
    ([("Content-Encoding", "gzip")], "cl", True),
    ([("Transfer-Encoding", "gzip, chunked")], "both", True),
    ([("Content-Length", "+5")], "raw", True),
    ([("Content-Length", "0x5")], "raw", True),
    ([("Content-Length", " 5")], "raw", True),
    ([("Content-Length", "-5")], "raw", True),
    ([("Content-Length", "\uff15")], "raw", True),
]
BAD_TS = ["-1", "", "1.5", "0x10", str(U64_MAX + 1), "%00", "1%20", "abc", "1e3", "+1", " 1",
          "\u0661", "NaN", DIGITS, "1&ts=2", "1;2"]
BAD_TIME_HEADERS = [("x-reduct-time-abc", "1,a"), ("x-reduct-time-1", "abc"),
                    ("x-reduct-time-1", ""), ("x-reduct-time-1", "1"), ("x-reduct-time--1", "1,a"),
                    ("x-reduct-time-1", '1,a,k="unterminated'), ("x-reduct-time-1", "1,a,@x=1"),
                    ("x-reduct-time-1", b"1,\xff"), ("x-reduct-time-1 ", "1,a"),
                    ("x-reduct-time-01", "1,a"), ("x-reduct-time-1", "-1,a")]


def gen_headers(rng, ctx):
    pick = rng.random()
    ts = next(ctx.ts)
    if pick < 0.5:
        headers, framing, complete = rng.choice(BAD_HEADERS)
        method, target = rng.choice([("POST", f"/api/v1/b/hd/e?ts={ts}"),
                                     ("POST", "/api/v1/b/hd/e/batch"),
                                     ("PATCH", f"/api/v1/b/hd/e?ts={ts}"),
                                     ("GET", "/api/v1/b/hd/e"), ("PUT", "/api/v1/b/hd"),
                                     ("POST", "/api/v1/b/hd/e/q")])
        body = b"hello"
        if target.endswith("/q"):
            body = b'{"query_type":"QUERY"}'
        if framing == "both":
            body = b"5\r\nhello\r\n0\r\n\r\n"
            framing = "raw"
        if target.endswith("/batch"):
            headers = headers + [(f"x-reduct-time-{ts}", f"{len(body)},a/b")]
        yield build(ctx, method, target, headers, body, framing=framing, complete=complete,
                    close=rng.random() < 0.3)
    elif pick < 0.75:
        value = rng.choice(BAD_TS)
        method, path = rng.choice([("POST", "/api/v1/b/hd/e"), ("GET", "/api/v1/b/hd/e"),
                                   ("HEAD", "/api/v1/b/hd/e"), ("DELETE", "/api/v1/b/hd/e"),
                                   ("PATCH", "/api/v1/b/hd/e"), ("GET", "/api/v1/b/hd/e/q"),
                                   ("DELETE", "/api/v1/b/hd/e/q")])
        param = rng.choice(["ts", "ts", "q", "start", "stop", "ttl", "limit", "each_n", "each_s",
                            "continuous"])
        yield build(ctx, method, f"{path}?{param}={value}",
                    [("x-reduct-label-a", "1")], b"x" if method == "POST" else b"")
    else:
        header = rng.choice(BAD_TIME_HEADERS)
        method = rng.choice(["POST", "PATCH", "DELETE"])
        body = b"x" if method == "POST" else b""
        yield build(ctx, method, "/api/v1/b/hd/e/batch", [header], body)


# -- bucket and entry names -------------------------------------------------------------------

BAD_NAMES = ["%2F", "a%2Fb", "%2f..%2f", "..", ".", "%2e%2e", "%2E", "a.b", "x" * 256, "x" * 300,
             "y" * 1000, "%FF", "%00", "a%00b", "%C3%BC", "%E2%80%AE", "a%20b", "*", "-", "_",
             "a;b", "%", "%zz", "~", "CON", "x" * 255, "%2F%2F", "a/b", "a%5Cb", "\u00fc"]
NAME_ROUTES = [("POST", "/api/v1/b/{n}", b""), ("GET", "/api/v1/b/{n}", b""),
               ("HEAD", "/api/v1/b/{n}", b""), ("PUT", "/api/v1/b/{n}", b"{}"),
               ("DELETE", "/api/v1/b/{n}", b""), ("POST", "/api/v1/b/nm/{n}?ts={ts}", b"abc"),
               ("POST", "/api/v1/b/{n}/e?ts={ts}", b"abc"), ("GET", "/api/v1/b/nm/{n}", b""),
               ("HEAD", "/api/v1/b/nm/{n}?ts=1", b""), ("DELETE", "/api/v1/b/nm/{n}", b""),
               ("POST", "/api/v1/b/nm/{n}/q", b'{"query_type": "QUERY"}'),
               ("GET", "/api/v1/b/nm/{n}/q", b""), ("POST", "/api/v1/b/nm/{n}/batch", b""),
               ("PUT", "/api/v1/b/nm/e/rename", b'{"new_name": "{n}"}'),
               ("PUT", "/api/v1/b/nmr{r}/rename", b'{"new_name": "{n}"}'),
               ("POST", "/api/v1/tokens/{n}", b"{}"), ("GET", "/api/v1/tokens/{n}", b""),
               ("DELETE", "/api/v1/tokens/{n}", b""), ("GET", "/api/v1/replications/{n}", b""),
               ("POST", "/api/v1/replications/{n}",
                b'{"src_bucket": "{n}", "dst_bucket": "{n}", "dst_host": "http://127.0.0.1:9"}')]


def gen_names(rng, ctx):
    name = rng.choice(BAD_NAMES)
    method, template, body = rng.choice(NAME_ROUTES)
    fill = {"{n}": name, "{ts}": str(next(ctx.ts)), "{r}": str(rng.randrange(5))}
    target, body = template, body.decode()
    for key, value in fill.items():
        target = target.replace(key, value)
        # A JSON body names the raw (undecoded) text.
        body = body.replace(key, json.dumps(value)[1:-1])
    headers = [("Content-Type", "application/json")] if "rename" in target else []
    if target.endswith("/batch"):
        headers.append(("x-reduct-time-%d" % next(ctx.ts), "0,a"))
    yield build(ctx, method, target, headers, body.encode(), close=rng.random() < 0.2)


# -- bodies -----------------------------------------------------------------------------------


def gen_bodies(rng, ctx):
    pick = rng.randrange(7)
    ts = next(ctx.ts)
    if pick == 0:
        # Oversized for a route that buffers its (JSON) body.
        size = rng.choice([(1 << 20) + 1, 2 << 20] * 6 + [9 << 20])
        method, target = rng.choice([("PUT", "/api/v1/b/bd"), ("POST", "/api/v1/b/bd/e/q"),
                                     ("POST", "/api/v1/tokens/bdt"), ("GET", "/api/v1/info")])
        yield build(ctx, method, target, body=b"{" + b" " * (size - 2) + b"}")
    elif pick == 1:
        # Truncated: the Content-Length promises more than is sent.
        data = b"t" * rng.randint(0, 5000)
        target = rng.choice([f"/api/v1/b/bd/e?ts={ts}", "/api/v1/b/bd/e/q", "/api/v1/b/bd"])
        extra = rng.randint(1, 100_000)
        yield build(ctx, "POST", target, [("Content-Length", len(data) + extra)], data,
                    framing="raw", complete=False)
    elif pick == 2:
        # The client vanishes in the middle of a body (a reset, nothing read).
        data = rng.randbytes(rng.choice([100, 70_000, 600_000]))
        target = rng.choice([f"/api/v1/b/bd/e?ts={ts}", "/api/v1/b/bd/e/batch"])
        headers = [(f"x-reduct-time-{ts}", f"{len(data)},a")] if "batch" in target else []
        case = build(ctx, "POST", target, headers, data)
        case.vanish = len(case.raw) - rng.randint(1, len(data))
        case.keep = False
        yield case
    elif pick == 3:
        # A body longer than its Content-Length: the rest is the next "request".
        data = b"abcdef"
        smuggled = rng.choice([b"GARBAGE\r\n\r\n", b"GET /api/v1/info HTTP/1.1\r\n\r\n",
                               b"\x00\xff\r\n\r\n"])
        case = build(ctx, "POST", f"/api/v1/b/bd/e?ts={ts}",
                     [("Content-Length", "3")], data + smuggled, framing="raw", close=True)
        case.methods.append(smuggled.split(b" ")[0])
        yield case
    elif pick == 4:
        # A body where none belongs, or none where one is needed.
        method, target, body = rng.choice([
            ("GET", "/api/v1/info", b"x" * 5000), ("HEAD", "/api/v1/alive", b"{}"),
            ("DELETE", "/api/v1/b/bdx", b"zz"), ("POST", "/api/v1/b/bd/e/q", b""),
            ("PUT", "/api/v1/b/bd/e/rename", b""), ("POST", "/api/v1/tokens/bdt2", b""),
            ("GET", "/api/v1/b/bd/e", b"\x00" * 100), ("POST", "/api/v1/replications/r", b"")])
        yield build(ctx, method, target, body=body)
    elif pick == 5:
        # Valid records of all sizes, written and read back byte-exact.
        data = rng.randbytes(rng.choice([0, 1, 1000, 70_000, 1_100_000]))
        target = f"/api/v1/b/bd/e{rng.randrange(3)}?ts={ts}"
        answer = yield build(ctx, "POST", target, body=data)
        if answer is not None and answer.status == 200:
            yield build(ctx, "GET", target, check=lambda a: None if a and a.status == 200 and
                        a.body == data else f"read back {a and a.status} {a and len(a.body)} "
                        f"bytes, wrote {len(data)}")
    else:
        # Invalid JSON of many shapes on JSON routes.
        body = rng.choice(test_fuzz.BAD_JSON)
        method, target = rng.choice([("POST", f"/api/v1/b/bdj{rng.randrange(9)}"),
                                     ("PUT", "/api/v1/b/bd"), ("POST", "/api/v1/b/bd/e/q"),
                                     ("POST", f"/api/v1/tokens/bdj{rng.randrange(10**6)}"),
                                     ("POST", "/api/v1/replications/rj"),
                                     ("PUT", "/api/v1/b/bd/e/rename")])
        yield build(ctx, method, target, [("Content-Type", "application/json")], body)


# -- methods ----------------------------------------------------------------------------------

METHODS = ["PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO", "get", "G\x00T", "PUT", "DELETE",
           "POST", "HEAD", "GET", "PROPFIND", "M" * 300, "\xff", "PRI", "MKCOL"]
PATHS = ["/api/v1/info", "/api/v1/list", "/api/v1/alive", "/api/v1/me", "/api/v1/tokens",
         "/api/v1/tokens/x", "/api/v1/b/mt", "/api/v1/b/mt/e", "/api/v1/b/mt/e/q",
         "/api/v1/b/mt/e/batch", "/api/v1/b/mt/rename", "/api/v1/b/mt/e/rename",
         "/api/v1/replications", "/api/v1/replications/x", "/", "*", "/api/v1/b/mt/e/list",
         "/auth/refresh", "/api/v1/links/x"]


def gen_methods(rng, ctx):
    method = rng.choice(METHODS)
    target = rng.choice(PATHS)
    body = rng.choice([b"", b"", b"{}", b"x" * 100])
    headers = [("Origin", "http://evil.example")] if rng.random() < 0.2 else []
    if method == "OPTIONS" and rng.random() < 0.5:
        headers.append(("Access-Control-Request-Method", "DELETE"))
    yield build(ctx, method.encode("latin-1"), target, headers, body, close=rng.random() < 0.3)


# -- tokens -----------------------------------------------------------------------------------

AUTHS = [b"Bearer nosuch-token", b"Bearer init-token-0123456789abcdef0123456789abcdef",
         b"Bearer " + TOKEN[:-1].encode(), b"Bearer " + TOKEN.encode() + b"x",
         b"bearer " + TOKEN.encode(), b"Bearer\t" + TOKEN.encode(), b"Bearer",
         b"Bearer " + b"t" * 20000, b"Bearer \xff\xfe", b"Bearer \x00", b"Basic Zm9vOmJhcg==",
         b"Bearer " + TOKEN.encode() + b"\x00", b"Bearer ro-token-wrong", b"", b"Token x",
         b"Bearer  " + TOKEN.encode(), b"Bearer " + DIGITS.encode()]
TOKEN_BODIES = [b'{"full_access": true}', b'{"read": ["*"], "write": ["tk*"]}',
                b'{"read": ["../x"]}', b'{"read": "tk"}', b'{"full_access": "yes"}', b"[]",
                b'{"read": [' + b'"b",' * 5000 + b'"b"]}', b'{"write": ["\\u0000"]}', b"null",
                b"{}", b'{"read": [null]}']


def gen_tokens(rng, ctx):
    pick = rng.random()
    method, target, body = rng.choice([
        ("GET", "/api/v1/info", b""), ("GET", "/api/v1/me", b""), ("GET", "/api/v1/tokens", b""),
        ("POST", "/api/v1/b/tk/e?ts=%d" % next(ctx.ts), b"tok"), ("GET", "/api/v1/b/tk/e", b""),
        ("POST", "/api/v1/b/tk/e/q", b'{"query_type": "QUERY"}'), ("DELETE", "/api/v1/b/tk2", b""),
        ("POST", "/api/v1/b/tk/e/batch", b""), ("PUT", "/api/v1/b/tk", b"{}"),
        ("DELETE", "/api/v1/tokens/init-token", b""), ("HEAD", "/api/v1/b/tk", b"")])
    headers = []
    if target.endswith("/batch"):
        headers.append(("x-reduct-time-%d" % next(ctx.ts), "0,a"))
    if pick < 0.6:
        auths = [rng.choice(AUTHS)]
        if rng.random() < 0.15:
            auths.append(rng.choice(AUTHS + [b"Bearer " + TOKEN.encode()]))
        headers += [("Authorization", a) for a in auths]
        yield build(ctx, method, target, headers, body, auth=False, close=rng.random() < 0.2)
    elif pick < 0.75:
        # The read-only token made at setup, writing.
        headers.append(("Authorization", b"Bearer " + ctx.read_only))
        yield build(ctx, method, target, headers, body, auth=False)
    else:
        name = rng.choice(["tk%d" % rng.randrange(10**6), "init-token", "tk", "a b", "x" * 300])
        method = rng.choice(["POST", "POST", "GET", "DELETE"])
        body = rng.choice(TOKEN_BODIES) if method == "POST" else b""
        yield build(ctx, method, f"/api/v1/tokens/{name}", body=body, close=rng.random() < 0.2)


# -- the existing fuzz test's requests --------------------------------------------------------


def json_pool(rng) -> list:
    """Six JSON bodies for ``test_fuzz.request`` (which draws them through Hypothesis)."""
    scalars = [None, True, False, 0, -1, 2**70, 1.5, "FIFO", "HARD", "", "*", "../x", "\u00fc"]
    keys = test_fuzz.SETTING_KEYS
    return [json.dumps({rng.choice(keys): rng.choice(scalars) if rng.random() < 0.7 else
                        [rng.choice(scalars)] for _ in range(rng.randint(0, 4))}).encode()
            for _ in range(6)]


def gen_fuzz(rng, ctx):
    req = test_fuzz.request(rng, json_pool(rng), token_share=0.5 if ctx.auth else 0.0)
    if ctx.auth:
        req.raw = req.raw.replace(test_fuzz.TOKEN.encode(), TOKEN.encode())
    case = Case(req.raw, req.methods, complete=not req.incomplete)
    case.oversize = case.oversize or req.oversize
    yield case


def make_rng(seed, cls: str, index: int) -> random.Random:
    return random.Random(f"{seed}/{cls}/{index}")
