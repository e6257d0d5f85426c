"""
A bucket: settings, entries, statistics and quota enforcement (spec §2.2,
§3.9, §4.5, §4.6).
"""

import json
import os

import attr

from reduct_twisted.errors import BadRequest, InternalError, NotFound
from reduct_twisted.storage.disk.blockfile import replace_file
from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.disk.layout import (
    SETTINGS_FILE,
    is_bucket_file,
    is_child_entry_dir,
    unknown_in_bucket,
)
from reduct_twisted.storage.entry import Entry, Tally
from reduct_twisted.storage.settings import (
    U64_MAX,
    BucketSettings,
    check_entry_name,
    is_meta_entry,
    parse_settings,
)

#: The largest block of a new attachment (``$meta``) entry (spec 1.20 §3.1).
META_MAX_BLOCK_SIZE = 128 * 1024


def parents_of(name: str) -> list:
    """:return: the names of the parent entries of entry ``name``, outermost first."""
    segments = name.split("/")
    return ["/".join(segments[:i]) for i in range(1, len(segments))]

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
    :ivar evicted: ``[blocks, records, bytes]`` a FIFO quota removed since
        the engine opened (``/metrics``, read at scrape time).
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
        self.tally = Tally()  # the sum of the entries' sizes, kept by each entry
        self.in_flight = 0
        self.removed = False
        self.evicted = [0, 0, 0]
        self.provisioned = False

    @classmethod
    def load(cls, name: str, directory: str, defaults: BucketSettings, context):
        """
        Build a bucket from its directory (settings and every entry).

        Entry directories are loaded at any depth (``a/b/c`` is the
        directory ``<bucket>/a/b/c``); one without records is an empty entry
        (kept, spec 1.20 §2.3, §5.9).  A leftover temporary settings file
        is trashed; anything not ours (``disk/layout.py``) is reported and
        left in place.

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
        with os.scandir(directory) as items:  # (file types from the listing: no stat each)
            found = sorted((item.name, item.is_dir(follow_symlinks=False)) for item in items)
        for entry_name, is_dir in found:
            if not is_dir:
                if not is_bucket_file(entry_name):
                    unknown.append(entry_name)
            elif is_child_entry_dir(entry_name):
                bucket._load_tree(entry_name, os.path.join(directory, entry_name))
            else:
                unknown.append(entry_name)
        if unknown:
            context.recovery.leave(directory, unknown)
        if not has_settings and not any(e.record_count for e in bucket.entries.values()):
            context.trash([directory])  # only our names were in it
            return None
        return bucket

    def _load_tree(self, name: str, directory: str) -> None:
        # Entry ``name`` and, below it, its child entries (Entry.load leaves
        # their directories to us).
        children: list = []
        self.entries[name] = Entry.load(name, directory, self.context, self.tally, children)
        for child in sorted(children):
            self._load_tree(f"{name}/{child}", os.path.join(directory, child))

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
        """The bucket's ``size`` statistics: the sum over its entries, ``$meta`` included."""
        return self.tally.size

    def visible(self) -> list:
        """:return: the entries but attachment (``$meta``) ones, sorted by name (byte order)."""
        names = sorted((n for n in self.entries if not is_meta_entry(n)),
                       key=lambda n: n.encode("utf-8"))
        return [self.entries[n] for n in names]

    def info(self, visible=None) -> dict:
        """
        :param visible: :meth:`visible`, if the caller has it.
        :return: the BucketInfo object of ``/list`` and bucket answers;
            ``oldest_record``/``latest_record`` over the visible entries
            with records (spec 1.20 §5.9).
        """
        if visible is None:  # no need to sort
            visible = [e for n, e in self.entries.items() if not is_meta_entry(n)]
        entries = visible
        filled = [e for e in entries if e.record_count]
        return {
            "name": self.name,
            "entry_count": len(entries),
            "size": self.size,
            "oldest_record": min((e.oldest_record for e in filled), default=U64_MAX),
            "latest_record": max((e.latest_record for e in filled), default=0),
            "is_provisioned": self.provisioned,
            "status": "READY",
        }

    def full_info(self) -> dict:
        """:return: the ``GET /b/:bucket`` answer (``$meta`` entries hidden)."""
        visible = self.visible()
        return {
            "settings": self.settings.to_json(),
            "info": self.info(visible),
            "entries": [entry.info() for entry in visible],
        }

    def family(self, name: str) -> list:
        """:return: the names of entry ``name`` (if it exists) and of its descendants."""
        prefix = name + "/"
        return [n for n in self.entries if n == name or n.startswith(prefix)]

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
        :param name: a checked entry name (``check_entry_name``).
        :return: the entry, created (with its directory) if missing, and
            with it every missing parent entry (``a`` and ``a/b`` for
            ``a/b/c``, spec 1.20 §2.3), each its own directory.
        :raises OSError: a directory could not be created (the parents made
            before stay, as empty entries).
        """
        entry = self.entries.get(name)
        if entry is None:
            for parent in parents_of(name):
                if parent not in self.entries:
                    self._new_entry(parent)
            entry = self._new_entry(name)
        return entry

    def _new_entry(self, name: str) -> Entry:
        entry_dir = os.path.join(self.directory, name)
        try:
            os.mkdir(entry_dir)
        except FileExistsError:
            if not os.path.isdir(entry_dir) or os.path.islink(entry_dir):
                raise
        self.context.dirty.new_dir(entry_dir)
        entry = self.entries[name] = Entry(name, entry_dir, self.context)
        entry.tally = self.tally
        return entry

    def settings_for(self, entry: Entry) -> BucketSettings:
        """
        :return: the settings a new block of ``entry`` is cut by: the
            bucket's, with at most 128 KiB blocks for ``$meta`` entries.
        """
        settings = self.settings
        if is_meta_entry(entry.name) and settings.max_block_size > META_MAX_BLOCK_SIZE:
            return attr.evolve(settings, max_block_size=META_MAX_BLOCK_SIZE)
        return settings

    def check_quota(self, entry_name: str, content_size: int) -> None:
        """
        Apply the quota before a record of ``content_size`` bytes is accepted.

        :param entry_name: the entry to be written; its name is checked if it
            would be created (spec 1.20 §2.1).
        :param content_size: the new record's declared length (``0`` if unknown).
        :raises UnprocessableEntity: the entry would be created with a bad name.
        :raises BadRequest: a HARD quota would be exceeded (counting the
            bytes of chunked records in flight).
        :raises InternalError: FIFO could not free enough space.
        """
        if entry_name not in self.entries:
            check_entry_name(entry_name)
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
        ``oldest_record`` whose first block has no record being written;
        ``$meta`` entries are never evicted.  Entries left without records
        are kept (spec 1.20 §5.9).

        :param content_size: bytes that must fit in addition.
        :param strict: raise if the quota cannot be kept.
        :return: the number of blocks removed.
        :raises InternalError: ``strict`` and nothing more could be removed.
        """
        removed = 0
        while self.size + content_size > self.settings.quota_size:
            if not self._remove_oldest_block():
                if strict:
                    raise InternalError(f"Failed to keep quota of '{self.name}'")
                break
            removed += 1
        return removed

    def _remove_oldest_block(self) -> bool:
        candidates = sorted(
            (e for e in self.entries.values() if e.blocks and not is_meta_entry(e.name)),
            key=lambda e: (e.oldest_record, e.name),
        )
        for entry in candidates:
            block = entry.remove_oldest_block()
            if block is not None:
                evicted = self.evicted
                evicted[0] += 1
                evicted[1] += block.record_count
                evicted[2] += block.size
                return True
        return False

    def drop_entry(self, entry: Entry) -> None:
        """
        Drop ``entry``, made for a write that failed and left without
        records, from the bucket and trash its directory; an entry with
        child entries stays (empty).

        :param entry: an entry without records being written.
        """
        prefix = entry.name + "/"
        if any(n.startswith(prefix) for n in self.entries):
            return
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
