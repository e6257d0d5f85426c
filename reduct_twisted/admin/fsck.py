"""
``reduct-twisted fsck DATA_PATH [--repair] [--json]``: an offline check of a
stopped daemon's data directory.

It refuses a directory that is not ours (``layout.classify``) and one whose
lock another process holds (``datadir.DataDirLock``: a running daemon); it
holds the lock itself while it runs, so no daemon starts meanwhile.  Then,
with the storage's own readers (nothing here parses a format itself):

* every bucket's ``settings.json`` parses;
* every entry's ``.meta`` files replay (``blockfile.read_meta``); every
  record lies inside its segment and matches its CRC-32 and/or SHA-256 (a
  record may have either or both; ``Recovery.check_segment``, the check the
  daemon runs after an unclean stop, here on every record);
* the entry's block index ``.blocks`` decodes (``blockindex.read_index``);
  one the daemon would ignore is a note: it reads the blocks instead;
* the entry's integrity log ``.log/``: the daemon would open it
  (``treelog_files.refusal``), it is a consistent log of its full length
  (``treelog_files.recover``, the rule the daemon applies at open: a torn
  tail is a problem), each numbered record with a digest matches its leaf
  (digest, size, timestamp; labels may have been changed since), and the
  removed set parses (``removedset``).

Exit status 0: clean (notes do not count), 1: problems, 2: refused or usage.

``--repair`` does only what the daemon's recovery does with a damaged
block: it moves the block's files into ``<data_path>/.quarantine/<bucket>/
<entry>/`` (``Recovery.quarantine``; nothing is deleted).  A block whose
``.meta`` does not replay, or holding a record that fails its checksum, is
quarantined whole, good records included (they stay readable in the
quarantine).  Everything else (a torn log tail, an ignored index) the daemon
settles itself at its next start and is left alone.
"""

import json
import os

from reduct_twisted.datadir import DataDirLock
from reduct_twisted.integrity.merkle import HASH_SIZE
from reduct_twisted.storage.disk import blockfile, layout, treelog_files
from reduct_twisted.storage.disk.blockindex import IndexIgnored, read_index
from reduct_twisted.storage.disk.durability import DirtySet
from reduct_twisted.storage.disk.recovery import Recovery
from reduct_twisted.storage.disk.removedset import RemovedFormatError, RemovedSet, header_refusal

CLEAN, PROBLEMS, REFUSED = 0, 1, 2


class FsckRefused(Exception):
    """The directory cannot be checked (not ours, in use, missing); exit 2."""


class Report:
    """What the check found: ``problems`` (exit 1), ``notes``, ``repaired`` and counts."""

    def __init__(self, data_path: str) -> None:
        self.data_path = data_path
        self.problems: list = []
        self.notes: list = []
        self.repaired: list = []
        self.counts = {"buckets": 0, "entries": 0, "blocks": 0, "records": 0, "bytes": 0,
                       "checked_records": 0, "unchecked_records": 0, "logs": 0, "log_leaves": 0}

    def problem(self, where: str, kind: str, detail: str, **more) -> None:
        self.problems.append({"where": where, "kind": kind, "detail": detail, **more})

    def note(self, where: str, detail: str) -> None:
        self.notes.append({"where": where, "detail": detail})

    @property
    def status(self) -> int:
        return PROBLEMS if self.problems else CLEAN

    def to_json(self) -> dict:
        return {"data_path": self.data_path, "status": "problems" if self.problems else "clean",
                "counts": self.counts, "problems": self.problems, "notes": self.notes,
                "repaired": self.repaired}

    def render(self, out) -> None:
        for p in self.problems:
            out.write(f"PROBLEM {p['where']}: {p['kind']}: {p['detail']}\n")
        for n in self.notes:
            out.write(f"note    {n['where']}: {n['detail']}\n")
        for r in self.repaired:
            out.write(f"REPAIRED {r}\n")
        c = self.counts
        out.write(
            f"{self.data_path}: {c['buckets']} buckets, {c['entries']} entries, {c['blocks']} blocks, "
            f"{c['records']} records ({c['checked_records']} checked, {c['unchecked_records']} without "
            f"checksum), {c['logs']} integrity logs ({c['log_leaves']} leaves): "
            + (f"{len(self.problems)} problem(s)" if self.problems else "clean") + "\n"
        )


class _Log:
    """An entry's tree log read in place (no file is created, cut or written)."""

    def __init__(self, directory: str, where: str, merkle: bool) -> None:
        self.where = where
        self.biggest = 0
        self._fds = {}
        try:
            for name in (treelog_files.LEAVES_FILE, treelog_files.OFFSETS_FILE, treelog_files.HASHES_FILE):
                path = os.path.join(directory, name)
                if os.path.exists(path):
                    self._fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            self.leaves = self._fds[treelog_files.LEAVES_FILE]
            self.offsets = self._fds[treelog_files.OFFSETS_FILE]
            hashes = self._fds.get(treelog_files.HASHES_FILE)
            merkle = merkle and hashes is not None
            # the daemon's own rule for how much of the files is a consistent log
            self.n = treelog_files.recover(self.leaves, self.offsets, hashes, merkle)
            extra = {"offsets": os.fstat(self.offsets).st_size - 8 * self.n,
                     "leaves": os.fstat(self.leaves).st_size - treelog_files.end_of(self.offsets, self.n)}
            if merkle:
                extra["hashes"] = os.fstat(hashes).st_size - treelog_files.nodes(self.n) * HASH_SIZE
            self.extra = {name: size for name, size in extra.items() if size}
        except BaseException:
            self.close()
            raise

    def check(self, record, report) -> None:
        """Record ``record`` (numbered) against its leaf: digest, size, timestamp."""
        number = record.number
        self.biggest = max(self.biggest, number)
        if number > self.n or record.digest is None:
            return  # not logged yet: the daemon catches up from the records
        start = treelog_files.end_of(self.offsets, number - 1)
        raw = treelog_files.pread_exact(self.leaves, treelog_files.end_of(self.offsets, number) - start, start)
        try:
            leaf = json.loads(raw)
        except ValueError:
            leaf = {}
        if not isinstance(leaf, dict):
            leaf = {}
        got = (leaf.get("digest"), leaf.get("size"), leaf.get("timestamp"))
        if got != ("sha-256:" + record.digest.hex(), record.size, record.ts):
            report.problem(self.where, "integrity log",
                           f"record {record.ts} (number {number}) does not match its leaf", ts=record.ts)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}


class Checker:
    def __init__(self, data_path: str, repair: bool) -> None:
        self.data_path = os.path.abspath(data_path)
        self.repair = repair
        self.report = Report(self.data_path)
        self.recovery = Recovery(self.data_path, DirtySet(enabled=False))  # since 0: every record
        self.touched_dirs: set = set()

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.data_path)

    # -- the walk ---------------------------------------------------------------

    def run(self) -> Report:
        if not os.path.isdir(self.data_path):
            raise FsckRefused(f"{self.data_path} is not a directory")
        try:
            kind = layout.classify(self.data_path)
        except layout.DataDirRefused as exc:
            raise FsckRefused(str(exc)) from None
        if kind == layout.EMPTY:
            self.report.note(".", "empty data directory")
            return self.report
        lock = DataDirLock(self.data_path)
        try:
            if not lock.try_acquire():
                raise FsckRefused(f"{self.data_path} is in use: {lock.path} is held by {lock.holder()}; "
                                  f"stop the daemon first (fsck checks a stopped daemon's data)")
        except OSError as exc:
            raise FsckRefused(f"cannot open {lock.path}: {exc.strerror or exc}") from None
        try:
            if kind == layout.OUTDATED:
                self.report.note(".", "an older format version: the daemon upgrades it at its next start")
            if os.path.exists(os.path.join(self.data_path, layout.RUN_MARKER)):
                self.report.note(".", "the last run did not stop cleanly: the daemon re-checks the blocks it "
                                      "changed at its next start")
            with os.scandir(self.data_path) as items:
                buckets = sorted(i.path for i in items if i.is_dir(follow_symlinks=False)
                                 and not layout.is_top_level_name(i.name))
            for bucket in buckets:
                self.check_bucket(bucket)
            self._sync()
        finally:
            lock.release()
        return self.report

    def check_bucket(self, directory: str) -> None:
        self.report.counts["buckets"] += 1
        settings = os.path.join(directory, layout.SETTINGS_FILE)
        try:
            with open(settings, "rb") as f:
                json.loads(f.read() or b"{}")
        except FileNotFoundError:
            self.report.note(self.rel(directory), "no settings.json: the daemon uses the default settings")
        except (OSError, ValueError) as exc:
            self.report.problem(self.rel(settings), "settings", f"does not parse: {exc}")
        self._children(directory)

    def _children(self, directory: str, meta: bool = False) -> None:
        with os.scandir(directory) as items:
            children = sorted((i.name, i.path) for i in items if i.is_dir(follow_symlinks=False)
                              and layout.is_child_entry_dir(i.name, meta))
        for name, path in children:
            self.check_entry(path, name == layout.META_SEGMENT)

    def check_entry(self, directory: str, meta: bool) -> None:
        self.report.counts["entries"] += 1
        where = self.rel(directory)
        files: dict = {}
        with os.scandir(directory) as items:
            for item in items:
                if item.is_file(follow_symlinks=False):
                    found = blockfile.classify(item.name)
                    if found is not None:
                        files[item.name] = found
        unknown = [n for n in layout.unknown_in_entry(directory, meta) if "/" not in n]
        if unknown:
            self.report.note(where, f"not written by reduct-twisted, left alone: {', '.join(unknown[:5])}")
        try:
            rows = read_index(directory)
        except IndexIgnored as exc:
            rows = {}
            self.report.note(where, f"block index ignored ({exc}): the daemon reads the blocks instead")
        log = self.open_log(directory)
        try:
            metas = sorted(found[0] for found in files.values() if found[2] == blockfile.META_SUFFIX)
            stale = sorted(set(rows) - set(metas))
            if stale:
                self.report.note(where, f"block index rows without a block ({len(stale)}): the daemon drops them")
            for block_id in metas:
                self.check_block(directory, block_id, files, log)
            if log is not None and log.n > log.biggest and log.biggest:
                self.report.note(log.where, f"the log holds {log.n} leaves, the newest stored record is "
                                            f"number {log.biggest}")
        except (OSError, treelog_files.TreeLogError) as exc:
            self.report.problem(log.where if log else where, "integrity log", str(exc))
        finally:
            if log is not None:
                log.close()
        self._children(directory, meta)

    def check_block(self, directory: str, block_id: int, files: dict, log) -> None:
        counts = self.report.counts
        counts["blocks"] += 1
        meta = os.path.join(directory, blockfile.meta_name(block_id))
        where = self.rel(meta)
        try:
            table, _length = blockfile.read_meta(meta, block_id)
        except blockfile.UnsupportedMeta as exc:
            self.report.problem(where, "metadata", exc.message)
            return
        except blockfile.DamagedMeta as exc:
            self.report.problem(where, "metadata", exc.message)
            self._quarantine(directory, block_id, files, exc.message)
            return
        except OSError as exc:
            self.report.problem(where, "metadata", f"unreadable: {exc.strerror or exc}")
            return
        segments: dict = {}
        for record in table.values():
            segments.setdefault(record.segment, []).append(record)
            counts["records"] += 1
            counts["bytes"] += record.size
            if record.crc is None and record.digest is None:
                counts["unchecked_records"] += 1
            else:
                counts["checked_records"] += 1
            if log is not None and record.number is not None:
                log.check(record, self.report)
        bad = []
        for segment, records in sorted(segments.items()):
            path = os.path.join(directory, segment)
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                stat = None
            try:
                bad += self.recovery.check_segment(path, stat, records)
            except OSError as exc:
                bad += [(r.ts, f"unreadable: {exc.strerror or exc}") for r in records]
        for ts, reason in sorted(bad):
            self.report.problem(self.rel(directory), "record", f"record {ts} in block {block_id}: {reason}",
                                ts=ts, block=block_id)
        if bad:
            self._quarantine(directory, block_id, files, f"{len(bad)} record(s) failed their check")

    def open_log(self, directory: str):
        """The entry's integrity log opened for reading (:class:`_Log`), or None (none, or reported)."""
        log_dir = os.path.join(directory, layout.LOG_DIR)
        if not os.path.isdir(log_dir):
            return None
        where = self.rel(log_dir)
        try:
            refused = treelog_files.refusal(log_dir) or header_refusal(log_dir)
            if refused is None:
                self._check_removed(log_dir)
        except (OSError, RemovedFormatError) as exc:
            refused = exc
        if refused is not None:
            self.report.problem(where, "integrity log", f"the daemon refuses it: {refused}")
            return None
        try:
            merkle = treelog_files.read_format(log_dir)
            if merkle is None:
                return None
            log = _Log(log_dir, where, merkle)
        except (OSError, treelog_files.TreeLogError) as exc:
            self.report.problem(where, "integrity log", str(exc))
            return None
        self.report.counts["logs"] += 1
        self.report.counts["log_leaves"] += log.n
        if log.extra:
            beyond = ", ".join(f"{size} bytes of {name}" for name, size in log.extra.items())
            self.report.problem(where, "integrity log",
                                f"a torn or damaged tail: {log.n} consistent leaves, then {beyond} (the daemon "
                                f"cuts the log back to {log.n} leaves at its next start and rebuilds the rest "
                                f"from the records)")
        return log

    def _check_removed(self, log_dir: str) -> None:
        removed = os.path.join(log_dir, "removed")
        if os.path.exists(removed):
            with open(removed, "rb") as f:
                whole = f.read().endswith(b"\n")
            if whole:
                RemovedSet.open(log_dir)  # reads only: the file ends with a whole line
            else:
                self.report.note(self.rel(log_dir), "the removed set ends with a torn line: the daemon cuts it")

    # -- repair -----------------------------------------------------------------

    def _quarantine(self, directory: str, block_id: int, files: dict, reason: str) -> None:
        if not self.repair:
            return
        names = {n for n, found in files.items() if found[0] == block_id}
        before = len(self.recovery.quarantined)
        self.recovery.quarantine(directory, block_id, names, reason)
        if len(self.recovery.quarantined) > before:
            target = self.recovery.quarantined[-1]
            self.report.repaired.append(f"{self.rel(directory)}/{block_id}: moved to {self.rel(os.path.dirname(target))}/")
            self.touched_dirs |= {directory, os.path.dirname(target)}
        else:
            self.report.problem(self.rel(directory), "repair", self.recovery.problems[-1])

    def _sync(self) -> None:
        """Flush the directories whose names the repair changed (and their parents up to data_path)."""
        dirs = set()
        for d in self.touched_dirs:
            while d.startswith(self.data_path):
                dirs.add(d)
                if d == self.data_path:
                    break
                d = os.path.dirname(d)
        for d in sorted(dirs, key=len, reverse=True):
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fsck",
        help="check a stopped daemon's data directory offline",
        description=(
            "Check every record's CRC-32 and SHA-256, every block's metadata, the block indexes and the "
            "integrity logs of a stopped daemon's data directory. Exit 0 clean, 1 problems, 2 refused "
            "(not a reduct-twisted directory, or a daemon holds its lock)."
        ),
    )
    p.add_argument("data_path", metavar="DATA_PATH")
    p.add_argument("--repair", action="store_true",
                   help="move damaged blocks into DATA_PATH/.quarantine/ as the daemon's recovery does "
                        "(nothing is deleted)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(run=run_fsck)


def run_fsck(args, stdout, stderr, clock=None) -> int:
    report = Checker(args.data_path, args.repair).run()
    if args.json:
        stdout.write(json.dumps(report.to_json(), indent=1) + "\n")
    else:
        report.render(stdout)
    stdout.flush()
    return report.status
