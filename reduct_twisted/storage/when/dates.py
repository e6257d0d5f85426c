"""
The date-part operators of the ``when`` language (spec 1.20 §6.3,
``[1.19]``): ``$second $minute $hour $day $month $year $weekday``.

Each takes a timestamp in microseconds (any integer expression, typically
``"$timestamp"``) and optionally an IANA time-zone name (default UTC), and
gives that part of the moment's local time as an integer: ``$day`` is the
day of the month, ``$month`` 1 – 12, ``$weekday`` 0 (Monday) – 6 (Sunday).
They only combine their operands, so over constants they are folded like
the other pure operators of :mod:`.ops`.

Arity is checked when the condition is compiled (422); everything else is an
:class:`~.values.EvaluationError` met per record and treated under the
strict rules: a timestamp outside the years 1 – 9999 (what Python's
``datetime`` holds; upstream's chrono reaches further),
``<op> requires a valid timestamp in microseconds, got <n>``; a time zone
that is no string, ``<op> requires timezone to be a string``; an unknown
zone, ``Invalid timezone: '<tz>'``.

Zones come from the system's tz database through :mod:`zoneinfo`.  Only
names of the IANA form are looked up (letters, digits, ``_+-`` in
``/``-separated parts, at most 64 characters; not Debian's ``localtime``,
``posixrules``, ``posix/…`` or ``right/…`` aliases), and every answer, a
miss too, is kept in a bounded cache: a label naming a different bad zone
on every record costs no file system probe per record beyond the cache.
"""

import functools
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.when.values import EvaluationError, as_int, excerpt

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*\Z")
_NOT_ZONES = frozenset({"localtime", "posixrules"})
_NO_ZONE = object()


@functools.lru_cache(maxsize=1024)  # the tz database has about 600 zones
def _lookup(name: str):
    if not _ZONE_NAME.match(name) or name in _NOT_ZONES or name.startswith(("posix/", "right/")):
        return _NO_ZONE
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        return _NO_ZONE


def zone(name: str):
    """
    :return: the :class:`~zoneinfo.ZoneInfo` of IANA zone ``name``.
    :raises EvaluationError: ``Invalid timezone: '<name>'``.
    """
    found = _lookup(name) if len(name) <= 64 else _NO_ZONE
    if found is _NO_ZONE:
        raise EvaluationError(f"Invalid timezone: '{excerpt(name)}'")
    return found


def utc_time(name: str, stamp) -> datetime:
    """
    :param name: the operator, for the error text.
    :param stamp: the timestamp operand's value (converted as ``as_int``).
    :return: the moment in UTC.
    :raises EvaluationError: no integer, or outside the years 1 – 9999.
    """
    us = as_int(stamp)
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        raise EvaluationError(_invalid_stamp(name, us)) from None


def in_zone(name: str, utc: datetime, tz) -> datetime:
    """
    :param tz: the time-zone operand's value.
    :return: ``utc`` as a local time of zone ``tz``.
    :raises EvaluationError: ``tz`` is no string or no known zone, or the
        local time is outside the years 1 – 9999.
    """
    if tz.__class__ is not str:
        raise EvaluationError(f"{name} requires timezone to be a string")
    found = zone(tz)
    try:
        return utc.astimezone(found)
    except OverflowError:
        raise EvaluationError(_invalid_stamp(name, (utc - _EPOCH) // _US)) from None


def _invalid_stamp(name: str, us: int) -> str:
    return f"{name} requires a valid timestamp in microseconds, got {us}"


def _date_part(part):
    """A builder for the operator giving ``part(local time)``."""

    def build(name, operands):
        if len(operands) not in (1, 2):
            raise UnprocessableEntity(f"{name} requires one or two operands")
        stamp = operands[0].fn
        if len(operands) == 1:
            return lambda ctx: part(utc_time(name, stamp(ctx)))
        tz = operands[1].fn

        def date_part(ctx):
            utc = utc_time(name, stamp(ctx))  # upstream's order: the timestamp first
            return part(in_zone(name, utc, tz(ctx)))

        return date_part

    return build


#: Operator name → builder.
DATE_OPERATORS = {
    "$second": _date_part(lambda t: t.second),
    "$minute": _date_part(lambda t: t.minute),
    "$hour": _date_part(lambda t: t.hour),
    "$day": _date_part(lambda t: t.day),
    "$month": _date_part(lambda t: t.month),
    "$year": _date_part(lambda t: t.year),
    "$weekday": _date_part(lambda t: t.weekday()),
}
