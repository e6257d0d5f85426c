"""
reduct-js 1.20.0 against the limits of spec 1.20 §5.10 (``tests/js/limits.js``,
run like the other reduct-js scripts by ``test_js_client.run_js_script``):
the storage cap answers 500 "storage limit exceeded" to a single write and
in a batch's per-record errors, the egress limit 429 with upstream's text.
"""

import pytest_twisted

from reduct_twisted.config_limits import RateLimit
from tests.integration.conftest import start_server
from tests.integration.test_js_client import reduct_js, run_js_script  # noqa: F401


@pytest_twisted.ensureDeferred
async def test_reduct_js_sees_the_limits(tmp_path, reduct_js):  # noqa: F811
    srv, stop = await start_server(tmp_path / "data", engine_max_storage_size=8 << 10,
                                   rate_limit_egress=RateLimit(1000, 3600))
    try:
        summary = await run_js_script(reduct_js, "limits.js", srv.url, "jslimits")
        assert summary["checks"] == [
            "storage-cap-single", "storage-cap-batch", "egress-rate-limit",
        ]
        assert summary["facts"]["egress_error"].startswith(
            "rate limit for egress bytes (client 127.0.0.1) exceeded: used=1.2 KB (1200)")
    finally:
        await stop()
