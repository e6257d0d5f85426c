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
   replications; :func:`make_lifecycle_policies`: the lifecycle policies
   (a service too) with the ``RS_LIFECYCLE_*`` ones;
6. :func:`make_group_sync`: the group sync of sync policy ``always``, or none;
7. :func:`make_links`: the query links' signing key and public URL,
   :func:`make_log_key`: the entry logs' tree-head key (``integrity =
   log``), and :func:`make_api`: the ``ReductAPI`` over all of the above;
8. :func:`make_site`: the ``Site`` serving it; a stopping daemon's drain
   ends the continuous queries; :func:`apply_limits`: the storage cap and
   the rate limits; :func:`make_metrics`: the ``/metrics`` registry, told
   of the site's requests and the group sync's rounds.

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
from reduct_twisted.config_integrity import computes_digests
from reduct_twisted.errors import ReductError
from reduct_twisted.http import clientip
from reduct_twisted.http.api import ReductAPI
from reduct_twisted.http.batch import BatchLimits
from reduct_twisted.http.ratelimit import RateLimits
from reduct_twisted.http.site import make_site
from reduct_twisted.http.streaming import ReductSite
from reduct_twisted.http.writers import WriterSlots
from reduct_twisted.integrity.signing import LogKey
from reduct_twisted.lifecycle import LifecycleManager, make_lifecycles
from reduct_twisted.links import LinkCodec, Links, load_or_create_key
from reduct_twisted.metrics import Metrics
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
    "make_links",
    "make_log_key",
    "make_metrics",
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
    :ivar lifecycles: the ``LifecycleManager``, a service to be started and
        stopped with the daemon (like the replications).
    :ivar site: the ``ReductSite`` to listen with; its ``drain`` is to be
        drained before the replications stop (``drain.DrainService``).
    """

    events: Any
    auth: Any
    replications: ReplicationManager
    syncer: GroupSync | None
    api: ReductAPI
    site: ReductSite
    lifecycles: LifecycleManager | None = None


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
    auth = make_auth(config, reactor, threadpool, provisioning.tokens, events)
    replications = make_replications(engine, config, reactor, threadpool)
    replications.use_events(events)
    replications.provision(provisioning.replications)
    syncer = make_group_sync(config, engine, replications, reactor, threadpool)
    lifecycles = make_lifecycle_policies(engine, reactor, threadpool, events, provisioning)
    api = make_api(config, engine, auth, replications, syncer, reactor, threadpool, events,
                   lifecycles=lifecycles, links=make_links(config),
                   log_key=make_log_key(config))
    site = make_site(api, config, reactor)
    apply_limits(config, engine, api, site, reactor)
    make_metrics(config, engine, api, site, syncer, replications, lifecycles)
    # A stopping daemon answers the batched reads waiting for new records.
    site.drain.on_start.append(engine.end_continuous_queries)
    return Parts(
        events=events, auth=auth, replications=replications, syncer=syncer, api=api, site=site,
        lifecycles=lifecycles,
    )


def apply_limits(config: Config, engine: Any, api: ReductAPI, site: ReductSite,
                 reactor: Any) -> None:
    """
    The limits of spec 1.20 §5.10: the storage cap on the engine
    (``RS_ENGINE_MAX_STORAGE_SIZE``, when set), whether it computes digests
    (``RS_INTEGRITY``) and the rate limits
    (``RS_RATE_LIMIT_*``, ``http/ratelimit.py``) on the API and the site.
    """
    if config.engine_max_storage_size:
        engine.limit_storage(config.engine_max_storage_size)
    # RS_INTEGRITY (config_integrity.py): off computes no digests.
    engine.compute_digests(computes_digests(config.integrity))
    api.rate_limits = site.rate_limits = RateLimits.from_config(config, reactor)


def make_metrics(config: Config, engine: Any, api: ReductAPI, site: ReductSite,
                 syncer: GroupSync | None, replications: Any, lifecycles: Any) -> Metrics | None:
    """
    The ``/metrics`` registry of this daemon (``metrics.py``), told of every
    request the site finishes and every group-sync round; none with
    ``metrics = off`` (nothing is counted then).
    """
    api.metrics_auth = config.metrics_auth
    if not config.metrics:
        return None
    patterns = {rule.endpoint: rule.rule for rule in api.app.url_map.iter_rules()}
    metrics = Metrics(patterns, engine, replications, lifecycles, site.drain)
    api.metrics = site.metrics = metrics
    if syncer is not None:
        syncer.observer = metrics.sync_round
    return metrics


def make_events(config: Config, engine: Any, reactor: Any) -> Any:
    """
    The ``$system`` event streams (``ISystemEvents``, a service the daemon
    starts and stops right after the storage, ``system/``), or none with
    ``RS_SYSTEM_EVENTS_ENABLED=false``.
    """
    return make_system_events(config, engine, reactor)


def make_lifecycle_policies(
    engine: Any, reactor: Any, threadpool: Any, events: Any, provisioning: Provisioning
) -> LifecycleManager:
    """
    The lifecycle policies (spec 1.20 §7): those of the data directory's
    ``.lifecycles`` and the ``RS_LIFECYCLE_*`` ones; runs reported to ``events``.
    """
    lifecycles = make_lifecycles(engine, reactor, threadpool, events)
    lifecycles.provision(provisioning.lifecycles)
    return lifecycles


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


def make_auth(config: Config, reactor: Any, threadpool: Any, tokens: Any = (), events: Any = None) -> Any:
    """
    ``OpenAccess`` without ``RS_API_TOKEN``; otherwise ``TokenAccess`` over
    the data directory's token file, written in ``threadpool``, finding a
    request's client address with ``http.clientip`` and a token's last
    access in ``events`` (``ISystemEvents``; none known without).
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
        client_ip=clientip.client_ip,
        last_access=events.last_access if events is not None else None,
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


#: Characters a configured link signing key has at least.
MIN_LINK_KEY = 32


def make_links(config: Config) -> Links:
    """
    The query links' codec and public URL: the key is ``link_signing_key``
    or the data directory's ``.link-key`` (made at the first start, before
    the reactor runs); the URL is ``public_url`` or derived from ``host``,
    ``port``, TLS and ``api_base_path`` (spec §9 ``RS_PUBLIC_URL``).

    :raises ValueError: the configured key is too short (the message does
        not show it).
    :raises reduct_twisted.links.key.LinkKeyError: the key file is not ours.
    """
    if config.link_signing_key:
        if len(config.link_signing_key) < MIN_LINK_KEY:
            raise ValueError(f"RS_LINK_SIGNING_KEY (link_signing_key) must have at least "
                             f"{MIN_LINK_KEY} characters")
        key = config.link_signing_key.encode("utf-8")
    else:
        key = load_or_create_key(config.data_path)
    public_url = config.public_url
    if public_url is None:
        scheme = "https" if config.tls else "http"
        host = f"[{config.host}]" if ":" in config.host else config.host
        default_port = 443 if config.tls else 80
        port = "" if config.port == default_port else f":{config.port}"
        public_url = f"{scheme}://{host}{port}{config.api_base_path}"
    elif not public_url.endswith("/"):
        public_url += "/"
    return Links(LinkCodec(key), public_url)


def make_log_key(config: Config) -> LogKey | None:
    """
    The key the entry logs' tree heads are signed with (issue #16): the
    configured ``log_key_path``, else ``<data_path>/.log-key``, made at the
    first start; None unless ``integrity`` is ``log``.

    :raises LogKeyError: the key file is not ours, or the configured one is missing.
    """
    if config.integrity != "log":
        return None
    return LogKey.load_or_create(config.data_path, config.log_key_path)


def make_api(
    config: Config,
    engine: Any,
    auth: Any,
    replications: ReplicationManager,
    syncer: GroupSync | None,
    reactor: Any,
    threadpool: Any,
    events: Any = None,
    lifecycles: LifecycleManager | None = None,
    links: Links | None = None,
    log_key: LogKey | None = None,
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
        lifecycles=lifecycles,
        links=links,
        log_key=log_key,
    )
