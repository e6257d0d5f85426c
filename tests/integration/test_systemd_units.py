"""
The shipped systemd units (``systemd/``): ``systemd-analyze verify`` finds
nothing to say about them, ``systemd-analyze security`` rates the service
2.0 or better, and they ask for what the daemon provides (``Type=notify``,
the watchdog, the socket unit).

The sandbox test traces the real daemon with ``strace`` against the unit's
SystemCallFilter=, RestrictAddressFamilies= and ProtectSystem=.

Without ``systemd-analyze`` (or ``strace``) these tests skip and say why on a developer box,
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


# -- the daemon inside the sandbox ---------------------------------------------

STRACE_LINE = re.compile(r"^\d+\s+([a-z_0-9]+)\((.*)")


@pytest.fixture(scope="module")
def strace():
    found = shutil.which("strace")
    if found is None:
        message = (f"strace not installed: the sandbox test needs it (.ci/run installs it; "
                   f"{CI_ENV}=1 makes this a failure)")
        if os.environ.get(CI_ENV):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _expand(analyze, group, cache={}):
    """The system calls of ``@group`` (nested groups expanded)."""
    if group not in cache:
        out = subprocess.run([analyze, "syscall-filter", group], capture_output=True,
                             text=True, timeout=60, check=True).stdout.splitlines()
        names = set()
        for line in out[1:]:
            item = line.strip()
            if item.startswith("@"):
                names |= _expand(analyze, item)
            elif item and not item.startswith("#"):
                names.add(item)
        cache[group] = frozenset(names)
    return cache[group]


def allowed_syscalls(analyze) -> set:
    """What the service's SystemCallFilter= lines allow, in their order."""
    allowed = None
    for line in SERVICE.read_text().splitlines():
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1]
        deny = value.startswith("~")
        names = set()
        for item in value.lstrip("~").split():
            names |= _expand(analyze, item) if item.startswith("@") else {item}
        if deny:
            allowed = (allowed if allowed is not None else set()) - names
        else:
            allowed = (allowed or set()) | names
    assert allowed, "no SystemCallFilter= allow list"
    return allowed


def test_daemon_stays_inside_the_sandbox(analyze, strace, tmp_path, certificate):
    """
    The real daemon, traced with its leaf worker while it serves HTTP and
    HTTPS, takes single and batched writes (which start the leaf worker),
    reads, queries and deletes, then stops on SIGTERM: every system call it
    makes is allowed by the unit's SystemCallFilter=, every socket it opens
    is of RestrictAddressFamilies=, and it writes nowhere but its data
    directory (ProtectSystem=strict leaves only the StateDirectory writable).
    """
    import http.client
    import json
    import signal
    import ssl

    from tests.integration.test_twistd import STOP_TIMEOUT

    cert, key = certificate
    data = tmp_path / "state" / "reduct-data"
    trace = tmp_path / "strace.out"
    argv = [strace, "-f", "-qq", "-o", str(trace), *twistd_command(), "-n", "--pidfile=",
            "reduct", "--data-path", str(data), "--listen", "tcp:0:interface=127.0.0.1",
            "--listen", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    (tmp_path / "state").mkdir()
    log = open(tmp_path / "daemon.log", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=str(tmp_path / "state"))
    try:
        ports = {}
        for _ in range(600):
            ports = dict(re.findall(r"(https?) listening on 127\.0\.0\.1:(\d+) ",
                                    (tmp_path / "daemon.log").read_text()))
            if len(ports) == 2 or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"])
        assert len(ports) == 2, (tmp_path / "daemon.log").read_text()
        c = http.client.HTTPConnection("127.0.0.1", int(ports["http"]), timeout=30)

        def call(method, path, body=None, headers={}):
            c.request(method, "/api/v1" + path, body=body, headers=headers)
            r = c.getresponse()
            return r.status, r.read()

        assert call("POST", "/b/bk")[0] == 200
        for ts in range(1, 50):
            assert call("POST", f"/b/bk/one?ts={ts}", b"x" * ts)[0] == 200
        for run in range(3):
            headers = {f"x-reduct-time-{100000 + run * 2000 + i}": "10,text/plain"
                       for i in range(1500)}
            assert call("POST", "/b/bk/many/batch", b"0123456789" * 1500, headers)[0] == 200
        assert call("GET", "/b/bk/one?ts=7") == (200, b"x" * 7)
        status, body = call("GET", "/b/bk/many/q?start=0")
        assert status == 200, body
        status, body = call("GET", f"/b/bk/many/batch?q={json.loads(body)['id']}")
        assert status == 200 and body.startswith(b"0123456789"), (status, body[:100])
        assert call("DELETE", "/b/bk/one?ts=3")[0] == 200
        c.close()
        tls = ssl.create_default_context(cafile=cert)
        s = http.client.HTTPSConnection("localhost", int(ports["https"]), context=tls, timeout=30)
        s.request("GET", "/api/v1/info")
        assert s.getresponse().status == 200
        s.close()
        daemon = [int(pid) for pid in subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
        assert len(daemon) == 1, daemon
        os.kill(daemon[0], signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert "Server Shut Down." in text and "Traceback" not in text, text

    calls = [m.groups() for m in map(STRACE_LINE.match, trace.read_text().splitlines()) if m]
    assert sum(1 for name, args in calls if name == "execve") == 2, "no leaf worker ran"
    used = {name for name, _ in calls}
    assert not used - allowed_syscalls(analyze), sorted(used - allowed_syscalls(analyze))
    families = {args.split(",")[0] for name, args in calls if name in ("socket", "socketpair")}
    assert families <= {"AF_INET", "AF_INET6", "AF_UNIX"}, families
    writes = [args for name, args in calls
              if (name == "openat" and re.search(r"O_WRONLY|O_RDWR|O_CREAT", args))
              or name in ("mkdir", "rename", "unlink", "renameat2", "unlinkat", "mkdirat")]
    outside = [w for w in writes if str(data) not in w]
    assert writes and not outside, outside[:10]
