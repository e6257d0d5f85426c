"""
The official JavaScript client (reduct-js, pinned in ``tests/js/``) against
the daemon, through Node.

``npm ci`` installs ``tests/js/package-lock.json`` once under ``.cache/js/``
(``tests/clients.py``); the scripts of ``tests/js/`` run with ``node`` and
find reduct-js through ``NODE_PATH``.  The daemon is the in-process
``server`` fixture on a real socket; the script runs as a child process so
the reactor keeps serving, asserts everything itself and prints a JSON
summary, checked here.  Without ``node``/``npm`` the tests skip on a
developer box and fail in CI (``.ci/run`` sets ``REDUCT_TWISTED_CI``).
"""

import json
import os
import shutil

import pytest
import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from tests import clients

#: Seconds a script may run.
SCRIPT_TIMEOUT = 60


#: Set by ``.ci/run``: in CI a missing Node fails these tests instead of skipping them.
CI_ENV = "REDUCT_TWISTED_CI"


@pytest.fixture(scope="session")
def reduct_js():
    """
    The ``node_modules`` with the pinned reduct-js (installed on first use).
    On a developer box without ``node``/``npm`` the tests skip and say why;
    in CI (``.ci/run`` sets ``REDUCT_TWISTED_CI``) they fail.
    """
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing and not os.environ.get(CI_ENV):
        pytest.skip(f"{' and '.join(missing)} not installed: the reduct-js tests need Node 20 "
                    f"and npm (.ci/run installs them; {CI_ENV}=1 makes this a failure)")
    return clients.js_node_modules()


async def run_js_script(node_modules, script: str, *args) -> dict:
    """Run ``tests/js/<script>`` with node; assert it exits 0 and return its summary."""
    from twisted.internet import reactor

    node = shutil.which("node")
    assert node, "node is not installed (see .ci/run)"
    path = clients.JS_DIR / script
    d = getProcessOutputAndValue(
        node, [str(path), *args], env=clients.js_env(node_modules), path=str(path.parent),
        reactor=reactor,
    )
    d.addTimeout(SCRIPT_TIMEOUT, reactor)
    out, err, code = await d
    report = (f"{script} exited {code}\n--- stdout ---\n{out.decode('utf-8', 'replace')}"
              f"\n--- stderr ---\n{err.decode('utf-8', 'replace')}")
    assert code == 0, report
    lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.strip()]
    assert lines, report
    summary = json.loads(lines[-1])
    assert summary["ok"] is True, report
    return summary


@pytest_twisted.ensureDeferred
async def test_reduct_js_tricky_labels(server, reduct_js):
    """
    reduct-js 1.20.0 writes a batch with label values holding quotes
    (``"quoted"``, ``"open``, ``a",b``), commas and ``=`` and content types
    with commas; every value reads back unchanged singly, the comma-free ones
    also through its v1 batched read, where the others add no labels (through
    batch protocol v2, ``RecordBatch`` and ``bucket.query`` at API 1.18, the
    values with commas round-trip too, and one starting with ``"`` loses its
    quotes, a limit of the format); a
    non-ASCII value is refused (by fetch above U+00FF, else by the daemon:
    Latin-1 bytes are not UTF-8) (#12).
    """
    summary = await run_js_script(reduct_js, "labels.js", server.url, "jslabels")
    assert summary["checks"] == [
        "write-batch-read-singly",
        "batched-read-no-extra-labels",
        "v2-batched-read",
        "non-ascii-refused",
        "remove-bucket",
    ]
    assert "greater than 255" in summary["facts"]["euro_error"]
    resp = await server.http.get(server.api("/list"))
    # $system (spec 1.20 §8) holds the daemon's own events: not the client's.
    assert [b for b in (await resp.json())["buckets"] if b["name"] != "$system"] == []


@pytest_twisted.ensureDeferred
async def test_reduct_js_io_api(server, reduct_js):
    """
    reduct-js 1.20.0 against API 1.18: a ``RecordBatch`` into three entries
    (one nested) written in one ``POST /io/:bucket/write`` and read back
    singly, a duplicate as a per-record 409 beside stored records; queries
    over several entries, ``js-*``/``js*``/``*`` patterns, a range with
    ``when``, HEAD only, and 210 records of three entries interleaved in
    time read back exactly, a continuous query over two entries with
    ``when`` receiving what is written meanwhile; update and remove batches across entries with
    per-record 404s and a remove query over two entries; attachments
    (written, read, a removal matching nothing, one key, all); a
    stream-bodied single write (chunked with ``x-reduct-content-length``)
    byte-exact; ``setReplicationMode`` paused / disabled and its 404; last,
    the removal of an attachment whose key starts with ``$`` (sent as a
    ``$$…`` literal, spec 1.20 §6.3).

    Multi-entry write batches here never interleave entries in time:
    reduct-js ≥ 1.19.2 writes such a body timestamp-first while every
    correct server reads it entry-first (spec 1.20 §1.9), so an interleaved
    write batch from this client is stored with contents swapped — a client
    limit no server can repair.
    """
    summary = await run_js_script(reduct_js, "io.js", server.url, "jsio")
    assert summary["checks"] == [
        "record-batch-write",
        "record-batch-per-record-errors",
        "query-multi-entry",
        "query-interleaved",
        "continuous-query",
        "record-batch-update",
        "record-batch-remove-and-remove-query",
        "attachments",
        "stream-write-chunked",
        "replication-mode",
        "attachments-dollar-key",
        "remove-bucket",
    ]
    assert summary["facts"]["interleaved_records"] == 210
    resp = await server.http.get(server.api("/list"))
    # $system (spec 1.20 §8) holds the daemon's own events: not the client's.
    assert [b for b in (await resp.json())["buckets"] if b["name"] != "$system"] == []
    resp = await server.http.get(server.api("/replications"))
    assert (await resp.json())["replications"] == []


@pytest_twisted.ensureDeferred
async def test_reduct_js_stream_write(server, reduct_js):
    """
    reduct-js 1.20.0 writes records from a ReadableStream: a chunked body
    with ``x-reduct-content-length`` (spec 1.20 §5.2), small, 3 MiB and
    empty, read back whole; a stream longer or shorter than the size it
    gives is refused with 400 and not stored.
    """
    summary = await run_js_script(reduct_js, "stream_write.js", server.url, "jsstream")
    assert summary["checks"] == [
        "stream-small", "stream-large", "stream-empty", "stream-length-held", "remove-bucket",
    ]
    assert summary["facts"] == {
        "longer": "400 Content is bigger than in content-length",
        "shorter": "400 Content is shorter than expected",
    }
