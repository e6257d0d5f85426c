"""
Bucket settings and name rules (spec §1.7, §2.2).

Everything here is pure: parsing takes already-decoded JSON values and
returns frozen values or raises :class:`~reduct_twisted.errors.UnprocessableEntity`
with the exact upstream texts.
"""

import json
import re

import attr

from reduct_twisted.errors import UnprocessableEntity

#: The largest unsigned 64-bit integer; ``oldest_record`` when there is no data.
U64_MAX = 2**64 - 1

#: Accepted quota policies (spec §3.9).
QUOTA_TYPES = ("NONE", "FIFO", "HARD")

#: Names of the integer settings, in the order they are serialised.
_INT_FIELDS = ("max_block_size", "max_block_records", "quota_size")

_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")

NAME_ERROR = "Bucket or entry name can contain only letters, digests and [-,_] symbols"


def check_name(name: str) -> None:
    """
    Refuse a bucket or entry name that is not a safe directory name.

    The accepted alphabet has no dot and no separator, so an accepted
    name can never address anything outside its parent directory.

    :param name: the name taken from a URL.
    :raises UnprocessableEntity: the name is empty, longer than 255
        characters or has a character other than letters, digits, ``-``, ``_``.
    """
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise UnprocessableEntity(NAME_ERROR)


#: The bucket of the server's own events (spec 1.20 §8): its name cannot be
#: given through the API, only ``create_bucket(..., system=True)`` makes it.
SYSTEM_BUCKET = "$system"


def is_bucket_name(name: str) -> bool:
    """:return: whether ``name`` (e.g. a directory found on disk) names a bucket."""
    return name == SYSTEM_BUCKET or is_valid_name(name)


def is_valid_name(name: str) -> bool:
    """
    :param name: a bucket or entry name (e.g. a directory found on disk).
    :return: whether :func:`check_name` would accept it.
    """
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


#: The last path segment of an attachment entry (spec 1.20 §3).
META_SEGMENT = "$meta"

#: The longest entry name (path) accepted: its directory, below the bucket's,
#: must leave room for block file names within the system's PATH_MAX (4096)
#: whatever the data path (ours: no limit in the upstream spec).
ENTRY_MAX_LENGTH = 1024
ENTRY_LENGTH_ERROR = f"Entry name must not be longer than {ENTRY_MAX_LENGTH} characters"
ENTRY_PATH_ERROR = "Entry name must be non-empty and must not contain empty path segments"
ENTRY_NAME_ERROR = (
    "Entry name can contain only letters, digits and [-,_,/] symbols or end with '/$meta'"
)


def is_meta_entry(name: str) -> bool:
    """:return: whether entry ``name`` is an attachment (``$meta``) entry (spec 1.20 §3)."""
    return name == META_SEGMENT or name.endswith("/" + META_SEGMENT)


def entry_segments_valid(name: str) -> bool:
    """
    :param name: an entry name, possibly a path ``a/b/c`` (spec 1.20 §2.1).
    :return: whether :func:`check_entry_name` would accept it: non-empty
        ``/``-separated segments of the bucket-name alphabet, the last one
        possibly ``$meta``.  No segment can be ``.`` or ``..``.
    """
    if not isinstance(name, str) or not name:
        return False
    segments = name.split("/")
    if segments[-1] == META_SEGMENT:
        segments = segments[:-1]
    return all(_NAME_RE.fullmatch(s) is not None for s in segments)


def check_entry_name(name: str) -> None:
    """
    Refuse an entry name a write, a creation or a rename target may not use
    (spec 1.20 §2.1, the exact upstream texts).

    :raises UnprocessableEntity: empty name or segment, leading or trailing
        ``/``; any other character than letters, digits, ``-``, ``_``, ``/``
        (a final ``/$meta`` or a bare ``$meta`` aside); a segment over 255
        or a name over :data:`ENTRY_MAX_LENGTH` characters.
    """
    if not isinstance(name, str) or not name or "" in name.split("/"):
        raise UnprocessableEntity(ENTRY_PATH_ERROR)
    if not entry_segments_valid(name):
        raise UnprocessableEntity(ENTRY_NAME_ERROR)
    if len(name) > ENTRY_MAX_LENGTH:
        raise UnprocessableEntity(ENTRY_LENGTH_ERROR)


@attr.s(frozen=True, slots=True)
class BucketSettings:
    """
    The settings of one bucket (spec §2.2).

    :ivar max_block_size: start a new block when the last one would exceed this many bytes.
    :ivar max_block_records: start a new block when the last one holds this many records.
    :ivar quota_type: ``"NONE"``, ``"FIFO"`` or ``"HARD"``.
    :ivar quota_size: the quota in bytes (statistics ``size``, spec §4.5).
    """

    max_block_size: int = attr.ib(default=64_000_000)
    max_block_records: int = attr.ib(default=1024)
    quota_type: str = attr.ib(default="NONE")
    quota_size: int = attr.ib(default=0)

    def to_json(self) -> dict:
        """
        :return: the settings object as sent in bucket and ``/info`` answers.
        """
        return {
            "max_block_size": self.max_block_size,
            "max_block_records": self.max_block_records,
            "quota_type": self.quota_type,
            "quota_size": self.quota_size,
        }


def _parse_uint(field: str, value) -> int:
    # bool is a subclass of int in Python but not an integer in JSON.
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise UnprocessableEntity(f"Invalid JSON: '{field}' must be an unsigned integer")
    return value


def _parse_quota_type(value) -> str:
    if not isinstance(value, str):
        raise UnprocessableEntity(f"Failed to parse quota type: {json.dumps(value)}")
    if value not in QUOTA_TYPES:
        raise UnprocessableEntity("Invalid quota type")
    return value


def parse_settings_fields(obj) -> dict:
    """
    Validate a settings object and return only the fields it sets.

    :param obj: ``None`` (empty body) or the decoded JSON body.
    :return: a mapping of field name to value for every present, non-null field.
    :raises UnprocessableEntity: with the texts of spec §2.2.
    """
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise UnprocessableEntity("Invalid JSON: expected an object")
    fields = {}
    for name in _INT_FIELDS:
        if obj.get(name) is not None:
            fields[name] = _parse_uint(name, obj[name])
    if obj.get("quota_type") is not None:
        fields["quota_type"] = _parse_quota_type(obj["quota_type"])
    return fields


def parse_settings(obj, base: BucketSettings) -> BucketSettings:
    """
    Parse a settings object; missing and ``null`` fields keep ``base``'s values.

    :param obj: ``None`` or the decoded JSON body.
    :param base: the values used for fields the object does not set.
    :return: the resulting settings.
    :raises UnprocessableEntity: with the texts of spec §2.2.
    """
    return attr.evolve(base, **parse_settings_fields(obj))
