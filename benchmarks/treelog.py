"""
The integrity tree log's own speed (issue #16, ``storage/disk/treelog.py``):
appends of the leaves of 1 KiB records, in batches of 80 (as a v1 batch
write commits them) and one at a time, and proof times at n = 1e3 vs 1e6.
No daemon, no fsync (the group commit's fsync is the daemon's, measured by
``run.py``): this is the CPU and write() cost the log adds per record.

    python benchmarks/treelog.py [--leaves 1000000] [--dir /var/tmp]
"""

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reduct_twisted.integrity.merkle import leaf_bytes  # noqa: E402
from reduct_twisted.storage.disk.treelog import TreeLog  # noqa: E402


def record_leaves(first: int, count: int) -> list:
    """The leaves of ``count`` 1 KiB records numbered from ``first``."""
    digest = hashlib.sha256(b"x" * 1024).digest()
    return [leaf_bytes(n, 1_700_000_000_000_000 + n, 1024, "application/octet-stream",
                       {"camera": "front", "seq": str(n)}, digest) for n in range(first, first + count)]


def timed_appends(directory: str, leaves: list, batch: int) -> float:
    """Seconds to append ``leaves`` ``batch`` at a time to a new log."""
    log = TreeLog.open(directory, merkle=True)
    start = time.perf_counter()
    for i in range(0, len(leaves), batch):
        log.append(leaves[i:i + batch])
    elapsed = time.perf_counter() - start
    log.close()
    return elapsed


def proof_times(log: TreeLog, n: int, rounds: int = 2000) -> tuple:
    """Mean µs of an inclusion proof and of a consistency proof in the tree of ``n`` leaves."""
    rng = random.Random(n)
    indices = [rng.randrange(1, n + 1) for _ in range(rounds)]
    start = time.perf_counter()
    for i in indices:
        log.inclusion(i, n)
    inclusion = (time.perf_counter() - start) / rounds * 1e6
    start = time.perf_counter()
    for i in indices:
        log.consistency(i, n)
    consistency = (time.perf_counter() - start) / rounds * 1e6
    start = time.perf_counter()
    for i in indices:
        log.root(i)
    root = (time.perf_counter() - start) / rounds * 1e6
    return inclusion, consistency, root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/var/tmp")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="reduct-bench-treelog-", dir=args.dir)
    try:
        count = 200_000
        start = time.perf_counter()
        leaves = record_leaves(1, count)
        making = (time.perf_counter() - start) / count * 1e6
        print(f"leaf of a 1 KiB record: {len(leaves[0])} bytes; leaf_bytes() {making:.2f} µs/leaf")
        for batch in (80, 1):
            n = count if batch > 1 else count // 4
            elapsed = timed_appends(os.path.join(work, f"append-{batch}"), leaves[:n], batch)
            print(f"append, batches of {batch:>2}: {n / elapsed:>10,.0f} leaves/s  "
                  f"{elapsed / n * 1e6:6.2f} µs/leaf")
        big = os.path.join(work, "big")
        log = TreeLog.open(big, merkle=True)
        start = time.perf_counter()
        step = 100_000
        while log.size < args.leaves:
            chunk = record_leaves(log.size + 1, min(step, args.leaves - log.size))
            for i in range(0, len(chunk), 80):
                log.append(chunk[i:i + 80])
        print(f"built {log.size:,} leaves in {time.perf_counter() - start:.1f} s "
              f"({sum(os.path.getsize(os.path.join(big, f)) for f in os.listdir(big)) / 2**20:.0f} MiB)")
        print(f"{'n':>10}  {'inclusion µs':>12}  {'consistency µs':>14}  {'root(m) µs':>10}  path length")
        for n in (1_000, args.leaves):
            inclusion, consistency, root = proof_times(log, n)
            print(f"{n:>10,}  {inclusion:>12.1f}  {consistency:>14.1f}  {root:>10.1f}  "
                  f"{len(log.inclusion(n // 2, n))}")
        log.close()
        start = time.perf_counter()
        TreeLog.open(big, merkle=True).close()
        print(f"reopen (recovery check) of {args.leaves:,} leaves: {(time.perf_counter() - start) * 1e3:.2f} ms")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
