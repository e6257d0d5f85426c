"""
Lifecycle policies provisioned through environment variables (spec 1.20
§7.4, §9), read by :func:`reduct_twisted.provision.parse_provisioning`::

    RS_LIFECYCLE_<ID>_NAME         policy name (required)
    RS_LIFECYCLE_<ID>_TYPE         delete or compress (required)
    RS_LIFECYCLE_<ID>_BUCKET       the bucket (required)
    RS_LIFECYCLE_<ID>_OLDER_THAN   duration literal, at least 1h (required)
    RS_LIFECYCLE_<ID>_INTERVAL     duration literal, at least 10m (3600s)
    RS_LIFECYCLE_<ID>_ENTRIES      comma-separated names or prefix* patterns
    RS_LIFECYCLE_<ID>_WHEN         a JSON ``when`` condition
    RS_LIFECYCLE_<ID>_MODE         enabled, disabled or dry_run (unset: the
                                   mode it had, else enabled)

As for the other provisioned resources nothing here stops the daemon: a
policy whose required variable is missing, or whose ``_TYPE``, ``_MODE`` or
``_WHEN`` is invalid, is logged and left out (an ignored ``_WHEN`` would
widen what a delete policy removes).  The values (durations, bucket,
condition) are checked when the policies are applied
(``LifecycleManager.provision``); one that fails is skipped.
"""

from __future__ import annotations

import json
import re

import attrs

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.lifecycle.settings import MODES, TYPES, LifecycleSettings, parse_settings

PREFIX = "RS_LIFECYCLE_"
NAME_PATTERN = re.compile(r"RS_LIFECYCLE_(.*)_NAME")
SUFFIXES = ("TYPE", "BUCKET", "OLDER_THAN", "INTERVAL", "ENTRIES", "WHEN", "MODE")


@attrs.frozen
class ProvisionedLifecycle:
    """
    A lifecycle policy to create, or whose settings to overwrite, at start-up.

    :ivar name: a valid policy name (the bucket name rule).
    :ivar settings: its ``LifecycleSettings`` (shape checked, values not yet).
    :ivar mode_given: whether ``_MODE`` was set.
    """

    name: str
    settings: LifecycleSettings
    mode_given: bool


def _lifecycle(env, rid: str, name: str):
    prefix = f"{PREFIX}{rid}_"
    body: dict = {}
    for key in ("type", "bucket", "older_than"):
        value = env.get(prefix + key.upper())
        if value is None:
            env.log.warn("{variable} is not set or empty; lifecycle {name!r} not provisioned",
                         variable=prefix + key.upper(), name=name)
            return None
        body[key] = value.strip()
    if body["type"].lower() not in TYPES:
        env.ignore(prefix + "TYPE", body["type"], "not one of delete, compress; "
                                                  f"lifecycle {name!r} not provisioned")
        return None
    body["type"] = body["type"].lower()
    interval = env.get(prefix + "INTERVAL")
    if interval is not None:
        body["interval"] = interval.strip()
    entries = (env.get(prefix + "ENTRIES") or "").split(",")
    body["entries"] = [e.strip() for e in entries if e.strip()]
    when = env.get(prefix + "WHEN")
    if when is not None:
        try:
            body["when"] = json.loads(when)
        except ValueError as exc:
            env.ignore(prefix + "WHEN", when, f"not JSON ({exc}); lifecycle {name!r} not "
                                              "provisioned")
            return None
    mode = env.get(prefix + "MODE")
    if mode is not None:
        if mode.strip().lower() not in MODES:
            env.ignore(prefix + "MODE", mode, "not one of enabled, disabled, dry_run; "
                                              f"lifecycle {name!r} not provisioned")
            return None
        body["mode"] = mode.strip().lower()
    try:
        settings = parse_settings(body)
    except UnprocessableEntity as exc:  # (cannot happen with the checks above)
        env.log.warn("Lifecycle {name!r} not provisioned: {reason}", name=name,
                     reason=exc.message)
        return None
    return ProvisionedLifecycle(name, settings, mode is not None)


def parse_lifecycles(env) -> list:
    """
    :param env: ``provision._Reader`` (the environment and its logger).
    :return: ``(id, ProvisionedLifecycle)`` of each usable group, by ``<ID>``.
    """
    found = []
    for rid, name in env.groups(NAME_PATTERN, PREFIX, SUFFIXES, "lifecycle"):
        lifecycle = _lifecycle(env, rid, name)
        if lifecycle is not None:
            found.append((rid, lifecycle))
    return found
