"""
``twistd reduct``: command-line options and the service tree.

``Options`` parses the command line, then loads the whole configuration
(defaults < ``--config`` ini file < ``RS_*`` environment < command line) and
turns any :class:`~reduct_twisted.config.ConfigError` into a ``UsageError``:
twistd then prints a one-line hint instead of the option table, the one-line
message, and exits 1 without a traceback.

``makeService`` only wires things together::

    DaemonService "reduct"               (log level filter for twistd, see logs.py;
    │                                     children stop in sequence, see shutdown.py)
    ├── StorageService "storage"         (engine, thread pool, quota + query-expiry loops)
    ├── ReplicationManager "replication" (senders of the replications; the site's)
    ├── DrainService "drain"             (the site's open connections, http/drain.py)
    └── StreamServerEndpointService "listen:<endpoint>"   one per listen endpoint

On SIGTERM twistd stops the reactor, whose "before shutdown" trigger stops
this tree.  The children stop one at a time, last added first, each once
the previous one's ``stopService`` Deferred has fired (Twisted's own
``MultiService`` would start them all at once):

1. the listeners: no new connection is accepted;
2. the drain: idle keep-alive connections are closed, new requests on open
   ones answered 503, requests in progress given up to ``shutdown_timeout``
   seconds to finish, then aborted (an unfinished upload leaves no record);
3. the replication senders (records committed while draining are in their
   logs already);
4. the storage: queued disk work finishes, the engine syncs and closes.

The reactor then stops and twistd exits 0 (not by SIGTERM: see shutdown.py).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any, Callable, Mapping

import attrs
from twisted.application import strports
from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from reduct_twisted import REDUCT_VERSION, __version__
from reduct_twisted.config import ENV_NAMES, Config, ConfigError, load_config
from reduct_twisted.datadir import DataDirLocked, claim_data_dir
from reduct_twisted.http.drain import DrainService
from reduct_twisted.logs import observer_factory_for
from reduct_twisted.provision import parse_provisioning
from reduct_twisted.service import StorageService
from reduct_twisted.shutdown import DaemonService
from reduct_twisted.storage.layout import DataDirRefused
from reduct_twisted.auth.tokens import TokenStoreError

log = Logger()

_DEFAULTS = Config()


def _help(text: str, field: str) -> str:
    default = getattr(_DEFAULTS, field)
    shown = " ".join(default) if isinstance(default, tuple) else default
    return f"{text} [default: {shown or 'none'}; env {ENV_NAMES[field]}]"


class Options(usage.Options):
    """
    ``twistd reduct`` options.  After parsing, ``self.config`` holds the
    loaded :class:`~reduct_twisted.config.Config`.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a ReductStore-compatible time-series blob store. Settings are "
        "taken from the built-in defaults, then the --config file, then RS_* "
        "environment variables, then these options."
    )

    optParameters = [
        ["config", "c", None, "Read settings from this ini file ([reduct] section)."],
        ["data-path", "d", None, _help("Directory holding the data.", "data_path")],
        ["api-base-path", None, None, _help("URL prefix of the API.", "api_base_path")],
        [
            "log-level",
            None,
            None,
            _help("TRACE, DEBUG, INFO, WARN or ERROR.", "log_level"),
        ],
        [
            "replication-timeout",
            None,
            None,
            _help(
                "Seconds a request to a replication destination may go without progress.",
                "replication_timeout",
            ),
        ],
        [
            "replication-log-size",
            None,
            None,
            _help(
                "Most records waiting in one replication log; when full, the oldest is dropped.",
                "replication_log_size",
            ),
        ],
        [
            "api-token",
            None,
            None,
            "Turn authentication on; the value of the full-access init-token. "
            "Visible to other users in the process list: prefer RS_API_TOKEN "
            "or the config file. [default: none (open access); env RS_API_TOKEN]",
        ],
        [
            "cors-allow-origin",
            None,
            None,
            _help(
                "Comma-separated origins whose browser pages may use the API; * for any.",
                "cors_allow_origin",
            ),
        ],
        [
            "io-batch-max-size",
            None,
            None,
            _help("Body bytes after which a batched read is closed (512, 8MB, 1GiB).",
                  "io_batch_max_size"),
        ],
        [
            "io-batch-max-records",
            None,
            None,
            _help("Records per batched read.", "io_batch_max_records"),
        ],
        [
            "io-batch-max-metadata-size",
            None,
            None,
            _help("Record header bytes after which a batched read is closed.",
                  "io_batch_max_metadata_size"),
        ],
        [
            "io-batch-timeout",
            None,
            None,
            _help("Seconds a batched read may gather records.", "io_batch_timeout"),
        ],
        [
            "io-batch-records-timeout",
            None,
            None,
            _help("Seconds a batched read may wait for its next record.",
                  "io_batch_records_timeout"),
        ],
        [
            "io-operation-timeout",
            None,
            None,
            _help("Seconds a request body may stall before the connection is closed.",
                  "io_operation_timeout"),
        ],
        [
            "shutdown-timeout",
            None,
            None,
            _help("Seconds in-flight requests may take to finish after SIGTERM.",
                  "shutdown_timeout"),
        ],
        [
            "lock-file-timeout",
            None,
            None,
            _help("Seconds to wait for the data directory lock held by another daemon.",
                  "lock_file_timeout"),
        ],
    ]

    #: Config fields given by the parameters above (``--data-path`` is
    #: ``data_path``); ``--listen`` is collected by :meth:`opt_listen`.
    _FIELD_OPTIONS = (
        "data_path",
        "api_base_path",
        "log_level",
        "api_token",
        "cors_allow_origin",
        "io_batch_max_size",
        "io_batch_max_records",
        "io_batch_max_metadata_size",
        "io_batch_timeout",
        "io_batch_records_timeout",
        "io_operation_timeout",
        "replication_timeout",
        "replication_log_size",
        "shutdown_timeout",
        "lock_file_timeout",
    )

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """
        :param environ: the environment to read ``RS_*`` from; ``os.environ``
            by default (twistd calls us without arguments).
        """
        super().__init__()
        self["listen"] = []
        self.environ = os.environ if environ is None else environ
        self.config: Config | None = None
        self._failed = False

    def opt_listen(self, endpoint: str) -> None:
        """
        Listen on this Twisted server endpoint, e.g. tcp:8383:interface=127.0.0.1,
        ssl:8443:privateKey=key.pem:certKey=cert.pem or systemd:domain=INET:index=0.
        Repeat to listen on several. [default: tcp:<host>:<port> from the
        host and port settings, ssl: when a certificate is set; env RS_LISTEN]
        """
        self["listen"].append(endpoint)

    # usage.Options shows the docstring as it is; fold it into one paragraph.
    opt_listen.__doc__ = " ".join((opt_listen.__doc__ or "").split())

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"reduct-twisted {__version__} (ReductStore API {REDUCT_VERSION})")
        sys.exit(0)

    def postOptions(self) -> None:
        cli = {field: self[field.replace("_", "-")] for field in self._FIELD_OPTIONS}
        cli["listen"] = self["listen"]
        given = {k: v for k, v in cli.items() if v}
        try:
            config = load_config(given, self.environ, self["config"])
            for endpoint in config.listen_endpoints():
                _check_endpoint(endpoint)
        except ConfigError as e:
            self._failed = True
            raise usage.UsageError(str(e)) from None
        self.config = config

    def getUsage(self, width: int | None = None) -> str:
        # twistd prints the usage text before a UsageError's message.  For a
        # bad setting the option table only hides the one line that matters.
        if self._failed:
            return "Run 'twistd reduct --help' for the options.\n"
        return super().getUsage(width)


def _check_endpoint(description: str) -> None:
    # Parse against a throw-away reactor: catches syntax errors, unreadable
    # certificates and missing systemd sockets before anything starts.
    try:
        serverFromString(MemoryReactor(), description)
    except Exception as e:
        hint = ""
        if description.startswith("systemd:"):
            hint = " (is the daemon started by a systemd .socket unit?)"
        raise ConfigError(
            f"listen endpoint {description!r} is not usable: " f"{type(e).__name__}: {e}{hint}"
        ) from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


@implementer(IStreamServerEndpoint)
@attrs.define
class AnnouncingEndpoint:
    """
    Wraps a server endpoint to log the address it listens on (a line with
    ``listening on host:port``), or one line saying why it could not.

    :ivar open_access: authentication is off; warn if the address it binds is
        reachable from beyond loopback.
    """

    endpoint: IStreamServerEndpoint
    description: str
    scheme: str
    open_access: bool = False

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        d = self.endpoint.listen(factory)
        d.addCallbacks(self._listening, self._failed)
        return d

    def _listening(self, port: IListeningPort) -> IListeningPort:
        address = port.getHost()
        host = getattr(address, "host", None)
        where = f"{host}:{address.port}" if host is not None else str(address)
        log.info(
            "{scheme} listening on {where} ({endpoint})",
            scheme=self.scheme,
            where=where,
            endpoint=self.description,
        )
        if self.open_access and host is not None and not _is_loopback(host):
            log.warn(
                "Authentication is disabled (no RS_API_TOKEN) and the API listens on "
                "{where}, beyond loopback: anyone who can reach it can read, write "
                "and delete every bucket",
                where=where,
            )
        return port

    def _failed(self, failure: Failure) -> None:
        log.critical(
            "Cannot listen on {endpoint}: {reason}",
            endpoint=self.description,
            reason=failure.getErrorMessage(),
        )
        # The line above says it all; twistd would add a 30-line traceback
        # of its own start-up code.  Stop start-up with a plain failure.
        raise SystemExit(1)


def makeService(
    options: Options,
    reactor: Any = None,
    *,
    engine_factory: Callable[..., Any] | None = None,
    site_factory: Callable[..., Any] | None = None,
    lock_data_dir: bool | None = None,
) -> IService:
    """
    Build the service tree for ``options`` (see the module docstring).

    :param reactor: the reactor; the global one if ``None``.
    :param engine_factory: see :class:`StorageService`; for tests.
    :param site_factory: ``make_site(engine, config, reactor, threadpool,
        provisioning)``;
        ``reduct_twisted.http.site.make_site`` by default.
    :param lock_data_dir: check and lock the data directory first
        (``datadir.py``); by default only with the real engine (a test's
        ``engine_factory`` does not touch the disk).
    :raises SystemExit: with a one-line message if the data directory is
        not ours, is used by another daemon, or it or its token file cannot
        be used.
    """
    if reactor is None:
        from twisted.internet import reactor
    config = options.config
    assert config is not None, "parseOptions() has not been called"

    top = DaemonService(observer_factory_for(options), config.log_level, reactor)
    top.setName("reduct")
    if lock_data_dir is None:
        lock_data_dir = engine_factory is None
    try:
        # Raised before twistd starts logging: a plain message on stderr and
        # exit status 1 instead of a traceback.
        lock = None
        if lock_data_dir:
            lock = claim_data_dir(config.data_path, config.lock_file_timeout)
        storage = StorageService(config, reactor, engine_factory, lock=lock)
    except (DataDirRefused, DataDirLocked) as exc:
        raise SystemExit(f"reduct: {exc}")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SystemExit(f"reduct: cannot use data path {config.data_path!r}: {reason}")
    storage.setServiceParent(top)
    if site_factory is None:  # after the lock: a refused start stays quick
        from reduct_twisted.http.site import make_site as site_factory
    provisioning = parse_provisioning(options.environ)
    try:
        site = site_factory(storage.engine, config, reactor, storage.threadpool, provisioning)
    except TokenStoreError as exc:
        storage.engine.close()
        raise SystemExit(f"reduct: {exc}")
    replications = getattr(site, "replications", None)
    if replications is not None:
        replications.setServiceParent(top)
    drain = getattr(site, "drain", None)
    if drain is not None:
        DrainService(drain, config.shutdown_timeout).setServiceParent(top)
    for description in config.listen_endpoints():
        # strports.service: StreamServerEndpointService(serverFromString(...))
        # that raises at start-up if it cannot listen, instead of running on
        # with no port.
        listener = strports.service(description, site, reactor=reactor)
        scheme = "https" if description.startswith("ssl:") else "http"
        listener.endpoint = AnnouncingEndpoint(
            listener.endpoint, description, scheme, open_access=not config.api_token
        )
        listener.setName(f"listen:{description}")
        listener.setServiceParent(top)
    log.debug("Configuration: {config!r}", config=config)
    return top
