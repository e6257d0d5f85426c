"""
A run of small records allocated at once (storage/runalloc.py, through
``engine.upload_run``): the same records, blocks, summaries, statistics,
errors and files as ``engine.upload`` one record at a time, in every case
the fast path does not cover too (a new entry, a block boundary, a
duplicate, a belated timestamp, quotas, an attachment entry).
"""

import hashlib
import os

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import ReductError
from reduct_twisted.storage import StorageEngine, runalloc

CT = "application/octet-stream"


def _engine(path, settings):
    engine = StorageEngine(str(path), Clock())
    engine.set_integrity("log")
    engine.open()
    engine.create_bucket("b", settings)
    return engine


def _data(ts):
    return b"%d" % ts * (1 + ts % 7)


def _specs(stamps, labels=None):
    return [(ts, len(_data(ts)), CT, dict(labels or {"k": str(ts % 3)})) for ts in stamps]


def _one_by_one(engine, entry, specs, digests):
    failed, out = [], []
    for (ts, length, ct, labels), digest in zip(specs, digests):
        try:
            w = engine.upload("b", entry, ts, length, ct, labels, digest=digest, failed=failed.append)
        except ReductError as exc:
            out.append(exc)
            continue
        out.append(w)
    return out, failed


def _as_run(engine, entry, specs, digests):
    failed = []
    out = engine.upload_run("b", entry, specs, digests, [failed.append] * len(specs))
    return out, failed


def _finish(engine, out):
    answers = []
    for w, ts in out:
        if isinstance(w, ReductError):
            answers.append((ts, w.status, w.message))
            continue
        w.write(_data(ts))
        try:
            w.commit()
            answers.append((ts, 200, ""))
        except ReductError as exc:
            answers.append((ts, exc.status, exc.message))
    engine.flush_writes()
    return answers


def _read(path):
    if not os.path.exists(path):
        return b""
    with open(path, "rb") as f:
        return f.read()


def _state(engine, entry):
    series = engine._bucket("b").entry(entry)
    blocks = []
    for block in series.blocks:
        blocks.append((block.block_id, block.record_count, block.data_size, block.meta_size,
                       block.first_ts, block.latest_ts, block.tail, block.shared_live,
                       block.started, block.top_number, block.table_bytes, list(block.order),
                       _read(block.meta_path), _read(block.shared_path)))
    return (series.size, series.record_count, blocks, engine._context.usage.stored,
            engine.log_head("b", entry))


CASES = {
    "new entry, one block": ([], list(range(100, 140))),
    "across block boundaries": (list(range(10, 13)), list(range(20, 47))),
    "duplicate and belated": (list(range(10, 30, 2)), [40, 41, 41, 42, 15, 43, 12, 44]),
    "before the first block": (list(range(50, 60)), [5, 6, 61, 62]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("settings", [{"max_block_records": 8}, {"max_block_size": 200},
                                      {"quota_type": "FIFO", "quota_size": 600,
                                       "max_block_records": 6}])
def test_a_run_allocates_exactly_what_one_by_one_does(tmp_path, case, settings):
    before, stamps = CASES[case]
    digests = [hashlib.sha256(_data(ts)).digest() if ts % 5 else None for ts in stamps]
    digests[len(digests) // 2] = b"\x00" * 32 if len(digests) > 3 else None  # one mismatch
    results = []
    for how, allocate in (("one", _one_by_one), ("run", _as_run)):
        engine = _engine(tmp_path / how, settings)
        for ts in before:
            w = engine.upload("b", "e", ts, len(_data(ts)), CT, {}, failed=print)
            w.write(_data(ts))
            w.commit()
        engine.flush_writes()
        out, failed = allocate(engine, "e", _specs(stamps), digests)
        results.append((_finish(engine, list(zip(out, stamps))), failed, _state(engine, "e")))
        engine.close()
    assert results[0] == results[1]
    assert any(status == 200 for _, status, _ in results[0][0])


def test_the_fast_path_is_taken(tmp_path, monkeypatch):
    """Past the first record of a new entry, a run of one block is one reserve_in_last."""
    engine = _engine(tmp_path / "d", {})
    calls = []
    real = runalloc.reserve_in_last

    def spy(*args):
        records = real(*args)
        calls.append(len(records))
        return records

    monkeypatch.setattr(runalloc, "reserve_in_last", spy)
    stamps = list(range(1000, 1080))
    out, _ = _as_run(engine, "e", _specs(stamps), [None] * 80)
    assert calls == [79]  # the first record made the entry and its block
    assert _finish(engine, list(zip(out, stamps))) == [(ts, 200, "") for ts in stamps]
    engine.close()


@pytest.mark.parametrize("settings, refused", [
    ({"quota_type": "HARD", "quota_size": 300}, 400),
    ({"quota_type": "FIFO", "quota_size": 10}, 500),
])
def test_refusals_for_the_run_fall_back_to_each_record(tmp_path, settings, refused):
    stamps = list(range(1, 40))
    results = []
    for how, allocate in (("one", _one_by_one), ("run", _as_run)):
        engine = _engine(tmp_path / how, settings)
        out, _ = allocate(engine, "e", _specs(stamps), [None] * len(stamps))
        results.append(_finish(engine, list(zip(out, stamps))))
        engine.close()
    assert results[0] == results[1]
    assert any(status == refused for _, status, _ in results[0])


def test_attachments_and_a_missing_bucket(tmp_path):
    engine = _engine(tmp_path / "d", {})
    w = engine.upload("b", "e", 1, 1, CT, {}, failed=print)
    w.write(b"x")
    w.commit()
    specs = [(1, 2, "application/json", {"key": "a"}), (2, 2, "application/json", {"key": "b"})]
    out = engine.upload_run("b", "e/$meta", specs, [None, None], [print, print])
    assert [type(w).__name__ for w in out] == ["RecordWriter", "RecordWriter"]
    for w in out:
        w.abort()
    with pytest.raises(ReductError) as exc:
        engine.upload_run("nope", "e", specs, [None, None], [print, print])
    assert exc.value.status == 404
    engine.close()


def test_encode_records_is_encode_record_of_each():
    """The .meta lines of a run made from templates are byte for byte encode_record's."""
    import random

    from reduct_twisted.storage.disk.blockfile import encode_record
    from reduct_twisted.storage.disk.runlines import encode_records
    from reduct_twisted.storage.records import Record

    rng = random.Random(7)
    for _ in range(20):
        pairs = []
        for i in range(200):
            labels = rng.choice([{}, {"a": "1"}, {"a%": 'x"y\n'}, {"é": "ü\u2028", "k": "%d"},
                                 {"bench": "1", "sensor": "s1"}])
            record = Record(1765000000000000 + i, rng.choice(["1.blk", "2%.blk"]), i * 100, 100,
                            rng.choice([CT, "text/%s", 'a"b']), dict(labels), "finished",
                            rng.choice([None, 5, 0]), rng.choice([None, None, 7]),
                            rng.choice([None, i + 1, i + 1]),
                            rng.choice([None, hashlib.sha256(b"%d" % i).digest()]))
            pairs.append((record, rng.choice([100, 99])))
        assert encode_records(pairs) == b"".join(encode_record(r, size) for r, size in pairs)


def test_a_bucket_size_is_the_sum_of_its_entries_through_every_change(tmp_path):
    """Bucket.size is a running sum (entry.Tally) kept by every entry's size changes,
    not a walk over the entries; it stays their sum through writes, runs, FIFO
    eviction, removals, renames, nested and dropped entries, and a reopen."""
    from reduct_twisted.storage import PENDING

    path = tmp_path / "d"
    engine = _engine(path, {"quota_type": "FIFO", "quota_size": 4000, "max_block_records": 4})

    def check():
        owner = engine._bucket("b")
        assert owner.size == sum(e.size for e in owner.entries.values())
        assert engine._context.usage.stored == sum(b.size for b in engine._buckets.values())

    for round_ in range(6):
        for name in ("a", "a/b", "c"):
            stamps = list(range(100 * round_, 100 * round_ + 7))
            out, _ = _as_run(engine, name, _specs(stamps), [None] * 7)
            _finish(engine, list(zip(out, stamps)))
            check()
    removal = engine.remove_records("b", "c", start=0, stop=350)
    while removal.step() is PENDING:
        pass
    check()
    engine.rename_entry("b", "a/b", "a/z")
    check()
    engine.remove_entry("b", "c")
    check()
    with pytest.raises(ReductError):  # a refused write into a new entry leaves nothing
        engine.upload("b", "new", 1, 10 ** 9, CT, {}, failed=print)
    check()
    size = engine._bucket("b").size
    engine.close()
    engine = StorageEngine(str(path), Clock())
    engine.open()
    assert engine._bucket("b").size == size
    check()
    engine.close()


def test_a_runs_metadata_size_is_record_meta_size_of_each(tmp_path):
    """The run's metadata size (the labels' share taken once for alike
    records) adds up to ``blockfile.record_meta_size`` of every record:
    whole seconds, offsets from 0, label sets and content types that change
    part way, text beyond ASCII."""
    from reduct_twisted.storage.disk.blockfile import record_meta_size
    engine = _engine(tmp_path, {"max_block_records": 1000})
    first = 1_700_000_000_000_000  # a whole second: no nanoseconds field
    write = engine.upload("b", "e", first, 0, "", {}, failed=print)  # empty: offset 0 stays
    write.commit()
    engine.flush_writes()
    kinds = [("", {}), (CT, {}), (CT, {"a": "1"}), (CT, {"a": "1"}), ("tëxt/日本", {"é": "x" * 200}),
             (CT, {"a": "1", "b": ""}), (CT, {"a": "1"})]
    specs = [(first + 1 + i * 999_999, 1 + i % 3, *kinds[i % len(kinds)]) for i in range(60)]
    out = engine.upload_run("b", "e", [(ts, n, ct, dict(lb)) for ts, n, ct, lb in specs],
                            [None] * len(specs), [print] * len(specs))
    for w, (ts, n, _, _) in zip(out, specs):
        w.write(b"x" * n)
        w.commit()
    engine.flush_writes()
    [block] = engine._bucket("b").entry("e").blocks
    block.load()
    expected = sum(record_meta_size(r.ts, r.offset, r.offset + r.size, r.content_type, r.labels)
                   for r in block.table.values())
    assert block.meta_size == expected and block.record_count == 61
