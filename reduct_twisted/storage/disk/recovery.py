"""
Start-up after a crash: detecting an unclean stop, checking what the last
runs wrote, quarantining damaged blocks, and the run marker.

**Run marker.**  ``<data_path>/.running`` exists while the engine is open:
:meth:`Recovery.start_run` creates it (made durable before anything is
written, when the engine has a ``sync``) and :meth:`Recovery.end_run`
removes it at a clean close, after everything written was synced.  Finding
it at open means the last run did not end cleanly.

**What is checked, and why by modification time.**  Only files changed
since the marker was created can hold records whose bytes did not reach
the disk, so after an unclean stop every block with a file whose ``mtime``
is at least the marker's ``mtime`` minus :data:`MTIME_MARGIN` is checked:
each record must lie inside its segment, and a record in a segment changed
since then must match its CRC-32 (records of version-1 files have none and
are trusted) and, read anyway, its SHA-256 when it has one.  The file
system stamps both times with one clock, so no wall clock is read; the
margin absorbs coarse timestamps and small clock steps.  A dirty-block
journal was not chosen: to be trusted it must reach the disk before the
data it names, which costs a flush on the write path.
A clock stepped back by more than the margin during a run can hide a
changed block from the check (its records are then served unchecked).

A record that fails the check was never acknowledged (an acknowledged
record was flushed before its answer): it is dropped, the block's ``.meta``
is rewritten without it (``<id>.meta.tmp``, then a rename) and it is
counted.  A ``.meta`` with a bad header or a bad complete line is a damaged
block: its files move to ``<data_path>/.quarantine/<bucket>/<entry>/`` (data
files first, the ``.meta`` last, so an interrupted move is finished by the
next open) and the rest of the entry keeps serving.

After an unclean stop every file and directory changed since the marker is
flushed at open (when the engine has a ``sync``): an acknowledged record
may sit in a file the crashed run created whose name was not yet durable.
Then the marker's ``mtime`` is renewed: what came before is checked and
durable.
"""

import contextlib
import hashlib
import os
import zlib

from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.disk.blockfile import DamagedMeta
from reduct_twisted.storage.disk.layout import QUARANTINE_DIR, RUN_MARKER
from reduct_twisted.storage.disk.packed import frame_crc

#: The run marker, below ``data_path`` (named in ``layout.py``).
MARKER = RUN_MARKER
#: Seconds before the marker's ``mtime`` that still count as "changed".
MTIME_MARGIN = 60.0
#: Bytes read at a time when checking a CRC.
_READ_SIZE = 1 << 20


def changed_paths(data_path: str, since: float) -> tuple:
    """
    :return: ``(files, directories)`` in bucket and entry directories (and the
        data directory itself, always) whose ``mtime`` is at least ``since``;
        names starting with a dot are skipped.
    """
    files, dirs = set(), {data_path}

    def visit(directory: str, depth: int) -> None:
        with os.scandir(directory) as items:
            for item in items:
                if item.name.startswith("."):
                    continue
                changed = item.stat(follow_symlinks=False).st_mtime >= since
                if item.is_dir(follow_symlinks=False):
                    if depth < 2:
                        if changed:
                            dirs.add(item.path)
                        visit(item.path, depth + 1)
                elif changed:
                    files.add(item.path)

    visit(data_path, 0)
    return files, dirs


def _crc(fd: int, offset: int, size: int, sha=None):
    crc = 0
    while size:
        chunk = os.pread(fd, min(size, _READ_SIZE), offset)
        if not chunk:
            return None
        crc = zlib.crc32(chunk, crc)
        if sha is not None:
            sha.update(chunk)
        offset, size = offset + len(chunk), size - len(chunk)
    return crc


class Recovery:
    """
    The engine's start-up state and what recovery found (see the module docstring).

    :param data_path: the data directory.
    :param dirty: the engine's :class:`~reduct_twisted.storage.disk.durability.DirtySet`.
    :ivar unclean: the last run did not close cleanly.
    :ivar since: files changed at or after this ``mtime`` are checked.
    """

    def __init__(self, data_path: str, dirty) -> None:
        self.data_path = data_path
        self.dirty = dirty
        self.marker = os.path.join(data_path, MARKER)
        self.unclean = False
        self.since = 0.0
        self.verified_records = 0
        self.dropped_records = 0
        self.quarantined: list = []
        self.problems: list = []
        self.left_in_place: list = []
        #: Blocks opened from their block index row, blocks read; ignored indexes.
        self.index_rows = self.index_reads = 0
        self.index_problems: list = []

    def begin(self) -> None:
        """Look for the marker of an unclean stop (before anything is loaded)."""
        try:
            mtime = os.stat(self.marker).st_mtime
        except FileNotFoundError:
            return
        self.unclean, self.since = True, mtime - MTIME_MARGIN

    def start_run(self, sync) -> None:
        """
        After loading: flush what recovery changed (and, after an unclean
        stop, everything changed since the marker), then create or renew the
        marker and flush it.  Without ``sync`` all of it stays in the dirty set.
        """
        files, dirs = self.dirty.files, self.dirty.dirs
        self.dirty.files, self.dirty.dirs = set(), set()
        if self.unclean:
            more_files, more_dirs = changed_paths(self.data_path, self.since)
            files, dirs = files | more_files, dirs | more_dirs
        if sync is not None:
            if files or dirs:
                sync(sorted(files), sorted(dirs))
        elif self.dirty.enabled:
            self.dirty.files |= files
            self.dirty.dirs |= dirs
        os.close(os.open(self.marker, os.O_WRONLY | os.O_CREAT, 0o644))
        os.utime(self.marker)
        if sync is not None:
            sync([self.marker], [self.data_path])
        else:
            self.dirty.created(self.marker)

    def end_run(self, sync) -> None:
        """
        At a clean close: flush everything written (the dirty set, or every
        file changed since the marker when nothing was tracked), then remove
        the marker.  A failing ``sync`` leaves the marker in place.
        """
        files, dirs = self.dirty.take()
        if sync is not None:
            if not self.dirty.enabled:
                with contextlib.suppress(FileNotFoundError):
                    since = os.stat(self.marker).st_mtime - MTIME_MARGIN
                    files, dirs = changed_paths(self.data_path, since)
            sync(sorted(files), sorted(dirs))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.marker)
        if sync is not None:
            sync([], [self.data_path])

    def _changed(self, stat) -> bool:
        return stat is not None and stat.st_mtime >= self.since

    def check_block(self, block, table: dict, length: int, stats: dict) -> int:
        """
        After an unclean stop, drop the records of ``block`` that fail the
        check and rewrite its ``.meta`` without them.

        :param table: the records read from the ``.meta`` (changed in place).
        :param length: the valid length of the ``.meta``.
        :param stats: ``os.stat`` results of the entry's block files by name.
        :return: the valid length of the ``.meta`` afterwards.
        :raises DamagedMeta: the ``.meta`` could not be rewritten.
        """
        if not self.unclean:
            return length
        segments: dict = {}
        for record in table.values():
            segments.setdefault(record.segment, []).append(record)
        names = [blockfile.meta_name(block.block_id), *segments]
        if not any(self._changed(stats.get(name)) for name in names):
            return length
        dropped = []
        for segment, records in sorted(segments.items()):
            dropped += self._check_segment(block.path(segment), stats.get(segment), records)
        if not dropped:
            return length
        where = os.path.relpath(block.meta_path, self.data_path)
        for ts, reason in dropped:
            del table[ts]
            self.problems.append(f"Dropped record {ts} of {where}: {reason}")
        self.dropped_records += len(dropped)
        return self._rewrite(block, table)

    def check_segment(self, path: str, stat, records: list) -> list:
        """
        The check of :meth:`check_block` for one segment's records (those of
        a segment changed since :attr:`since`; all of them with ``since``
        0, as ``reduct-twisted fsck`` uses it).

        :return: ``(ts, reason)`` of each record that fails it.
        """
        return self._check_segment(path, stat, records)

    def _check_segment(self, path: str, stat, records: list) -> list:
        dropped, fd = [], None
        try:
            for record in sorted(records, key=lambda r: r.offset):
                if stat is None or record.offset + record.stored > stat.st_size:
                    dropped.append((record.ts, "content missing"))
                elif (record.crc is not None or record.digest is not None) and self._changed(stat):
                    # A record with a SHA-256 may have no CRC-32: the digest checks it.
                    if fd is None:
                        fd = os.open(path, os.O_RDONLY)
                    self.verified_records += 1
                    sha = None if record.digest is None else hashlib.sha256()
                    if record.zsize is None:
                        crc = _crc(fd, record.offset, record.size, sha)
                    else:  # compressed: the CRC of the decompressed content
                        crc = frame_crc(fd, record.offset, record.zsize, record.size, sha)
                    if crc is None or (record.crc is not None and crc != record.crc):
                        dropped.append((record.ts, "checksum mismatch"))
                    elif sha is not None and sha.digest() != record.digest:
                        dropped.append((record.ts, "digest mismatch"))
        finally:
            if fd is not None:
                os.close(fd)
        return dropped

    def _rewrite(self, block, table: dict) -> int:
        path = block.meta_path
        try:
            length = blockfile.replace_meta(path, block.block_id, table.values())
        except OSError as exc:
            raise DamagedMeta(f"Could not rewrite block metadata '{path}': {exc}") from None
        self.dirty.created(path)
        return length

    def quarantine(self, directory: str, block_id: int, names, reason: str) -> None:
        """
        Move the files ``names`` of damaged block ``block_id`` out of the
        entry ``directory`` into the quarantine, the ``.meta`` last.
        """
        relative = os.path.relpath(directory, self.data_path)
        target_dir = os.path.join(self.data_path, QUARANTINE_DIR, relative)
        meta = blockfile.meta_name(block_id)
        moved_meta = os.path.join(target_dir, meta)
        try:
            os.makedirs(target_dir, exist_ok=True)
            self.dirty.new_dir(target_dir)
            for name in sorted(names, key=lambda n: (n == meta, n)):
                target, n = os.path.join(target_dir, name), 0
                while os.path.exists(target):
                    n += 1
                    target = os.path.join(target_dir, f"{name}.{n}")
                os.rename(os.path.join(directory, name), target)
                self.dirty.moved(os.path.join(directory, name), target)
                if name == meta:
                    moved_meta = target
        except OSError as exc:
            self.problems.append(f"Could not quarantine block {relative}/{block_id}: {exc}")
            return
        self.quarantined.append(moved_meta)
        self.problems.append(f"Quarantined damaged block {relative}/{block_id}: {reason}")

    def leave(self, directory: str, names, why: str = "not written by reduct-twisted") -> None:
        """
        Note (one line for ``directory``) that ``names`` in it are not ours
        and were left in place (``layout.py``: nothing unknown is moved).
        """
        where = os.path.relpath(directory, self.data_path)
        names = sorted(names)
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        self.left_in_place.append(f"Left in place in {where}: {len(names)} {why}: {shown}")

    def index_ignored(self, directory: str, reason: str) -> None:
        """An entry's block index (``blockindex.py``) cannot be used: its blocks are read."""
        where = os.path.relpath(directory, self.data_path)
        self.index_problems.append(f"Ignored the block index of {where} ({reason}): "
                                   f"its blocks were read instead")

    def report(self, trash_problems=()) -> dict:
        """:return: see ``StorageEngine.recovery_report``."""
        problems = self.problems + [f"Could not trash {p}: {r}" for p, r in trash_problems]
        return {
            "unclean": self.unclean,
            "verified_records": self.verified_records,
            "dropped_records": self.dropped_records,
            "quarantined_blocks": list(self.quarantined),
            "problems": problems,
            "left_in_place": list(self.left_in_place),
            "block_index": {"rows_used": self.index_rows, "blocks_read": self.index_reads,
                            "ignored": list(self.index_problems)},
        }
