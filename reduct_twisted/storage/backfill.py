"""
The backfill (issue #16): records stored before digests and entry numbers
get them, in the background, after start.

:meth:`BackfillMethods.backfill` walks every block whose records were
loaded without a number or (unless ``integrity=off``) a digest
(``Block.unnumbered``), block by block in entry order, which is timestamp
order (a block being compressed stops its entry's pass until the next start):

* the block's ``.meta`` is read and the contents of its records without a
  digest are hashed in the thread pool (:data:`SLICE` bytes per call; the
  CRC-32 is checked on the way: a record failing it gets no digest and is
  reported in ``problems``);
* back on the reactor, the block's current table (writes, label updates
  and removals may have happened meanwhile) takes the digests and the
  numbers, and its ``.meta`` is rewritten (a temporary file renamed over
  it, as a removal does; one block per reactor turn).

**Numbers of old records.**  Numbers ``1 … L`` were set aside for them when
the entry was first opened (``numbers.py``: ``L`` records had none then,
new records started at ``L + 1``).  They are handed out in timestamp order:
before a block's ``.meta`` is rewritten, the entry's counter file records
``{"filling": <block id>, "from": k, "filled": k + c}`` (``c`` records of
the block get ``k … k + c - 1``).  After a crash, a block still without
numbers is done again from ``k``; otherwise the next block starts at
``filled``: a number is never handed out twice.  If no numbers were set
aside (the counter could not be written at the first open), old records
get the entry's next numbers, above the new ones.

The progress is the ``.meta`` files themselves: a restart resumes with
the blocks still lacking numbers or digests.  Until the backfill reaches
it, a record has ``digest`` (and ``number``) ``None``.
"""

import hashlib
import os
import zlib

from twisted.internet.defer import inlineCallbacks, maybeDeferred

from reduct_twisted.errors import ReductError
from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.disk.packed import frame_crc
from reduct_twisted.storage.disk.reserve import rewrite_meta
from reduct_twisted.storage.records import FINISHED

#: Content bytes hashed per thread-pool call.
SLICE = 8 << 20
#: Bytes read at a time while hashing.
_READ = 1 << 20


def _plain(fd: int, offset: int, size: int, sha):
    crc = 0
    while size:
        chunk = os.pread(fd, min(size, _READ), offset)
        if not chunk:
            return None
        crc, offset, size = zlib.crc32(chunk, crc), offset + len(chunk), size - len(chunk)
        sha.update(chunk)
    return crc


def hash_records(directory: str, records: list) -> dict:
    """
    In a worker thread: the SHA-256 of each record's content.

    :return: ``{ts: 32 bytes}``, or ``{ts: None}`` for a record whose
        content is missing, short or fails its CRC-32.
    """
    found, fds = {}, {}
    try:
        for record in records:
            sha = hashlib.sha256()
            try:
                fd = fds.get(record.segment)
                if fd is None:
                    fd = fds[record.segment] = os.open(
                        os.path.join(directory, record.segment), os.O_RDONLY)
                if record.zsize is None:
                    crc = _plain(fd, record.offset, record.size, sha)
                else:
                    crc = frame_crc(fd, record.offset, record.zsize, record.size, sha)
            except OSError:
                crc = None
            good = crc is not None and (record.crc is None or crc == record.crc)
            found[record.ts] = sha.digest() if good else None
    finally:
        for fd in fds.values():
            os.close(fd)
    return found


def _read_records(meta_path: str, block_id: int) -> list:
    table = blockfile.read_meta(meta_path, block_id)[0]
    return [table[ts] for ts in sorted(table)]


class BackfillMethods:
    """The backfill of a ``StorageEngine`` (see the module docstring)."""

    def backfill(self):
        """
        Give the records stored before issue #16 their numbers and digests.

        :return: a Deferred firing ``{"numbered": n, "digested": d,
            "problems": [...]}`` once every block was visited (or the
            engine closed).
        """
        run = _Backfill(self._context, self.run_in_thread, lambda: not self.is_open)
        done = run.run(list(self._buckets.values()))
        return done.addCallback(self._context.logs.backfilled)


class _Backfill:
    def __init__(self, context, run_in_thread, stopped) -> None:
        self.context = context
        self._run = run_in_thread
        self._stopped = stopped
        self.report = {"numbered": 0, "digested": 0, "problems": []}

    def _thread(self, f, *args):
        return maybeDeferred(self._run, f, *args)

    def _wanted(self, block) -> bool:
        numbers, digests = block.unnumbered
        return not block.removed and (numbers or (digests and self.context.digests))

    @inlineCallbacks
    def run(self, buckets):
        for bucket in buckets:
            for entry in list(bucket.entries.values()):
                for block in list(entry.blocks):
                    if self._stopped():
                        return self.report
                    if bucket.removed or entry.removed or not self._wanted(block):
                        continue
                    try:
                        done = yield self._block(entry, block)
                    except (OSError, ReductError) as exc:
                        # The entry's later blocks wait for the next start,
                        # which does this one again first (timestamp order).
                        self.report["problems"].append(
                            f"Backfill of block {block.meta_path} failed: {exc}")
                        break
                    if not done:  # busy (compressing): the rest of the entry waits too
                        break
        return self.report

    @inlineCallbacks
    def _block(self, entry, block):
        digests = {}
        if self.context.digests:
            records = yield self._thread(_read_records, block.meta_path, block.block_id)
            todo = [r for r in records if r.digest is None]
            while todo and not self._stopped():
                size, count = 0, 0
                while count < len(todo) and (not count or size < SLICE):
                    size, count = size + todo[count].stored, count + 1
                part, todo = todo[:count], todo[count:]
                found = yield self._thread(hash_records, block.directory, part)
                digests.update(found)
        if self._stopped() or block.removed or entry.removed or block.compressing:
            return block.removed
        self._apply(entry, block, digests)
        return True

    def _apply(self, entry, block, digests: dict) -> None:
        # On the reactor: the current table takes the numbers and digests.
        table = entry.load_block(block).table
        finished = sorted((r for r in table.values() if r.state == FINISHED),
                          key=lambda r: r.ts)
        legacy = [r for r in finished if r.number is None]
        numbers = self._numbers(entry, block, len(legacy))
        changed = []
        for record, number in zip(legacy, numbers):
            changed.append((record, "number", number))
        for record in finished:
            if record.digest is None and digests.get(record.ts) is not None:
                changed.append((record, "digest", digests[record.ts]))
            elif record.digest is None and record.ts in digests:
                self.report["problems"].append(
                    f"Record {record.ts} of {block.meta_path}: content fails its check, no digest")
        for record, name, value in changed:
            setattr(record, name, value)
        if changed:
            try:
                length = rewrite_meta(self.context, block, finished, "backfill records")
            except (OSError, ReductError):
                for record, name, _ in changed:
                    setattr(record, name, None)
                raise
            self.context.fds.forget(block.meta_path)
            block.meta_length = length
            block.version += 1
            block.top_number = max([block.top_number, *numbers])
        self.report["numbered"] += sum(1 for _, name, _ in changed if name == "number")
        self.report["digested"] += sum(1 for _, name, _ in changed if name == "digest")
        block.unnumbered = [0, sum(1 for r in finished if r.digest is None)]

    def _numbers(self, entry, block, count: int) -> list:
        """The numbers the ``count`` old records of ``block`` get (saved first)."""
        if not count:
            return []
        counter = entry.numbers
        if not counter.legacy:
            return [counter.take() for _ in range(count)]
        fields = counter.fields
        if fields.get("filling") == block.block_id:
            start = fields.get("from", 1)
        else:
            start = fields.get("filled", 1)
        if start + count - 1 > counter.legacy:
            # More old records than set aside (cannot happen unless the
            # counter file was lost): above every number in use.
            return [counter.take() for _ in range(count)]
        counter.fields = {"filling": block.block_id, "from": start, "filled": start + count}
        counter.save(entry.directory, self.context)
        return list(range(start, start + count))
