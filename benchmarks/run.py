#!/usr/bin/env python
"""
The daemon against its peers, in one run, on loopback.

    python benchmarks/run.py [--quick] [--rounds 3] [--out FILE] [--keep]

Starts, each by itself on 127.0.0.1 and over a fresh directory under
/var/tmp: the daemon of this checkout (twistd next to ``sys.executable``),
the same daemon with the ``$system`` events off and with ``integrity=off``,
another for issue #17's memory and scale cells (``cells17.CELLS17``),
nginx WebDAV, a fresh PostgreSQL 15 cluster and the in-memory Twisted server
(``mock_server.py``); runs the matrix (``matrix.py``); stops every one of
them by PID (also on Ctrl-C, SIGTERM or an error); removes the directory;
prints the markdown report (``report.py``) and writes it to ``--out``, with
the raw rounds as JSON beside it (``--json``).

``--quick`` is a smoke test of every code path (every peer, every kind of
cell, the report) in a few seconds: one round, tiny counts, an 8 MiB
"large" record.  Its numbers mean nothing.

``--only GROUPS`` runs some cell groups only (``single``, ``batch``,
``big``, ``memory``, ``startup``, ``scale``; see ``matrix.GROUPS``) and
starts only the peers they need.  ``--startup N``, ``--scale N`` and
``--rss-records N`` size issue #17's start-up, scale and memory cells
(``cells17.py``); ``--datasets DIR`` keeps their generated data sets for
the next run.

Exits 0 when every cell ran without an error, 1 when some cell had errors
(the report says which), 2 when a prerequisite is missing, 130 when
interrupted.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import matrix  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
from measure import alive  # noqa: E402

#: (target, starter), in the order they start.
STARTERS = ((matrix.OURS, peers.start_daemon_peer),
            (matrix.cells17.CELLS17,
             lambda root: peers.start_daemon_peer(root, matrix.cells17.CELLS17)),
            *((v.name, peers.variant_starter(v)) for v in matrix.VARIANTS),
            (matrix.NGINX, peers.start_nginx), (matrix.PG, peers.start_postgres),
            (matrix.MOCK, peers.start_mock))


def _first_line(argv) -> str:
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        return out.stdout.decode(errors="replace").strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        ram = int(f.readline().split()[1]) / (1 << 20)
    distro = "?"
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            distro = dict(line.rstrip().split("=", 1) for line in f if "=" in line)
            distro = distro.get("PRETTY_NAME", "?").strip('"')
    return (f"{model}, {os.cpu_count()} CPUs, {ram:.0f} GiB RAM, Linux {platform.release()}, "
            f"{distro}")


def versions() -> dict:
    import aiohttp
    import psycopg
    import twisted

    return {
        "python": platform.python_version(), "twisted": twisted.__version__,
        "aiohttp": aiohttp.__version__, "psycopg": psycopg.__version__,
        "load generator loop": matrix.loadgen.LOOP,
        "nginx": _first_line([peers.NGINX, "-v"]),
        "postgres": _first_line([str(peers.PG_BIN / "postgres"), "--version"]),
        "curl": _first_line(["curl", "--version"]),
    }


def commit() -> str:
    head = _first_line(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain",
                            "--untracked-files=no"], stdout=subprocess.PIPE).stdout.strip()
    return f"{head} (with uncommitted changes)" if dirty else head


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: a few seconds, numbers mean nothing")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown report (default benchmarks/results/run-<time>.md)")
    parser.add_argument("--json", type=Path, default=None,
                        help="raw results (default: --out with .json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--only", default=",".join(matrix.GROUPS),
                        help="comma-separated cell groups to run, of: "
                             + ", ".join(matrix.GROUPS) + " (default: all)")
    parser.add_argument("--startup", type=int, default=None, metavar="N",
                        help="records of the start-up data sets (default 1,000,000; "
                             "issue #17's target is for 10,000,000)")
    parser.add_argument("--scale", type=int, default=None, metavar="N",
                        help="records of the large entry of the scale query (default "
                             "1,000,000; the target is for 10,000,000)")
    parser.add_argument("--rss-records", type=int, default=None, metavar="N",
                        help="records of the batched read whose RSS is measured "
                             "(default 1,000,000)")
    parser.add_argument("--datasets", type=Path, default=None, metavar="DIR",
                        help="keep the generated start-up and scale data sets in DIR and "
                             "reuse them from there in later runs")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.rounds < 1 or args.rounds > 9:
        parser.error("--rounds takes 1 to 9")
    args.only = tuple(g.strip() for g in args.only.split(",") if g.strip())
    unknown = [g for g in args.only if g not in matrix.GROUPS]
    if unknown or not args.only:
        parser.error(f"--only takes groups of {', '.join(matrix.GROUPS)}; not {unknown}")
    for name in ("startup", "scale", "rss_records"):
        if getattr(args, name) is not None and getattr(args, name) < 100:
            parser.error(f"--{name.replace('_', '-')} takes at least 100")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out = args.out or HERE / "results" / f"run-{stamp}{'-quick' if args.quick else ''}.md"
    args.json = args.json or args.out.with_suffix(".json")
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    missing = peers.missing_prerequisites()
    if missing:
        print("benchmark prerequisites missing:\n  - " + "\n  - ".join(missing)
              + f"\ninstall them with:\n    {peers.INSTALL}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    bounds = dict(matrix.QUICK if args.quick else matrix.FULL)
    for name, key in (("startup", "startup_records"), ("scale", "scale_records"),
                      ("rss_records", "rss_records")):
        if getattr(args, name) is not None:
            bounds[key] = getattr(args, name)
    needed = matrix.needed_peers(args.only)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="reduct-bench-run-", dir="/var/tmp"))
    started, bench, failure = {}, None, None
    try:
        for name, start in STARTERS:
            if name in needed:
                peer = start(work)
                started[peer.name] = peer
        bench = matrix.Matrix(started, work, bounds,
                              log=lambda line: print(line, file=sys.stderr, flush=True),
                              groups=args.only, datasets=args.datasets)
        bench.prepare()
        bench.run(args.rounds)
    except KeyboardInterrupt:
        failure = "interrupted"
    except Exception as err:  # noqa: BLE001 - reported after everything is stopped
        failure = f"{type(err).__name__}: {err}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for peer in reversed(list(started.values())):
            try:
                peer.stop()
                print(f"stopped {peer.name} pids {peer.pids}", file=sys.stderr)
            except Exception as err:  # noqa: BLE001 - stop the others all the same
                print(f"stopping {peer.name} failed: {err}", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    leftover = [pid for peer in started.values() for pid in peer.pids if alive(pid)]
    leftover += bench.cells17.pids_alive() if bench else []
    if leftover:
        print(f"processes still alive after stopping: {leftover}", file=sys.stderr)
    if failure:
        print(f"benchmark aborted ({failure}); no report", file=sys.stderr)
        return 130 if failure == "interrupted" else 1

    meta = dict(date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                command=" ".join(["python benchmarks/run.py", *(argv or sys.argv[1:])]),
                machine=machine(), commit=commit(), versions=versions(), rounds=args.rounds,
                quick=args.quick, bounds=bounds, wall_s=time.monotonic() - t0,
                work_dir=str(work) if args.keep else None, groups=list(args.only))
    text = report.render(bench.rows, bench.memory, bench.background, bench.waited, meta,
                         bench.extra)
    text += "\nVersions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    raw = dict(meta, rows=bench.rows, memory=bench.memory, background_pct=bench.background,
               extra=bench.extra, leftover_pids=leftover,
               pids={**{name: peer.pids for name, peer in started.items()},
                     **bench.cells17.launched}, report=str(args.out))
    args.json.write_text(json.dumps(raw, indent=1, default=str))
    print(text)
    print(f"report: {args.out}\nraw results: {args.json}", file=sys.stderr)
    errors = sum(1 for row in bench.rows + bench.extra if row["errors"])
    return 1 if errors or leftover else 0


if __name__ == "__main__":
    sys.exit(main())
