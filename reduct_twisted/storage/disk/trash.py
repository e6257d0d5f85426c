"""
Removal through ``<data_path>/.trash``.

No file is ever deleted in place: it is renamed into ``.trash`` first (one
atomic step, so a new file of the same name can be created at once and a
crash leaves either the old name or the trashed one), and the injected
``discard`` (a thread pool in the daemon) deletes it later.  Whatever is left
in ``.trash`` at open is discarded again.  New buckets are staged there too
(see ``StorageEngine.create_bucket``), so a half-made one is swept away.
Callers trash only names of our own layout (``layout.py``); a bucket or
entry directory holding anything else is emptied of our files only
(:meth:`Trash.tree`).
"""

import contextlib
import os
import shutil

from reduct_twisted.storage.disk.layout import (
    META_SEGMENT,
    TRASH_DIR,
    own_files,
    unknown_in_bucket,
    unknown_in_entry,
)

__all__ = ["MAX_PROBLEMS", "TRASH_DIR", "Trash", "remove_now"]

#: How many failed renames :attr:`Trash.problems` keeps.
MAX_PROBLEMS = 100


def remove_now(paths: list) -> None:
    """Delete files and directory trees at once (the default ``discard``); skip missing ones."""
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class Trash:
    """
    ``trash(paths)`` renames each path into ``.trash`` and hands the new
    paths to ``discard``; missing paths are skipped.

    :param data_path: the data directory.
    :param discard: ``discard(paths)`` deletes them, possibly later.
    :param dirty: the engine's :class:`~reduct_twisted.storage.disk.durability.DirtySet`.
    :ivar problems: ``(path, reason)`` of renames that failed (the file
        stayed where it was), at most :data:`MAX_PROBLEMS`.
    """

    def __init__(self, data_path: str, discard, dirty) -> None:
        self.directory = os.path.join(data_path, TRASH_DIR)
        self.discard = discard
        self._dirty = dirty
        self._seq = 0
        self.problems: list = []

    def empty(self) -> None:
        """Create ``.trash`` if needed and discard everything in it (at open)."""
        os.makedirs(self.directory, exist_ok=True)
        leftovers = sorted(os.listdir(self.directory))
        # New trash names must not collide with leftovers still being deleted.
        numbers = [n.split("-", 1)[0] for n in leftovers]
        self._seq = 1 + max((int(n) for n in numbers if n.isdecimal()), default=0)
        if leftovers:
            self.discard([os.path.join(self.directory, n) for n in leftovers])

    def place(self, name: str) -> str:
        """:return: a fresh path inside ``.trash`` for something called ``name``."""
        # The sequence number makes the name unique; cut to the file name limit.
        target = os.path.join(self.directory, f"{self._seq}-{name}"[:255])
        self._seq += 1
        return target

    def __call__(self, paths: list, strict: bool = False) -> None:
        """
        :param paths: files or directories, moved in this order.
        :param strict: raise the ``OSError`` of a failed rename (else it is
            recorded in :attr:`problems` and the next path is tried).
        """
        moved = []
        try:
            for path in paths:
                target = self.place(os.path.basename(path))
                try:
                    if not self._move(path, target):
                        continue
                except OSError as exc:
                    if strict:
                        raise
                    if len(self.problems) < MAX_PROBLEMS:
                        self.problems.append((path, exc.strerror or str(exc)))
                    continue
                self._dirty.moved(path, target)
                moved.append(target)
        finally:
            if moved:
                self.discard(moved)

    def tree(self, directory: str, bucket: bool, strict: bool = False) -> list:
        """
        Trash a bucket or entry ``directory``: in one rename if everything
        in it is ours (``layout.py``); else only our files, one by one,
        leaving the directories and the names that are not ours in place.

        :param bucket: ``directory`` is a bucket (else an entry).
        :param strict: as for :meth:`__call__`.
        :return: the names left in place, relative to ``directory``.
        """
        try:
            if bucket:
                unknown = unknown_in_bucket(directory)
            else:
                unknown = unknown_in_entry(directory, os.path.basename(directory) == META_SEGMENT)
        except FileNotFoundError:
            return []
        meta = not bucket and os.path.basename(directory) == META_SEGMENT
        self(own_files(directory, bucket, meta) if unknown else [directory], strict)
        return unknown

    def _move(self, path: str, target: str) -> bool:
        # False if ``path`` is gone; re-creates a vanished ``.trash`` once.
        try:
            os.rename(path, target)
        except FileNotFoundError:
            if not os.path.lexists(path):
                return False
            os.makedirs(self.directory, exist_ok=True)
            os.rename(path, target)
        return True
