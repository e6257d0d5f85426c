#!/usr/bin/env python
"""
The cost of the ``$system`` events (spec 1.20 §8; issue #15 item 3): the
matrix's single 1 KiB write and read cells (1 and 8 connections) and its
batch cells (v1 batch and I/O API, 1 KiB records) against two daemons of
this checkout in the same run, one with ``RS_SYSTEM_EVENTS_ENABLED=true``
(every request audited: authentication is off, so each call is the
``AUTHENTICATION-DISABLED`` token's), one with ``false``.  Each cell runs
against both daemons back to back, in an order that alternates from cell
to cell and round to round, so the two see the same machine.

    python benchmarks/events.py [--rounds 9] [--control] [--quick] [--out FILE]

Both daemons run at once, each on its own port and data directory under
/var/tmp, with ``RS_SYNC=none`` like the matrix.  The
report is the median of the rounds per cell and the ratio on/off of the
records per second (1.00 = no cost; the issue's bound is 0.95); it is
printed and written to ``--out``.  With ``--control`` a third daemon, events
off as well, runs every cell too: its ratio to the first "off" daemon is the
noise floor of the machine (on a small shared box it is several per cent).  Both daemons are stopped by PID, also
on an error.  Exits 0, or 1 when a cell had errors.
"""

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import batchgen  # noqa: E402
import loadgen  # noqa: E402
from transfer import free_port, http, start_daemon, stop_daemon  # noqa: E402

KiB = 1 << 10
BUCKET = "bench"
ON, OFF, CONTROL = "events on", "events off", "control"
FULL = dict(count=4000, batch_count=4000, max_s=2.0, min_read_s=0.5)
QUICK = dict(count=200, batch_count=400, max_s=0.25, min_read_s=0.0)


def start(work: Path, enabled: bool, name: str):
    d = work / name
    d.mkdir()
    proc, base, _ = start_daemon(d, d / "data", free_port(), sync="none",
                                 extra_env={"RS_SYSTEM_EVENTS_ENABLED": str(enabled).lower()})
    print(f"started {name} pid {proc.pid}", file=sys.stderr, flush=True)
    code, body = http("POST", f"{base}/api/v1/b/{BUCKET}")
    if code != 200:
        stop_daemon(proc)
        raise RuntimeError(f"creating bucket failed: HTTP {code} {body!r}")
    return proc, base


def single(conc: int):
    """The single-record cell with ``conc`` connections: write, then read what it wrote."""

    def cell(base: str, pid: int, rnd: int, b: dict, payload: bytes) -> list:
        url = f"{base}/api/v1/b/{BUCKET}/s1k-c{conc}-r{rnd}?ts={{ts}}"
        common = dict(payload=payload, concurrency=conc, base_ts=time.time_ns() // 1000,
                      max_s=b["max_s"], server_pids=[pid])
        w = loadgen.run_cell("write", url, method="POST", count=b["count"], **common)
        common.update(count=w["records"], min_s=b["min_read_s"])
        return [("write", conc, w),
                ("read", conc, loadgen.run_cell("read", url, method="GET", **common))]

    return cell


def batch(base: str, pid: int, rnd: int, b: dict, payload: bytes) -> list:
    """The v1 batch cells: POST …/batch of 80 records, then the query read."""
    common = dict(payload=payload, base_ts=time.time_ns() // 1000, max_s=b["max_s"],
                  server_pids=[pid])
    w = batchgen.write(base, BUCKET, f"batch-r{rnd}", count=b["batch_count"], batch=80,
                       **common)
    common.update(count=w["records"], min_s=b["min_read_s"])
    return [("batch write", 1, w),
            ("batch read", 1, batchgen.read(base, BUCKET, f"batch-r{rnd}", **common))]


def io_batch(base: str, pid: int, rnd: int, b: dict, payload: bytes) -> list:
    """The I/O API batch cells: 4 entries, 80 records a POST, then the multi-entry read."""
    common = dict(payload=payload, base_ts=time.time_ns() // 1000, max_s=b["max_s"],
                  server_pids=[pid], entries=4)
    w = batchgen.write_v2(base, BUCKET, f"io-r{rnd}", count=b["batch_count"], batch=80, **common)
    common.update(count=w["records"], min_s=b["min_read_s"], run=w["run"])
    return [("io write", 1, w),
            ("io read", 1, batchgen.read_v2(base, BUCKET, f"io-r{rnd}", **common))]


#: Each cell runs against both daemons back to back (the order alternates).
CELLS = (single(1), single(8), batch, io_batch)


def render(rows: list, meta: dict) -> str:
    keys = []
    for row in rows:
        if (row["op"], row["conc"]) not in keys:
            keys.append((row["op"], row["conc"]))
    med = {}
    control = any(r["target"] == CONTROL for r in rows)
    for target in (ON, OFF, CONTROL):
        for op, conc in keys:
            rates = [r["rec_per_s"] for r in rows
                     if (r["target"], r["op"], r["conc"]) == (target, op, conc)]
            med[target, op, conc] = statistics.median(rates) if rates else 0
    lines = [
        "# $system events: cost on the request path",
        "",
        f"{meta['date']}; `{meta['command']}`; {meta['rounds']} rounds, medians.",
        "",
        "| cell (1 KiB records) | conns | events off rec/s | events on rec/s | on/off |"
        + (" control (off) rec/s | control/off |" if control else ""),
        "|---|---|---|---|---|" + ("---|---|" if control else ""),
    ]
    worst = None
    for op, conc in keys:
        off, on = med[OFF, op, conc], med[ON, op, conc]
        ratio = on / off if off else float("nan")
        worst = ratio if worst is None else min(worst, ratio)
        line = f"| {op} | {conc} | {off:,.0f} | {on:,.0f} | {ratio:.3f} |"
        if control:
            other = med[CONTROL, op, conc]
            line += f" {other:,.0f} | {other / off if off else float('nan'):.3f} |"
        lines.append(line)
    lines += ["", f"Lowest ratio: {worst:.3f} (bound: 0.95).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 9, quick 1)")
    parser.add_argument("--quick", action="store_true", help="smoke test; numbers mean nothing")
    parser.add_argument("--control", action="store_true",
                        help="a third daemon, events off too: its ratio to the first shows the "
                        "noise of the machine (an A/A comparison)")
    parser.add_argument("--out", type=Path, default=None, help="markdown report")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 9)
    bounds = QUICK if args.quick else FULL
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"events-{stamp}{'-quick' if args.quick else ''}.md"
    payload = os.urandom(KiB)
    work = Path(tempfile.mkdtemp(prefix="reduct-bench-events-", dir="/var/tmp"))
    daemons, rows = {}, []
    try:
        daemons[ON] = start(work, True, "on")
        daemons[OFF] = start(work, False, "off")
        if args.control:
            daemons[CONTROL] = start(work, False, "control")
        for rnd in range(1, rounds + 1):
            for number, cell in enumerate(CELLS):
                turn = (rnd + number) % len(daemons)
                for target in (list(daemons)[turn:] + list(daemons)[:turn]):
                    proc, base = daemons[target]
                    for op, conc, res in cell(base, proc.pid, rnd, bounds, payload):
                        rows.append(dict(target=target, op=op, conc=conc, round=rnd, **res))
                        print(f"r{rnd} {target:10} {op:11} c{conc} {res['rec_per_s']:>10} rec/s"
                              + (f"  ERRORS {res['errors']}" if res.get("errors") else ""),
                              file=sys.stderr, flush=True)
    finally:
        for proc, _ in daemons.values():
            stop_daemon(proc)
        shutil.rmtree(work, ignore_errors=True)
    meta = dict(date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                command=" ".join(["python benchmarks/events.py", *(argv or sys.argv[1:])]),
                rounds=rounds)
    text = render(rows, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"report: {out}", file=sys.stderr)
    return 1 if any(r.get("errors") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
