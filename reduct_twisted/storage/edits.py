"""
Changes to what is stored, other than writes and queries (spec §3.5–§3.8):
label updates, removal of records by timestamp and of whole entries, and
renaming buckets and entries.

A mixin of :class:`~reduct_twisted.storage.engine.StorageEngine`, like
``ReadMethods``; it uses the engine's ``_bucket``, ``_buckets``,
``_context``, ``_queries``, ``_dirty``, ``_trash``, ``_recovery``, ``listeners`` and
``data_path``.  Listeners hear each label update once it is stored.

Crash safety, by operation:

* A label update rewrites the ``.meta`` of each block concerned with the
  new label sets (``blockfile.replace_meta``: a temporary file renamed over
  the old one), then changes the records in memory: a crash leaves the old
  labels or the new ones, never a mix within a block.  On a full disk an
  update that does not make the ``.meta`` longer may use the space reserve
  (``reserve.rewrite_meta``); one that grows it is refused (507).
* Removing records by timestamp is :func:`removal.remove_from_block`.
* Removing an entry renames its directory into ``.trash`` (atomic): its
  child entries (``a/b``, ``a/$meta``: directories inside it) go with it in
  the same step (spec 1.20 §2.4).  If the tree holds names that are not
  ours, only our files go and the rest stays.
* Renaming is one ``rename(2)`` of the directory, children included; the
  missing parents of the new name are created first (``mkdir``: a crash
  between leaves them as empty entries, harmless), the entries' and blocks'
  paths are then changed in memory.  A bucket or entry with records being
  written is not renamed (409): their writers hold the old paths.

Every change is reported to the dirty set, so a sync round makes it
durable before it is answered.
"""

import os

from reduct_twisted.errors import Conflict, NotFound, TooEarly, UnprocessableEntity
from reduct_twisted.storage.bucket import parents_of
from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.disk.reserve import rewrite_meta
from reduct_twisted.storage.meta import (
    is_meta_entry,
    refuse_entry_removal,
    refuse_record_removal,
)
from reduct_twisted.storage.records import FINISHED
from reduct_twisted.storage.removal import remove_from_block
from reduct_twisted.storage.settings import ENTRY_NAME_ERROR, check_entry_name, check_name


def _locate(entry, stamps, where: str):
    """
    Group ``stamps`` by the block holding a finished record at each.

    :param where: ``<bucket>/<entry>``, for the 1.18 texts (spec 1.20 §5.5:
        label updates and removals always use the entry form).
    :return: ``(errors, by_block)``: ts -> error for the stamps without a
        finished record, and block -> timestamps (ascending) for the others.
    """
    errors, by_block = {}, {}
    for ts in sorted(stamps):
        found = entry.find(ts)
        if found is None:
            errors[ts] = NotFound(f"Record {ts} not found in entry {where}")
        elif found[1].state != FINISHED:
            errors[ts] = TooEarly(f"Record with timestamp {ts} in {where} is still being written")
        else:
            by_block.setdefault(found[0], []).append(ts)
    return errors, by_block


def merge_labels(labels: dict, changes: dict) -> dict:
    """
    Apply a label update (spec §3.6): a name with an empty value is removed,
    others are set; untouched labels keep their place, new ones are appended.

    :return: the new label set (``labels`` is not changed).
    """
    merged = dict(labels)
    for name, value in changes.items():
        if value == "":
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def relabel_block(context, entry, block, changes: dict) -> dict:
    """
    Update the labels of finished records of ``block``.

    :param changes: ts -> label changes (see :func:`merge_labels`); stamps
        without a finished record are skipped.
    :return: ts -> the complete new label set, for the records changed.
    :raises ReductError: the ``.meta`` could not be rewritten; nothing changed.
    """
    table = entry.load_block(block).table
    new = {}
    for ts, update in changes.items():
        record = table.get(ts)
        if record is not None and record.state == FINISHED:
            new[ts] = merge_labels(record.labels, update)
    if not new:
        return new
    lines = []
    for record in table.values():
        if record.state == FINISHED:
            if record.ts in new:
                record = record.copy()
                record.labels = new[record.ts]
            lines.append(record)
    length = rewrite_meta(context, block, lines, "update labels")
    entry.relabel_records(block, new, length)
    return new


class EditMethods:
    """Label updates, removals and renames of a ``StorageEngine`` (see the module docstring)."""

    def update_labels(self, bucket: str, entry: str, changes: dict) -> dict:
        """
        Update the labels of records (spec §3.6).

        :param changes: ts -> label changes: ``{name: value}``, an empty
            value removes the label.
        :return: ts -> error (404 no record, 425 still being written) for
            the records not updated.
        :raises NotFound: no such bucket or entry.
        :raises ReductError: a ``.meta`` could not be rewritten (507 if the
            disk is full); blocks done before stay done.
        """
        series = self._bucket(bucket).entry(entry)
        errors, by_block = _locate(series, changes, f"{bucket}/{entry}")
        for block, stamps in by_block.items():
            done = relabel_block(self._context, series, block, {ts: changes[ts] for ts in stamps})
            for ts in done:
                for listener in self.listeners:
                    listener.labels_updated(bucket, entry, ts, changes[ts])
        return errors

    def remove_stamps(self, bucket: str, entry: str, stamps) -> dict:
        """
        Remove records by timestamp (spec §3.7).

        :return: ts -> error (as :meth:`update_labels`) for those not removed.
        :raises NotFound: no such bucket or entry.
        :raises UnprocessableEntity: ``entry`` is an attachment entry (§3.1).
        :raises ReductError: a ``.meta`` could not be rewritten.
        """
        owner = self._bucket(bucket)
        refuse_record_removal(entry)
        series = owner.entry(entry)
        errors, by_block = _locate(series, stamps, f"{bucket}/{entry}")
        for block, found in by_block.items():
            remove_from_block(self._context, series, block, found)
        return errors

    def remove_entry(self, bucket: str, entry: str) -> None:
        """
        Remove an entry and every entry below it (``a`` takes ``a/b``,
        ``a/$meta``…) with all their records and queries (spec §3.5, 1.20
        §2.4); writes still in flight fail on commit.

        :raises NotFound: no such bucket, and no such entry nor one below it.
        :raises UnprocessableEntity: ``entry`` is an attachment entry (§3.1).
        :raises ReductError: the directory could not be moved away.
        """
        owner = self._bucket(bucket)
        refuse_entry_removal(entry)
        family = owner.family(entry)
        if not family:
            raise NotFound(f"Entry '{entry}' not found in bucket '{bucket}'")
        directory = os.path.join(owner.directory, entry)
        self._move_away(directory, f"remove entry '{entry}'")
        for name in family:
            owner.entries.pop(name).detach()
            self._queries.drop(bucket, name)

    def rename_bucket(self, old: str, new: str) -> None:
        """
        Rename a bucket (spec §3.8); its queries are dropped.

        :raises NotFound: no bucket ``old``.
        :raises Conflict: it is provisioned, ``new`` exists, or records of
            it are being written.
        :raises UnprocessableEntity: ``new`` is not a valid name.
        :raises ReductError: the directory could not be renamed.
        """
        bucket = self._bucket(old, "rename")
        check_name(new)
        if new in self._buckets:
            raise Conflict(f"Bucket '{new}' already exists")
        self._context.settle()  # a batch's pending records are not "being written"
        _refuse_busy(bucket.entries.values(), f"Bucket '{old}'")
        target = os.path.join(self.data_path, new)
        self._rename_dir(bucket.directory, target, f"rename bucket '{old}'")
        bucket.relocate(new, target)
        self._buckets[new] = self._buckets.pop(old)
        self._queries.drop(old)

    def rename_entry(self, bucket: str, old: str, new: str) -> None:
        """
        Rename an entry and every entry below it (``a/b/c`` becomes
        ``new/b/c``; spec §3.8, 1.20 §2.4); missing parents of ``new`` are
        created; the queries of every renamed entry are dropped.

        Checks in the order of spec 1.20 §2.4.

        :raises NotFound: no such bucket, or nothing to rename.
        :raises UnprocessableEntity: ``new`` is not a valid entry name, or
            would move an attachment entry out of its place (or into one).
        :raises Conflict: ``new`` is ``old`` or below it, ``new`` or a
            renamed descendant's new name exists, or records of a renamed
            entry are being written.
        :raises ReductError: a directory could not be created or renamed.
        """
        owner = self._bucket(bucket)
        check_entry_name(new)
        def exists(name):
            return Conflict(f"Entry '{name}' already exists in bucket '{bucket}'")

        if new == old or new.startswith(old + "/"):
            raise exists(new)
        family = sorted(owner.family(old))
        if not family:
            raise NotFound(f"Entry '{old}' not found in bucket '{bucket}'")
        if is_meta_entry(new) != is_meta_entry(old):
            # $meta has no children on disk; an attachment belongs to its parent.
            raise UnprocessableEntity(ENTRY_NAME_ERROR)
        targets = {name: new + name[len(old):] for name in family}
        for target in targets.values():
            if target in owner.entries:
                raise exists(target)
        self._context.settle()
        _refuse_busy([owner.entries[name] for name in family], f"Entry '{old}'")
        for parent in parents_of(new):
            if parent not in owner.entries:
                try:
                    owner.entry_for_write(parent)
                except OSError as exc:
                    raise storage_error(exc, f"rename entry '{old}'") from None
        source, target_dir = (os.path.join(owner.directory, n) for n in (old, new))
        self._rename_dir(source, target_dir, f"rename entry '{old}'")
        moved = {name: owner.entries.pop(name) for name in family}
        for name, series in moved.items():
            target = targets[name]
            series.relocate(target, os.path.join(owner.directory, target))
            owner.entries[target] = series
            self._queries.drop(bucket, name)

    def _move_away(self, directory: str, doing: str, bucket: bool = False) -> None:
        # Into the trash at once (atomic), or a 500/507 naming ``doing``;
        # names that are not ours stay (reported by the next open).
        self._context.settle()  # a batch's pending records first (``runs.py``)
        try:
            left = self._trash.tree(directory, bucket, strict=True)
        except OSError as exc:
            raise storage_error(exc, doing) from None
        if left:
            self._recovery.leave(directory, left, f"names not ours (after: {doing})")

    def _rename_dir(self, source: str, target: str, doing: str) -> None:
        if os.path.lexists(target):
            # A leftover the engine does not know; never merge into it.
            raise Conflict(f"Can't {doing}: '{os.path.basename(target)}' exists on disk")
        # The entry logs' pending leaves first; their files reopen at the new place.
        self._context.logs.close_all(e for b in self._buckets.values() for e in b.entries.values())
        try:
            os.rename(source, target)
        except OSError as exc:
            raise storage_error(exc, doing) from None
        self._dirty.moved(source, target)
        self._context.fds.forget_under(source)


def _refuse_busy(entries, what: str) -> None:
    if any(block.started for entry in entries for block in entry.blocks):
        raise Conflict(f"{what} has records being written; try again when they are finished")
