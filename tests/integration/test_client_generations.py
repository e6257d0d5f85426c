"""
The middle reduct-py generation (1.10.x) against the daemon, and the newest
reduct-py's editing calls (issue #6: label updates, record/batch/entry
removal, rename, HARD quota).

Like ``test_clients.py`` (whose helpers this module uses): each client runs
in its own virtualenv as a separate process executing a script from
``tests/client_scripts/``, against the in-process ``server`` fixture or a
daemon started with an API token; the script asserts everything itself and
prints a JSON summary, checked here.
"""

import pytest_twisted

from tests import clients
from tests.integration.conftest import start_server
from tests.integration.test_clients import run_client_script

INIT_TOKEN = "generations-init-token"

#: The checks of reduct_py_1_10.py, in order; the last but one depends on
#: whether the daemon has an API token.
CHECKS_1_10 = [
    "server-info-list-alive",
    "create-bucket-settings-exist-ok",
    "get-bucket-update-settings",
    "write-read-labels-content-type",
    "write-batch-per-record-errors",
    "query-range",
    "query-include-exclude",
    "query-each-n-each-s-limit",
    "batched-read-via-query",
    "subscribe-continuous",
    "entry-list-and-stats",
    "remove-entry",
    "hard-quota-write-refused",
    "errors-with-server-text",
]


async def bucket_names(server) -> list:
    """The listed buckets but ``$system``, which the daemon writes its events to (spec 1.20 §8)."""
    resp = await server.http.get(server.api("/list"))
    return [b["name"] for b in (await resp.json())["buckets"] if b["name"] != "$system"]


@pytest_twisted.ensureDeferred
async def test_reduct_py_1_10(server, reduct_py_middle):
    """
    reduct-py 1.10.0 parses ``x-reduct-api: 1.18`` into ``(1, 18)``; manages
    a bucket with settings (partial updates keep the rest); writes single
    records (also from an async iterator) and batches with per-record 409s;
    queries with ``GET …/q`` (range, include/exclude, ``each_n``,
    ``each_s``, ``limit``) read through ``GET``/``HEAD …/batch`` (200
    records in 85 + 85 + 30); subscribes; removes an entry; meets a HARD
    quota's 400 (single and batched) that it cannot itself configure; sees
    the server's error texts; and the token API of a daemon without
    authentication.
    """
    summary = await run_client_script(
        reduct_py_middle, "reduct_py_1_10.py", server.url, "--bucket", "py110"
    )
    assert summary["version"] == clients.REDUCT_PY_MIDDLE
    assert summary["checks"] == CHECKS_1_10 + ["tokens-auth-disabled", "remove-bucket"]
    assert 1 <= summary["facts"]["hard_quota_records"] <= 4
    assert await bucket_names(server) == []


@pytest_twisted.ensureDeferred
async def test_reduct_py_1_10_with_token(tmp_path, reduct_py_middle):
    """
    The same script with ``RS_API_TOKEN`` set: every call carries the init
    token, and reduct-py 1.10.0 creates, shows, lists and removes a token,
    works within a read-only token's rights (reads, queries, refused writes
    and entry removal) and is refused without a token or with a wrong one.
    """
    server, stop = await start_server(tmp_path / "data", api_token=INIT_TOKEN)
    try:
        summary = await run_client_script(
            reduct_py_middle, "reduct_py_1_10.py", server.url, "--token", INIT_TOKEN,
            "--bucket", "py110-auth",
        )
    finally:
        await stop()
    assert summary["checks"] == CHECKS_1_10 + ["tokens-create-get-list-remove", "remove-bucket"]


@pytest_twisted.ensureDeferred
async def test_reduct_py_newest_edits(server, reduct_py_newest):
    """
    The newest reduct-py's editing calls: ``update`` and ``update_batch``
    (labels merged: empty value removes, others kept, new ones appended;
    404s per record), ``remove_record`` and ``remove_batch`` (removed
    records 404, misses reported per record), ``rename`` of a bucket and
    ``rename_entry`` (readable under the new name, 404 under the old, 409 on
    conflicts), a HARD quota refusing the write that would exceed it, and
    ``remove_entry``.
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_edits.py", server.url, "--bucket", "pyedits"
    )
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == [
        "update-labels",
        "update-labels-batch",
        "remove-record",
        "remove-batch",
        "rename-entry",
        "rename-bucket",
        "hard-quota",
        "remove-entry",
        "remove-bucket",
    ]
    assert summary["facts"]["hard_quota_error"] == "Status 400: Quota of 'pyedits-hard' exceeded"
    assert await bucket_names(server) == []
