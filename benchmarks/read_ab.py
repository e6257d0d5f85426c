#!/usr/bin/env python
"""
Batched reads, A/B: daemons of given checkouts and settings side by side.

    python benchmarks/read_ab.py [--rounds 6] [--records 100000] [--api v1|io]
                                 [--min-s 3] NAME=DIR[:RS_VAR=VALUE…] NAME=DIR[:…] …

Each ``NAME=DIR`` starts the daemon of checkout ``DIR`` (``.`` for this one;
another is made with ``git worktree add /tmp/base REV``) with ``RS_SYNC=none``
and the ``RS_*`` settings after it, each over a fresh directory under
/var/tmp, and writes ``--records`` records of 1 KiB into it once, in batches
of 80: for ``--api v1`` into one entry (``POST …/batch``), for ``io`` over
four entries in runs of 20, interleaved in time (``POST /io/…/write``), as
``run.py``'s batched cells do.  Every round then reads them all back, again
and again for at least ``--min-s`` seconds, from each daemon in turn, the
order reversed every other round: one query and its batches (``GET
…/batch?q=``, or ``GET /io/…/read``), every record's header and bytes
checked (``batchgen.read`` / ``read_v2``).

Per round and daemon it prints the records/s, the CPU of the daemon and its
children per record and the median latency of a batch; then the medians,
and one JSON line of all of it.  Exits 0 when every read was whole and
right, 1 otherwise.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import batchgen  # noqa: E402
from upload_ab import medians_of, parse_spec, start_one, stop_all  # noqa: E402

BUCKET, ENTRY, RUN, BATCH = "ab", "e", 20, 80


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("daemons", nargs="+", type=parse_spec, metavar="NAME=DIR[:RS_VAR=VALUE]")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--api", choices=("v1", "io"), default="io")
    parser.add_argument("--min-s", type=float, default=3.0)
    args = parser.parse_args(argv)
    payload = os.urandom(1024)
    base_ts = time.time_ns() // 1000
    work = Path(tempfile.mkdtemp(prefix="read-ab-", dir="/var/tmp"))
    started, rows, failed = {}, [], 0
    common = dict(payload=payload, count=args.records, base_ts=base_ts)
    try:
        for name, tree, env in args.daemons:
            base = start_one(started, work, name, tree, env, BUCKET)
            if args.api == "io":
                written = batchgen.write_v2(base, BUCKET, ENTRY, batch=BATCH, max_s=600,
                                            entries=4, **common)
            else:
                written = batchgen.write(base, BUCKET, ENTRY, batch=BATCH, max_s=600, **common)
            if written["errors"] or written["records"] != args.records:
                print(f"{name}: writing failed: {written['first_error']}", file=sys.stderr)
                return 1
        names = list(started)
        for rnd in range(args.rounds):
            for name in (names if rnd % 2 == 0 else names[::-1]):
                proc, base = started[name]
                reads = dict(max_s=600, min_s=args.min_s, server_pids=[proc.pid], **common)
                if args.api == "io":
                    got = batchgen.read_v2(base, BUCKET, ENTRY, entries=4, run=RUN, **reads)
                else:
                    got = batchgen.read(base, BUCKET, ENTRY, **reads)
                failed += bool(got["errors"]) or not got["records"]
                row = dict(round=rnd, daemon=name, records=got["records"],
                           errors=got["errors"], first_error=got["first_error"],
                           rec_per_s=got["rec_per_s"], lat_p50_ms=got["lat_p50_ms"],
                           us_per_record=round(got["server_cpu_s"] / max(got["records"], 1)
                                               * 1e6, 2))
                rows.append(row)
                print(f"r{rnd} {name:12} {row['rec_per_s']:>10,.0f} records/s  "
                      f"{row['us_per_record']:>5} µs CPU/record  p50 {row['lat_p50_ms']} ms  "
                      f"errors {row['errors']}", flush=True)
    finally:
        stop_all(started, work)
    medians = medians_of(rows, started, ("rec_per_s", "us_per_record"))
    for name, median in medians.items():
        print(f"{name:12} median {median['rec_per_s']:,.0f} records/s, "
              f"{median['us_per_record']} µs CPU/record")
    print(json.dumps(dict(api=args.api, records=args.records, rounds=rows, medians=medians)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
