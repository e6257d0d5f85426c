"""
The entry logs wired into the storage (storage/entry_log.py, storage/log_api.py):
leaves as written, pending/flush ordering against every .meta rewrite or
removal, recovery of an abandoned engine, the engine's log and listing API.
Proofs and roots are checked with the independent tests/rfc9162.py.
"""

import hashlib
import os
import shutil

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.entry_log import BATCH, MAX_WAITING
from reduct_twisted.storage.listing import ListingSpec
from reduct_twisted.storage.testing import write_record
from tests import rfc9162

CT = "application/octet-stream"


def _engine(path, mode="log"):
    engine = StorageEngine(str(path), Clock())
    engine.set_integrity(mode)
    engine.open()
    return engine


@pytest.fixture
def engine(tmp_path):
    engine = _engine(tmp_path / "d")
    engine.create_bucket("b", {"max_block_records": 4})
    yield engine
    engine.close()


def _data(ts):
    return b"content %d" % ts


def _leaf(number, ts, labels):
    data = _data(ts)
    return rfc9162.leaf(number, ts, len(data), CT, labels, hashlib.sha256(data).digest())


def _write(engine, stamps, entry="e", labels=None):
    for ts in stamps:
        write_record(engine, "b", entry, ts, _data(ts), CT, labels or {"k": str(ts)})


def _series(engine, entry="e"):
    return engine._bucket("b").entry(entry)


def _page(engine, spec, entry="e"):
    found = []
    engine.list_page("b", entry, spec).addBoth(found.append)
    if hasattr(found[0], "raiseException"):
        found[0].raiseException()
    return found[0]


def test_head_is_the_rfc9162_root_of_the_leaves_as_written(engine):
    _write(engine, range(1, 11))
    size, root = engine.log_head("b", "e")
    expected = [_leaf(n, n, {"k": str(n)}) for n in range(1, 11)]
    assert size == 10
    assert root == rfc9162.MTH(expected)


def test_pending_leaves_stay_bounded_over_many_entries(engine):
    """Writes spread over more entries than MAX_WAITING: the entry waiting longest
    is flushed each time one more starts waiting, in that order, and its head is
    the root of its leaves as written."""
    entries = [f"e{i}" for i in range(MAX_WAITING + 5)]
    for i, entry in enumerate(entries):
        _write(engine, [10 + i], entry)
    book = engine._context.logs
    logs = [_series(engine, entry)._log for entry in entries]
    assert [log.tree is not None and log.tree.size == 1 and not log.pending for log in logs] == (
        [True] * 5 + [False] * MAX_WAITING)
    assert sum(len(log.pending) for log in logs) == MAX_WAITING
    assert len(book.waiting) == MAX_WAITING
    assert engine.log_head("b", entries[0]) == (1, rfc9162.MTH([_leaf(1, 10, {"k": "10"})]))


def test_leaves_are_pending_until_a_batch_is_full(engine):
    _write(engine, range(1, BATCH))
    log = _series(engine)._log
    assert log.tree is None and len(log.pending) == BATCH - 1
    _write(engine, [BATCH])
    assert log.tree.size == BATCH and not log.pending


@pytest.mark.parametrize("edit", ["relabel", "remove", "compress", "evict"])
def test_edits_never_lose_an_as_written_leaf(tmp_path, edit):
    """Each edit rewrites or removes a .meta: the pending leaves are appended
    first, so the leaf keeps the labels as written, also after the engine is
    abandoned (kill -9) and the log rebuilt from the .meta lines."""
    settings = {"max_block_records": 2}
    if edit == "evict":
        settings.update(quota_type="FIFO", quota_size=200)
    engine = _engine(tmp_path / "d")
    engine.create_bucket("b", settings)
    _write(engine, [1, 2, 3])
    if edit == "relabel":
        engine.update_labels("b", "e", {1: {"k": "changed"}, 3: {"x": "y"}})
    elif edit == "remove":
        engine.remove_stamps("b", "e", [1, 3])
    elif edit == "compress":
        engine.compress_blocks("b", "e", 2**62)
    else:
        _write(engine, range(4, 40))
    assert _series(engine)._log.tree is not None  # appended before the edit
    top = 3 if edit != "evict" else 39
    leaves = [_leaf(n, n, {"k": str(n)}) for n in range(1, top + 1)]
    assert engine.log_head("b", "e") == (top, rfc9162.MTH(leaves))
    # abandoned, not closed: the next open rebuilds what was pending
    again = _engine(tmp_path / "d")
    assert again.log_head("b", "e") == (top, rfc9162.MTH(leaves))
    item, stored = again.record_item("b", "e", 1)
    assert item.labels == {"k": "1"}
    assert stored == (edit in ("relabel", "compress"))
    again.close()


def test_recovery_rebuilds_the_leaves_above_the_logs_prefix(tmp_path):
    engine = _engine(tmp_path / "d")
    engine.create_bucket("b", {"max_block_records": 3})
    _write(engine, range(1, BATCH + 10))   # BATCH appended, 9 pending
    _write(engine, [5000], entry="other")  # never flushed at all
    again = _engine(tmp_path / "d")
    leaves = [_leaf(n, n, {"k": str(n)}) for n in range(1, BATCH + 10)]
    assert again.log_head("b", "e") == (BATCH + 9, rfc9162.MTH(leaves))
    assert again.log_head("b", "other") == (1, rfc9162.MTH([_leaf(1, 5000, {"k": "5000"})]))
    _write(again, [10_000])  # numbering and logging go on
    leaves.append(_leaf(BATCH + 10, 10_000, {"k": "10000"}))
    assert again.log_head("b", "e") == (BATCH + 10, rfc9162.MTH(leaves))
    again.close()


def test_close_and_take_dirty_append_and_report_the_log_files(tmp_path):
    engine = _engine(tmp_path / "d")
    engine.create_bucket("b", {})
    _write(engine, [1, 2])
    files, _ = engine.take_dirty()
    log_dir = os.path.join(engine.data_path, "b", "e", ".log")
    assert os.path.join(log_dir, "leaves") in files
    assert _series(engine)._log.tree.size == 2
    _write(engine, [3])
    engine.close()
    again = _engine(tmp_path / "d")
    assert again.log_head("b", "e")[0] == 3
    again.close()


def test_proofs_verify_with_the_independent_reference(engine):
    _write(engine, range(1, 30))
    leaves = [_leaf(n, n, {"k": str(n)}) for n in range(1, 30)]
    for tree_size in (1, 7, 16, 29):
        root = rfc9162.MTH(leaves[:tree_size])
        for number in range(1, tree_size + 1):
            path = engine.log_inclusion("b", "e", number, tree_size)
            assert rfc9162.verify_inclusion(rfc9162.leaf_hash(leaves[number - 1]), number - 1,
                                            tree_size, path, root)
    for first in (1, 5, 16):
        for second in (first, 20, 29):
            path = engine.log_consistency("b", "e", first, second)
            assert rfc9162.verify_consistency(first, second, rfc9162.MTH(leaves[:first]),
                                              rfc9162.MTH(leaves[:second]), path)


def test_api_errors(engine):
    _write(engine, range(1, 6))
    with pytest.raises(NotFound, match="Bucket 'x' is not found"):
        engine.log_head("x", "e")
    with pytest.raises(NotFound, match="Entry 'nope' not found in bucket 'b'"):
        engine.log_head("b", "nope")
    with pytest.raises(NotFound, match="^Record number 6 not found in entry b/e$"):
        engine.record_item("b", "e", 6)
    for call in (lambda: engine.log_inclusion("b", "e", 1, 6),
                 lambda: engine.log_inclusion("b", "e", 4, 3),
                 lambda: engine.log_inclusion("b", "e", 0, 3),
                 lambda: engine.log_consistency("b", "e", 4, 3),
                 lambda: engine.log_consistency("b", "e", 0, 3),
                 lambda: engine.log_consistency("b", "e", 2, 6),
                 lambda: engine.record_item("b", "e", 0)):
        with pytest.raises(UnprocessableEntity):
            call()


@pytest.mark.parametrize("mode", ["off", "digest"])
def test_modes_without_a_tree(tmp_path, mode):
    engine = _engine(tmp_path / "d", mode)
    engine.create_bucket("b", {})
    _write(engine, [1, 2])
    with pytest.raises(NotFound, match="^Integrity log is off for this server$"):
        engine.log_head("b", "e")
    with pytest.raises(NotFound, match="^Integrity log is off for this server$"):
        engine.log_inclusion("b", "e", 1, 2)
    if mode == "off":
        with pytest.raises(NotFound, match="off"):
            engine.record_item("b", "e", 1)
        assert not os.path.exists(os.path.join(engine.data_path, "b", "e", ".log"))
    else:
        item, stored = engine.record_item("b", "e", 2)
        assert (item.number, item.timestamp, stored) == (2, 2, True)
        assert item.digest == hashlib.sha256(_data(2)).digest()
    engine.close()


def test_listing_pages_removed_records_and_digests(engine):
    _write(engine, range(1, 21))
    engine.remove_stamps("b", "e", [3, 4, 10])
    page = _page(engine, ListingSpec(per_page=5))
    assert [leaf.number for leaf, _ in page.items] == [1, 2, 5, 6, 7]
    assert (page.total, page.last_page, page.next_start) == (17, 4, 8)
    page = _page(engine, ListingSpec(per_page=5, include_removed=True, start=3))
    assert [(leaf.number, stored) for leaf, stored in page.items] == [
        (3, False), (4, False), (5, True), (6, True), (7, True)]
    digest = hashlib.sha256(_data(7)).digest()
    page = _page(engine, ListingSpec(digest=digest))
    assert [leaf.number for leaf, _ in page.items] == [7]
    page = _page(engine, ListingSpec(order_by="timestamp", descending=True, per_page=2))
    assert [leaf.timestamp for leaf, _ in page.items] == [20, 19]
    assert engine.record_item("b", "e", 10)[1] is False


def test_a_timestamp_reused_after_removal_is_not_the_old_record(engine):
    _write(engine, [1, 2])
    engine.remove_stamps("b", "e", [1])
    _write(engine, [1])
    assert engine.record_item("b", "e", 1)[1] is False
    assert engine.record_item("b", "e", 3)[1] is True


def test_rename_moves_the_log_and_removal_takes_it(engine):
    _write(engine, range(1, 6))
    head = engine.log_head("b", "e")
    engine.rename_entry("b", "e", "f")
    assert engine.log_head("b", "f") == head
    _write(engine, [6], entry="f")
    assert engine.log_head("b", "f")[0] == 6
    engine.remove_entry("b", "f")
    _write(engine, [1], entry="f")
    assert engine.log_head("b", "f")[0] == 1


def test_layout_accepts_the_log_directory(tmp_path):
    engine = _engine(tmp_path / "d")
    engine.create_bucket("b", {})
    _write(engine, [1, 2], entry="a")
    _write(engine, [1], entry="a/c")
    engine.close()
    again = _engine(tmp_path / "d")
    assert again.recovery_report()["left_in_place"] == []
    assert sorted(again.entry_names("b")) == ["a", "a/c"]
    assert again.log_head("b", "a")[0] == 2
    again.close()


def test_filtered_listings_scan_in_the_thread_pool_and_match_a_reference(engine):
    from twisted.internet.defer import Deferred

    from reduct_twisted.storage.listing import Condition

    calls = []

    def in_thread(f, *args):
        calls.append(f.__name__)
        d = Deferred()
        d.callback(f(*args))
        return d

    engine.run_in_thread = in_thread
    _write(engine, range(1, 41))
    engine.update_labels("b", "e", {5: {"k": "99"}})  # listing shows labels as written
    engine.remove_stamps("b", "e", [12])
    spec = ListingSpec(where=(Condition("k", ">=", "30"),), start_ts=2, stop_ts=38, per_page=4,
                       page=2)
    page = _page(engine, spec)
    reference = [n for n in range(2, 38) if float(n) >= 30 and n != 12]
    assert page.total == len(reference)
    assert [leaf.number for leaf, _ in page.items] == reference[4:8]
    assert calls == ["scan_leaves", "page_of"]  # one slice read, then the page cut
    _page(engine, ListingSpec(per_page=3))
    assert calls == ["scan_leaves", "page_of"]  # by position: no scan
    page = _page(engine, ListingSpec(where=(Condition("k", "=", "5"),)))
    assert [(leaf.number, leaf.labels) for leaf, _ in page.items] == [(5, {"k": "5"})]


def test_the_digest_index_catches_up_with_the_log(tmp_path):
    engine = _engine(tmp_path / "d")
    engine.create_bucket("b", {})
    _write(engine, range(1, 11))
    digest = hashlib.sha256(_data(7)).digest()
    assert [leaf.number for leaf, _ in _page(engine, ListingSpec(digest=digest)).items] == [7]
    engine.close()
    again = _engine(tmp_path / "d")
    _write(again, range(11, 16))
    write_record(again, "b", "e", 100, _data(7), CT, {})  # same content as record 7
    page = _page(again, ListingSpec(digest=digest))
    assert [leaf.number for leaf, _ in page.items] == [7, 16]
    later = hashlib.sha256(_data(13)).digest()
    assert [leaf.number for leaf, _ in _page(again, ListingSpec(digest=later)).items] == [13]
    assert _page(again, ListingSpec(digest=b"\0" * 32)).items == []
    again.close()


def test_an_older_entry_logs_once_its_backfill_is_done(tmp_path):
    """Records stored before numbers: the log waits (no leaf, no pending) until
    the backfill numbered them, then catches up from the records by number;
    a label update before that is logged as it is at catch-up (the limit)."""
    from tests.unit.test_storage_numbers import _make_old, _result

    engine = _engine(tmp_path)
    engine.create_bucket("b", {"max_block_records": 3})
    for ts in (40, 10, 30, 20):
        write_record(engine, "b", "e", ts, _data(ts), CT, {"k": str(ts)})
    engine.close()
    shutil.rmtree(tmp_path / "b" / "e" / ".log")  # no log before issue #16
    _make_old(str(tmp_path))
    again = _engine(tmp_path)
    write_record(again, "b", "e", 5, _data(5), CT, {"k": "5"})  # number 5
    again.update_labels("b", "e", {10: {"k": "relabelled"}})
    assert again.log_head("b", "e")[0] == 0  # waiting for the backfill
    assert not _series(again)._log.pending
    _result(again.backfill())
    leaves = [_leaf(1, 10, {"k": "relabelled"}), _leaf(2, 20, {"k": "20"}),
              _leaf(3, 30, {"k": "30"}), _leaf(4, 40, {"k": "40"}), _leaf(5, 5, {"k": "5"})]
    assert again.log_head("b", "e") == (5, rfc9162.MTH(leaves))
    write_record(again, "b", "e", 6, _data(6), CT, {"k": "6"})
    leaves.append(_leaf(6, 6, {"k": "6"}))
    assert again.log_head("b", "e") == (6, rfc9162.MTH(leaves))
    again.close()


def test_a_timestamp_beyond_2_53_is_logged_as_a_string(engine):
    ts = 2**60
    write_record(engine, "b", "e", ts, b"late", CT, {})
    item, stored = engine.record_item("b", "e", 1)
    assert (item.timestamp, stored) == (ts, True)
    raw = _series(engine)._log.tree.leaf(1)
    assert b'"timestamp":"%d"' % ts in raw


def test_evicted_records_are_in_the_removed_set_and_listed_as_removed(tmp_path):
    engine = _engine(tmp_path / "d")
    engine.create_bucket("b", {"max_block_records": 2, "quota_type": "FIFO", "quota_size": 200})
    _write(engine, range(1, 40))
    stored = [n for n in range(1, 40) if engine._bucket("b").entry("e").find(n)]
    assert 0 < len(stored) < 39
    page = _page(engine, ListingSpec(per_page=1000))
    assert [leaf.number for leaf, _ in page.items] == stored and page.total == len(stored)
    page = _page(engine, ListingSpec(per_page=1000, include_removed=True))
    assert [(leaf.number, ok) for leaf, ok in page.items] == [
        (n, n in stored) for n in range(1, 40)]
    assert len(_series(engine)._log.removed()) == 39 - len(stored)
    engine.close()


def test_records_written_without_digests_are_logged_after_the_backfill(tmp_path):
    from tests.unit.test_storage_numbers import _result

    engine = _engine(tmp_path, "off")
    engine.create_bucket("b", {})
    _write(engine, [1, 2, 3])
    engine.close()
    again = _engine(tmp_path)
    _write(again, [4])
    assert again.log_head("b", "e")[0] == 0  # waits for the digests
    _result(again.backfill())
    leaves = [_leaf(n, n, {"k": str(n)}) for n in range(1, 5)]
    assert again.log_head("b", "e") == (4, rfc9162.MTH(leaves))
    again.close()



def _in_thread(calls):
    from twisted.internet.defer import succeed

    def run(f, *args):
        calls.append(f.__name__)
        return succeed(f(*args))
    return run


def _numbers(page):
    return [(leaf.number, leaf.timestamp, stored) for leaf, stored in page.items]


def test_time_ordered_pages_walk_the_blocks_and_match_the_scan(engine):
    """orderBy[timestamp] of stored records: no scan (no thread), the blocks
    skipped by their counts; the same pages as the scan (a filter every record
    passes forces it), belated records, removals and time ranges included."""
    from reduct_twisted.storage.listing import Condition

    calls = []
    engine.run_in_thread = _in_thread(calls)
    _write(engine, range(100, 160))
    _write(engine, [5, 50, 99, 1000])  # belated: numbers 61-63; then 64
    engine.remove_stamps("b", "e", [101, 102, 50, 140])
    every = (Condition("k", "like", "%"),)
    for fields in ({}, {"descending": True}, {"start_ts": 60, "stop_ts": 130},
                   {"start_ts": 120, "descending": True}, {"stop_ts": 110}):
        for per_page in (1, 3, 100):
            for number in (1, 2, 5, 30):
                spec = ListingSpec(order_by="timestamp", per_page=per_page, page=number,
                                   **fields)
                del calls[:]
                fast = _page(engine, spec)
                assert calls == []
                scanned = _page(engine, ListingSpec(
                    order_by="timestamp", per_page=per_page, page=number, where=every,
                    **fields))
                assert "page_of" in calls
                assert _numbers(fast) == _numbers(scanned), spec
                assert (fast.total, fast.current_page, fast.last_page) == \
                    (scanned.total, scanned.current_page, scanned.last_page)
    page = _page(engine, ListingSpec(order_by="timestamp", per_page=4))
    assert _numbers(page) == [(61, 5, True), (63, 99, True), (1, 100, True), (4, 103, True)]


def _scan_entry(path):
    engine = _engine(path)
    engine.create_bucket("b", {"max_block_records": 4})
    _write(engine, range(1, 31), labels={"k": "x"})
    _write(engine, [31, 32])
    write_record(engine, "b", "e", 40, _data(7), CT, {"k": "x"})  # record 7's content
    engine.remove_stamps("b", "e", [3, 8, 20])
    return engine


def test_scans_go_in_slices_with_the_same_answers(tmp_path, monkeypatch):
    """A scan reads leaves a slice at a time in the thread pool and checks the
    slice's matches on the reactor between two reads; the digest index is fed
    a slice at a time too.  Slices of 3 give the answers of one slice."""
    from reduct_twisted.storage import log_api
    from reduct_twisted.storage.listing import Condition

    x = (Condition("k", "=", "x"),)
    specs = [ListingSpec(where=x, per_page=4, page=2),
             ListingSpec(where=x, include_removed=True, order_by="timestamp", descending=True,
                         per_page=5, page=3),
             ListingSpec(where=x, descending=True, per_page=5, start=20),
             ListingSpec(start_ts=5, stop_ts=25, per_page=7, start=9),
             ListingSpec(digest=hashlib.sha256(_data(7)).digest(), include_removed=True),
             ListingSpec(order_by="timestamp", include_removed=True, per_page=6, page=2)]
    whole, sliced = _scan_entry(tmp_path / "one"), _scan_entry(tmp_path / "three")
    calls = []
    whole.run_in_thread = _in_thread(calls)
    want = [_page(whole, spec) for spec in specs]
    # five scans, the digest index's catch-up and the digest's candidates
    assert calls.count("scan_leaves") == 7
    monkeypatch.setattr(log_api, "_SLICE", 3)
    del calls[:]
    sliced.run_in_thread = _in_thread(calls)
    got = [_page(sliced, spec) for spec in specs]
    assert calls.count("scan_leaves") == 5 * 11 + 11 + 1  # 33 leaves: 11 slices a scan
    for spec, a, b in zip(specs, want, got):
        assert _numbers(a) == _numbers(b), spec
        assert (a.total, a.current_page, a.last_page, a.next_start, a.previous_start) == \
            (b.total, b.current_page, b.last_page, b.next_start, b.previous_start), spec
    assert [n for n, _, _ in _numbers(got[4])] == [7, 33]
    assert _numbers(got[1])[0] == (21, 21, True)
    whole.close()
    sliced.close()


def test_a_label_scan_parses_only_the_leaves_holding_the_needle(tmp_path):
    """``scan_leaves`` with label conditions finds the leaves holding the
    condition's canonical bytes and parses those only; its answer is the one
    of parsing every leaf, for names and values JSON escapes, that hold
    quotes, braces, backslashes, non-ASCII text, or a top-level key's name."""
    import random

    from reduct_twisted.integrity.merkle import leaf_bytes
    from reduct_twisted.storage import log_api
    from reduct_twisted.storage.disk.treelog import TreeLog
    from reduct_twisted.storage.listing import Condition, matches

    rng = random.Random(7)
    names = ["cam", "camera", "number", "size", 'q"t', "b\\s", "é", "x}{y"]
    values = ["c1", "c10", "", '"', '\\"', "}{", "5", "é\n", "1e3", "-2"]
    leaves = []
    for n in range(1, 400):
        labels = {name: rng.choice(values) for name in rng.sample(names, rng.randrange(4))}
        leaves.append(leaf_bytes(n, 1000 + n, 3, "text/plain", labels,
                                 hashlib.sha256(b"%d" % n).digest()))
    tree = TreeLog.open(str(tmp_path), merkle=False)
    tree.append(leaves)
    tree.close()
    parsed = {n: log_api.parse_leaf(raw) for n, raw in enumerate(leaves, 1)}
    for _ in range(150):
        where = tuple(Condition(rng.choice(names), rng.choice(["=", "=", "!=", "like", "<"]),
                                rng.choice(values + ["%", "c_"]))
                      for _ in range(rng.randrange(1, 3)))
        spec = ListingSpec(where=where)
        assert log_api.needle(spec) is not None
        want = {n for n, leaf in parsed.items() if matches(leaf.labels, where)}
        first, last = rng.randrange(1, 50), rng.choice([0, 300])
        got = log_api.scan_leaves(str(tmp_path), len(leaves), spec, first=first, last=last)
        assert set(got) == {n for n in want if first <= n <= (last or len(leaves))}, where
        assert all(got[n] == parsed[n] for n in got)
    whole = log_api.scan_leaves(str(tmp_path), len(leaves), ListingSpec(
        where=(Condition("cam", "=", "c1"),)))
    assert set(whole) == {n for n, leaf in parsed.items() if leaf.labels.get("cam") == "c1"}
    assert log_api.needle(ListingSpec(where=(Condition("cam", "=", "\ud800"),))) is None
    assert log_api.needle(ListingSpec(where=(Condition("cam", "like", "c%"),
                                             Condition("é", "=", '"')))) == \
        '"é":"\\""'.encode()


def test_scans_take_the_entrys_word_over_the_removed_set(engine, monkeypatch):
    """A scan places its matches by the removed set and checks its page against
    the entry; when the set is wrong (it lost lines, or holds a number whose
    removal never happened: a crash between the two), every match is checked
    against the entry and the answer is the truth.  Gap leaves (numbers no
    record got) are never listed by a scan."""
    from reduct_twisted.storage.disk.removedset import RemovedSet
    from reduct_twisted.storage.listing import Condition

    calls = []
    engine.run_in_thread = _in_thread(calls)
    _write(engine, range(1, 11))
    series = _series(engine)
    series.numbers.next += 2  # numbers 11 and 12 never given: gap leaves
    _write(engine, range(11, 16))  # numbers 13 … 17
    engine.remove_stamps("b", "e", [2])
    gone = {2, 11, 12}
    # A filtered scan never lists a skipped number (it has no timestamp).
    every = [(n, n not in gone) for n in range(1, 18) if n not in (11, 12)]
    spec = ListingSpec(stop_ts=100, include_removed=True)
    assert [(l.number, k) for l, k in _page(engine, spec).items] == every
    log = series._log
    log._removed = RemovedSet(log._removed.path)  # in memory only: forgets 2 …
    log._removed.add([3])  # … and holds 3, still stored
    assert list(log.removed()._firsts) == [3]
    del calls[:]
    page = _page(engine, spec)
    assert [(l.number, k) for l, k in page.items] == every and page.total == 15
    assert "_idle" not in calls  # 17 matches: one slice
    labelled = ListingSpec(where=(Condition("k", "like", "%"),), per_page=5)
    page = _page(engine, labelled)
    assert [(l.number, k) for l, k in page.items] == [(1, True), (3, True), (4, True),
                                                     (5, True), (6, True)]
    assert (page.total, page.next_start) == (14, 7)
    right = ListingSpec(where=(Condition("k", "like", "%"),), per_page=5, start=7)
    assert [l.number for l, _ in _page(engine, right).items] == [7, 8, 9, 10, 13]
    from reduct_twisted.storage import log_api

    monkeypatch.setattr(log_api, "_SLICE", 3)
    del calls[:]
    page = _page(engine, spec)
    assert [(l.number, k) for l, k in page.items] == every and page.total == 15
    assert calls.count("_idle") == 4  # 15 matches checked 3 at a time


def test_a_sparse_scanned_page_loads_a_few_tables_between_turns_of_the_reactor(engine):
    """Each item of a scanned page is checked against the entry; items in as
    many blocks load as many tables: four at most between two turns of the
    reactor, loaded as a scan's (the cached tables stay)."""
    from reduct_twisted.storage.listing import Condition

    for ts in range(1, 41):
        _write(engine, [ts], labels={"k": "s" if ts % 4 == 1 else "d"})
    series = _series(engine)
    tables = engine._context.tables
    for block in series.blocks:
        tables.discard(block)
    tables.use(series.blocks[0])
    calls = []
    engine.run_in_thread = _in_thread(calls)
    page = _page(engine, ListingSpec(where=(Condition("k", "=", "s"),)))
    assert [leaf.number for leaf, _ in page.items] == list(range(1, 41, 4))
    assert calls.count("_idle") == 2  # 9 tables loaded (the first was cached): 4, 4, 1
    assert [b for b in series.blocks if b in tables._items] == [series.blocks[0]]
