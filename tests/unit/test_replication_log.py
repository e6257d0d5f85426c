"""
The replication transaction log (``replication/txlog.py``): order, cursor,
reopening, torn and damaged tails, segments and the size bound.
"""

import os

import pytest

from reduct_twisted.replication.txlog import (
    CURSOR_FILE,
    LABELS,
    WRITE,
    EntryLog,
    format_item,
    parse_item,
)
from reduct_twisted.storage.disk.durability import DirtySet


def _open(path, capacity=1000, segment_items=4, dirty=None):
    return EntryLog(str(path), capacity, dirty or DirtySet(), segment_items=segment_items)


def _written(path, stamps, segment_items=4):
    """A log at ``path`` with a WRITE item per timestamp, closed again."""
    log = _open(path, segment_items=segment_items)
    for ts in stamps:
        log.append(WRITE, ts)
    log.close()


def _pending(log):
    return [(i.kind, i.ts, i.removed) for i in log.peek(10_000)]


def _segments(path):
    return sorted(n for n in os.listdir(path) if n.endswith(".log"))


def test_item_lines_round_trip():
    """Items are one text line; removed label names survive any characters."""
    line = format_item(LABELS, 17, ("a", "with,comma", "sp ace", "é=x"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_item(line[:-1]) == (LABELS, 17, ("a", "with,comma", "sp ace", "é=x"))
    assert parse_item(b"W 5") == (WRITE, 5, ())
    for bad in (b"", b"W", b"X 1", b"W -1", b"W 1 2 3", b"\0\0\0", b"W 1x"):
        assert parse_item(bad) is None


def test_append_peek_ack_in_order(tmp_path):
    """Items come back in the order appended; ack moves past them only."""
    log = _open(tmp_path / "e")
    for ts in (30, 10, 20):
        assert log.append(WRITE, ts) is None
    log.append(LABELS, 10, ("gone",))
    assert log.pending == 4
    items = log.peek(2)
    assert [(i.kind, i.ts) for i in items] == [(WRITE, 30), (WRITE, 10)]
    assert log.pending == 4  # peeking takes nothing
    log.ack(items[1])
    assert log.pending == 2
    assert _pending(log) == [(WRITE, 20, ()), (LABELS, 10, ("gone",))]
    log.ack(items[0])  # behind the cursor already: ignored
    assert log.pending == 2


def test_reopen_resumes_at_cursor(tmp_path):
    """A reopened log has the same pending items, across segments."""
    path = tmp_path / "e"
    log = _open(path)
    for ts in range(1, 11):
        log.append(WRITE, ts)
    log.ack(log.peek(6)[-1])
    log.close()
    again = _open(path)
    assert again.pending == 4
    assert [i.ts for i in again.peek(100)] == [7, 8, 9, 10]
    again.append(WRITE, 11)
    assert [i.ts for i in again.peek(100)] == [7, 8, 9, 10, 11]
    assert [i.seq for i in again.peek(100)] == [6, 7, 8, 9, 10]


def test_done_segments_are_deleted(tmp_path):
    """Segments wholly behind the cursor go; the last one always stays."""
    path = tmp_path / "e"
    log = _open(path, segment_items=3)
    for ts in range(1, 8):
        log.append(WRITE, ts)
    assert _segments(path) == ["%020d.log" % n for n in (0, 3, 6)]
    log.ack(log.peek(4)[-1])
    assert _segments(path) == ["%020d.log" % n for n in (3, 6)]
    log.ack(log.peek(3)[-1])
    assert _segments(path) == ["%020d.log" % 6]
    assert log.pending == 0
    log.close()
    again = _open(path, segment_items=3)
    assert again.pending == 0 and again.next_seq == 7
    again.append(WRITE, 99)
    assert [(i.seq, i.ts) for i in again.peek(5)] == [(7, 99)]


def test_torn_last_line_is_cut(tmp_path):
    """A crash in the middle of an append leaves a partial line: it is cut off."""
    path = tmp_path / "e"
    _written(path, (1, 2), segment_items=100)
    segment = path / ("%020d.log" % 0)
    with open(segment, "ab") as f:
        f.write(b"W 12")
    dirty = DirtySet()
    again = _open(path, segment_items=100, dirty=dirty)
    assert [i.ts for i in again.peek(10)] == [1, 2]
    assert segment.read_bytes() == b"W 1\nW 2\n"
    assert str(segment) in dirty.files  # the cut is flushed too
    again.append(WRITE, 3)
    assert [i.ts for i in again.peek(10)] == [1, 2, 3]


def test_zeros_after_power_loss_are_cut(tmp_path):
    """A tail of zeros (the size grew, the data did not land) is cut from there."""
    path = tmp_path / "e"
    _written(path, (1,), segment_items=100)
    segment = path / ("%020d.log" % 0)
    with open(segment, "ab") as f:
        f.write(b"\0" * 10 + b"\n" + b"\0" * 4000)
    again = _open(path, segment_items=100)
    assert [i.ts for i in again.peek(10)] == [1]
    assert segment.read_bytes() == b"W 1\n"


def test_damaged_line_before_good_ones_stays(tmp_path):
    """A damaged line followed by good ones is kept and reported (kind None)."""
    path = tmp_path / "e"
    _written(path, (1, 2, 3), segment_items=100)
    segment = path / ("%020d.log" % 0)
    segment.write_bytes(b"W 1\n? 2\nW 3\n")
    assert [(i.kind, i.ts) for i in _open(path, segment_items=100).peek(9)] == [
        (WRITE, 1), (None, 0), (WRITE, 3),
    ]


def test_damaged_line_in_older_segment_is_reported(tmp_path):
    """A line that cannot be read in an older segment comes back as kind None."""
    path = tmp_path / "e"
    _written(path, (1, 2, 3), segment_items=2)
    (path / ("%020d.log" % 0)).write_bytes(b"W 1\n??\n")
    again = _open(path, segment_items=2)
    assert [(i.kind, i.ts) for i in again.peek(5)] == [(WRITE, 1), (None, 0), (WRITE, 3)]


def test_bad_cursor_file_means_start(tmp_path):
    """An unreadable cursor sends everything again (the destination answers 409)."""
    path = tmp_path / "e"
    log = _open(path)
    for ts in (1, 2, 3):
        log.append(WRITE, ts)
    log.ack(log.peek(2)[-1])
    log.close()
    (path / CURSOR_FILE).write_bytes(b"garbage")
    assert [i.ts for i in _open(path).peek(5)] == [1, 2, 3]
    (path / CURSOR_FILE).write_bytes(b"%020d\n" % 10**6)  # past the end: clamped
    assert _open(path).pending == 0


def test_cursor_survives_segment_loss(tmp_path):
    """A cursor behind the first segment left (older ones deleted) is moved up to it."""
    path = tmp_path / "e"
    log = _open(path, segment_items=2)
    for ts in range(1, 6):
        log.append(WRITE, ts)
    log.ack(log.peek(3)[-1])
    log.close()
    (path / CURSOR_FILE).write_bytes(b"%020d\n" % 0)
    assert [i.ts for i in _open(path, segment_items=2).peek(9)] == [3, 4, 5]


def test_bound_drops_oldest(tmp_path):
    """When ``capacity`` items are pending, an append drops the oldest and returns it."""
    log = _open(tmp_path / "e", capacity=3, segment_items=2)
    for ts in (1, 2, 3):
        assert log.append(WRITE, ts) is None
    dropped = log.append(WRITE, 4)
    assert (dropped.kind, dropped.ts) == (WRITE, 1)
    assert log.append(LABELS, 5).ts == 2
    assert log.pending == 3
    assert [i.ts for i in log.peek(9)] == [3, 4, 5]


def test_ack_of_item_dropped_meanwhile(tmp_path):
    """An item sent while the bound dropped it: its ack still moves to the right place."""
    log = _open(tmp_path / "e", capacity=2)
    log.append(WRITE, 1)
    log.append(WRITE, 2)
    in_flight = log.peek(2)
    log.append(WRITE, 3)  # drops 1 (in flight)
    assert log.cursor == 1
    log.ack(in_flight[-1])
    assert [i.ts for i in log.peek(9)] == [3]


def test_appends_are_recorded_for_the_sync_round(tmp_path):
    """New directories, segments and appends are in the dirty set for group commit."""
    dirty = DirtySet()
    path = tmp_path / "r" / "e"
    log = _open(path, dirty=dirty)
    log.append(WRITE, 1)
    files, dirs = dirty.take()
    segment = str(path / ("%020d.log" % 0))
    assert segment in files
    assert str(path) in dirs and str(tmp_path / "r") in dirs
    log.append(WRITE, 2)
    assert dirty.take() == ({segment}, set())


@pytest.mark.parametrize("capacity", [1, 5])
def test_many_items_through_small_segments(tmp_path, capacity):
    """Hundreds of items through tiny segments keep order and exact counts."""
    log = _open(tmp_path / "e", capacity=10_000, segment_items=capacity)
    sent = []
    for ts in range(1, 501):
        log.append(WRITE, ts)
        if ts % 7 == 0:
            batch = log.peek(5)
            sent.extend(i.ts for i in batch)
            log.ack(batch[-1])
    sent.extend(i.ts for i in log.peek(10_000))
    assert sent == list(range(1, 501))
    assert len(_segments(tmp_path / "e")) <= 500 // capacity + 1


def test_closed_log_opens_its_files_again(tmp_path):
    """After close, an append or an ack opens the files again."""
    log = _open(tmp_path / "e")
    log.append(WRITE, 1)
    log.close()
    log.append(WRITE, 2)
    log.ack(log.peek(1)[0])
    log.close()
    assert [i.ts for i in _open(tmp_path / "e").peek(5)] == [2]
