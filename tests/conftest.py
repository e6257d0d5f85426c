"""
Fixtures shared by every test directory.  Keep this small: directory-specific
fixtures live in ``tests/unit/`` or ``tests/integration/`` conftest files.

Do not import ``twisted.internet.reactor`` here: pytest-twisted installs the
reactor in ``pytest_configure`` and an early import would pin the default one.
"""

from pathlib import Path

import pytest

#: The repository root (``tests/..``).
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_rs_environ(monkeypatch):
    """Remove every ``RS_*`` variable, so a developer's shell cannot leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("RS_"):
            monkeypatch.delenv(name)
