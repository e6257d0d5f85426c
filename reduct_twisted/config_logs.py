"""
The log settings (issue #18): the per-request access line and the log's
format.  The level is ``log_level`` (``config.py``).

* ``access_log`` (``RS_ACCESS_LOG``, default on): one INFO line per finished
  request (``http/access.py``); off, or with ``log_level`` above INFO, none
  is made at all.
* ``log_format`` (``RS_LOG_FORMAT``): ``text`` (twistd's lines) or ``json``
  (one JSON object per line, ``twisted.logger``'s JSON observer; see
  ``logs_format.py``).

A base of :class:`~reduct_twisted.config.Config` (issue #15's rule: each
area declares its settings in its own ``config_<area>.py``).  This module
depends only on the standard library, attrs and ``config_setting``.
"""

from __future__ import annotations

from typing import Any

import attrs

from reduct_twisted.config_setting import Cli, setting
from reduct_twisted.config_system import parse_switch

__all__ = ["LOG_FORMATS", "LogSettings", "parse_log_format"]

#: The accepted values of ``log_format``, the default first.
LOG_FORMATS = ("text", "json")


def parse_log_format(raw: Any) -> str:
    """:return: ``raw`` as one of :data:`LOG_FORMATS` (case-insensitive)."""
    value = str(raw).strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"is not a log format; expected {' or '.join(LOG_FORMATS)}")
    return value


@attrs.frozen(kw_only=True, slots=False)  # a base of Config beside others
class LogSettings:
    """The access log and the log format (see the module docstring)."""

    access_log: bool = setting(
        True, parse_switch, env="RS_ACCESS_LOG",
        doc="one INFO line per finished request (method, path without secrets, status, "
        "bytes, duration, client address, token name).  Ours.",
        cli=Cli("One log line per request (on/off).", shown_default="on"),
    )
    log_format: str = setting(
        "text", parse_log_format, env="RS_LOG_FORMAT",
        doc="``text`` (twistd's lines) or ``json`` (one JSON object per line).  Ours.",
        cli=Cli("text or json (one JSON object per line)."),
    )
