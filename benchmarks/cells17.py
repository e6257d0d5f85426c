"""
Issue #17's cells beyond the per-record matrix, run by ``matrix.Matrix`` in
every round beside the others (``run.py --only`` picks the groups):

- ``memory``: the daemon's peak RSS growth while ``up_count`` (64) uploads
  of ``up_size`` (10 MiB) run at once, one connection each (aiohttp), and
  during one batched read of ``rss_records`` (1,000,000) records of 1 KiB
  (``batch_rss.write_all`` writes them once, in the first round;
  ``batch_rss.read_all`` reads and checks every record each round);
- ``startup``: ``startup.measure_round`` on a data directory of
  ``startup_records`` records of 100 B (``--startup``, default 1,000,000)
  in 10 entries and again in 10,000 (``startup_entries``): time to the
  first answered ``/alive`` after a clean stop and after kill -9, the RSS
  then, the first read and the first query;
- ``scale``: (a) a query over the newest hour of an entry of
  ``scale_records`` records (``--scale``, default 1,000,000) and of one of
  ``scale_small`` (10,000): query + first batch, the first after a start
  (cold) and the median of 5 more (warm), on a daemon started for it;
  (b) batched writes through the I/O API spread over ``spread_entries``
  (10,000) entries, 80 entries a request (``batchgen.write_spread``), beside
  the same records into one entry (``batchgen.write_v2`` with one entry), for
  ``spread_max_s`` (10 s) each: sustained writes, over which the entries'
  blocks grow (a short burst does not show what a table cache outgrown costs),
  both on the daemon of these cells, ``CELLS17`` (rows ``spread write`` and
  ``one-entry write``, reported as ``reduct-twisted``'s);
  after the entries are made, the cells wait until the daemon has been idle
  for ``spread_settle_s`` (25 s, ``measure.settle``: it makes their 10,000
  entry logs in the background, at the second sweep after the writes stop,
  ``entry_log_lag.py``); and before the measured writes of each round one
  unmeasured write into every entry, as under sustained spread writes (this
  VM's kernel pages out what is untouched for a minute: DAMON).

The data directories of ``startup`` and ``scale`` are generated once a run
by ``startup.generate_plan`` (the storage engine in worker processes), or
copied from ``--datasets DIR``, where a generated one is kept for the next
run.  Rows of ``memory``, ``startup`` and ``scale`` (a) go to
``Matrix.extra``; (b)'s to ``Matrix.rows`` like every throughput cell.
"""

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

import aiohttp

import batch_rss
import batchgen
import startup
import measure
from measure import alive
from transfer import RssSampler, http

KiB, MiB = 1 << 10, 1 << 20
OURS, BUCKET = "reduct-twisted", "bench"
#: The daemon (of this checkout, its defaults) the memory and scale cells run on:
#: not ``OURS``, whose cells are compared with variant daemons that never hold
#: these cells' data (a million records, 10,000 entries whose logs catch up in
#: the background) nor do their work.
CELLS17 = "reduct-twisted-cells17"
GROUPS = ("single", "batch", "big", "memory", "startup", "scale")
WARM = 5


def _run(coro):
    return batchgen._run(coro)


async def _uploads(base: str, count: int, body: bytes, rnd: int) -> list:
    """``count`` single-record POSTs of ``body`` at once: their statuses (or errors)."""
    connector = aiohttp.TCPConnector(limit=count, force_close=True)
    timeout = aiohttp.ClientTimeout(total=600)

    async def one(session, i):
        url = f"{base}/api/v1/b/{BUCKET}/up{count}-r{rnd}-{i}?ts=1"
        try:
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/octet-stream"}) as r:
                await r.read()
                return r.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            return f"{type(err).__name__}: {err}"

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        return await asyncio.gather(*(one(session, i) for i in range(count)))


class Cells17:
    def __init__(self, matrix, datasets=None) -> None:
        self.m, self.b, self.datasets = matrix, matrix.b, datasets
        self.launched = {}  # name -> [pid] of every daemon started here
        self._data = {}
        self._rss_written = self._spread_ready = None

    def add(self, group: str, cell: str, rnd: int, **values) -> dict:
        row = dict(group=group, cell=cell, round=rnd, errors=0, first_error=None, **values)
        self.m.extra.append(row)
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in values.items()}
        self.m.log(f"r{rnd} {group} {cell}: {shown}")
        return row

    def failed(self, group: str, cell: str, rnd: int, err) -> None:
        row = self.add(group, cell, rnd)
        row.update(errors=1, first_error=f"{type(err).__name__}: {err}"[:300])
        self.m.log(f"r{rnd} {group} {cell}: ERROR {row['first_error']}")

    def _note(self, label: str):
        def log(pid):
            name = f"{label}-{len(self.launched) + 1}"
            self.launched[name] = [pid]
            print(f"started {name} pid {pid}", file=sys.stderr, flush=True)
        return log

    # -- generated data sets --------------------------------------------------------

    def dataset(self, key: str, plan, size: int, label: str):
        """
        The data directory of ``plan`` (generated once, or copied from
        ``--datasets``), opened once by the daemon and stopped cleanly, so
        that a measured start follows the daemon's own clean stop (the block
        index keys on inode numbers: the first start on a copy rebuilds it).

        :return: ``(work, data, seconds)``: ``seconds`` of that first start to
            ``/alive`` on the first call, ``None`` after.
        """
        if key in self._data:
            return (*self._data[key], None)
        work = self.m.work / key
        work.mkdir()
        data = work / "data"
        kept = self.datasets / key if self.datasets else None
        started = time.monotonic()
        if kept and kept.exists():
            subprocess.run(["cp", "-a", str(kept), str(data)], check=True)
            how = f"copied from {kept}"
        else:
            startup.generate_plan(data, plan, size, os.cpu_count() or 1)
            how = "generated"
            if kept:
                kept.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run(["cp", "-a", str(data), str(kept)], check=True)
                how += f", kept in {kept}"
        proc, seconds = startup.launch(work, data, startup.free_port())
        self._note(label)(proc.pid)
        startup.stop(proc)
        self.m.log(f"data set {key}: {how} in {time.monotonic() - started:.0f} s; "
                   f"first start {seconds:.2f} s")
        self._data[key] = (work, data)
        return work, data, seconds

    # -- memory ---------------------------------------------------------------------

    def uploads(self, rnd: int) -> None:
        peer = self.m.peers[CELLS17]
        count, size = self.b["up_count"], self.b["up_size"]
        body = self.m.payload.get(size) or os.urandom(size)
        sampler = RssSampler(peer.pid)
        sampler.start()
        started = time.perf_counter()
        try:
            answers = _run(_uploads(peer.info["base"], count, body, rnd))
        finally:
            mem = sampler.stop()
        elapsed = time.perf_counter() - started
        bad = [a for a in answers if a != 200]
        row = self.add("memory", "uploads", rnd, count=count, size=size,
                       rss_before=mem["rss_before"], rss_growth=mem["rss_growth"],
                       mb_per_s=count * size / elapsed / 1e6, elapsed_s=elapsed)
        if bad:
            row.update(errors=len(bad), first_error=str(bad[0]))

    def rss_read(self, rnd: int) -> None:
        peer = self.m.peers[CELLS17]
        port, records, size = peer.port, self.b["rss_records"], self.b["rss_size"]
        fill = bytes(range(256)) * (-(-size // 256) + 1)
        if self._rss_written is None:
            code, body = http("POST", f"{peer.info['base']}/api/v1/b/{batch_rss.BUCKET}")
            if code != 200:
                raise RuntimeError(f"creating bucket {batch_rss.BUCKET}: HTTP {code} {body!r}")
            seconds, problems = batch_rss.write_all(port, records, size, 80, 4, fill)
            self._rss_written = problems
            self.m.log(f"r{rnd} memory: wrote {records:,} records of {size} B for the batched "
                       f"read in {seconds:.0f} s" + (f"; {problems[0]}" if problems else ""))
        if self._rss_written:
            raise RuntimeError(f"writing the records failed: {self._rss_written[0]}")
        sampler = RssSampler(peer.pid)
        sampler.start()
        try:
            read = batch_rss.read_all(port, records, size, fill, "post")
        finally:
            mem = sampler.stop()
        seconds = read["read_seconds"]
        row = self.add("memory", "batched read", rnd, records=records, size=size,
                       records_read=read["records_read"], batches=read["batches"],
                       rss_before=mem["rss_before"], rss_growth=mem["rss_growth"],
                       rec_per_s=read["records_read"] / seconds if seconds else 0.0)
        if read["problem"]:
            row.update(errors=1, first_error=read["problem"])

    # -- start-up -------------------------------------------------------------------

    def startup(self, rnd: int) -> None:
        records, size = self.b["startup_records"], self.b["startup_size"]
        for entries in self.b["startup_entries"]:
            cell = f"{entries} entries"
            try:
                per_entry = records // entries
                plan = [(startup.entry_name(i), per_entry) for i in range(entries)]
                work, data, first = self.dataset(f"startup-{entries}x{per_entry}-{size}B",
                                                 plan, size, f"startup-{entries}")
                if first is not None:
                    self.add("startup", cell, rnd, after="first start of the data set",
                             records=per_entry * entries, entries=entries, start_s=first)
                clean, killed = startup.measure_round(
                    work, data, entries, per_entry, self.b["startup_touch"], 10, size, rnd,
                    log=self._note(f"startup-{entries}"))
            except (RuntimeError, OSError, SystemExit, subprocess.SubprocessError) as err:
                self.failed("startup", cell, rnd, err)
                continue
            for after, values in (("clean", clean), ("kill -9", killed)):
                self.add("startup", cell, rnd, after=after, records=per_entry * entries,
                         entries=entries, **values)

    # -- scale ----------------------------------------------------------------------

    def scale_query(self, rnd: int) -> None:
        big, small = self.b["scale_records"], self.b["scale_small"]
        proc = None
        try:
            work, data, _ = self.dataset(f"scale-{big}-{small}-100B",
                                         [("big", big), ("small", small)], 100, "scale")
            port = startup.free_port()
            proc, _ = startup.launch(work, data, port)
            self._note("scale")(proc.pid)
            sizes = {"big": big, "small": small}
            order = ["small", "big"] if rnd % 2 else ["big", "small"]
            cold = {e: startup.query_ms(port, e, sizes[e]) for e in order}
            warm = {e: [] for e in order}
            for _ in range(WARM):
                for e in order:
                    warm[e].append(startup.query_ms(port, e, sizes[e]))
        except (RuntimeError, OSError, SystemExit, subprocess.SubprocessError) as err:
            self.failed("scale", "query newest hour", rnd, err)
            return
        finally:
            if proc is not None:
                startup.stop(proc)
                if proc.returncode not in (0, -signal.SIGTERM):
                    self.m.log(f"scale daemon exited {proc.returncode}")
        warm = {e: statistics.median(v) for e, v in warm.items()}
        self.add("scale", "query newest hour", rnd, big_records=big, small_records=small,
                 cold_big_ms=cold["big"], cold_small_ms=cold["small"],
                 warm_big_ms=warm["big"], warm_small_ms=warm["small"])

    def spread(self, rnd: int) -> None:
        peer = self.m.peers[CELLS17]
        base, entries, count = peer.info["base"], self.b["spread_entries"], self.b["spread_count"]
        payload = self.m.payload[KiB]
        if self._spread_ready is None:  # every entry exists before the measured writes
            res = batchgen.write_spread(base, BUCKET, "spread", payload=payload, count=entries,
                                        batch=80, base_ts=time.time_ns() // 1000,
                                        max_s=600.0, entries=entries)
            self._spread_ready = res["first_error"] if res["errors"] else ""
            waited = measure.settle([peer.pid], quiet_s=self.b["spread_settle_s"], limit_s=300.0)
            self.m.log(f"r{rnd} scale: {entries:,} entries created in {res['elapsed_s']:.1f} s, "
                       f"daemon idle {waited:.1f} s later")
        # Unmeasured: every entry written a moment ago, as under sustained spread
        # writes.  After the idle minutes of the other cells this VM's kernel has
        # paged out the last pages of their files (DAMON: untouched for 60 s), and a
        # write into a page not in memory reads it from the disk first.
        warm = batchgen.write_spread(base, BUCKET, "spread", payload=payload, count=entries,
                                     batch=80, base_ts=time.time_ns() // 1000, max_s=600.0,
                                     entries=entries)
        if warm["errors"]:
            self.m.log(f"r{rnd} scale: warming the entries: {warm['first_error']}")
        common = dict(payload=payload, count=count, batch=80, max_s=self.b["spread_max_s"],
                      server_pids=[peer.pid])
        cells = ["spread write", "one-entry write"]
        for cell in (cells if rnd % 2 else cells[::-1]):
            os.sync()
            if cell == "spread write":
                res = batchgen.write_spread(base, BUCKET, "spread", entries=entries,
                                            first_entry=rnd * count % entries,
                                            base_ts=time.time_ns() // 1000, **common)
                if self._spread_ready:
                    res.update(errors=res["errors"] + 1,
                               first_error=f"creating the entries: {self._spread_ready}")
            else:
                res = batchgen.write_v2(base, BUCKET, f"one-r{rnd}", entries=1,
                                        base_ts=time.time_ns() // 1000, **common)
            self.m.add(OURS, cell, KiB, 1, rnd, res)

    # -- a round --------------------------------------------------------------------

    def round(self, rnd: int, groups) -> None:
        jobs = {"memory": (("uploads", self.uploads), ("batched read", self.rss_read)),
                "startup": (("", self.startup),),
                "scale": (("query newest hour", self.scale_query), ("", self.spread))}
        for group in ("memory", "startup", "scale"):
            if group not in groups:
                continue
            for cell, job in jobs[group]:
                self.m.quiet()
                try:
                    job(rnd)
                except (RuntimeError, OSError, SystemExit, subprocess.SubprocessError,
                        KeyError, ValueError) as err:
                    self.failed(group, cell or group, rnd, err)

    def cleanup(self) -> None:
        for work, _ in self._data.values():
            shutil.rmtree(work, ignore_errors=True)

    def pids_alive(self) -> list:
        return [pid for pids in self.launched.values() for pid in pids if alive(pid)]
