"""
Batched reads a batch at a time: ``engine.query_take`` / ``multi_take``
(``Query.take`` walks a block's sorted timestamps in one pass), the cached
record header values (``wire.record_header_value``) and the raw setting of
a batch's record headers (``http.batch_limits.set_raw_headers``).
"""

import pytest
from twisted.web.http_headers import Headers

from reduct_twisted.errors import InternalError, NotFound
from reduct_twisted.http.batch import BatchReader
from reduct_twisted.http.batch_limits import BatchLimits, set_raw_headers
from reduct_twisted.storage import FULL, PENDING, SMALL_RECORD_MAX
from reduct_twisted.storage.multi import HELD
from reduct_twisted.storage.testing import write_content, write_record
from reduct_twisted.wire import format_record_header, record_header_value


@pytest.fixture
def engine(engine):
    """The shared engine with bucket ``b`` holding three records per block."""
    engine.create_bucket("b", {"max_block_records": 3})
    return engine


def _fill(engine, stamps, entry="e", labels=None):
    for ts in stamps:
        write_record(engine, "b", entry, ts, b"<%d>" % ts, labels=(labels or (lambda t: {}))(ts))


class Batch:
    """A ``visit`` that keeps what it sees and says "full" after ``size`` records."""

    def __init__(self, size=10**9):
        self.size, self.seen = size, []

    def __call__(self, *fields):
        self.seen.append(fields)
        return len(self.seen) % self.size == 0

    @property
    def stamps(self):
        return [fields[-4] for fields in self.seen]


def _take_all(engine, qid, budget=2000):
    """Take every record of ``qid``; :return: the timestamps and the results of each take."""
    batch, results = Batch(), []
    while True:
        result = engine.query_take("b", "e", qid, batch, budget=budget)
        results.append(result)
        if result is None:
            return batch.stamps, results


def _next_all(engine, qid):
    found = []
    while (view := engine.query_next("b", "e", qid)) is not None:
        if view is not PENDING:
            found.append((view.record.ts, view.record.size, view.record.content_type,
                          view.record.labels))
    return found


def test_a_batch_ends_mid_block_and_the_next_goes_on_there(engine):
    _fill(engine, range(1, 8))  # blocks [1 2 3] [4 5 6] [7]
    qid = engine.create_query("b", "e")
    first = Batch(2)
    assert engine.query_take("b", "e", qid, first) is FULL
    assert first.stamps == [1, 2]
    second = Batch(3)
    assert engine.query_take("b", "e", qid, second) is FULL
    assert second.stamps == [3, 4, 5]  # across a block boundary, ends mid-block
    rest = Batch()
    assert engine.query_take("b", "e", qid, rest) is None
    assert rest.stamps == [6, 7]
    assert rest.seen[0] == (6, 3, "application/octet-stream", {})
    # nothing more: the query is gone, as after query_next's None
    with pytest.raises(NotFound):
        engine.query_take("b", "e", qid, Batch())


def test_the_budget_runs_out_on_a_block_boundary(engine):
    _fill(engine, range(1, 8))
    qid = engine.create_query("b", "e")
    stamps, results = _take_all(engine, qid, budget=3)
    assert stamps == list(range(1, 8))
    assert results == [PENDING, PENDING, None]
    # a budget smaller than a block cuts it
    qid = engine.create_query("b", "e")
    stamps, results = _take_all(engine, qid, budget=2)
    assert stamps == list(range(1, 8)) and results == [PENDING] * 3 + [None]


def test_removed_records_in_the_middle_are_skipped(engine):
    _fill(engine, range(1, 10))
    qid = engine.create_query("b", "e")
    first = Batch(2)
    engine.query_take("b", "e", qid, first)
    assert engine.remove_stamps("b", "e", [3, 5, 6, 7]) == {}
    stamps, _ = _take_all(engine, qid)
    assert first.stamps + stamps == [1, 2, 4, 8, 9]


@pytest.mark.parametrize("options", [
    {},
    {"start": 3, "stop": 8},
    {"include": {"odd": "1"}},
    {"exclude": {"odd": "1"}},
    {"each_n": 2},
    {"each_s": 0.000003},
    {"limit": 4},
    {"limit": 3, "include": {"odd": "0"}},
    {"when": {"&odd": {"$eq": 1}}},
    {"when": {"&odd": {"$eq": 1}, "$limit": 2}},
    {"when": {"&n": {"$eq": 5}, "#ctx_before": 2, "#ctx_after": 1}},
    {"when": {"$or": [{"&n": {"$eq": 2}}, {"&n": {"$eq": 9}}], "#ctx_before": 1}},
    {"when": {"&odd": {"$eq": 0}}, "only_metadata": True},
])
def test_a_take_returns_what_query_next_returns(engine, options):
    """Every filter, limit and ``when`` gives the same records either way."""
    _fill(engine, range(1, 12),
          labels=lambda ts: {"odd": str(ts % 2), "n": str(ts), "q": 'a,"b"'})
    expected = _next_all(engine, engine.create_query("b", "e", **options))
    qid = engine.create_query("b", "e", **options)
    batch = Batch(3)
    while engine.query_take("b", "e", qid, batch) is not None:
        pass
    assert batch.seen == expected and expected


def test_select_labels_and_a_strict_error_after_records(engine):
    _fill(engine, range(1, 6), labels=lambda ts: {"a": str(ts), "b": "x"} if ts < 4 else {"b": "y"})
    qid = engine.create_query("b", "e", when={"&b": {"$ne": ""}, "#select_labels": ["b"]})
    batch = Batch()
    assert engine.query_take("b", "e", qid, batch) is None
    assert [fields[-1] for fields in batch.seen] == [{"b": "x"}] * 3 + [{"b": "y"}] * 2
    qid = engine.create_query("b", "e", when={"&a": {"$gt": 0}}, strict=True)
    batch = Batch()
    with pytest.raises(Exception) as info:
        engine.query_take("b", "e", qid, batch)
    assert batch.stamps == [1, 2, 3] and info.value.status in (404, 422)
    with pytest.raises(type(info.value)):  # the query keeps answering its error
        engine.query_take("b", "e", qid, Batch())


def test_a_continuous_take_stops_before_a_record_being_written(engine):
    _fill(engine, (1, 2))
    alloc = engine.allocate("b", "e", 3, 3, "t", {})
    _fill(engine, (4,))
    qid = engine.create_query("b", "e", continuous=True)
    batch = Batch()
    assert engine.query_take("b", "e", qid, batch) is None and batch.stamps == [1, 2]
    write_content(alloc, b"<3>")
    engine.commit(alloc)
    assert engine.query_take("b", "e", qid, batch) is None and batch.stamps == [1, 2, 3, 4]
    assert engine.query_options("b", "e", qid) is not None  # a continuous query stays


def test_consecutive_records_of_a_block_make_one_range(engine):
    _fill(engine, range(1, 8))
    qid = engine.create_query("b", "e", start=2)
    reader = engine.open_reader()
    try:
        assert engine.query_take("b", "e", qid, Batch(), reader) is None
        # blocks [1 2 3] [4 5 6] [7]: one range per block run, one file each
        assert [r[1:] for r in reader.ranges] == [(3, 6), (0, 9), (0, 3)]
        assert reader.file_count == 3 and reader.size == 18
        data = b"".join(f.read(offset, size) for f, offset, size in reader.ranges)
        assert data == b"".join(b"<%d>" % ts for ts in range(2, 8))
    finally:
        reader.close()


def test_a_data_file_that_cannot_be_opened(engine, monkeypatch):
    _fill(engine, (1, 2))
    qid = engine.create_query("b", "e")
    reader = engine.open_reader()

    def refuse(block, record):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(reader, "add_stored", refuse)
    batch = Batch()
    with pytest.raises(InternalError) as info:
        engine.query_take("b", "e", qid, batch, reader)
    assert info.value.message == "Failed to read record 1: No such file or directory"
    assert batch.seen == []
    reader.close()


def test_multi_take_merges_like_multi_next(engine):
    for entry, stamps in (("a", (1, 4, 5, 9)), ("b", (2, 3, 6)), ("c", (7, 8, 10))):
        _fill(engine, stamps, entry=entry, labels=lambda ts: {"t": str(ts)})
    expected = []
    qid = engine.create_multi_query("b", None)
    while (result := engine.multi_next("b", qid)) is not None:
        name, view = result
        expected.append((name, view.record.ts, view.record.size, view.record.content_type,
                         view.record.labels))
    qid = engine.create_multi_query("b", None)
    batch = Batch(4)
    while engine.multi_take("b", qid, batch) is not None:
        pass
    assert batch.seen == expected and len(expected) == 10
    # accept refuses: HELD, and the refused record stays the next one
    qid = engine.create_multi_query("b", None)
    batch = Batch()
    assert engine.multi_take("b", qid, batch, accept=lambda name: name != "b") is HELD
    assert [fields[:2] for fields in batch.seen] == [("a", 1)]
    assert engine.multi_take("b", qid, batch, accept=lambda name: True) is None
    assert [fields[1] for fields in batch.seen] == list(range(1, 11))


def test_reader_closes_at_the_metadata_cap_on_a_block_boundary(engine):
    _fill(engine, range(1, 8))
    one = len(b"x-reduct-time-1") + len(b"3,application/octet-stream") + 2
    qid = engine.create_query("b", "e")
    reader = BatchReader(engine, "b", "e", qid, head=True,
                         limits=BatchLimits(max_metadata=3 * one - 1))
    assert _drive(reader) is reader
    assert [name for name, _ in reader.headers] == [b"x-reduct-time-%d" % t for t in (1, 2, 3)]
    tail = BatchReader(engine, "b", "e", qid, head=True)
    assert _drive(tail) is tail and len(tail.headers) == 4 and tail.last


def _drive(reader):
    """Step ``reader`` past its time slices (a loaded machine may use one up)."""
    while (result := reader.step()) is PENDING:
        pass
    return result


@pytest.mark.parametrize("content_type, labels", [
    ("application/octet-stream", {}),
    ("text/plain", {"a": "1", "b": "2"}),
    ("text/plain", {"b": "2", "a": "1"}),
    ("text/csv,utf-8", {"x": "1,2", "y": 'say "hi"'}),
    ("image/png", {"q": '"open', "r": '"', "s": '"closed"', "t": "a,b"}),
    ("a", {"line": "x\ny", "cr": "p\r\nq"}),
])
def test_record_header_value_is_format_record_header(content_type, labels):
    """Cached per content type and labels, the same text as uncached (line breaks made spaces)."""
    for size in (0, 7, 123456789):
        expected = b" ".join(format_record_header(size, content_type, labels).splitlines())
        assert record_header_value(size, content_type, labels) == expected
        assert record_header_value(size, content_type, dict(labels)) == expected


def test_record_header_values_of_mixed_content_types_stay_apart():
    values = [record_header_value(1, ct, {"k": v}) for ct in ("a/b", "c/d") for v in ("1", "2")]
    assert values == [b"1,a/b,k=1", b"1,a/b,k=2", b"1,c/d,k=1", b"1,c/d,k=2"]


class HeaderRequest:
    def __init__(self):
        self.responseHeaders = Headers()

    def setHeader(self, name, value):
        self.responseHeaders.setRawHeaders(name, [value])


def test_set_raw_headers_reads_back_as_set_header_would():
    headers = [(b"x-reduct-time-%d" % ts, b"3,text/plain,a=%d" % ts) for ts in (5, 17)]
    raw, checked = HeaderRequest(), HeaderRequest()
    set_raw_headers(raw, headers)
    for name, value in headers:
        checked.setHeader(name, value)
    assert list(raw.responseHeaders.getAllRawHeaders()) == \
        list(checked.responseHeaders.getAllRawHeaders())
    assert raw.responseHeaders.getRawHeaders(b"x-reduct-time-17") == [b"3,text/plain,a=17"]
    # a value with a line break goes through setHeader (made a space)
    broken = HeaderRequest()
    set_raw_headers(broken, [(b"x-reduct-0-1", b"3,a,0=x\r\ny")])
    assert broken.responseHeaders.getRawHeaders(b"x-reduct-0-1") == [b"3,a,0=x y"]


def test_multi_take_drops_records_removed_after_they_were_taken_ahead(engine):
    _fill(engine, range(1, 9), entry="a")
    _fill(engine, (2, 5, 9), entry="b")  # equal stamps: entry a first
    qid = engine.create_multi_query("b", None)
    first = Batch(2)
    assert engine.multi_take("b", qid, first) is FULL
    assert [fields[:2] for fields in first.seen] == [("a", 1), ("a", 2)]
    # a's next matches were taken ahead (up to its block's end): remove some
    assert engine.remove_stamps("b", "a", [3, 5]) == {}
    assert engine.remove_stamps("b", "b", [5]) == {}
    rest = Batch()
    assert engine.multi_take("b", qid, rest) is None
    assert [fields[:2] for fields in rest.seen] == [
        ("b", 2), ("a", 4), ("a", 6), ("a", 7), ("a", 8), ("b", 9)]


class Runs(Batch):
    """A ``visit_run`` too: keeps the runs it is given, full after ``size`` records."""

    def __init__(self, size=10**9):
        super().__init__(size)
        self.runs = []

    def run(self, records):
        self.runs.append([r.ts for r in records])
        for n, record in enumerate(records, 1):
            self.seen.append((record.ts, record.size, record.content_type, record.labels))
            if len(self.seen) % self.size == 0:
                return n, True
        return len(records), False


def test_runs_of_a_block_go_at_once_and_stop_where_the_batch_is_full(engine):
    _fill(engine, range(1, 8))  # blocks [1 2 3] [4 5 6] [7]
    qid = engine.create_query("b", "e")
    batch = Runs(5)
    reader = engine.open_reader()
    try:
        assert engine.query_take("b", "e", qid, batch, reader, visit_run=batch.run) is FULL
        assert batch.runs == [[1, 2, 3], [4, 5, 6]] and batch.stamps == [1, 2, 3, 4, 5]
        assert [r[1:] for r in reader.ranges] == [(0, 9), (0, 6)] and reader.size == 15
        rest = Runs()
        assert engine.query_take("b", "e", qid, rest, visit_run=rest.run) is None
        assert rest.runs == [[6], [7]]
    finally:
        reader.close()


def test_a_run_breaks_at_a_large_record_and_one_being_written(engine):
    _fill(engine, (1, 2))
    write_record(engine, "b", "e", 3, b"L" * (SMALL_RECORD_MAX + 1))  # a private segment
    engine.create_bucket("c", {"max_block_records": 10})
    for ts in (1, 2):
        write_record(engine, "c", "e", ts, b"<%d>" % ts)
    alloc = engine.allocate("c", "e", 3, 3, "t", {})
    for ts in (4, 5):
        write_record(engine, "c", "e", ts, b"<%d>" % ts)
    qid = engine.create_query("b", "e")
    batch, reader = Runs(), engine.open_reader()
    try:
        assert engine.query_take("b", "e", qid, batch, reader, visit_run=batch.run) is None
        assert batch.runs == [[1, 2]] and batch.stamps == [1, 2, 3]  # 3 through visit
        assert [r[1:] for r in reader.ranges] == [(0, 6), (0, SMALL_RECORD_MAX + 1)]
    finally:
        reader.close()
    qid = engine.create_query("c", "e")
    batch = Runs()
    assert engine.query_take("c", "e", qid, batch, visit_run=batch.run) is None
    assert batch.runs == [[1, 2], [4, 5]] and batch.stamps == [1, 2, 4, 5]
    engine.abort(alloc)


def test_runs_of_a_long_block_come_in_doubling_chunks_without_gaps(engine):
    """A run is handed at most RUN_FIRST records first, then twice as many
    each time (a batch mostly wants fewer than the block holds); a chunk's
    end is no record to step over, a record being written still is."""
    from reduct_twisted.storage.query import RUN_FIRST
    engine.create_bucket("long", {"max_block_records": 1000})
    first = 4 * RUN_FIRST + 10
    for ts in range(1, first):
        write_record(engine, "long", "e", ts, b"<%d>" % ts)
    alloc = engine.allocate("long", "e", first, 3, "t", {})  # being written: steps, not runs
    for ts in range(first + 1, first + 41):
        write_record(engine, "long", "e", ts, b"<%d>" % ts)
    qid = engine.create_query("long", "e", stop=first + 41)
    batch = Runs()
    assert engine.query_take("long", "e", qid, batch, visit_run=batch.run) is None
    sizes = [len(run) for run in batch.runs]
    assert sizes == [RUN_FIRST, 2 * RUN_FIRST, first - 1 - 3 * RUN_FIRST, 40]
    assert batch.stamps == list(range(1, first)) + list(range(first + 1, first + 41))
    engine.abort(alloc)
    # A batch full part way through a chunk goes on where it stopped.
    qid = engine.create_query("long", "e", stop=first)
    small, rest = Runs(RUN_FIRST + 5), Runs()
    assert engine.query_take("long", "e", qid, small, visit_run=small.run) is FULL
    assert small.stamps == list(range(1, RUN_FIRST + 6))
    assert engine.query_take("long", "e", qid, rest, visit_run=rest.run) is None
    assert rest.stamps == list(range(RUN_FIRST + 6, first))


def test_add_run_joins_back_to_back_records_only(engine):
    _fill(engine, range(1, 4))
    block = engine._bucket("b").entry("e").blocks[0]
    rows = [block.table[ts] for ts in block.order]
    reader = engine.open_reader()
    try:
        reader.open_shared(block)
        reader.add_run(block, rows[:1])
        reader.add_run(block, rows[1:])  # goes on from the range before
        assert [r[1:] for r in reader.ranges] == [(0, 9)]
        reader.add_run(block, [rows[0], rows[2]])  # a gap: two more ranges
        assert [r[1:] for r in reader.ranges] == [(0, 9), (0, 3), (6, 3)]
        assert reader.size == 15 and reader.file_count == 1
    finally:
        reader.close()


def test_record_headers_go_out_as_one_block_and_read_back_as_set():
    """A batch answer's record headers (RecordHeaders): on the wire the same lines
    as headers set one by one, and every reader finds them."""
    from twisted.internet.testing import StringTransport

    from reduct_twisted.http.batch_limits import RecordHeaders
    from reduct_twisted.http.channel import ReductChannel

    pairs = [(b"x-reduct-time-%d" % ts, b"3,text/plain,a=%d" % ts) for ts in (5, 17, 30)]
    raw, checked = HeaderRequest(), HeaderRequest()
    raw.setHeader(b"content-length", b"9")
    checked.setHeader(b"content-length", b"9")
    set_raw_headers(raw, pairs)
    for name, value in pairs:
        checked.setHeader(name, value)
    raw.responseHeaders.setRawHeaders(b"date", [b"today"])  # set after: still written
    checked.responseHeaders.setRawHeaders(b"date", [b"today"])
    assert type(raw.responseHeaders) is RecordHeaders
    wire = []
    for request in (raw, checked):
        channel = ReductChannel()
        channel.transport = StringTransport()
        channel.writeHeaders(b"HTTP/1.1", b"200", b"OK", request.responseHeaders)
        channel.send_held_head()  # (Request.write sends it with the body's first bytes)
        wire.append(channel.transport.value())
    assert sorted(wire[0].split(b"\r\n")) == sorted(wire[1].split(b"\r\n"))
    assert wire[0].endswith(b"x-reduct-time-30: 3,text/plain,a=30\r\n\r\n")
    headers = raw.responseHeaders
    assert headers.hasHeader(b"X-Reduct-Time-5") and headers.hasHeader("x-reduct-time-30")
    assert headers.getRawHeaders("x-reduct-time-17") == ["3,text/plain,a=17"]
    assert headers.getRawHeaders(b"x-reduct-time-4", b"none") == b"none"
    assert headers.getRawHeaders(b"date") == [b"today"]
    assert list(headers.copy().getAllRawHeaders()) == list(headers.getAllRawHeaders())
