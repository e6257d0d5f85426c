"""
The settings of query links (spec 1.20 §6.1, §9): the public base URL put
in front of ``api/v1/links/…`` and, optionally, the signing key.

A base of :class:`~reduct_twisted.config.Config` (issue #15's rule: each
area declares its settings in its own ``config_<area>.py``).  This module
depends only on the standard library, attrs and ``config_setting``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import attrs

from reduct_twisted.config_setting import Cli, setting


def _public_url(raw: Any) -> str:
    value = str(raw).strip()
    if any(c.isspace() for c in value):
        raise ValueError("must not contain white space")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        raise ValueError(f"is not a URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must be a URL without '?' or '#'")
    return value if value.endswith("/") else value + "/"


def _signing_key(raw: Any) -> str:
    # Never raises: a ConfigError would print the value; the length is
    # checked when the links are set up (wiring.make_links).
    return str(raw).strip()


@attrs.frozen(kw_only=True, slots=False)  # a base of Config beside others
class LinksSettings:
    """Query links (``http/links.py``)."""

    public_url: str | None = setting(
        None, _public_url, env="RS_PUBLIC_URL",
        doc="base URL of the query links this server hands out (a ``/`` is added "
        "if missing); default ``http[s]://<host>:<port><api_base_path>`` (port "
        "omitted for 80 with HTTP and 443 with HTTPS).  A link request's "
        "``base_url`` wins.",
        cli=Cli("Base URL of the query links this server hands out.",
                shown_default="http[s]://<host>:<port><api base path>"),
    )
    link_signing_key: str | None = setting(
        None, _signing_key, env="RS_LINK_SIGNING_KEY", secret=True,
        doc="secret (32 characters or more) signing the query links; give every "
        "daemon behind one public URL the same.  Unset: a random key kept in "
        "``<data_path>/.link-key`` (made at the first start, mode 0600).  Changing "
        "or losing it invalidates every link handed out.  Ours.",
        cli=Cli("Secret (32+ characters) signing query links. Visible to other users in "
                "the process list: prefer RS_LINK_SIGNING_KEY or the config file.",
                shown_default="a random key in <data path>/.link-key"),
    )
