"""
The daemon's configuration: one frozen :class:`Config` and its loader.

Settings come from four layers; a later layer wins field by field::

    built-in defaults  <  ini file (--config)  <  environment (RS_*)  <  command line

The ini file has a single ``[reduct]`` section whose keys are the field names
of :class:`Config` (``etc/reduct-twisted.ini`` documents every one).  Unknown
sections and keys are errors, as are values that do not parse: unlike
upstream ReductStore, which falls back to the default for an unparsable
variable, we refuse to start and say which option was wrong and where it came
from, in one line (:class:`ConfigError`).

An empty value (``RS_CERT_PATH=``, ``cert_path =``) means "not set at this
layer", so an empty line in the sample file or a blank variable in a systemd
``EnvironmentFile`` never overrides anything.

Differences from upstream, on purpose:

* ``data_path`` defaults to ``reduct-data`` relative to the working directory.
  Upstream's ``/data`` only works for root or inside its container image; a
  newcomer running ``twistd -n reduct`` as themselves gets a usable store.
  The sample systemd unit sets ``WorkingDirectory=/var/lib/reduct-twisted``.
* ``listen``, ``quota_interval``, ``query_expiry_interval``,
  ``threadpool_size``, ``sync``, ``idle_timeout`` and ``header_timeout``
  (and their ``RS_*`` variables) are ours.
* ``RS_IO_BATCH_RECORDS_TIMEOUT`` is also read under its name before 1.17,
  ``RS_IO_BATCH_RECORDS_TIMEOUT_S``; the new name wins when both are set.
* ``TRACE`` is accepted as a log level and treated as ``DEBUG``: Twisted's
  logger has no finer level.

This module depends only on the standard library and attrs.
"""

from __future__ import annotations

import configparser
import os
from typing import Any, Callable, Mapping

import attrs

from reduct_twisted.config_values import (
    normalise_base_path,
    _base_path,
    _bytes,
    _canonical_level,
    _endpoints,
    _level,
    _origins,
    _path,
    _port,
    _positive_count,
    _seconds,
    _secret,
    _sync_policy,
    _text,
    _wait_seconds,
)

#: The only section allowed in the ini file.
INI_SECTION = "reduct"


class ConfigError(Exception):
    """
    A setting is invalid.  ``str(error)`` is one line naming the option, its
    value and the layer it came from, fit to show a user as it is.
    """


@attrs.frozen(kw_only=True)
class Config:
    """
    Every setting of the daemon, already parsed and validated.

    :ivar data_path: directory holding the buckets; created if missing.
    :ivar host: address to listen on when ``listen`` is empty.
    :ivar port: TCP port to listen on when ``listen`` is empty.
    :ivar listen: Twisted server endpoint strings (``tcp:``, ``ssl:``,
        ``systemd:``…); when non-empty they replace ``host``/``port``/``cert_*``
        as the listening addresses.
    :ivar api_base_path: URL prefix in front of ``api/v1/``; always starts and
        ends with ``/``.
    :ivar log_level: one of :data:`~reduct_twisted.config_values.LOG_LEVELS`.
    :ivar cert_path: PEM certificate; with ``cert_key_path`` it turns the
        derived endpoint into HTTPS.
    :ivar cert_key_path: PEM private key for ``cert_path``.
    :ivar quota_interval: seconds between two quota enforcement passes.
    :ivar query_expiry_interval: seconds between two sweeps of expired queries.
    :ivar threadpool_size: worker threads for disk work (discards, fsync).
    :ivar sync: ``always`` (a write is answered once its data and metadata
        are fsync'ed, in group-commit rounds) or ``none`` (answered once in
        the page cache).  See README "Durability".
    :ivar idle_timeout: seconds a connection may stay silent, between
        requests or in the middle of an upload, before it is closed (an
        upload cut this way leaves no record).
    :ivar header_timeout: seconds a request's line and headers may take to
        arrive in full, from the request's first byte (slow-loris guard).
    :ivar replication_timeout: seconds a request to a replication's
        destination may go without progress before it is given up and
        retried (``RS_REPLICATION_TIMEOUT``).
    :ivar replication_log_size: most records waiting in one replication
        transaction log (one per replication and entry); when full, the
        oldest is dropped (``RS_REPLICATION_LOG_SIZE``).
    :ivar api_token: ``RS_API_TOKEN``: when set, authentication is on and
        this is the value of the full-access ``init-token``.  Masked in the
        repr (the configuration is logged at debug level).
    :ivar cors_allow_origin: origins whose browser pages may use the API
        (``access-control-allow-origin``); ``("*",)`` allows any.  Empty:
        none (preflight ``OPTIONS`` requests are still answered).
    :ivar io_batch_max_size: a batched read (GET) is closed after the record
        that takes its body past this many bytes.
    :ivar io_batch_max_records: records per batched read; with 15 more it is
        also the number of request headers accepted (never fewer than
        ``ReductChannel`` allows anyway).
    :ivar io_batch_max_metadata_size: a batched read is closed after the
        record whose header takes its record headers past this many bytes;
        it also sizes the request header buffer (never below
        ``ReductChannel``'s own).
    :ivar io_batch_timeout: seconds a batched read holding records may go on
        scanning for more before it answers with what it has.
    :ivar io_batch_records_timeout: seconds a batched read holding records
        may look for the next one before it answers; an empty batched read
        of a continuous query waits this long for a new record.
    :ivar io_operation_timeout: seconds a request body may stall (no byte
        arriving) before the connection is closed; a cut upload leaves no
        record.  Between requests ``idle_timeout`` applies.
    :ivar shutdown_timeout: seconds a stopping daemon (SIGTERM) lets
        in-flight requests finish before it aborts them.
    :ivar lock_file_timeout: seconds a daemon waits for the data directory's
        lock held by another process before it gives up (0: at once).
    :ivar table_cache_size: bytes of block record tables kept loaded.
    """

    data_path: str = "reduct-data"
    host: str = "0.0.0.0"
    port: int = 8383
    listen: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    api_base_path: str = attrs.field(default="/", converter=normalise_base_path)
    log_level: str = attrs.field(default="INFO", converter=_canonical_level)
    cert_path: str | None = None
    cert_key_path: str | None = None
    quota_interval: float = 5.0
    query_expiry_interval: float = 1.0
    threadpool_size: int = 4
    sync: str = "always"
    idle_timeout: float = 60.0
    header_timeout: float = 10.0
    replication_timeout: float = 5.0
    replication_log_size: int = 1_000_000
    api_token: str | None = attrs.field(
        default=None, repr=lambda value: "'***'" if value else "None"
    )
    cors_allow_origin: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    io_batch_max_size: int = 8_000_000
    io_batch_max_records: int = 85
    io_batch_max_metadata_size: int = 512_000
    io_batch_timeout: float = 5.0
    io_batch_records_timeout: float = 1.0
    io_operation_timeout: float = 30.0
    shutdown_timeout: float = 10.0
    lock_file_timeout: float = 0.0
    table_cache_size: int = 64 << 20

    @property
    def tls(self) -> bool:
        """Whether the derived endpoint serves HTTPS (both cert files given)."""
        return bool(self.cert_path and self.cert_key_path)

    def listen_endpoints(self) -> tuple[str, ...]:
        """
        The server endpoint strings to listen on: ``listen`` when given,
        otherwise one ``tcp:`` (or ``ssl:`` with a certificate) endpoint built
        from ``host`` and ``port``.
        """
        if self.listen:
            return self.listen
        interface = _quote(self.host)
        if self.tls:
            assert self.cert_path and self.cert_key_path
            return (
                f"ssl:{self.port}:interface={interface}"
                f":privateKey={_quote(self.cert_key_path)}"
                f":certKey={_quote(self.cert_path)}",
            )
        return (f"tcp:{self.port}:interface={interface}",)


def _quote(value: str) -> str:
    # The same escaping as twisted.internet.endpoints.quoteStringArgument,
    # repeated here so this module stays free of Twisted imports.
    return value.replace("\\", "\\\\").replace(":", "\\:")


#: Environment variable for each field.  All are upstream's except RS_LISTEN,
#: RS_QUOTA_INTERVAL, RS_QUERY_EXPIRY_INTERVAL, RS_THREADPOOL_SIZE, RS_SYNC,
#: RS_IDLE_TIMEOUT, RS_HEADER_TIMEOUT, RS_SHUTDOWN_TIMEOUT and RS_TABLE_CACHE_SIZE.
ENV_NAMES: Mapping[str, str] = {
    "data_path": "RS_DATA_PATH",
    "host": "RS_HOST",
    "port": "RS_PORT",
    "api_base_path": "RS_API_BASE_PATH",
    "log_level": "RS_LOG_LEVEL",
    "cert_path": "RS_CERT_PATH",
    "cert_key_path": "RS_CERT_KEY_PATH",
    "listen": "RS_LISTEN",
    "quota_interval": "RS_QUOTA_INTERVAL",
    "query_expiry_interval": "RS_QUERY_EXPIRY_INTERVAL",
    "threadpool_size": "RS_THREADPOOL_SIZE",
    "sync": "RS_SYNC",
    "idle_timeout": "RS_IDLE_TIMEOUT",
    "header_timeout": "RS_HEADER_TIMEOUT",
    "replication_timeout": "RS_REPLICATION_TIMEOUT",
    "replication_log_size": "RS_REPLICATION_LOG_SIZE",
    "api_token": "RS_API_TOKEN",
    "cors_allow_origin": "RS_CORS_ALLOW_ORIGIN",
    "io_batch_max_size": "RS_IO_BATCH_MAX_SIZE",
    "io_batch_max_records": "RS_IO_BATCH_MAX_RECORDS",
    "io_batch_max_metadata_size": "RS_IO_BATCH_MAX_METADATA_SIZE",
    "io_batch_timeout": "RS_IO_BATCH_TIMEOUT",
    "io_batch_records_timeout": "RS_IO_BATCH_RECORDS_TIMEOUT",
    "io_operation_timeout": "RS_IO_OPERATION_TIMEOUT",
    "shutdown_timeout": "RS_SHUTDOWN_TIMEOUT",
    "lock_file_timeout": "RS_LOCK_FILE_TIMEOUT",
    "table_cache_size": "RS_TABLE_CACHE_SIZE",
}

#: Older names still read when the variable of :data:`ENV_NAMES` is unset.
ENV_ALIASES: Mapping[str, str] = {
    "io_batch_records_timeout": "RS_IO_BATCH_RECORDS_TIMEOUT_S",
}

FIELDS: tuple[str, ...] = tuple(f.name for f in attrs.fields(Config))


_PARSERS: Mapping[str, Callable[[Any], Any]] = {
    "data_path": _path,
    "host": _text,
    "port": _port,
    "listen": _endpoints,
    "api_base_path": _base_path,
    "log_level": _level,
    "cert_path": _path,
    "cert_key_path": _path,
    "quota_interval": _seconds,
    "query_expiry_interval": _seconds,
    "threadpool_size": _positive_count,
    "sync": _sync_policy,
    "idle_timeout": _seconds,
    "header_timeout": _seconds,
    "replication_timeout": _seconds,
    "replication_log_size": _positive_count,
    "api_token": _secret,
    "cors_allow_origin": _origins,
    "io_batch_max_size": _bytes,
    "io_batch_max_records": _positive_count,
    "io_batch_max_metadata_size": _bytes,
    "io_batch_timeout": _seconds,
    "io_batch_records_timeout": _seconds,
    "io_operation_timeout": _seconds,
    "shutdown_timeout": _seconds,
    "lock_file_timeout": _wait_seconds,
    "table_cache_size": _bytes,
}
assert set(_PARSERS) == set(FIELDS) == set(ENV_NAMES)


@attrs.frozen
class _Layer:
    """
    The raw values one source provides, and how to name them in errors.

    :ivar where: the source, e.g. ``environment``.
    :ivar names: how the user spelt each field in this source.
    :ivar values: field name to raw value, unset fields absent.
    """

    where: str
    names: Mapping[str, str]
    values: Mapping[str, Any]


def _is_empty(raw: Any) -> bool:
    if isinstance(raw, str):
        return not raw.strip()
    return raw is None or (not isinstance(raw, (int, float)) and len(raw) == 0)


def _ini_layer(ini_path: str) -> _Layer:
    where = f"config file {ini_path}"
    parser = configparser.ConfigParser(interpolation=None, default_section="\0no default section")
    try:
        with open(ini_path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise ConfigError(f"cannot read {where}: {e.strerror or e}") from None
    except configparser.Error as e:
        first = " ".join(str(e).split())
        raise ConfigError(f"cannot parse {where}: {first}") from None
    for section in parser.sections():
        if section != INI_SECTION:
            raise ConfigError(
                f"unknown section [{section}] ({where}); " f"only [{INI_SECTION}] is allowed"
            )
    values: dict[str, Any] = {}
    if parser.has_section(INI_SECTION):
        for key, value in parser.items(INI_SECTION):
            if key not in _PARSERS:
                raise ConfigError(
                    f"unknown option {key!r} in [{INI_SECTION}] ({where}); "
                    f"known options: {', '.join(FIELDS)}"
                )
            values[key] = value.splitlines() if key == "listen" else value
    return _Layer(where, {f: f for f in FIELDS}, values)


def _env_layer(environ: Mapping[str, str]) -> _Layer:
    names = dict(ENV_NAMES)
    for field, old in ENV_ALIASES.items():
        if _is_empty(environ.get(names[field], "")) and old in environ:
            names[field] = old
    values = {f: environ[n] for f, n in names.items() if n in environ}
    return _Layer("environment", names, values)


def _cli_layer(cli: Mapping[str, Any]) -> _Layer:
    for key in cli:
        if key not in _PARSERS:
            raise ConfigError(f"unknown option {key!r} (command line)")
    names = {f: "--" + f.replace("_", "-") for f in FIELDS}
    return _Layer("command line", names, dict(cli))


def load_config(
    cli: Mapping[str, Any], environ: Mapping[str, str], ini_path: str | None
) -> Config:
    """
    Build a :class:`Config` from the four layers.

    :param cli: field name to value from the command line; ``None`` and empty
        values count as not given.  ``listen`` may be a list.
    :param environ: the process environment; only the names in
        :data:`ENV_NAMES` are read.
    :param ini_path: the ini file to read, or ``None`` for none.
    :raises ConfigError: with a one-line explanation.
    """
    layers = []
    if ini_path is not None:
        layers.append(_ini_layer(ini_path))
    layers.append(_env_layer(environ))
    layers.append(_cli_layer(cli))

    chosen: dict[str, Any] = {}
    origin: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for field, raw in layer.values.items():
            if _is_empty(raw):
                continue
            name = layer.names[field]
            try:
                chosen[field] = _PARSERS[field](raw)
            except ValueError as e:
                shown = raw if isinstance(raw, str) else " ".join(map(str, raw))
                raise ConfigError(f"{name}={shown!r} {e} ({layer.where})") from None
            origin[field] = (name, layer.where)

    _check_certificates(chosen, origin)
    return Config(**chosen)


def _check_certificates(chosen: Mapping[str, Any], origin: Mapping[str, tuple[str, str]]) -> None:
    given = [f for f in ("cert_path", "cert_key_path") if chosen.get(f)]
    if len(given) == 1:
        (have,) = given
        missing = "cert_key_path" if have == "cert_path" else "cert_path"
        name, where = origin[have]
        raise ConfigError(
            f"{name}={chosen[have]!r} is set but {missing} ({ENV_NAMES[missing]}) "
            f"is not; HTTPS needs both or neither ({where})"
        )
    for field in given:
        if not os.path.isfile(chosen[field]):
            name, where = origin[field]
            raise ConfigError(f"{name}={chosen[field]!r} is not a file ({where})")
