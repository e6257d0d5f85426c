"""Tests for the twistd plugin, its packaging, and how we fit into twistd (options, logging)."""

import shlex
import signal
import subprocess
import sys

import pytest
from twisted.application.service import Application, IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LegacyLogObserverWrapper, LogLevel
from twisted.plugin import getPlugins
from twisted.python.logfile import LogFile

from reduct_twisted import logs, tap
from reduct_twisted.config import Config
from tests.conftest import REPO_ROOT
from tests.unit.test_tap import FakeEngine, fake_assemble, parse

SYSTEMD_UNIT = REPO_ROOT / "systemd" / "reduct-twisted.service"
SAMPLE_INI = REPO_ROOT / "etc" / "reduct-twisted.ini"


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


def test_under_twistd_options(no_rs_environ, tmp_path, capsys):
    """Parsed by twistd's own ServerOptions, the tree gets a level-filtered observer."""
    from twisted.scripts.twistd import ServerOptions

    config = ServerOptions()
    config.parseOptions(
        [
            "--nodaemon",
            "--pidfile=",
            "reduct",
            "--log-level",
            "ERROR",
            "--data-path",
            str(tmp_path / "d"),
        ]
    )
    assert config.subCommand == "reduct"
    sub = config.subOptions
    assert sub.config.log_level == "ERROR"
    top = tap.makeService(
        sub, MemoryReactorClock(), engine_factory=FakeEngine, assemble=fake_assemble
    )
    application = Application("reduct")
    top.setServiceParent(application)
    observer = application.getComponent(ILogObserver)
    observer({"log_level": LogLevel.info, "log_format": "hidden", "log_time": 0})
    observer({"log_level": LogLevel.error, "log_format": "shown", "log_time": 0})
    text = capsys.readouterr().out
    assert "shown" in text and "hidden" not in text


def test_observer_factory_for():
    """A factory exists only under twistd and only without --logger."""
    assert logs.observer_factory_for(parse([])) is None

    class Sub:
        parent = {"logfile": None, "logger": None, "nodaemon": True}

    assert logs.observer_factory_for(Sub()) is not None
    Sub.parent = {"logfile": None, "logger": lambda: None, "nodaemon": True}
    assert logs.observer_factory_for(Sub()) is None


def test_twistd_observer_stdout(capsys):
    """--nodaemon without --logfile (or --logfile -) writes to stdout, like twistd."""
    for options in ({"nodaemon": True}, {"nodaemon": True, "logfile": "-"}):
        observer = logs.twistd_observer(options)
        observer({"log_level": LogLevel.info, "log_format": "hello {n}", "n": 1, "log_time": 0})
        assert "hello 1" in capsys.readouterr().out


def test_twistd_observer_daemon_stdout_refused():
    """A daemon cannot log to stdout, as twistd says."""
    with pytest.raises(SystemExit):
        logs.twistd_observer({"nodaemon": False, "logfile": "-"})


def test_twistd_observer_logfile(tmp_path, monkeypatch):
    """A daemon without --logfile logs to twistd.log in the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        LogFile, "fromFullPath", classmethod(lambda cls, path: opened.append(path) or sys.stdout)
    )
    opened = []
    old = signal.getsignal(signal.SIGUSR1)
    try:
        logs.twistd_observer({"nodaemon": False})
        assert signal.getsignal(signal.SIGUSR1) not in (old, signal.SIG_DFL)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert opened == ["twistd.log"]


def test_twistd_observer_syslog():
    """--syslog gives a (wrapped) syslog observer."""
    pytest.importorskip("syslog")
    observer = logs.twistd_observer({"syslog": True, "prefix": "reduct"})
    assert isinstance(observer, LegacyLogObserverWrapper)


def test_systemd_execstart_parses(no_rs_environ):
    """The sample unit's ExecStart parses with twistd's options and ours."""
    from twisted.scripts.twistd import ServerOptions

    text = SYSTEMD_UNIT.read_text()
    [line] = [l for l in text.splitlines() if l.startswith("ExecStart=")]
    argv = shlex.split(line[len("ExecStart=") :])
    assert argv[0] == "/opt/reduct-twisted/venv/bin/twistd"
    assert argv[argv.index("--config") + 1] == "/etc/reduct-twisted/reduct-twisted.ini"
    # The installed ini file is the shipped sample.
    argv[argv.index("--config") + 1] = str(SAMPLE_INI)
    config = ServerOptions()
    config.parseOptions(argv[1:])
    assert config["nodaemon"] and config["pidfile"] == ""
    assert config.subCommand == "reduct"
    assert config.subOptions.config == Config()
    for needed in [
        "User=reduct",
        "Group=reduct",
        "Restart=always",
        "StateDirectory=reduct-twisted",
        "WorkingDirectory=/var/lib/reduct-twisted",
    ]:
        assert needed in text.splitlines()
