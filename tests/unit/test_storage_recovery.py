"""
Checksums, format versions and start-up recovery: what an open after a
crash keeps, drops, quarantines and tidies up (storage/disk/recovery.py).

A "crash" is an engine that is never closed: its run marker stays, so the
next open is unclean.  Intermediate on-disk states of interrupted
operations are made by hand.
"""

import hashlib
import json
import os
import zlib

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import NotFound
from reduct_twisted.storage import SMALL_RECORD_MAX, StorageEngine
from reduct_twisted.storage.disk.blockfile import FORMAT_NAME, FORMAT_VERSION, PLAIN_VERSION
from reduct_twisted.storage.disk.recovery import MARKER, MTIME_MARGIN
from reduct_twisted.storage.testing import read_content, write_content, write_record

BIG = b"L" * (SMALL_RECORD_MAX + 5)


def _open(path, **kwargs):
    engine = StorageEngine(str(path), Clock(), **kwargs)
    engine.open()
    return engine


def _meta_lines(path):
    with open(path, "rb") as f:
        return [json.loads(line) for line in f]


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _timestamps(engine, entry="e"):
    return [ts for ts, _ in engine.list_records("b", entry, 0, 2**63)]


def _populate(tmp_path):
    """Three small records and a large one in block 1; the engine is left open (crashed)."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"first")
    write_record(engine, "b", "e", 2, b"second")
    write_record(engine, "b", "e", 3, b"third")
    write_record(engine, "b", "e", 4, BIG)
    return engine


# -- checksums and versions -----------------------------------------------------


@pytest.mark.parametrize("digests", [False, True])
def test_every_record_line_carries_the_content_crc(tmp_path, digests):
    """Shared, private and chunked records all store zlib.crc32 of their content;
    with digests kept, every record stores its SHA-256 alone."""
    engine = _open(tmp_path)
    engine.compute_digests(digests)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"small")
    write_record(engine, "b", "e", 2, BIG)
    write_record(engine, "b", "e", 3, b"chunked body", chunked=True)
    write_record(engine, "b", "e", 4, b"")
    lines = _meta_lines(tmp_path / "b" / "e" / "1.meta")
    assert lines[0]["version"] == PLAIN_VERSION == 2 and FORMAT_VERSION == 3
    crcs = {line["ts"]: line.get("crc") for line in lines[1:]}
    expected = {1: b"small", 2: BIG, 3: b"chunked body", 4: b""}
    assert crcs == {ts: None if digests else zlib.crc32(data) for ts, data in expected.items()}
    shas = {line["ts"]: line.get("sha256") for line in lines[1:]}
    assert shas == {ts: hashlib.sha256(data).hexdigest() if digests else None
                    for ts, data in expected.items()}


def test_crc_accumulates_over_chunks(tmp_path):
    """A record written in pieces gets the CRC of the whole content (integrity=off)."""
    engine = _open(tmp_path)
    engine.compute_digests(False)
    engine.create_bucket("b", None)
    alloc = engine.allocate("b", "e", 1, 6, "t", {})
    write_content(alloc, b"abc")
    write_content(alloc, b"def")
    engine.commit(alloc)
    assert _meta_lines(tmp_path / "b" / "e" / "1.meta")[1]["crc"] == zlib.crc32(b"abcdef")


def _write_v1_block(entry_dir, records):
    """A version-1 block 1 as the previous release wrote it (no crc)."""
    os.makedirs(entry_dir, exist_ok=True)
    header = {"k": "h", "format": FORMAT_NAME, "version": 1, "block": 1}
    lines, data = [header], b""
    for ts, content in records:
        lines.append({"k": "r", "ts": ts, "seg": "1.blk", "off": len(data),
                      "size": len(content), "ct": "t", "labels": [["a", "b"]]})
        data += content
    with open(os.path.join(entry_dir, "1.meta"), "w") as f:
        f.write("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    with open(os.path.join(entry_dir, "1.blk"), "wb") as f:
        f.write(data)


@pytest.mark.parametrize("unclean", [False, True])
def test_version_1_files_still_load_and_are_trusted(tmp_path, unclean):
    """v1 records (no crc) load, read back and survive an unclean open
    unchecked; records appended later carry a checksum (their SHA-256) and are checked."""
    _write_v1_block(str(tmp_path / "b" / "e"), [(1, b"one"), (2, b"two")])
    if unclean:
        (tmp_path / MARKER).touch()
    engine = _open(tmp_path)
    assert engine.recovery_report()["unclean"] is unclean
    assert read_content(engine.read("b", "e", 2)) == b"two"
    assert engine.read("b", "e", 1).record.labels == {"a": "b"}
    write_record(engine, "b", "e", 3, b"three")
    lines = _meta_lines(tmp_path / "b" / "e" / "1.meta")
    assert lines[0]["version"] == 1
    assert "crc" not in lines[1] and lines[3]["sha256"] == hashlib.sha256(b"three").hexdigest()
    # Crash, then damage a v1 record: it has no crc to fail, so it stays.
    _flip_byte(tmp_path / "b" / "e" / "1.blk", 0)
    again = _open(tmp_path)
    report = again.recovery_report()
    assert report["unclean"] and report["verified_records"] == 1
    assert report["dropped_records"] == 0
    assert _timestamps(again) == [1, 2, 3]


# -- unclean stop: verification ------------------------------------------------


def _block_files(entry):
    """The names in ``entry`` but its block index (issue #17, a cache written at close)."""
    return sorted(n for n in os.listdir(entry) if n != ".blocks")


def test_open_after_a_clean_close_checks_nothing(tmp_path):
    """The run marker exists while open and is gone after close; no marker, no checks."""
    engine = _populate(tmp_path)
    assert (tmp_path / MARKER).exists()
    engine.close()
    assert not (tmp_path / MARKER).exists()
    again = _open(tmp_path)
    assert again.recovery_report() == {
        "unclean": False, "verified_records": 0, "dropped_records": 0,
        "quarantined_blocks": [], "problems": [], "left_in_place": [],
        # Issue #17: the block was opened from the index the close wrote.
        "block_index": {"rows_used": 1, "blocks_read": 0, "ignored": []},
    }
    assert (tmp_path / MARKER).exists()


def test_unclean_open_drops_a_corrupted_record_and_keeps_the_others(tmp_path):
    """A flipped byte in the shared segment drops exactly that record; its line
    is rewritten out of the .meta; statistics follow; the others read back."""
    _populate(tmp_path)
    _flip_byte(tmp_path / "b" / "e" / "1.blk", len(b"first") + 2)  # inside "second"
    engine = _open(tmp_path)
    report = engine.recovery_report()
    assert (report["unclean"], report["verified_records"], report["dropped_records"]) == (
        True, 4, 1,
    )
    assert report["problems"] == [f"Dropped record 2 of {os.path.join('b', 'e', '1.meta')}: "
                                  "digest mismatch"]  # its SHA-256 is its checksum
    with pytest.raises(NotFound):
        engine.read("b", "e", 2)
    assert [read_content(engine.read("b", "e", ts)) for ts in (1, 3)] == [b"first", b"third"]
    assert engine.read("b", "e", 4).record.size == len(BIG)
    assert [line["ts"] for line in _meta_lines(tmp_path / "b" / "e" / "1.meta")[1:]] == [1, 3, 4]
    assert engine.bucket_info("b")["entries"][0]["record_count"] == 3
    assert not os.path.exists(tmp_path / "b" / "e" / "1.meta.tmp")
    # The timestamp is free again, and the result survives a clean restart.
    write_record(engine, "b", "e", 2, b"again")
    stats = engine.bucket_info("b")
    engine.close()
    final = _open(tmp_path)
    assert final.bucket_info("b") == stats
    assert read_content(final.read("b", "e", 2)) == b"again"


def test_unclean_open_drops_a_corrupted_private_record(tmp_path):
    """A damaged large record is dropped and its private segment discarded."""
    _populate(tmp_path)
    _flip_byte(tmp_path / "b" / "e" / "1-4.blk", 1000)
    engine = _open(tmp_path)
    assert engine.recovery_report()["dropped_records"] == 1
    assert _timestamps(engine) == [1, 2, 3]
    assert not (tmp_path / "b" / "e" / "1-4.blk").exists()


@pytest.mark.parametrize("damage", ["truncate shared", "remove private"])
def test_unclean_open_drops_records_whose_content_is_missing(tmp_path, damage):
    """A record reaching past its segment's end (or without its file) is dropped."""
    _populate(tmp_path)
    entry = tmp_path / "b" / "e"
    if damage == "truncate shared":
        os.truncate(entry / "1.blk", len(b"firstsecond") + 1)
        lost = [3]
    else:
        os.unlink(entry / "1-4.blk")
        lost = [4]
    engine = _open(tmp_path)
    report = engine.recovery_report()
    assert report["dropped_records"] == 1
    assert "content missing" in report["problems"][0]
    assert _timestamps(engine) == [ts for ts in (1, 2, 3, 4) if ts not in lost]


def test_every_record_of_an_entire_block_dropped_removes_the_block(tmp_path):
    """A block left without records is gone; the entry stays, empty (spec
    1.20 §5.9: entries without records are kept)."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"only")
    _flip_byte(tmp_path / "b" / "e" / "1.blk", 0)
    again = _open(tmp_path)
    assert [(e["name"], e["record_count"]) for e in again.bucket_info("b")["entries"]] == [
        ("e", 0)]
    assert os.listdir(tmp_path / "b" / "e") == []


def test_only_blocks_changed_since_the_marker_are_checked(tmp_path):
    """Files older than the run marker (minus the margin) are not read again."""
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 1})
    write_record(engine, "b", "e", 1, b"old")
    write_record(engine, "b", "e", 2, b"new")
    entry = tmp_path / "b" / "e"
    _flip_byte(entry / "1.blk", 0)
    _flip_byte(entry / "2.blk", 0)
    marker_time = os.stat(tmp_path / MARKER).st_mtime
    for name in ("1.blk", "1.meta"):
        old = marker_time - MTIME_MARGIN - 10
        os.utime(entry / name, (old, old))
    again = _open(tmp_path)
    report = again.recovery_report()
    assert (report["verified_records"], report["dropped_records"]) == (1, 1)
    assert _timestamps(again) == [1]  # block 1 was not changed in the crashed run


def test_the_marker_is_renewed_after_recovery(tmp_path):
    """What one unclean open checked is not checked again by the next."""
    _populate(tmp_path)
    marker = tmp_path / MARKER
    old = os.stat(marker).st_mtime - 3600
    os.utime(marker, (old, old))
    engine = _open(tmp_path)
    assert engine.recovery_report()["verified_records"] == 4
    assert os.stat(marker).st_mtime > old + 3000


# -- damaged blocks --------------------------------------------------------------


def _two_blocks(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in (1, 2, 3, 4):
        write_record(engine, "b", "e", ts, b"record %d" % ts)
    write_record(engine, "b", "e", 5, BIG)
    engine.close()
    return tmp_path / "b" / "e"


@pytest.mark.parametrize("where", ["middle", "header"])
def test_a_damaged_meta_quarantines_its_block_and_the_entry_keeps_serving(tmp_path, where):
    """Garbage inside a .meta (not a torn tail) moves the block aside; the
    entry's other blocks read, query and take writes as before."""
    entry = _two_blocks(tmp_path)
    meta = entry / "1.meta"
    lines = meta.read_bytes().split(b"\n")
    index = 1 if where == "middle" else 0
    lines[index] = b'{"k":"r","ts":1,"seg":"1.blk"garbage'
    meta.write_bytes(b"\n".join(lines))
    engine = _open(tmp_path)
    quarantine = tmp_path / ".quarantine" / "b" / "e"
    assert sorted(os.listdir(quarantine)) == ["1.blk", "1.meta"]
    assert _block_files(entry) == ["3.blk", "3.meta", "5-5.blk", "5.meta"]
    report = engine.recovery_report()
    assert report["quarantined_blocks"] == [str(quarantine / "1.meta")]
    assert report["problems"][0].startswith(
        f"Quarantined damaged block {os.path.join('b', 'e')}/1: Corrupt block metadata"
    )
    assert _timestamps(engine) == [3, 4, 5]
    assert read_content(engine.read("b", "e", 4)) == b"record 4"
    qid = engine.create_query("b", "e", start=0)
    assert engine.query_next("b", "e", qid).record.ts == 3
    write_record(engine, "b", "e", 1, b"rewritten")
    assert read_content(engine.read("b", "e", 1)) == b"rewritten"
    engine.close()
    # A second damaged block of the same id does not overwrite the first one.
    meta = entry / "1.meta"
    meta.write_bytes(b"\x00garbage\n" + meta.read_bytes())
    _open(tmp_path)
    assert sorted(os.listdir(quarantine)) == ["1.blk", "1.blk.1", "1.meta", "1.meta.1"]


def test_an_interrupted_quarantine_is_finished(tmp_path):
    """Data files moved, .meta still in place: the next open moves the .meta."""
    entry = _two_blocks(tmp_path)
    quarantine = tmp_path / ".quarantine" / "b" / "e"
    quarantine.mkdir(parents=True)
    os.rename(entry / "1.blk", quarantine / "1.blk")
    (entry / "1.meta").write_bytes(b"garbage\n")
    engine = _open(tmp_path)
    assert sorted(os.listdir(quarantine)) == ["1.blk", "1.meta"]
    assert _timestamps(engine) == [3, 4, 5]


# -- leftovers of interrupted operations ----------------------------------------------


def test_interrupted_rotation_leaves_nothing_visible(tmp_path):
    """A new block's segment without .meta, with a torn header, or with a
    header only: none of them shows up; their files are trashed."""
    entry = _two_blocks(tmp_path)
    (entry / "7.blk").write_bytes(b"content of a record never committed")
    (entry / "8.blk").write_bytes(b"x")
    (entry / "8.meta").write_bytes(b'{"k":"h","format":"reduct-twi')
    (entry / "9.meta").write_bytes(
        json.dumps({"k": "h", "format": FORMAT_NAME, "version": 2, "block": 9}).encode() + b"\n"
        + b'{"k":"r","ts":9,"seg":"9.blk","off":0,"si'
    )
    (entry / "9.blk").write_bytes(b"y")
    (tmp_path / MARKER).touch()
    engine = _open(tmp_path)
    assert _timestamps(engine) == [1, 2, 3, 4, 5]
    assert _block_files(entry) == ["1.blk", "1.meta", "3.blk", "3.meta", "5-5.blk",
                                         "5.meta"]
    assert engine.recovery_report()["problems"] == []


def test_interrupted_eviction_or_removal_leaves_no_partial_block(tmp_path):
    """A removal trashes the .meta first: segments left behind are orphans,
    and whatever already reached .trash is discarded."""
    entry = _two_blocks(tmp_path)
    trash = tmp_path / ".trash"
    os.rename(entry / "5.meta", trash / "1-5.meta")   # eviction of block 5, half done
    os.rename(entry / "1.meta", trash / "2-1.meta")   # and of block 1
    os.rename(entry / "1.blk", trash / "3-1.blk")
    engine = _open(tmp_path)
    assert _timestamps(engine) == [3, 4]
    assert _block_files(entry) == ["3.blk", "3.meta"]
    assert os.listdir(trash) == []


def test_leftover_temporary_files_are_trashed(tmp_path):
    """An interrupted .meta rewrite or settings save leaves a .tmp file: it goes."""
    entry = _two_blocks(tmp_path)
    (entry / "1.meta.tmp").write_bytes(b"half a rewrite")
    (tmp_path / "b" / "settings.json.tmp").write_text("{")
    engine = _open(tmp_path)
    assert not (entry / "1.meta.tmp").exists()
    assert sorted(os.listdir(tmp_path / "b")) == ["e", "settings.json"]
    assert _timestamps(engine) == [1, 2, 3, 4, 5]


def test_half_created_buckets_do_not_appear(tmp_path):
    """A bucket staged in .trash, or a bucket directory with neither
    settings nor records (and only our names), is gone after open; a bucket
    with records but no settings stays."""
    (tmp_path / ".trash" / "4-staged").mkdir(parents=True)
    (tmp_path / ".trash" / "4-staged" / "settings.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e").mkdir()
    _write_v1_block(str(tmp_path / "nosettings" / "e"), [(1, b"x")])
    engine = _open(tmp_path)
    assert [b["name"] for b in engine.list_buckets()] == ["nosettings"]
    assert sorted(os.listdir(tmp_path)) == [".reduct-twisted", MARKER, ".trash", "nosettings"]
    assert os.listdir(tmp_path / ".trash") == []


def test_empty_settings_file_falls_back_to_defaults(tmp_path):
    """A settings file emptied by a crash does not stop the start; it is reported."""
    engine = _open(tmp_path)
    engine.create_bucket("b", {"quota_type": "FIFO", "quota_size": 5})
    (tmp_path / "b" / "settings.json").write_text("")
    again = _open(tmp_path)
    assert again.bucket_info("b")["settings"]["quota_type"] == "NONE"
    assert "Empty bucket settings" in again.recovery_report()["problems"][0]


def test_removal_trashes_the_meta_before_the_segments(tmp_path):
    """Eviction and the abort of a block's last record move the .meta away
    first, so a crash half-way leaves orphans, never a block without data."""
    moved = []
    engine = _open(tmp_path, discard=lambda paths: moved.extend(paths))
    engine.create_bucket("b", {"max_block_records": 2, "quota_type": "FIFO",
                               "quota_size": 10**9})
    write_record(engine, "b", "e", 1, b"a")
    write_record(engine, "b", "e", 2, BIG)
    write_record(engine, "b", "e", 3, b"c")
    engine.update_bucket("b", {"quota_size": 100})
    assert engine.enforce_quotas() == 1
    assert [os.path.basename(p).split("-", 1)[1] for p in moved] == ["1.meta", "1.blk", "1-2.blk"]


@pytest.mark.parametrize("garbage", [
    b"\x00" * 64 + b"\n",
    b"[" * 100_000 + b"\n",
    b'{"k":"r","ts":-1,"seg":"1.blk","off":0,"size":1,"ct":"t","labels":[]}\n',
    b'{"k":"r","ts":2,"seg":"7.blk","off":0,"size":1,"ct":"t","labels":[]}\n',
    b'{"k":"r","ts":2,"seg":"1.blk","off":0,"size":1,"ct":"t","labels":[],"crc":-5}\n',
    b'{"k":"h","format":"reduct-twisted-block","version":2,"block":1}\n',
])
def test_any_bad_complete_line_is_damage(tmp_path, garbage):
    """Whatever a complete bad line holds, open does not fail: the block is quarantined."""
    entry = _two_blocks(tmp_path)
    meta = entry / "1.meta"
    meta.write_bytes(meta.read_bytes() + garbage)
    engine = _open(tmp_path)
    assert len(engine.recovery_report()["quarantined_blocks"]) == 1
    assert _timestamps(engine) == [3, 4, 5]
