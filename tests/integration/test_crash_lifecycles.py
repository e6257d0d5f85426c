"""
Crash consistency of the lifecycle file (``<data>/.lifecycles``, written
atomically: ``persist.write_atomically``): the real ``twistd -n reduct`` is
SIGKILLed while a client creates, replaces, switches the mode of and
removes policies, and restarted on the same data directory, again and
again.  After each restart ``GET /lifecycles`` and each policy's settings
must show every acknowledged change, and for the one change in flight at
the kill either the state before it or the state after it, nothing else;
the start-up logs no unhandled error and no unreadable file.
"""

import json
import os
import random
import threading

import pytest

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
