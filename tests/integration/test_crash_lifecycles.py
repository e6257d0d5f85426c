"""
Crash consistency of lifecycle policies.

First, the lifecycle file (``<data>/.lifecycles``, written
atomically: ``persist.write_atomically``): the real ``twistd -n reduct`` is
SIGKILLed while a client creates, replaces, switches the mode of and
removes policies, and restarted on the same data directory, again and
again.  After each restart ``GET /lifecycles`` and each policy's settings
must show every acknowledged change, and for the one change in flight at
the kill either the state before it or the state after it, nothing else;
the start-up logs no unhandled error and no unreadable file.

Second, a ``compress`` policy's run SIGKILLed at random instants (below).
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.daemon import Closed, Connection, Twistd

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("REDUCT_CRASH_SEED", "5"))
KILLS = 12
NAMES = [f"p{i}" for i in range(6)]


def settings_for(rng) -> dict:
    return {"type": rng.choice(["delete", "compress"]), "bucket": "b",
            "entries": rng.choice([[], ["a*"], ["x", "y/z"]]),
            "older_than": rng.choice(["1h", "2d", "1h 30m"]),
            "interval": rng.choice(["10m", "1h", "3600s"]),
            "when": None, "mode": rng.choice(["enabled", "disabled", "dry_run"])}


class Model:
    """The acknowledged policies, and the change in flight (before, after)."""

    def __init__(self):
        self.policies = {}
        self.inflight = None
        self.lock = threading.Lock()


def client(model, port, rng, killed):
    conn = Connection(port, timeout=30)
    try:
        while True:
            name = rng.choice(NAMES)
            with model.lock:
                before = model.policies.get(name)
            if before is None:
                after = settings_for(rng)
                request = ("POST", f"/api/v1/lifecycles/{name}", after)
            else:
                pick = rng.random()
                if pick < 0.3:
                    after = None
                    request = ("DELETE", f"/api/v1/lifecycles/{name}", None)
                elif pick < 0.6:
                    mode = rng.choice(["enabled", "disabled", "dry_run"])
                    after = dict(before, mode=mode)
                    request = ("PATCH", f"/api/v1/lifecycles/{name}/mode", {"mode": mode})
                else:
                    after = settings_for(rng)
                    request = ("PUT", f"/api/v1/lifecycles/{name}", after)
            with model.lock:
                model.inflight = (name, before, after)
            method, target, body = request
            data = b"" if body is None else json.dumps(body).encode()
            resp = conn.request(method, target, data)
            assert resp.status == 200, (request, resp)
            with model.lock:
                if after is None:
                    model.policies.pop(name, None)
                else:
                    model.policies[name] = after
                model.inflight = None
    except (OSError, Closed):
        assert killed.is_set(), "the connection broke before the kill"
    finally:
        conn.close()


def observed(port) -> dict:
    with Connection(port) as conn:
        resp = conn.request("GET", "/api/v1/lifecycles")
        assert resp.status == 200, resp
        names = [info["name"] for info in json.loads(resp.body)["lifecycles"]]
        found = {}
        for name in names:
            resp = conn.request("GET", f"/api/v1/lifecycles/{name}")
            assert resp.status == 200, resp
            found[name] = json.loads(resp.body)["settings"]
        return found


def test_sigkill_while_policies_change_keeps_every_acknowledged_change(tmp_path):
    rng = random.Random(SEED)
    model = Model()
    daemon = Twistd(tmp_path / "data")
    daemon.start()
    try:
        with Connection(daemon.port) as conn:
            assert conn.request("POST", "/api/v1/b/b").status == 200
        for kill in range(KILLS):
            killed = threading.Event()
            thread = threading.Thread(target=client, args=(model, daemon.port,
                                                           random.Random(rng.random()), killed))
            thread.start()
            threading.Event().wait(rng.uniform(0.05, 0.4))
            killed.set()
            daemon.kill()
            thread.join(30)
            assert not thread.is_alive()
            daemon = Twistd(tmp_path / "data")
            daemon.start()
            assert daemon.alarms() == [], daemon.output
            assert "Cannot read" not in daemon.output, daemon.output
            found = observed(daemon.port)
            expected = dict(model.policies)
            if model.inflight is not None:
                name, before, after = model.inflight
                assert found.get(name) in (before, after), (kill, name, found.get(name),
                                                             before, after)
                if found.get(name) is None:
                    expected.pop(name, None)
                else:
                    expected[name] = found[name]
                model.policies = expected
                model.inflight = None
            assert found == expected, kill
            leftovers = [n for n in os.listdir(tmp_path / "data") if n.endswith(".tmp")]
            assert leftovers == [], leftovers
        assert model.policies, "the workload made no policy"
    finally:
        daemon.kill()


# -- a compress policy's run, SIGKILLed (issue #15 "Done when") ------------------

COMPRESS_KILLS = 6
#: Opens the data directory as the daemon does (its fsync), loads the
#: policies of ``.lifecycles`` into a ``LifecycleManager`` whose clock starts
#: at the wall time, and lets one interval pass: the compress policy made
#: over HTTP runs, in small slices (many instants to be killed at).
RUN_SCRIPT = """
import sys, time
from twisted.internet.task import Clock
from reduct_twisted.lifecycle.manager import LifecycleManager
from reduct_twisted.storage import StorageEngine, compress
from reduct_twisted.sync import fsync_paths
compress.SLICE = 16 << 10

class Events:
    enabled = False
    def emit(self, stream, name, timestamp, status, message, payload):
        print("event", name, status, message, payload["processed_blocks"], flush=True)
    def last_access(self, token_name):
        return None

clock = Clock()
clock.advance(time.time())
engine = StorageEngine(sys.argv[1], clock, sync=fsync_paths)
engine.open()
manager = LifecycleManager(engine, clock, sys.argv[1], Events())
manager.startService()
print("opened", flush=True)
clock.advance(600)
manager.stopService()
engine.close()
print("done", flush=True)
"""


def _content(ts: int) -> bytes:
    """Compressible content of record ``ts``, some beyond the shared-segment limit."""
    size = 300 + ts % 7 * 4000 + (1_200_000 if ts % 11 == 0 else 0)
    return (b"record %d " % ts) * (size // 10)


def _run_policies(data_path, delay):
    """The run process, SIGKILLed ``delay`` s after it opened (None: to its end)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(data_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    first = proc.stdout.readline().decode()
    opened = time.monotonic()
    if delay is not None:
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    out = first + proc.communicate(timeout=120)[0].decode()
    if delay is None:
        assert proc.returncode == 0 and out.endswith("done\n"), out
        assert "event pack 200" in out, out
    return out, time.monotonic() - opened


def test_sigkill_during_a_compress_policy_run_keeps_every_record(tmp_path):
    """
    A ``compress`` policy created over HTTP runs (in a process of its own,
    through ``LifecycleManager``) and is SIGKILLed at a random instant,
    again and again; after each kill the daemon starts without an
    unhandled error, still has the policy, and serves every acknowledged
    record byte-exact, records written later into compressed blocks too.
    """
    rng = random.Random(SEED)
    data_path = tmp_path / "data"
    acknowledged = set()
    duration, mid_run = None, 0
    base = int((time.time() - 10 * 3600) * 1_000_000)
    for iteration in range(COMPRESS_KILLS + 1):
        daemon = Twistd(data_path)
        daemon.start()
        try:
            with Connection(daemon.port) as conn:
                if iteration == 0:
                    settings = {"max_block_size": 256 << 10, "max_block_records": 5}
                    assert conn.request("POST", "/api/v1/b/z",
                                        json.dumps(settings).encode()).status == 200
                    policy = {"type": "compress", "bucket": "z", "older_than": "1h",
                              "interval": "10m"}
                    assert conn.request("POST", "/api/v1/lifecycles/pack",
                                        json.dumps(policy).encode()).status == 200
                resp = conn.request("GET", "/api/v1/lifecycles/pack")
                assert resp.status == 200, resp
                for ts in sorted(acknowledged):
                    resp = conn.request("GET", f"/api/v1/b/z/e?ts={ts}")
                    assert resp.status == 200 and resp.body == _content(ts), (iteration, ts)
                new = [base + iteration * 1000 + i for i in range(rng.randint(8, 20))]
                if acknowledged:  # belated records into older (compressed) blocks
                    new += [ts + 1 for ts in rng.sample(sorted(acknowledged), 3)
                            if ts + 1 not in acknowledged]
                for ts in new:
                    resp = conn.request("POST", f"/api/v1/b/z/e?ts={ts}", _content(ts))
                    assert resp.status in (200, 409), resp
                    if resp.status == 200:
                        acknowledged.add(ts)
            assert daemon.alarms() == [], daemon.alarms()[0]
            daemon.stop()
        finally:
            daemon.kill()
        if iteration == COMPRESS_KILLS:
            break
        if duration is None:
            duration = _run_policies(data_path, None)[1]
        else:
            out = _run_policies(data_path, rng.uniform(0, duration))[0]
            mid_run += "event pack" not in out
    packed = [n for _, _, files in os.walk(data_path / "z") for n in files if n.endswith(".zst")]
    print(f"compress policy kills: {COMPRESS_KILLS}, {mid_run} mid-run, "
          f"{len(acknowledged)} records, {len(packed)} packed segments")
    assert packed, "no block was ever compressed"
