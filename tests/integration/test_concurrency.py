"""
Many large uploads at once, over real sockets, into the real engine.

64 uploads of 10 MiB each are started together (16 entries x 4 records, so
four concurrent writers share every entry), each on its own connection.
Every record must land intact (sha256 of the read-back body), the bucket
statistics must count all of them, and the data directory must hold
nothing beyond what the records need: no temporary or half-written files,
no ``incoming`` directory, an empty ``.trash``.
"""

import hashlib
import json
import os
import re

import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.task import cooperate
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IBodyProducer
from treq import collect
from treq.client import HTTPClient
from zope.interface import implementer

MIB = 1 << 20
RECORD_SIZE = 10 * MIB
ENTRIES = 16
PER_ENTRY = 4
UPLOADS = ENTRIES * PER_ENTRY
#: All uploads in flight at once; the semaphore only bounds the loop.
CONCURRENCY = UPLOADS
#: Seconds any single request may take before the test fails.
REQUEST_TIMEOUT = 120
T0 = 1_650_000_000_000_000
CHUNK = 256 * 1024

#: Files the engine may keep for records (see reduct_twisted/storage/engine.py).
_BUCKET_FILES = {"settings.json"}
_ENTRY_FILE = re.compile(r"\d{1,20}(-\d{1,20})?\.(meta|blk)")


@implementer(IBodyProducer)
class RotatedBody:
    """
    A body of ``len(base)`` bytes: ``base`` rotated left by ``offset``,
    produced in chunks without materialising the whole body, so 64 bodies
    of 10 MiB cost one shared buffer.  Honours pause/resume (backpressure).
    """

    def __init__(self, base: bytes, offset: int) -> None:
        self.base = memoryview(base)
        self.offset = offset % len(base)
        self.length = len(base)
        self._task = None

    def sha256(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.base[self.offset :])
        digest.update(self.base[: self.offset])
        return digest.hexdigest()

    def _chunks(self, consumer):
        size = self.length
        sent = 0
        while sent < size:
            start = (self.offset + sent) % size
            end = min(start + CHUNK, size, start + (size - sent))
            consumer.write(bytes(self.base[start:end]))
            sent += end - start
            yield None

    def startProducing(self, consumer) -> Deferred:
        self._task = cooperate(self._chunks(consumer))
        return self._task.whenDone().addCallback(lambda _: None)

    def pauseProducing(self) -> None:
        self._task.pause()

    def resumeProducing(self) -> None:
        self._task.resume()

    def stopProducing(self) -> None:
        self._task.stop()


#: The server's event bucket (spec 1.20 §8), left out of the file checks below.
SYSTEM = "$system"


def stray_files(data_path) -> list:
    """
    :return: paths (relative to ``data_path``) the records do not need.
    """
    stray = []
    for dirpath, dirnames, filenames in os.walk(data_path):
        if dirpath == str(data_path) and SYSTEM in dirnames:
            dirnames.remove(SYSTEM)  # the server's own events (nested entries)
        rel = os.path.relpath(dirpath, data_path)
        depth = 0 if rel == "." else rel.count(os.sep) + 1
        if depth == 2 and ".log" in dirnames:
            dirnames.remove(".log")  # the entry's record log (issue #16)
        for name in filenames:
            path = os.path.normpath(os.path.join(rel, name))
            # run and format markers, the query links' signing key
            if depth == 0 and name in (".running", ".reduct-twisted", ".link-key", ".log-key"):
                continue
            if depth == 1 and name in _BUCKET_FILES:
                continue
            if depth == 2 and (_ENTRY_FILE.fullmatch(name) or name == ".blocks"):
                continue  # block files, the block index (issue #17)
            stray.append(path)
        for name in dirnames:
            path = os.path.normpath(os.path.join(rel, name))
            if depth == 0 and name == ".trash":
                continue
            if depth > 1 or name in ("incoming", "tmp"):
                stray.append(path + "/")
    return sorted(stray)


def data_bytes(data_path) -> int:
    """:return: the total size of the ``.blk`` files below ``data_path``."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(data_path):
        if dirpath == str(data_path) and SYSTEM in dirnames:
            dirnames.remove(SYSTEM)  # the server's own events

        total += sum(
            os.path.getsize(os.path.join(dirpath, n)) for n in filenames if n.endswith(".blk")
        )
    return total


def timed(d: Deferred, what: str) -> Deferred:
    from twisted.internet import reactor

    return d.addTimeout(REQUEST_TIMEOUT, reactor).addErrback(_fail, what)


def _fail(failure, what):
    raise AssertionError(f"{what}: {failure.getErrorMessage() or failure.type.__name__}")


@pytest_twisted.ensureDeferred
async def test_64_concurrent_10mib_uploads(server):
    """
    64 concurrent 10 MiB uploads (four per entry) all land: each reads back
    with the same sha256, the bucket counts 4 records in each of 16 entries,
    and the data directory holds only block files, metadata and settings.
    """
    from twisted.internet import reactor

    resp = await server.http.post(server.api("/b/load"))
    await resp.content()
    assert resp.code == 200

    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    base = os.urandom(RECORD_SIZE)
    uploads = {}
    for i in range(UPLOADS):
        entry = f"e{i % ENTRIES:02d}"
        ts = T0 + i * 1_000
        uploads[(entry, ts)] = RotatedBody(base, i * 163_841 + 1)
    assert len({b.offset for b in uploads.values()}) == UPLOADS
    expected = {key: body.sha256() for key, body in uploads.items()}

    sem = DeferredSemaphore(CONCURRENCY)
    results = {}

    async def upload(entry, ts, body):
        url = server.api(f"/b/load/{entry}")
        resp = await timed(
            http.post(
                url,
                params={"ts": str(ts)},
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            ),
            f"POST {entry}@{ts}",
        )
        text = await resp.content()
        results[(entry, ts)] = (resp.code, resp.headers.getRawHeaders("x-reduct-error"), text)

    try:
        # Everything is started before anything is awaited: 64 in flight.
        outcome = await DeferredList(
            [
                sem.run(lambda e=entry, t=ts, b=body: Deferred.fromCoroutine(upload(e, t, b)))
                for (entry, ts), body in uploads.items()
            ],
            consumeErrors=True,
        )
        for ok, result in outcome:
            if not ok:
                result.raiseException()
        failed = {k: v for k, v in results.items() if v[0] != 200}
        assert not failed, f"{len(failed)} uploads failed: {sorted(failed.items())[:5]}"

        got = {}

        async def download(entry, ts):
            digest = hashlib.sha256()
            resp = await timed(
                http.get(server.api(f"/b/load/{entry}"), params={"ts": str(ts)}),
                f"GET {entry}@{ts}",
            )
            await collect(resp, digest.update)
            assert resp.code == 200, (entry, ts, resp.code)
            assert resp.length == RECORD_SIZE, (entry, ts, resp.length)
            got[(entry, ts)] = digest.hexdigest()

        outcome = await DeferredList(
            [
                sem.run(lambda e=entry, t=ts: Deferred.fromCoroutine(download(e, t)))
                for entry, ts in uploads
            ],
            consumeErrors=True,
        )
        for ok, result in outcome:
            if not ok:
                result.raiseException()
        mismatched = sorted(k for k in expected if got.get(k) != expected[k])
        assert not mismatched, f"{len(mismatched)} records differ, e.g. {mismatched[:3]}"
    finally:
        await pool.closeCachedConnections()

    resp = await server.http.get(server.api("/b/load"))
    info = json.loads(await resp.content())
    assert info["info"]["entry_count"] == ENTRIES
    assert sorted(e["name"] for e in info["entries"]) == sorted({e for e, _ in uploads})
    for entry in info["entries"]:
        assert entry["record_count"] == PER_ENTRY, entry
        assert entry["size"] >= PER_ENTRY * RECORD_SIZE, entry
    assert info["info"]["size"] >= UPLOADS * RECORD_SIZE

    data_path = str(server.data_path)
    assert stray_files(data_path) == []
    assert os.listdir(os.path.join(data_path, ".trash")) == []
    # Content is stored once: no copies, no pre-allocation left over.
    assert data_bytes(data_path) == UPLOADS * RECORD_SIZE
