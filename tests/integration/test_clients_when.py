"""
The newest official clients using the ``when`` additions of API 1.19–1.20
(spec 1.20 §6.3) against the daemon over a real socket: reduct-py 1.21.0
(``tests/client_scripts/reduct_py_when.py``, run like the scripts of
``test_clients.py``) and reduct-js 1.20.0 (``tests/js/when.js``, run like
those of ``test_js_client.py``).
"""

import pytest_twisted

from tests import clients
from tests.integration.test_clients import run_client_script
from tests.integration.test_js_client import reduct_js, run_js_script  # noqa: F401 (a fixture)


async def bucket_names(server) -> list:
    resp = await server.http.get(server.api("/list"))
    return [b["name"] for b in (await resp.json())["buckets"]]


@pytest_twisted.ensureDeferred
async def test_reduct_py_when_date_parts_and_gate(server, reduct_py_newest):
    """
    reduct-py 1.21.0 queries one and two entries with ``$hour`` in
    Europe/Berlin and UTC, ``$day``/``$weekday`` across midnight; a bad zone
    in a label fails the record (lenient) or the query with the 422 text
    (strict); ``$hour`` without operands is a 422; ``$gate`` keeps 3 s after
    each rising edge of a sequence; an extension and an object item in
    ``#select_labels`` are refused with upstream's texts.
    """
    summary = await run_client_script(
        reduct_py_newest, "reduct_py_when.py", server.url, "--bucket", "pywhen"
    )
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == [
        "when-date-parts-time-zone",
        "when-date-part-errors",
        "when-gate",
        "when-extensions-and-directives",
        "remove-bucket",
    ]
    assert await bucket_names(server) == []


@pytest_twisted.ensureDeferred
async def test_reduct_js_when_query(server, reduct_js):
    """
    reduct-js 1.20.0 runs one query over two entries with ``$hour`` in
    Europe/Berlin and ``$gate`` (records at every hour of a day, a level
    high from 09:00 to 14:00 UTC, the afternoon in Berlin first: the gate
    opens at 10:00 UTC, so 10, 11 and 12 UTC come back from both entries,
    in time order) and gets the 422 text of a ``$gate`` without
    its condition.
    """
    summary = await run_js_script(reduct_js, "when.js", server.url, "jswhen")
    assert summary["checks"] == ["query-hour-berlin-gate", "query-gate-422", "remove-bucket"]
    assert await bucket_names(server) == []
