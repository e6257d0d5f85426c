"""
Settings of the ``$system`` bucket's event streams (spec 1.20 §8, §9):
:class:`SystemSettings`, one of the bases of ``config.Config``.

``RS_SYSTEM_EVENTS_REMOTE_*`` are read and validated but used only by
replica instances forwarding their events to a primary, which this server
does not have.  The 1.19 ``RS_AUDIT_*`` variables are read only so that a
start can warn that 1.20 ignores them (``system.ignored_audit_settings``).

This module depends only on the standard library and attrs.
"""

from __future__ import annotations

from typing import Any

import attrs

from reduct_twisted.config_setting import Cli, setting
from reduct_twisted.config_values import _bytes, _path, _seconds, _text

__all__ = ["SystemSettings", "parse_switch"]

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})


def parse_switch(raw: Any) -> bool:
    """A boolean as the system-event settings accept it (``1/true/yes/on``, ``0/false/no/off``)."""
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("is not a boolean; expected true/false, yes/no, on/off or 1/0")


def _instance(raw: Any) -> str:
    value = str(raw).strip()
    if not value:
        raise ValueError("must not be empty")
    return value


@attrs.frozen(kw_only=True, slots=False)  # a base of Config beside others
class SystemSettings:
    """The ``$system`` settings (see the module docstring)."""

    system_events_enabled: bool = setting(
        True, parse_switch, env="RS_SYSTEM_EVENTS_ENABLED",
        doc="write audit, usage, replication and lifecycle events to bucket ``$system``.",
        cli=Cli("Write audit, usage, replication and lifecycle events to bucket $system "
                "(true/false)."),
    )
    system_events_quota_size: int | None = setting(
        None, _bytes, env="RS_SYSTEM_EVENTS_QUOTA_SIZE",
        doc="FIFO quota (bytes) given to ``$system`` when the server creates it; "
        "none by default.",
        cli=Cli("FIFO quota of $system when the server creates it (10GB, 1 GiB).",
                shown_default="none"),
    )
    system_events_remote_verify_ssl: bool = setting(
        True, parse_switch, env="RS_SYSTEM_EVENTS_REMOTE_VERIFY_SSL",
        doc="replica instances only (none here): verify the primary's certificate.",
        cli=Cli("Accepted for compatibility; replica instances only (none here)."),
    )
    system_events_remote_ca_path: str | None = setting(
        None, _path, env="RS_SYSTEM_EVENTS_REMOTE_CA_PATH",
        doc="replica instances only (none here): CA bundle for the primary.",
        cli=Cli("Accepted for compatibility; replica instances only (none here)."),
    )
    system_events_remote_timeout: float = setting(
        5.0, _seconds, env="RS_SYSTEM_EVENTS_REMOTE_TIMEOUT",
        doc="replica instances only (none here): seconds to forward an event batch.",
        cli=Cli("Accepted for compatibility; replica instances only (none here)."),
    )
    instance_name: str | None = setting(
        None, _instance, env="RS_INSTANCE_NAME",
        doc="the instance segment of ``$system`` entries; the host name by default "
        "(characters outside ``[A-Za-z0-9_-]`` become ``_``).",
        cli=Cli("Instance segment of $system entry names.", shown_default="the host name"),
    )
    audit_enabled: str | None = setting(
        None, _text, env="RS_AUDIT_ENABLED",
        doc="1.19's ``$audit`` switch; ignored since 1.20, with a warning at start.",
    )
    audit_quota_size: str | None = setting(
        None, _text, env="RS_AUDIT_QUOTA_SIZE",
        doc="1.19's ``$audit`` quota; ignored since 1.20, with a warning at start.",
    )
    audit_remote_verify_ssl: str | None = setting(
        None, _text, env="RS_AUDIT_REMOTE_VERIFY_SSL",
        doc="1.19 only; ignored since 1.20, with a warning at start.",
    )
    audit_remote_ca_path: str | None = setting(
        None, _text, env="RS_AUDIT_REMOTE_CA_PATH",
        doc="1.19 only; ignored since 1.20, with a warning at start.",
    )
    audit_remote_timeout: str | None = setting(
        None, _text, env="RS_AUDIT_REMOTE_TIMEOUT",
        doc="1.19 only; ignored since 1.20, with a warning at start.",
    )
