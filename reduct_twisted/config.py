"""
The daemon's configuration: one frozen :class:`Config` and its loader.

Settings come from four layers; a later layer wins field by field::

    built-in defaults  <  ini file (--config)  <  environment (RS_*)  <  command line

Each setting is declared once, as a field of :class:`Config` made by
:func:`setting`: its type, default, parser, ``RS_*`` variable (and an older
name still read), its command-line option if it has one (:class:`Cli`) and
what it means.  Everything else is derived from these declarations:
:data:`FIELDS`, :data:`ENV_NAMES`, :data:`ENV_ALIASES`, the parsers the
loader uses, and ``twistd reduct``'s options and ``--help`` text
(``tap.py``).  Adding a setting takes one declaration here, plus its entry
in ``etc/reduct-twisted.ini`` (a test insists on it) and a row of the
README's table.

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
  ``threadpool_size``, ``sync``, ``idle_timeout``, ``header_timeout``,
  ``shutdown_timeout`` and ``table_cache_size`` (and their ``RS_*``
  variables) are ours.
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

from reduct_twisted.config_integrity import IntegritySettings
from reduct_twisted.config_links import LinksSettings
from reduct_twisted.config_limits import LimitsSettings
from reduct_twisted.config_metrics import MetricsSettings
from reduct_twisted.config_logs import LogSettings
from reduct_twisted.config_system import SystemSettings
from reduct_twisted.config_setting import Cli, Setting, declarations, document, option_name, setting
from reduct_twisted.config_values import (
    normalise_base_path,
    _base_path,
    _bytes,
    _canonical_level,
    _count,
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
class Config(LinksSettings, LimitsSettings, SystemSettings, IntegritySettings,
             MetricsSettings, LogSettings):
    """
    Every setting of the daemon, already parsed and validated.

    Each field is declared once, below: ``name: type = setting(default,
    parser, env="RS_...", doc=..., [env_alias=..., cli=Cli(help, ...),
    converter=..., repeated=True, secret=True])``; the keywords are those
    of :class:`~reduct_twisted.config_setting.Setting`.  The list of instance
    variables at the end of this docstring is made from the declarations.
    """

    data_path: str = setting(
        "reduct-data", _path, env="RS_DATA_PATH",
        doc="directory holding the buckets; created if missing.",
        cli=Cli("Directory holding the data.", short="d"),
    )
    host: str = setting(
        "0.0.0.0", _text, env="RS_HOST",
        doc="address to listen on when ``listen`` is empty.",
    )
    port: int = setting(
        8383, _port, env="RS_PORT",
        doc="TCP port to listen on when ``listen`` is empty.",
    )
    listen: tuple[str, ...] = setting(
        (), _endpoints, env="RS_LISTEN", converter=tuple, repeated=True,
        doc="Twisted server endpoint strings (``tcp:``, ``ssl:``, ``systemd:``...); "
        "when non-empty they replace ``host``/``port``/``cert_*`` as the listening "
        "addresses.",
        cli=Cli(
            "Listen on this Twisted server endpoint, e.g. tcp:8383:interface=127.0.0.1, "
            "ssl:8443:privateKey=key.pem:certKey=cert.pem or systemd:domain=INET:index=0. "
            "Repeat to listen on several.",
            shown_default="tcp:<host>:<port> from the host and port settings, "
            "ssl: when a certificate is set",
        ),
    )
    api_base_path: str = setting(
        "/", _base_path, env="RS_API_BASE_PATH", converter=normalise_base_path,
        doc="URL prefix in front of ``api/v1/``; always starts and ends with ``/``.",
        cli=Cli("URL prefix of the API."),
    )
    log_level: str = setting(
        "INFO", _level, env="RS_LOG_LEVEL", converter=_canonical_level,
        doc="one of :data:`~reduct_twisted.config_values.LOG_LEVELS`.",
        cli=Cli("TRACE, DEBUG, INFO, WARN or ERROR."),
    )
    cert_path: str | None = setting(
        None, _path, env="RS_CERT_PATH",
        doc="PEM certificate; with ``cert_key_path`` it turns the derived endpoint "
        "into HTTPS.",
    )
    cert_key_path: str | None = setting(
        None, _path, env="RS_CERT_KEY_PATH",
        doc="PEM private key for ``cert_path``.",
    )
    quota_interval: float = setting(
        5.0, _seconds, env="RS_QUOTA_INTERVAL",
        doc="seconds between two quota enforcement passes.",
    )
    query_expiry_interval: float = setting(
        1.0, _seconds, env="RS_QUERY_EXPIRY_INTERVAL",
        doc="seconds between two sweeps of expired queries.",
    )
    block_index_interval: float = setting(
        30.0, _seconds, env="RS_BLOCK_INDEX_INTERVAL",
        doc="seconds between two passes writing the block indexes of the entries "
        "whose blocks changed (a start after ``kill -9`` rereads only blocks changed since).",
    )
    threadpool_size: int = setting(
        4, _positive_count, env="RS_THREADPOOL_SIZE",
        doc="worker threads for disk work (discards, fsync).",
    )
    sync: str = setting(
        "always", _sync_policy, env="RS_SYNC",
        doc="``always`` (a write is answered once its data and metadata are fsync'ed, "
        "in group-commit rounds) or ``none`` (answered once in the page cache).  "
        'See README "Durability".',
    )
    idle_timeout: float = setting(
        60.0, _seconds, env="RS_IDLE_TIMEOUT",
        doc="seconds a connection may stay silent, between requests or in the middle "
        "of an upload, before it is closed (an upload cut this way leaves no record).",
    )
    header_timeout: float = setting(
        10.0, _seconds, env="RS_HEADER_TIMEOUT",
        doc="seconds a request's line and headers may take to arrive in full, from "
        "the request's first byte (slow-loris guard).",
    )
    replication_timeout: float = setting(
        5.0, _seconds, env="RS_REPLICATION_TIMEOUT",
        doc="seconds a request to a replication's destination may go without "
        "progress before it is given up and retried.",
        cli=Cli("Seconds a request to a replication destination may go without progress."),
    )
    replication_log_size: int = setting(
        1_000_000, _positive_count, env="RS_REPLICATION_LOG_SIZE",
        doc="most records waiting in one replication transaction log (one per "
        "replication and entry); when full, the oldest is dropped.",
        cli=Cli("Most records waiting in one replication log; when full, the oldest is dropped."),
    )
    api_token: str | None = setting(
        None, _secret, env="RS_API_TOKEN", secret=True,
        doc="when set, authentication is on and this is the value of the full-access "
        "``init-token``.  Masked in the repr (the configuration is logged at debug "
        "level).",
        cli=Cli(
            "Turn authentication on; the value of the full-access init-token. Visible "
            "to other users in the process list: prefer RS_API_TOKEN or the config file.",
            shown_default="none (open access)",
        ),
    )
    cors_allow_origin: tuple[str, ...] = setting(
        (), _origins, env="RS_CORS_ALLOW_ORIGIN", converter=tuple,
        doc="origins whose browser pages may use the API (``access-control-allow-origin``); "
        '``("*",)`` allows any.  Empty: none (preflight ``OPTIONS`` requests are still '
        "answered).",
        cli=Cli("Comma-separated origins whose browser pages may use the API; * for any."),
    )
    io_batch_max_size: int = setting(
        8_000_000, _bytes, env="RS_IO_BATCH_MAX_SIZE",
        doc="a batched read (GET) is closed after the record that takes its body past "
        "this many bytes.",
        cli=Cli("Body bytes after which a batched read is closed (512, 8MB, 1GiB)."),
    )
    io_batch_max_records: int = setting(
        85, _positive_count, env="RS_IO_BATCH_MAX_RECORDS",
        doc="records per batched read; with 15 more it is also the number of request "
        "headers accepted (never fewer than ``ReductChannel`` allows anyway).",
        cli=Cli("Records per batched read."),
    )
    io_batch_max_metadata_size: int = setting(
        512_000, _bytes, env="RS_IO_BATCH_MAX_METADATA_SIZE",
        doc="a batched read is closed after the record whose header takes its record "
        "headers past this many bytes; it also sizes the request header buffer (never "
        "below ``ReductChannel``'s own).",
        cli=Cli("Record header bytes after which a batched read is closed."),
    )
    io_batch_timeout: float = setting(
        5.0, _seconds, env="RS_IO_BATCH_TIMEOUT",
        doc="seconds a batched read holding records may go on scanning for more "
        "before it answers with what it has.",
        cli=Cli("Seconds a batched read may gather records."),
    )
    io_batch_records_timeout: float = setting(
        1.0, _seconds, env="RS_IO_BATCH_RECORDS_TIMEOUT",
        env_alias="RS_IO_BATCH_RECORDS_TIMEOUT_S",  # its name before 1.17
        doc="seconds a batched read holding records may look for the next one before "
        "it answers; an empty batched read of a continuous query waits this long for "
        "a new record.",
        cli=Cli("Seconds a batched read may wait for its next record."),
    )
    io_operation_timeout: float = setting(
        30.0, _seconds, env="RS_IO_OPERATION_TIMEOUT",
        doc="seconds a request body may stall (no byte arriving) before the "
        "connection is closed; a cut upload leaves no record.  Between requests "
        "``idle_timeout`` applies.",
        cli=Cli("Seconds a request body may stall before the connection is closed."),
    )
    io_max_writers_in_flight: int = setting(
        0, _count, env="RS_IO_MAX_WRITERS_IN_FLIGHT",
        doc="records written at the same time (0: no limit); a record beyond it waits "
        "up to ``io_operation_timeout`` for a free slot, with its body paused, then "
        "is refused with 429.",
        cli=Cli("Records written at the same time (0: no limit).", shown_default="0"),
    )
    shutdown_timeout: float = setting(
        10.0, _seconds, env="RS_SHUTDOWN_TIMEOUT",
        doc="seconds a stopping daemon (SIGTERM) lets in-flight requests finish "
        "before it aborts them.",
        cli=Cli("Seconds in-flight requests may take to finish after SIGTERM."),
    )
    lock_file_timeout: float = setting(
        0.0, _wait_seconds, env="RS_LOCK_FILE_TIMEOUT",
        doc="seconds a daemon waits for the data directory's lock held by another "
        "process before it gives up (0: at once).",
        cli=Cli("Seconds to wait for the data directory lock held by another daemon.",
                shown_default="0"),
    )
    table_cache_size: int = setting(
        64 << 20, _bytes, env="RS_TABLE_CACHE_SIZE",
        doc="bytes of block record tables kept loaded.",
    )

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


#: Each field's declaration, in field order.
SETTINGS: Mapping[str, Setting] = declarations(Config)
document(Config, SETTINGS)

#: The field names, in declaration order.
FIELDS: tuple[str, ...] = tuple(SETTINGS)

#: Environment variable for each field.
ENV_NAMES: Mapping[str, str] = {name: s.env for name, s in SETTINGS.items()}

#: Older names still read when the variable of :data:`ENV_NAMES` is unset.
ENV_ALIASES: Mapping[str, str] = {
    name: s.env_alias for name, s in SETTINGS.items() if s.env_alias is not None
}

_PARSERS: Mapping[str, Callable[[Any], Any]] = {name: s.parse for name, s in SETTINGS.items()}


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
            values[key] = value.splitlines() if SETTINGS[key].repeated else value
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
    names = {f: "--" + option_name(f) for f in FIELDS}
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
