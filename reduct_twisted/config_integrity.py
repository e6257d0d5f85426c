"""
The ``integrity`` setting (issue #16): what the daemon keeps to prove a
record is the one written.

* ``log`` (default): a SHA-256 per record and entry numbers; the per-entry
  Merkle log is fed from them (its log comes with a later change: until
  then ``log`` behaves as ``digest``);
* ``digest``: a SHA-256 per record and entry numbers;
* ``off``: entry numbers only; no digest is computed (records written so
  get none, and the backfill of older records does not run).

A base of :class:`~reduct_twisted.config.Config` (issue #15's rule: each
area declares its settings in its own ``config_<area>.py``).  This module
depends only on the standard library, attrs and ``config_setting``.
"""

from __future__ import annotations

from typing import Any

import attrs

from reduct_twisted.config_setting import Cli, setting
from reduct_twisted.config_values import _path

#: The accepted values, strongest first.
INTEGRITY_MODES = ("log", "digest", "off")


def parse_integrity(raw: Any) -> str:
    """:return: ``raw`` as one of :data:`INTEGRITY_MODES` (case-insensitive)."""
    value = str(raw).strip().lower()
    if value not in INTEGRITY_MODES:
        raise ValueError(f"must be one of {', '.join(INTEGRITY_MODES)}")
    return value


def computes_digests(mode: str) -> bool:
    """:return: whether records get a SHA-256 under ``mode``."""
    return mode != "off"


@attrs.frozen(kw_only=True, slots=False)  # a base of Config beside others
class IntegritySettings:
    """Record digests, entry numbers and the entry log (issue #16)."""

    integrity: str = setting(
        "log", parse_integrity, env="RS_INTEGRITY",
        doc="``log`` (default): SHA-256 per record, entry numbers and the per-entry "
        "log; ``digest``: SHA-256 and numbers; ``off``: numbers only, no digest.  Ours.",
        cli=Cli("Record integrity: log (digests, numbers, entry log), digest (digests and "
                "numbers) or off (numbers only)."),
    )
    log_key_path: str | None = setting(
        None, _path, env="RS_LOG_KEY_PATH",
        doc="the Ed25519 key file the entry logs' tree heads are signed with (read, never "
        "created or changed); unset: ``<data_path>/.log-key``, made at the first start "
        "(mode 0600).  Used with ``integrity = log`` only.  Ours.",
        cli=Cli("Ed25519 key file signing the entry logs' tree heads (read only).",
                shown_default="<data path>/.log-key, made at the first start"),
    )
