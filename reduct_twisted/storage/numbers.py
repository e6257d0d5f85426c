"""
Entry numbers (issue #16): every record committed to an entry gets the next
number, 1, 2, 3 … in commit order, never reused.

Where the next number comes from at start (O(entries): no extra block
reads, the ``.meta`` files are read by the load anyway):

* the greatest ``"n"`` of the entry's blocks, plus one (``Block.top_number``);
* the entry's counter file ``<entry>/.numbers``, one JSON line
  ``{"format": "reduct-twisted-numbers", "version": 1, "next": N,
  "legacy": L}``.

The next number is the greater of the two.  The counter file matters only
when the records holding the greatest numbers are gone: so it is written
(``<entry>/.numbers.tmp`` flushed, renamed over it, the directory flushed:
old or new file after a crash) *before* a block is removed (FIFO eviction,
a removal that empties it) or a ``.meta`` is rewritten without some
records, whenever the saved ``next`` is behind the entry's.  A crash
between the two leaves a counter ahead of the blocks: numbers are skipped,
never reused.  The file moves with its directory (renames of the entry or
the bucket).  A removed entry takes its counter with it: an entry created
again under the same name starts at 1.

**Records stored before numbers** (no ``"n"``).  When an entry is first
opened with such records and no counter file, numbers ``1 … L`` (``L``:
how many records had no number then) are set aside for them and new
records start at ``L + 1``; the counter file is written at once with
``"legacy": L``.  The backfill (``backfill.py``) hands ``1 … L`` out to them
in timestamp order.
"""

import contextlib
import json
import os

from reduct_twisted.storage.disk.durability import NO_SPACE
from reduct_twisted.storage.disk.layout import NUMBERS_FILE

#: Its ``format`` value and version.
FORMAT_NAME, FORMAT_VERSION = "reduct-twisted-numbers", 1


def read_counter(directory: str) -> dict:
    """
    :param directory: an entry directory.
    :return: the counter file's ``{"next": int, "legacy": int, ...}``; an
        empty dict when there is none or it does not parse (the blocks'
        numbers are then all there is).
    """
    try:
        with open(os.path.join(directory, NUMBERS_FILE), "rb") as f:
            obj = json.loads(f.read(4096))
    except (OSError, ValueError):
        return {}
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        return {}
    fields = {}
    for key, value in obj.items():
        if key not in ("format", "version"):
            if type(value) is not int or value < 0:
                return {}
            fields[key] = value
    return fields


def write_counter(directory: str, fields: dict, sync=None, dirty=None) -> None:
    """
    Replace the counter file (see the module docstring): ``.numbers.tmp``
    written and flushed, renamed over ``.numbers``, the directory flushed.

    :param fields: ``{"next": int, "legacy": int, ...}``.
    :param sync: the engine's ``sync(files, directories)``; without it the
        file and directory are reported to ``dirty`` for a later flush.
    :raises OSError: the old file (if any) is still in place.
    """
    path = os.path.join(directory, NUMBERS_FILE)
    tmp = path + ".tmp"
    data = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, **fields},
                      sort_keys=True) + "\n"
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("ascii"))
        if sync is not None:
            sync([tmp], [])
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync is not None:
        sync([], [directory])
    elif dirty is not None:
        dirty.created(path)


class Numbers:
    """
    One entry's number counter.

    :ivar next: the number the next committed record gets.
    :ivar saved: the ``next`` the counter file holds (``0``: no file).
    :ivar legacy: numbers ``1 … legacy`` are set aside for records stored
        before numbers (``backfill.py``).
    :ivar fields: what else the file holds (the backfill's progress).
    """

    __slots__ = ("next", "saved", "legacy", "fields")

    def __init__(self) -> None:
        self.next, self.saved, self.legacy, self.fields = 1, 0, 0, {}

    @classmethod
    def load(cls, directory: str, blocks, has_file: bool, context=None) -> "Numbers":
        """
        :param directory: the entry directory.
        :param blocks: the entry's loaded blocks.
        :param has_file: the directory holds a counter file.
        :return: the counter (the file written if legacy numbers were just set aside).
        """
        numbers = cls()
        fields = read_counter(directory) if has_file else {}
        numbers.saved = fields.pop("next", 0)
        numbers.legacy = fields.pop("legacy", 0)
        numbers.fields = fields
        top = max((block.top_number for block in blocks), default=0)
        numbers.next = max(numbers.saved, top + 1, numbers.legacy + 1)
        if not has_file:
            legacy = sum(block.unnumbered[0] for block in blocks)
            if legacy and not top:
                # First open of an entry written before numbers.
                numbers.legacy = legacy
                numbers.next = legacy + 1
                numbers.save(directory, context)
        return numbers

    def take(self) -> int:
        """:return: the number of the record being committed (counted)."""
        number = self.next
        self.next = number + 1
        return number

    def give_back(self, number: int) -> None:
        """The commit that took ``number`` failed before its line was written."""
        if self.next == number + 1:
            self.next = number

    def keep(self, directory: str, top: int, context) -> None:
        """
        Before records are removed whose greatest number is ``top``: save
        the counter if it does not cover them.

        :raises OSError: it could not be saved (the removal must not go on).
        """
        if top and top >= self.saved:
            self.save(directory, context)

    def save(self, directory: str, context=None) -> None:
        """
        Write the counter file now.

        :param context: the engine's ``Context`` (its ``sync`` and ``dirty``).
        :raises OSError: it could not be written (the removal must not go on).
        """
        fields = {"next": self.next, "legacy": self.legacy, **self.fields}
        if context is None:
            write_counter(directory, fields)
        else:
            try:
                write_counter(directory, fields, context.sync, context.dirty)
            except OSError as exc:
                # A full disk: the space reserve is for removals (``reserve.py``).
                if exc.errno not in NO_SPACE or not context.reserve.release():
                    raise
                write_counter(directory, fields, context.sync, context.dirty)
        self.saved = self.next
