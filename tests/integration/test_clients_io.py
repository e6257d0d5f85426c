"""
The newest reduct-py (1.21.0) against the 1.18–1.19 data plane of a daemon
that advertises ``x-reduct-api: 1.18`` (spec 1.20 §1.9, §3.2, §10.1, §10.4):
multi-entry batches and queries through the I/O API, nested entry paths,
attachments, replication modes.

Same pattern as ``test_clients.py`` (whose runner this module uses): each
script runs in the client's own virtualenv as a separate process against
the in-process ``server`` fixture on a real socket, asserts everything
itself and prints a JSON summary, checked here together with what the
server itself says afterwards.
"""

import pytest
import pytest_twisted

from tests import clients
from tests.integration.conftest import start_server
from tests.integration.test_clients import run_client_script


async def bucket_names(server) -> list:
    """The listed buckets but ``$system``, which the daemon writes its events to (spec 1.20 §8)."""
    resp = await server.http.get(server.api("/list"))
    return [b["name"] for b in (await resp.json())["buckets"] if b["name"] != "$system"]


@pytest_twisted.ensureDeferred
async def test_reduct_py_record_batches(server, reduct_py_newest):
    """
    reduct-py 1.21.0's ``write_record_batch`` writes records of three entries
    in one ``POST /io/:bucket/write`` (labels, content types, a label removed
    between records, a value with a comma, an empty record, a 2 MiB record in
    the middle) and every record reads back byte-exact; a record with a bad
    entry name (first in the body) and a duplicate come back as per-record
    422 and 409 keyed by entry and timestamp while the records around them
    are stored; a batch into a missing bucket gets one 404 per record;
    ``update_record_batch`` changes and removes labels across entries (404s
    for an unknown record and entry); ``remove_record_batch`` removes across
    entries (404 for an unknown record); 80 records of four entries
    interleaved in time in one batch (reduct-py writes entry by entry) read
    back with a query; empty batches are accepted; nested
    names (``site/line-1/cell``) are written, updated and removed through
    the same calls.
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_io_batches.py", server.url, "--bucket", "pyio"
    )
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == [
        "write-record-batch-multi-entry",
        "write-record-batch-per-record-errors",
        "write-record-batch-missing-bucket",
        "update-record-batch",
        "remove-record-batch",
        "write-record-batch-80-records",
        "empty-batches",
        "nested-entry-names",
        "remove-bucket",
    ]
    assert await bucket_names(server) == []


@pytest_twisted.ensureDeferred
async def test_reduct_py_multi_entry_query(server, reduct_py_newest):
    """
    reduct-py 1.21.0 queries through ``POST /io/:bucket/q`` and
    ``GET|HEAD /io/:bucket/read``: several entries by name (unknown names
    ignored), patterns ``cam*``, ``cam-1*`` and ``*``, ranges, ``when``,
    ``$limit`` counted per entry, a strict error, HEAD-only reads; 320+
    records of four entries interleaved in time (runs, round-robin stretches,
    shared timestamps), each with its own content, labels and content type,
    all read back exactly (the server never sends an interleaved batch,
    §1.9 rule 2), and 360 records in several full batches; a subscription
    over two entries; remove queries over two entries, over a pattern with
    ``when``, and of a whole entry.
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_io_query.py", server.url, "--bucket", "pyioq"
    )
    assert summary["checks"] == [
        "query-multi-entry",
        "query-wildcards",
        "query-when-limit",
        "query-head",
        "query-interleaved",
        "query-many-batches",
        "subscribe-multi-entry",
        "remove-query-multi-entry",
        "remove-bucket",
    ]
    assert summary["facts"]["interleaved_records"] >= 320
    assert await bucket_names(server) == []


@pytest_twisted.ensureDeferred
async def test_reduct_py_nested_and_attachments(server, reduct_py_newest):
    """
    reduct-py 1.21.0 writes and reads ``factory-1/line-2/cell-3`` (single
    and v1 batch writes), sees the parents listed with ``status: READY``
    and counted, queries nested entries by name and pattern; writes,
    reads, upserts and removes attachments (a removal that matches nothing,
    one key, all), never sees ``$meta`` in the entry list or a pattern's
    results, cannot remove a ``$meta`` entry; renames a parent with its
    children and attachments, moves a child under a new parent, and removes
    a parent with its children; last, removes attachments whose keys start
    with ``$`` and ``$$`` (the client sends them as ``$$…`` / ``$$$…``
    literals in ``when``, spec 1.20 §6.3).
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_nested.py", server.url, "--bucket", "pynested"
    )
    assert summary["checks"] == [
        "write-read-nested",
        "bucket-info-nested-status",
        "query-nested",
        "attachments-write-read",
        "attachments-upsert",
        "attachments-remove-nothing-matches",
        "attachments-remove",
        "meta-entry-not-removable",
        "rename-parent-with-children",
        "remove-parent-with-children",
        "attachments-remove-dollar-keys",
        "remove-bucket",
    ]
    assert await bucket_names(server) == []


@pytest_twisted.ensureDeferred
async def test_reduct_py_replication_mode(server, reduct_py_newest):
    """
    reduct-py 1.21.0 creates a replication (sending the 1.21-dev
    ``dst_prefix``/``compression``, not echoed), pauses it with
    ``set_replication_mode`` (records are logged, not sent), enables it
    (the log is sent), disables it (nothing logged, inactive), sets the mode
    through an update and back to ``enabled`` with an update without
    ``mode``, and meets the 404 of a missing replication.
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_replication_mode.py", server.url, "--bucket", "pymode"
    )
    assert summary["checks"] == [
        "create-enabled",
        "paused-logs-and-holds",
        "enabled-sends-the-log",
        "disabled-drops",
        "update-and-errors",
        "remove",
    ]
    resp = await server.http.get(server.api("/replications"))
    assert (await resp.json())["replications"] == []
    assert await bucket_names(server) == []


@pytest_twisted.ensureDeferred
async def test_reduct_py_io_token_rights(tmp_path, reduct_py_newest):
    """
    With ``RS_API_TOKEN`` set, reduct-py 1.21.0's multi-entry calls meet the
    I/O API's rights: a read token queries several entries and is refused
    (403, exact text) multi-entry writes, updates, removals and remove
    queries; a write token does all of those and is refused queries and
    attachment reads; without a token every call gets 401.
    """
    server, stop = await start_server(tmp_path / "data", api_token="io-init-token")
    try:
        summary = await run_client_script(
            reduct_py_newest, "reduct_py_io_auth.py", server.url, "--token", "io-init-token",
            "--bucket", "pyioauth",
        )
    finally:
        await stop()
    assert summary["checks"] == ["read-token", "write-token", "no-token", "remove"]


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_reduct_py_io_against_real_twistd(tmp_path, reduct_py_newest):
    """
    The multi-entry batch and query scripts pass against the real
    ``twistd -n reduct`` process too (the plugin's service tree, its own
    thread pool and syncer), which then shuts down cleanly with no
    traceback in its log.
    """
    from twisted.internet import reactor

    from tests.integration.test_twistd import start, stop

    daemon, process, api = await start(reactor, tmp_path / "data")
    try:
        url = api[: -len("/api/v1")]
        batches = await run_client_script(
            reduct_py_newest, "reduct_py_io_batches.py", url, "--bucket", "tio"
        )
        query = await run_client_script(
            reduct_py_newest, "reduct_py_io_query.py", url, "--bucket", "tioq"
        )
    finally:
        log = await stop(reactor, daemon, process)
    assert batches["checks"][-1] == "remove-bucket" and len(batches["checks"]) == 9
    assert "query-interleaved" in query["checks"] and query["checks"][-1] == "remove-bucket"
    assert "Traceback" not in log
