"""
Which files are ours (``storage/disk/layout.py``): the format marker, the
read-only classification of a data directory, and names that are not ours
left in place by open, recovery and removals (issue #12).
"""

import hashlib
import json
import os

import pytest
from twisted.internet.task import Clock

from reduct_twisted.auth.tokens import AUTH_FILE
from reduct_twisted.replication.manager import LOG_DIR, REGISTRY_FILE
from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.disk import layout
from reduct_twisted.storage.disk.layout import DataDirRefused
from reduct_twisted.storage.disk.recovery import MARKER
from reduct_twisted.storage.testing import read_content, write_record


def _open(path, **kwargs):
    engine = StorageEngine(str(path), Clock(), **kwargs)
    engine.open()
    return engine


def snapshot(root):
    """Every path below ``root`` with its kind, size, mtime and content hash."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            digest = None
            if name in files:
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            found[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return found


def upstream_like(root):
    """A directory laid out like upstream ReductStore's (arbitrary bytes)."""
    entry = root / "b" / "e"
    entry.mkdir(parents=True)
    (root / "b" / "bucket.settings").write_bytes(b"\x0a\x03\x08\x80\x40")
    (entry / "blocks.idx").write_bytes(b"\x0a\x02\x08\x01")
    (entry / "1.blk").write_bytes(b"upstream data")
    (entry / "1.meta").write_bytes(b"\x08\x01\x12\x04prot")
    (entry / "2.blk.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    return root


def _left(engine):
    return engine.recovery_report()["left_in_place"]


# -- the names -----------------------------------------------------------------------


def test_the_names_of_other_modules_come_from_layout():
    """The token file, the registry and the run marker are named in one place."""
    assert AUTH_FILE == layout.AUTH_FILE and REGISTRY_FILE == layout.REGISTRY_FILE
    assert LOG_DIR == layout.REPLICATION_LOG_DIR and MARKER == layout.RUN_MARKER
    assert {AUTH_FILE, REGISTRY_FILE, LOG_DIR, ".running", ".trash", ".quarantine", ".lock",
            ".reserve", ".reduct-twisted"} <= layout.TOP_LEVEL_NAMES


@pytest.mark.parametrize("name, ours", [
    ("1.meta", True), ("1.blk", True), ("1-7.blk", True), ("1.meta.tmp", True),
    ("1.blk.zst", False), ("blocks.idx", False), ("notes.tmp", False), ("1.metax", False),
    ("x.meta", False), ("1-2.zst", True), ("1.zst", False), ("1-2.meta", False),
])
def test_entry_file_names(name, ours):
    """Only block files (and one being replaced) are ours in an entry."""
    assert layout.is_entry_file(name) is ours


@pytest.mark.parametrize("name, ours", [
    (".auth.json", True), (".auth.json.k2j3_x.tmp", True), (".replications.json.a.tmp", True),
    (".reduct-twisted.tmp", True), (".lock", True), (".reserve", True),
    (".auth.json.bak", False), (".other", False), ("README", False),
])
def test_top_level_names(name, ours):
    """The dot names the daemon writes at the top, and their temporary files."""
    assert layout.is_top_level_name(name) is ours


# -- classification ------------------------------------------------------------------


def test_missing_and_empty_directories_are_empty(tmp_path):
    assert layout.classify(str(tmp_path / "nothing")) == layout.EMPTY
    assert layout.classify(str(tmp_path)) == layout.EMPTY


def test_an_opened_directory_is_marked(tmp_path):
    """The first open writes the marker: JSON with format and version."""
    _open(tmp_path / "data").close()
    with open(tmp_path / "data" / ".reduct-twisted") as f:
        assert json.load(f) == {"format": "reduct-twisted", "version": 3}
    assert not (tmp_path / "data" / ".reduct-twisted.tmp").exists()
    assert layout.classify(str(tmp_path / "data")) == layout.MARKED


def test_a_version_1_directory_opens_and_is_marked_3(tmp_path):
    """Version 1 (flat entries) is a subset of version 3: it opens, keeps its
    records and gets the version-3 marker."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"one")
    engine.close()
    (tmp_path / ".reduct-twisted").write_text('{"format": "reduct-twisted", "version": 1}\n')
    assert layout.classify(str(tmp_path)) == layout.OUTDATED
    again = _open(tmp_path)
    assert read_content(again.read("b", "e", 1)) == b"one"
    with open(tmp_path / ".reduct-twisted") as f:
        assert json.load(f) == {"format": "reduct-twisted", "version": 3}
    assert layout.classify(str(tmp_path)) == layout.MARKED


def test_nested_entry_directories_are_ours(tmp_path):
    """Version 2: child entry directories (valid segments, ``$meta``) inside
    entry directories are ours at any depth; other directories are not, and
    a ``$meta`` entry has no children."""
    build = _files("b/settings.json", "b/a/1.meta", "b/a/b/c/2.meta", "b/a/$meta/3.meta",
                   "b/$meta/4.meta", "b/a/b/x.y/", "b/a/$meta/sub/", "b/a/b/c/notes.txt")
    build(tmp_path)
    assert layout.unknown_in_bucket(str(tmp_path / "b")) == [
        "a/$meta/sub", "a/b/c/notes.txt", "a/b/x.y"]
    assert layout.unknown_in_entry(str(tmp_path / "b" / "a" / "b")) == ["c/notes.txt", "x.y"]
    assert sorted(layout.own_files(str(tmp_path / "b"), True)) == sorted(
        str(tmp_path / "b" / p) for p in (
            "$meta/4.meta", "a/1.meta", "a/$meta/3.meta", "a/b/c/2.meta", "settings.json"))


def test_our_layout_without_marker_is_legacy_and_gets_the_marker(tmp_path):
    """What an earlier version wrote (no marker) opens, keeps its records and
    is marked; so is a first start killed before its marker."""
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"one")
    engine.close()
    os.remove(tmp_path / ".reduct-twisted")
    (tmp_path / ".lock").write_text("")
    (tmp_path / ".reduct-twisted.tmp").write_text('{"form')
    (tmp_path / ".auth.json").write_text("{}")
    (tmp_path / ".replications.json.x1.tmp").write_text("{")
    (tmp_path / ".replications" / "r").mkdir(parents=True)
    (tmp_path / "b" / "e" / "5.meta.tmp").write_text("half")
    (tmp_path / "empty").mkdir()
    assert layout.classify(str(tmp_path)) == layout.LEGACY
    again = _open(tmp_path)
    assert layout.classify(str(tmp_path)) == layout.MARKED
    assert read_content(again.read("b", "e", 1)) == b"one"
    assert _left(again) == []


def test_only_a_lock_file_is_legacy(tmp_path):
    """A first start killed right after taking its lock leaves only .lock."""
    (tmp_path / ".lock").write_text("")
    assert layout.classify(str(tmp_path)) == layout.LEGACY


def _files(*paths):
    def build(root):
        for path in paths:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            if path.endswith("/"):
                (root / path).mkdir()
            else:
                (root / path).write_bytes(b"x")
    return build


@pytest.mark.parametrize("build", [
    upstream_like,
    _files("notes.txt"),
    _files(".git/"),
    _files("b/settings.json", "b/photo.jpg"),
    _files("b/settings.json", "b/e/x"),
    _files("b/e/sub.x/"),
    _files("b/settings.json", "b/e/1.meta", "b/e/blocks.idx"),
], ids=["upstream", "top file", "top dot dir", "bucket file", "entry file", "entry dir",
        "upstream index"])
def test_anything_else_is_refused_and_left_untouched(tmp_path, build):
    """Not empty, no marker, not our layout: open refuses with one line
    naming a foreign path and changes nothing (not even a .lock)."""
    build(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(DataDirRefused) as info:
        _open(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "not a reduct-twisted data directory" in message
    assert str(tmp_path) in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("content, reason", [
    ('{"format": "reduct-twisted", "version": 4}', "newer reduct-twisted"),
    ('{"format": "reductstore", "version": 1}', "not 'reduct-twisted'"),
    ('{"format": "reduct-twisted", "version": "1"}', "not 'reduct-twisted'"),
    ("", "not valid"),
    ("[1]", "not valid"),
])
def test_a_marker_not_ours_or_newer_is_refused(tmp_path, content, reason):
    _open(tmp_path).close()
    (tmp_path / ".reduct-twisted").write_text(content)
    before = snapshot(tmp_path)
    with pytest.raises(DataDirRefused, match=reason):
        _open(tmp_path)
    assert snapshot(tmp_path) == before


def test_marker_write_is_flushed_before_and_after_the_rename(tmp_path):
    """tmp file flushed, renamed, directory flushed: a crash leaves no marker or all of it."""
    calls = []

    def sync(files, dirs):
        calls.append((sorted(files), sorted(dirs)))
        if files == [str(tmp_path / ".reduct-twisted.tmp")]:
            assert not (tmp_path / ".reduct-twisted").exists()

    layout.write_marker(str(tmp_path), sync, None)
    assert calls == [([str(tmp_path / ".reduct-twisted.tmp")], []), ([], [str(tmp_path)])]
    assert os.listdir(tmp_path) == [".reduct-twisted"]


# -- names that are not ours are left in place ---------------------------------------


def _marked_bucket(tmp_path):
    engine = _open(tmp_path)
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"one")
    engine.close()
    return tmp_path / "b", tmp_path / "b" / "e"


def test_unknown_files_at_every_level_stay_and_are_reported_once(tmp_path):
    """Unknown names at the top, in a bucket and in an entry (next to an
    orphan segment, which goes) stay; one line per directory."""
    bucket, entry = _marked_bucket(tmp_path)
    (tmp_path / "README").write_text("mine")
    (tmp_path / "-bad name").mkdir()
    (bucket / "bucket.settings").write_bytes(b"\x01")
    (entry / "blocks.idx").write_bytes(b"\x02")
    (entry / "2.blk.zst").write_bytes(b"\x03")
    (entry / "notes.tmp").write_text("not a block file being replaced")
    (entry / "9.blk").write_bytes(b"orphan segment of ours")
    engine = _open(tmp_path)
    left = sorted(_left(engine))
    assert len(left) == 3
    assert left[0].startswith("Left in place in .: 2 ") and "'README'" in left[0]
    assert left[1].startswith("Left in place in b/e: 3 ") and "'blocks.idx'" in left[1]
    assert left[2].startswith("Left in place in b: 1 ") and "'bucket.settings'" in left[2]
    for path in ("README", "-bad name", "b/bucket.settings", "b/e/blocks.idx", "b/e/2.blk.zst",
                 "b/e/notes.tmp"):
        assert (tmp_path / path).exists(), path
    assert not (entry / "9.blk").exists()
    assert read_content(engine.read("b", "e", 1)) == b"one"


def test_a_directory_without_settings_holding_unknown_files_is_untouched(tmp_path):
    """A bucket directory without settings.json used to be trashed when it
    had no records; with names that are not ours it is not even loaded."""
    _open(tmp_path).close()
    (tmp_path / "nosettings" / "e").mkdir(parents=True)
    (tmp_path / "nosettings" / "e" / "blocks.idx").write_bytes(b"\x01")
    (tmp_path / "nosettings" / "e" / "1.blk").write_bytes(b"would be an orphan")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.bin").write_bytes(b"\x02")
    before = snapshot(tmp_path / "nosettings"), snapshot(tmp_path / "other")
    engine = _open(tmp_path)
    assert engine.list_buckets() == []
    assert (snapshot(tmp_path / "nosettings"), snapshot(tmp_path / "other")) == before
    assert [line.split(":")[0] for line in _left(engine)] == [
        "Left in place in nosettings", "Left in place in other"]


def test_an_entry_without_records_but_unknown_files_stays(tmp_path):
    """Used to be trashed whole with its unknown files."""
    bucket, _ = _marked_bucket(tmp_path)
    (bucket / "x").mkdir()
    (bucket / "x" / "keep.me").write_text("mine")
    (bucket / "y").mkdir()
    engine = _open(tmp_path)
    assert (bucket / "x" / "keep.me").read_text() == "mine"
    # Spec 1.20 §2.3/§5.9: an entry without records is an entry, kept (it
    # used to be tidied away).
    assert (bucket / "y").is_dir()
    assert [e["name"] for e in engine.bucket_info("b")["entries"]] == ["e", "x", "y"]


def test_a_damaged_block_moves_without_its_unknown_siblings(tmp_path):
    """Quarantine moves the block's own files only."""
    _, entry = _marked_bucket(tmp_path)
    (entry / "1.meta").write_text("not a header\n")
    (entry / "1.meta.bak").write_text("mine")
    (entry / "1.blk.zst").write_bytes(b"\x04")
    engine = _open(tmp_path)
    assert sorted(os.listdir(tmp_path / ".quarantine" / "b" / "e")) == ["1.blk", "1.meta"]
    assert sorted(os.listdir(entry)) == ["1.blk.zst", "1.meta.bak"]
    assert len(_left(engine)) == 1


@pytest.mark.parametrize("remove", [
    lambda engine: engine.remove_entry("b", "e"),
    lambda engine: engine.remove_bucket("b"),
])
def test_removing_leaves_unknown_files_and_trashes_ours(tmp_path, remove):
    """A removal by the API trashes our files; unknown ones and their
    directories stay (and the bucket or entry is gone from the engine)."""
    bucket, entry = _marked_bucket(tmp_path)
    (entry / "notes.txt").write_text("mine")
    engine = _open(tmp_path)
    remove(engine)
    assert sorted(os.listdir(entry)) == ["notes.txt"]
    assert "names not ours" in _left(engine)[-1]
    again = _open(tmp_path)
    with pytest.raises(Exception):
        again.read("b", "e", 1)
    assert (entry / "notes.txt").read_text() == "mine"


def test_fifo_emptying_an_entry_leaves_unknown_files(tmp_path):
    """An entry emptied by FIFO eviction is kept, empty (spec 1.20 §5.9;
    it used to be dropped); its unknown files stay."""
    engine = _open(tmp_path)
    engine.create_bucket("b", {"quota_type": "FIFO", "quota_size": 1000})
    write_record(engine, "b", "old", 1, b"x" * 400)
    (tmp_path / "b" / "old" / "notes.txt").write_text("mine")
    write_record(engine, "b", "new", 2, b"y" * 400)
    write_record(engine, "b", "new", 3, b"z" * 400)
    entries = engine.bucket_info("b")["entries"]
    assert [(e["name"], e["record_count"]) for e in entries] == [("new", 2), ("old", 0)]
    assert sorted(os.listdir(tmp_path / "b" / "old")) == [".numbers", "notes.txt"]
