"""
Multi-entry queries (spec 1.20 §1.4, §1.5): entry selection, the k-way
merge by (timestamp, entry name), per-entry options, ids apart from v1's,
TTL and expiry, held records, REMOVE across entries.
"""

import pytest

from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.block import Block

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.storage import PENDING
from reduct_twisted.storage.multi import HELD, select_entries
from reduct_twisted.storage.testing import read_content, write_record


def drain(engine, bucket, qid, accept=None, budget=2000):
    out = []
    while True:
        result = engine.multi_next(bucket, qid, budget, accept)
        if result is PENDING:
            continue
        if result is None or result is HELD:
            return out
        name, view = result
        out.append((name, view.record.ts, read_content(view)))


@pytest.fixture
def filled(engine):
    engine.create_bucket("b", {"max_block_records": 3})
    for name, stamps in (("cam-1", [1, 4, 7, 10]), ("cam-2", [2, 4, 8]), ("log", [3, 9]),
                         ("other", [5])):
        for ts in stamps:
            write_record(engine, "b", name, ts, f"{name}@{ts}".encode(), labels={"n": str(ts)})
    return engine


def test_merge_by_time_then_name(filled):
    qid = filled.create_multi_query("b", ["cam-2", "cam-1", "log", "missing"])
    got = drain(filled, "b", qid)
    assert [(n, ts) for n, ts, _ in got] == [
        ("cam-1", 1), ("cam-2", 2), ("log", 3), ("cam-1", 4), ("cam-2", 4), ("cam-1", 7),
        ("cam-2", 8), ("log", 9), ("cam-1", 10)]
    assert all(data == f"{n}@{ts}".encode() for n, ts, data in got)
    # the end was delivered: the query is gone
    with pytest.raises(NotFound):
        filled.multi_next("b", qid)


def test_merge_with_a_small_budget_is_the_same(filled):
    qid = filled.create_multi_query("b", None)
    first = [(n, ts) for n, ts, _ in drain(filled, "b", qid, budget=1)]
    qid = filled.create_multi_query("b", None)
    second = [(n, ts) for n, ts, _ in drain(filled, "b", qid)]
    assert first == second and len(first) == 10


@pytest.mark.parametrize("patterns, expected", [
    (None, ["cam-1", "cam-2", "log", "other"]),
    (["*"], ["cam-1", "cam-2", "log", "other"]),
    (["cam*"], ["cam-1", "cam-2"]),
    (["cam-1", "lo*"], ["cam-1", "log"]),
    (["nothing"], []),
    ([], []),
])
def test_selection(filled, patterns, expected):
    bucket = filled._bucket("b")
    assert [e.name for e in select_entries(bucket, patterns)] == expected


def test_meta_entries_only_by_exact_name(engine):
    engine.create_bucket("b", None)
    bucket = engine._bucket("b")
    for name in ("a", "$meta"):
        bucket.entry_for_write(name)
    assert [e.name for e in select_entries(bucket, None)] == ["a"]
    assert [e.name for e in select_entries(bucket, ["*"])] == ["a"]
    assert [e.name for e in select_entries(bucket, ["$*"])] == []
    assert [e.name for e in select_entries(bucket, ["$meta"])] == ["$meta"]
    assert [e.name for e in select_entries(bucket, ["$meta"], remove=True)] == []


def test_options_act_per_entry(filled):
    qid = filled.create_multi_query("b", ["cam*"], limit=2)
    assert [(n, ts) for n, ts, _ in drain(filled, "b", qid)] == [
        ("cam-1", 1), ("cam-2", 2), ("cam-1", 4), ("cam-2", 4)]
    qid = filled.create_multi_query("b", ["cam*"], when={"$limit": 1})
    assert [(n, ts) for n, ts, _ in drain(filled, "b", qid)] == [("cam-1", 1), ("cam-2", 2)]
    qid = filled.create_multi_query("b", None, start=4, stop=9, include={"n": "4"})
    assert [(n, ts) for n, ts, _ in drain(filled, "b", qid)] == [("cam-1", 4), ("cam-2", 4)]


def test_start_after_an_entrys_end_skips_it(filled):
    qid = filled.create_multi_query("b", None, start=6)
    assert [(n, ts) for n, ts, _ in drain(filled, "b", qid)] == [
        ("cam-1", 7), ("cam-2", 8), ("log", 9), ("cam-1", 10)]
    with pytest.raises(UnprocessableEntity):
        filled.create_multi_query("b", None, start=6, stop=5)
    with pytest.raises(UnprocessableEntity):
        filled.create_multi_query("b", ["nothing"], start=6, stop=5)
    with pytest.raises(UnprocessableEntity) as info:
        filled.create_multi_query("b", ["nothing"], ext={"x": {}})
    assert info.value.message.startswith("Unknown extension 'x' in query id=")


def test_ids_apart_from_v1(filled):
    v1 = filled.create_query("b", "cam-1")
    v2 = filled.create_multi_query("b", ["cam-1"])
    assert v2 == v1 + 1
    with pytest.raises(NotFound):
        filled.query_next("b", "cam-1", v2)
    with pytest.raises(NotFound):
        filled.multi_next("b", v1)
    assert filled.multi_options("b", v1) is None
    assert filled.multi_options("b", v2) == {"only_metadata": False, "io": None,
                                             "continuous": False}


def test_ttl_and_expiry(filled, clock):
    qid = filled.create_multi_query("b", None, ttl=5)
    clock.advance(4)
    assert filled.multi_next("b", qid)[0] == "cam-1"
    clock.advance(4)
    assert filled.expire_queries() == 0
    clock.advance(1)
    assert filled.expire_queries() == 1
    with pytest.raises(NotFound):
        filled.multi_next("b", qid)


def test_held_record_stays_next(filled):
    qid = filled.create_multi_query("b", ["cam*"])
    assert filled.multi_next("b", qid, accept=lambda name: name == "cam-1")[0] == "cam-1"
    assert filled.multi_next("b", qid, accept=lambda name: name == "cam-1") is HELD
    name, view = filled.multi_next("b", qid)
    assert (name, view.record.ts) == ("cam-2", 2)


def test_continuous_waits_for_new_records(filled):
    qid = filled.create_multi_query("b", ["cam-1", "log"], start=10, continuous=True)
    assert [(n, ts) for n, ts, _ in drain(filled, "b", qid)] == [("cam-1", 10)]
    assert filled.multi_next("b", qid) is None  # still there
    write_record(filled, "b", "log", 20, b"x")
    write_record(filled, "b", "cam-1", 21, b"y")
    assert [(n, ts) for n, ts, _ in drain(filled, "b", qid)] == [("log", 20), ("cam-1", 21)]


def test_removed_entry_ends_its_part(filled):
    qid = filled.create_multi_query("b", ["cam*"])
    filled.remove_entry("b", "cam-2")
    assert [n for n, _, _ in drain(filled, "b", qid)] == ["cam-1"] * 4


def test_renamed_entry_ends_its_part(filled):
    qid = filled.create_multi_query("b", ["cam*"])
    filled.rename_entry("b", "cam-2", "moved")
    assert [n for n, _, _ in drain(filled, "b", qid)] == ["cam-1"] * 4


def test_removed_bucket(filled):
    qid = filled.create_multi_query("b", None)
    filled.remove_bucket("b")
    with pytest.raises(NotFound):
        filled.multi_next("b", qid)
    assert filled.expire_queries() == 1


def test_strict_error_sticks(filled):
    qid = filled.create_multi_query("b", ["cam-1"], when={"&missing": {"$eq": 1}}, strict=True)
    with pytest.raises(Exception) as first:
        filled.multi_next("b", qid)
    with pytest.raises(Exception) as again:
        filled.multi_next("b", qid)
    assert again.value is first.value


def test_select_labels(filled):
    qid = filled.create_multi_query("b", ["log"], when={"#select_labels": ["none"]})
    name, view = filled.multi_next("b", qid)
    assert view.record.labels == {}


def test_remove_across_entries(filled):
    removal = filled.remove_multi("b", ["cam*"], start=0, stop=5)
    count = removal.step()
    while count is PENDING:
        count = removal.step()
    assert count == 4
    qid = filled.create_multi_query("b", None)
    assert [(n, ts) for n, ts, _ in drain(filled, "b", qid)] == [
        ("log", 3), ("other", 5), ("cam-1", 7), ("cam-2", 8), ("log", 9), ("cam-1", 10)]
    with pytest.raises(NotFound):
        filled.remove_multi("nope", None)


def test_a_cold_merge_loads_each_block_once(tmp_path, clock, monkeypatch):
    """
    The merge scans one block of each entry in turn: the table cache keeps
    two scanned tables per entry meanwhile (the current one and the one just
    left), so no table is loaded twice.
    """
    engine = StorageEngine(str(tmp_path / "data"), clock)
    engine.open()
    engine.create_bucket("b", {"max_block_records": 10})
    for ts in range(400):  # 4 entries taking turns in runs of 5: 10 blocks each
        write_record(engine, "b", f"e{(ts // 5) % 4}", ts, b"x")
    engine.close()
    engine = StorageEngine(str(tmp_path / "data"), clock)
    engine.open()
    loads = []
    original = Block.load
    monkeypatch.setattr(Block, "load", lambda self: (loads.append(self), original(self))[1])
    qid = engine.create_multi_query("b", None)
    got = drain(engine, "b", qid)
    assert [ts for _, ts, _ in got] == list(range(400))
    assert len(loads) == len(set(loads)) == 40
    # and scans keep one table again afterwards
    assert engine._context.tables.scan_capacity == 1
    engine.close()
