#!/usr/bin/env python
"""
Two checkouts of the daemon against each other, in one run, on loopback.

    python benchmarks/compare.py --base DIR [--rounds 3] [--quick] [--out FILE]

For a change that must not slow anything down (a restructuring, say): the
daemon of ``DIR`` (``base``: another checkout, e.g. ``git worktree add
/tmp/base main``) and the daemon of this checkout (``head``) are started side
by side with ``RS_SYNC=none``, like ``run.py``'s daemon, each over a fresh
directory under /var/tmp.  Every cell of ``run.py``'s daemon matrix (single
records of 1 KiB to 1 MiB at 1 and 8 connections, written then read; batched
1 KiB written then read through a query; one 1 GiB record written and read
with curl) runs against both, back to back, the order alternating from round to round, and
the report gives per cell the median records/s and server CPU per record of
each and their ratio.  A cell of ``head`` more than 5 % slower than ``base``
(records/s) is marked.

Exits 0 when every cell ran without errors, 1 otherwise, 2 without the
prerequisites (aiohttp; ``pip install -e '.[bench]'``).
"""

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import batchgen  # noqa: E402
import loadgen  # noqa: E402
import matrix  # noqa: E402
from measure import background_pct  # noqa: E402
from transfer import curl, free_port, http, start_daemon, stop_daemon  # noqa: E402

SLOWER = 0.95


def start(name: str, root: Path, work: Path) -> dict:
    where = work / name
    where.mkdir()
    proc, base, _ = start_daemon(where, where / "data", free_port(), sync="none", root=root)
    code, body = http("POST", f"{base}/api/v1/b/{matrix.BUCKET}")
    if code != 200:
        raise RuntimeError(f"{name}: creating the bucket failed: HTTP {code} {body!r}")
    return dict(name=name, proc=proc, base=base, pid=proc.pid)


def single(daemon: dict, size: int, conc: int, rnd: int, bounds: dict, payload: bytes) -> list:
    entry = f"s{size}-c{conc}-r{rnd}"
    url = f"{daemon['base']}/api/v1/b/{matrix.BUCKET}/{entry}?ts={{ts}}"
    common = dict(payload=payload, concurrency=conc, base_ts=time.time_ns() // 1000,
                  max_s=bounds["max_s"], server_pids=[daemon["pid"]])
    os.sync()
    w = loadgen.run_cell("write", url, method="POST", count=bounds["counts"][size], **common)
    rows = [("write", size, conc, w)]
    if w["records"]:
        common.update(count=w["records"], min_s=bounds["min_read_s"])
        rows.append(("read", size, conc, loadgen.run_cell("read", url, method="GET", **common)))
    return rows


def batched(daemon: dict, rnd: int, bounds: dict, payload: bytes) -> list:
    entry = f"batch-r{rnd}"
    common = dict(payload=payload, base_ts=time.time_ns() // 1000, max_s=bounds["max_s"],
                  server_pids=[daemon["pid"]])
    os.sync()
    w = batchgen.write(daemon["base"], matrix.BUCKET, entry, count=bounds["batch_count"],
                       batch=matrix.OUR_BATCH, **common)
    rows = [("batch write", matrix.KiB, 1, w)]
    if w["records"]:
        common.update(count=w["records"], min_s=bounds["min_read_s"])
        rows.append(("batch read", matrix.KiB, 1,
                     batchgen.read(daemon["base"], matrix.BUCKET, entry, **common)))
    return rows


def big(daemon: dict, rnd: int, bounds: dict, source: Path) -> list:
    """The large record (1 GiB; 8 MiB with --quick) written then read with curl."""
    size, limit = bounds["big"], bounds["big_timeout"]
    url = f"{daemon['base']}/api/v1/b/{matrix.BUCKET}/big-r{rnd}?ts=1"
    rows = []
    os.sync()
    for op, args in (("big write", ["-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                                    "-T", str(source), "-X", "POST", url]),
                     ("big read", ["-o", "/dev/null", url])):
        code, seconds, up, down, _ = curl(args, limit)
        moved = up if op == "big write" else down
        ok = 200 <= code < 300 and moved == size
        rows.append((op, size, 1, dict(rec_per_s=round(1 / seconds, 3) if ok else 0,
                                       mb_per_s=round(size / seconds / 1e6, 1) if ok else 0,
                                       records=1 if ok else 0, errors=0 if ok else 1,
                                       elapsed_s=seconds)))
    return rows


def server_us(res: dict):
    """Server CPU per record in µs, or None."""
    pct, records, elapsed = res.get("server_cpu_pct"), res.get("records"), res.get("elapsed_s")
    if pct is None or not records or not elapsed:
        return None
    return pct / 100 * elapsed / records * 1e6


def quiet(bounds: dict) -> float:
    started = time.monotonic()
    busy = background_pct()
    while busy > bounds["quiet_pct"] and time.monotonic() - started < bounds["quiet_wait"]:
        time.sleep(1.0)
        busy = background_pct()
    return busy


def run(daemons: list, rounds: int, bounds: dict, log, source: Path) -> list:
    payload = {size: os.urandom(size) for size in matrix.SIZES}
    rows = []
    for rnd in range(1, rounds + 1):
        order = daemons if rnd % 2 else daemons[::-1]
        for size in matrix.SIZES:
            for conc in matrix.CONCS:
                quiet(bounds)
                for d in order:
                    for op, sz, c, res in single(d, size, conc, rnd, bounds, payload[size]):
                        rows.append(dict(target=d["name"], op=op, size=sz, conc=c, round=rnd,
                                         **res))
                        log(f"r{rnd} {d['name']:5} {op:11} {sz:>8} c{c} "
                            f"{res['rec_per_s']:>10} rec/s  errors {res['errors']}")
        quiet(bounds)
        for d in order:
            for op, sz, c, res in batched(d, rnd, bounds, payload[matrix.KiB]):
                rows.append(dict(target=d["name"], op=op, size=sz, conc=c, round=rnd, **res))
                log(f"r{rnd} {d['name']:5} {op:11} {sz:>8} c{c} "
                    f"{res['rec_per_s']:>10} rec/s  errors {res['errors']}")
        for d in order:
            for op, sz, c, res in big(d, rnd, bounds, source):
                rows.append(dict(target=d["name"], op=op, size=sz, conc=c, round=rnd, **res))
                log(f"r{rnd} {d['name']:5} {op:11} {sz:>8} {res['mb_per_s']:>8} MB/s  "
                    f"errors {res['errors']}")
    return rows


def report(rows: list, meta: dict) -> str:
    cells = {}
    for row in rows:
        cells.setdefault((row["op"], row["size"], row["conc"]), {}).setdefault(
            row["target"], []).append(row)
    out = [f"# reduct-twisted: head against base — {meta['date']}", "",
           f"base: `{meta['base']}` ({meta['base_commit']}); head: `{meta['head']}` "
           f"({meta['head_commit']}); {meta['rounds']} interleaved rounds, medians; "
           f"RS_SYNC=none; {meta['seconds']:.0f} s.", "",
           "| cell | c | base rec/s (MB/s: big) | head rec/s (MB/s: big) | head/base | "
           "base µs CPU/rec | head µs CPU/rec |", "|---|---|---|---|---|---|---|"]
    for (op, size, conc), by in cells.items():
        def med(target, key):
            values = [v for r in by.get(target, []) if (v := key(r)) is not None]
            return statistics.median(values) if values else None

        # The large record: MB/s (one record a cell); the others: records/s.
        key = "mb_per_s" if op.startswith("big") else "rec_per_s"
        b, h = med("base", lambda r: r[key]), med("head", lambda r: r[key])
        bc, hc = med("base", server_us), med("head", server_us)
        ratio = h / b if b and h else None
        mark = " **slower**" if ratio is not None and ratio < SLOWER else ""
        label = (f"{op} {size // 1024} KiB" if size < matrix.MiB
                 else f"{op} {size // matrix.MiB} MiB")
        out.append(f"| {label} | {conc} | {b or 0:,.0f} | {h or 0:,.0f} | "
                   f"{ratio or 0:.2f}×{mark} | {bc or 0:.0f} | {hc or 0:.0f} |")
    errors = sum(r.get("errors") or 0 for r in rows)
    out += ["", f"errors: {errors}"]
    return "\n".join(out) + "\n"


def commit_of(root: Path) -> str:
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return out.stdout.strip() or "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke test")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        print("aiohttp is missing: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    bounds = matrix.QUICK if args.quick else matrix.FULL
    head_root = HERE.parent
    work = Path(tempfile.mkdtemp(prefix="reduct-bench-compare-", dir="/var/tmp"))
    daemons = []
    t0 = time.monotonic()
    try:
        source = work / "big.bin"
        with open(source, "wb") as f:
            block = os.urandom(matrix.MiB)
            for _ in range(bounds["big"] // matrix.MiB):
                f.write(block)
        daemons = [start("base", args.base.resolve(), work), start("head", head_root, work)]
        rows = run(daemons, args.rounds, bounds,
                   log=lambda line: print(line, file=sys.stderr, flush=True), source=source)
    finally:
        for d in daemons:
            stop_daemon(d["proc"])
        shutil.rmtree(work, ignore_errors=True)
    meta = dict(date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), base=str(args.base),
                head=str(head_root), base_commit=commit_of(args.base),
                head_commit=commit_of(head_root), rounds=args.rounds,
                seconds=time.monotonic() - t0)
    text = report(rows, meta)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 1 if any(r.get("errors") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
