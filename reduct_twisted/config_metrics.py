"""
The settings of ``{base}metrics`` (issue #18; ``metrics.py``):
:class:`MetricsSettings`, one of the bases of ``config.Config``.

This module depends only on the standard library, attrs and the other
``config_*`` modules.
"""

from __future__ import annotations

import attrs

from reduct_twisted.config_setting import Cli, setting
from reduct_twisted.config_system import parse_switch

__all__ = ["MetricsSettings"]


@attrs.frozen(kw_only=True, slots=False)  # a base of Config beside others
class MetricsSettings:
    """The Prometheus endpoint (see the module docstring)."""

    metrics: bool = setting(
        True, parse_switch, env="RS_METRICS",
        doc="serve Prometheus metrics at ``{base}metrics`` (and ``{base}api/v1/metrics``); "
        "``off``: no such route (404) and nothing counted.  Ours.",
        cli=Cli("Serve Prometheus metrics at <base path>metrics (on/off)."),
    )
    metrics_auth: bool = setting(
        True, parse_switch, env="RS_METRICS_AUTH",
        doc="with authentication on, ``/metrics`` needs a valid token (any permission), "
        "like ``/info``; ``off``: anyone may scrape it.  Ours.",
        cli=Cli("With authentication on, /metrics needs a valid token (on/off)."),
    )
