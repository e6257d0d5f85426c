"""
The shipped systemd units (``systemd/``): ``systemd-analyze verify`` finds
nothing to say about them, ``systemd-analyze security`` rates the service
2.0 or better, and they ask for what the daemon provides (``Type=notify``,
the watchdog, the socket unit).

Without ``systemd-analyze`` these tests skip and say why on a developer box,
and fail in CI (``.ci/run`` installs ``systemd`` and sets
``REDUCT_TWISTED_CI``).
"""

import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.test_twistd import twistd_command

UNITS = REPO_ROOT / "systemd"
SERVICE = UNITS / "reduct-twisted.service"
SOCKET = UNITS / "reduct-twisted.socket"
CI_ENV = "REDUCT_TWISTED_CI"
MAX_EXPOSURE = 2.0
EXPOSURE = re.compile(r"Overall exposure level for reduct-twisted\.service: (\d+\.\d+) ")


@pytest.fixture(scope="module")
def analyze():
    """The path of ``systemd-analyze``."""
    found = shutil.which("systemd-analyze") or (
        "/usr/bin/systemd-analyze" if os.access("/usr/bin/systemd-analyze", os.X_OK) else None
    )
    if found is None:
        message = (f"systemd-analyze not installed: the unit tests need Debian's systemd "
                   f"package (.ci/run installs it; {CI_ENV}=1 makes this a failure)")
        if os.environ.get(CI_ENV):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def units(tmp_path):
    """Copies of both units, ExecStart pointing at this venv's twistd (verify
    checks that the binary exists)."""
    twistd = twistd_command()[-1] if len(twistd_command()) == 2 else None
    assert twistd and os.access(twistd, os.X_OK), twistd_command()
    text = SERVICE.read_text()
    assert "ExecStart=/opt/reduct-twisted/venv/bin/twistd " in text
    service = tmp_path / SERVICE.name
    service.write_text(text.replace("ExecStart=/opt/reduct-twisted/venv/bin/twistd ",
                                    f"ExecStart={twistd} "))
    socket_unit = tmp_path / SOCKET.name
    shutil.copy(SOCKET, socket_unit)
    return service, socket_unit


def run(argv, cwd):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_units_verify(analyze, units, tmp_path):
    """systemd-analyze verify accepts both units without a single warning."""
    service, socket_unit = units
    done = run([analyze, "verify", "--man=no", service.name, socket_unit.name], tmp_path)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_would_complain(analyze, tmp_path):
    """The check above can fail: a broken unit gets warnings."""
    broken = tmp_path / "broken.service"
    broken.write_text("[Service]\nType=notfy\nExecStart=/no/such/twistd\n")
    done = run([analyze, "verify", "--man=no", broken.name], tmp_path)
    assert done.returncode != 0 or done.stderr


def test_service_exposure_at_most_2(analyze, units, tmp_path):
    """systemd-analyze security rates the service 2.0 or better ("OK")."""
    service, _ = units
    done = run([analyze, "security", "--offline=true", "--no-pager", service.name], tmp_path)
    [score] = EXPOSURE.findall(done.stdout)
    print(f"systemd-analyze security: {score}")
    assert float(score) <= MAX_EXPOSURE, done.stdout


def test_units_ask_for_what_the_daemon_does():
    """Type=notify with the main process notifying, a watchdog, the socket unit,
    and nothing that would break the daemon (HTTPS, the leaf worker)."""
    service = SERVICE.read_text().splitlines()
    for needed in ["Type=notify", "NotifyAccess=main", "ProtectSystem=strict",
                   "StateDirectory=reduct-twisted", "CapabilityBoundingSet=",
                   "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                   "SystemCallFilter=@system-service", "NoNewPrivileges=yes", "PrivateTmp=yes",
                   # pyOpenSSL's cffi callbacks need W+X memory: HTTPS would fail
                   "MemoryDenyWriteExecute=no"]:
        assert needed in service, needed
    [watchdog] = [line for line in service if line.startswith("WatchdogSec=")]
    assert int(watchdog.split("=")[1]) >= 10
    # The leaf worker is exec'd from the venv: nothing may forbid it.
    assert not [line for line in service if line.startswith(("NoExecPaths=", "ExecPaths="))]
    socket_unit = SOCKET.read_text().splitlines()
    assert "ListenStream=8383" in socket_unit
    assert "Service=reduct-twisted.service" in socket_unit
    assert "WantedBy=sockets.target" in socket_unit
