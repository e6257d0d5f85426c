"""
Hostile input (issue #12): more than 20 000 generated requests thrown at a
real ``twistd -n reduct`` over raw sockets, by several client threads at
once, on keep-alive and on fresh connections; once with ``RS_API_TOKEN``
(most of the barrage) and once without.

The classes of input (generators in ``hostile_cases`` and
``hostile_malformed``; each runs as its own phase, so a traceback in the log
is charged to the class that caused it): unbounded digit strings
(``digits``), chunked uploads (``chunked``), odd ``Host`` headers
(``host``), label values and content types with quotes and commas through
batched writes and reads (``roundtrip``), malformed headers (``headers``),
bad names (``names``), bad bodies and vanishing clients (``bodies``), wrong
methods (``methods``), wrong tokens (``tokens``), the existing fuzz test's
requests (``fuzz``), and request heads trickled a byte at a time
(``slow``, alongside the others, with ``RS_HEADER_TIMEOUT=2``).

Asserted, and reported per class when it fails: no 5xx; every complete
request answered with parseable HTTP; every 4xx (but 405, and rename's
framework errors) carries ``x-reduct-error`` and, unless HEAD, a JSON
``detail``; no traceback, unhandled or critical error in the log; a probe
``GET /api/v1/alive`` every 100 ms answered within 1 s; a trickled head cut
within the header timeout (+1.5 s); and the records written before the
barrage read back byte-exact.

For a human: ``python -m tests.integration.test_hostile --summary`` prints
the per-class table (exit status 1 if anything was found).
"""

import json
import os
import re
import select
import socket
import struct
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration import hostile_cases as hc
from tests.integration import hostile_malformed as hm
from tests.integration.daemon import Connection, Malformed, Twistd, parse_responses, payload
from tests.integration.hostile_report import Probe, Tally, log_alarms, route_of

pytestmark = pytest.mark.slow

SEED = 12
PARALLEL = 8
HEADER_TIMEOUT = 2.0
#: ``(class, generator, scenarios with auth, scenarios without)``.
PLAN = [
    ("digits", hc.gen_digits, 2000, 300), ("chunked", hc.gen_chunked, 500, 100),
    ("host", hc.gen_host, 2000, 400), ("roundtrip", hc.gen_roundtrip, 300, 60),
    ("headers", hm.gen_headers, 3000, 600), ("names", hm.gen_names, 2500, 500),
    ("bodies", hm.gen_bodies, 800, 150), ("methods", hm.gen_methods, 1500, 300),
    ("tokens", hm.gen_tokens, 2000, 300), ("fuzz", hm.gen_fuzz, 3000, 600),
]
#: Classes that stall today's daemon for a second or more (the trickles run beside others).
STALLING = ("digits", "chunked")
#: Trickled requests: ``(name, sent at once, sent a byte every 0.3 s)``.
TRICKLES = [
    ("request line", b"", b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("header line", b"POST /api/v1/b/sl/e?ts=1 HTTP/1.1\r\n",
     b"Host: x\r\nContent-Length: 1\r\n\r\nx"),
    ("endless line", b"", b"GET /" + b"a" * 60),
    ("long header", b"GET /api/v1/info HTTP/1.1\r\n", b"X-Slow: " + b"s" * 60),
]


# -- one exchange --------------------------------------------------------------------------


def _connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _finals(data, methods):
    try:
        responses = parse_responses(data, methods)
    except Malformed:
        return None
    if any(s == -1 for s, _, _ in responses):
        return None
    return [r for r in responses if r[0] >= 200]


def transact(sock, case, timeout):
    """Send ``case`` on ``sock``, read what comes back: ``(data, how, sent)``."""
    raw, limit = case.raw, case.vanish or len(case.raw)
    sent, data, shut, last = 0, b"", False, time.monotonic()
    while True:
        if sent >= limit:
            if case.vanish:
                return data, "vanished", sent
            if not case.complete and not shut:
                shut = True
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        wait = last + timeout - time.monotonic()
        if wait <= 0:
            return data, "timeout", sent
        readable, writable, _ = select.select([sock], [sock] if sent < limit else [], [], wait)
        if writable:
            try:
                sent += sock.send(raw[sent:min(limit, sent + (1 << 18))])
                last = time.monotonic()
            except BlockingIOError:
                pass
            except OSError:
                sent = limit  # refused mid-body: read the answer
        if readable:
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                return data, "reset", sent
            if not chunk:
                return data, "eof", sent
            data += chunk
            last = time.monotonic()
            finals = _finals(data, case.methods)
            if finals is not None and len(finals) >= len(case.methods):
                closing = any(v.lower() == b"close" for k, v in finals[-1][1]
                              if k == b"connection")
                if sent >= limit or closing:
                    return data, "answered", sent


def judge(case, data, how, tally, cls, label):
    """
    Check one exchange: record its violations; return the last final
    ``Answer`` (or None) and whether its socket may be kept.
    """
    route = route_of(case.raw)

    def bad(kind, detail, key):
        tally.add(cls, kind, case.raw, f"{detail} [{label}]", key)

    try:
        responses = parse_responses(data, case.methods)
    except Malformed as e:
        bad("other", f"malformed response: {e}; got {data[:200]!r}", f"malformed to {route}")
        return None, False
    finals = [r for r in responses if r[0] >= 200]
    tally.answered(cls, [r[0] for r in finals] or [how])
    for i, (status, headers, body) in enumerate(finals):
        method = case.methods[i] if i < len(case.methods) else b"GET"
        names = dict(headers)
        error = names.get(b"x-reduct-error", names.get(b"content-type", b"")).decode("latin-1")
        if status >= 500:
            generic = error == "Internal server error"
            bad("5xx", f"{status} {error!r} to {route}: {data[:300]!r}",
                f"{status} {error} {route if generic else ''}")
        elif 400 <= status < 500 and status != 405 and not (
                b"/rename" in case.raw.split(b"\r\n", 1)[0] and status in (400, 415)):
            problem = None
            if not names.get(b"x-reduct-error"):
                problem = "no x-reduct-error"
            elif method != b"HEAD":
                try:
                    detail = json.loads(body).get("detail")
                except (ValueError, AttributeError):
                    detail = None
                if names.get(b"content-type") != b"application/json" or detail is None:
                    problem = "no JSON detail"
            if problem:
                bad("contract", f"{problem} on {status} to {route}: {data[:300]!r}",
                    f"{problem} {status} {route}")
    if -1 in [s for s, _, _ in responses]:
        bad("other", f"response cut short ({how}) to {route}: {data[:200]!r}", f"cut {route}")
    if how == "vanished":
        return None, False
    if case.complete and not finals and not (how == "reset" and case.oversize):
        what = {"timeout": f"no answer within {tally.timeout(cls)}s"}.get(
            how, f"{how} without an answer")
        bad("unanswered", f"{what} to {route}, got {data[:200]!r}", f"{how} {route}")
    elif not case.complete and how == "timeout":
        bad("other", f"neither answered nor closed after the client's EOF: {route}",
            f"no close {route}")
    answer = hc.Answer(*finals[-1]) if finals else None
    if case.check is not None:
        problem = case.check(answer)
        if problem:
            bad("other", problem, problem.split(":")[0] + " " + route)
    keep = (case.keep and how == "answered" and answer is not None
            and (answer.header("connection") or "").lower() != "close")
    return answer, keep


class Link:
    """A worker's keep-alive connection."""

    def __init__(self, port):
        self.port, self.sock = port, None

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, case, tally, cls, label):
        tally.sent(cls, len(case.methods))
        for attempt in (0, 1):
            reused = self.sock is not None and case.keep
            if not reused:
                self.close()
                self.sock = _connect(self.port)
                tally.connections += 1
            started = time.monotonic()
            data, how, sent = transact(self.sock, case, tally.timeout(cls))
            tally.took(cls, time.monotonic() - started, case.raw)
            if reused and not data and how in ("eof", "reset") and not attempt:
                # The server closed a keep-alive connection it had not announced
                # closing, before any idle timeout: a client would retry.
                tally.add(cls, "other", case.raw, f"keep-alive connection closed unannounced "
                          f"({how}) before {route_of(case.raw)} [{label}]")
                self.close()
                continue
            break
        if how == "vanished":
            _reset(self.sock)
            self.sock = None
            return None
        answer, keep = judge(case, data, how, tally, cls, label)
        if not keep:
            self.close()
        return answer


def drive(link, scenario, tally, cls, label):
    case = None
    try:
        case = next(scenario)
        while True:
            case = scenario.send(link.exchange(case, tally, cls, label))
    except StopIteration:
        pass
    except OSError as e:
        link.close()
        tally.add(cls, "unanswered", case.raw if case else b"", f"cannot connect: {e!r} [{label}]")


# -- around the barrage --------------------------------------------------------------------


def trickle(port, name, fast, slow, tally, label):
    """Send ``fast``, then ``slow`` a byte every 0.3 s: the server must cut it in time."""
    limit = HEADER_TIMEOUT + 1.5
    tally.sent("slow", 1)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    started, data, i = time.monotonic(), b"", 0
    try:
        sock.sendall(fast)
        while time.monotonic() - started <= limit:
            if i < len(slow):
                try:
                    sock.sendall(slow[i:i + 1])
                except OSError:
                    break
                i += 1
            readable, _, _ = select.select([sock], [], [], 0.3)
            if readable:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
        else:
            tally.add("slow", "other", fast + slow, f"{name} trickled: not cut within "
                      f"{limit:.1f}s ({i} bytes trickled; got {data[:100]!r}) [{label}]")
        if re.match(rb"HTTP/1\.[01] 5", data):
            tally.add("slow", "5xx", fast + slow, f"{name}: {data[:200]!r} [{label}]")
    finally:
        sock.close()


def prepare(port, ctx):
    """Buckets the generators use, a read-only token, and the precious records."""
    auth = ctx.authorization()
    written = {}
    with Connection(port) as conn:
        for name in [hc.PRECIOUS, "dg", "ck", "hs", "rt", "hd", "nm", "bd", "mt", "tk", "tk2",
                     "repsrc", "fz"] + [f"nmr{i}" for i in range(5)]:
            assert conn.request("POST", f"/api/v1/b/{name}", b"", auth).status == 200
        hard = b'{"quota_type": "HARD", "quota_size": 20000}'
        assert conn.request("POST", "/api/v1/b/hq", hard, auth).status == 200
        assert conn.request("POST", "/api/v1/b/hq/e?ts=1", b"h" * 15000, auth).status == 200
        ctx.read_only = b"no-auth"
        if ctx.auth:
            resp = conn.request("POST", "/api/v1/tokens/ro", b'{"read": ["tk"]}', auth)
            ctx.read_only = json.loads(resp.body)["value"].encode()
        for ts, size in enumerate([0, 1, 100, 5000, 70_000, (1 << 20) + 5, 3], start=1):
            for entry in ("e", "e2"):
                body = payload(hc.PRECIOUS, entry, ts, size)
                labels = {"q": '",x', "n": hc.LONG[:50]}
                headers = auth + [(f"x-reduct-label-{k}", v) for k, v in labels.items()]
                headers.append(("Content-Type", "a/b, c=\"d,e\""))
                assert conn.request("POST", f"/api/v1/b/{hc.PRECIOUS}/{entry}?ts={ts}", body,
                                    headers).status == 200
                written[(entry, ts)] = (body, 'a/b, c="d,e"', labels)
    return written


def check_data(port, ctx, written, tally, label):
    auth = ctx.authorization()
    with Connection(port) as conn:
        for (entry, ts), (body, ctype, labels) in written.items():
            resp = conn.request("GET", f"/api/v1/b/{hc.PRECIOUS}/{entry}?ts={ts}", headers=auth)
            got = {k.decode()[15:]: v.decode() for k, v in resp.headers
                   if k.startswith(b"x-reduct-label-")}
            if (resp.status, resp.body, resp.header("content-type"), got) != (
                    200, body, ctype, labels):
                tally.add("data", "other", b"GET %d" % ts,
                          f"record {entry}/{ts} lost or changed: {resp!r} [{label}]")
        tally.sent("data", len(written))


def run_barrage(data_path, auth: bool, tally, scale=1.0):
    """One daemon, every class in turn (with the probe and the trickles alongside)."""
    label = "auth on" if auth else "auth off"
    environ = {"RS_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    if auth:
        environ["RS_API_TOKEN"] = hc.TOKEN
    data_path.parent.mkdir(parents=True, exist_ok=True)
    daemon = Twistd(data_path, environ=environ)
    port = daemon.start()
    ctx = hc.Context(auth)
    phase = ["setup", label]
    probe = Probe(port, tally, phase)
    pool = ThreadPoolExecutor(PARALLEL)
    local = threading.local()
    offsets = [("setup", 0)]
    try:
        written = prepare(port, ctx)
        probe.start()
        slow = [threading.Thread(target=trickle, args=(port, *t, tally, label), daemon=True)
                for t in (TRICKLES if auth else TRICKLES[:2])]

        def one(cls, gen, index):
            if not hasattr(local, "link"):
                local.link = Link(port)
            rng = hm.make_rng(SEED, f"{cls}/{label}", index)
            view = ctx.scenario([p[0] for p in PLAN].index(cls), index)
            drive(local.link, gen(rng, view), tally, cls, label)

        only = os.environ.get("HOSTILE_ONLY", "").split(",")
        for cls, gen, with_auth, without in PLAN:
            if only != [""] and cls not in only:
                continue
            if cls not in STALLING and slow[0].ident is None:
                for thread in slow:  # beside a phase that does not stall the daemon
                    thread.start()
            phase[0] = cls
            offsets.append((cls, len(daemon.log_bytes())))
            count = int((with_auth if auth else without) * scale)
            started = time.monotonic()
            list(pool.map(lambda i: one(cls, gen, i), range(count)))
            tally.seconds[cls] = tally.seconds.get(cls, 0) + time.monotonic() - started
        phase[0] = "data"
        offsets.append(("data", len(daemon.log_bytes())))
        for thread in slow:
            if thread.ident is None:
                thread.start()
            thread.join(10)
        if not daemon.alive():
            tally.add("data", "other", b"", f"the daemon died [{label}]")
        else:
            check_data(port, ctx, written, tally, label)
    finally:
        probe.stop.set()
        probe.join(10)
        pool.shutdown()
        try:
            if daemon.alive():
                daemon.stop()
        except AssertionError as e:
            tally.add("data", "other", b"", f"no orderly stop: {str(e)[-300:]} [{label}]")
        daemon.kill()
    text = daemon.log_bytes()
    if os.environ.get("HOSTILE_LOG_DIR"):
        name = f"twistd-{label.replace(' ', '-')}.log"
        Path(os.environ["HOSTILE_LOG_DIR"], name).write_bytes(text)
    bounds = offsets + [("end", len(text))]
    for (cls, start), (_, end) in zip(bounds, bounds[1:]):
        for event, exc in log_alarms(text[start:end].decode("utf-8", "replace")):
            tally.add(cls, "traceback", b"", f"{event} -> {exc} [{label}]",
                      re.sub(r"\[[^\]]*,\d+,[^\]]*\]", "", event) + exc[:80])
    return probe


def run_all(base: Path, scale=1.0):
    """Both runs; the tally, the worst probe time and the wall time."""
    tally = Tally()
    started = time.monotonic()
    worst = 0.0
    for auth in (True, False):
        probe = run_barrage(base / ("auth" if auth else "open") / "data", auth, tally, scale)
        worst = max(worst, probe.worst)
    return tally, worst, time.monotonic() - started


def summary(tally, worst, elapsed) -> str:
    total = sum(row["sent"] for row in tally.rows.values())
    return (f"{total} requests ({tally.connections} connections) in {elapsed:.1f}s; "
            f"worst probe {worst:.2f}s; "
            f"{tally.violations()} violations\n{tally.table()}\n{tally.report()}")


def test_hostile_requests(tmp_path):
    """20 000+ hostile requests: no 5xx, none unanswered, no traceback, probe < 1 s, data intact."""
    tally, worst, elapsed = run_all(tmp_path)
    text = summary(tally, worst, elapsed)
    print("\n" + text)
    assert sum(row["sent"] for row in tally.rows.values()) >= 20_000, text
    assert tally.violations() == 0, text


if __name__ == "__main__":
    if "--summary" not in sys.argv[1:]:
        sys.exit("usage: python -m tests.integration.test_hostile --summary [--scale X]")
    scale = float(sys.argv[sys.argv.index("--scale") + 1]) if "--scale" in sys.argv else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        result = run_all(Path(tmp), scale)
    print(summary(*result))
    sys.exit(1 if result[0].violations() else 0)
