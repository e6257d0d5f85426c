"""
What survives a restart, what is cleaned up at open, and how removal goes
through ``.trash`` and the injected ``discard``.
"""

import hashlib
import json
import os

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import InternalError, NotFound
from reduct_twisted.storage import SMALL_RECORD_MAX, StorageEngine
from reduct_twisted.storage.disk.blockfile import FORMAT_NAME, FORMAT_VERSION, PLAIN_VERSION
from reduct_twisted.storage.testing import read_content, write_content, write_record


class RecordingDiscard:
    """A ``discard`` that only records what it was asked to delete."""

    def __init__(self):
        self.calls = []

    def __call__(self, paths):
        self.calls.append(list(paths))

    @property
    def paths(self):
        return [p for call in self.calls for p in call]


def _open(path, **kwargs):
    engine = StorageEngine(str(path), Clock(), **kwargs)
    engine.open()
    return engine


def _populate(engine):
    engine.create_bucket("b", {"max_block_records": 2, "quota_type": "FIFO", "quota_size": 10**9})
    engine.create_bucket("other", None)
    write_record(engine, "b", "e", 1000, b"one", "text/plain", {"z": "1", "a": "2"})
    write_record(engine, "b", "e", 2000, b"two")
    write_record(engine, "b", "e", 3000, b"L" * (SMALL_RECORD_MAX + 5))
    write_record(engine, "b", "e", 1500, b"belated")
    write_record(engine, "b", "f", 10, b"chunked", chunked=True)


def test_reopen_keeps_records_statistics_and_settings(tmp_path):
    """After close and a fresh open every record, statistic and setting is back."""
    engine = _open(tmp_path)
    _populate(engine)
    before = (engine.list_buckets(), engine.bucket_info("b"), engine.bucket_info("other"))
    blocks = engine.block_stats("b", "e")
    engine.close()

    again = _open(tmp_path)
    assert (again.list_buckets(), again.bucket_info("b"), again.bucket_info("other")) == before
    assert again.block_stats("b", "e") == [dict(b, loaded=False) for b in blocks]
    view = again.read("b", "e", 1000)
    assert (read_content(view), view.record.content_type) == (b"one", "text/plain")
    assert list(view.record.labels.items()) == [("z", "1"), ("a", "2")]
    assert read_content(again.read("b", "e", 1500)) == b"belated"
    assert again.read("b", "e", 3000).record.size == SMALL_RECORD_MAX + 5
    assert read_content(again.read("b", "f", 10)) == b"chunked"
    # The shared tail is recovered: a new record goes after the old ones.
    write_record(again, "b", "e", 1600, b"more")
    assert again.read("b", "e", 1600).record.offset == len(b"one" + b"two" + b"belated")


def test_meta_file_format(tmp_path):
    """A .meta file starts with a versioned header and has one line per record."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 5, b"abc", "t/x", {"k": "v"})
    with open(tmp_path / "b" / "e" / "5.meta") as f:
        lines = [json.loads(line) for line in f]
    assert lines == [
        {"k": "h", "format": FORMAT_NAME, "version": PLAIN_VERSION, "block": 5},
        {"k": "r", "ts": 5, "seg": "5.blk", "off": 0, "size": 3, "ct": "t/x",
         "labels": [["k", "v"]], "n": 1,
         "sha256": hashlib.sha256(b"abc").hexdigest()},
    ]


def test_started_records_are_not_persisted(tmp_path):
    """A record still being written at shutdown is gone after a restart and its
    bytes are cut from the shared segment."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"kept")
    alloc = engine.allocate("b", "e", 2, 5, "t", {})
    write_content(alloc, b"lost!")
    engine.close()
    again = _open(tmp_path)
    assert again.bucket_info("b")["entries"][0]["record_count"] == 1
    assert os.path.getsize(tmp_path / "b" / "e" / "1.blk") == 4
    with pytest.raises(NotFound):
        again.read("b", "e", 2)


def test_torn_metadata_line_is_ignored_and_cut(tmp_path):
    """A last .meta line without newline (a torn append) is dropped at open."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"x")
    meta = tmp_path / "b" / "e" / "1.meta"
    good = meta.read_bytes()
    meta.write_bytes(good + b'{"k":"r","ts":2,"se')
    again = _open(tmp_path)
    assert meta.read_bytes() == good
    write_record(again, "b", "e", 2, b"y")
    assert read_content(_open(tmp_path).read("b", "e", 2)) == b"y"


def test_newer_format_version_refuses_to_open(tmp_path):
    """A header of a newer format version makes open fail loudly (a newer
    writer's data is neither guessed at nor moved away)."""
    entry = tmp_path / "b" / "e"
    entry.mkdir(parents=True)
    header = {"k": "h", "format": FORMAT_NAME, "version": FORMAT_VERSION + 1, "block": 1}
    (entry / "1.meta").write_text(json.dumps(header) + "\n")
    with pytest.raises(InternalError) as info:
        _open(tmp_path)
    assert f"has format version {FORMAT_VERSION + 1}" in info.value.message


@pytest.mark.parametrize(
    "header",
    [
        {"k": "h", "format": "other", "version": FORMAT_VERSION, "block": 1},
        {"k": "h", "format": FORMAT_NAME, "version": FORMAT_VERSION, "block": 2},
        {"k": "h", "format": FORMAT_NAME, "version": 0, "block": 1},
    ],
)
def test_foreign_header_quarantines_the_block(tmp_path, header):
    """A header of another format or block is a damaged block: moved aside, not served."""
    entry = tmp_path / "b" / "e"
    entry.mkdir(parents=True)
    (entry / "1.meta").write_text(json.dumps(header) + "\n")
    engine = _open(tmp_path)
    assert engine.list_buckets() == []
    assert (tmp_path / ".quarantine" / "b" / "e" / "1.meta").exists()
    assert engine.recovery_report()["quarantined_blocks"] == [
        str(tmp_path / ".quarantine" / "b" / "e" / "1.meta")
    ]


def test_unknown_line_kind_quarantines_the_block(tmp_path):
    """The reader dispatches on the line kind; a kind it does not know is damage."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"x")
    with open(tmp_path / "b" / "e" / "1.meta", "a") as f:
        f.write('{"k":"future","ts":1}\n')
    again = _open(tmp_path)
    # The entry stays, empty (spec 1.20 §5.9: entries without records are kept).
    assert [(e["name"], e["record_count"]) for e in again.bucket_info("b")["entries"]] == [
        ("e", 0)]
    assert sorted(os.listdir(tmp_path / ".quarantine" / "b" / "e")) == ["1.blk", "1.meta"]


def test_open_discards_orphans_and_empties_trash(tmp_path):
    """Private segments and data files without metadata, and old trash, are discarded."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"x")
    write_record(engine, "b", "e", 2, b"y" * (SMALL_RECORD_MAX + 1))
    entry = tmp_path / "b" / "e"
    (entry / "1-7.blk").write_bytes(b"orphan private segment")
    (entry / "9.blk").write_bytes(b"shared segment without metadata")
    (tmp_path / ".trash" / "3-old").mkdir()
    (tmp_path / "b" / "empty").mkdir()
    discard = RecordingDiscard()
    again = _open(tmp_path, discard=discard)
    assert discard.calls[0] == [str(tmp_path / ".trash" / "3-old")]
    trashed = sorted(os.path.basename(p) for p in discard.paths[1:])
    assert trashed == ["4-1-7.blk", "5-9.blk"]
    assert sorted(os.listdir(entry)) == ["1-2.blk", "1.blk", "1.meta"]
    # An empty entry directory is an empty entry (spec 1.20 §2.3, §5.9), kept.
    assert again.bucket_info("b")["info"]["entry_count"] == 2


def test_remove_bucket_goes_through_trash(tmp_path):
    """Removing a bucket renames it into .trash and hands it to discard; a new
    bucket of the same name can be created at once."""
    discard = RecordingDiscard()
    engine = _open(tmp_path, discard=discard)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"x")
    engine.remove_bucket("b")
    assert not (tmp_path / "b").exists()
    [[trashed]] = discard.calls
    assert os.path.dirname(trashed) == str(tmp_path / ".trash")
    assert os.path.exists(os.path.join(trashed, "e", "1.blk"))
    with pytest.raises(NotFound) as info:
        engine.remove_bucket("b")
    assert info.value.message == "Bucket 'b' is not found"
    engine.create_bucket("b", None)
    assert engine.bucket_info("b")["entries"] == []
    assert not engine.has_bucket("x") and engine.has_bucket("b")


def test_in_flight_write_fails_after_bucket_removal(tmp_path):
    """A write allocated before its bucket was removed fails with 404 on commit."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    small = engine.allocate("b", "e", 1, 2, "t", {})
    large = engine.allocate("b", "e", 2, None, "t", {})
    write_content(small, b"ab")
    engine.remove_bucket("b")
    engine.create_bucket("b", None)
    for alloc in (small, large):
        with pytest.raises(NotFound) as info:
            engine.commit(alloc)
        assert info.value.message == "Bucket 'b' is not found"
    assert not os.path.exists(large.path)
    assert engine.bucket_info("b")["entries"] == []
    engine.abort(small)  # still idempotent


def test_longest_names_can_be_trashed(tmp_path):
    """Buckets and entries with 255-character names can be removed and dropped."""
    engine = _open(tmp_path)
    long_name = "n" * 255
    engine.create_bucket(long_name, None)
    alloc = engine.allocate(long_name, long_name, 1, 1, "t", {})
    engine.abort(alloc)  # drops the new entry directory
    write_record(engine, long_name, long_name, 2, b"x")
    engine.remove_bucket(long_name)
    assert engine.list_buckets() == []
    assert os.listdir(tmp_path / ".trash") == []


def test_unicode_metadata_round_trips(tmp_path):
    """Non-ASCII labels and content types survive a restart unchanged."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    labels = {"ключ": "значение ✓", "quote": 'a"b\nc', "bad": "\udcff"}
    write_record(engine, "b", "e", 1, b"x", "text/plain; charset=utf-8", labels)
    size = engine.bucket_info("b")["info"]["size"]
    engine.close()
    again = _open(tmp_path)
    view = again.read("b", "e", 1)
    assert (view.record.labels, view.record.content_type) == (labels, "text/plain; charset=utf-8")
    assert again.bucket_info("b")["info"]["size"] == size


def test_every_deletion_goes_through_discard(tmp_path):
    """FIFO eviction and aborted private segments are renamed into .trash and
    handed to discard; nothing is unlinked inline.  The entry FIFO empties
    stays (spec 1.20 §5.9)."""
    discard = RecordingDiscard()
    engine = _open(tmp_path, discard=discard)
    engine.create_bucket("b", {"quota_type": "FIFO", "quota_size": 10**9, "max_block_records": 1})
    write_record(engine, "b", "e", 1, b"x" * 10)
    write_record(engine, "b", "e", 2, b"y" * 10)
    alloc = engine.allocate("b", "e", 3, None, "t", {})
    write_content(alloc, b"chunk")
    engine.abort(alloc)
    engine.update_bucket("b", {"quota_size": 1})
    assert engine.enforce_quotas() == 2
    trash = str(tmp_path / ".trash")
    assert all(os.path.dirname(p) == trash for p in discard.paths)
    names = sorted(os.path.basename(p).split("-", 1)[1] for p in discard.paths)
    assert names == ["1.blk", "1.meta", "2.blk", "2.meta", "3-3.blk"]
    assert sorted(os.listdir(trash)) == sorted(os.path.basename(p) for p in discard.paths)
    assert [e["record_count"] for e in engine.bucket_info("b")["entries"]] == [0]
