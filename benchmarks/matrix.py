"""
The measurement matrix: which cells run, in which order, with which bounds.

Rounds are interleaved (round 1 of every cell, then round 2, ...), and in
each round the targets of one (size, connections) pair run back to back, in
an order that rotates from round to round, so compared cells run close in
time.  A read always reads what the write of the same cell just wrote.

Per round:

- single records, sizes 1 KiB .. 1 MiB, 1 and 8 connections: write, then
  read, against the daemon, the in-memory Twisted server and nginx WebDAV
  (``loadgen``) and PostgreSQL (INSERT / SELECT, ``pgblob``);
- batched 1 KiB over 1 connection: the daemon's batch API (``batchgen``:
  POST …/batch of 80 records, then a query read with GET …/batch, up to 85
  records a response) and PostgreSQL (binary COPY of 100 rows a
  transaction, then a time-range SELECT fetching 100 rows at a time), the
  same record count for both; and the same through the I/O API
  (``batchgen.write_v2``/``read_v2``: POST /io/…/write of 80 records over 4
  entries taking turns in runs of 20, then a multi-entry query read with
  GET /io/…/read), daemon only;
- one large record (1 GiB; small in quick mode) written and read with curl,
  against the daemon and nginx, with the daemon's RSS sampled throughout;
- the cost of the ``$system`` events (issue #15): the 1 KiB single cells and
  every batched cell also run against a second daemon of this checkout with
  ``RS_SYSTEM_EVENTS_ENABLED=false`` (the first runs with the default, on),
  the two back to back in every round, in an order that alternates;
- issue #17's memory, start-up and scale cells (``cells17``).

The cells come in groups (``GROUPS``: single, batch, big, memory, startup,
scale); ``run.py --only`` runs some of them, with the peers they need
(``needed_peers``).
"""

import contextlib
import os
import time
from typing import NamedTuple

import batchgen
import cells17
import loadgen
import pgblob
from measure import Tally, Window, background_pct
from transfer import RssSampler, curl, http

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SIZES = (KiB, 10 * KiB, 100 * KiB, MiB)
CONCS = (1, 8)
BATCH = 100  # PostgreSQL: rows per COPY transaction and per fetch
#: The daemon: records per batched POST (80 headers stay under the 100 that
#: common HTTP stacks accept; a batched GET returns up to 85)
OUR_BATCH = 80
#: Entries of the I/O API's batched cells.
IO_ENTRIES = 4
BUCKET = "bench"

#: batch_*: the batched cells (40,000 records: long enough for a 10 % bound on
#: a 2-core box; their load generator runs on one CPU, ``client_cpu``)
#: quiet_*: before each target's cells, wait while other work keeps more than
#: quiet_pct % of a core busy (a peer's background work, e.g. PostgreSQL's
#: autovacuum after its inserts, took a core for 10-20 s and halved the cells
#: after it), at most quiet_wait s each time, quiet_budget s in all
#: up_*, rss_*, startup_*, scale_*, spread_*: issue #17's cells (``cells17``)
FULL = dict(counts={KiB: 4000, 10 * KiB: 4000, 100 * KiB: 1500, MiB: 300},
            batch_count=40_000, batch_max_s=4.0, spread_count=200_000, spread_max_s=10.0,
            max_s=2.0, min_read_s=0.5, big=GiB, big_timeout=120.0,
            quiet_pct=40, quiet_wait=20, quiet_budget=240,
            up_count=64, up_size=10 * MiB, rss_records=1_000_000, rss_size=KiB,
            startup_records=1_000_000, startup_entries=(10, 10_000), startup_size=100,
            startup_touch=1000, scale_records=1_000_000, scale_small=10_000,
            spread_entries=10_000, spread_settle_s=25.0)
QUICK = dict(counts={s: 24 for s in SIZES}, batch_count=200,
             batch_max_s=0.25, spread_count=200, spread_max_s=0.25,
             max_s=0.25, min_read_s=0.0, big=8 * MiB, big_timeout=30.0,
             quiet_pct=40, quiet_wait=0, quiet_budget=0,
             up_count=64, up_size=64 * KiB, rss_records=2000, rss_size=KiB,
             startup_records=2000, startup_entries=(10, 100), startup_size=100,
             startup_touch=100, scale_records=4000, scale_small=400, spread_entries=200,
             spread_settle_s=12.0)

OURS, MOCK, NGINX, PG = "reduct-twisted", "twisted-mock", "nginx-webdav", "postgres"


class Variant(NamedTuple):
    """
    The same daemon of this checkout with one setting changed: its cells run
    back to back with ``OURS`` (the defaults) in every round, and the report
    shows default ÷ variant with the median of the rounds' paired ratios.

    :ivar name: its peer name.
    :ivar env: the ``RS_*`` variables it starts with.
    :ivar singles: the ``(size, connections)`` single-record cells it runs
        (write and read); every variant runs the batched cells (v1 and I/O API).
    :ivar big: it runs the large upload and download too.
    :ivar heading, on, off, bound, note: the report's section title, column
        names, the bound (default ≥ ``bound`` × variant) and its explanation.
    """

    name: str
    env: dict
    singles: tuple
    big: bool
    heading: str
    on: str
    off: str
    bound: float
    note: str


#: The variant daemons (issue #15: ``$system`` events; issue #16: integrity).
VARIANTS = (
    Variant("reduct-twisted-events-off", {"RS_SYSTEM_EVENTS_ENABLED": "false"},
            singles=tuple((KiB, c) for c in CONCS), big=False,
            heading="`$system` events: on ÷ off (issue #15)", on="events on (default)",
            off="events off", bound=0.95,
            note="`reduct-twisted` with the `$system` events on (the default: every request "
                 "audited, usage written every 60 s) and `reduct-twisted-events-off` "
                 "(`RS_SYSTEM_EVENTS_ENABLED=false`)"),
    Variant("reduct-twisted-integrity-off", {"RS_INTEGRITY": "off"},
            singles=((KiB, 8),), big=True,
            heading="integrity=log ÷ integrity=off (issue #16)", on="integrity=log (default)",
            off="integrity=off", bound=0.90,
            note="`reduct-twisted` with `integrity=log` (the default: a SHA-256 of every "
                 "record computed as its bytes stream in, entry numbers) and "
                 "`reduct-twisted-integrity-off` (`RS_INTEGRITY=off`: numbers only)"),
)
BY_NAME = {v.name: v for v in VARIANTS}
#: The variant whose name the older reports and tests use.
EVENTS_OFF = VARIANTS[0].name
DAEMONS = (OURS, *BY_NAME)
WRITE_METHOD = {OURS: "POST", MOCK: "POST", NGINX: "PUT", **{v: "POST" for v in BY_NAME}}
GROUPS = cells17.GROUPS


def needed_peers(groups) -> set:
    """The targets the cell ``groups`` (``GROUPS``) measure."""
    needs = {"single": {OURS, MOCK, NGINX, PG, *BY_NAME}, "batch": {OURS, PG, *BY_NAME},
             "big": {OURS, NGINX, *(v.name for v in VARIANTS if v.big)},
             "memory": {cells17.CELLS17}, "startup": set(), "scale": {cells17.CELLS17}}
    return set().union(*(needs[g] for g in groups))


@contextlib.contextmanager
def client_cpu():
    """
    The load generator (this process) on the last CPU while a batched cell
    runs: the servers keep every CPU, but the scheduler no longer moves the
    client onto the server's CPU now and then (which made the same cell
    vary by a third between rounds on a 2-core box).
    """
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class Matrix:
    def __init__(self, peers: dict, work, bounds: dict, log=print, groups=GROUPS,
                 datasets=None) -> None:
        self.peers, self.work, self.b, self.log = peers, work, bounds, log
        self.groups = tuple(groups)
        self.rows, self.memory, self.background, self.extra = [], [], [], []
        self.waited = 0.0
        self.payload = {size: os.urandom(size) for size in SIZES}
        self.dsn = peers[PG].info["dsn"] if PG in peers else None
        self.big_source = work / "big.bin"
        self.cells17 = cells17.Cells17(self, datasets)

    def url(self, target: str, entry: str) -> str:
        """The record URL template of ``entry`` on an HTTP target (field ``{ts}``)."""
        host = f"http://127.0.0.1:{self.peers[target].port}"
        if target == NGINX:
            return f"{host}/dav/{BUCKET}/{entry}/{{ts}}"
        return f"{host}/api/v1/b/{BUCKET}/{entry}?ts={{ts}}"

    def prepare(self) -> None:
        for daemon in (d for d in (*DAEMONS, cells17.CELLS17) if d in self.peers):
            code, body = http("POST", f"{self.peers[daemon].info['base']}/api/v1/b/{BUCKET}")
            if code != 200:
                raise RuntimeError(f"creating bucket {BUCKET!r} on {daemon} failed: "
                                   f"HTTP {code} {body!r}")
        if self.dsn:
            pgblob.setup(self.dsn)
        if "big" in self.groups:
            block = self.payload[MiB]
            with open(self.big_source, "wb") as f:
                for _ in range(self.b["big"] // MiB):
                    f.write(block)

    def add(self, target, op, size, conc, rnd, res) -> dict:
        row = dict(target=target, op=op, size=size, conc=conc, round=rnd, **res)
        self.rows.append(row)
        err = f"  ERRORS {res['errors']}: {res['first_error']}" if res.get("errors") else ""
        self.log(f"r{rnd} {target:15} {op:11} {size:>10} c{conc} {res['rec_per_s']:>10} rec/s "
                 f"{res['mb_per_s']:>8} MB/s  cpu client {res['client_cpu_pct']}% "
                 f"server {res['server_cpu_pct']}% other {res['other_cpu_pct']}%{err}")
        return row

    # -- cells -----------------------------------------------------------------

    def single(self, target: str, size: int, conc: int, rnd: int) -> None:
        entry = f"s{size}-c{conc}-r{rnd}"
        count, max_s = self.b["counts"][size], self.b["max_s"]
        pids = [self.peers[target].pid]
        base = time.time_ns() // 1000
        common = dict(payload=self.payload[size], concurrency=conc, base_ts=base,
                      max_s=max_s, server_pids=pids)
        os.sync()  # the previous cell's dirty pages are not this write's cost
        if target == PG:
            w = pgblob.single("write", self.dsn, entry, count=count, **common)
        else:
            url = self.url(target, entry)
            w = loadgen.run_cell("write", url, method=WRITE_METHOD[target], count=count, **common)
        self.add(target, "write", size, conc, rnd, w)
        if not w["records"]:
            return
        common.update(count=w["records"], min_s=self.b["min_read_s"])
        if target == PG:
            r = pgblob.single("read", self.dsn, entry, **common)
        else:
            r = loadgen.run_cell("read", url, method="GET", **common)
        self.add(target, "read", size, conc, rnd, r)

    def batched(self, rnd: int) -> None:
        with client_cpu():
            self._batched(rnd)

    def _batched(self, rnd: int) -> None:
        for target in self.order([PG, OURS], rnd):
            self.quiet()
            entry, pids = f"batch-r{rnd}", [self.peers[target].pid]
            common = dict(payload=self.payload[KiB], base_ts=time.time_ns() // 1000,
                          max_s=self.b["batch_max_s"], server_pids=pids)
            os.sync()
            if target == PG:
                w = pgblob.copy(self.dsn, entry, count=self.b["batch_count"], batch=BATCH,
                                **common)
            else:
                base = self.peers[target].info["base"]
                w = batchgen.write(base, BUCKET, entry, count=self.b["batch_count"],
                                   batch=OUR_BATCH, **common)
            self.add(target, "batch write", KiB, 1, rnd, w)
            if not w["records"]:
                continue
            common.update(count=w["records"], min_s=self.b["min_read_s"])
            if target == PG:
                payload = common.pop("payload")
                r = pgblob.read_range(self.dsn, entry, size=len(payload), batch=BATCH, **common)
            else:
                r = batchgen.read(base, BUCKET, entry, **common)
            self.add(target, "batch read", KiB, 1, rnd, r)
            if target in DAEMONS:
                self.io_batched(target, rnd)

    def io_batched(self, target: str, rnd: int) -> None:
        """The I/O API's batched cells (spec 1.20 §1): 4 entries, interleaved in time."""
        base, pids = self.peers[target].info["base"], [self.peers[target].pid]
        common = dict(payload=self.payload[KiB], base_ts=time.time_ns() // 1000,
                      max_s=self.b["batch_max_s"], server_pids=pids, entries=IO_ENTRIES)
        os.sync()
        entry = f"io-r{rnd}"
        w = batchgen.write_v2(base, BUCKET, entry, count=self.b["batch_count"],
                              batch=OUR_BATCH, **common)
        self.add(target, "io write", KiB, 1, rnd, w)
        if w["records"]:
            common.update(count=w["records"], min_s=self.b["min_read_s"], run=w["run"])
            self.add(target, "io read", KiB, 1, rnd,
                     batchgen.read_v2(base, BUCKET, entry, **common))

    def curl_cell(self, target: str, op: str, args, rnd: int) -> dict:
        size = self.b["big"]
        tally = Tally(1, self.b["big_timeout"])
        with Window([self.peers[target].pid]) as window:
            tally.start()
            tally.next_index()
            started = time.perf_counter()
            try:
                code, seconds, up, down, _ = curl(args, self.b["big_timeout"])
            except RuntimeError as err:
                tally.fail(str(err), started)
                seconds = None
            else:
                moved = up if op == "big write" else down
                if 200 <= code < 300 and moved == size:
                    tally.ok(size, started)
                else:
                    tally.fail(f"HTTP {code}, {moved} bytes", started)
            tally.stop()
        extra = {}
        if seconds and tally.records:  # curl's own clock, without its start-up
            extra = dict(elapsed_s=seconds, rec_per_s=round(1 / seconds, 3),
                         mb_per_s=round(size / seconds / 1e6, 1))
        return self.add(target, op, size, 1, rnd, tally.result(window, **extra))

    def big(self, rnd: int) -> None:
        src = str(self.big_source)
        put = ["-H", "Expect:", "-H", "Content-Type: application/octet-stream", "-T", src]
        order = self.order([OURS, NGINX], rnd, [v.name for v in VARIANTS if v.big])
        for target in order:
            url, method = self.url(target, f"big-r{rnd}").format(ts=1), WRITE_METHOD[target]
            os.sync()
            sampler = RssSampler(self.peers[target].pid) if target == OURS else None
            if sampler:
                sampler.start()
            try:
                self.curl_cell(target, "big write", put + ["-X", method, url], rnd)
                self.curl_cell(target, "big read", ["-o", "/dev/null", url], rnd)
            finally:
                if sampler:
                    mem = sampler.stop()
                    self.memory.append(dict(round=rnd, **mem))
                    self.log(f"r{rnd} {OURS} RSS growth during the large record: "
                             f"{mem['rss_growth'] / MiB:.1f} MiB "
                             f"(before: {mem['rss_before'] / MiB:.1f} MiB)")

    def quiet(self) -> None:
        """Wait (bounded) until other work leaves the box; note its level."""
        started = time.monotonic()
        while True:
            busy = background_pct()
            waited = time.monotonic() - started
            if (busy <= self.b["quiet_pct"] or waited >= self.b["quiet_wait"]
                    or self.waited + waited >= self.b["quiet_budget"]):
                break
            time.sleep(1.0)
        self.waited += waited
        self.background.append(busy)

    @staticmethod
    def order(targets: list, turn: int, variants=tuple(BY_NAME)) -> list:
        """
        ``targets`` rotated by ``turn``, with the ``variants`` daemons right
        beside ours: they run back to back, ours first in even turns and
        last in odd ones, so that each round gives a paired ratio per variant.
        """
        turn %= len(targets)
        group = [OURS, *variants]
        out = []
        for target in targets[turn:] + targets[:turn]:
            out += (group if turn % 2 == 0 else group[::-1]) if target == OURS else [target]
        return out

    def run(self, rounds: int) -> None:
        for rnd in range(1, rounds + 1):
            order = self.order([OURS, MOCK, NGINX, PG], rnd - 1)
            for size in SIZES if "single" in self.groups else ():
                for conc in CONCS:
                    for target in order:
                        if target not in BY_NAME or (size, conc) in BY_NAME[target].singles:
                            self.quiet()
                            self.single(target, size, conc, rnd)
            if "batch" in self.groups:
                self.batched(rnd)  # (quiet before each target's cells)
            if "big" in self.groups:
                self.quiet()
                self.big(rnd)
            self.cells17.round(rnd, self.groups)
