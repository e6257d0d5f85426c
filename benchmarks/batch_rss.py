#!/usr/bin/env python
"""
The daemon's memory during one batched read of many small records (issue #6:
a batch read of 100 000 records of 1 KiB keeps the daemon's RSS growth under
32 MiB).

    python benchmarks/batch_rss.py [--records 100000] [--size 1024] [--json]

Starts the real daemon (``twistd -n --pidfile= reduct``, the ``twistd``
next to ``sys.executable``, this checkout on its ``PYTHONPATH``; see
``transfer.start_daemon``) over a fresh directory under ``/var/tmp``, then:

1. creates the bucket ``rss`` and writes ``--records`` records of ``--size``
   bytes into the entry ``e`` with batched writes (``POST …/e/batch``,
   ``--batch`` records a request, spec §3.4) over ``--connections``
   keep-alive connections (``http.client``, one thread each); every answer
   must be 200 without an ``x-reduct-error-<ts>`` header;
2. reads the daemon's RSS (``psutil``) once the writes are answered: the
   baseline (with ``--restart`` the daemon is first stopped and started
   again on the same data, and the baseline is taken ``--settle`` seconds
   after the new start: the read then begins with no record table in
   memory, and the growth includes loading them);
3. creates one query over all of them (``POST …/e/q`` with
   ``{"query_type": "QUERY", "start", "stop"}``, or ``GET …/e/q?start=&stop=``
   with ``--query get``) and reads it on one keep-alive connection with
   ``GET …/e/batch?q=ID`` until a batch says ``x-reduct-last: true`` (or
   204), while another thread samples the daemon's RSS every 10 ms.  The
   bodies are streamed: each record is read from the socket by its announced
   size, compared with what was written (its timestamp is in its first 8
   bytes, the rest is a fixed pattern) and dropped.  Timestamps must come
   in order without gaps, every size must be ``--size``, each response's
   ``content-length`` must be the sum of its records, and the read must end
   with exactly ``--records`` records.

With ``--io`` the same goes through the I/O API (batch protocol v2, spec
1.20 §1): the records are spread over ``--entries`` entries ``e-0`` …
(record ``i`` in entry ``(i // run) % entries``, ``run`` = ``--batch`` ÷
``--entries``: the entries take turns in runs of consecutive timestamps),
written with ``POST /api/v1/io/rss/write`` and read with one multi-entry
query (``POST …/io/rss/q``) and ``GET …/io/rss/read`` (``x-reduct-query-id``);
each record is checked for its entry as well.  A batch never interleaves
entries (§1.9 rule 2), so batches hold up to ``run`` × ``entries`` records.

Prints a markdown table and a JSON line (``--json``: only the JSON), stops
the daemon by its PID and removes the work directory (``--keep`` keeps it).
Exit status: 0 when every record came back right and the RSS growth (peak
during the read minus the baseline) is below ``--limit-mib`` (32); 1 when
the growth is not below the limit or any record is missing or wrong; 2 when
the daemon could not be started.

The daemon runs with ``RS_SYNC=none`` by default (``--sync always`` for the
fsync-per-round default): the sync policy changes how long the writes take,
not what the read costs.
"""

import argparse
import http.client
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rss_io import io_entry, io_headers, io_records  # noqa: E402
from transfer import free_port, start_daemon, stop_daemon  # noqa: E402

MIB = 1 << 20
BUCKET = "rss"
ENTRY = "e"
T0 = 1_700_000_000_000_000
TIME_PREFIX = "x-reduct-time-"
ERROR_PREFIX = "x-reduct-error-"
SAMPLE_INTERVAL = 0.01
CONTENT_TYPE = "application/octet-stream"


def content(ts: int, size: int, fill: bytes) -> bytes:
    """The content of record ``ts``: its timestamp (8 bytes, big endian) and a pattern."""
    head = ts.to_bytes(8, "big")
    return (head + fill)[:size]


class RssSampler(threading.Thread):
    """The RSS of one process every ``SAMPLE_INTERVAL`` seconds until stopped."""

    def __init__(self, process: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._halt.wait(SAMPLE_INTERVAL)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    return conn


def request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.getheaders(), resp.read()


def write_all(port: int, records: int, size: int, batch: int, connections: int, fill: bytes,
              entries: int = 0):
    """
    ``records`` records from ``T0`` on, ``batch`` a request, over
    ``connections`` keep-alive connections (``entries``: through the I/O
    API, over that many entries).

    :return: ``(seconds, problems)``.
    """
    batches = -(-records // batch)
    lock = threading.Lock()
    state = {"next": 0}
    problems = []
    path = f"/api/v1/io/{BUCKET}/write" if entries else f"/api/v1/b/{BUCKET}/{ENTRY}/batch"
    value = f"{size},{CONTENT_TYPE}"
    run = max(1, batch // entries) if entries else 0

    def worker():
        conn = connect(port)
        try:
            while True:
                with lock:
                    if problems or state["next"] >= batches:
                        return
                    b = state["next"]
                    state["next"] += 1
                first = T0 + b * batch
                n = min(batch, records - b * batch)
                stamps = range(first, first + n)
                if entries:
                    headers = io_headers(stamps, size, run, entries, ENTRY, T0)
                    stamps = sorted(stamps, key=lambda t: (io_entry(t - T0, run, entries), t))
                else:
                    headers = {f"{TIME_PREFIX}{ts}": value for ts in stamps}
                headers["Content-Type"] = CONTENT_TYPE
                body = b"".join(content(ts, size, fill) for ts in stamps)
                status, answer, text = request(conn, "POST", path, body, headers)
                errors = [f"{k}: {v}" for k, v in answer if k.lower().startswith(ERROR_PREFIX)]
                if status != 200 or errors:
                    with lock:
                        problems.append(f"batch {b}: HTTP {status} {text[:200]!r}; "
                                        f"{len(errors)} record errors, first {errors[:1]}")
                    return
        except (OSError, http.client.HTTPException) as exc:
            with lock:
                problems.append(f"writer: {type(exc).__name__}: {exc}")
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, problems


def create_query(conn, records: int, how: str) -> int:
    start, stop = T0, T0 + records
    if how == "post":
        body = json.dumps({"query_type": "QUERY", "start": start, "stop": stop}).encode()
        status, _, text = request(conn, "POST", f"/api/v1/b/{BUCKET}/{ENTRY}/q", body,
                                  {"Content-Type": "application/json"})
    else:
        status, _, text = request(conn, "GET",
                                  f"/api/v1/b/{BUCKET}/{ENTRY}/q?start={start}&stop={stop}")
    if status != 200:
        raise RuntimeError(f"query -> HTTP {status} {text[:200]!r}")
    return json.loads(text)["id"]


def read_batches(conn, records: int, size: int, fill: bytes, fetch, records_of, want) -> dict:
    """
    Read every batch ``fetch()`` answers (``http.client`` responses) until
    204 or ``x-reduct-last: true``, each record streamed and checked.

    :param records_of: ``headers -> [(ts, entry, size)]`` in body order.
    :param want: ``ts -> `` the entry expected for that record.
    :return: counts, seconds and the first problem (``None`` if none).
    """
    result = {"records_read": 0, "batches": 0, "max_batch": 0, "bytes_read": 0,
              "problem": None}
    expected_ts = T0
    started = time.perf_counter()
    try:
        while True:
            resp = fetch()
            if resp.status == 204:
                resp.read()
                break
            if resp.status != 200:
                raise RuntimeError(f"read -> HTTP {resp.status} {resp.read()[:200]!r}")
            announced = int(resp.getheader("content-length"))
            in_batch = total = 0
            for ts, entry, length in records_of(resp.getheaders()):
                expected_entry = want(expected_ts)
                if (ts, entry) != (expected_ts, expected_entry):
                    raise RuntimeError(f"record {entry}@{ts} where "
                                       f"{expected_entry}@{expected_ts} was expected")
                if length != size:
                    raise RuntimeError(f"record {ts}: size {length}, expected {size}")
                data = resp.read(length)
                if data != content(ts, size, fill):
                    raise RuntimeError(f"record {ts}: content differs ({len(data)} bytes)")
                expected_ts += 1
                in_batch += 1
                total += length
            rest = resp.read()
            if rest or total != announced:
                raise RuntimeError(f"batch {result['batches']}: content-length {announced}, "
                                   f"records {total}, {len(rest)} bytes beyond them")
            result["batches"] += 1
            result["records_read"] += in_batch
            result["bytes_read"] += total
            result["max_batch"] = max(result["max_batch"], in_batch)
            if in_batch == 0:
                raise RuntimeError(f"batch {result['batches']} without records")
            if resp.getheader("x-reduct-last") == "true":
                break
        if result["records_read"] != records:
            raise RuntimeError(f"the query returned {result['records_read']} of {records} "
                               "records")
    except (RuntimeError, OSError, ValueError, http.client.HTTPException) as exc:
        result["problem"] = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
        result["read_seconds"] = time.perf_counter() - started
    return result


def _get(conn, path: str, headers=None):
    def fetch():
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse()
    return fetch


def read_all_io(port: int, records: int, size: int, fill: bytes, entries: int,
                run: int) -> dict:
    """
    The ``--io`` read: one multi-entry query, ``GET …/io/rss/read`` until
    ``x-reduct-last: true`` (or 204), each record streamed and checked.
    """
    conn = connect(port)
    body = json.dumps({"query_type": "QUERY", "start": T0, "stop": T0 + records,
                       "entries": [f"{ENTRY}-{e}" for e in range(entries)]}).encode()
    try:
        status, _, text = request(conn, "POST", f"/api/v1/io/{BUCKET}/q", body,
                                  {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"query -> HTTP {status} {text[:200]!r}")
    except (RuntimeError, OSError, http.client.HTTPException) as exc:
        conn.close()
        return {"records_read": 0, "batches": 0, "max_batch": 0, "bytes_read": 0,
                "problem": f"{type(exc).__name__}: {exc}", "read_seconds": 0.0}
    fetch = _get(conn, f"/api/v1/io/{BUCKET}/read",
                 {"x-reduct-query-id": str(json.loads(text)["id"])})
    return read_batches(conn, records, size, fill, fetch, io_records,
                        lambda ts: f"{ENTRY}-{io_entry(ts - T0, run, entries)}")


def v1_records(headers) -> list:
    """``(ts, None, size)`` of the records of a v1 batch answer."""
    return [(int(name[len(TIME_PREFIX):]), None, int(value.split(",", 1)[0]))
            for name, value in headers if name.lower().startswith(TIME_PREFIX)]


def read_all(port: int, records: int, size: int, fill: bytes, how: str) -> dict:
    """The batched read of every record of one entry, streamed and checked."""
    conn = connect(port)
    try:
        qid = create_query(conn, records, how)
    except (RuntimeError, OSError, ValueError, http.client.HTTPException) as exc:
        conn.close()
        return {"records_read": 0, "batches": 0, "max_batch": 0, "bytes_read": 0,
                "problem": f"{type(exc).__name__}: {exc}", "read_seconds": 0.0}
    fetch = _get(conn, f"/api/v1/b/{BUCKET}/{ENTRY}/batch?q={qid}")
    return read_batches(conn, records, size, fill, fetch, v1_records, lambda ts: None)


def markdown(r: dict) -> str:
    mib = lambda n: f"{n / MIB:.1f} MiB"  # noqa: E731
    rows = [
        ("records × size", f"{r['records']} × {r['size']} B ({r['records'] * r['size'] / MIB:.1f} MiB)"),
        ("write", f"{r['write_seconds']:.2f} s, {r['write_records_per_s']:.0f} records/s "
                  f"({r['batch']} a request, {r['connections']} connections)"),
        ("RSS after the writes", mib(r["rss_after_write"])
         + ("" if r["restart"] else " (the baseline)")),
    ] + ([("RSS of the restarted daemon (the baseline)", mib(r["rss_baseline"]))]
         if r["restart"] else []) + [
        ("peak RSS during the read", f"{mib(r['rss_peak_read'])} ({r['rss_samples']} samples)"),
        ("**RSS growth during the read**", f"**{r['rss_growth_mib']:.2f} MiB** "
                                           f"(limit {r['limit_mib']} MiB)"),
        ("RSS after the read", mib(r["rss_after_read"])),
        ("read", f"{r['read_seconds']:.2f} s, {r['read_records_per_s']:.0f} records/s, "
                 f"{r['batches']} batches of up to {r['max_batch']}"),
        ("records read and checked", f"{r['records_read']} of {r['records']}"),
        ("result", "ok" if r["ok"] else "FAILED: " + "; ".join(r["problems"])),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes a record (≥ 8)")
    parser.add_argument("--batch", type=int, default=80, help="records a write request")
    parser.add_argument("--connections", type=int, default=4, help="writing connections")
    parser.add_argument("--query", choices=("post", "get"), default="post",
                        help="create the query with POST …/q (JSON) or GET …/q")
    parser.add_argument("--limit-mib", type=float, default=32.0,
                        help="fail when the RSS growth during the read reaches this")
    parser.add_argument("--sync", choices=("none", "always"), default="none",
                        help="RS_SYNC of the daemon")
    parser.add_argument("--restart", action="store_true",
                        help="restart the daemon between the writes and the read, so that "
                             "the read starts cold (no record table loaded)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="with --restart: seconds between the start and the baseline")
    parser.add_argument("--io", action="store_true",
                        help="write and read through the I/O API (batch protocol v2)")
    parser.add_argument("--entries", type=int, default=4, help="with --io: entries")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.records < 1 or args.size < 8 or args.batch < 1 or args.connections < 1 \
            or args.entries < 1:
        parser.error("--records, --batch, --connections and --entries must be ≥ 1, --size ≥ 8")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    fill = bytes(range(256)) * (-(-args.size // 256) + 1)
    work = Path(tempfile.mkdtemp(prefix="reduct-bench-rss-", dir="/var/tmp"))
    proc = None

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            proc, base, argv_daemon = start_daemon(work, work / "data", free_port(), args.sync)
        except SystemExit as exc:
            print(f"daemon did not start: {exc}", file=sys.stderr)
            return 2
        print(f"started twistd pid {proc.pid}", file=sys.stderr, flush=True)
        port = int(base.rsplit(":", 1)[1])
        daemon = psutil.Process(proc.pid)
        rss_start = daemon.memory_info().rss

        conn = connect(port)
        status, _, text = request(conn, "POST", f"/api/v1/b/{BUCKET}")
        conn.close()
        if status != 200:
            raise RuntimeError(f"create bucket -> HTTP {status} {text[:200]!r}")

        write_sampler = RssSampler(daemon)
        write_sampler.start()
        entries = args.entries if args.io else 0
        write_seconds, problems = write_all(port, args.records, args.size, args.batch,
                                            args.connections, fill, entries)
        rss_peak_write = write_sampler.stop()
        rss_after_write = daemon.memory_info().rss
        if args.restart and not problems:
            # A daemon that has only loaded the entry from disk: no slack
            # left in its heap by the writes for the read to reuse.
            code = stop_daemon(proc)
            if code not in (0, -signal.SIGTERM):
                raise RuntimeError(f"twistd exited {code} on SIGTERM after the writes")
            second = work / "restart"
            second.mkdir()
            try:
                proc, base, argv_daemon = start_daemon(second, work / "data", free_port(),
                                                       args.sync)
            except SystemExit as exc:
                raise RuntimeError(f"the daemon did not start again: {exc}") from None
            print(f"started twistd pid {proc.pid}", file=sys.stderr, flush=True)
            port = int(base.rsplit(":", 1)[1])
            daemon = psutil.Process(proc.pid)
            time.sleep(args.settle)
        baseline = daemon.memory_info().rss

        read_sampler = RssSampler(daemon)
        read_sampler.start()
        read = {"records_read": 0, "batches": 0, "max_batch": 0, "bytes_read": 0,
                "read_seconds": 0.0, "problem": None}
        if not problems and args.io:
            read = read_all_io(port, args.records, args.size, fill, args.entries,
                               max(1, args.batch // args.entries))
        elif not problems:
            read = read_all(port, args.records, args.size, fill, args.query)
        peak = max(read_sampler.stop(), baseline)
        after = daemon.memory_info().rss
        if read["problem"]:
            problems.append(read["problem"])
        growth = peak - baseline
        if growth >= args.limit_mib * MIB:
            problems.append(f"RSS growth {growth / MIB:.2f} MiB ≥ {args.limit_mib} MiB")
        result = {
            "records": args.records, "size": args.size, "batch": args.batch,
            "connections": args.connections, "query": args.query, "sync": args.sync,
            "io": args.io, "entries": entries,
            "write_seconds": write_seconds,
            "write_records_per_s": args.records / write_seconds if write_seconds else 0.0,
            "restart": args.restart,
            "rss_start": rss_start, "rss_peak_write": rss_peak_write,
            "rss_after_write": rss_after_write,
            "rss_baseline": baseline, "rss_peak_read": peak, "rss_after_read": after,
            "rss_growth": growth, "rss_growth_mib": growth / MIB,
            "rss_samples": read_sampler.samples, "limit_mib": args.limit_mib,
            "records_read": read["records_read"], "bytes_read": read["bytes_read"],
            "batches": read["batches"], "max_batch": read["max_batch"],
            "read_seconds": read["read_seconds"],
            "read_records_per_s": (read["records_read"] / read["read_seconds"]
                                   if read["read_seconds"] else 0.0),
            "daemon_argv": argv_daemon, "daemon_pid": proc.pid,
            "work_dir": str(work) if args.keep else None,
            "problems": problems, "ok": not problems,
        }
        if not args.json:
            print(markdown(result))
        print(json.dumps(result), flush=True)
        return 0 if result["ok"] else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if proc is not None:
            code = stop_daemon(proc)
            if code not in (0, -signal.SIGTERM):
                log = work / "twistd.log"
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                print(f"twistd exited {code}:\n{tail}", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
