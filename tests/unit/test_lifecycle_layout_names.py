"""The lifecycle file is one of the daemon's own names (storage/disk/layout.py)."""

import pytest

from reduct_twisted.storage.disk import layout


@pytest.mark.parametrize("name, ours", [
    (".lifecycles", True), (".lifecycles.k2j3_x.tmp", True),
    (".lifecycles.bak", False), (".lifecycles2", False),
])
def test_lifecycle_file_names_are_ours(name, ours):
    assert layout.is_top_level_name(name) is ours


def test_a_directory_with_a_lifecycle_file_is_ours(tmp_path):
    (tmp_path / ".lifecycles").write_text("[]")
    (tmp_path / ".lifecycles.x1.tmp").write_text("[")
    assert layout.classify(str(tmp_path)) == layout.LEGACY
