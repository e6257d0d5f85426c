"""
What the sync policy costs: 1 KiB (or any size) single-record writes to two
daemons of this working tree, one with ``RS_SYNC=always`` (the default: answered
after a group-commit fsync) and one with ``RS_SYNC=none`` (answered from the
page cache), measured alternately, three rounds each, with the load generator
of ``run.py``.

    python benchmarks/sync_policy.py [--size 1024] [--connections 8]

Prints records/s, median latency and errors per round for each policy.
"""

import argparse
import tempfile
import urllib.request
from pathlib import Path

import loadgen
from transfer import free_port, start_daemon, stop_daemon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="reduct-sync-"))
    daemons = {}
    try:
        for policy in ("always", "none"):
            work = root / policy
            work.mkdir()
            proc, base, _ = start_daemon(work, work / "data", free_port(), sync=policy)
            daemons[policy] = (proc, base)
            request = urllib.request.Request(f"{base}/api/v1/b/bench", method="POST")
            urllib.request.urlopen(request).read()
        ts, payload = 1, b"x" * args.size
        for rnd in range(args.rounds):
            for policy, (proc, base) in daemons.items():
                out = loadgen.run_cell(
                    "write", f"{base}/api/v1/b/bench/e{rnd}?ts={{ts}}", method="POST",
                    payload=payload, count=3000, concurrency=args.connections, base_ts=ts,
                    max_s=3.0, server_pids=[proc.pid],
                )
                ts += 10_000
                print(f"round {rnd + 1} sync={policy:6} {out['rec_per_s']:>8,.0f} rec/s  "
                      f"p50 {out['lat_p50_ms']} ms  errors {out['errors']}", flush=True)
    finally:
        for proc, _ in daemons.values():
            stop_daemon(proc)


if __name__ == "__main__":
    main()
