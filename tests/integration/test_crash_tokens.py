"""
Crash safety of the token file (format 2, spec 1.20 §4): the real ``twistd
-n reduct`` is SIGKILLed while tokens are created and rotated, and
restarted on the same data directory.  After every restart the file opens
(never torn), is format 2, every acknowledged creation is there with its
value working, the last acknowledged secret of the rotated token works
unless a rotation was in flight (then only it may have replaced it), and
the start-up logs no unhandled error.
"""

import json
import os
import random
import threading
import time

import pytest

from tests.integration.daemon import Closed, Connection, Twistd

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("REDUCT_CRASH_SEED", "5"))
KILLS = int(os.environ.get("REDUCT_CRASH_TOKEN_KILLS", "8"))
INIT = "crash-init-secret"
AUTH = [("Authorization", f"Bearer {INIT}")]


def _bearer(value):
    return [("Authorization", f"Bearer {value}")]


def _work(port: int, seen: dict, stop: threading.Event, kill: int) -> None:
    """Rotate token ``rot`` and create ``c-<kill>-<i>`` tokens until the daemon dies."""
    try:
        with Connection(port, timeout=10) as conn:
            i = 0
            while not stop.is_set():
                seen["rotating"] = True
                resp = conn.request("POST", "/api/v1/tokens/rot/rotate", headers=AUTH)
                assert resp.status == 200, resp
                seen["rot"] = json.loads(resp.body)["value"]
                seen["rotating"] = False
                name = f"c-{kill}-{i}"
                i += 1
                body = json.dumps({"permissions": {"read": ["x"]}, "ttl": 3600,
                                   "ip_allowlist": ["127.0.0.1"]}).encode()
                resp = conn.request("POST", f"/api/v1/tokens/{name}", body, headers=AUTH)
                assert resp.status == 200, resp
                seen["created"][name] = json.loads(resp.body)["value"]
    except (Closed, OSError):
        return


def test_sigkill_while_tokens_change(tmp_path):
    rng = random.Random(SEED)
    data_path = tmp_path / "data"
    environ = {"RS_API_TOKEN": INIT}
    daemon = Twistd(data_path, environ=environ)
    port = daemon.start()
    with Connection(port) as conn:
        resp = conn.request("POST", "/api/v1/tokens/rot", b'{"permissions": {}}', headers=AUTH)
        assert resp.status == 200, resp
        rot = json.loads(resp.body)["value"]
    created: dict = {}
    for kill in range(KILLS):
        seen = {"rot": rot, "rotating": False, "created": created}
        stop = threading.Event()
        worker = threading.Thread(target=_work, args=(port, seen, stop, kill))
        worker.start()
        time.sleep(rng.uniform(0.05, 0.3))
        daemon.kill()
        stop.set()
        worker.join(30)
        assert not worker.is_alive()
        daemon = Twistd(data_path, environ=environ)
        port = daemon.start()
        with Connection(port) as conn:
            resp = conn.request("GET", "/api/v1/me", headers=_bearer(seen["rot"]))
            if resp.status == 200:
                rot = seen["rot"]
            else:
                # only a rotation sent but not acknowledged may have replaced it
                assert seen["rotating"] and resp.status == 401, (kill, resp)
                resp = conn.request("GET", "/api/v1/tokens/rot", headers=AUTH)
                assert resp.status == 200, (kill, resp)
                resp = conn.request("POST", "/api/v1/tokens/rot/rotate", headers=AUTH)
                rot = json.loads(resp.body)["value"]
            for name, value in created.items():
                resp = conn.request("GET", "/api/v1/me", headers=_bearer(value))
                assert resp.status == 200, (kill, name, resp)
                me = json.loads(resp.body)
                assert (me["name"], me["ttl"], me["ip_allowlist"]) == (name, 3600, ["127.0.0.1"])
        with open(data_path / ".auth.json") as f:
            assert json.load(f)["format"] == 2
        assert daemon.alarms() == [], daemon.output
    assert created, "no token creation was acknowledged in any round"
    daemon.stop()
