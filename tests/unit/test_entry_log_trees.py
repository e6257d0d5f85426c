"""
The bound on open entry-log trees (storage/entry_log_trees.py): the least
recently used beyond the limit are closed, never a busy one; and for real, an
engine writing to more entries than the bound keeps at most that many trees
open and every entry's log stays whole.
"""

import hashlib

from twisted.internet.task import Clock

from reduct_twisted.storage.engine import StorageEngine
from reduct_twisted.storage.entry_log_trees import OpenTrees, default_limit


class Tree:
    def __init__(self):
        self.parked, self.building = False, False

    def park(self):
        self.parked = True


class Log:
    def __init__(self):
        self.tree, self.inflight, self.catching = Tree(), None, None


def test_the_least_recently_used_close_beyond_the_limit():
    trees = OpenTrees(limit=3)
    logs = [Log() for _ in range(5)]
    for log in logs[:3]:
        trees.used(log)
    trees.used(logs[0])  # now the most recent
    trees.used(logs[3])
    assert logs[1].tree.parked and len(trees) == 3
    assert not any(log.tree.parked for log in (logs[0], logs[2], logs[3]))
    trees.used(logs[4])
    assert logs[2].tree.parked and not logs[0].tree.parked


def test_a_busy_tree_stays_open():
    trees = OpenTrees(limit=2)
    busy = [Log() for _ in range(3)]
    busy[0].inflight = (1, 10)
    busy[1].catching = object()
    busy[2].tree.building = True
    for log in busy:
        trees.used(log)
    idle = Log()
    trees.used(idle)  # the one in use now is never closed either
    assert not idle.tree.parked
    assert not any(log.tree.parked for log in busy)
    assert len(trees) == 4  # over the limit until one is free
    busy[0].inflight = None
    trees.used(Log())
    assert busy[0].tree.parked and idle.tree.parked


def test_a_parked_tree_log_opens_its_files_again_when_used(tmp_path):
    """TreeLog.park closes the three files; the next append or proof opens them again."""
    import os

    from reduct_twisted.storage.disk.treelog import TreeLog
    from tests import rfc9162

    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    log = TreeLog.open(str(tmp_path / "log"), True)
    leaves = [b'{"n":%d}' % i for i in range(7)]
    log.append(leaves[:4])
    assert open_fds() == before + 3
    log.park()
    assert open_fds() == before
    log.append(leaves[4:])
    assert log.root() == rfc9162.MTH(leaves) and log.leaves(1, 7) == leaves
    assert open_fds() == before + 3
    log.close()
    assert open_fds() == before


def test_forget_and_default_limit():
    trees = OpenTrees(limit=1)
    log = Log()
    trees.used(log)
    trees.forget(log)
    assert len(trees) == 0
    assert 16 <= default_limit() <= 1024


def test_an_engine_keeps_at_most_the_bound_open_and_every_log_whole(tmp_path):
    engine = StorageEngine(str(tmp_path / "data"), Clock())
    engine.set_integrity("log")
    engine.open()
    engine._context.logs.trees.limit = 4
    engine.create_bucket("b", {})
    payload = b"x" * 100
    for round_ in range(3):
        for e in range(12):
            w = engine.upload("b", f"e{e}", 1000 + round_, len(payload), "text/plain", {})
            w.write(payload)
            w.commit()
            engine._context.logs.of(engine._bucket("b").entries[f"e{e}"]).flush()
        assert len(engine._context.logs.trees) == 4  # 12 used, the 4 most recent open
    for e in range(12):
        log = engine._context.logs.of(engine._bucket("b").entries[f"e{e}"])
        assert log.flush() == 3
        assert log.tree.size == 3
    engine.close()


def test_a_log_that_cannot_open_its_files_keeps_its_leaves_pending(tmp_path, monkeypatch):
    """Out of descriptors when a batch's leaves go to the worker: the batch is stored,
    the problem reported, the leaves kept; the next flush appends them."""
    import errno

    from twisted.internet.defer import succeed

    from reduct_twisted.storage import leafjob
    from reduct_twisted.storage.disk import treelog
    from reduct_twisted.storage.entry_log_offload import BATCH

    engine = StorageEngine(str(tmp_path / "data"), Clock())
    engine.set_integrity("log")
    engine.open()
    engine.set_leaf_worker(lambda payload: succeed(leafjob.run_job(payload)))
    engine.create_bucket("b", {})
    real_open = treelog.TreeLog.open.__func__

    def no_descriptors(cls, *args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(treelog.TreeLog, "open", classmethod(no_descriptors))
    failed = []
    payload = b"y" * 10
    for ts in range(BATCH + 5):
        w = engine.upload("b", "e", 1000 + ts, len(payload), "text/plain", {}, failed=failed.append)
        w.write(payload)
        w.commit()
    engine.flush_writes()  # the run's leaves reach BATCH: the offload cannot open the log
    assert failed == []
    logs = engine._context.logs
    assert any("Too many open files" in p for p in logs.problems)
    log = logs.of(engine._bucket("b").entries["e"])
    assert len(log.pending) == BATCH + 5
    monkeypatch.setattr(treelog.TreeLog, "open", classmethod(real_open))
    assert log.flush() == BATCH + 5
    entry = engine._bucket("b").entries["e"]
    assert entry.record_count == BATCH + 5
    engine.close()


def test_descriptor_caches_take_shares_of_the_open_file_limit(tmp_path, monkeypatch):
    import resource

    from reduct_twisted.storage import fdlimit

    for soft, quarter, sixteenth in ((20000, 5000, 1024), (1024, 256, 64), (256, 128, 16),
                                     (524288, 16384, 1024), (resource.RLIM_INFINITY, 16384, 1024)):
        monkeypatch.setattr(fdlimit.resource, "getrlimit", lambda _, soft=soft: (soft, soft))
        assert fdlimit.share(4, 128, 16384) == quarter
        assert default_limit() == sixteenth
        engine = StorageEngine(str(tmp_path / "data"), Clock())
        assert engine._context.fds.capacity == quarter
