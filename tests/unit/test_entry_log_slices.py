"""
Long entry-log work in bounded steps (storage/entry_log_catchup.py, TreeLog.hash_steps):
an older entry's catch-up, the rebuild of a log that lags its records and
the hash build of a log kept without hashes run a step at a time on a
cooperator driven by hand here (one step per turn), each step touching at
most one block or STEP_LEAVES leaves; writes, relabels and removals go on
meanwhile; reads answer the part already logged; the end result equals the
one-shot result and the independent RFC 9162 reference (tests/rfc9162.py).
"""

import hashlib
import os
import shutil

import pytest
from twisted.internet.task import Clock, Cooperator

from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage import entry_log_catchup
from reduct_twisted.storage.disk.treelog import TreeLog
from reduct_twisted.storage.listing import ListingSpec
from reduct_twisted.storage.testing import write_record
from tests import rfc9162
from tests.unit.test_storage_numbers import _make_old, _result

CT = "application/octet-stream"
OLD = 60  # older records, 2 a block: 30 blocks


class Turns:
    """A cooperator that runs one step of one task per turn, turns run by hand."""

    def __init__(self) -> None:
        self.calls: list = []
        self.cooperator = Cooperator(scheduler=self._schedule,
                                     terminationPredicateFactory=lambda: lambda: True)

    def _schedule(self, f):
        self.calls.append(f)

        class Call:
            def cancel(this):
                self.calls.remove(f)
        return Call()

    def turn(self) -> bool:
        """Run one turn: :return: whether there was one."""
        if not self.calls:
            return False
        self.calls.pop(0)()
        return True

    def run(self, limit: int = 100_000) -> int:
        """Every turn until none is left: :return: how many."""
        count = 0
        while self.turn():
            count += 1
            assert count < limit
        return count


def _data(ts):
    return b"content %d" % ts


def _leaf(number, ts, labels):
    data = _data(ts)
    return rfc9162.leaf(number, ts, len(data), CT, labels, hashlib.sha256(data).digest())


def _engine(path, mode="log", turns=None):
    engine = StorageEngine(str(path), Clock())
    engine.set_integrity(mode)
    if turns is not None:
        engine.set_cooperator(turns.cooperator.cooperate)
    engine.open()
    return engine


def _write(engine, stamps, labels=None):
    for ts in stamps:
        write_record(engine, "b", "e", ts, _data(ts), CT, labels or {"k": str(ts)})


def _log(engine):
    return engine._bucket("b").entry("e")._log


def _older_entry(path):
    """An entry of OLD records (ts 10, 20, ...) stored before numbers, backfilled."""
    engine = _engine(path)
    engine.create_bucket("b", {"max_block_records": 2})
    _write(engine, range(10, 10 * OLD + 1, 10))
    engine.close()
    shutil.rmtree(os.path.join(path, "b", "e", ".log"))
    _make_old(str(path))


def _expected_old():
    return [_leaf(n, 10 * n, {"k": str(10 * n)}) for n in range(1, OLD + 1)]


@pytest.fixture
def small_steps(monkeypatch):
    monkeypatch.setattr(entry_log_catchup, "STEP_LEAVES", 4)
    monkeypatch.setattr(entry_log_catchup, "INLINE_LEAVES", 8)


def test_an_older_entry_catches_up_a_block_or_a_few_leaves_a_turn(tmp_path, small_steps):
    _older_entry(tmp_path)
    turns = Turns()
    engine = _engine(tmp_path, turns=turns)
    _result(engine.backfill())
    assert engine.log_head("b", "e") == (0, rfc9162.MTH([]))  # the catch-up starts
    log = _log(engine)
    job = log.catching
    assert job is not None and len(job.blocks) == OLD // 2
    sizes, visited = [], []
    while turns.turn():
        sizes.append(log.tree.size)
        visited.append(job.visited)
    steps = [(b - a, v - u) for (a, u), (b, v) in zip(zip([0] + sizes, [0] + visited),
                                                      zip(sizes, visited))]
    # every turn: one block, or at most STEP_LEAVES leaves, never both
    assert all((blocks == 1 and leaves == 0) or (blocks == 0 and 0 < leaves <= 4)
               for leaves, blocks in steps[:-1])
    assert len(steps) > OLD // 2 and job.visited == OLD // 2
    assert log.catching is None
    assert engine.log_head("b", "e") == (OLD, rfc9162.MTH(_expected_old()))
    engine.close()


def test_the_sliced_result_equals_the_one_shot_result(tmp_path, small_steps):
    _older_entry(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    turns = Turns()
    sliced = _engine(tmp_path / "a", turns=turns)
    once = _engine(tmp_path / "b")
    for engine in (sliced, once):
        _result(engine.backfill())
        engine.log_head("b", "e")
    assert turns.run() > 1
    assert sliced.log_head("b", "e") == once.log_head("b", "e") == (
        OLD, rfc9162.MTH(_expected_old()))
    leaves = [_log(e).tree.leaves(1, OLD) for e in (sliced, once)]
    assert leaves[0] == leaves[1] == _expected_old()
    sliced.close()
    once.close()


def test_writes_go_on_and_reads_answer_the_part_logged(tmp_path, small_steps):
    """Records written during the catch-up get the next numbers; their leaves
    wait (as written, even if relabelled meanwhile) and follow in number order;
    every head meanwhile is a prefix, consistent with the final one."""
    _older_entry(tmp_path)
    turns = Turns()
    engine = _engine(tmp_path, turns=turns)
    _result(engine.backfill())
    engine.log_head("b", "e")
    heads, new = [], []
    ts = 100_000
    while turns.turn():
        if len(heads) % 5 == 0:
            ts += 1
            _write(engine, [ts], {"new": str(ts)})
            new.append(ts)
            if len(new) == 2:  # relabelled before its leaf is appended: logged as written
                engine.update_labels("b", "e", {ts: {"new": "changed"}})
        heads.append(engine.log_head("b", "e"))
        page = engine.list_page("b", "e", ListingSpec(per_page=1000))
        assert _result(page).total == heads[-1][0]
    expected = _expected_old() + [_leaf(OLD + i + 1, t, {"new": str(t)}) for i, t in enumerate(new)]
    assert len(new) > 3 and _log(engine).catching is None
    final = engine.log_head("b", "e")
    assert final == (len(expected), rfc9162.MTH(expected))
    assert any(0 < size < OLD for size, _ in heads)
    for size, root in heads:
        assert root == rfc9162.MTH(expected[:size])
    engine.close()


def test_a_removal_of_records_not_logged_yet_catches_up_to_them_first(tmp_path, small_steps):
    _older_entry(tmp_path)
    turns = Turns()
    engine = _engine(tmp_path, turns=turns)
    _result(engine.backfill())
    engine.log_head("b", "e")
    for _ in range(6):
        turns.turn()
    log = _log(engine)
    logged = log.tree.size
    assert 0 < logged < OLD and log.catching is not None
    engine.remove_stamps("b", "e", [10])  # logged already: the catch-up goes on in turns
    assert log.catching is not None and log.tree.size == logged
    engine.remove_stamps("b", "e", [10 * (logged + 3)])  # not yet: caught up to it first
    assert log.catching is not None and logged + 3 <= log.tree.size < OLD
    assert log.tree.leaf(logged + 3) == _expected_old()[logged + 2]
    engine.remove_stamps("b", "e", [10 * (OLD - 1)])  # the far end: all but the last leaf
    assert log.tree.size >= OLD - 1
    turns.run()
    assert log.catching is None
    assert engine.log_head("b", "e") == (OLD, rfc9162.MTH(_expected_old()))
    assert {1, logged + 3, OLD - 1} <= set(n for n in range(1, OLD + 1) if n in log.removed())
    item, stored = engine.record_item("b", "e", OLD - 1)
    assert (item.timestamp, stored) == (10 * (OLD - 1), False)
    engine.close()


def test_a_removal_whose_catch_up_failed_once_logs_the_leaves_when_tried_again(
        tmp_path, small_steps, monkeypatch):
    from reduct_twisted.errors import ReductError

    _older_entry(tmp_path)
    turns = Turns()
    engine = _engine(tmp_path, turns=turns)
    _result(engine.backfill())
    engine.log_head("b", "e")
    for _ in range(6):
        turns.turn()
    log = _log(engine)
    real, calls = log.tree.append, []

    def full_once(leaves):
        calls.append(len(leaves))
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(leaves)
    monkeypatch.setattr(log.tree, "append", full_once)
    with pytest.raises(ReductError):
        engine.remove_stamps("b", "e", [10 * (OLD - 1)])
    assert engine.read("b", "e", 10 * (OLD - 1)).record.number == OLD - 1  # nothing removed
    engine.remove_stamps("b", "e", [10 * (OLD - 1)])
    assert log.tree.size >= OLD - 1 and log.tree.leaf(OLD - 1) == _expected_old()[OLD - 2]
    turns.run()
    assert log.catching is None
    assert engine.log_head("b", "e") == (OLD, rfc9162.MTH(_expected_old()))
    engine.close()


def test_closing_during_a_catch_up_and_starting_again(tmp_path, small_steps):
    _older_entry(tmp_path)
    turns = Turns()
    engine = _engine(tmp_path, turns=turns)
    _result(engine.backfill())
    engine.log_head("b", "e")
    for _ in range(10):
        turns.turn()
    engine.close()  # the steps stop; the prefix stays
    turns.run()
    again = _engine(tmp_path, turns=turns)
    _result(again.backfill())
    size = again.log_head("b", "e")[0]
    assert 0 < size < OLD
    turns.run()
    assert again.log_head("b", "e") == (OLD, rfc9162.MTH(_expected_old()))
    again.close()


def test_a_lagging_log_is_rebuilt_in_turns(tmp_path, small_steps):
    """A log far behind its records (its tail lost with the page cache, as a
    power loss with sync=never may leave it) is rebuilt in steps; the records
    written meanwhile follow."""
    engine = _engine(tmp_path)
    engine.create_bucket("b", {"max_block_records": 2})
    _write(engine, range(1, 41))
    engine.close()
    with TreeLog.open(os.path.join(tmp_path, "b", "e", ".log"), merkle=True) as tree:
        tree.truncate(3)
    turns = Turns()
    again = _engine(tmp_path, turns=turns)
    assert again.log_head("b", "e")[0] == 3
    _write(again, [1000])
    assert turns.run() > 5
    expected = [_leaf(n, n, {"k": str(n)}) for n in range(1, 41)] + [_leaf(41, 1000, {"k": "1000"})]
    assert again.log_head("b", "e") == (41, rfc9162.MTH(expected))
    again.close()


def test_a_small_rebuild_runs_at_once(tmp_path):
    """After kill -9 the log lags by fewer than a batch: no turn is needed."""
    engine = _engine(tmp_path)
    engine.create_bucket("b", {"max_block_records": 4})
    _write(engine, range(1, 6))  # pending, never appended; abandoned
    turns = Turns()
    again = _engine(tmp_path, turns=turns)
    expected = [_leaf(n, n, {"k": str(n)}) for n in range(1, 6)]
    assert again.log_head("b", "e") == (5, rfc9162.MTH(expected))
    assert not turns.calls
    again.close()


def test_a_removal_first_thing_after_a_crash_keeps_the_records_leaf(tmp_path):
    """The leaves above the log's prefix are rebuilt before a removal makes
    one of their records vanish (it was logged as a skipped number before)."""
    engine = _engine(tmp_path)
    engine.create_bucket("b", {"max_block_records": 4})
    _write(engine, range(1, 6))  # abandoned with 5 pending leaves
    again = _engine(tmp_path)
    again.remove_stamps("b", "e", [3])
    expected = [_leaf(n, n, {"k": str(n)}) for n in range(1, 6)]
    assert again.log_head("b", "e") == (5, rfc9162.MTH(expected))
    assert _log(again).removed().__contains__(3)
    again.close()


def test_a_failed_step_is_reported_and_the_next_flush_starts_again(tmp_path, small_steps,
                                                                    monkeypatch):
    _older_entry(tmp_path)
    turns = Turns()
    engine = _engine(tmp_path, turns=turns)
    _result(engine.backfill())
    engine.log_head("b", "e")
    log = _log(engine)
    real = log.tree.append

    def full(leaves):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(log.tree, "append", full)
    turns.run()
    assert log.catching is None and log.tree.size == 0
    assert any("No space left" in p for p in engine._context.logs.problems)
    monkeypatch.setattr(log.tree, "append", real)
    engine.log_head("b", "e")
    turns.run()
    assert engine.log_head("b", "e") == (OLD, rfc9162.MTH(_expected_old()))
    engine.close()


# -- the hashes of a log kept without them ---------------------------------------------------


def test_hashes_are_built_in_steps_and_roots_cover_the_hashed_prefix(tmp_path):
    where = str(tmp_path / "log")
    leaves = [b"leaf %d" % n for n in range(1, 101)]
    with TreeLog.open(where, merkle=False) as log:
        log.append(leaves)
    log = TreeLog.open(where, merkle=True, build_now=False)
    assert log.building and not log.merkle and log.hashed == 0
    steps = log.hash_steps(chunk=16)
    next(steps)
    assert log.hashed == 16 and log.root() == rfc9162.MTH(leaves[:16])
    assert log.inclusion(5, 16) == rfc9162.PATH(4, leaves[:16])
    with pytest.raises(ValueError):
        log.root(17)
    log.append([b"late"])  # appended meanwhile: hashed too
    leaves.append(b"late")
    yields = 1 + sum(1 for _ in steps)  # 7 chunks of 16: the last one ends the steps
    assert yields == 6 and log.merkle and not log.building
    assert (log.size, log.hashed) == (101, 101) and log.root() == rfc9162.MTH(leaves)
    log.append([b"after"])
    leaves.append(b"after")
    assert log.root() == rfc9162.MTH(leaves)
    log.close()
    with TreeLog.open(where, merkle=True) as log:  # kept: nothing to build
        assert not log.building and log.root() == rfc9162.MTH(leaves)


def test_a_hash_build_cut_short_is_done_anew(tmp_path):
    where = str(tmp_path / "log")
    leaves = [b"leaf %d" % n for n in range(1, 50)]
    with TreeLog.open(where, merkle=False) as log:
        log.append(leaves)
    log = TreeLog.open(where, merkle=True, build_now=False)
    steps = log.hash_steps(chunk=8)
    next(steps)
    log.close()  # stopped (e.g. the daemon stopped): "format" still says no hashes
    assert list(steps) == []
    with TreeLog.open(where, merkle=True) as log:
        assert log.root() == rfc9162.MTH(leaves)


def test_an_entry_log_builds_its_hashes_in_turns(tmp_path, monkeypatch):
    from reduct_twisted.storage.disk import treelog

    monkeypatch.setattr(treelog, "_CATCH_UP", 8)
    engine = _engine(tmp_path, mode="digest")
    engine.create_bucket("b", {})
    _write(engine, range(1, 101))
    engine.close()
    turns = Turns()
    again = _engine(tmp_path, turns=turns)
    expected = [_leaf(n, n, {"k": str(n)}) for n in range(1, 101)]
    assert again.log_head("b", "e") == (0, rfc9162.MTH([]))
    turns.turn()
    turns.turn()
    size, root = again.log_head("b", "e")
    assert size == 16 and root == rfc9162.MTH(expected[:16])
    _write(again, [1000])
    expected.append(_leaf(101, 1000, {"k": "1000"}))
    assert turns.run() > 5
    assert again.log_head("b", "e") == (101, rfc9162.MTH(expected))
    proof = again.log_inclusion("b", "e", 7, 101)
    assert proof == rfc9162.PATH(6, expected)
    again.close()


def test_ready_goes_on_from_the_block_found_waiting(tmp_path, monkeypatch):
    """While an older entry waits for its backfill, each write asks whether
    its log is ready: one block looked at, not every block each time."""
    from reduct_twisted.storage import entry_log

    _older_entry(tmp_path)
    engine = _engine(tmp_path)
    log = engine._context.logs.of(engine._bucket("b").entry("e"))
    looked, real = [], entry_log._waits
    monkeypatch.setattr(entry_log, "_waits", lambda block, late: looked.append(block) or
                        real(block, late))
    for _ in range(100):
        assert not log.ready()
    assert len(looked) == 100 and len(set(looked)) == 1
    _result(engine.backfill())
    looked.clear()
    assert log.ready() and len(looked) <= OLD // 2
    engine.close()


def test_a_skipped_number_gets_its_gap_leaf_in_turns_and_is_never_stored(tmp_path, small_steps):
    from reduct_twisted.storage.entry_log import gap_leaf

    engine = _engine(tmp_path)
    engine.create_bucket("b", {"max_block_records": 2})
    _write(engine, range(1, 11))
    engine._bucket("b").entry("e").numbers.take()  # number 11: no record (a failed write)
    _write(engine, range(12, 31))  # numbers 12 …
    engine.close()
    with TreeLog.open(os.path.join(tmp_path, "b", "e", ".log"), merkle=True) as tree:
        tree.truncate(2)
    turns = Turns()
    again = _engine(tmp_path, turns=turns)
    again.log_head("b", "e")
    assert turns.run() > 3
    expected = [_leaf(n, n, {"k": str(n)}) for n in range(1, 11)] + [gap_leaf(11)] + [
        _leaf(n, n, {"k": str(n)}) for n in range(12, 31)]
    assert again.log_head("b", "e") == (30, rfc9162.MTH(expected))
    assert 11 in _log(again).removed() and len(_log(again).removed()) == 1
    page = _result(again.list_page("b", "e", ListingSpec(per_page=1000)))
    assert [leaf.number for leaf, _ in page.items] == [n for n in range(1, 31) if n != 11]
    again.close()
