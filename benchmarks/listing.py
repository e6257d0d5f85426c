#!/usr/bin/env python
"""
The record listing's page cost (issue #16 item 3: "a page costs work
proportional to the page, not to the entry: the 1,000th page of a
1,000,000-record entry within 2× the time of the first").

    python benchmarks/listing.py [--records 1000000] [--repeat 15] [--json]

Starts the real daemon (``RS_SYNC=none``, ``RS_INTEGRITY=log``; see
``transfer.start_daemon``) over a fresh directory under ``/var/tmp``, writes
``--records`` records of 16 to 100 bytes (every content different, labels
``cam=c<i % 4>`` and ``seq=<i % 1000>``) into the entry ``listing/e`` through
the v1 batch API (``--batch`` a request, one connection: entry number
``i + 1`` is the record at ``T0 + i`` µs), removes ``--removed-runs`` runs of
100 records spread evenly (``DELETE …/batch``), then times listing requests
(benchmarks/README.md lists them), each answer checked item by item against
a model of the entry: ``--repeat`` interleaved rounds (median, min, max, the
far page's ratio to page 1), the scans again beside a ``HEAD /api/v1/alive``
probe (the reactor's longest stall), the first ``digest=`` request (the
digest index catches up) and the ``--cold`` cases as the first request
after a restart of the daemon (the OS page cache is left alone).

Prints the tables (markdown) and a JSON line (``--json``: only the JSON),
stops the daemon by its PID and removes the work directory (``--keep``
keeps it).  Exit status: 0 when every answer was right and every bound
ratio is at most ``--bound`` (2.0); 1 otherwise; 2 when the daemon did not
start.
"""

import argparse
import hashlib
import json
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from listing_probe import Pinger, connect  # noqa: E402
from transfer import free_port, start_daemon, stop_daemon  # noqa: E402

BUCKET = "listing"
ENTRY = "e"
T0 = 1_700_000_000_000_000
TIME_PREFIX = "x-reduct-time-"
ERROR_PREFIX = "x-reduct-error-"
CONTENT_TYPE = "text/plain"
FILL = bytes(range(97, 123)) * 4
RUN = 100  # records a removed run
#: The cases' keys (``--cold``); ``-far``: page 1000 (or the last, for fewer records).
KEYS = ("p100-1", "p100-far", "p100-start", "p1000-1", "p1000-far", "p1000-start", "desc-1",
        "desc-far", "removed-1", "removed-far", "ts-1", "ts-far", "tsdesc-1", "tsremoved-1",
        "digest-1", "digest-far", "number-1", "number-far", "cam-1", "cam-far", "seq-1", "range")


def content(i: int) -> bytes:
    """Record ``i``'s content: 16 to 100 bytes, unique."""
    size = 16 + (i * 37) % 85
    return (b"%d " % i + FILL)[:size]


def labels(i: int) -> str:
    return f"cam=c{i % 4},seq={i % 1000}"


def digest_of(i: int) -> str:
    return "sha-256:" + hashlib.sha256(content(i)).hexdigest()


def call(conn, method: str, path: str, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.getheaders(), resp.read()


def write_all(port: int, records: int, batch: int) -> float:
    """:return: seconds to write ``records`` records, ``batch`` a request."""
    conn = connect(port)
    started = time.perf_counter()
    try:
        for first in range(0, records, batch):
            stamps = range(first, min(records, first + batch))
            headers = {f"{TIME_PREFIX}{T0 + i}": f"{len(content(i))},{CONTENT_TYPE},{labels(i)}"
                       for i in stamps}
            headers["Content-Type"] = CONTENT_TYPE
            body = b"".join(content(i) for i in stamps)
            status, answer, text = call(conn, "POST", f"/api/v1/b/{BUCKET}/{ENTRY}/batch",
                                        body, headers)
            errors = [f"{k}: {v}" for k, v in answer if k.lower().startswith(ERROR_PREFIX)]
            if status != 200 or errors:
                raise RuntimeError(f"write of {first}: HTTP {status} {text[:200]!r} {errors[:1]}")
    finally:
        conn.close()
    return time.perf_counter() - started


def removed_indices(records: int, runs: int) -> list:
    """
    Record indices removed: ``runs`` runs of :data:`RUN` records, evenly
    spread (1 000 000 records, 100 runs: from 5 000 every 10 000, so 10 runs
    lie below page 1000 of 100).
    """
    spacing = records // runs if runs > 0 else 0
    if spacing <= RUN:
        return []
    return [s + i for s in range(spacing // 2, records - RUN, spacing) for i in range(RUN)]


def remove(port: int, indices: list) -> float:
    conn = connect(port)
    started = time.perf_counter()
    try:
        for k in range(0, len(indices), 1000):
            headers = {f"{TIME_PREFIX}{T0 + i}": "0" for i in indices[k:k + 1000]}
            status, answer, text = call(conn, "DELETE", f"/api/v1/b/{BUCKET}/{ENTRY}/batch",
                                        b"", headers)
            errors = [f"{k}: {v}" for k, v in answer if k.lower().startswith(ERROR_PREFIX)]
            if status != 200 or errors:
                raise RuntimeError(f"removal: HTTP {status} {text[:200]!r} {errors[:1]}")
    finally:
        conn.close()
    return time.perf_counter() - started


class Model:
    """What the entry holds: for the expected answers."""

    def __init__(self, records: int, removed: list) -> None:
        self.records = records
        self.removed = set(removed)
        self.stored = [i for i in range(records) if i not in self.removed]

    def number_page(self, page: int, per_page: int, desc: bool = False,
                    include_removed: bool = False) -> list:
        """Entry numbers of a number-order page."""
        listed = range(1, self.records + 1) if include_removed else \
            [i + 1 for i in self.stored]
        if desc:
            listed = listed[::-1]
        return list(listed[(page - 1) * per_page:page * per_page])

    def filtered(self, cam: int) -> list:
        return [i + 1 for i in self.stored if i % 4 == cam]


def path(**params) -> str:
    query = "&".join(f"{quote(k, safe='[]')}={quote(str(v), safe='')}"
                     for k, v in params.items())
    return f"/api/v1/records/{BUCKET}/{ENTRY}" + (f"?{query}" if query else "")


class Case:
    """
    One listing request.

    :ivar expect: the entry numbers of the answer's items (None: not checked
        item by item), or for ``number=`` the one number.
    """

    def __init__(self, key, name, url, expect=None, pair=None, bound=True):
        self.key = key
        self.name = name
        self.url = url
        self.expect = expect
        self.pair = pair  # the key of the page-1 case this one is compared with
        self.bound = bound
        self.times = []


def cases(model: Model, records: int) -> list:
    """Every warm case; a far page names the page-1 case it is compared with."""
    far = lambda per_page: min(1000, max(1, len(model.stored) // per_page))  # noqa: E731
    p100, p1000 = far(100), far(1000)
    first100 = model.number_page(p100, 100)[0]
    first1000 = model.number_page(p1000, 1000)[0]
    last = records - 1 - 5
    while last in model.removed:
        last -= 1
    out = [
        Case("p100-1", "per_page=100 page=1", path(page=1), model.number_page(1, 100)),
        Case("p100-far", f"per_page=100 page={p100}", path(page=p100), model.number_page(p100, 100),
             "p100-1"),
        Case("p100-start", f"per_page=100 start={first100}", path(start=first100),
             model.number_page(p100, 100), "p100-1"),
        Case("p1000-1", "per_page=1000 page=1", path(per_page=1000, page=1), model.number_page(1, 1000)),
        Case("p1000-far", f"per_page=1000 page={p1000}", path(per_page=1000, page=p1000),
             model.number_page(p1000, 1000), "p1000-1"),
        Case("p1000-start", f"per_page=1000 start={first1000}", path(per_page=1000, start=first1000),
             model.number_page(p1000, 1000), "p1000-1"),
        Case("desc-1", "number desc page=1", path(**{"orderBy[number]": "desc", "page": 1}),
             model.number_page(1, 100, desc=True)),
        Case("desc-far", f"number desc page={p100}", path(**{"orderBy[number]": "desc", "page": p100}),
             model.number_page(p100, 100, desc=True), "desc-1"),
        Case("removed-1", "include_removed page=1", path(include_removed="true", page=1),
             model.number_page(1, 100, include_removed=True)),
        Case("removed-far", f"include_removed page={p100}", path(include_removed="true", page=p100),
             model.number_page(p100, 100, include_removed=True), "removed-1"),
        Case("ts-1", "timestamp asc page=1", path(**{"orderBy[timestamp]": "asc", "page": 1}),
             model.number_page(1, 100)),
        Case("ts-far", f"timestamp asc page={p100}", path(**{"orderBy[timestamp]": "asc", "page": p100}),
             model.number_page(p100, 100), "ts-1"),
        Case("tsdesc-1", "timestamp desc page=1", path(**{"orderBy[timestamp]": "desc", "page": 1}),
             model.number_page(1, 100, desc=True)),
        Case("tsremoved-1", "timestamp asc include_removed page=1",
             path(**{"orderBy[timestamp]": "asc", "include_removed": "true", "page": 1}),
             model.number_page(1, 100, include_removed=True), bound=False),
        Case("digest-1", "digest= of record 10", path(digest=digest_of(9)), [10]),
        Case("digest-far", f"digest= of record {last + 1}", path(digest=digest_of(last)), [last + 1],
             "digest-1"),
        Case("number-1", "number=1", path(number=1), 1),
        Case("number-far", f"number={last + 1}", path(number=last + 1), last + 1, "number-1"),
    ]
    cam = model.filtered(1)
    pages = max(1, min(1000, len(cam) // 100))
    out += [
        Case("cam-1", "where[cam]=c1 page=1", path(**{"where[cam]": "c1", "page": 1}), cam[:100],
             bound=False),
        Case("cam-far", f"where[cam]=c1 page={pages}", path(**{"where[cam]": "c1", "page": pages}),
             cam[(pages - 1) * 100:pages * 100], "cam-1", bound=False),
        Case("seq-1", "where[seq]=7 page=1", path(**{"where[seq]": "7", "page": 1}),
             [i + 1 for i in model.stored if i % 1000 == 7][:100], bound=False),
        Case("range", "start_ts/stop_ts 100 records near the end",
             path(start_ts=T0 + last - 100, stop_ts=T0 + last),
             [i + 1 for i in range(last - 100, last) if i not in model.removed], bound=False),
    ]
    return out


def check(case: Case, status: int, body: bytes) -> str:
    """:return: what is wrong with an answer, or ''."""
    if status != 200:
        return f"{case.name}: HTTP {status} {body[:200]!r}"
    doc = json.loads(body)
    if isinstance(case.expect, int):
        if doc.get("number") != case.expect or doc.get("timestamp") != T0 + case.expect - 1:
            return f"{case.name}: item {doc.get('number')}@{doc.get('timestamp')}"
        return ""
    numbers = [item["number"] for item in doc["data"]]
    if case.expect is not None and numbers != case.expect:
        return (f"{case.name}: numbers {numbers[:3]}…{numbers[-1:]} ({len(numbers)}), "
                f"expected {case.expect[:3]}…{case.expect[-1:]} ({len(case.expect)})")
    for item in doc["data"]:
        i = item["number"] - 1
        if item["timestamp"] != T0 + i or item["digest"] != digest_of(i):
            return f"{case.name}: item {item['number']} is not record {i}"
    return ""


def timed(conn, url: str) -> tuple:
    started = time.perf_counter()
    conn.request("GET", url)
    resp = conn.getresponse()
    body = resp.read()
    return time.perf_counter() - started, resp.status, body


def run_warm(port: int, all_cases: list, repeat: int, problems: list) -> None:
    conn = connect(port)
    try:
        for case in all_cases:  # once, untimed, and checked
            _, status, body = timed(conn, case.url)
            wrong = check(case, status, body)
            if wrong:
                problems.append(wrong)
        for _ in range(repeat):
            for case in all_cases:
                seconds, status, body = timed(conn, case.url)
                if status != 200:
                    problems.append(f"{case.name}: HTTP {status}")
                case.times.append(seconds)
    finally:
        conn.close()


def with_pinger(port: int, conn, case: Case) -> tuple:
    """``(name, request seconds, longest alive answer, alive answers)`` of one request."""
    pinger = Pinger(port)
    pinger.start()
    time.sleep(0.05)
    seconds, status, body = timed(conn, case.url)
    time.sleep(0.05)
    return (case.name, seconds, pinger.stop(), pinger.count), status, body


def stalls(port: int, scanned: list) -> list:
    """``(name, request seconds, longest alive answer, count)``; first row: no request."""
    pinger = Pinger(port)
    pinger.start()
    time.sleep(1.0)
    out = [("(no listing request, 1 s)", 0.0, pinger.stop(), pinger.count)]
    conn = connect(port)
    try:
        out += [with_pinger(port, conn, case)[0] for case in scanned]
    finally:
        conn.close()
    return out


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def table(all_cases: list, bound: float) -> str:
    by_key = {c.key: c for c in all_cases}
    lines = ["| request | median ms | min ms | max ms | ratio to page 1 (median) | bound |",
             "|---|---|---|---|---|---|"]
    for case in all_cases:
        med = statistics.median(case.times)
        ratio = ""
        if case.pair:
            base = statistics.median(by_key[case.pair].times)
            ratio = f"{med / base:.2f}×" if base else "–"
        limit = (f"≤ {bound}×" if case.bound else "none (a scan)") if case.pair else ""
        lines.append(f"| `{case.name}` | {fmt(med)} | {fmt(min(case.times))} | "
                     f"{fmt(max(case.times))} | {ratio} | {limit} |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="records a write request")
    parser.add_argument("--removed-runs", type=int, default=100,
                        help="runs of 100 records removed before the listing")
    parser.add_argument("--repeat", type=int, default=15, help="warm rounds (median of these)")
    parser.add_argument("--cold", default="p100-1,p100-far,p100-start,p1000-1,p1000-far,"
                        "ts-1,ts-far,digest-far,number-far",
                        help="cases timed cold, by key (comma separated; '' for none): "
                             + ", ".join(KEYS))
    parser.add_argument("--bound", type=float, default=2.0)
    parser.add_argument("--data", help="reuse this data directory (written by an earlier "
                        "--keep run with the same --records and --removed-runs)")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.records < 1000 or args.batch < 1 or args.repeat < 1:
        parser.error("--records ≥ 1000, --batch and --repeat ≥ 1")
    return args


def start(work: Path, data: Path, name: str):
    where = work / name
    where.mkdir()
    proc, base, argv = start_daemon(where, data, free_port(), "none",
                                    extra_env={"RS_INTEGRITY": "log"})
    print(f"started twistd pid {proc.pid}", file=sys.stderr, flush=True)
    return proc, int(base.rsplit(":", 1)[1]), argv


def stop(proc, work: Path, problems: list) -> None:
    code = stop_daemon(proc)
    if code not in (0, -signal.SIGTERM):
        problems.append(f"twistd pid {proc.pid} exited {code}")


def git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="reduct-bench-listing-", dir="/var/tmp"))
    data = Path(args.data) if args.data else work / "data"
    proc = None
    problems: list = []
    result = {"records": args.records, "batch": args.batch, "commit": git_head(),
              "machine": f"{platform.node()} {platform.machine()}, "
                         f"{len(__import__('os').sched_getaffinity(0))} CPUs"}

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            proc, port, daemon_argv = start(work, data, "run-0")
        except SystemExit as exc:
            print(f"daemon did not start: {exc}", file=sys.stderr)
            return 2
        result["daemon_argv"] = daemon_argv
        indices = removed_indices(args.records, args.removed_runs)
        if not args.data:
            conn = connect(port)
            status, _, text = call(conn, "POST", f"/api/v1/b/{BUCKET}")
            conn.close()
            if status != 200:
                raise RuntimeError(f"create bucket -> HTTP {status} {text[:200]!r}")
            seconds = write_all(port, args.records, args.batch)
            result["write_seconds"] = seconds
            print(f"wrote {args.records} records in {seconds:.1f} s "
                  f"({args.records / seconds:.0f} records/s)", file=sys.stderr, flush=True)
            result["remove_seconds"] = remove(port, indices)
        result["removed"] = len(indices)
        model = Model(args.records, indices)
        all_cases = cases(model, args.records)
        by_key = {c.key: c for c in all_cases}
        # The first digest= request feeds the entry's digest index every leaf
        # it does not cover yet (all of them after the writes; none with --data).
        conn = connect(port)
        row, status, body = with_pinger(port, conn, by_key["digest-far"])
        conn.close()
        wrong = check(by_key["digest-far"], status, body)
        if wrong:
            problems.append("first " + wrong)
        result["first_digest"] = row
        run_warm(port, all_cases, args.repeat, problems)
        warm = {c.key: {"name": c.name, "median": statistics.median(c.times), "min": min(c.times),
                         "max": max(c.times), "pair": c.pair, "bound": c.bound}
                for c in all_cases}
        over = []
        for c in all_cases:
            if c.pair:
                ratio = warm[c.key]["median"] / warm[c.pair]["median"]
                warm[c.key]["ratio"] = ratio
                if c.bound and ratio > args.bound:
                    over.append(f"{c.name}: {ratio:.2f}× page 1")
        result["warm"] = warm
        scanned = [c for c in all_cases if not c.bound or c.name.startswith("timestamp")]
        result["stalls"] = stalls(port, scanned)
        cold = []
        for key in [n.strip() for n in args.cold.split(",") if n.strip()]:
            case = by_key.get(key)
            if case is None:
                problems.append(f"--cold: no case {key!r}")
                continue
            stop(proc, work, problems)
            proc = None
            proc, port, _ = start(work, data, f"run-{len(cold) + 1}")
            conn = connect(port)
            seconds, status, body = timed(conn, case.url)
            again, _, _ = timed(conn, case.url)
            conn.close()
            wrong = check(case, status, body)
            if wrong:
                problems.append("cold " + wrong)
            cold.append((case.name, seconds, again))
        result["cold"] = cold
        result["over_bound"] = over
        result["problems"] = problems
        result["ok"] = not problems and not over
        if not args.json:
            print(f"\n{args.records} records ({len(indices)} removed), commit "
                  f"{result['commit']}, {result['machine']}")
            if "write_seconds" in result:
                print(f"written in {result['write_seconds']:.1f} s (v1 batch, {args.batch} a "
                      f"request, 1 connection), removed in {result['remove_seconds']:.1f} s")
            print(f"\nWarm, {args.repeat} rounds:\n")
            print(table(all_cases, args.bound))
            print("\nReactor stalls (longest HEAD /api/v1/alive answer during the request):\n")
            print("| request | request ms | longest alive ms | alive answers |\n|---|---|---|---|")
            name, seconds, longest, count = result["first_digest"]
            print(f"| first `{name}` (the digest index catches up) | {fmt(seconds)} | "
                  f"{fmt(longest)} | {count} |")
            for name, seconds, longest, count in result["stalls"]:
                print(f"| `{name}` | {fmt(seconds)} | {fmt(longest)} | {count} |")
            if cold:
                print("\nCold (first request after a restart, then the same again):\n")
                print("| request | first ms | second ms |\n|---|---|---|")
                for name, seconds, again in cold:
                    print(f"| `{name}` | {fmt(seconds)} | {fmt(again)} |")
            print("\nresult: " + ("ok" if result["ok"] else
                                  "FAILED: " + "; ".join(problems + over)))
        print(json.dumps(result), flush=True)
        return 0 if result["ok"] else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if proc is not None:
            stop(proc, work, problems)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
