"""
Starting and stopping what the benchmark measures, each on 127.0.0.1 on a
port the kernel picked, each stopped by its PID (never by name):

- ``reduct-twisted``: the daemon of this checkout (``transfer.start_daemon``),
  stopped with SIGTERM;
- ``nginx-webdav``: nginx from Debian, one file per record
  (``PUT``/``GET /dav/<bucket>/<entry>/<ts>``), foreground master
  (``daemon off``), stopped with SIGTERM;
- ``postgres``: a fresh PostgreSQL 15 cluster (``initdb --no-sync``, trust
  auth, user ``bench``), the postmaster in the foreground, stopped with
  SIGINT (fast shutdown);
- ``twisted-mock``: ``mock_server.py``, stopped with SIGTERM.

Every start prints ``started <name> pid <pid>`` to stderr at once, so that
whoever runs the benchmark can find the processes even if it is killed.
"""

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from measure import alive, tree_pids
from transfer import free_port, start_daemon, stop_daemon

HERE = Path(__file__).resolve().parent
PG_BIN = Path(os.environ.get("REDUCT_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
INSTALL = ("apt-get update && apt-get install -y nginx postgresql-15 curl\n"
           "    pip install aiohttp 'psycopg[binary]'   (uvloop optional)")

NGINX_CONF = """\
{user}worker_processes auto;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  client_max_body_size 0;
  client_body_buffer_size 1m;
  client_body_temp_path {d}/tmp 1 2;
  server {{
    listen 127.0.0.1:{port};
    root {d}/data;
    location /dav/ {{
      dav_methods PUT;
      create_full_put_path on;
    }}
  }}
}}
"""

PG_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{d}'
max_connections = 20
shared_buffers = 256MB
max_wal_size = 16GB
checkpoint_timeout = 1h
logging_collector = off
"""


def missing_prerequisites() -> list:
    """What this machine lacks for a full run, one line each."""
    missing = []
    if not os.access(NGINX, os.X_OK):
        missing.append("nginx (Debian package nginx)")
    for tool in ("initdb", "postgres"):
        if not os.access(PG_BIN / tool, os.X_OK):
            missing.append(f"{PG_BIN / tool} (Debian package postgresql-15)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing.append("user postgres, to run PostgreSQL as root (package postgresql-15)")
    if not shutil.which("curl"):
        missing.append("curl (Debian package curl)")
    for module, package in (("aiohttp", "aiohttp"), ("psycopg", "psycopg[binary]")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"Python module {module} (pip install '{package}')")
    if not (Path(sys.executable).parent / "twistd").exists():
        missing.append(f"twistd next to {sys.executable} (pip install -e . in this venv)")
    return missing


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Peer:
    """A started process; ``pids`` keeps every PID of its tree ever seen."""

    stop_signal = signal.SIGTERM

    def __init__(self, name: str, proc, port: int, log: Path, **info) -> None:
        self.name, self.proc, self.port, self.log, self.info = name, proc, port, log, info
        self.pids = [proc.pid]
        print(f"started {name} pid {proc.pid} port {port}", file=sys.stderr, flush=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, ready, timeout: float = 30.0) -> "Peer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if ready():
                return self
            time.sleep(0.05)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"{self.name} did not start (exit {self.proc.poll()}):\n{tail}")

    def note_pids(self) -> None:
        self.pids += [p for p in tree_pids([self.pid]) if p not in self.pids]

    def stop(self, timeout: float = 30.0) -> None:
        self.note_pids()
        if self.proc.poll() is None:
            os.kill(self.pid, self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        # the master's children (nginx workers, postgres backends) go with it
        deadline = time.monotonic() + 5
        while any(alive(p) for p in self.pids) and time.monotonic() < deadline:
            time.sleep(0.05)


class Daemon(Peer):
    def stop(self, timeout: float = 30.0) -> None:
        self.note_pids()
        stop_daemon(self.proc)


class Postgres(Peer):
    stop_signal = signal.SIGINT  # fast shutdown: roll back sessions, checkpoint, exit


def start_daemon_peer(root: Path, name: str = "reduct-twisted", env=None) -> Peer:
    """The daemon (its defaults, or with the ``RS_*`` variables ``env``)."""
    work = root / name
    work.mkdir()
    port = free_port()
    # Like nginx and the in-memory server: answered once in the page cache.
    proc, base, argv = start_daemon(work, work / "data", port, sync="none",
                                    extra_env=dict(env or {}))
    return Daemon(name, proc, port, work / "twistd.log",
                  base=base, data=work / "data", argv=" ".join(argv))


def variant_starter(variant):
    """:return: a starter of the daemon ``variant`` (a ``matrix.Variant``), for ``run.py``."""
    def start(root: Path) -> Peer:
        return start_daemon_peer(root, variant.name, variant.env)

    start.__name__ = f"start_{variant.name.replace('-', '_')}"
    return start


def start_daemon_events_off(root: Path) -> Peer:
    """The same daemon with the ``$system`` events off: the on/off cells (issue #15)."""
    return start_daemon_peer(root, "reduct-twisted-events-off",
                             {"RS_SYSTEM_EVENTS_ENABLED": "false"})


def _spawn(argv, log: Path, **kwargs):
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)


def start_nginx(root: Path) -> Peer:
    d = root / "nginx"
    for sub in ("data/dav", "tmp"):
        (d / sub).mkdir(parents=True)
    port = free_port()
    user = "user root root;\n" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(NGINX_CONF.format(user=user, d=d, port=port))
    log = d / "stdout.log"
    proc = _spawn([NGINX, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")],
                  log)
    peer = Peer("nginx-webdav", proc, port, d / "error.log", data=d / "data")
    return peer.wait_ready(lambda: _accepts(port))


def start_postgres(root: Path) -> Peer:
    d = root / "pg"
    data = d / "data"
    d.mkdir()
    as_user = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = {"user": "postgres", "group": "postgres"}
        root.chmod(0o755)
        shutil.chown(d, "postgres", "postgres")
    log = d / "postgres.log"
    init = subprocess.run(
        [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "bench", "-E", "UTF8",
         "--no-sync"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **as_user)
    if init.returncode:
        raise RuntimeError(f"initdb failed:\n{init.stdout.decode(errors='replace')[-2000:]}")
    port = free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(PG_CONF.format(port=port, d=d))
    proc = _spawn([str(PG_BIN / "postgres"), "-D", str(data)], log, cwd=d, **as_user)
    dsn = f"host=127.0.0.1 port={port} user=bench dbname=postgres connect_timeout=2"
    peer = Postgres("postgres", proc, port, log, dsn=dsn, data=data)

    def ready():
        import psycopg
        try:
            psycopg.connect(dsn).close()
            return True
        except psycopg.OperationalError:
            return False

    return peer.wait_ready(ready)


def start_mock(root: Path) -> Peer:
    d = root / "mock"
    d.mkdir()
    port = free_port()
    log = d / "mock.log"
    proc = _spawn([sys.executable, str(HERE / "mock_server.py"), str(port)], log, cwd=d)
    return Peer("twisted-mock", proc, port, log).wait_ready(lambda: _accepts(port))
