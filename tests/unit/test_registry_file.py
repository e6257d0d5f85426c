"""The file of named settings behind the replication and lifecycle registries."""

import json

import pytest

from reduct_twisted.errors import InternalError
from reduct_twisted.registry_file import RegistryFile

MODES = ("enabled", "paused")


def registry(tmp_path, **kwargs) -> RegistryFile:
    return RegistryFile(str(tmp_path / "things.json"), "things", 2, MODES, "thing", **kwargs)


def result(d):
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    return out[0]


def test_missing_file_loads_nothing(tmp_path):
    f = registry(tmp_path)
    assert f.load() == ([], {})
    assert f.frozen is None


def test_save_then_load_round_trip_sorted_by_name(tmp_path):
    f = registry(tmp_path)
    assert result(f.save({"b": {"x": 2}, "a": {"x": 1}}, {"p": "paused"})) is None
    on_disk = json.loads((tmp_path / "things.json").read_text())
    assert on_disk == {"format": 2,
                       "things": [{"name": "a", "settings": {"x": 1}},
                                  {"name": "b", "settings": {"x": 2}}],
                       "provisioned_modes": {"p": "paused"}}
    assert registry(tmp_path).load() == (on_disk["things"], {"p": "paused"})


def test_invalid_modes_are_dropped(tmp_path):
    (tmp_path / "things.json").write_text(json.dumps(
        {"format": 2, "things": [], "provisioned_modes": {"a": "enabled", "b": "weird"}}))
    assert registry(tmp_path).load() == ([], {"a": "enabled"})


def test_newer_format_is_left_alone(tmp_path):
    text = json.dumps({"format": 3, "things": [{"name": "a", "settings": {}}]})
    (tmp_path / "things.json").write_text(text)
    f = registry(tmp_path)
    assert f.load() == ([], {})
    assert "newer than 2" in f.frozen
    failure = result(f.save({"b": {}}, {}))
    assert isinstance(failure.value, InternalError)
    assert failure.value.message.startswith("Failed to save things: ")
    assert (tmp_path / "things.json").read_text() == text  # not written over


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"format": 2}', '"a string"'])
def test_unreadable_file_loads_nothing(tmp_path, text):
    (tmp_path / "things.json").write_text(text)
    f = registry(tmp_path)
    assert f.load() == ([], {})
    assert f.frozen is None  # unreadable is not newer: saving replaces it


def test_bare_list_and_missing_format(tmp_path):
    items = [{"name": "a", "settings": {}}]
    (tmp_path / "things.json").write_text(json.dumps(items))
    assert registry(tmp_path, bare_list=0).load() == (items, {})
    (tmp_path / "things.json").write_text(json.dumps({"things": items}))
    assert registry(tmp_path, missing_format=1).load() == (items, {})
    f = registry(tmp_path)  # no default format: a file without one is not ours to write
    assert f.load() == ([], {}) and f.frozen is not None


def test_a_failed_write_is_a_500_with_the_reason(tmp_path):
    def persist(path, data):
        raise OSError(28, "No space left on device")

    failure = result(registry(tmp_path, persist=persist).save({"a": {}}, {}))
    assert isinstance(failure.value, InternalError)
    assert failure.value.message == "Failed to save things: No space left on device"
    assert not (tmp_path / "things.json").exists()
