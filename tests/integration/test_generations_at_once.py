"""
Every official client generation the project pins, against ONE daemon that
advertises ``x-reduct-api: 1.20``, at the same time (issue #15, "Done
when"): reduct-py 1.4.1 (never reads the header), reduct-py 1.10.0
(``(1, 20)`` → the 1.10 batch path), reduct-py 1.21.0 and reduct-js 1.20.0
(the I/O API and the 1.19+ token body), each in its own bucket.
"""

import pytest_twisted
from twisted.internet.defer import DeferredList, ensureDeferred

from tests import clients
from tests.integration.test_clients import run_client_script
from tests.integration.test_js_client import reduct_js, run_js_script  # noqa: F401 (fixture)


@pytest_twisted.ensureDeferred
async def test_every_generation_against_one_1_20_daemon(
    server, reduct_py_oldest, reduct_py_middle, reduct_py_newest, reduct_js,  # noqa: F811
):
    resp = await server.http.get(server.api("/info"))
    assert resp.headers.getRawHeaders("x-reduct-api") == ["1.20"]
    assert (await resp.json())["version"].startswith("1.20.")
    runs = [
        run_client_script(reduct_py_oldest, "reduct_py_1_4.py", server.url,
                          "--bucket", "gen-14", "--shared-server"),
        run_client_script(reduct_py_middle, "reduct_py_1_10.py", server.url,
                          "--bucket", "gen-110", "--shared-server"),
        run_client_script(reduct_py_newest, "reduct_py_newest.py", server.url,
                          "--bucket", "gen-121", "--shared-server"),
        run_client_script(reduct_py_newest, "reduct_py_io_batches.py", server.url,
                          "--bucket", "gen-121io", "--shared-server"),
        run_js_script(reduct_js, "io.js", server.url, "gen-js"),
    ]
    results = await DeferredList([ensureDeferred(r) for r in runs], consumeErrors=True)
    for succeeded, result in results:
        if not succeeded:
            result.raiseException()
    py14, py110, py121, py121io, js = (result for _, result in results)
    assert py14["version"] == clients.REDUCT_PY_OLDEST
    assert py110["version"] == clients.REDUCT_PY_MIDDLE
    assert py121["version"] == py121io["version"] == clients.REDUCT_PY_NEWEST
    for summary in (py14, py110, py121, py121io, js):
        assert summary["ok"] is True and summary["checks"], summary
