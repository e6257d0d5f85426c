"""
The newest official clients and lifecycle policies (spec 1.20 §7, §10.1,
§10.2): reduct-py 1.21.0 (``tests/client_scripts/reduct_py_lifecycles.py``)
and reduct-js 1.20.0 (``tests/js/lifecycles.js``), each against the
in-process server on a real socket, with the runners of
``test_clients.py`` and ``test_js_client.py``.

Before a script starts, a policy ``<bucket>-ran`` has run once (the
server's lifecycle clock is driven here, as in ``test_lifecycles.py``), so
the clients parse a real ``last_run``.
"""

import json

import pytest_twisted

from tests import clients
from tests.integration.helpers import call, ok
from tests.integration.test_clients import run_client_script
from tests.integration.test_js_client import reduct_js, run_js_script  # noqa: F401 (fixture)
from tests.integration.test_lifecycles import drive_lifecycles


async def one_run(server, bucket: str) -> None:
    """Create ``<bucket>`` and policy ``<bucket>-ran``, and make it run once."""
    clock, events = drive_lifecycles(server)
    await ok(await call(server, "POST", f"/b/{bucket}"))
    await ok(await call(server, "POST", f"/lifecycles/{bucket}-ran",
                        {"type": "delete", "bucket": bucket, "older_than": "1h",
                         "interval": "10m"}))
    ran = events.next()
    clock.advance(600)
    await ran


async def names(server) -> list:
    listed = json.loads(await ok(await call(server, "GET", "/lifecycles")))
    return [info["name"] for info in listed["lifecycles"]]


@pytest_twisted.ensureDeferred
async def test_reduct_py_lifecycles(server, reduct_py_newest):
    """
    reduct-py 1.21.0: create (``interval`` null taken as ``3600s``,
    ``processing_interval`` ignored and not echoed), the detail and its
    echoed settings, 409/422/404 texts, update (PUT) to compress in
    ``dry_run``, ``set_lifecycle_mode``, a real ``last_run`` parsed as an
    aware datetime, delete and ``Status 404: Lifecycle '<n>' does not exist``.
    """
    await one_run(server, "pylc")
    summary = await run_client_script(reduct_py_newest, "reduct_py_lifecycles.py", server.url,
                                      "--bucket", "pylc")
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == ["create-and-get", "create-errors", "update", "set-mode",
                                 "last-run", "remove"]
    assert await names(server) == ["pylc-ran"]


@pytest_twisted.ensureDeferred
async def test_reduct_js_lifecycles(server, reduct_js):  # noqa: F811 (fixture)
    """
    reduct-js 1.20.0: create without ``interval`` (``3600s``), the parsed
    info and settings, 409/422 texts, update, ``setLifecycleMode``, the list
    sorted by name, ``lastRun`` a Date, delete and its 404s.
    """
    await one_run(server, "jslc")
    summary = await run_js_script(reduct_js, "lifecycles.js", server.url, "jslc")
    assert summary["checks"] == ["create-and-get", "create-errors", "update", "set-mode",
                                 "last-run", "remove"]
    assert await names(server) == ["jslc-ran"]
