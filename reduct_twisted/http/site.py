"""
``make_site``: the web side of the daemon, assembled from its parts.
"""

from functools import partial

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from reduct_twisted.auth.policy import OpenAccess, TokenAccess
from reduct_twisted.errors import ReductError
from reduct_twisted.http.api import ReductAPI
from reduct_twisted.http.batch import BatchLimits
from reduct_twisted.http.cors import CorsPolicy
from reduct_twisted.http.streaming import ReductSite
from reduct_twisted.provision import Provisioning
from reduct_twisted.replication import make_replications
from reduct_twisted.sync import GroupSync

log = Logger()


def make_site(engine, config, reactor, threadpool, provisioning=None) -> ReductSite:
    """
    Build the ``Site`` serving the ReductStore API for ``engine``.

    :param config: the daemon's ``Config`` (base path, API token, ...).
    :param threadpool: a started ``ThreadPool`` for file I/O off the reactor.
    :param provisioning: buckets, tokens and replications from
        ``RS_BUCKET_*``, ``RS_TOKEN_*``, ``RS_REPLICATION_*``
        (``provision.parse_provisioning``): the buckets are created or
        updated in ``engine`` now, the tokens installed in the token store,
        the replications in the replication manager.
    :return: the site; its ``replications`` (the ``ReplicationManager``, a
        service) must be started and stopped with the daemon, and its
        ``drain`` drained before they stop (``drain.DrainService``).
    :raises reduct_twisted.auth.tokens.TokenStoreError: the token file of the
        data directory is unreadable or corrupt.
    """
    provisioning = provisioning or Provisioning(buckets=[], tokens=[])
    provision_buckets(engine, provisioning.buckets)
    auth = make_auth(config, reactor, threadpool, provisioning.tokens)
    replications = make_replications(engine, config, reactor, threadpool)
    replications.provision(provisioning.replications)
    syncer = None
    if config.sync == "always":
        # Replication log appends are flushed in the same rounds as the
        # records that caused them.
        syncer = GroupSync(
            partial(_take_dirty, engine, replications),
            partial(deferToThreadPool, reactor, threadpool),
        )
    api = ReductAPI(
        engine,
        auth,
        reactor,
        threadpool,
        base_path=config.api_base_path,
        syncer=syncer,
        batch_limits=BatchLimits.from_config(config),
        replications=replications,
    )
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
    site.replications = replications
    # A stopping daemon answers the batched reads waiting for new records.
    site.drain.on_start.append(engine.end_continuous_queries)
    return site


def _take_dirty(engine, replications) -> tuple:
    files, directories = engine.take_dirty()
    more_files, more_directories = replications.take_dirty()
    return files | more_files, directories | more_directories


def provision_buckets(engine, buckets) -> None:
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


def make_auth(config, reactor, threadpool, tokens=()):
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
