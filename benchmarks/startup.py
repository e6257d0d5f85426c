#!/usr/bin/env python
"""
Start-up with many records (issue #17): how long the daemon takes from its
launch to the first answered request on a data directory of ``--records``
records of ``--size`` bytes spread over ``--entries`` entries of one bucket,
after a clean stop and after ``kill -9``, and how long the first read and
the first query take after that.

    python benchmarks/startup.py [--records 10000000] [--entries 10] [--size 100]
                                 [--workers 2] [--rounds 3] [--keep DIR | --reuse DIR]

The data directory is written first, through the storage engine itself
(``StorageEngine`` in-process, ``integrity=log``, the daemon's defaults), by
``--workers`` processes that each write a share of the entries into a data
directory of their own; the entry directories are then moved under one
bucket (an entry directory is self-contained: its blocks, its number
counter and its log).  Each engine is closed cleanly.  ``--keep DIR`` keeps
the generated directory there, ``--reuse DIR`` starts from a copy of one
kept before (``cp -a``: the daemon changes what it opens).

Then, ``--rounds`` times, on the same directory:

- **clean**: ``twistd -n reduct`` (``RS_SYNC=none``) is launched; the time to
  the first ``200`` from ``HEAD /api/v1/alive`` (polled every 2 ms on a new
  connection, the interpreter's own start included), the daemon's RSS then,
  the time of a first read (``GET`` of the newest record of an entry) and of
  a first query (``GET …/q`` over the newest hour of an entry, then its
  first ``GET …/batch?q=``).  Then ``--touch`` records (default 1,000) are
  written in batches into ``--touch-entries`` entries (default 10) so that
  the run touches blocks, and the daemon is stopped with SIGTERM;
- **kill -9**: the same launch and the same measurements, then the same
  writes, then ``SIGKILL``; the next launch (the next round's clean one is
  not clean then, so a round is: clean launch, SIGTERM; launch, SIGKILL;
  launch after the kill, measured as **after kill -9**, SIGTERM).

Prints one table (medians of the rounds) and exits 0, or 1 when a request
failed.  ``run.py`` runs the same rounds (``measure_round``, data written by
``generate_plan``) as its start-up cells.  The issue's targets: < 2 s after a clean stop, < 5 s after kill -9,
first read and first query within 50 ms, RSS after start < 150 MiB.
"""

import argparse
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import http.client
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from transfer import REPO_ROOT, free_port, proc_status  # noqa: E402

BUCKET = "bench"
BASE_TS = 1_700_000_000_000_000
HOUR = 3_600_000_000


def entry_name(i: int) -> str:
    return f"e{i:05d}"


# -- generation ----------------------------------------------------------------------


def _generate(args) -> str:
    """A worker: write ``plan`` (``[(entry, records)]``) into a data directory of its own."""
    directory, plan, size = args
    from twisted.internet.task import Clock

    from reduct_twisted.storage.engine import StorageEngine
    from reduct_twisted.storage.testing import write_record

    engine = StorageEngine(directory, Clock())
    engine.set_integrity("log")
    engine.open()
    engine.create_bucket(BUCKET, {})
    payload = os.urandom(size)
    # One record a second per entry, the newest in the last hour of the range.
    for name, records in plan:
        for k in range(records):
            write_record(engine, BUCKET, name, BASE_TS + k * 1_000_000, payload,
                         content_type="application/octet-stream", labels={"k": str(k & 7)})
    engine.close()
    return directory


def generate_plan(target: Path, plan, size: int, workers: int) -> None:
    """
    Write ``plan`` (``[(entry, records)]``, one record a second from
    ``BASE_TS`` on in each entry) into the data directory ``target``: the
    entries are shared out to ``workers`` processes, each with an engine
    and a data directory of its own, then moved under one bucket.
    """
    workers = max(1, min(workers, len(plan)))
    parts = [str(target.parent / f"{target.name}.part{w}") for w in range(workers)]
    jobs = [(parts[w], plan[w::workers], size) for w in range(workers)]
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_generate, jobs)
    # The first part becomes the data directory; the others give it their entries.
    os.rename(parts[0], target)
    for part in parts[1:]:
        for name in os.listdir(os.path.join(part, BUCKET)):
            source = os.path.join(part, BUCKET, name)
            if os.path.isdir(source):
                os.rename(source, target / BUCKET / name)
        shutil.rmtree(part)
    print(f"generated {sum(n for _, n in plan):,} records of {size} B in {len(plan):,} "
          f"entries in {time.monotonic() - started:.0f} s", flush=True)


def generate(target: Path, records: int, entries: int, size: int, workers: int) -> None:
    """``records`` records spread evenly over ``entries`` entries (``entry_name``)."""
    per_entry = records // entries
    generate_plan(target, [(entry_name(i), per_entry) for i in range(entries)], size, workers)


# -- the daemon ----------------------------------------------------------------------


def request(port: int, method: str, path: str, body: bytes = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def launch(work: Path, data: Path, port: int):
    """:return: ``(process, seconds to the first 200 from /alive)``."""
    twistd = Path(sys.executable).parent / "twistd"
    env = dict(os.environ, RS_SYNC="none")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    log = open(work / "twistd.log", "ab")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(twistd), "-n", "--pidfile=", "reduct", "--data-path", str(data),
         "--listen", f"tcp:{port}:interface=127.0.0.1"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"twistd exited with {proc.returncode}: see {work / 'twistd.log'}")
        try:
            if request(port, "HEAD", "/api/v1/alive")[0] == 200:
                return proc, time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > 600:
            proc.kill()
            raise SystemExit("no answer from /alive within 600 s")
        time.sleep(0.002)


def query_ms(port: int, entry: str, per_entry: int) -> float:
    """Time (ms) a query over the newest hour of ``entry`` and its first batch."""
    newest = BASE_TS + (per_entry - 1) * 1_000_000
    t = time.monotonic()
    status, _, body = request(port, "GET", f"/api/v1/b/{BUCKET}/{entry}/q?start={newest - HOUR + 1}"
                                           f"&stop={newest + 1}")
    if status != 200:
        raise RuntimeError(f"query answered {status}")
    query_id = int(body.split(b":")[1].strip(b" }\n"))
    status, headers, body = request(port, "GET", f"/api/v1/b/{BUCKET}/{entry}/batch?q={query_id}")
    elapsed = (time.monotonic() - t) * 1e3
    if status != 200 or not body:
        raise RuntimeError(f"first batch answered {status}")
    return elapsed


def first_requests(port: int, entry: str, per_entry: int) -> dict:
    """Time the first read and the first query of ``entry`` (ms); raise on a failure."""
    t = time.monotonic()
    status, _, body = request(port, "GET", f"/api/v1/b/{BUCKET}/{entry}")
    read_ms = (time.monotonic() - t) * 1e3
    if status != 200 or not body:
        raise RuntimeError(f"first read answered {status}")
    return {"read_ms": read_ms, "query_ms": query_ms(port, entry, per_entry)}


def touch(port: int, entries: int, count: int, size: int, round_no: int) -> None:
    """Write ``count`` records in batches of 100 over the first ``entries`` entries."""
    payload = os.urandom(size)
    per = max(1, count // entries)
    for i in range(entries):
        name = entry_name(i)
        base = BASE_TS + (10 ** 12) * (round_no * 2 + 1) + i  # far after the generated range
        for start in range(0, per, 100):
            n = min(100, per - start)
            headers = {f"x-reduct-time-{base + (start + k) * 10}": f"{size},application/octet-stream"
                       for k in range(n)}
            status, answer, _ = request(port, "POST", f"/api/v1/b/{BUCKET}/{name}/batch",
                                        payload * n, headers)
            if status != 200 or any(h.lower().startswith("x-reduct-error") for h in answer):
                raise RuntimeError(f"batch write answered {status} {answer}")


def stop(proc, how=signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, how)
        proc.wait(120)


def measure_round(work: Path, data: Path, entries: int, per_entry: int, touched: int,
                  touch_entries: int, size: int, r: int, log=None):
    """
    One round on the data directory ``data`` (entries ``entry_name(i)`` of
    ``per_entry`` records each): a launch after a clean stop, measured, the
    writes, SIGTERM; a launch, the writes, SIGKILL; a launch after the kill,
    measured, SIGTERM.  Every daemon is stopped (SIGKILL) also on a failure.

    :param log: a ``pid -> None`` told of every daemon started (or ``None``).
    :return: ``(clean, killed)``: each ``{"start_s", "rss_mib", "read_ms",
        "query_ms"}``.
    """
    touch_entries = min(touch_entries, entries)
    proc = None

    def start():
        nonlocal proc
        proc, seconds = launch(work, data, port)
        if log:
            log(proc.pid)
        return seconds

    try:
        port = free_port()
        seconds = start()
        clean = {"start_s": seconds, "rss_mib": proc_status(proc.pid)["VmRSS"] / 2 ** 20}
        clean.update(first_requests(port, entry_name(entries - 1), per_entry))
        touch(port, touch_entries, touched, size, 2 * r)
        stop(proc)
        start()
        touch(port, touch_entries, touched, size, 2 * r + 1)
        stop(proc, signal.SIGKILL)
        seconds = start()
        killed = {"start_s": seconds, "rss_mib": proc_status(proc.pid)["VmRSS"] / 2 ** 20}
        killed.update(first_requests(port, entry_name(0), per_entry))
        stop(proc)
        return clean, killed
    finally:
        if proc is not None and proc.poll() is None:
            stop(proc, signal.SIGKILL)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--entries", type=int, default=10)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--touch", type=int, default=1000)
    parser.add_argument("--touch-entries", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="keep the generated data directory here")
    parser.add_argument("--reuse", type=Path, help="start from a copy of a kept data directory")
    args = parser.parse_args(argv)
    per_entry = args.records // args.entries
    work = Path(tempfile.mkdtemp(prefix="reduct-bench-startup-", dir="/var/tmp"))
    data = work / "data"
    try:
        if args.reuse:
            subprocess.run(["cp", "-a", str(args.reuse), str(data)], check=True)
        else:
            generate(data, args.records, args.entries, args.size, args.workers)
            if args.keep:
                subprocess.run(["cp", "-a", str(data), str(args.keep)], check=True)
        rows = {"clean": [], "kill -9": []}
        for r in range(args.rounds):
            clean, killed = measure_round(work, data, args.entries, per_entry, args.touch,
                                          args.touch_entries, args.size, r)
            rows["clean"].append(clean)
            rows["kill -9"].append(killed)
            print(f"round {r + 1}: clean {clean} / kill -9 {killed}", flush=True)
        print(f"\n{args.records:,} records of {args.size} B, {args.entries:,} entries, "
              f"medians of {args.rounds} rounds\n")
        print("| after | to first /alive (s) | RSS then (MiB) | first read (ms) | first query (ms) |")
        print("|---|---|---|---|---|")
        for name, values in rows.items():
            med = {k: statistics.median(v[k] for v in values) for k in values[0]}
            print(f"| {name} | {med['start_s']:.2f} | {med['rss_mib']:.0f} | {med['read_ms']:.1f} "
                  f"| {med['query_ms']:.1f} |")
        return 0
    except (RuntimeError, OSError) as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
