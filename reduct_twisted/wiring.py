# -*- test-case-name: tests.unit.test_tap -*-
"""
``assemble``: the daemon's parts between the storage and the listeners,
built in order from the open engine (issue #13).

``tap.makeService`` calls it between opening the storage and attaching the
drain and the listeners; the in-process servers of the integration tests
(``tests/integration/conftest.py``) call it too, so both run the same
assembly.  Each step is one named function below:

3. :func:`provision_buckets`: the ``RS_BUCKET_*`` buckets, created or updated,
   and :func:`make_events`: the ``$system`` event streams (spec 1.20 §8);
4. :func:`make_auth`: the access policy, with the ``RS_TOKEN_*`` tokens;
5. :func:`make_replications` and ``provision``: the replication manager
   (a service: the daemon starts and stops it) with the ``RS_REPLICATION_*``
   replications;
6. :func:`make_group_sync`: the group sync of sync policy ``always``, or none;
7. :func:`make_api`: the ``ReductAPI`` over all of the above;
8. :func:`make_site`: the ``Site`` serving it; a stopping daemon's drain
   ends the continuous queries.

(Steps 1, 2, 9 and 10, the data directory lock, the storage service, the
drain service and the listeners, are ``makeService``'s own.)
"""

from __future__ import annotations

from functools import partial
from typing import Any

import attrs
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from reduct_twisted.auth.policy import OpenAccess, TokenAccess
from reduct_twisted.config import Config
from reduct_twisted.errors import ReductError
from reduct_twisted.http.api import ReductAPI
from reduct_twisted.http.batch import BatchLimits
from reduct_twisted.http.site import make_site
from reduct_twisted.http.streaming import ReductSite
from reduct_twisted.http.writers import WriterSlots
from reduct_twisted.provision import Provisioning
from reduct_twisted.replication import ReplicationManager, make_replications
from reduct_twisted.sync import GroupSync
from reduct_twisted.system import make_events as make_system_events

__all__ = [
    "Parts",
    "assemble",
    "make_api",
    "make_auth",
    "make_group_sync",
    "provision_buckets",
]

log = Logger()


@attrs.frozen
class Parts:
    """
    What :func:`assemble` built.

    :ivar events: the ``$system`` event streams (an ``ISystemEvents``).
    :ivar auth: the access policy (``OpenAccess`` or ``TokenAccess``).
    :ivar replications: the ``ReplicationManager``, a service to be started
        and stopped with the daemon (after the drain, before the storage).
    :ivar syncer: the ``GroupSync``, or ``None`` (sync policy ``none``).
    :ivar api: the ``ReductAPI``.
    :ivar site: the ``ReductSite`` to listen with; its ``drain`` is to be
        drained before the replications stop (``drain.DrainService``).
    """

    events: Any
    auth: Any
    replications: ReplicationManager
    syncer: GroupSync | None
    api: ReductAPI
    site: ReductSite


def assemble(
    engine: Any,
    config: Config,
    reactor: Any,
    threadpool: Any,
    provisioning: Provisioning | None = None,
) -> Parts:
    """
    Build the parts serving ``engine``, in order (see the module docstring).

    :param engine: the open ``StorageEngine``.
    :param config: the daemon's ``Config``.
    :param reactor: the clock and ``callLater`` provider.
    :param threadpool: the storage's ``ThreadPool`` for file I/O off the
        reactor (running once the daemon starts).
    :param provisioning: buckets, tokens and replications from
        ``RS_BUCKET_*``, ``RS_TOKEN_*``, ``RS_REPLICATION_*``
        (``provision.parse_provisioning``); none by default.
    :raises reduct_twisted.auth.tokens.TokenStoreError: the token file of the
        data directory is unreadable or corrupt.
    """
    provisioning = provisioning or Provisioning(buckets=[], tokens=[])
    events = make_events(config, engine, reactor)
    provision_buckets(engine, provisioning.buckets)
    auth = make_auth(config, reactor, threadpool, provisioning.tokens)
    replications = make_replications(engine, config, reactor, threadpool)
    replications.use_events(events)
    replications.provision(provisioning.replications)
    syncer = make_group_sync(config, engine, replications, reactor, threadpool)
    api = make_api(config, engine, auth, replications, syncer, reactor, threadpool, events)
    site = make_site(api, config, reactor)
    # A stopping daemon answers the batched reads waiting for new records.
    site.drain.on_start.append(engine.end_continuous_queries)
    return Parts(
        events=events, auth=auth, replications=replications, syncer=syncer, api=api, site=site
    )


def make_events(config: Config, engine: Any, reactor: Any) -> Any:
    """
    The ``$system`` event streams (``ISystemEvents``, a service the daemon
    starts and stops right after the storage, ``system/``), or none with
    ``RS_SYSTEM_EVENTS_ENABLED=false``.
    """
    return make_system_events(config, engine, reactor)


def provision_buckets(engine: Any, buckets: list) -> None:
    """
    Create or update each provisioned bucket; log (never raise) a failure.
    A lowered FIFO quota applies at the storage service's first quota pass.
    """
    for bucket in buckets:
        try:
            engine.provision_bucket(bucket.name, bucket.settings)
        except (ReductError, OSError) as e:
            log.error("Cannot provision bucket {name}: {reason}", name=bucket.name, reason=str(e))
        else:
            log.info("Provisioned bucket {name}", name=bucket.name)


def make_auth(config: Config, reactor: Any, threadpool: Any, tokens: Any = ()) -> Any:
    """
    ``OpenAccess`` without ``RS_API_TOKEN``; otherwise ``TokenAccess`` over
    the data directory's token file, written in ``threadpool``.
    """
    if not config.api_token:
        if tokens:
            log.warn(
                "RS_TOKEN_* variables are ignored: authentication is disabled (no RS_API_TOKEN)"
            )
        return OpenAccess(reactor)

    return TokenAccess.open(
        config.data_path,
        reactor,
        config.api_token,
        tokens,
        run_in_thread=partial(deferToThreadPool, reactor, threadpool),
    )


def make_group_sync(
    config: Config, engine: Any, replications: ReplicationManager, reactor: Any, threadpool: Any
) -> GroupSync | None:
    """
    The ``GroupSync`` making committed changes durable before they are
    answered (sync policy ``always``), in ``threadpool``; ``None`` otherwise.
    Replication log appends are flushed in the same rounds as the records
    that caused them.
    """
    if config.sync != "always":
        return None
    return GroupSync(
        partial(_take_dirty, engine, replications),
        partial(deferToThreadPool, reactor, threadpool),
    )


def _take_dirty(engine: Any, replications: ReplicationManager) -> tuple:
    files, directories = engine.take_dirty()
    more_files, more_directories = replications.take_dirty()
    return files | more_files, directories | more_directories


def make_api(
    config: Config,
    engine: Any,
    auth: Any,
    replications: ReplicationManager,
    syncer: GroupSync | None,
    reactor: Any,
    threadpool: Any,
    events: Any = None,
) -> ReductAPI:
    """The ``ReductAPI`` over the parts built before it, limits from ``config``."""
    return ReductAPI(
        engine,
        auth,
        reactor,
        threadpool,
        base_path=config.api_base_path,
        syncer=syncer,
        batch_limits=BatchLimits.from_config(config),
        replications=replications,
        writers=WriterSlots.from_config(config, reactor),
        events=events,
    )
