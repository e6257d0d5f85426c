"""
Query links through the official clients (spec 1.20 §6.1, §10.1, §10.2):
reduct-py 1.21.0 ``create_query_link`` and reduct-js 1.20.0
``createQueryLink``, both with a record identity, against a daemon with
authentication; each script downloads its links with a plain HTTP client
and asserts everything itself (``tests/client_scripts/reduct_py_links.py``,
``tests/js/links.js``).  reduct-py 1.4 and 1.10 have no links; the body
of the 1.17–1.19.0 clients (no identity, ``index``) is covered by
``test_links.py::test_legacy_index``.
"""

import pytest_twisted

from tests import clients
from tests.integration.conftest import start_server
from tests.integration.test_clients import run_client_script
from tests.integration.test_js_client import reduct_js, run_js_script  # noqa: F401 - fixture

INIT = "links-init-token"
PUBLIC = "http://public.example:8080/reduct/"


@pytest_twisted.ensureDeferred
async def test_reduct_py_query_links(tmp_path, reduct_py_newest):
    """
    reduct-py 1.21.0: a link without ``base_url`` starts with the server's
    ``public_url`` and serves the record with its headers; ``start``,
    ``stop``, ``when``, a file name with slashes and the ``e``/``ts``
    override; several entries and a ``cam-*`` pattern; a range and an
    unsatisfiable one; the client refuses a numeric index at API 1.20; an
    expired link; a read-only token's link, dead once the token is deleted.
    """
    server, stop = await start_server(tmp_path / "data", api_token=INIT, public_url=PUBLIC)
    try:
        summary = await run_client_script(
            reduct_py_newest, "reduct_py_links.py", server.url, "--token", INIT,
            "--public-url", PUBLIC, "--bucket", "pylinks")
    finally:
        await stop()
    assert summary["version"] == clients.REDUCT_PY_NEWEST
    assert summary["checks"] == [
        "public-url-and-identity",
        "query-when-and-override",
        "multi-entry",
        "ranges",
        "client-refuses-index-at-1.20",
        "expired",
        "issuing-token",
        "remove-bucket",
    ]


@pytest_twisted.ensureDeferred
async def test_reduct_js_query_links(tmp_path, reduct_js):  # noqa: F811 - fixture
    """
    reduct-js 1.20.0: ``createQueryLink`` with ``{entry, timestamp}`` for one
    entry and for two (with ``start``, ``stop``, ``when``, a file name), the
    download's headers, the ``e``/``ts`` override and its 404, a suffix
    range, the client's own refusal of a numeric index, an expired link.
    """
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        summary = await run_js_script(reduct_js, "links.js", server.url, "jslinks", INIT)
    finally:
        await stop()
    assert summary["checks"] == [
        "identity",
        "multi-entry-when-override",
        "range",
        "client-refuses-index-at-1.20",
        "expired",
    ]
