"""
``make_site``: the web side of the daemon, assembled from its parts.
"""

from reduct_twisted.auth import OpenAccess
from reduct_twisted.http.api import ReductAPI
from reduct_twisted.http.streaming import ReductSite


def make_site(engine, config, reactor, threadpool) -> ReductSite:
    """
    Build the ``Site`` serving the ReductStore API for ``engine``.

    :param config: the daemon's ``Config`` (base path, ...).
    :param threadpool: a started ``ThreadPool`` for large-record file I/O.
    """
    auth = OpenAccess(reactor)
    api = ReductAPI(engine, auth, reactor, threadpool, base_path=config.api_base_path)
    return ReductSite(api.resource(), api, reactor)
