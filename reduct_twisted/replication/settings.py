"""
The settings of one replication (spec §3.13): parsing, validation and the
masked form ``GET`` shows.

A replication's settings as JSON (what ``POST``/``PUT
/api/v1/replications/:name`` take and ``GET`` shows)::

    {"src_bucket": "cams", "dst_bucket": "cams-central",
     "dst_host": "https://central.example:8383", "dst_token": "…",
     "entries": ["front", "rear-*"], "include": {}, "exclude": {},
     "each_n": null, "each_s": null, "when": {"&kind": {"$eq": "keep"}},
     "mode": "enabled"}

Parsing is in two steps, as upstream: :func:`parse_settings` checks the
shape of the body (a malformed body is refused before the token is looked
at, spec §1.4), :func:`validate` checks the meaning against the storage
engine (destination URL, source bucket, replication onto itself, ``when``).
Unknown fields (``dst_prefix``, ``compression`` of 1.21 clients) and
``null`` for an optional field are accepted and ignored; unknown fields are
not shown back.

``mode`` [1.18] (spec 1.20 §5.3): ``enabled`` (the default, also for a
``PUT`` without it), ``paused`` (changes are logged, nothing is sent) or
``disabled`` (nothing is logged); ``PATCH …/mode`` changes only it
(:func:`parse_mode`).

``dst_token`` is never shown: ``GET`` answers ``null`` (1.17; ``"***"`` up
to 1.16), and a ``PUT`` without it (or with ``null``) keeps the token the
replication had.  An empty string means "no token".
"""

from __future__ import annotations

import json
import math
from typing import Optional
from urllib.parse import urlsplit

import attr

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.storage.when import compile_condition
from reduct_twisted.storage.settings import META_SEGMENT, is_meta_entry, is_valid_name

#: Port of a ReductStore server when the URL of an unknown scheme has none.
DEFAULT_PORT = 8383

#: Hosts that address this machine in the "replication onto itself" check.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "0.0.0.0")

NAME_ERROR = "Replication name can contain only letters, digests and [-,_] symbols"

_REQUIRED = ("src_bucket", "dst_bucket", "dst_host")

#: The modes of a replication [1.18].
ENABLED, PAUSED, DISABLED = "enabled", "paused", "disabled"
MODES = (ENABLED, PAUSED, DISABLED)


@attr.s(frozen=True, slots=True)
class ReplicationSettings:
    """
    What a replication copies, and where to.

    :ivar src_bucket: the local bucket whose new records are replicated.
    :ivar dst_bucket: the bucket on the destination (it must exist there).
    :ivar dst_host: the destination's base URL (``http(s)://host[:port][/base/]``).
    :ivar dst_token: the bearer token for the destination, ``""`` for none.
    :ivar entries: entry names (a ``*`` makes the rest a prefix); empty: all.
    :ivar include: labels a record must all have, with these values.
    :ivar exclude: labels that, all equal, leave a record out.
    :ivar each_n: replicate every n-th record that passed the other filters.
    :ivar each_s: replicate records at least this many seconds apart.
    :ivar when: a ``when`` condition (spec §3.11) or ``None``.
    :ivar mode: :data:`ENABLED`, :data:`PAUSED` or :data:`DISABLED`.
    """

    src_bucket: str = attr.ib()
    dst_bucket: str = attr.ib()
    dst_host: str = attr.ib()
    dst_token: str = attr.ib(default="", repr=False)
    entries: tuple = attr.ib(default=(), converter=tuple)
    include: dict = attr.ib(factory=dict)
    exclude: dict = attr.ib(factory=dict)
    each_n: Optional[int] = attr.ib(default=None)
    each_s: Optional[float] = attr.ib(default=None)
    when: Optional[dict] = attr.ib(default=None)
    mode: str = attr.ib(default=ENABLED)

    def to_json(self, masked: bool = True) -> dict:
        """
        :param masked: show ``dst_token`` as ``null`` (the API does; the
            registry file keeps the token).
        :return: the settings as JSON.
        """
        return {
            "src_bucket": self.src_bucket,
            "dst_bucket": self.dst_bucket,
            "dst_host": self.dst_host,
            "dst_token": None if masked else self.dst_token,
            "entries": list(self.entries),
            "include": dict(self.include),
            "exclude": dict(self.exclude),
            "each_n": self.each_n,
            "each_s": self.each_s,
            "when": self.when,
            "mode": self.mode,
        }

    def matches_entry(self, entry: str) -> bool:
        """
        :param entry: an entry name, possibly a path (``a/b/c``) [1.19].
        :return: whether records of ``entry`` are replicated (``entries``);
            an attachment entry ``<e>/$meta`` goes with its parent ``<e>``,
            a top-level ``$meta`` only when every entry does (spec 1.20 §3.1).
        """
        if not self.entries:
            return True
        if is_meta_entry(entry):
            parent = entry[:-len(META_SEGMENT)].rstrip("/")
            return bool(parent) and self.matches_entry(parent)
        for pattern in self.entries:
            if "*" in pattern:
                if entry.startswith(pattern.replace("*", "")):
                    return True
            elif pattern == entry:
                return True
        return False


def check_replication_name(name: str) -> None:
    """
    :raises UnprocessableEntity: ``name`` is not a safe directory name (the
        bucket name rule); its transaction log lives in a directory of that name.
    """
    if not is_valid_name(name):
        raise UnprocessableEntity(NAME_ERROR)


def _invalid(message: str) -> UnprocessableEntity:
    return UnprocessableEntity(f"Invalid JSON: {message}")


def _string(body: dict, field: str, required: bool = False):
    value = body.get(field)
    if value is None:
        if required:
            raise _invalid(f"missing field '{field}'")
        return None
    if not isinstance(value, str):
        raise _invalid(f"'{field}' must be a string")
    return value


def _labels(body: dict, field: str) -> dict:
    value = body.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid(f"'{field}' must be an object of strings")
    return dict(value)


def _entries(body: dict) -> tuple:
    value = body.get("entries")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid("'entries' must be a list of strings")
    return tuple(value)


def _each_n(body: dict):
    value = body.get("each_n")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise _invalid("'each_n' must be an unsigned integer")
    if value == 0:
        raise UnprocessableEntity("'each_n' must be greater than 0")
    return value


def _each_s(body: dict):
    value = body.get("each_s")
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            # an int float() cannot take (OverflowError) is no f64 either
            or (isinstance(value, int) and value.bit_length() > 1023)
            or not math.isfinite(value)):
        raise _invalid("'each_s' must be a number")
    if value <= 0:
        raise UnprocessableEntity("Time must be greater than 0 seconds")
    return float(value)


def _mode(value) -> str:
    if value not in MODES:  # (a non-string never is)
        shown = value if isinstance(value, str) else json.dumps(value)
        raise _invalid(f"unknown variant `{shown}`, expected one of "
                       "`enabled`, `paused`, `disabled`")
    return value


def parse_mode(body) -> str:
    """
    The body of ``PATCH /replications/:name/mode``: ``{"mode": "<mode>"}``.

    :raises UnprocessableEntity: ``Invalid JSON: …`` for anything else.
    """
    if body is None:
        raise _invalid("EOF while parsing a value at line 1 column 0")
    if not isinstance(body, dict):
        raise _invalid("expected an object with 'mode'")
    if "mode" not in body:
        raise _invalid("missing field `mode`")
    return _mode(body["mode"])


def parse_settings(body, previous: Optional[ReplicationSettings] = None) -> ReplicationSettings:
    """
    Check the shape of a ``POST``/``PUT`` body.

    :param body: the decoded JSON body.
    :param previous: the settings a ``PUT`` replaces: their ``dst_token`` is
        kept when the body has none (or ``null``); their ``mode`` is not
        (no ``mode`` is ``enabled``, as upstream).
    :raises UnprocessableEntity: not an object, a required field missing, a
        field of the wrong type, ``each_n``/``each_s`` not positive.
    """
    if not isinstance(body, dict):
        raise _invalid("expected an object with src_bucket, dst_bucket and dst_host")
    src_bucket, dst_bucket, dst_host = (_string(body, f, required=True) for f in _REQUIRED)
    token = _string(body, "dst_token")
    if token is None:
        token = previous.dst_token if previous is not None else ""
    when = body.get("when")
    if when is not None and not isinstance(when, dict):
        raise _invalid("'when' must be an object")
    return ReplicationSettings(
        src_bucket=src_bucket,
        dst_bucket=dst_bucket,
        dst_host=dst_host,
        dst_token=token,
        entries=_entries(body),
        include=_labels(body, "include"),
        exclude=_labels(body, "exclude"),
        each_n=_each_n(body),
        each_s=_each_s(body),
        when=when,
        mode=ENABLED if body.get("mode") is None else _mode(body["mode"]),
    )


def destination_url(host: str):
    """
    :return: ``urlsplit(host)`` if ``host`` is a usable ``http``/``https``
        base URL with a host name and a valid port, else ``None``.
    """
    if not host or any(c.isspace() for c in host):
        return None
    try:
        url = urlsplit(host)
        url.port  # raises ValueError for a bad port
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        return None
    return url


def validate(name: str, settings: ReplicationSettings, has_bucket, local_ports=()) -> None:
    """
    Check what upstream checks on create and update, in its order.

    :param has_bucket: ``has_bucket(name) -> bool`` (the storage engine's).
    :param local_ports: the ports this server listens on, for the check that
        a replication does not copy a bucket onto itself.
    :raises UnprocessableEntity: ``Invalid destination host '<h>'``, ``Source
        and destination buckets must be different``, ``Invalid replication
        condition: <reason>``.
    :raises NotFound: ``Source bucket '<b>' for replication '<n>' does not exist``.
    """
    url = destination_url(settings.dst_host)
    if url is None:
        raise UnprocessableEntity(f"Invalid destination host '{settings.dst_host}'")
    if not has_bucket(settings.src_bucket):
        raise NotFound(
            f"Source bucket '{settings.src_bucket}' for replication '{name}' does not exist"
        )
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, DEFAULT_PORT)
    if (settings.src_bucket == settings.dst_bucket and port in set(local_ports)
            and url.hostname in LOCAL_HOSTS):
        raise UnprocessableEntity("Source and destination buckets must be different")
    if settings.when is not None:
        try:
            compile_condition(settings.when)
        except UnprocessableEntity as exc:
            raise UnprocessableEntity(f"Invalid replication condition: {exc.message}") from None
