"""The export folder format (reduct_twisted/admin/folder.py): manifests, resuming, names."""

import json
import os

import pytest

from reduct_twisted.admin import folder


def test_manifest_resume_cuts_a_torn_line_and_part_files(tmp_path):
    directory = str(tmp_path / "a" / "b")
    m = folder.Manifest(directory)
    assert not os.path.exists(directory)  # nothing made before the first record
    m.add(10, "10.txt", "text/plain", {"k": "v,w"}, 3, "ab" * 32)
    m.add(20, "20.bin", "application/octet-stream", {}, 0, "cd" * 32)
    m.close()
    with open(os.path.join(directory, folder.MANIFEST), "ab") as f:
        f.write(b'{"ts": 30, "fi')  # an export killed mid-line
    open(os.path.join(directory, "30.bin" + folder.PART), "wb").close()
    m = folder.Manifest(directory)
    assert (m.last_ts, m.count) == (20, 2)
    assert not os.path.exists(os.path.join(directory, "30.bin" + folder.PART))
    m.add(30, "30.bin", "application/octet-stream", {}, 1, "ef" * 32)
    m.close()
    items = list(folder.read_manifest(directory))
    assert [i["ts"] for i in items] == [10, 20, 30] and items[0]["labels"] == {"k": "v,w"}


def test_bad_manifest_line_is_an_error(tmp_path):
    (tmp_path / folder.MANIFEST).write_text('{"ts": "x"}\n')
    with pytest.raises(folder.FolderError):
        list(folder.read_manifest(str(tmp_path)))
    (tmp_path / folder.MANIFEST).write_text(json.dumps({"ts": 1, "file": "../x", "content_type": "a",
                                                          "labels": {}, "size": 1}) + "\n")
    with pytest.raises(folder.FolderError):
        list(folder.read_manifest(str(tmp_path)))


def test_header_and_entries(tmp_path):
    with pytest.raises(folder.FolderError):
        folder.read_header(str(tmp_path))
    folder.write_header(str(tmp_path), "bkt", {"quota_type": "NONE"}, "http://x/")
    assert folder.read_header(str(tmp_path))["bucket"] == "bkt"
    for entry in ("cam", "cam/left", "cam/$meta"):
        m = folder.Manifest(folder.entry_dir(str(tmp_path), entry))
        m.add(1, "1.bin", "a/b", {}, 0, "")
        m.close()
    os.makedirs(tmp_path / "empty")
    assert folder.entries(str(tmp_path)) == ["cam", "cam/$meta", "cam/left"]
    (tmp_path / folder.HEADER_FILE).write_text(json.dumps({"format": folder.FORMAT, "version": 99}))
    with pytest.raises(folder.FolderError, match="version 99"):
        folder.read_header(str(tmp_path))


@pytest.mark.parametrize("name", ["..", "a/../b", "a//b", "/a"])
def test_entry_names_never_leave_the_folder(tmp_path, name):
    with pytest.raises(folder.FolderError):
        folder.entry_dir(str(tmp_path), name)


def test_extensions():
    assert folder.extension("image/jpeg") == ".jpg"
    assert folder.extension("text/plain; charset=utf-8") == ".txt"
    assert folder.extension("application/json") == ".json"
    assert folder.extension("application/x-nothing-known") == ".bin"
    assert folder.extension("") == ".bin"
