"""
Issue #16 in the storage core: entry numbers (``numbers.py``), SHA-256
digests kept through rewrites, compression and recovery, the data
directory upgrade and the backfill of records stored before (``backfill.py``).
"""

import hashlib
import json
import os

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import NotFound
from reduct_twisted.storage import SMALL_RECORD_MAX, StorageEngine, backfill
from reduct_twisted.storage.disk import layout
from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.numbers import read_counter
from reduct_twisted.storage.testing import read_content, write_record

BIG = b"B" * (SMALL_RECORD_MAX + 9)


def _open(path, **kwargs):
    engine = StorageEngine(str(path), Clock(), **kwargs)
    engine.open()
    return engine


def _result(d):
    out = []
    d.addBoth(out.append)
    assert out, "not finished"
    return out[0]


def _number(engine, ts, entry="e"):
    return engine.read("b", entry, ts).record.number


def _digest(engine, ts, entry="e"):
    return engine.read("b", entry, ts).record.digest


def _data(ts):
    return BIG if ts % 5 == 0 else b"record-%d" % ts


def _make_old(path, entries=("e",)):
    """Turn a data directory into what the code before issue #16 wrote:
    .meta lines without "n"/"sha256", no counters, marker version 2."""
    for entry in entries:
        directory = os.path.join(path, "b", entry)
        for name in os.listdir(directory):
            full = os.path.join(directory, name)
            if name == ".numbers":
                os.unlink(full)
            elif name.endswith(".meta"):
                with open(full, "rb") as f:
                    lines = [json.loads(line) for line in f]
                for line in lines:
                    line.pop("n", None)
                    line.pop("sha256", None)
                with open(full, "w") as f:
                    f.write("".join(json.dumps(line, separators=(",", ":")) + "\n"
                                    for line in lines))
    with open(os.path.join(path, layout.MARKER_FILE), "w") as f:
        f.write('{"format": "reduct-twisted", "version": 2}\n')


# -- numbers --------------------------------------------------------------------------------


def test_numbers_in_commit_order_not_changed_by_belated_records(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in (10, 20, 30, 5, 25):
        write_record(engine, "b", "e", ts, _data(ts))
    assert [_number(engine, ts) for ts in (5, 10, 20, 25, 30)] == [4, 1, 2, 5, 3]
    engine.close()
    again = _open(tmp_path)
    assert [_number(again, ts) for ts in (5, 10, 20, 25, 30)] == [4, 1, 2, 5, 3]
    write_record(again, "b", "e", 1, b"x")
    assert _number(again, 1) == 6


def test_removed_top_numbers_never_come_back(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in (1, 2, 3, 4):
        write_record(engine, "b", "e", ts, b"x")
    assert _result_step(engine.remove_records("b", "e", start=3, stop=5)) == 2  # block 3 gone
    assert read_counter(str(tmp_path / "b" / "e"))["next"] == 5
    engine.close()
    again = _open(tmp_path)
    write_record(again, "b", "e", 9, b"y")
    assert _number(again, 9) == 5
    # Removing a record from the middle of a block (a .meta rewrite) too.
    write_record(again, "b", "e", 10, b"z")
    _result_step(again.remove_records("b", "e", start=10, stop=11))
    again.close()
    third = _open(tmp_path)
    write_record(third, "b", "e", 11, b"w")
    assert _number(third, 11) == 7


def _result_step(removal):
    from reduct_twisted.storage import PENDING

    while True:
        result = removal.step()
        if result is not PENDING:
            return result


def test_fifo_eviction_keeps_the_counter(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 1, "quota_type": "FIFO",
                               "quota_size": 100})
    for ts in range(1, 8):
        write_record(engine, "b", "e", ts, b"x" * 40)
    assert engine.bucket_info("b")["entries"][0]["record_count"] < 7
    engine.close()
    again = _open(tmp_path)
    write_record(again, "b", "e", 100, b"x")
    assert _number(again, 100) == 8


def test_an_aborted_write_to_an_emptied_entry_keeps_its_counter(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"x")
    _result_step(engine.remove_records("b", "e", start=0, stop=10))
    alloc = engine.allocate("b", "e", 2, 3, "t", {})
    engine.abort(alloc)
    write_record(engine, "b", "e", 3, b"y")
    assert _number(engine, 3) == 2


# -- digests --------------------------------------------------------------------------------


def test_digests_kept_through_labels_compression_recovery_and_rename(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 4})
    for ts in range(1, 9):
        write_record(engine, "b", "e", ts, _data(ts), labels={"k": str(ts)})
    expected = {ts: hashlib.sha256(_data(ts)).digest() for ts in range(1, 9)}
    assert {ts: _digest(engine, ts) for ts in expected} == expected
    engine.update_labels("b", "e", {2: {"k": "changed"}})
    assert _result(engine.compress_blocks("b", "e", 2**63)) == (8, 2)
    engine.rename_entry("b", "e", "f")
    assert {ts: _digest(engine, ts, "f") for ts in expected} == expected
    assert [_number(engine, ts, "f") for ts in range(1, 9)] == list(range(1, 9))
    # Leave it "crashed": the unclean open re-reads every record, digests included.
    again = _open(tmp_path)
    report = again.recovery_report()
    assert report["unclean"] and report["dropped_records"] == 0
    assert {ts: _digest(again, ts, "f") for ts in expected} == expected


def test_unclean_open_drops_a_record_whose_digest_does_not_match(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    for ts in (1, 2, 3):
        write_record(engine, "b", "e", ts, b"content-%d" % ts)
    meta = tmp_path / "b" / "e" / "1.meta"
    lines = [json.loads(line) for line in meta.read_bytes().splitlines()]
    lines[2]["sha256"] = hashlib.sha256(b"something else").hexdigest()  # record 2
    meta.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    os.utime(tmp_path / "b" / "e" / "1.blk")
    again = _open(tmp_path)  # the first never closed: unclean
    report = again.recovery_report()
    assert report["dropped_records"] == 1
    assert report["problems"] == [f"Dropped record 2 of {os.path.join('b', 'e', '1.meta')}: "
                                  "digest mismatch"]
    with pytest.raises(NotFound):
        again.read("b", "e", 2)


def _drop_crcs(meta):
    """Rewrite ``meta``'s lines without their "crc" (records checked by their SHA-256 alone)."""
    lines = [json.loads(line) for line in meta.read_bytes().splitlines()]
    for line in lines[1:]:
        line.pop("crc", None)
    meta.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))


@pytest.mark.parametrize("big", [False, True])
def test_unclean_open_checks_a_record_without_crc_by_its_digest(tmp_path, big):
    """A record whose line has a SHA-256 and no CRC-32: after a crash its changed
    content is hashed; a flipped byte drops it, the intact ones stay."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    size = len(BIG) if big else 9
    contents = {ts: (bytes([ts]) * size) for ts in (1, 2, 3)}
    for ts, data in contents.items():
        write_record(engine, "b", "e", ts, data)
    directory = tmp_path / "b" / "e"
    _drop_crcs(directory / "1.meta")
    record = engine.read("b", "e", 2).record
    segment = directory / record.segment
    raw = bytearray(segment.read_bytes())
    raw[record.offset + size // 2] ^= 1
    segment.write_bytes(bytes(raw))
    for name in os.listdir(directory):
        os.utime(directory / name)
    again = _open(tmp_path)  # the first never closed: unclean
    report = again.recovery_report()
    assert report["dropped_records"] == 1
    assert report["problems"] == [f"Dropped record 2 of {os.path.join('b', 'e', '1.meta')}: "
                                  "digest mismatch"]
    for ts in (1, 3):
        assert again.read("b", "e", ts).record.digest == hashlib.sha256(contents[ts]).digest()
    with pytest.raises(NotFound):
        again.read("b", "e", 2)


def test_packing_checks_a_record_without_crc_by_its_digest(tmp_path):
    """Compression checks each plain record; without a CRC-32 its SHA-256 does it:
    a flipped byte stops the packing (the block stays as it was)."""
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 4})
    for ts in range(1, 9):
        write_record(engine, "b", "e", ts, _data(ts))
    engine.close()
    directory = tmp_path / "b" / "e"
    _drop_crcs(directory / "1.meta")
    _drop_crcs(directory / "5.meta")
    again = _open(tmp_path)
    record = again.read("b", "e", 6).record
    segment = directory / record.segment
    raw = bytearray(segment.read_bytes())
    raw[record.offset] ^= 1
    segment.write_bytes(bytes(raw))
    result = _result(again.compress_blocks("b", "e", 2**63))
    assert result[1] == 1  # block 1 packed (its SHA-256s match), block 5 refused
    assert {ts: _digest(again, ts) for ts in (1, 2, 3, 4)} == {
        ts: hashlib.sha256(_data(ts)).digest() for ts in (1, 2, 3, 4)}
    assert again.read("b", "e", 6).record.zsize is None


def test_integrity_off_computes_none_but_numbers(tmp_path):
    engine = _open(tmp_path)
    engine.compute_digests(False)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"abc")
    assert (_number(engine, 1), _digest(engine, 1)) == (1, None)
    engine.close()
    # Switched on later: the backfill gives the record its digest.
    again = _open(tmp_path)
    report = _result(again.backfill())
    assert (report["numbered"], report["digested"]) == (0, 1)
    assert _digest(again, 1) == hashlib.sha256(b"abc").digest()


# -- upgrade and backfill -------------------------------------------------------------------


def test_an_old_directory_is_upgraded_and_backfilled(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 3})
    stamps = (40, 10, 30, 20, 50, 60, 70)  # belated writes: commit order is not ts order
    for ts in stamps:
        write_record(engine, "b", "e", ts, _data(ts))
    engine.close()
    _make_old(str(tmp_path))
    assert layout.classify(str(tmp_path)) == layout.OUTDATED
    again = _open(tmp_path)
    assert layout.read_marker(str(tmp_path)) == layout.MARKER_VERSION == 3
    assert all(_number(again, ts) is None and _digest(again, ts) is None for ts in stamps)
    # Numbers 1..7 are set aside for the old records; new ones start above.
    write_record(again, "b", "e", 5, b"new")
    assert _number(again, 5) == 8
    report = _result(again.backfill())
    assert (report["numbered"], report["digested"], report["problems"]) == (7, 7, [])
    ordered = sorted(stamps)
    assert [_number(again, ts) for ts in ordered] == list(range(1, 8))  # timestamp order
    assert all(_digest(again, ts) == hashlib.sha256(_data(ts)).digest() for ts in stamps)
    assert read_content(again.read("b", "e", 50)) == BIG
    again.close()
    third = _open(tmp_path)
    assert [_number(third, ts) for ts in ordered] == list(range(1, 8))
    assert _result(third.backfill())["numbered"] == 0
    write_record(third, "b", "e", 80, b"later")
    assert _number(third, 80) == 9


def test_backfill_interrupted_resumes_without_reusing_numbers(tmp_path, monkeypatch):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in (1, 2, 3, 4, 5):
        write_record(engine, "b", "e", ts, b"v%d" % ts)
    engine.close()
    _make_old(str(tmp_path))
    again = _open(tmp_path)
    real, calls = backfill.rewrite_meta, []

    def crash_on_second(context, block, records, doing):
        calls.append(block.block_id)
        if len(calls) == 2:
            # After the counter was saved for this block, before its .meta.
            raise storage_error(OSError(5, "power cut"), doing)
        return real(context, block, records, doing)

    monkeypatch.setattr(backfill, "rewrite_meta", crash_on_second)
    report = _result(again.backfill())
    assert "power cut" in report["problems"][0]
    assert report["numbered"] == 2  # block 1; block 3 failed, block 5 waits
    monkeypatch.setattr(backfill, "rewrite_meta", real)
    assert read_counter(str(tmp_path / "b" / "e"))["filling"] == 3
    third = _open(tmp_path)
    report = _result(third.backfill())
    assert report["numbered"] == 3
    assert [_number(third, ts) for ts in (1, 2, 3, 4, 5)] == [1, 2, 3, 4, 5]
    write_record(third, "b", "e", 9, b"new")
    assert _number(third, 9) == 6


def test_backfill_reports_a_record_failing_its_crc(tmp_path):
    engine = _open(tmp_path)
    engine.compute_digests(False)  # records as before digests: a CRC-32 each
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"good")
    write_record(engine, "b", "e", 2, b"evil")
    engine.close()
    _make_old(str(tmp_path))
    with open(tmp_path / "b" / "e" / "1.blk", "r+b") as f:
        f.seek(5)
        f.write(b"X")
    again = _open(tmp_path)
    report = _result(again.backfill())
    assert report["numbered"] == 2 and report["digested"] == 1
    assert "fails its check" in report["problems"][0]
    assert _digest(again, 2) is None and _number(again, 2) == 2


def test_a_block_being_compressed_holds_back_its_entry(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in (1, 2, 3, 4):
        write_record(engine, "b", "e", ts, b"v%d" % ts)
    engine.close()
    _make_old(str(tmp_path))
    again = _open(tmp_path)
    first = again._bucket("b").entry("e").blocks[0]
    first.compressing = True
    report = _result(again.backfill())
    assert report["numbered"] == 0  # block 3 waits for block 1: timestamp order
    first.compressing = False
    assert _result(again.backfill())["numbered"] == 4
    assert [_number(again, ts) for ts in (1, 2, 3, 4)] == [1, 2, 3, 4]
