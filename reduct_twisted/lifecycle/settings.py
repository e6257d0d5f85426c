# -*- test-case-name: tests.unit.test_lifecycle_settings -*-
"""
The settings of one lifecycle policy (spec 1.20 §7.2)::

    {"type": "delete", "bucket": "cams", "entries": ["cam-*"],
     "older_than": "7d", "interval": "1h", "when": {"&kind": {"$eq": "raw"}},
     "mode": "enabled"}

Two stages, as upstream: :func:`parse_settings` checks the shape of a body
before the token is looked at (``422 "Invalid JSON: …"``); :func:`validate`
checks the values against the server after it, in upstream's order.

Settings are echoed exactly as given: the duration strings are kept as
written (``"1h 30m"`` stays so), ``interval`` absent or ``null`` is
``"3600s"`` (reduct-py 1.20–1.21 send ``null``, spec §10.4 f), and keys this
version does not know (``processing_interval`` of 1.21, §10.4 g) are
ignored and not echoed.
"""

from __future__ import annotations

import json
from typing import Optional

import attr

from reduct_twisted.errors import NotFound, ReductError, UnprocessableEntity
from reduct_twisted.lifecycle.duration import UNITS, parse_duration
from reduct_twisted.storage.when import compile_condition

DELETE, COMPRESS = "delete", "compress"
TYPES = (DELETE, COMPRESS)
ENABLED, DISABLED, DRY_RUN = "enabled", "disabled", "dry_run"
MODES = (ENABLED, DISABLED, DRY_RUN)
#: ``interval`` when the body has none.
DEFAULT_INTERVAL = "3600s"
#: The smallest ``older_than`` and ``interval``, as written in the error texts.
MIN_OLDER_THAN = ("1h", UNITS["h"])
MIN_INTERVAL = ("10m", 10 * UNITS["m"])


@attr.s(frozen=True, auto_attribs=True)
class LifecycleSettings:
    """
    One policy's settings, as given (see the module docstring).

    :ivar type: ``delete`` or ``compress``.
    :ivar entries: entry names or ``prefix*`` patterns; empty: all.
    :ivar older_than: a duration literal: records with ``ts <= now -
        older_than`` are processed.
    :ivar interval: a duration literal: the time between runs.
    :ivar when: a ``when`` condition (decoded JSON) or ``None``.
    """

    type: str
    bucket: str
    older_than: str
    entries: tuple = ()
    interval: str = DEFAULT_INTERVAL
    when: object = None
    mode: str = ENABLED

    @property
    def older_than_us(self) -> int:
        """``older_than`` in microseconds (the settings are valid)."""
        return parse_duration(self.older_than)

    @property
    def interval_us(self) -> int:
        """``interval`` in microseconds (the settings are valid)."""
        return parse_duration(self.interval)

    def to_json(self) -> dict:
        """:return: the ``settings`` object of ``GET /lifecycles/:name``."""
        return {
            "type": self.type,
            "bucket": self.bucket,
            "entries": list(self.entries),
            "older_than": self.older_than,
            "interval": self.interval,
            "when": self.when,
            "mode": self.mode,
        }


def _invalid(message: str) -> UnprocessableEntity:
    return UnprocessableEntity(f"Invalid JSON: {message}")


def _unexpected(value) -> str:
    """serde's words for a JSON value of the wrong type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{json.dumps(value)}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    return "sequence" if isinstance(value, list) else "map"


def _string(body: dict, field: str, required: bool) -> Optional[str]:
    if field not in body:
        if required:
            raise _invalid(f"missing field `{field}`")
        return None
    value = body[field]
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _invalid(f"invalid type: {_unexpected(value)}, expected a string")
    return value


def _variant(value, variants: tuple) -> str:
    if not isinstance(value, str):
        raise _invalid(f"invalid type: {_unexpected(value)}, expected a string")
    if value not in variants:
        names = [f"`{v}`" for v in variants]
        expected = (f"{names[0]} or {names[1]}" if len(names) == 2
                    else "one of " + ", ".join(names))
        raise _invalid(f"unknown variant `{value}`, expected {expected}")
    return value


def parse_mode(body) -> str:
    """
    The body of ``PATCH /lifecycles/:name/mode``: ``{"mode": "<mode>"}``.

    :raises UnprocessableEntity: ``Invalid JSON: …`` for anything else.
    """
    if body is None:
        raise _invalid("EOF while parsing a value at line 1 column 0")
    if not isinstance(body, dict):
        raise _invalid(f"invalid type: {_unexpected(body)}, expected struct ModePayload")
    if "mode" not in body:
        raise _invalid("missing field `mode`")
    return _variant(body["mode"], MODES)


def parse_settings(body) -> LifecycleSettings:
    """
    Check the shape of a ``POST``/``PUT`` body (before the token is checked).

    :param body: the decoded JSON body (``None``: an empty body).
    :raises UnprocessableEntity: ``Invalid JSON: …``: not an object, a
        required field (``type``, ``bucket``, ``older_than``) missing, a
        field of the wrong type, an unknown ``type`` or ``mode``.
    """
    if body is None:
        raise _invalid("EOF while parsing a value at line 1 column 0")
    if not isinstance(body, dict):
        raise _invalid(f"invalid type: {_unexpected(body)}, expected struct LifecycleSettings")
    if "type" not in body:
        raise _invalid("missing field `type`")
    kind = _variant(body["type"], TYPES)
    bucket = _string(body, "bucket", required=True)
    entries = body.get("entries")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise _invalid(f"invalid type: {_unexpected(entries)}, expected a sequence")
    for item in entries:
        if not isinstance(item, str):
            raise _invalid(f"invalid type: {_unexpected(item)}, expected a string")
    older_than = _string(body, "older_than", required=True)
    interval = _string(body, "interval", required=False)
    mode = body.get("mode")
    return LifecycleSettings(
        type=kind,
        bucket=bucket,
        older_than=older_than,
        entries=tuple(entries),
        interval=DEFAULT_INTERVAL if interval is None else interval,
        when=body.get("when"),
        mode=ENABLED if mode is None else _variant(mode, MODES),
    )


def _duration(field: str, text: str, minimum: tuple) -> int:
    try:
        value = parse_duration(text)
    except UnprocessableEntity as exc:
        raise UnprocessableEntity(
            f"Invalid lifecycle {field} '{text}': [UnprocessableEntity] {exc.message}"
        ) from None
    if value < minimum[1]:
        raise UnprocessableEntity(
            f"Lifecycle {field} '{text}' is shorter than minimum allowed value of {minimum[0]}"
        )
    return value


def validate(name: str, settings: LifecycleSettings, has_bucket) -> None:
    """
    Check the values of ``settings`` in upstream's order (after the token).

    :param has_bucket: ``has_bucket(name) -> bool`` (the storage engine's).
    :raises NotFound: ``Bucket '<b>' for lifecycle '<n>' does not exist``.
    :raises UnprocessableEntity: the texts of spec 1.20 §7.2.
    """
    if not has_bucket(settings.bucket):
        raise NotFound(f"Bucket '{settings.bucket}' for lifecycle '{name}' does not exist")
    _duration("older_than", settings.older_than, MIN_OLDER_THAN)
    _duration("interval", settings.interval, MIN_INTERVAL)
    if settings.when is None:
        return
    if settings.type == COMPRESS:
        raise UnprocessableEntity("Lifecycle type 'compress' does not support 'when' condition")
    try:
        compile_condition(settings.when)
    except ReductError as exc:
        raise UnprocessableEntity(f"Invalid lifecycle condition: {exc.message}") from None
    if isinstance(settings.when, dict) and "#ext" in settings.when:
        raise UnprocessableEntity("Lifecycle condition cannot use '#ext' directive")


def from_stored(item: dict) -> tuple:
    """
    :param item: ``{"name": …, "settings": {…}}`` of the lifecycle file.
    :return: ``(name, LifecycleSettings)``.
    :raises ReductError, KeyError, TypeError: the item is not usable.
    """
    name = item["name"]
    if not isinstance(name, str) or not name:
        raise TypeError("the name is not a string")
    return name, parse_settings(item["settings"])
