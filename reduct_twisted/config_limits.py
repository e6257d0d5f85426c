"""
Settings of limits, instance roles and the replication client (spec 1.20
§9, §5.10, §5.11, §1.8): the :class:`LimitsSettings` fields
``config.Config`` inherits, their value parsers, and the rate-limit value
(:class:`RateLimit`).

What each setting does here, and what it does not:

* ``engine_max_storage_size``: a cap over the size of all buckets
  (``storage/usage.py``); ``rate_limit_*``: fixed-window counters per
  client address (``http/ratelimit.py``); ``replication_verify_ssl`` and
  ``replication_ca_path``: TLS of replication destinations
  (``replication/tls.py``); ``lock_file_polling_interval``: how often a
  passive stand-by tries the data directory lock (``datadir.py``).
* Accepted for compatibility, no effect in a single-node daemon without
  write-ahead log or internal locks (each said so in its ``doc``):
  ``lock_file_ttl``, ``engine_compaction_interval``,
  ``engine_enable_integrity_checks``, ``rwlock_timeout``,
  ``rwlock_failure_action``; ``io_max_readers_in_flight`` (removed
  upstream in 1.19.7) is logged as ignored when set.
* ``instance_role``: only ``STANDALONE``; the other roles stop the start
  with a one-line error (this daemon is one node).
* ``RS_LICENSE_PATH`` and ``RS_REMOTE_*`` (enterprise-only since 1.19.1)
  are no settings: :func:`ignored_variables` names them for a warning.

This module depends only on the standard library and attrs.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Mapping

import attrs

from reduct_twisted.config_setting import Cli, setting
from reduct_twisted.config_values import (
    _count,
    _seconds,
    _wait_seconds,
    parse_byte_size,
    parse_whole_number,
)

#: The one instance role a single-node daemon has (spec 1.20 §5.11).
STANDALONE = "STANDALONE"
#: Every role upstream knows; the others need shared storage or a primary.
ROLES = (STANDALONE, "PRIMARY", "SECONDARY", "REPLICA")

#: Seconds in a rate window without a period (``100`` is ``100/h``).
HOUR = 3600

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"([0-9]+)([a-z]+)")


@attrs.frozen
class RateLimit:
    """
    A parsed ``RS_RATE_LIMIT_*`` value: at most ``amount`` units (requests
    or bytes) per fixed window of ``window`` whole seconds (at least 1).
    """

    amount: int
    window: int


def parse_duration(text: str) -> float:
    """
    A duration literal of upstream: parts like ``30s``, ``1h 30m``, ``100ms``
    separated by white space (units ``us``, ``ms``, ``s``, ``m``, ``h``,
    ``d``, whole numbers).

    :return: seconds.
    :raises ValueError: not such a literal; the text follows ``"is "``.
    """
    parts = text.split()
    if not parts:
        raise ValueError("not a duration (such as 30s or 1h 30m)")
    total = 0.0
    for part in parts:
        match = _DURATION_PART.fullmatch(part.lower())
        if match is None or match.group(2) not in _UNITS:
            raise ValueError(f"not a duration: {part!r} (units us, ms, s, m, h, d)")
        total += int(match.group(1)) * _UNITS[match.group(2)]
    return total


def _rate_window(text: str) -> int:
    text = text.strip()
    if text.isalpha():
        text = "1" + text  # "/s" is "/1s"
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("not a positive rate period")
    # Whole seconds, at least one (upstream's fixed windows).
    return max(1, math.floor(seconds))


def _rate_limit(amount) -> Any:
    def parse(raw: Any) -> RateLimit:
        text = str(raw).strip()
        head, slash, period = text.rpartition("/")
        if not slash:
            head, window = text, HOUR
        else:
            try:
                window = _rate_window(period)
            except ValueError as e:
                raise ValueError(f"has a bad period: {e}") from None
        try:
            value = amount(head.strip())
        except ValueError as e:
            raise ValueError(f"is not a rate limit ({e}); expected <amount>[/<period>]") from None
        return RateLimit(value, window)

    return parse


def _requests(text: str) -> int:
    if text.lower().endswith("req"):
        text = text[:-3].strip()
    return parse_whole_number(text)


_api_rate = _rate_limit(_requests)
_byte_rate = _rate_limit(parse_byte_size)


def _storage_size(raw: Any) -> int:
    try:
        return parse_byte_size(str(raw))
    except ValueError as e:
        raise ValueError(f"is {e}") from None


def _boolean(raw: Any) -> bool:
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("is not a boolean; expected true or false (1/0, yes/no, on/off)")


def _role(raw: Any) -> str:
    role = str(raw).strip().upper()
    if role not in ROLES:
        raise ValueError(f"is not an instance role; expected one of {', '.join(ROLES)}")
    if role != STANDALONE:
        raise ValueError(
            "is not supported: this daemon is a single node and runs only as "
            "STANDALONE (primary/secondary fail-over and read-only replicas need "
            "upstream ReductStore)"
        )
    return role


def _ca_file(raw: Any) -> str:
    path = str(raw).strip()
    if not os.path.isfile(path):
        raise ValueError("is not a file")
    return path


def _failure_action(raw: Any) -> str:
    action = str(raw).strip().lower()
    if action not in ("error", "panic"):
        raise ValueError("is not a lock failure action; expected error or panic")
    return action


@attrs.frozen(kw_only=True, slots=False)  # a base of Config beside others
class LimitsSettings:
    """The limits, role and replication-client fields of ``Config``."""

    engine_max_storage_size: int = setting(
        0, _storage_size, env="RS_ENGINE_MAX_STORAGE_SIZE",
        doc="bytes all buckets together (``$system`` included) may hold; a record "
        'whose length would take them past it is refused with 500 "storage limit '
        'exceeded" (0: no cap).',
        cli=Cli("Bytes all buckets together may hold (0: no cap; 10GB, 1 TiB).",
                shown_default="0"),
    )
    rate_limit_api: RateLimit | None = setting(
        None, _api_rate, env="RS_RATE_LIMIT_API",
        doc="requests per fixed window and client address, every path included "
        "(``100req/m``, ``5000/h``, ``1000``: per hour); unset: none.",
        cli=Cli("Requests per window and client address, e.g. 100req/m.",
                shown_default="none"),
    )
    rate_limit_ingress: RateLimit | None = setting(
        None, _byte_rate, env="RS_RATE_LIMIT_INGRESS",
        doc="announced bytes of record writes per fixed window and client address "
        "(``10MB/s``); unset: none.",
        cli=Cli("Written bytes per window and client address, e.g. 10MB/s.",
                shown_default="none"),
    )
    rate_limit_egress: RateLimit | None = setting(
        None, _byte_rate, env="RS_RATE_LIMIT_EGRESS",
        doc="bytes of record reads (single, batch bodies, links) per fixed window "
        "and client address (``1GB/h``); unset: none.",
        cli=Cli("Read bytes per window and client address, e.g. 1GB/h.",
                shown_default="none"),
    )
    instance_role: str = setting(
        STANDALONE, _role, env="RS_INSTANCE_ROLE",
        doc="``STANDALONE`` only: ``PRIMARY``, ``SECONDARY`` and ``REPLICA`` stop "
        "the start with an error (this daemon is a single node).",
        cli=Cli("STANDALONE (the only role of this single-node daemon)."),
    )
    lock_file_ttl: float = setting(
        30.0, _seconds, env="RS_LOCK_FILE_TTL",
        doc="accepted for compatibility, no effect: the data directory lock is a "
        "kernel ``flock``, released when its holder dies, so it is never stale.",
        cli=Cli("Accepted for compatibility; the flock-based lock is never stale."),
    )
    lock_file_polling_interval: float = setting(
        0.1, _seconds, env="RS_LOCK_FILE_POLLING_INTERVAL",
        doc="seconds between two tries of a passive stand-by waiting for the data "
        "directory lock (``lock_file_timeout``); upstream's default is 10.",
        cli=Cli("Seconds between two tries of a stand-by for the data directory lock."),
    )
    engine_compaction_interval: float = setting(
        60.0, _wait_seconds, env="RS_ENGINE_COMPACTION_INTERVAL",
        doc="accepted for compatibility, no effect: every record's metadata is "
        "written to its block at commit, there is no log to compact.",
        cli=Cli("Accepted for compatibility; there is no write-ahead log to compact."),
    )
    engine_enable_integrity_checks: bool = setting(
        True, _boolean, env="RS_ENGINE_ENABLE_INTEGRITY_CHECKS",
        doc="accepted for compatibility: the start-up checks after an unclean stop "
        "(sizes and CRCs of the files changed during the last run) always run.",
        cli=Cli("Accepted for compatibility; start-up recovery checks always run.",
                shown_default="true"),
    )
    rwlock_timeout: float = setting(
        60.0, _seconds, env="RS_RWLOCK_TIMEOUT",
        doc="accepted for compatibility, no effect: storage runs on the reactor "
        "thread and takes no internal locks.",
        cli=Cli("Accepted for compatibility; there are no internal locks."),
    )
    rwlock_failure_action: str = setting(
        "error", _failure_action, env="RS_RWLOCK_FAILURE_ACTION",
        doc="``error`` or ``panic`` (anything else stops the start); no effect, "
        "as ``rwlock_timeout``.",
        cli=Cli("error or panic; accepted for compatibility."),
    )
    io_max_readers_in_flight: int | None = setting(
        None, _count, env="RS_IO_MAX_READERS_IN_FLIGHT",
        doc="ignored with a warning at start-up (upstream 1.19.6 only).",
    )
    replication_verify_ssl: bool = setting(
        True, _boolean, env="RS_REPLICATION_VERIFY_SSL",
        doc="verify the TLS certificate (and host name) of ``https`` replication "
        "destinations.",
        cli=Cli("Verify TLS certificates of replication destinations (true/false).",
                shown_default="true"),
    )
    replication_ca_path: str | None = setting(
        None, _ca_file, env="RS_REPLICATION_CA_PATH",
        doc="PEM file of CA certificates replication destinations are verified "
        "against, besides the system's trust store.",
        cli=Cli("PEM CA bundle for replication destinations.", shown_default="none"),
    )


#: Variables read only by upstream's enterprise build (since 1.19.1).
ENTERPRISE_ONLY = ("RS_LICENSE_PATH", "RS_REMOTE_")


def ignored_variables(environ: Mapping[str, str], config: LimitsSettings) -> list[str]:
    """
    :return: one warning line per variable of ``environ`` or setting of
        ``config`` that is accepted but ignored here: ``RS_LICENSE_PATH``,
        ``RS_REMOTE_*`` (enterprise-only) and ``io_max_readers_in_flight``.
    """
    lines = []
    for name in sorted(environ):
        if environ[name].strip() and (
            name == ENTERPRISE_ONLY[0] or name.startswith(ENTERPRISE_ONLY[1])
        ):
            lines.append(f"{name} is ignored: it belongs to upstream's enterprise build")
    if config.io_max_readers_in_flight is not None:
        lines.append("io_max_readers_in_flight (RS_IO_MAX_READERS_IN_FLIGHT) is ignored: "
                     "upstream removed it in 1.19.7")
    return lines


__all__ = [
    "LimitsSettings",
    "RateLimit",
    "ROLES",
    "STANDALONE",
    "ignored_variables",
    "parse_duration",
]
