"""
Buckets and tokens provisioned through environment variables (spec §3.14).

Each resource is a group of variables sharing an ``<ID>`` (any string); a
group exists when its ``_NAME`` variable is set::

    RS_BUCKET_<ID>_NAME               bucket name (required)
    RS_BUCKET_<ID>_QUOTA_TYPE         NONE, FIFO or HARD (any case)
    RS_BUCKET_<ID>_QUOTA_SIZE         byte size: 512, 1TB, 10.4 MB, 1 GiB
    RS_BUCKET_<ID>_MAX_BLOCK_SIZE     byte size
    RS_BUCKET_<ID>_MAX_BLOCK_RECORDS  whole number
    RS_TOKEN_<ID>_NAME                token name (required)
    RS_TOKEN_<ID>_VALUE               the secret (required)
    RS_TOKEN_<ID>_FULL_ACCESS         true or false (default false)
    RS_TOKEN_<ID>_READ, _WRITE        comma-separated bucket names
    RS_TOKEN_<ID>_EXPIRES_AT          RFC 3339 expiry with an offset (API 1.19)
    RS_REPLICATION_<ID>_NAME          replication name (required)
    RS_REPLICATION_<ID>_SRC_BUCKET, _DST_BUCKET, _DST_HOST    (required)
    RS_REPLICATION_<ID>_DST_TOKEN     token for the destination
    RS_REPLICATION_<ID>_ENTRIES       comma-separated entry names
    RS_REPLICATION_<ID>_INCLUDE_<label>, _EXCLUDE_<label>     label values
    RS_REPLICATION_<ID>_EACH_N        whole number > 0
    RS_REPLICATION_<ID>_EACH_S        seconds > 0
    RS_REPLICATION_<ID>_WHEN          a JSON ``when`` condition
    RS_REPLICATION_<ID>_MODE          enabled, paused or disabled (API 1.19;
                                      unset: the mode it had, else enabled;
                                      anything else: not provisioned)

As upstream, and unlike :mod:`reduct_twisted.config`, nothing here stops the
daemon: an invalid value is logged and ignored (the default applies), and a
resource without a usable name, a token without a value, or a replication
without its source bucket, destination bucket or host, is logged and left
out.  An empty variable counts as unset.  Two groups naming the same
resource: the one whose ``<ID>`` sorts last wins.  Token values (ours and
replication destination tokens) never reach a log line nor a ``repr``.
Replication settings are checked against the storage engine when they are
applied (``ReplicationManager.provision``).

Bucket settings are checked by the storage engine's own parser
(:func:`~reduct_twisted.storage.settings.parse_settings_fields`), so the
settings produced here are exactly what ``StorageEngine.provision_bucket``
accepts.

This module depends only on the standard library, attrs, ``twisted.logger``,
the pure settings module of the storage core and the byte-size and number
parsers of :mod:`reduct_twisted.config`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Callable, Mapping

import attrs
from twisted.logger import Logger

from reduct_twisted.config_values import parse_byte_size, parse_whole_number
from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.settings import is_valid_name, parse_settings_fields
from reduct_twisted.auth.model import is_permission_item
from reduct_twisted.auth.terms import parse_rfc3339
from reduct_twisted.replication.settings import MODES as REPLICATION_MODES

_log = Logger()

_BUCKET_NAME = re.compile(r"RS_BUCKET_(.*)_NAME")
_TOKEN_NAME = re.compile(r"RS_TOKEN_(.*)_NAME")
_REPLICATION_NAME = re.compile(r"RS_REPLICATION_(.*)_NAME")


@attrs.frozen
class ProvisionedBucket:
    """
    A bucket to create, or whose settings to overwrite, at start-up.

    :ivar name: a valid bucket name.
    :ivar settings: the settings the environment gives, as decoded JSON
        (``quota_type``, ``quota_size``, ``max_block_size``,
        ``max_block_records``; only those set).
    """

    name: str
    settings: dict


@attrs.frozen
class ProvisionedToken:
    """
    A token to create, or overwrite, at start-up.  Its ``repr`` leaves out
    the value.

    :ivar name: a valid token name (the bucket name rule).
    :ivar value: the secret, never empty.
    :ivar permissions: ``{"full_access": bool, "read": [...], "write": [...]}``.
    :ivar expires_at: ``RS_TOKEN_<ID>_EXPIRES_AT`` in seconds since the
        epoch, or None.
    """

    name: str
    value: str = attrs.field(repr=False)
    permissions: dict
    expires_at: float | None = None


@attrs.frozen
class ProvisionedReplication:
    """
    A replication to create, or whose settings to overwrite, at start-up.
    Its ``repr`` leaves out the settings (they hold the destination token).

    :ivar name: a valid replication name.
    :ivar settings: the settings as the API takes them (decoded JSON).
    """

    name: str
    settings: dict = attrs.field(repr=False)


@attrs.frozen
class Provisioning:
    """
    Everything the environment provisions, each list sorted by name.

    :ivar buckets: :class:`ProvisionedBucket` items.
    :ivar tokens: :class:`ProvisionedToken` items.
    :ivar replications: :class:`ProvisionedReplication` items.
    """

    buckets: list
    tokens: list
    replications: list = attrs.Factory(list)


def _parse_quota_type(text: str) -> str:
    return text.strip().upper()


#: Variable suffix of each bucket setting, its key and how its text is read.
_BUCKET_SETTINGS: Mapping[str, tuple[str, Callable[[str], object]]] = {
    "QUOTA_TYPE": ("quota_type", _parse_quota_type),
    "QUOTA_SIZE": ("quota_size", parse_byte_size),
    "MAX_BLOCK_SIZE": ("max_block_size", parse_byte_size),
    "MAX_BLOCK_RECORDS": ("max_block_records", parse_whole_number),
}

_TOKEN_SUFFIXES = ("VALUE", "FULL_ACCESS", "READ", "WRITE", "EXPIRES_AT")
_REPLICATION_SUFFIXES = (
    "SRC_BUCKET", "DST_BUCKET", "DST_HOST", "DST_TOKEN", "ENTRIES", "EACH_N", "EACH_S", "WHEN",
    "MODE",
)


class _Reader:
    """The environment, and the logger told about what is ignored."""

    def __init__(self, environ: Mapping[str, str], log: Logger) -> None:
        self.environ = environ
        self.log = log

    def get(self, variable: str) -> str | None:
        """:return: the variable's value, ``None`` if unset or blank."""
        value = self.environ.get(variable)
        return value if value is not None and value.strip() else None

    def ignore(self, variable: str, value: str | None, reason: str) -> None:
        """
        Log that ``variable`` is ignored.

        :param value: shown in the message; ``None`` for secrets.
        """
        if value is None:
            self.log.warn("Ignoring {variable}: {reason}", variable=variable, reason=reason)
        else:
            self.log.warn(
                "Ignoring {variable}={value!r}: {reason}",
                variable=variable, value=value, reason=reason,
            )

    def groups(self, pattern: re.Pattern, prefix: str, suffixes, kind: str) -> list:
        """
        :return: ``(id, name)`` of every group with a valid name, sorted by
            ``<ID>``; invalid names and orphan variables are logged.
        """
        ids = sorted(m.group(1) for m in map(pattern.fullmatch, self.environ) if m)
        found = []
        for rid in ids:
            variable = f"{prefix}{rid}_NAME"
            name = self.environ[variable].strip()
            if is_valid_name(name):
                found.append((rid, name))
            else:
                self.ignore(variable, name, f"not a valid {kind} name (letters, digits, "
                                            f"'-' and '_', at most 255); {kind} not provisioned")
        known = set(ids)
        for variable in sorted(self.environ):
            for suffix in suffixes:
                end = "_" + suffix
                if (variable.startswith(prefix) and variable.endswith(end)
                        and len(variable) >= len(prefix) + len(end)):
                    rid = variable[len(prefix):-len(end)]
                    if rid not in known:
                        self.ignore(variable, None, f"{prefix}{rid}_NAME is not set")
        return found


def _unique(resources: list, prefix: str, kind: str, log: Logger) -> list:
    # ``resources`` is ``(id, resource)`` in ``<ID>`` order: the last one wins.
    chosen: dict = {}
    for rid, resource in resources:
        if resource.name in chosen:
            log.warn(
                "{later} names {kind} {name!r} again (also {earlier}); the later one wins",
                later=f"{prefix}{rid}_NAME", earlier=f"{prefix}{chosen[resource.name][0]}_NAME",
                kind=kind, name=resource.name,
            )
        chosen[resource.name] = (rid, resource)
    return [chosen[name][1] for name in sorted(chosen)]


def _bucket(env: _Reader, rid: str, name: str) -> ProvisionedBucket:
    settings: dict = {}
    for suffix, (key, parse) in _BUCKET_SETTINGS.items():
        variable = f"RS_BUCKET_{rid}_{suffix}"
        raw = env.get(variable)
        if raw is None:
            continue
        try:
            # The engine's parser, so both agree on what is valid.
            settings.update(parse_settings_fields({key: parse(raw)}))
        except ValueError as e:
            env.ignore(variable, raw, f"{e}; using the default")
        except UnprocessableEntity as e:
            env.ignore(variable, raw, f"{e.message}; using the default")
    return ProvisionedBucket(name, settings)


def _token(env: _Reader, rid: str, name: str) -> ProvisionedToken | None:
    prefix = f"RS_TOKEN_{rid}_"
    value = env.get(prefix + "VALUE")
    if value is None:
        env.log.warn(
            "{variable} is not set or empty; token {name!r} not provisioned",
            variable=prefix + "VALUE", name=name,
        )
        return None
    full_access = False
    raw = env.get(prefix + "FULL_ACCESS")
    if raw is not None:
        if raw.strip().lower() in ("true", "false"):
            full_access = raw.strip().lower() == "true"
        else:
            env.ignore(prefix + "FULL_ACCESS", raw, "expected true or false; using false")
    permissions = {"full_access": full_access}
    for key in ("read", "write"):
        variable = prefix + key.upper()
        items: list = []
        for item in (env.get(variable) or "").split(","):
            item = item.strip()
            if item and not is_permission_item(item):
                env.ignore(variable, item, "may contain only letters, digits, '-', '_' and '*'")
            elif item and item not in items:
                items.append(item)
        permissions[key] = items
    expires_at = None
    raw = env.get(prefix + "EXPIRES_AT")
    if raw is not None:
        try:
            expires_at = parse_rfc3339(raw)
        except ValueError:
            env.ignore(prefix + "EXPIRES_AT", raw, "not an RFC 3339 time with an offset; no expiry")
    # Surrounding white space could never match: HTTP trims header values.
    return ProvisionedToken(name, value.strip(), permissions, expires_at)


def _positive_seconds(text: str) -> float:
    value = float(text.strip())
    if not (math.isfinite(value) and value > 0):
        raise ValueError("not a positive number of seconds")
    return value


def _positive_count(text: str) -> int:
    value = parse_whole_number(text)
    if not value:
        raise ValueError("must be greater than 0")
    return value


def _condition(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


#: Variable suffix of each optional replication setting, its key and parser.
_REPLICATION_SETTINGS: Mapping[str, tuple[str, Callable[[str], object]]] = {
    "EACH_N": ("each_n", _positive_count),
    "EACH_S": ("each_s", _positive_seconds),
    "WHEN": ("when", _condition),
}


def _replication(env: _Reader, rid: str, name: str) -> ProvisionedReplication | None:
    prefix = f"RS_REPLICATION_{rid}_"
    settings: dict = {}
    for key in ("src_bucket", "dst_bucket", "dst_host"):
        value = env.get(prefix + key.upper())
        if value is None:
            env.log.warn(
                "{variable} is not set or empty; replication {name!r} not provisioned",
                variable=prefix + key.upper(), name=name,
            )
            return None
        settings[key] = value.strip()
    settings["dst_token"] = (env.get(prefix + "DST_TOKEN") or "").strip()
    entries = (env.get(prefix + "ENTRIES") or "").split(",")
    settings["entries"] = [e.strip() for e in entries if e.strip()]
    for key in ("include", "exclude"):
        start = f"{prefix}{key.upper()}_"
        settings[key] = {
            variable[len(start):]: env.environ[variable].strip()
            for variable in sorted(env.environ)
            if variable.startswith(start) and len(variable) > len(start)
        }
    for suffix, (key, parse) in _REPLICATION_SETTINGS.items():
        raw = env.get(prefix + suffix)
        if raw is None:
            continue
        try:
            settings[key] = parse(raw)
        except ValueError as e:
            env.ignore(prefix + suffix, raw, f"{e}; using the default")
    mode = env.get(prefix + "MODE")
    if mode is not None:
        if mode.strip().lower() not in REPLICATION_MODES:
            env.ignore(prefix + "MODE", mode, "not one of enabled, paused, disabled; "
                                              f"replication {name!r} not provisioned")
            return None
        settings["mode"] = mode.strip().lower()
    return ProvisionedReplication(name, settings)


def parse_provisioning(environ: Mapping[str, str], log: Logger | None = None) -> Provisioning:
    """
    Read the provisioned buckets, tokens and replications from the environment.

    Never fails: whatever is invalid is logged as a warning and ignored.

    :param environ: the process environment (``os.environ``).
    :param log: where warnings go; this module's logger by default.
    :return: the buckets, tokens and replications, each sorted by name.
    """
    env = _Reader(environ, _log if log is None else log)
    groups = env.groups(_BUCKET_NAME, "RS_BUCKET_", tuple(_BUCKET_SETTINGS), "bucket")
    buckets = [(rid, _bucket(env, rid, name)) for rid, name in groups]
    tokens = []
    for rid, name in env.groups(_TOKEN_NAME, "RS_TOKEN_", _TOKEN_SUFFIXES, "token"):
        token = _token(env, rid, name)
        if token is not None:
            tokens.append((rid, token))
    replications = []
    for rid, name in env.groups(_REPLICATION_NAME, "RS_REPLICATION_", _REPLICATION_SUFFIXES,
                                "replication"):
        replication = _replication(env, rid, name)
        if replication is not None:
            replications.append((rid, replication))
    return Provisioning(
        _unique(buckets, "RS_BUCKET_", "bucket", env.log),
        _unique(tokens, "RS_TOKEN_", "token", env.log),
        _unique(replications, "RS_REPLICATION_", "replication", env.log),
    )
