"""
A bucket: settings, entries, statistics and quota enforcement (spec §2.2,
§3.9, §4.5, §4.6).
"""

import json
import os

from reduct_twisted.errors import BadRequest, InternalError, NotFound
from reduct_twisted.storage.disk.blockfile import replace_file
from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.disk.layout import SETTINGS_FILE, is_bucket_file, unknown_in_bucket
from reduct_twisted.storage.entry import Entry
from reduct_twisted.storage.settings import (
    U64_MAX,
    BucketSettings,
    check_name,
    is_valid_name,
    parse_settings,
)

#: The ``version`` key written into :data:`SETTINGS_FILE`.
SETTINGS_VERSION = 1


def write_settings(directory: str, settings: BucketSettings) -> str:
    """
    Write ``settings`` into ``directory`` atomically (temporary file, then
    rename); on failure no temporary file is left.

    :return: the settings file's path.
    :raises OSError: writing failed; the old file (if any) is unchanged.
    """
    path = os.path.join(directory, SETTINGS_FILE)
    data = json.dumps({"version": SETTINGS_VERSION, **settings.to_json()})
    replace_file(path, data.encode("utf-8"))
    return path


class Bucket:
    """
    One bucket.

    :param name: the bucket name.
    :param directory: the bucket directory.
    :param settings: its :class:`BucketSettings`.
    :param context: the engine-wide :class:`~reduct_twisted.storage.cache.Context`.
    :ivar entries: entries by name.
    :ivar in_flight: bytes received so far by chunked records still being
        written (not yet in :attr:`size`); a HARD quota counts them.
    :ivar removed: the bucket was removed.
    :ivar provisioned: the bucket comes from the environment (spec §3.14)
        and its settings cannot be changed nor the bucket removed; kept in
        memory only, the environment decides it again at every start.
    """

    def __init__(self, name: str, directory: str, settings: BucketSettings, context) -> None:
        self.name = name
        self.directory = directory
        self.settings = settings
        self.context = context
        self.entries: dict = {}
        self.in_flight = 0
        self.removed = False
        self.provisioned = False

    @classmethod
    def load(cls, name: str, directory: str, defaults: BucketSettings, context):
        """
        Build a bucket from its directory (settings and every entry).

        Entry directories without any record (and nothing but our files)
        and a leftover temporary settings file are trashed; anything not
        ours (``disk/layout.py``) is reported and left in place.

        :param name: the bucket name.
        :param directory: the bucket directory.
        :param defaults: settings used for fields the file lacks (or no file).
        :param context: the engine-wide context.
        :return: the bucket, or ``None`` if the directory has no settings
            file and either no records (a bucket whose creation never
            finished: trashed) or names that are not ours (reported and
            left untouched).
        :raises InternalError: the settings file is not valid JSON.
        """
        path = os.path.join(directory, SETTINGS_FILE)
        has_settings = os.path.isfile(path)
        if not has_settings:
            unknown = unknown_in_bucket(directory)
            if unknown:
                context.recovery.leave(directory, unknown, f"names in a directory without "
                                       f"{SETTINGS_FILE}, so not loaded as a bucket")
                return None
        if os.path.exists(path + ".tmp"):
            context.trash([path + ".tmp"])
        settings = defaults
        data = b"{}"
        if has_settings:
            with open(path, "rb") as f:
                data = f.read()
        if not data.strip():
            # What a crash right after a rename can leave on some file
            # systems: the defaults are better than refusing to start.
            context.recovery.problems.append(f"Empty bucket settings '{path}': defaults used")
        else:
            try:
                settings = parse_settings(json.loads(data), defaults)
            except ValueError as e:
                raise InternalError(f"Corrupt bucket settings '{path}': {e}") from None
        bucket = cls(name, directory, settings, context)
        unknown = []
        for entry_name in sorted(os.listdir(directory)):
            entry_dir = os.path.join(directory, entry_name)
            if not os.path.isdir(entry_dir) or os.path.islink(entry_dir):
                if not is_bucket_file(entry_name):
                    unknown.append(entry_name)
                continue
            if not is_valid_name(entry_name):
                unknown.append(entry_name)
                continue
            entry = Entry.load(entry_name, entry_dir, context)
            if entry.blocks:
                bucket.entries[entry_name] = entry
            elif not os.listdir(entry_dir):
                context.trash([entry_dir])
        if unknown:
            context.recovery.leave(directory, unknown)
        if not has_settings and not bucket.entries:
            context.trash([directory])  # only our names were in it
            return None
        return bucket

    def update_settings(self, fields: dict) -> None:
        """
        Overwrite some settings and save them; if saving fails nothing changes.

        :param fields: checked fields, as ``parse_settings_fields`` returns them.
        :raises ReductError: the file could not be written (507 if the disk is full).
        """
        settings = parse_settings(fields, self.settings)
        try:
            path = write_settings(self.directory, settings)
        except OSError as exc:
            raise storage_error(exc, f"update settings of bucket '{self.name}'") from None
        self.context.dirty.created(path)
        self.settings = settings

    @property
    def size(self) -> int:
        """The bucket's ``size`` statistics: the sum over its entries."""
        return sum(entry.size for entry in self.entries.values())

    def info(self) -> dict:
        """:return: the BucketInfo object of ``/list`` and bucket answers."""
        entries = self.entries.values()
        return {
            "name": self.name,
            "entry_count": len(self.entries),
            "size": self.size,
            "oldest_record": min((e.oldest_record for e in entries), default=U64_MAX),
            "latest_record": max((e.latest_record for e in entries), default=0),
            "is_provisioned": self.provisioned,
        }

    def full_info(self) -> dict:
        """:return: the ``GET /b/:bucket`` answer."""
        return {
            "settings": self.settings.to_json(),
            "info": self.info(),
            "entries": [self.entries[name].info() for name in sorted(self.entries)],
        }

    def entry(self, name: str) -> Entry:
        """
        :param name: an entry name.
        :return: the entry.
        :raises NotFound: there is no such entry.
        """
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"Entry '{name}' not found in bucket '{self.name}'")
        return entry

    def entry_for_write(self, name: str) -> Entry:
        """
        :param name: an entry name.
        :return: the entry, created (with its directory) if missing.
        :raises OSError: the directory could not be created.
        """
        entry = self.entries.get(name)
        if entry is None:
            entry_dir = os.path.join(self.directory, name)
            os.makedirs(entry_dir, exist_ok=True)
            self.context.dirty.new_dir(entry_dir)
            entry = self.entries[name] = Entry(name, entry_dir, self.context)
        return entry

    def check_quota(self, entry_name: str, content_size: int) -> None:
        """
        Apply the quota before a record of ``content_size`` bytes is accepted.

        :param entry_name: the entry to be written; its name is checked if it
            would be created.
        :param content_size: the new record's declared length (``0`` if unknown).
        :raises UnprocessableEntity: the entry would be created with a bad name.
        :raises BadRequest: a HARD quota would be exceeded (counting the
            bytes of chunked records in flight).
        :raises InternalError: FIFO could not free enough space.
        """
        if entry_name not in self.entries:
            check_name(entry_name)
        quota = self.settings.quota_type
        if quota == "HARD" and (
            self.size + self.in_flight + content_size > self.settings.quota_size
        ):
            raise BadRequest(f"Quota of '{self.name}' exceeded")
        if quota == "FIFO":
            if content_size > self.settings.quota_size:
                # It can never fit: refuse before evicting anything, so one
                # oversized write does not empty the bucket (upstream evicts
                # everything first and then fails with the same text).
                raise InternalError(f"Failed to keep quota of '{self.name}'")
            self.make_room(content_size, strict=True)

    def make_room(self, content_size: int, strict: bool) -> int:
        """
        FIFO: remove whole oldest blocks until ``content_size`` more bytes fit.

        Each round removes the first block of the entry with the smallest
        ``oldest_record`` whose first block has no record being written.
        Entries left without records are dropped afterwards.

        :param content_size: bytes that must fit in addition.
        :param strict: raise if the quota cannot be kept.
        :return: the number of blocks removed.
        :raises InternalError: ``strict`` and nothing more could be removed.
        """
        removed = 0
        try:
            while self.size + content_size > self.settings.quota_size:
                if not self._remove_oldest_block():
                    if strict:
                        raise InternalError(f"Failed to keep quota of '{self.name}'")
                    break
                removed += 1
        finally:
            if removed:
                self.drop_empty_entries()
        return removed

    def _remove_oldest_block(self) -> bool:
        candidates = sorted(
            (e for e in self.entries.values() if e.blocks), key=lambda e: (e.oldest_record, e.name)
        )
        return any(entry.remove_oldest_block() is not None for entry in candidates)

    def drop_empty_entries(self) -> None:
        """Drop every entry without records (and trash its directory)."""
        for entry in [e for e in self.entries.values() if not e.record_count]:
            self.drop_entry(entry)

    def drop_entry(self, entry: Entry) -> None:
        """
        Drop ``entry`` from the bucket and trash its directory.

        :param entry: an entry without records being written.
        """
        del self.entries[entry.name]
        entry.detach()
        self.context.trash.tree(entry.directory, bucket=False)

    def relocate(self, name: str, directory: str) -> None:
        """
        The bucket's directory was renamed: take the new name and paths.

        :param name: the new bucket name.
        :param directory: the new bucket directory.
        """
        self.name, self.directory = name, directory
        for entry in self.entries.values():
            entry.relocate(entry.name, os.path.join(directory, entry.name))

    def detach(self) -> None:
        """
        Mark the bucket and everything in it removed and release cached
        tables and descriptors; the caller trashes the directory.
        """
        self.removed = True
        for entry in self.entries.values():
            entry.detach()
