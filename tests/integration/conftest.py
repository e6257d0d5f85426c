"""
Fixtures for integration tests: the real site on 127.0.0.1, port 0, over a
real data directory, reached over real sockets with treq.
"""

import contextlib

import attr
import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.python.threadpool import ThreadPool
from twisted.web.client import Agent, HTTPConnectionPool

from reduct_twisted.config import Config
from reduct_twisted.provision import parse_provisioning
from reduct_twisted.storage import StorageEngine
from reduct_twisted.wiring import assemble
from tests import clients


@attr.s
class Server:
    """A running daemon: its URL, engine, data path, a treq client and its site."""

    url = attr.ib()
    engine = attr.ib()
    data_path = attr.ib()
    http = attr.ib()
    site = attr.ib()
    #: The ``wiring.Parts`` (its ``lifecycles`` for tests that drive them).
    parts = attr.ib(default=None)

    def api(self, path: str) -> str:
        return self.url + "/api/v1" + path


async def start_server(data_path, environ=None, engine_kwargs=None, **config_kwargs):
    """
    Start engine, thread pool, the parts ``wiring.assemble`` builds (as
    ``makeService`` does) and a listener; return (Server, stop coroutine).

    :param environ: ``RS_BUCKET_*`` / ``RS_TOKEN_*`` provisioning variables.
    :param engine_kwargs: more ``StorageEngine`` arguments (e.g. the
        ``reserve_size`` the daemon uses; none by default).
    """
    from twisted.internet import reactor

    engine = StorageEngine(str(data_path), reactor, **(engine_kwargs or {}))
    engine.open()
    pool = ThreadPool(minthreads=1, maxthreads=4, name="reduct-test-io")
    pool.start()
    try:
        config = Config(data_path=str(data_path), **config_kwargs)
        engine.set_integrity(config.integrity)  # as StorageService does at start
        parts = assemble(engine, config, reactor, pool, parse_provisioning(environ or {}))
        site = parts.site
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        parts.replications.startService()
        parts.events.startService()
        parts.lifecycles.startService()
    except BaseException:
        # A pool thread left running keeps the interpreter alive forever at
        # exit (and deaf to SIGTERM): never leave one behind.
        pool.stop()
        engine.close()
        raise
    conn_pool = HTTPConnectionPool(reactor, persistent=True)
    client = HTTPClient(Agent(reactor, pool=conn_pool))
    url = f"http://127.0.0.1:{port.getHost().port}"
    server = Server(url=url, engine=engine, data_path=data_path, http=client, site=site,
                    parts=parts)

    async def stop():
        try:
            await conn_pool.closeCachedConnections()
            await port.stopListening()
            await parts.replications.stopService()
            await parts.lifecycles.stopService()
            parts.events.stopService()
        finally:
            pool.stop()
            engine.close()

    return server, stop


@contextlib.asynccontextmanager
async def running_server(data_path, environ=None, **config_kwargs):
    """:func:`start_server` for ``async with``: stopped when the block ends."""
    server, stop = await start_server(data_path, environ, **config_kwargs)
    try:
        yield server
    finally:
        await stop()


@pytest_twisted.async_yield_fixture()
async def server(tmp_path):
    srv, stop = await start_server(tmp_path / "data")
    yield srv
    await stop()


# -- official client virtualenvs (tests/clients.py), one per generation --------


@pytest.fixture(scope="session")
def reduct_py_oldest():
    """The interpreter of a venv with reduct-py 1.4.1."""
    return clients.client_python(clients.REDUCT_PY_OLDEST)


@pytest.fixture(scope="session")
def reduct_py_middle():
    """The interpreter of a venv with reduct-py 1.10.0 (a middle generation)."""
    return clients.client_python(clients.REDUCT_PY_MIDDLE)


@pytest.fixture(scope="session")
def reduct_py_newest():
    """The interpreter of a venv with the newest reduct-py."""
    return clients.client_python(clients.REDUCT_PY_NEWEST)
