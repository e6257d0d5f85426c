"""Tests for the twistd plugin and its packaging."""

import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from reduct_twisted import tap
from tests.conftest import REPO_ROOT


def reduct_makers():
    return [m for m in getPlugins(IServiceMaker) if m.tapname == "reduct"]


def test_plugin_found():
    """getPlugins(IServiceMaker) yields exactly one maker with tapname 'reduct'."""
    [maker] = reduct_makers()
    assert maker.name == "reduct-twisted"
    assert maker.description
    assert maker.module == "reduct_twisted.tap"


def test_plugin_options_work(no_rs_environ):
    """The maker's options are our Options and parse an empty command line."""
    [maker] = reduct_makers()
    options = maker.options()
    assert isinstance(options, tap.Options)
    options.parseOptions(["--data-path", "x"])
    assert options.config.data_path == "x"


def test_plugin_is_the_checkout():
    """The plugin module found is this checkout's (no stale installed copy)."""
    import twisted.plugins.reduct_twisted_plugin as plugin

    assert plugin.__file__ == str(REPO_ROOT / "twisted" / "plugins" / "reduct_twisted_plugin.py")


def test_no_init_files():
    """twisted/ and twisted/plugins/ have no __init__.py (it would shadow Twisted)."""
    assert not (REPO_ROOT / "twisted" / "__init__.py").exists()
    assert not (REPO_ROOT / "twisted" / "plugins" / "__init__.py").exists()


def test_discovery_imports_nothing_heavy():
    """Listing plugins imports neither our tap module nor a reactor."""
    code = (
        "import sys\n"
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "names = [m.tapname for m in getPlugins(IServiceMaker)]\n"
        "assert 'reduct' in names, names\n"
        "bad = [m for m in ('reduct_twisted.tap', 'twisted.internet.reactor', 'klein')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_packages_include_plugin_directory():
    """setup.cfg's package search finds our packages and twisted.plugins, not twisted."""
    from setuptools import find_namespace_packages

    found = find_namespace_packages(
        str(REPO_ROOT), include=["reduct_twisted", "reduct_twisted.*", "twisted.plugins"]
    )
    assert "reduct_twisted" in found
    assert "twisted.plugins" in found
    assert "twisted" not in found
    assert not [p for p in found if p.startswith("tests")]
    setup_cfg = (REPO_ROOT / "setup.cfg").read_text()
    assert "packages = find_namespace:" in setup_cfg
    for line in ("reduct_twisted\n", "reduct_twisted.*\n", "twisted.plugins\n"):
        assert "    " + line in setup_cfg
