"""
Replication to an ``https`` destination (spec 1.20 §5.3, §9 [1.18.7]): a
second in-process daemon serves TLS with a self-signed certificate for
``localhost`` made in ``tmp_path``.

* by default the certificate is verified: the replication reports errors
  and keeps its records;
* with ``RS_REPLICATION_CA_PATH`` naming that certificate, records arrive
  (and a destination named by an address the certificate does not name
  still fails: host names are checked);
* with ``RS_REPLICATION_VERIFY_SSL=false`` records arrive;
* reduct-py 1.21 creates such a replication with ``dst_prefix`` and
  ``compression`` (accepted, ignored).
"""

import json

import pytest_twisted
from twisted.internet import ssl, task
from twisted.internet.endpoints import SSL4ServerEndpoint

from tests import clients
from tests.integration.conftest import start_server
from tests.integration.helpers import call, ok
from tests.integration.test_clients import run_client_script

T0 = 1_700_000_000_000_000


async def _tls_destination(tmp_path, certificate):
    """A daemon with bucket ``dst``, also listening with TLS; :return: (srv, https port, stop)."""
    from twisted.internet import reactor

    srv, stop = await start_server(tmp_path / "dst")
    cert_path, key_path = certificate
    with open(cert_path) as c, open(key_path) as k:
        options = ssl.PrivateCertificate.loadPEM(k.read() + c.read()).options()
    port = await SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(srv.site)
    await ok(await call(srv, "POST", "/b/dst"))

    async def stop_all():
        await port.stopListening()
        await stop()

    return srv, port.getHost().port, stop_all


async def _replicate(src, host):
    await ok(await call(src, "POST", "/b/src"))
    await ok(await call(src, "POST", "/replications/r", body={
        "src_bucket": "src", "dst_bucket": "dst", "dst_host": host}))
    for i in range(3):
        await ok(await call(src, "POST", f"/b/src/e?ts={T0 + i}", raw=b"tls-%d" % i))


async def _stamps(srv, bucket="dst", entry="e"):
    resp = await call(srv, "GET", f"/b/{bucket}")
    info = json.loads(await ok(resp))
    counts = {e["name"]: e["record_count"] for e in info["entries"]}
    return counts.get(entry, 0)


async def _eventually(condition, seconds=15.0):
    for _ in range(int(seconds / 0.05)):
        if await condition():
            return True
        from twisted.internet import reactor

        await task.deferLater(reactor, 0.05, lambda: None)
    return False


async def _replication(src):
    return json.loads(await ok(await call(src, "GET", "/replications/r")))


async def _assert_arrives(src, dst):
    assert await _eventually(lambda: _count_is(dst, 3)), await _replication(src)
    for i in range(3):
        resp = await call(dst, "GET", f"/b/dst/e?ts={T0 + i}")
        assert await ok(resp) == b"tls-%d" % i
    detail = await _replication(src)
    assert detail["diagnostics"]["hourly"]["errored"] == 0, detail


async def _count_is(srv, n):
    return await _stamps(srv) == n


async def _assert_refused(src, dst):
    async def errored():
        return (await _replication(src))["diagnostics"]["hourly"]["errored"] > 0

    assert await _eventually(errored), await _replication(src)
    detail = await _replication(src)
    assert detail["info"]["pending_records"] == 3, detail
    assert detail["diagnostics"]["hourly"]["ok"] == 0, detail
    assert await _stamps(dst) == 0
    return detail["diagnostics"]["hourly"]["errors"]


@pytest_twisted.ensureDeferred
async def test_unverified_certificate_is_refused_by_default(tmp_path, certificate):
    dst, port, stop_dst = await _tls_destination(tmp_path, certificate)
    src, stop_src = await start_server(tmp_path / "src")
    try:
        await _replicate(src, f"https://localhost:{port}")
        errors = await _assert_refused(src, dst)
        print(f"\nunverified destination: {errors}")
    finally:
        await stop_src()
        await stop_dst()


@pytest_twisted.ensureDeferred
async def test_ca_path_makes_the_destination_trusted(tmp_path, certificate):
    dst, port, stop_dst = await _tls_destination(tmp_path, certificate)
    src, stop_src = await start_server(tmp_path / "src", replication_ca_path=certificate[0])
    try:
        await _replicate(src, f"https://localhost:{port}")
        await _assert_arrives(src, dst)
    finally:
        await stop_src()
        await stop_dst()


@pytest_twisted.ensureDeferred
async def test_ca_path_still_checks_the_host_name(tmp_path, certificate):
    """The certificate names ``localhost``, not ``127.0.0.1``."""
    dst, port, stop_dst = await _tls_destination(tmp_path, certificate)
    src, stop_src = await start_server(tmp_path / "src", replication_ca_path=certificate[0])
    try:
        await _replicate(src, f"https://127.0.0.1:{port}")
        await _assert_refused(src, dst)
    finally:
        await stop_src()
        await stop_dst()


@pytest_twisted.ensureDeferred
async def test_verification_off_accepts_any_certificate(tmp_path, certificate):
    dst, port, stop_dst = await _tls_destination(tmp_path, certificate)
    src, stop_src = await start_server(tmp_path / "src", replication_verify_ssl=False)
    try:
        await _replicate(src, f"https://127.0.0.1:{port}")
        await _assert_arrives(src, dst)
    finally:
        await stop_src()
        await stop_dst()


@pytest_twisted.ensureDeferred
async def test_reduct_py_creates_a_tls_replication_with_121_settings(
        tmp_path, certificate, reduct_py_newest):
    dst, port, stop_dst = await _tls_destination(tmp_path, certificate)
    src, stop_src = await start_server(tmp_path / "src", replication_ca_path=certificate[0])
    try:
        await ok(await call(dst, "POST", "/b/pytls-dst"))
        summary = await run_client_script(
            reduct_py_newest, "reduct_py_limits.py", src.url, "--bucket", "pytls",
            "--dst", f"https://localhost:{port}",
        )
        assert summary["version"] == clients.REDUCT_PY_NEWEST
        assert summary["checks"] == ["create-with-1.21-settings", "write-source"]
        assert await _eventually(lambda: _count_in(dst, "pytls-dst", "sensor", 3))
        for i in range(3):
            resp = await call(dst, "GET", f"/b/pytls-dst/sensor?ts={T0 + i}")
            assert await ok(resp) == b"tls-%d" % i
    finally:
        await stop_src()
        await stop_dst()


async def _count_in(srv, bucket, entry, n):
    return await _stamps(srv, bucket, entry) == n
