"""
The storage core stays synchronous and transport-free (STYLE.md §2).
"""

import json
import os
import pkgutil
import re
import subprocess
import sys

import reduct_twisted.storage

FORBIDDEN = ("twisted.web", "klein", "twisted.internet.reactor")
STORAGE_DIR = os.path.dirname(reduct_twisted.storage.__file__)


def _storage_modules():
    """Every module of storage, its subpackages' (``when/``...) included."""
    return ["reduct_twisted.storage"] + [
        m.name for m in pkgutil.walk_packages([STORAGE_DIR], "reduct_twisted.storage.")
    ]


def _sources():
    """``(path relative to storage/, text)`` of every storage source, subpackages included."""
    for directory, subdirs, files in os.walk(STORAGE_DIR):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(("_", ".")))
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(directory, name)) as f:
                    yield os.path.relpath(os.path.join(directory, name), STORAGE_DIR), f.read()


def test_storage_modules_import_no_reactor_or_http():
    """Importing every storage module in a fresh interpreter loads neither
    twisted.web, klein nor the global reactor."""
    modules = _storage_modules()
    assert "reduct_twisted.storage.engine" in modules
    script = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    root = os.path.dirname(os.path.dirname(STORAGE_DIR))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env
    )
    loaded = json.loads(out.stdout)
    assert "reduct_twisted.storage.query" in loaded
    assert "reduct_twisted.storage.when.parse" in loaded
    assert "reduct_twisted.storage.disk.recovery" in loaded
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []


def test_no_fsync_and_no_wall_clock_in_core():
    """The core never syncs to disk (a later sync policy decides) and never
    reads the wall clock (time comes from the injected clock)."""
    assert os.path.join("when", "parse.py") in dict(_sources())
    for name, text in _sources():
        assert not re.search(r"\bf(data)?sync\(", text), name
        assert not re.search(r"\btime\.(time|monotonic|sleep)\(", text), name


def test_modules_stay_small():
    """No storage module grows beyond about 400 lines."""
    for name, text in _sources():
        assert text.count("\n") <= 400, name
