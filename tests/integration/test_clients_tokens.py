"""
Tokens v2 (spec 1.20 §4) through the newest official clients: reduct-py
1.21.0 (``tests/client_scripts/reduct_py_tokens_v2.py``) and reduct-js
1.20.0 (``tests/js/tokens.js``), each against a daemon started with
``RS_API_TOKEN``, run as in ``test_clients.py`` and ``test_js_client.py``.
"""

import pytest_twisted

from tests import clients
from tests.integration.conftest import start_server
from tests.integration.test_clients import run_client_script
from tests.integration.test_js_client import reduct_js, run_js_script  # noqa: F401 (fixture)

INIT = "client-init-token"


async def token_names(server) -> list:
    resp = await server.http.get(server.api("/tokens"), headers={"Authorization": [f"Bearer {INIT}"]})
    return [t["name"] for t in (await resp.json())["tokens"]]


@pytest_twisted.ensureDeferred
async def test_reduct_py_tokens_v2(tmp_path, reduct_py_newest):
    """
    reduct-py 1.21.0 creates a token with expires_at, ttl and ip_allowlist
    (nested body), reads them back with get_token, get_token_list and me,
    uses it, rotates it (old value 401 at once, new value works), is refused
    from an address outside an allowlist, and gets the 409/422 texts.
    """
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        summary = await run_client_script(
            reduct_py_newest, "reduct_py_tokens_v2.py", server.url, "--token", INIT, "--bucket", "tokv2"
        )
        assert summary["version"] == clients.REDUCT_PY_NEWEST
        assert summary["checks"] == [
            "me-v2-fields",
            "create-and-get-v2",
            "v2-token-works",
            "rotate-token",
            "ip-allowlist-refuses",
            "create-refusals",
            "cleanup",
        ]
        assert await token_names(server) == ["init-token"]
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_reduct_js_tokens_v2(tmp_path, reduct_js):
    """
    reduct-js 1.20.0's createToken sends the nested body with expiresAt, ttl
    and ipAllowlist; getToken, getTokenList and me parse the new fields;
    rotateToken (body ``{}``) invalidates the old value at once; an
    allowlist refuses the loopback client; ttl 0 is refused.
    """
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        summary = await run_js_script(reduct_js, "tokens.js", server.url, INIT, "jstok")
        assert summary["checks"] == [
            "me-v2-fields", "create-and-get-v2", "rotate-token", "refusals", "cleanup",
        ]
        assert await token_names(server) == ["init-token"]
    finally:
        await stop()
