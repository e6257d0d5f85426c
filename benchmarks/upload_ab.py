#!/usr/bin/env python
"""
Large uploads, A/B: daemons of given checkouts and settings side by side.

    python benchmarks/upload_ab.py [--rounds 4] [--size-mib 1024] [--keep-records]
                                   NAME=DIR[:RS_VAR=VALUE…] NAME=DIR[:…] …

Each ``NAME=DIR`` starts the daemon of checkout ``DIR`` (``.`` for this one;
another is made with ``git worktree add /tmp/base REV``) with ``RS_SYNC=none``
and the ``RS_*`` settings after it (``off=.:RS_INTEGRITY=off``), each over a
fresh directory under /var/tmp.  Every round uploads one record of
``--size-mib`` MiB with curl (``Content-Length``, no ``Expect``) to each
daemon in turn, the order reversed every other round, and removes the entry
after it (unless ``--keep-records``): the next upload then writes into pages
the kernel just freed.  On a VM whose freed memory goes back to the host
(virtio-balloon free page reporting), keeping every upload would make each
one fault in fresh pages, and the rounds would measure the host more than
the daemon.

Per round and daemon it prints the MB/s (10^6 bytes over curl's
``time_total``), the CPU seconds of the daemon and its children (the leaf
worker) and of curl; then the medians, and one JSON line of all of it.
Exits 0 when every upload (and removal) was answered 200, 1 otherwise.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import tree_cpu_s  # noqa: E402
from transfer import curl, free_port, http, start_daemon, stop_daemon  # noqa: E402

MIB = 1 << 20


def parse_spec(spec: str) -> tuple:
    """``NAME=DIR[:RS_VAR=VALUE…]`` -> ``(name, Path(DIR), {RS_VAR: VALUE})``."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR[:RS_VAR=VALUE...], got {spec!r}")
    tree, *settings = rest.split(":")
    env = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.startswith("RS_"):
            raise argparse.ArgumentTypeError(f"expected RS_VAR=VALUE, got {setting!r}")
        env[key] = value
    return name, Path(tree).resolve(), env


def start_one(started: dict, work: Path, name: str, tree: Path, env: dict, bucket: str) -> str:
    """
    Start daemon ``name`` of checkout ``tree`` (``RS_SYNC=none`` and ``env``)
    over ``work/name``, into ``started`` (name -> ``(proc, base)``), with
    bucket ``bucket`` made.  :return: its base URL.
    """
    where = work / name
    where.mkdir()
    proc, base, _ = start_daemon(where, where / "data", free_port(), sync="none",
                                 root=tree, extra_env=env)
    started[name] = (proc, base)
    http("POST", f"{base}/api/v1/b/{bucket}")
    return base


def stop_all(started: dict, work: Path) -> None:
    """Stop the daemons of ``started`` (name -> ``(proc, base)``) and remove ``work``."""
    for proc, _ in started.values():
        stop_daemon(proc)
    shutil.rmtree(work, ignore_errors=True)


def medians_of(rows: list, names, keys) -> dict:
    """name -> the median of each of ``keys`` over that daemon's ``rows`` (``row["daemon"]``)."""
    medians = {}
    for name in names:
        mine = [row for row in rows if row["daemon"] == name]
        if mine:
            medians[name] = {key: round(statistics.median(row[key] for row in mine), 3)
                             for key in keys}
    return medians


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("daemons", nargs="+", type=parse_spec, metavar="NAME=DIR[:RS_VAR=VALUE]")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--keep-records", action="store_true")
    args = parser.parse_args(argv)
    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="upload-ab-", dir="/var/tmp"))
    started, rows, failed = {}, [], 0
    try:
        source = work / "body.bin"
        block = os.urandom(MIB)
        with open(source, "wb") as f:
            for _ in range(args.size_mib):
                f.write(block)
        for name, tree, env in args.daemons:
            start_one(started, work, name, tree, env, "ab")
        names = list(started)
        for rnd in range(args.rounds):
            for name in (names if rnd % 2 == 0 else names[::-1]):
                proc, base = started[name]
                url = f"{base}/api/v1/b/ab/up-{rnd}"
                os.sync()
                daemon0, curl0 = tree_cpu_s([proc.pid])[0], child_cpu()
                code, seconds, sent, _, _ = curl(
                    ["-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                     "-T", str(source), "-X", "POST", f"{url}?ts=1"], 600)
                daemon_cpu, curl_cpu = tree_cpu_s([proc.pid])[0] - daemon0, child_cpu() - curl0
                removed = None if args.keep_records else http("DELETE", url, timeout=60)[0]
                failed += code != 200 or sent != size or removed not in (None, 200)
                row = dict(round=rnd, daemon=name, code=code, removed=removed,
                           mb_per_s=round(size / seconds / 1e6, 1),
                           daemon_cpu_s=round(daemon_cpu, 3), curl_cpu_s=round(curl_cpu, 3))
                rows.append(row)
                print(f"r{rnd} {name:12} HTTP {code} {row['mb_per_s']:>8} MB/s  daemon CPU "
                      f"{daemon_cpu:.2f} s  curl CPU {curl_cpu:.2f} s", flush=True)
    finally:
        stop_all(started, work)
    medians = medians_of(rows, started, ("mb_per_s", "daemon_cpu_s"))
    for name, median in medians.items():
        print(f"{name:12} median {median['mb_per_s']} MB/s, daemon CPU "
              f"{median['daemon_cpu_s']} s")
    print(json.dumps(dict(size=size, rounds=rows, medians=medians)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
