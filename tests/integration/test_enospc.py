"""
Storage faults (issue #5): a full disk (ENOSPC) and a data directory that
turned read-only (EROFS), on a small tmpfs each test mounts itself (root
only; skipped otherwise).

A write the disk cannot take is answered with a 5xx carrying
``x-reduct-error`` and a JSON detail (507 Insufficient Storage for a record),
never a hang or a dropped connection; everything acknowledged before stays
readable byte-exact, queries, ``/info`` and ``/list`` keep working, writes
succeed again once space is freed, and a restart on the same directory
finds every acknowledged record.
"""

import contextlib
import json
import os
import subprocess

import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher
from twisted.web._newclient import ResponseFailed, ResponseNeverReceived

from reduct_twisted.storage.disk.reserve import DEFAULT_SIZE
from tests.integration.conftest import start_server
from tests.integration.daemon import payload

KIB, MIB = 1 << 10, 1 << 20
#: Seconds any request may take: a hang fails the test instead of stalling it.
TIMEOUT = 30


def _run(*argv):
    return subprocess.run(argv, capture_output=True, text=True)


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MiB tmpfs mounted on a fresh directory; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    done = _run("mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mnt))
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        if _run("umount", str(mnt)).returncode:
            _run("umount", "-l", str(mnt))


@pytest.fixture
def log_errors():
    """
    Log events of errors nothing handled ("Unhandled error in ...", from the
    HTTP layer's last-resort handler or from a garbage-collected Deferred).
    A storage error that was answered may be logged, with its traceback.
    """
    events = []

    def observe(event):
        text = str(event.get("log_format") or "") + str(event.get("log_text") or "")
        if "Unhandled" in text or event.get("isError") and "Unhandled" in str(event.get("why")):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observe)


def describe(events) -> str:
    from twisted.logger import formatEvent

    out = []
    for event in events:
        text = formatEvent(event)
        if "log_failure" in event:
            text += "\n" + event["log_failure"].getTraceback()
        out.append(text)
    return "\n".join(out)


class Client:
    """treq calls on one in-process server, every one of them bounded by TIMEOUT."""

    def __init__(self, server):
        self.server = server

    async def call(self, method, path, data=b"", params=None, headers=None):
        try:
            resp = await self.server.http.request(
                method, self.server.api(path), data=data, params=params, headers=headers,
                timeout=TIMEOUT,
            )
            return resp, await resp.content()
        except (ResponseNeverReceived, ResponseFailed) as e:
            raise AssertionError(
                f"{method} {path} {params or ''} ({len(data)} bytes): the connection was "
                f"closed without an answer: {e!r}"
            ) from None

    async def write(self, bucket, entry, ts, size):
        return await self.call("POST", f"/b/{bucket}/{entry}", payload(bucket, entry, ts, size),
                               params={"ts": str(ts)})

    async def json(self, path, params=None):
        resp, body = await self.call("GET", path, params=params)
        assert resp.code == 200, (path, resp.code, body)
        return json.loads(body)


def assert_server_error(resp, body, what, status=None):
    """The error contract on a 5xx: x-reduct-error and the same text as JSON detail."""
    assert 500 <= resp.code < 600, (what, resp.code, body)
    if status is not None:
        assert resp.code == status, (what, resp.code, body)
    message = resp.headers.getRawHeaders("x-reduct-error")
    assert message and message[0], (what, resp.code, body)
    assert resp.headers.getRawHeaders("content-type") == ["application/json"], what
    assert json.loads(body) == {"detail": message[0]}, (what, body)
    return message[0]


async def check_all(client, acked):
    """Every acknowledged record is there byte-exact, by ts and through a query;
    /info and /list answer."""
    for (bucket, entry, ts), size in sorted(acked.items()):
        resp, body = await client.call("GET", f"/b/{bucket}/{entry}", params={"ts": str(ts)})
        assert resp.code == 200, ((bucket, entry, ts), resp.code, body)
        assert body == payload(bucket, entry, ts, size), (bucket, entry, ts)
    for bucket, entry in sorted({k[:2] for k in acked}):
        qid = (await client.json(f"/b/{bucket}/{entry}/q", params={"start": "0"}))["id"]
        got = []
        while True:
            resp, body = await client.call("GET", f"/b/{bucket}/{entry}", params={"q": str(qid)})
            if resp.code == 204:
                break
            assert resp.code == 200, (bucket, entry, resp.code, body)
            ts = int(resp.headers.getRawHeaders("x-reduct-time")[0])
            assert body == payload(bucket, entry, ts, acked[(bucket, entry, ts)])
            got.append(ts)
        assert got == sorted(ts for b, e, ts in acked if (b, e) == (bucket, entry))
    info = await client.json("/info")
    listed = await client.json("/list")
    names = {b["name"] for b in listed["buckets"]}
    assert {b for b, _, _ in acked} <= names
    assert info["bucket_count"] == len(names)


async def check_absent(client, refused):
    """A refused write left no record (not even one "still being written")."""
    for bucket, entry, ts in refused:
        resp, body = await client.call("GET", f"/b/{bucket}/{entry}", params={"ts": str(ts)})
        assert resp.code == 404, ("a refused write left a record", entry, ts, resp.code, body)


def take_the_rest(path):
    """Fill the last free bytes of the file system with the file ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\1" * 4096):
                pass
    finally:
        os.close(fd)


async def fill(client, acked, bucket, entry, sizes, ts):
    """
    Write records (cycling through ``sizes``) until one fails; return that
    failing (response, body) and the next timestamp.  Acknowledged records
    go into ``acked``.
    """
    for n in range(1000):
        size = sizes[n % len(sizes)]
        resp, body = await client.write(bucket, entry, ts, size)
        if resp.code != 200:
            return resp, body, ts + 1
        acked[(bucket, entry, ts)] = size
        ts += 1
    raise AssertionError("a 4 MiB tmpfs took 1000 writes without filling up")


@pytest_twisted.ensureDeferred
async def test_full_disk(tmpfs, log_errors):
    """
    Fill the tmpfs with small then large records: the write that does not fit
    gets a 507 with x-reduct-error and a JSON detail, earlier records stay
    readable, queries, /info and /list work; freeing space (a file outside
    the store, then a bucket removed through the API) lets writes succeed
    again; a restart finds every acknowledged record.
    """
    data_path = tmpfs / "data"
    filler = tmpfs / "filler"
    filler.write_bytes(os.urandom(512 * KIB))
    srv, stop = await start_server(data_path)
    stopped = False
    acked = {}
    try:
        client = Client(srv)
        for name in ("ballast", "b"):
            resp, body = await client.call("POST", f"/b/{name}",
                                           json.dumps({"max_block_size": 256 * KIB}).encode())
            assert resp.code == 200, body
        for ts in range(1, 5):
            resp, body = await client.write("ballast", "e", ts, 200 * KIB)
            assert resp.code == 200, body
            acked[("ballast", "e", ts)] = 200 * KIB

        # 1. Small records (shared segment, written on the reactor thread).
        small = [48 * KIB, 100 * KIB, 7 * KIB]
        resp, body, ts = await fill(client, acked, "b", "small", small, 1000)
        first = assert_server_error(resp, body, "small record on a full disk", 507)
        # A large record (private segment, written in the thread pool) now.
        resp, body = await client.write("b", "large", 1, 1536 * KIB)
        assert_server_error(resp, body, "large record on a full disk", 507)
        refused = [("b", "small", ts - 1), ("b", "large", 1)]
        await check_absent(client, refused)
        await check_all(client, acked)
        # Fill the last free bytes with a file outside the store, then try
        # everything that writes: a 5xx with the error contract, or success.
        topup = tmpfs / "topup"
        take_the_rest(topup)
        outcomes = {}
        for what, method, path, data in [
            ("empty record", "POST", "/b/b/small?ts=%d" % ts, b""),
            ("tiny record", "POST", "/b/b/small?ts=%d" % (ts + 1),
             payload("b", "small", ts + 1, 10)),
            ("record in a new entry", "POST", "/b/b/fresh?ts=1", payload("b", "fresh", 1, 10)),
            ("bucket creation", "POST", "/b/newbucket", b""),
            ("settings change", "PUT", "/b/b", b'{"max_block_records": 100}'),
        ]:
            resp, body = await client.call(method, path, data)
            outcomes[what] = resp.code
            if resp.code != 200:
                assert_server_error(resp, body, what + " on a full disk")
            if method == "POST" and "record" in what:
                key = ("b", path.split("/")[3].split("?")[0], int(path.rsplit("=", 1)[1]))
                if resp.code == 200:
                    acked[key] = len(data)
                else:
                    refused.append(key)
        ts += 2
        await check_absent(client, refused)
        # A refused change changes nothing.
        info = await client.json("/b/b")
        if outcomes["settings change"] != 200:
            assert info["settings"]["max_block_records"] != 100, "refused settings change applied"
        buckets = {"b", "ballast"}
        if outcomes["bucket creation"] == 200:
            buckets.add("newbucket")
        # $system (spec 1.20 §8) may have been written too: not the test's.
        listed = {b["name"] for b in (await client.json("/list"))["buckets"]}
        assert listed - {"$system"} == buckets
        await check_all(client, acked)
        topup.unlink()

        # 2. Free space outside the store: writes succeed again.
        filler.unlink()
        for _ in range(3):
            resp, body = await client.write("b", "small", ts, 60 * KIB)
            assert resp.code == 200, ("after freeing space", resp.code, body)
            acked[("b", "small", ts)] = 60 * KIB
            ts += 1

        # 3. Large records until full again.
        resp, body, _ = await fill(client, acked, "b", "large", [1100 * KIB, 1300 * KIB], 10)
        second = assert_server_error(resp, body, "large record on a full disk", 507)
        await check_all(client, acked)

        # 4. Free space through the API: remove a bucket.
        resp, body = await client.call("DELETE", "/b/ballast")
        assert resp.code == 200, body
        for key in [k for k in acked if k[0] == "ballast"]:
            del acked[key]
        buckets.discard("ballast")
        resp, body = await client.write("b", "large", 1000, 600 * KIB)
        assert resp.code == 200, ("after removing a bucket", resp.code, body)
        acked[("b", "large", 1000)] = 600 * KIB
        await check_all(client, acked)

        stopped = True
        await stop()
        # 5. A restart on the same tmpfs finds everything acknowledged.
        srv, stop = await start_server(data_path)
        stopped = False
        client = Client(srv)
        await check_all(client, acked)
        await check_absent(client, refused)
        # $system (spec 1.20 §8) may have been written too: not the test's.
        listed = {b["name"] for b in (await client.json("/list"))["buckets"]}
        assert listed - {"$system"} == buckets
        info = await client.json("/b/b")
        if outcomes["settings change"] != 200:
            assert info["settings"]["max_block_records"] != 100, "refused settings change applied"
    finally:
        if not stopped:
            await stop()
    print(f"\nfull disk: {len(acked)} records acknowledged and verified; "
          f"refusals: {first!r}, {second!r}; on a full disk: {outcomes}")
    assert not log_errors, describe(log_errors)


#: The space reserve of the daemon (``StorageService``): 1/64 of the tmpfs here.
RESERVED = {"reserve_size": DEFAULT_SIZE}


@pytest_twisted.ensureDeferred
async def test_removals_on_a_full_disk(tmpfs, log_errors):
    """
    Issue #12: with the disk full to the last byte, ``DELETE …?ts=``,
    ``DELETE …/batch``, ``DELETE …/q`` and ``POST …/q`` REMOVE each answer
    200 (the space reserve lets the first ``.meta`` rewrite through), as
    does a label PATCH that does not grow the metadata, while one that
    grows it gets 507; the records are gone after a restart, and then a
    write that fits in the space freed succeeds.
    """
    data_path = tmpfs / "data"
    srv, stop = await start_server(data_path, engine_kwargs=RESERVED)
    stopped = False
    acked = {}
    try:
        assert (data_path / ".reserve").stat().st_size == 64 * KIB  # 4 MiB / 64
        client = Client(srv)
        resp, body = await client.call("POST", "/b/b",
                                       json.dumps({"max_block_records": 4}).encode())
        assert resp.code == 200, body
        for ts in (1, 2):  # one block of two large records (private segments)
            resp, body = await client.write("b", "big", ts, 1100 * KIB)
            assert resp.code == 200, body
            acked[("b", "big", ts)] = 1100 * KIB
        resp, body, _ = await fill(client, acked, "b", "e", [30 * KIB], 1000)
        assert_server_error(resp, body, "small record on a full disk", 507)
        take_the_rest(tmpfs / "topup")
        small = sorted(ts for b, e, ts in acked if e == "e")
        assert len(small) >= 12, small
        # Blocks of four: 1000-1003, 1004-1007, ...; each removal keeps others.
        gone = {("b", "e", 1001), ("b", "e", 1005), ("b", "e", 1006),
                ("b", "e", 1009), ("b", "e", 1010), ("b", "big", 1)}
        resp, body = await client.call("PATCH", "/b/b/e", params={"ts": "1002"},
                                       headers={"x-reduct-label-new": "grows the metadata"})
        assert_server_error(resp, body, "a label PATCH that needs space", 507)
        assert (data_path / ".reserve").stat().st_size == 64 * KIB  # kept for removals
        answers = {}
        resp, body = await client.call("DELETE", "/b/b/e", params={"ts": "1001"})
        answers["DELETE ?ts="] = resp.code, body
        resp, body = await client.call("DELETE", "/b/b/e/batch", headers={
            "x-reduct-time-1005": "", "x-reduct-time-1006": ""})
        answers["DELETE /batch"] = resp.code, body
        resp, body = await client.call("DELETE", "/b/b/e/q",
                                       params={"start": "1009", "stop": "1011"})
        answers["DELETE /q"] = resp.code, body
        resp, body = await client.call("POST", "/b/b/big/q", json.dumps(
            {"query_type": "REMOVE", "start": 1, "stop": 2}).encode())
        answers["POST /q REMOVE"] = resp.code, body
        resp, body = await client.call("PATCH", "/b/b/e", params={"ts": "1002"},
                                       headers={"x-reduct-label-none": ""})
        answers["PATCH removing a label"] = resp.code, body
        assert answers == {
            "DELETE ?ts=": (200, b""), "DELETE /batch": (200, b""),
            "DELETE /q": (200, b'{"removed_records":2}'),
            "POST /q REMOVE": (200, b'{"removed_records":1}'),
            "PATCH removing a label": (200, b""),
        }, answers
        for key in gone:
            del acked[key]
        await check_absent(client, sorted(gone))
        await check_all(client, acked)
        stopped = True
        await stop()

        srv, stop = await start_server(data_path, engine_kwargs=RESERVED)
        stopped = False
        client = Client(srv)
        await check_absent(client, sorted(gone))
        await check_all(client, acked)
        # The large record's 1100 KiB are free again (the reserve is back):
        # a write that fits succeeds.
        assert (data_path / ".reserve").stat().st_size == 64 * KIB
        resp, body = await client.write("b", "big", 3, 900 * KIB)
        assert resp.code == 200, ("a write in the freed space", resp.code, body)
        acked[("b", "big", 3)] = 900 * KIB
        await check_all(client, acked)
    finally:
        if not stopped:
            await stop()
    print(f"\nremovals on a full disk: {answers}")
    assert not log_errors, describe(log_errors)


#: Writes tried on the read-only file system, then again once it is writable:
#: into the open block, into a new block, belated, large, into a new entry.
ATTEMPTS = [("e", 70, 100), ("e", 80, 60 * KIB), ("e", 15, 5), ("e", 90, 1500 * KIB),
            ("new", 1, 10)]


def remount(mnt, mode):
    done = _run("mount", "-o", f"remount,{mode}", str(mnt))
    assert done.returncode == 0, done.stderr


@pytest_twisted.ensureDeferred
async def test_read_only_data_directory(tmpfs, log_errors):
    """
    With the data directory's file system remounted read-only, record writes
    get a 5xx with x-reduct-error and a JSON detail while reads, queries,
    /info and /list keep working; writable again, writes succeed.
    """
    data_path = tmpfs / "data"
    srv, stop = await start_server(data_path)
    acked = {}
    try:
        client = Client(srv)
        settings = json.dumps({"max_block_size": 64 * KIB}).encode()
        resp, body = await client.call("POST", "/b/b", settings)
        assert resp.code == 200, body
        for ts, size in zip(range(10, 70, 10), [0, 10, 30 * KIB, 70 * KIB, 1200 * KIB, 5]):
            resp, body = await client.write("b", "e", ts, size)
            assert resp.code == 200, body
            acked[("b", "e", ts)] = size
    finally:
        await stop()
    # Freshly started, the daemon holds no file open for writing, so the
    # file system can be remounted read-only under it.
    srv, stop = await start_server(data_path)
    try:
        client = Client(srv)
        with contextlib.ExitStack() as undo:
            remount(tmpfs, "ro")
            undo.callback(remount, tmpfs, "rw")
            await check_all(client, acked)
            refusals = []
            for entry, ts, size in ATTEMPTS:
                resp, body = await client.write("b", entry, ts, size)
                refusals.append(assert_server_error(resp, body, ("read-only", entry, ts, size)))
            resp, body = await client.call("POST", "/b/other")
            assert_server_error(resp, body, "bucket creation on a read-only disk")
            await check_absent(client, [("b", e, ts) for e, ts, _ in ATTEMPTS if e == "e"])
            await check_all(client, acked)
        for entry, ts, size in ATTEMPTS:
            resp, body = await client.write("b", entry, ts, size)
            assert resp.code == 200, ("writable again", entry, ts, resp.code, body)
            acked[("b", entry, ts)] = size
        await check_all(client, acked)
    finally:
        await stop()
    print(f"\nread-only: refusals {sorted(set(refusals))}")
    assert not log_errors, describe(log_errors)
