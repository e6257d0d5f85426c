"""
The official Python client, two generations, against the daemon.

Each client runs in its own virtualenv (``tests/clients.py``; created under
``.cache/clients/`` on first use, from PyPI) as a separate process executing
a script from ``tests/client_scripts/``.  The daemon is the in-process
``server`` fixture on a real socket; the script is started with
``getProcessOutputAndValue`` so the reactor keeps serving while the client
talks to it.  The script asserts everything itself and prints a JSON
summary, checked here.
"""

import json

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.utils import getProcessOutputAndValue

from tests import clients

#: Seconds a client script may run before it fails itself.
SCRIPT_TIMEOUT = 45


async def run_client_script(python, script: str, *args) -> dict:
    """
    Run ``tests/client_scripts/<script>`` with ``python`` and ``args``
    without blocking the reactor; assert it exits 0 and return its JSON
    summary (the last stdout line).
    """
    from twisted.internet import reactor

    path = clients.script_path(script)
    argv = [str(path), *args, "--timeout", str(SCRIPT_TIMEOUT)]
    d = getProcessOutputAndValue(
        str(python), argv, env=clients.script_env(), path=str(path.parent), reactor=reactor
    )
    # The script enforces its own deadline (asyncio + faulthandler); this one
    # only guards against the process never exiting at all.
    d.addTimeout(SCRIPT_TIMEOUT + 30, reactor)
    out, err, code = await d
    out_text = out.decode("utf-8", "replace")
    err_text = err.decode("utf-8", "replace")
    report = f"{script} exited {code}\n--- stdout ---\n{out_text}\n--- stderr ---\n{err_text}"
    assert code == 0, report
    lines = [line for line in out_text.splitlines() if line.strip()]
    assert lines, report
    try:
        summary = json.loads(lines[-1])
    except ValueError:
        raise AssertionError("no JSON summary\n" + report) from None
    assert summary["ok"] is True, report
    return summary


@pytest_twisted.ensureDeferred
async def test_reduct_py_1_4(server, reduct_py_oldest):
    """
    reduct-py 1.4.1 creates, inspects, updates and removes a bucket; writes
    and reads records with labels and content types; queries with include
    and exclude; receives records written while it is subscribed; uploads a
    record large enough for ``Expect: 100-continue`` and reads it back
    byte-exact; and sees the server's error texts.
    """
    summary = await run_client_script(
        reduct_py_oldest, "reduct_py_1_4.py", server.url, "--bucket", "py14"
    )
    assert summary["version"] == clients.REDUCT_PY_OLDEST
    assert summary["checks"] == [
        "server-info",
        "create-bucket-with-settings",
        "create-bucket-conflict-and-exist-ok",
        "get-bucket-info",
        "update-settings",
        "write-read-labels-content-type",
        "query-range",
        "query-include-exclude",
        "subscribe-continuous",
        "large-write-100-continue",
        "duplicate-writes-refused",
        "server-info-and-list",
        "errors-with-server-text",
        "remove-bucket",
    ]
    # The client's view agrees with the server's: the bucket is gone.
    resp = await server.http.get(server.api("/b/py14"))
    await resp.content()
    assert resp.code == 404


@pytest_twisted.ensureDeferred
async def test_reduct_py_newest(server, reduct_py_newest):
    """
    The newest reduct-py (which reads ``x-reduct-api``) manages buckets with
    settings and ``exist_ok``, writes records with labels and content types,
    reads them back byte-exact with GET and HEAD, and sees the 404 text of a
    missing bucket.
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_newest.py", server.url, "--bucket", "pynew"
    )
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == [
        "server-info",
        "create-bucket-settings-exist-ok",
        "get-bucket-settings-info",
        "write-read-head-labels-content-type",
        "large-write-read",
        "list-and-entry-stats",
        "record-errors",
        "remove-bucket",
        "missing-bucket-error",
    ]
    resp = await server.http.get(server.api("/list"))
    # $system (spec 1.20 §8) holds the daemon's own events: not the client's.
    assert [b for b in (await resp.json())["buckets"] if b["name"] != "$system"] == []


@pytest_twisted.ensureDeferred
async def test_both_generations_at_once(server, reduct_py_oldest, reduct_py_newest):
    """
    The two client generations can use one daemon at the same time, each
    in its own bucket.
    """
    runs = [
        ensureDeferred(
            run_client_script(
                reduct_py_oldest, "reduct_py_1_4.py", server.url,
                "--bucket", "both-old", "--shared-server",
            )
        ),
        ensureDeferred(
            run_client_script(
                reduct_py_newest, "reduct_py_newest.py", server.url,
                "--bucket", "both-new", "--shared-server",
            )
        ),
    ]
    results = await DeferredList(runs, consumeErrors=True)
    for succeeded, result in results:
        if not succeeded:
            result.raiseException()
    old, new = (result for _, result in results)
    assert len(old["checks"]) == 14 and len(new["checks"]) == 9
    resp = await server.http.get(server.api("/list"))
    # $system (spec 1.20 §8) holds the daemon's own events: not the client's.
    assert [b for b in (await resp.json())["buckets"] if b["name"] != "$system"] == []


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_clients_against_real_twistd(tmp_path, reduct_py_oldest, reduct_py_newest):
    """
    Both client generations pass their scripts against the real
    ``twistd -n reduct`` process started from the plugin (not only against
    the in-process site), and the daemon then shuts down cleanly.
    """
    from twisted.internet import reactor

    from tests.integration.test_twistd import start, stop

    daemon, process, api = await start(reactor, tmp_path / "data")
    try:
        url = api[: -len("/api/v1")]
        old = await run_client_script(reduct_py_oldest, "reduct_py_1_4.py", url, "--bucket", "t14")
        new = await run_client_script(reduct_py_newest, "reduct_py_newest.py", url, "--bucket", "tnew")
    finally:
        log = await stop(reactor, daemon, process)
    assert "subscribe-continuous" in old["checks"] and "large-write-100-continue" in old["checks"]
    assert "write-read-head-labels-content-type" in new["checks"]
    assert "Traceback" not in log


@pytest.mark.parametrize("generation", ["oldest", "middle", "newest"])
@pytest_twisted.ensureDeferred
async def test_reduct_py_tokens(tmp_path, generation, request):
    """
    With RS_API_TOKEN set, reduct-py 1.4.1, 1.10.0 and the newest release see the
    init token in ``me()``, are refused without or with a wrong token,
    create, show, list and remove tokens, and work within a read-only and a
    write-only token's rights, with the server's exact error texts.
    """
    from tests.integration.conftest import start_server

    python = request.getfixturevalue(f"reduct_py_{generation}")
    server, stop = await start_server(tmp_path / "data", api_token="client-init-token")
    try:
        summary = await run_client_script(
            python, "reduct_py_tokens.py", server.url, "--token", "client-init-token",
            "--bucket", f"tok-{generation}",
        )
    finally:
        await stop()
    assert summary["checks"] == [
        "me-init-token",
        "unauthenticated-refused",
        "create-tokens",
        "get-and-list-tokens",
        "read-only-token",
        "write-only-token",
        "remove-tokens",
    ]


@pytest_twisted.ensureDeferred
async def test_reduct_py_newest_batches(server, reduct_py_newest):
    """
    The newest reduct-py writes batches with ``Bucket.write_batch`` (mixed
    sizes, a record above 1 MiB, labels, content types, added out of order)
    and reads them back singly byte-exact; gets a duplicate as a per-record
    409 while the rest of that batch is stored; and its own batched-read
    parser (``parse_batched_records_v1``, the loop ``Bucket.query`` runs)
    reads GET and HEAD batches, 85 records per batch.  The query itself is
    created with ``GET …/q`` (``Bucket.query``, with ``POST …/q``, is
    exercised by ``test_reduct_py_newest_query``).
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_batch.py", server.url, "--bucket", "pybatch"
    )
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == [
        "write-batch-read-singly",
        "write-batch-per-record-errors",
        "batched-read-parsed-by-client",
        "batched-read-85-per-batch",
        "write-batch-missing-bucket",
        "remove-bucket",
    ]
    resp = await server.http.get(server.api("/list"))
    # $system (spec 1.20 §8) holds the daemon's own events: not the client's.
    assert [b for b in (await resp.json())["buckets"] if b["name"] != "$system"] == []


@pytest_twisted.ensureDeferred
async def test_reduct_py_newest_tricky_labels(server, reduct_py_newest):
    """
    Label values with quotes and ``=`` (``"quoted"``, ``"open``, ``x=y``,
    unicode) written by the newest reduct-py's ``write_batch`` come back
    unchanged through its v1 batched-read loop; values and content types
    with commas are stored intact (read singly) and, in a v1 batch, turn
    into no extra labels (#12).  Through batch protocol v2
    (``write_record_batch``, ``Bucket.query`` at API 1.18) values with
    commas, ``=``, inner quotes and unicode round-trip; a value starting
    with ``"`` loses its quotes (a limit of the format, spec 1.20 §1.2).
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_labels.py", server.url, "--bucket", "pylabels"
    )
    assert summary["checks"] == [
        "write-batch-read-singly",
        "batched-read-no-extra-labels",
        "v2-batched-read",
        "remove-bucket",
    ]


@pytest_twisted.ensureDeferred
async def test_reduct_py_newest_query(server, reduct_py_newest):
    """
    The newest reduct-py's own ``Bucket.query`` (at API 1.18 ``POST
    /io/:bucket/q`` then ``/io/:bucket/read`` batches, also for one entry)
    with ranges and ``when`` conditions (``$or``/``$in``, missing labels,
    ``$each_n``, ``$each_t``, ``$limit``), a strict query raising
    ``Reference 'score' not found``, the 422s of a bad operator and an
    extension, ``head=True`` (only_metadata) with ``#select_labels``;
    ``remove_query`` (``REMOVE``) by range and ``when``, and with only the
    entry (all of it, spec 1.20 §1.4); and ``subscribe`` receiving the
    matching records written while it is subscribed.
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_query.py", server.url, "--bucket", "pyquery"
    )
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == [
        "query-when",
        "query-stateful-operators",
        "query-strict-and-errors",
        "query-head-select-labels",
        "remove-query",
        "subscribe-continuous",
        "remove-bucket",
    ]
    assert summary["facts"]["strict_error"] == "Status 404: Reference 'score' not found"
    resp = await server.http.get(server.api("/list"))
    # $system (spec 1.20 §8) holds the daemon's own events: not the client's.
    assert [b for b in (await resp.json())["buckets"] if b["name"] != "$system"] == []


@pytest_twisted.ensureDeferred
async def test_reduct_py_newest_replications(server, reduct_py_newest):
    """
    The newest reduct-py creates a replication between two buckets of the
    daemon (``dst_host`` is the daemon itself) with ``entries`` and a
    ``when`` filter, lists it, reads its details (``when`` echoed,
    ``dst_token`` null), sees the matching records arrive byte-exact in the
    destination, updates it, meets the error texts of a duplicate, a bad
    host, a missing source bucket, a bad condition, a copy onto itself and
    a missing replication, and deletes it (then ``Replication '<name>' does
    not exist``).
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_replication.py", server.url, "--bucket", "pyrepl"
    )
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == [
        "create",
        "list",
        "get-detail",
        "records-replicated",
        "update",
        "errors",
        "delete",
        "remove-buckets",
    ]
    resp = await server.http.get(server.api("/replications"))
    assert (await resp.json())["replications"] == []
