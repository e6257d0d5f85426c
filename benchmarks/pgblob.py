"""
PostgreSQL as a blob store, driven by psycopg 3 over TCP loopback.

Table (``setup``)::

    records(bucket text, entry text, ts bigint, labels jsonb, content_type text,
            data bytea STORAGE EXTERNAL, PRIMARY KEY (bucket, entry, ts))

``data`` is stored out of line without a compression attempt (blobs are
usually incompressible, and so is the benchmark's random payload); autovacuum
is off for the table so no worker wakes up inside a measurement.

Operations, each bounded like every cell (``measure.Tally``):

- ``single``: one INSERT per record in autocommit (one commit, one WAL flush
  each; durability defaults kept) or one SELECT by ts, over ``concurrency``
  connections;
- ``copy``: ``COPY ... FROM STDIN (FORMAT BINARY)``, ``batch`` rows a
  transaction;
- ``read_range``: one ``SELECT ... WHERE ts >= a AND ts < b ORDER BY ts``
  through a server-side binary cursor, ``batch`` rows a fetch.

The server's CPU is the postmaster's process tree (all backends included).
"""

import asyncio
import time

import psycopg
from psycopg.types.json import Jsonb

from measure import Tally, Window

BUCKET = "bench"
LABELS = Jsonb({"sensor": "s1", "bench": "1"})
CONTENT_TYPE = "application/octet-stream"
COLUMNS = "(bucket, entry, ts, labels, content_type, data)"
INSERT = f"INSERT INTO records {COLUMNS} VALUES (%s, %s, %s, %s, %s, %s)"
COPY = f"COPY records {COLUMNS} FROM STDIN (FORMAT BINARY)"
SELECT_ONE = "SELECT data FROM records WHERE bucket = %s AND entry = %s AND ts = %s"
SELECT_RANGE = ("SELECT ts, labels, content_type, data FROM records"
                " WHERE bucket = %s AND entry = %s AND ts >= %s AND ts < %s ORDER BY ts")


def setup(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS records")
        conn.execute(
            "CREATE TABLE records (bucket text NOT NULL, entry text NOT NULL,"
            " ts bigint NOT NULL, labels jsonb NOT NULL, content_type text NOT NULL,"
            " data bytea NOT NULL, PRIMARY KEY (bucket, entry, ts))")
        conn.execute("ALTER TABLE records ALTER COLUMN data SET STORAGE EXTERNAL")
        conn.execute("ALTER TABLE records SET (autovacuum_enabled = false,"
                     " toast.autovacuum_enabled = false)")


async def _single(op, dsn, entry, payload, tally, concurrency, base_ts, server_pids):
    conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True)
             for _ in range(concurrency)]
    size = len(payload)

    async def worker(conn):
        cur = conn.cursor(binary=True)
        while (i := tally.next_index()) is not None:
            started = time.perf_counter()
            try:
                if op == "write":
                    await cur.execute(INSERT, (BUCKET, entry, base_ts + i, LABELS,
                                               CONTENT_TYPE, payload))
                else:
                    await cur.execute(SELECT_ONE, (BUCKET, entry, base_ts + i))
                    row = await cur.fetchone()
                    if row is None or len(row[0]) != size:
                        raise ValueError(f"ts {base_ts + i}: bad row")
            except (psycopg.Error, ValueError) as err:
                tally.fail(f"{type(err).__name__}: {err}", started)
            else:
                tally.ok(size, started)

    try:
        with Window(server_pids) as window:
            tally.start()
            await asyncio.gather(*(worker(c) for c in conns))
            tally.stop()
    finally:
        for conn in conns:
            await conn.close()
    return tally.result(window)


def single(op: str, dsn: str, entry: str, *, payload: bytes, count: int, concurrency: int,
           base_ts: int, max_s: float, min_s: float = 0.0, server_pids=()) -> dict:
    """One INSERT (``op`` "write") or SELECT ("read") per record."""
    tally = Tally(count, max_s, min_s, cycle=op == "read")
    return asyncio.run(_single(op, dsn, entry, payload, tally, concurrency, base_ts,
                               server_pids))


def copy(dsn: str, entry: str, *, payload: bytes, count: int, batch: int, base_ts: int,
         max_s: float, server_pids=()) -> dict:
    """Binary COPY of ``batch`` rows per transaction; a batch counts as one request."""
    tally = Tally(-(-count // batch), max_s)
    with psycopg.connect(dsn) as conn, Window(server_pids) as window:
        cur = conn.cursor()
        tally.start()
        while (b := tally.next_index()) is not None:
            first = b * batch
            rows = range(first, min(first + batch, count))
            started = time.perf_counter()
            with conn.transaction(), cur.copy(COPY) as cp:
                cp.set_types(["text", "text", "int8", "jsonb", "text", "bytea"])
                for i in rows:
                    cp.write_row((BUCKET, entry, base_ts + i, LABELS, CONTENT_TYPE, payload))
            tally.ok(len(rows) * len(payload), started, records=len(rows))
        tally.stop()
    return tally.result(window, batch=batch)


def read_range(dsn: str, entry: str, *, size: int, count: int, batch: int, base_ts: int,
               max_s: float, min_s: float = 0.0, server_pids=()) -> dict:
    """Time-range scans of ``count`` records, ``batch`` rows a fetch, repeated until ``min_s``."""
    tally = Tally(1, max_s, min_s, cycle=True)
    with psycopg.connect(dsn) as conn, Window(server_pids) as window:
        tally.start()
        while tally.next_index() is not None:
            with conn.cursor(name="range", binary=True) as cur:
                cur.execute(SELECT_RANGE, (BUCKET, entry, base_ts, base_ts + count))
                started = time.perf_counter()
                while rows := cur.fetchmany(batch):
                    bad = sum(len(r[3]) != size for r in rows)
                    if bad:
                        tally.fail(f"{bad} rows of the wrong size", started)
                    else:
                        tally.ok(sum(len(r[3]) for r in rows), started, records=len(rows))
                    started = time.perf_counter()
            conn.commit()
        tally.stop()
    return tally.result(window, batch=batch)
