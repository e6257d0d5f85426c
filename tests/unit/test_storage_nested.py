"""
Hierarchical entries and ``$meta`` attachment entries in the storage engine
(spec 1.20 §2, §3.1, §5.9): parents, the directory tree, loading it again,
removal and rename of a parent, the ``$meta`` rules and the query helper.
"""

import os

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import Conflict, NotFound, UnprocessableEntity
from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.meta import effective_exclude
from reduct_twisted.storage.testing import read_content, write_content, write_record

OCTET = "application/octet-stream"


def _open(path):
    engine = StorageEngine(str(path), Clock())
    engine.open()
    return engine


def _names(engine, bucket="b"):
    return [e["name"] for e in engine.bucket_info(bucket)["entries"]]


def _all(engine, bucket="b"):
    """Every entry, $meta ones included: name -> record count."""
    owner = engine._buckets[bucket]
    return {n: e.record_count for n, e in owner.entries.items()}


@pytest.fixture
def tree(engine):
    engine.create_bucket("b", None)
    write_record(engine, "b", "a/b/c", 1, b"abc")
    write_record(engine, "b", "a/x", 2, b"ax")
    write_record(engine, "b", "a/b/$meta", 3, b"{}", labels={"key": "k"})
    write_record(engine, "b", "ab", 4, b"ab")
    return engine


def test_parents_are_directories_and_entries(tree):
    data = tree.data_path
    assert os.path.isdir(os.path.join(data, "b", "a", "b", "c"))
    assert os.path.isdir(os.path.join(data, "b", "a", "b", "$meta"))
    assert _all(tree) == {"a": 0, "a/b": 0, "a/b/c": 1, "a/x": 1, "a/b/$meta": 1, "ab": 1}
    assert _names(tree) == ["a", "a/b", "a/b/c", "a/x", "ab"]


def test_the_tree_loads_again(tree, tmp_path):
    before = tree.bucket_info("b")
    everything = _all(tree)
    tree.close()
    again = _open(tmp_path / "data")
    assert again.bucket_info("b") == before
    assert _all(again) == everything
    assert read_content(again.read("b", "a/b/$meta", 3)) == b"{}"
    assert again.recovery_report()["left_in_place"] == []


def test_a_meta_directory_has_no_children(tree, tmp_path):
    """A directory inside $meta is not ours: reported and left, not loaded."""
    tree.close()
    odd = tmp_path / "data" / "b" / "a" / "b" / "$meta" / "child"
    odd.mkdir()
    again = _open(tmp_path / "data")
    assert "a/b/$meta/child" not in _all(again)
    assert odd.is_dir()
    assert len(again.recovery_report()["left_in_place"]) == 1


def test_symlinked_entry_directories_are_left_not_loaded(tree, tmp_path):
    """A link to a directory, named like an entry, in a bucket or in an
    entry, is not ours: reported and left (the listing's file types decide,
    the link is never followed)."""
    tree.close()
    data = tmp_path / "data"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, data / "b" / "linked")
    os.symlink(elsewhere, data / "b" / "a" / "linked")
    again = _open(data)
    assert "linked" not in _all(again) and "a/linked" not in _all(again)
    assert _all(again) == {"a": 0, "a/b": 0, "a/b/c": 1, "a/x": 1, "a/b/$meta": 1, "ab": 1}
    left = again.recovery_report()["left_in_place"]
    assert len(left) == 2 and all("'linked'" in line for line in left)
    assert (data / "b" / "linked").is_symlink() and (data / "b" / "a" / "linked").is_symlink()


def test_remove_takes_every_descendant(tree):
    tree.remove_entry("b", "a")
    assert _all(tree) == {"ab": 1}
    assert sorted(os.listdir(os.path.join(tree.data_path, "b"))) == ["ab", "settings.json"]
    with pytest.raises(NotFound) as e:
        tree.remove_entry("b", "a")
    assert e.value.message == "Entry 'a' not found in bucket 'b'"


def test_remove_a_child_keeps_the_parent(tree):
    tree.remove_entry("b", "a/b")
    assert _all(tree) == {"a": 0, "a/x": 1, "ab": 1}


def test_meta_entry_removal_is_refused(tree):
    with pytest.raises(UnprocessableEntity) as e:
        tree.remove_entry("b", "a/b/$meta")
    assert e.value.message == (
        "Can't delete system entry 'a/b/$meta'; remove the parent entry instead")
    with pytest.raises(UnprocessableEntity) as e:
        tree.remove_stamps("b", "a/b/$meta", [3])
    assert e.value.message == ("Can't delete records from system entry 'a/b/$meta'; use label "
                               "update with remove=true")
    with pytest.raises(UnprocessableEntity):
        tree.remove_records("b", "$meta", start=0)
    assert "$meta" not in _all(tree)  # not created by the refused removal


def test_rename_moves_the_tree_and_creates_target_parents(tree):
    tree.rename_entry("b", "a/b", "n/m")
    assert _all(tree) == {"a": 0, "a/x": 1, "ab": 1, "n": 0, "n/m": 0, "n/m/c": 1,
                          "n/m/$meta": 1}
    assert read_content(tree.read("b", "n/m/c", 1)) == b"abc"
    assert read_content(tree.read("b", "n/m/$meta", 3)) == b"{}"
    assert not os.path.exists(os.path.join(tree.data_path, "b", "a", "b"))
    write_record(tree, "b", "n/m/c", 5, b"after")  # the moved blocks take writes
    assert tree.list_records("b", "n/m/c", 0, 10) == [(1, 3), (5, 5)]


@pytest.mark.parametrize("old, new, error, message", [
    ("a", "a", Conflict, "Entry 'a' already exists in bucket 'b'"),
    ("a", "a/z", Conflict, "Entry 'a/z' already exists in bucket 'b'"),
    ("zz", "y", NotFound, "Entry 'zz' not found in bucket 'b'"),
    ("zz", "y//", UnprocessableEntity,
     "Entry name must be non-empty and must not contain empty path segments"),
    ("a", "ab", Conflict, "Entry 'ab' already exists in bucket 'b'"),
    ("a", "$meta", UnprocessableEntity,
     "Entry name can contain only letters, digits and [-,_,/] symbols or end with '/$meta'"),
])
def test_rename_refusals_change_nothing(tree, old, new, error, message):
    before = _all(tree)
    with pytest.raises(error) as e:
        tree.rename_entry("b", old, new)
    assert e.value.message == message
    assert _all(tree) == before


def test_rename_refuses_while_a_descendant_is_written(tree):
    alloc = tree.allocate("b", "a/b/c", 9, 3, OCTET, {})
    with pytest.raises(Conflict):
        tree.rename_entry("b", "a", "z")
    write_content(alloc, b"xyz")
    tree.commit(alloc)
    tree.rename_entry("b", "a", "z")
    assert read_content(tree.read("b", "z/b/c", 9)) == b"xyz"


def test_a_failed_first_write_leaves_no_leaf_but_keeps_parents_and_emptied_entries(tree):
    alloc = tree.allocate("b", "p/q", 1, 5, OCTET, {})
    tree.abort(alloc)
    assert "p/q" not in _all(tree) and _all(tree)["p"] == 0
    alloc = tree.allocate("b", "a", 1, 5, OCTET, {})
    tree.abort(alloc)  # a has children: it stays
    assert _all(tree)["a"] == 0 and _all(tree)["a/b/c"] == 1


def test_meta_writes_need_key_and_upsert(engine):
    engine.create_bucket("b", None)
    with pytest.raises(UnprocessableEntity) as e:
        engine.allocate("b", "e/$meta", 1, 2, OCTET, {})
    assert e.value.message == "System entry 'e/$meta' records must contain label 'key'"
    with pytest.raises(UnprocessableEntity) as e:
        engine.allocate("b", "e/$meta", 1, 2, OCTET, {"key": "k", "remove": "true"})
    assert "does not support writing records with label 'remove=true'" in e.value.message
    assert "e/$meta" not in _all(engine)
    write_record(engine, "b", "e/$meta", 1, b"v1", labels={"key": "k"})
    write_record(engine, "b", "e/$meta", 2, b"o", labels={"key": "other"})
    engine.update_labels("b", "e/$meta", {2: {"remove": "true"}})
    write_record(engine, "b", "e/$meta", 3, b"o2", labels={"key": "other"})
    write_record(engine, "b", "e/$meta", 4, b"v2", labels={"key": "k"})
    assert engine.list_records("b", "e/$meta", 0, 10) == [(2, 1), (3, 2), (4, 2)]


def test_an_aborted_meta_write_supersedes_nothing(engine):
    engine.create_bucket("b", None)
    write_record(engine, "b", "$meta", 1, b"v1", labels={"key": "k"})
    alloc = engine.allocate("b", "$meta", 2, 2, OCTET, {"key": "k"})
    engine.abort(alloc)
    assert engine.list_records("b", "$meta", 0, 10) == [(1, 2)]


def test_meta_is_never_evicted_and_hidden_from_statistics(engine):
    engine.create_bucket("b", {"quota_type": "FIFO", "quota_size": 400,
                               "max_block_records": 1})
    write_record(engine, "b", "e/$meta", 1, b"m" * 100, labels={"key": "k"})
    for ts in range(10, 16):
        write_record(engine, "b", "e", ts, b"x" * 100)
    assert engine.list_records("b", "e/$meta", 0, 10) == [(1, 100)]
    info = engine.bucket_info("b")["info"]
    assert info["entry_count"] == 1 and info["oldest_record"] > 10
    assert info["size"] == sum(e.size for e in engine._buckets["b"].entries.values())


def test_new_meta_entries_cut_blocks_at_128_kib(engine):
    engine.create_bucket("b", None)
    for ts in range(1, 4):
        write_record(engine, "b", "$meta", ts, b"m" * 50_000, labels={"key": f"k{ts}"})
    assert [s["id"] for s in engine.block_stats("b", "$meta")] == [1, 3]


@pytest.mark.parametrize("entry, include, exclude, expected", [
    ("a/$meta", None, None, {"remove": "true"}),
    ("$meta", {}, {"x": "1"}, {"x": "1", "remove": "true"}),
    ("a/$meta", {"remove": "true"}, None, {}),
    ("a/$meta", None, {"remove": "false"}, {"remove": "false"}),
    ("a", None, None, {}),
    ("a/meta", None, {"x": "1"}, {"x": "1"}),
])
def test_effective_exclude(entry, include, exclude, expected):
    assert effective_exclude(entry, include, exclude) == expected


def test_queries_on_meta_hide_tombstones(engine):
    engine.create_bucket("b", None)
    write_record(engine, "b", "$meta", 1, b"a", labels={"key": "a"})
    write_record(engine, "b", "$meta", 2, b"b", labels={"key": "b"})
    engine.update_labels("b", "$meta", {1: {"remove": "true"}})

    def stamps(**kwargs):
        qid = engine.create_query("b", "$meta", **kwargs)
        found = []
        while True:
            view = engine.query_next("b", "$meta", qid)
            while view is not None and not hasattr(view, "record"):
                view = engine.query_next("b", "$meta", qid)
            if view is None:
                return found
            found.append(view.record.ts)

    assert stamps() == [2]
    assert stamps(include={"remove": "true"}) == [1]
