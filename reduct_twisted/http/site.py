"""
``make_site``: the daemon's ``Site`` for an already built ``ReductAPI``.

The parts it serves (storage, access policy, replications, group sync, the
API itself) are built before it, in order, by ``wiring.assemble``.
"""

from __future__ import annotations

from typing import Any

from reduct_twisted.config import Config
from reduct_twisted.http.access import AccessLog
from reduct_twisted.http.api import ReductAPI
from reduct_twisted.http.cors import CorsPolicy
from reduct_twisted.http.streaming import ReductSite

#: The log levels that show the access lines (INFO); above, none is made.
_ACCESS_LEVELS = frozenset({"TRACE", "DEBUG", "INFO"})


def make_site(api: ReductAPI, config: Config, reactor: Any) -> ReductSite:
    """
    The ``ReductSite`` serving ``api``: its resource, and ``api`` as the
    router of request bodies, with the timeouts, CORS origins and request
    header limits of ``config``, and its access log (``access.py``) unless
    ``access_log`` is off or ``log_level`` hides INFO lines.

    :param reactor: the clock of the connections' timeouts and of the
        site's drain.
    """
    site = ReductSite(
        api.resource(),
        api,
        reactor,
        timeout=config.idle_timeout,
        header_timeout=config.header_timeout,
        io_timeout=config.io_operation_timeout,
        cors=CorsPolicy.from_origins(config.cors_allow_origin),
        max_batch_records=config.io_batch_max_records,
        max_batch_metadata=config.io_batch_max_metadata_size,
    )
    if config.access_log and config.log_level in _ACCESS_LEVELS:
        site.access_log = AccessLog(reactor)
    return site
