"""
Pending leaves kept as they came (storage/entry_pending.py): a write run's
records wait as the ``.meta`` lines it appended, decoded only when the
daemon makes their leaves itself; the worker gets the lines undecoded.
Either way the log on disk is the one made from the records' fields.
"""

import hashlib
import random
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.disk.blockfile import encode_record
from reduct_twisted.storage.entry_leaves import record_fields
from reduct_twisted.storage.entry_log import BATCH
from reduct_twisted.storage.entry_pending import PendingLeaves, line_rows
from reduct_twisted.storage.records import Record
from tests import rfc9162
from tests.unit.test_entry_log_offload import Worker

CT = "application/octet-stream"

RECORDS = [
    Record(1, "1.dat", 0, 10, "text/plain", {"a": "1", "\u00e9": "x,y"}, number=1,
           digest=hashlib.sha256(b"1").digest(), crc=5),
    Record(2 ** 53 + 5, "9.dat", 10, 0, "a\u20ac", {}, number=2),  # no digest, a huge timestamp
    Record(3, "1.dat", 10, 7, "", {'"q"': "\U0001F600"}, number=3, digest=bytes(32)),
]


def test_lines_give_back_the_fields_a_record_has():
    lines = b"".join(encode_record(r, r.size) for r in RECORDS)
    assert line_rows(lines) == {r.number: record_fields(r) for r in RECORDS}


@pytest.mark.parametrize("line", [
    b'{"k":"h","format":"x"}\n',                                    # a header
    b'{"k":"r","ts":1,"seg":"1.dat","off":0,"size":1,"ct":"","labels":[]}\n',  # no number
    b'not json\n',
])
def test_a_line_that_is_not_a_numbered_record_is_refused(line):
    with pytest.raises((ValueError, KeyError)):
        line_rows(line)


def test_pending_reads_like_a_dict_of_rows():
    pending = PendingLeaves()
    pending.add(record_fields(RECORDS[0]))
    pending.add_lines([2, 3], b"".join(encode_record(r, r.size) for r in RECORDS[1:]))
    assert len(pending) == 3 and 2 in pending and 4 not in pending and sorted(pending) == [1, 2, 3]
    assert pending[3] == pending.get(3) == record_fields(RECORDS[2])
    assert pending.get(4, "none") == "none"
    parts = pending.parts(1, 3)
    assert parts[0] == record_fields(RECORDS[0]) and len(parts) == 2 and type(parts[1]) is bytes
    pending.drop(1, 2)
    assert list(pending) == [3] and pending[3][0] == 3
    pending.clear()
    assert not pending


@pytest.fixture
def engine(tmp_path):
    engine = StorageEngine(str(tmp_path / "d"), Clock())
    engine.set_integrity("log")
    engine.open()
    engine.create_bucket("b", {"max_block_records": 50})
    yield engine
    engine.close()


def _batch(engine, stamps, failed):
    for ts in stamps:
        writer = engine.upload("b", "e", ts, len(b"c%d" % ts), CT, {"k": str(ts)}, failed=failed.append)
        writer.write(b"c%d" % ts)
        writer.commit()
    engine.flush_writes()


def _leaves(stamps_in_order):
    return [rfc9162.leaf(n, ts, len(b"c%d" % ts), CT, {"k": str(ts)}, hashlib.sha256(b"c%d" % ts).digest())
            for n, ts in enumerate(stamps_in_order, 1)]


def _belated_runs():
    # Runs of 40, the second half of each run belated (older blocks): lines of
    # one run come in several blocks whose numbers interleave.
    runs, top = [], 10_000
    for i in range(-(-BATCH // 40) + 1):  # enough to fill a batch, and one run more
        runs.append(list(range(top, top + 20)) + list(range(100 * i + 1, 100 * i + 21)))
        top += 20
    return runs


@pytest.mark.parametrize("with_worker", [False, True])
def test_runs_log_the_leaves_of_their_records_in_number_order(engine, with_worker):
    """Write runs spread over blocks (belated records in older ones): the log holds
    each record's leaf at its number, made from the lines by the daemon or the worker."""
    worker = Worker()
    if with_worker:
        engine.set_leaf_worker(worker.submit)
    failed, order, answered = [], [], 0
    for run in _belated_runs():
        _batch(engine, run, failed)
        order += run
        log = engine._bucket("b").entry("e")._log
        assert all(type(part) is not tuple for part in log.pending._parts)  # lines, not rows
        while worker.jobs:
            worker.answer()
            answered += 1
    assert not failed and len(order) > BATCH
    log = engine._bucket("b").entry("e")._log
    # the run that made BATCH pending sent them all; the last one's wait
    assert log.tree.size == len(order) - 40 >= BATCH and len(log.pending) == 40
    assert answered == (1 if with_worker else 0)
    log.flush()
    assert log.tree.leaves(1, len(order)) == _leaves(order)
    assert log.tree.root() == rfc9162.MTH(_leaves(order))
    assert Path(log.tree.path("leaves")).stat().st_size == sum(map(len, _leaves(order)))


def test_covers_parts_and_drop_with_and_without_other_numbers_pending():
    pending = PendingLeaves()
    lines = b"".join(encode_record(r, r.size) for r in RECORDS[1:])  # numbers 2, 3
    pending.add(record_fields(RECORDS[0]))
    pending.add_lines([2, 3], lines)
    assert pending.covers(1, 3) and pending.covers(2, 3) and pending.covers(1, 1)
    assert not pending.covers(1, 4) and not pending.covers(0, 3)
    assert pending.parts(1, 3) == [record_fields(RECORDS[0]), lines]  # all of them, each once
    assert pending.parts(2, 3) == [lines]                              # others pending too
    pending.add((7,) + record_fields(RECORDS[0])[1:])
    assert not pending.covers(1, 7) and pending.covers(1, 3)
    pending.drop(1, 3)
    assert list(pending) == [7]
    pending.drop(7, 7)
    assert not pending and not pending.covers(1, 1)


def _model_parts(model: dict, first: int, last: int) -> set:
    return {id(model[n]) for n in range(first, last + 1) if n in model}


def test_pending_runs_answer_like_a_dict_in_random_use():
    """Random adds (rows, and lines of numbers consecutive or not, in any order, some
    added again), drops, covers, parts and reads against a plain dict of number -> part."""
    rng = random.Random(16)
    for _ in range(60):
        pending, model, top = PendingLeaves(), {}, 0
        for _ in range(rng.randrange(1, 60)):
            op = rng.random()
            if op < 0.3:
                n = rng.randrange(1, top + 5) if rng.random() < 0.3 else top + rng.randrange(1, 3)
                row = (n, n, 1, CT, {}, None)
                pending.add(row)
                model[n] = row
            elif op < 0.6:
                start = rng.randrange(1, top + 5) if rng.random() < 0.3 else top + rng.randrange(1, 3)
                numbers = list(range(start, start + rng.randrange(1, 30)))
                if rng.random() < 0.3:  # gaps (a run's records in several blocks)
                    numbers = [n for n in numbers if rng.random() < 0.6] or [start]
                rng.shuffle(numbers)
                records = [Record(n, "1.dat", 0, 1, CT, {}, number=n) for n in sorted(numbers)]
                lines = b"".join(encode_record(r, 1) for r in records)
                pending.add_lines(numbers, lines)
                for n in numbers:
                    model[n] = lines
            elif op < 0.8 and model:
                a = rng.randrange(0, max(model) + 2)
                b = a + rng.randrange(0, 40)
                pending.drop(a, b)
                for n in range(a, b + 1):
                    model.pop(n, None)
            elif op < 0.9:
                pending.clear()
                model.clear()
            top = max([top, *model])
            assert len(pending) == len(model) and bool(pending) == bool(model)
            assert list(pending) == sorted(model)
            if model:
                assert pending.lowest() == min(model)
            for n in range(0, top + 3):
                assert (n in pending) == (n in model)
                if n in model:
                    want = model[n] if type(model[n]) is tuple else line_rows(model[n])[n]
                    assert pending[n] == pending.get(n) == want
                else:
                    assert pending.get(n, "none") == "none"
                    with pytest.raises(KeyError):
                        pending[n]
            for _ in range(10):
                a = rng.randrange(0, top + 3)
                b = a + rng.randrange(0, 30)
                whole = all(n in model for n in range(a, b + 1))
                assert pending.covers(a, b) == whole
                if whole:
                    got = pending.parts(a, b)
                    assert len(got) == len({id(p) for p in got})  # each once
                    assert {id(p) for p in got} == _model_parts(model, a, b)
