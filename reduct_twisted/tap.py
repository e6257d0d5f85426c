"""
``twistd reduct``: command-line options and the service tree.

``Options`` parses the command line, then loads the whole configuration
(defaults < ``--config`` ini file < ``RS_*`` environment < command line) and
turns any :class:`~reduct_twisted.config.ConfigError` into a ``UsageError``:
twistd then prints a one-line hint instead of the option table, the one-line
message, and exits 1 without a traceback.

``makeService`` builds the whole service tree, in one function::

    DaemonService "reduct"               (log level filter for twistd, see logs.py;
    │                                     children stop in sequence, see shutdown.py)
    ├── TimerService "watchdog"          (systemd's WATCHDOG=1, sdnotify.py; only
    │                                     when the unit sets WatchdogSec=)
    ├── StorageService "storage"         (engine, thread pool, quota + query-expiry loops)
    ├── SystemEvents "system-events"     ($system event streams, system/; a no-op when off)
    ├── ReplicationManager "replication" (senders of the replications; the API's)
    ├── LifecycleManager "lifecycles"    (the lifecycle policies' loops; the API's)
    ├── DrainService "drain"             (the site's open connections, http/drain.py)
    └── StreamServerEndpointService "listen:<endpoint>"   one per listen endpoint

in ten steps, in this order:

1. the data directory lock (``datadir.py``), held by the storage service;
2. the storage service: the engine, opened at once, and its thread pool;
3. the provisioned buckets (``RS_BUCKET_*``), created or updated;
4. the access policy (``auth/policy.py``), with the ``RS_TOKEN_*`` tokens;
5. the replication manager, with the ``RS_REPLICATION_*`` replications, and
   the lifecycle policies, with the ``RS_LIFECYCLE_*`` ones;
6. the group sync of sync policy ``always`` (``sync.py``);
7. the ``ReductAPI`` (``http/api.py``) over all of the above;
8. the site serving it (``http/site.py``);
9. the drain service, over the site's open connections;
10. the listeners, one per listen endpoint (``listen_endpoints``: the
    ``listen`` setting, else the sockets systemd passed, else ``host``/``port``),
    and systemd's ``READY=1`` once they all listen (``sdnotify.py``).

Steps 3 to 8 are ``wiring.assemble``, which the in-process servers of the
integration tests call too, so the two assemblies cannot drift.

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
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import attrs
from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.defer import Deferred, gatherResults
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
from reduct_twisted.config import SETTINGS, Config, ConfigError, load_config
from reduct_twisted.config_limits import ignored_variables
from reduct_twisted.config_setting import option_name
from reduct_twisted.datadir import DataDirLocked, claim_data_dir
from reduct_twisted.http.drain import DrainService
from reduct_twisted.logs import observer_factory_for
from reduct_twisted.provision import parse_provisioning
from reduct_twisted.sdactivation import PREFIX as SYSTEMD_PREFIX
from reduct_twisted.sdactivation import ListenSockets, is_tls, systemd_endpoint
from reduct_twisted.sdnotify import SystemdNotifier, watchdog_service
from reduct_twisted.replication.tls import CaFileError
from reduct_twisted.service import StorageService
from reduct_twisted.shutdown import DaemonService
from reduct_twisted.tuning import tune_process
from reduct_twisted.storage.disk.layout import DataDirRefused
from reduct_twisted.auth.tokens import TokenStoreError
from reduct_twisted.integrity.signing import LogKeyError

log = Logger()

_DEFAULTS = Config()


def _help(field: str) -> str:
    """The ``--help`` text of ``field``'s option: its help, default and variable."""
    declared = SETTINGS[field]
    assert declared.cli is not None, field
    shown = declared.cli.shown_default
    if shown is None:
        default = getattr(_DEFAULTS, field)
        shown = (" ".join(default) if isinstance(default, tuple) else default) or "none"
    return f"{declared.cli.help} [default: {shown}; env {declared.env}]"


def _parameter(field: str) -> list[str | None]:
    """``field``'s entry in :attr:`Options.optParameters`."""
    cli = SETTINGS[field].cli
    assert cli is not None, field
    return [option_name(field), cli.short, None, _help(field)]


def _with_repeated_options(cls: type[Options]) -> type[Options]:
    """
    Give ``cls`` an ``opt_<field>`` method for each setting whose option may
    be repeated (``opt_listen``): each use appends its value to a list.
    """
    for field in _REPEATED_OPTIONS:
        setattr(cls, "opt_" + field, _collector(field))
    return cls


def _collector(field: str) -> Callable[[Options, str], None]:
    # usage.Options wants exactly (self, value): no default argument.
    name = option_name(field)

    def collect(self: Options, value: str) -> None:
        self[name].append(value)

    collect.__doc__ = _help(field)
    return collect


#: Config fields with a command-line option taking one value (``--data-path``
#: is ``data_path``), and those whose option may be repeated (``--listen``).
_SINGLE_OPTIONS = tuple(f for f, s in SETTINGS.items() if s.cli and not s.repeated)
_REPEATED_OPTIONS = tuple(f for f, s in SETTINGS.items() if s.cli and s.repeated)


@_with_repeated_options
class Options(usage.Options):
    """
    ``twistd reduct`` options.  After parsing, ``self.config`` holds the
    loaded :class:`~reduct_twisted.config.Config`.

    Besides ``--config`` and ``--version``, the options are made from the
    settings' declarations in :class:`~reduct_twisted.config.Config`: a
    parameter each, or an ``opt_`` method collecting a list for a repeated
    one (``--listen``, see :func:`_with_repeated_options`).
    """

    synopsis = "[options]"
    longdesc = (
        "Run a ReductStore-compatible time-series blob store. Settings are "
        "taken from the built-in defaults, then the --config file, then RS_* "
        "environment variables, then these options."
    )

    optParameters = [
        ["config", "c", None, "Read settings from this ini file ([reduct] section)."],
    ] + [_parameter(field) for field in _SINGLE_OPTIONS]

    #: Config fields given by the parameters above; the repeated ones are
    #: collected by their ``opt_`` methods.
    _FIELD_OPTIONS = _SINGLE_OPTIONS

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """
        :param environ: the environment to read ``RS_*`` from; ``os.environ``
            by default (twistd calls us without arguments).
        """
        super().__init__()
        for field in _REPEATED_OPTIONS:
            self[option_name(field)] = []
        self.environ = os.environ if environ is None else environ
        #: The sockets passed by systemd socket activation (sdactivation.py).
        self.sockets = ListenSockets.from_environment(environ)
        self.config: Config | None = None
        self._failed = False

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"reduct-twisted {__version__} (ReductStore API {REDUCT_VERSION})")
        sys.exit(0)

    def postOptions(self) -> None:
        fields = self._FIELD_OPTIONS + _REPEATED_OPTIONS
        cli = {field: self[option_name(field)] for field in fields}
        given = {k: v for k, v in cli.items() if v}
        try:
            config = load_config(given, self.environ, self["config"])
            for endpoint in listen_endpoints(config, self.sockets):
                _check_endpoint(endpoint, self.sockets)
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


def listen_endpoints(config: Config, sockets: ListenSockets) -> tuple[str, ...]:
    """
    The endpoints to listen on: the ``listen`` setting when given, else one
    ``systemd:`` endpoint per socket passed by socket activation, else the
    one built from ``host``/``port``/``cert_*`` (``Config.listen_endpoints``).
    """
    if not config.listen and sockets.descriptors:
        if config.tls:
            return sockets.default_endpoints(config.cert_key_path, config.cert_path)
        return sockets.default_endpoints()
    return config.listen_endpoints()


def _server_endpoint(reactor: Any, description: str, sockets: ListenSockets) -> Any:
    """The server endpoint of ``description``; ``systemd:`` ones are ours."""
    if description.startswith(SYSTEMD_PREFIX):
        return systemd_endpoint(reactor, description, sockets)
    return serverFromString(reactor, description)


def _check_endpoint(description: str, sockets: ListenSockets) -> None:
    # Parse against a throw-away reactor: catches syntax errors, unreadable
    # certificates and missing systemd sockets before anything starts.
    try:
        _server_endpoint(MemoryReactor(), description, sockets)
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
    #: Fires with the ``host:port`` listened on, or ``None`` if it cannot
    #: listen (never with a failure: nobody may be waiting for it).
    listening: Deferred[str | None] = attrs.field(factory=Deferred, eq=False, repr=False)

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        d = self.endpoint.listen(factory)
        d.addCallbacks(self._listening, self._failed)
        return d

    def _listening(self, port: IListeningPort) -> IListeningPort:
        address = port.getHost()
        host = getattr(address, "host", None)
        where = f"{host}:{address.port}" if host is not None else str(address)
        if not self.listening.called:
            self.listening.callback(where)
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
        if not self.listening.called:
            self.listening.callback(None)
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
    assemble: Callable[..., Any] | None = None,
    lock_data_dir: bool | None = None,
) -> IService:
    """
    Build the service tree for ``options`` (see the module docstring), in
    this order:

    1. the data directory lock (``datadir.py``);
    2. the storage service: the engine, opened now, and its thread pool;
    3. to 8. ``wiring.assemble``: the provisioned buckets, the access
       policy, the replication manager and its provisioned replications,
       the group sync, the ``ReductAPI`` and the site; the replication
       manager is attached here;
    9. the drain service, over the site's open connections;
    10. the listeners, one per endpoint.

    :param reactor: the reactor; the global one if ``None``.
    :param engine_factory: see :class:`StorageService`; for tests.
    :param assemble: steps 3 to 8, called as ``(engine, config, reactor,
        threadpool, provisioning)`` and returning a ``wiring.Parts`` (or
        anything with its ``replications`` service and ``site``);
        ``reduct_twisted.wiring.assemble`` by default.
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
    if lock_data_dir is None:
        lock_data_dir = engine_factory is None

    supervisor = SystemdNotifier.from_environment(options.environ)
    top = DaemonService(observer_factory_for(options), config.log_level, reactor,
                        supervisor=supervisor)
    top.setName("reduct")
    # The watchdog pings from start-up to the very end (it stops last).
    watchdog = watchdog_service(supervisor, reactor)
    if watchdog is not None:
        watchdog.setServiceParent(top)
    with _refusing_data_dir(config):
        # 1. the data directory lock
        lock = _lock_data_dir(config) if lock_data_dir else None
        # 2. the storage service
        storage = StorageService(config, reactor, engine_factory, lock=lock)
    storage.setServiceParent(top)
    # 3. the provisioned buckets, 4. the access policy, 5. the replication
    # manager and its provisioned replications, 6. the group sync, 7. the
    # ReductAPI, 8. the site: wiring.assemble, shared with the test servers.
    if assemble is None:  # after the lock: a refused start stays quick
        from reduct_twisted.wiring import assemble
    provisioning = parse_provisioning(options.environ)
    try:
        parts = assemble(storage.engine, config, reactor, storage.threadpool, provisioning)
    except (TokenStoreError, CaFileError, LogKeyError) as exc:
        storage.engine.close()
        raise SystemExit(f"reduct: {exc}")
    # The $system events stop (writing what is pending) right before the storage.
    parts.events.setServiceParent(top)
    parts.replications.setServiceParent(top)
    lifecycles = getattr(parts, "lifecycles", None)  # (a test's assemble may have none)
    if lifecycles is not None:
        lifecycles.setServiceParent(top)
    # 9. the drain service
    DrainService(parts.site.drain, config.shutdown_timeout).setServiceParent(top)
    # 10. the listeners
    sockets = getattr(options, "sockets", ListenSockets())
    listeners = [
        _listener(description, parts.site, reactor, config, sockets)
        for description in listen_endpoints(config, sockets)
    ]
    for listener in listeners:
        listener.setServiceParent(top)
    if supervisor.enabled:
        reactor.callWhenRunning(_notify_ready, supervisor, listeners)
    for line in ignored_variables(options.environ, config):
        log.warn("{line}", line=line)
    log.debug("Configuration: {config!r}", config=config)
    tune_process(reactor)
    return top


def _lock_data_dir(config: Config) -> Any:
    """Step 1: check and lock the data directory (``datadir.claim_data_dir``)."""
    return claim_data_dir(config.data_path, config.lock_file_timeout,
                          poll=config.lock_file_polling_interval)


@contextmanager
def _refusing_data_dir(config: Config) -> Iterator[None]:
    """
    Turn a data directory that cannot be used (steps 1 and 2) into
    ``SystemExit`` with a one-line message: raised before twistd starts
    logging, it is printed on stderr and the exit status is 1, without a
    traceback.
    """
    try:
        yield
    except (DataDirRefused, DataDirLocked) as exc:
        raise SystemExit(f"reduct: {exc}")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SystemExit(f"reduct: cannot use data path {config.data_path!r}: {reason}")


def _notify_ready(supervisor: Any, listeners: list[Any]) -> None:
    """
    Tell systemd ``READY=1`` once every listener listens (their listen
    results, gathered once the reactor runs); nothing if one cannot.
    """
    def announce(wheres: list[str | None]) -> None:
        if all(wheres):  # else AnnouncingEndpoint logged why, and start-up stops
            supervisor.ready("Listening on " + ", ".join(w for w in wheres if w))

    gatherResults([listener.endpoint.listening for listener in listeners]).addCallback(announce)


def _listener(
    description: str, site: Any, reactor: Any, config: Config,
    sockets: ListenSockets | None = None,
) -> IService:
    """
    Step 10: the listener service of endpoint ``description`` for ``site``,
    named ``listen:<description>``, announcing its address.  ``systemd:``
    endpoints adopt a socket of ``sockets`` (``sdactivation.py``).
    """
    # strports.service: StreamServerEndpointService(serverFromString(...))
    # that raises at start-up if it cannot listen, instead of running on
    # with no port.
    if description.startswith(SYSTEMD_PREFIX):
        endpoint = systemd_endpoint(reactor, description, sockets or ListenSockets())
        listener = StreamServerEndpointService(endpoint, site)
        listener._raiseSynchronously = True  # as strports.service does
    else:
        listener = strports.service(description, site, reactor=reactor)
    tls = description.startswith("ssl:") or (
        description.startswith(SYSTEMD_PREFIX) and is_tls(description))
    scheme = "https" if tls else "http"
    listener.endpoint = AnnouncingEndpoint(
        listener.endpoint, description, scheme, open_access=not config.api_token
    )
    listener.setName(f"listen:{description}")
    return listener
