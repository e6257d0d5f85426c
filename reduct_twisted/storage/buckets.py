"""
Bucket management of the storage engine: create, inspect, change, provision
and remove buckets (spec §3.2).

A mixin of :class:`~reduct_twisted.storage.engine.StorageEngine`, like
``ReadMethods`` and ``EditMethods``; it uses the engine's ``_buckets``,
``_trash``, ``_dirty``, ``_context``, ``_queries``, ``defaults`` and
``data_path``, and ``EditMethods._move_away``.  A new bucket is built in
``.trash`` (directory and settings file) and renamed into place, so a crash
leaves no half-made bucket.
"""

import contextlib
import os

from reduct_twisted.errors import Conflict, NotFound
from reduct_twisted.storage.bucket import Bucket, write_settings
from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.settings import (
    SYSTEM_BUCKET,
    check_name,
    parse_settings,
    parse_settings_fields,
)


class BucketMethods:
    """The bucket operations of ``StorageEngine`` (see the module docstring)."""

    def _bucket(self, name: str, unless_provisioned: str = "") -> Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            raise NotFound(f"Bucket '{name}' is not found")
        if unless_provisioned and bucket.provisioned:
            raise Conflict(f"Can't {unless_provisioned} provisioned bucket '{name}'")
        return bucket

    def has_bucket(self, name: str) -> bool:
        """:return: whether bucket ``name`` exists."""
        return name in self._buckets

    def create_bucket(self, name: str, settings, system: bool = False) -> None:
        """
        Create a bucket (built in ``.trash``, then renamed into place).

        :param name: the bucket name.
        :param settings: ``None`` or the decoded JSON settings; missing
            fields take the engine defaults.
        :param system: ``name`` may be ``$system`` (``settings.SYSTEM_BUCKET``),
            which the API cannot create (the server's own events, ``system/``).
        :raises UnprocessableEntity: bad settings or name.
        :raises Conflict: the bucket exists.
        :raises ReductError: the disk refused (507 if full); nothing is left.
        """
        parsed = parse_settings(settings, self.defaults)
        if not (system and name == SYSTEM_BUCKET):
            check_name(name)
        if name in self._buckets:
            raise Conflict(f"Bucket '{name}' already exists")
        directory = os.path.join(self.data_path, name)
        staging = self._trash.place(name)
        try:
            os.mkdir(staging)
            settings_file = os.path.basename(write_settings(staging, parsed))
            os.rename(staging, directory)
        except OSError as exc:
            with contextlib.suppress(OSError):  # e.g. a read-only file system
                self._trash.discard([staging])  # else cleaned up at next open
            raise storage_error(exc, f"create bucket '{name}'") from None
        self._dirty.created(os.path.join(directory, settings_file))
        self._dirty.moved(staging, directory)
        self._buckets[name] = Bucket(name, directory, parsed, self._context)

    def bucket_info(self, name: str) -> dict:
        """
        :return: the ``GET /b/:bucket`` answer (settings, info, entries).
        :raises NotFound: no such bucket.
        """
        return self._bucket(name).full_info()

    def bucket_stats(self) -> list:
        """
        What ``/metrics`` shows of each bucket, read when it is scraped:
        ``{"name", "size", "entry_count", "record_count", "evicted"}``
        sorted by name; ``size`` and ``entry_count`` those of the bucket's
        info, ``record_count`` the sum over its entries in ``GET /b/:bucket``
        (``$meta`` ones hidden), ``evicted`` ``[blocks, records, bytes]``
        its FIFO quota removed since the engine opened.
        """
        stats = []
        for name in sorted(self._buckets):
            bucket = self._buckets[name]
            visible = bucket.visible()
            info = bucket.info(visible)
            stats.append({
                "name": name, "size": info["size"], "entry_count": info["entry_count"],
                "record_count": sum(entry.record_count for entry in visible),
                "evicted": list(bucket.evicted),
            })
        return stats

    def update_bucket(self, name: str, settings) -> None:
        """
        Change a bucket's settings; missing or null fields keep their values.

        New block limits apply to future rotations; a lowered FIFO quota is
        applied by :meth:`enforce_quotas`.

        :raises UnprocessableEntity: bad settings (checked first).
        :raises NotFound: no such bucket.
        :raises Conflict: the bucket is provisioned.
        """
        fields = parse_settings_fields(settings)
        self._bucket(name, "change settings of").update_settings(fields)

    def provision_bucket(self, name: str, settings: dict) -> None:
        """
        Create bucket ``name`` (as :meth:`create_bucket`) or overwrite the given
        settings (as :meth:`update_bucket`), then mark it ``provisioned`` (§3.14).

        :raises UnprocessableEntity: bad settings or name; nothing changes.
        """
        if name not in self._buckets:
            self.create_bucket(name, settings)
        else:
            self._buckets[name].update_settings(parse_settings_fields(settings))
        self._buckets[name].provisioned = True

    def remove_bucket(self, name: str) -> None:
        """
        Remove a bucket with all its data and queries.

        Writes still in flight fail on commit.

        :raises NotFound: no such bucket.
        :raises Conflict: the bucket is provisioned.
        :raises ReductError: the directory could not be moved away (500).
        """
        bucket = self._bucket(name, "remove")
        self._move_away(bucket.directory, f"remove bucket '{name}'", bucket=True)
        del self._buckets[name]
        bucket.detach()
        self._queries.drop(name)
