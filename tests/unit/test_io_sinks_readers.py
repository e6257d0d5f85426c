"""
The I/O API's write sink and batched reader without sockets, over a real
engine: records of several entries cut from arbitrary chunks with errors
keyed by (index, delta), and v2 batches that close before an entry comes
back (spec 1.20 §1.9 rule 2), within the v1 limits.
"""

import random

from reduct_twisted.http.batch import BatchLimits, BatchWriteSink
from reduct_twisted.http.io_read import IoBatchReader
from reduct_twisted.storage.testing import read_content, write_record
from reduct_twisted.wire.v2 import parse_request
from tests.unit.test_sinks import ImmediateReactor, ManualPool, Transport, results


def plan(headers: dict):
    return parse_request([(k.encode(), [v.encode()]) for k, v in headers.items()])


def test_sink_cuts_records_of_several_entries(engine):
    engine.create_bucket("b", None)
    write_record(engine, "b", "e1", 1000, b"old")
    request = plan({"x-reduct-entries": "e0,e1,bad name", "x-reduct-start-ts": "1000",
                    "x-reduct-0-10": "2,t", "x-reduct-0-11": "1,t", "x-reduct-1-0": "3,u",
                    "x-reduct-2-0": "4,u", "x-reduct-1-5": "0,v"})
    sink = BatchWriteSink(engine, ImmediateReactor(), ManualPool(), Transport(), "b", None,
                          request.records, key=lambda r: (r.index, r.delta))
    body = b"AAB" + b"DUP" + b"" + b"XXXX"
    rng = random.Random(3)
    pos = 0
    while pos < len(body):
        step = rng.randint(1, 3)
        sink.write(body[pos:pos + step])
        pos += step
    errors = results(sink.finish())
    assert {key: err.status for key, err in errors.items()} == {(1, 0): 409, (2, 0): 422}
    for entry, ts, data in (("e0", 1010, b"AA"), ("e0", 1011, b"B"), ("e1", 1005, b""),
                            ("e1", 1000, b"old")):
        assert read_content(engine.read("b", entry, ts)) == data


def reader(engine, qid, **limits):
    return IoBatchReader(engine, "b", qid, False, BatchLimits(**limits))


def test_reader_closes_before_an_entry_comes_back(engine):
    engine.create_bucket("b", None)
    for ts, entry in enumerate(["a", "a", "b", "c", "c", "a", "b"], start=1):
        write_record(engine, "b", entry, ts, entry.encode() * 2, labels={"k": entry})
    qid = engine.create_multi_query("b", None)
    batches = []
    while True:
        r = reader(engine, qid)
        assert r.step() is r
        batches.append([(engine_name, ts) for engine_name, ts in _pairs(r)])
        r.close()
        if r.last:
            break
    assert batches == [[("a", 1), ("a", 2), ("b", 3), ("c", 4), ("c", 5)], [("a", 6), ("b", 7)]]


def _pairs(r):
    headers = dict(r.encoder.headers())
    names = headers[b"x-reduct-entries"].decode().split(",")
    start = int(headers[b"x-reduct-start-ts"])
    out = []
    for name, _ in r.headers:
        index, delta = name.decode()[len("x-reduct-"):].split("-")
        out.append((names[int(index)], start + int(delta)))
    return out


def test_reader_limits_and_metadata(engine):
    engine.create_bucket("b", None)
    for ts in range(1, 11):
        write_record(engine, "b", "a", ts, b"xyz", labels={"i": str(ts)})
    qid = engine.create_multi_query("b", ["a"])
    r = reader(engine, qid, max_records=4)
    assert r.step() is r and len(r.headers) == 4 and r.size == 12 and r.last is False
    assert r.headers[0] == (b"x-reduct-0-0", b"3,application/octet-stream,0=1")
    assert r.headers[1] == (b"x-reduct-0-1", b"3,,0=2")
    assert r.metadata == sum(len(n) + len(v) + 2 for n, v in r.headers)
    assert [rng[1:] for rng in r._reader.ranges] == [(0, 12)]
    r.close()
    tail = reader(engine, qid)
    assert tail.step() is tail and len(tail.headers) == 6 and tail.last is True
    tail.close()
