"""
reduct-py 1.21.0 reading the ``$system`` bucket (spec 1.20 §8) of an
in-process daemon with authentication on, through its own API
(``tests/client_scripts/reduct_py_system.py``, run as in ``test_clients.py``).
"""

import pytest_twisted

from tests import clients
from tests.integration.conftest import running_server
from tests.integration.test_clients import run_client_script

INIT = "init-secret"


@pytest_twisted.ensureDeferred
async def test_reduct_py_reads_system_bucket(tmp_path, reduct_py_newest):
    """
    After audited calls, a 401 and a usage event have been written, reduct-py
    1.21.0 lists ``$system``, reads its info and entries, reads audit
    records (JSON, the §8.3 fields, label ``status``), filters on the label
    with ``when`` and reads usage records with a multi-entry pattern query.
    """
    async with running_server(tmp_path / "data", api_token=INIT, instance_name="py-node") as server:
        auth = {"Authorization": f"Bearer {INIT}"}
        for _ in range(2):
            resp = await server.http.get(server.api("/info"), headers=auth)
            assert resp.code == 200
            await resp.content()
        resp = await server.http.get(server.api("/info"))
        assert resp.code == 401
        await resp.content()
        events = server.site.router.events
        events.queue_usage()
        assert events.flush() >= 3
        summary = await run_client_script(
            reduct_py_newest, "reduct_py_system.py", server.url, "--bucket", "py-node",
            "--token", INIT,
        )
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == [
        "listed-and-info", "entries", "audit-records", "when-on-status-label",
        "usage-multi-entry-query",
    ]


@pytest_twisted.ensureDeferred
async def test_every_reduct_py_generation_beside_system_bucket(
    tmp_path, reduct_py_oldest, reduct_py_middle, reduct_py_newest
):
    """
    With ``$system`` present from the start (events written before the
    scripts run), reduct-py 1.4.1, 1.10.0 and 1.21.0 run their whole
    scripts against the one daemon: an extra ``$``-named bucket in ``/list``
    and ``/info`` counts breaks none of them (spec 1.20 §10.1–§10.3).
    """
    async with running_server(tmp_path / "data", instance_name="gen") as server:
        resp = await server.http.get(server.api("/info"))
        await resp.content()
        assert server.site.router.events.flush() >= 1
        assert server.engine.has_bucket("$system")
        for python, script, version, count in (
            (reduct_py_oldest, "reduct_py_1_4.py", clients.REDUCT_PY_OLDEST, 14),
            (reduct_py_middle, "reduct_py_1_10.py", clients.REDUCT_PY_MIDDLE, None),
            (reduct_py_newest, "reduct_py_newest.py", clients.REDUCT_PY_NEWEST, 9),
        ):
            summary = await run_client_script(python, script, server.url, "--bucket", "gen")
            assert summary["version"] == version
            if count is not None:
                assert len(summary["checks"]) == count, summary["checks"]
        resp = await server.http.get(server.api("/list"))
        assert [b["name"] for b in (await resp.json())["buckets"]] == ["$system"]
