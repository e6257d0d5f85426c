"""
The README's quick-start examples (issue #18 item 7) run as written against
a real ``twistd`` daemon on a free port: ``examples/quickstart.sh`` (curl;
it makes the file it uploads) and ``examples/quickstart.py`` (the newest
reduct-py from the suite's client venvs, ``asyncio.run(main())``), each
twice (a second run must work too); the README shows both files verbatim.
"""

import http.client
import json
import os
import shutil
import subprocess

import pytest

from tests import clients
from tests.conftest import REPO_ROOT
from tests.integration.daemon import Twistd

pytestmark = pytest.mark.slow

EXAMPLES = REPO_ROOT / "examples"


TOKEN = "quickstart-init-token"


@pytest.fixture(params=[None, TOKEN], ids=["auth-off", "auth-on"])
def daemon(request, tmp_path):
    """A daemon without authentication, and one with it (the examples send RS_API_TOKEN)."""
    d = Twistd(tmp_path / "data", environ={"RS_API_TOKEN": request.param} if request.param else {})
    d.start()
    d.token = request.param
    yield d
    d.stop()
    assert d.alarms() == []


def get_json(port, target, token=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", target, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        conn.close()


def front_count(daemon):
    entries = get_json(daemon.port, "/api/v1/b/cams", daemon.token)["entries"]
    return next(e["record_count"] for e in entries if e["name"] == "front")


def example_env(daemon):
    env = {"PATH": os.environ["PATH"], "REDUCT_URL": f"http://127.0.0.1:{daemon.port}"}
    if daemon.token:
        env["RS_API_TOKEN"] = daemon.token
    return env


def test_quickstart_sh(daemon, tmp_path):
    assert shutil.which("curl"), ".ci/run installs curl"
    work = tmp_path / "work"
    work.mkdir()
    env = example_env(daemon)
    for run in (1, 2):
        proc = subprocess.run(["bash", str(EXAMPLES / "quickstart.sh")], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "read back the same 1000 bytes" in proc.stdout
        assert (work / "frame.jpg").read_bytes() == (work / "out.jpg").read_bytes()
        assert "HTTP 401" not in proc.stdout
        assert front_count(daemon) == run
    assert "HTTP 200" in proc.stdout or "HTTP 409" in proc.stdout


def test_quickstart_sh_default_url_is_8383():
    text = (EXAMPLES / "quickstart.sh").read_text()
    assert 'URL="${REDUCT_URL:-http://127.0.0.1:8383}"' in text


def test_quickstart_py(daemon, tmp_path):
    python = clients.client_python(clients.REDUCT_PY_NEWEST)
    env = example_env(daemon)
    for run in (1, 2):
        proc = subprocess.run([str(python), str(EXAMPLES / "quickstart.py")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("read 1000 bytes at ") and "'camera': 'front'" in lines[0], proc.stdout
        # the query's two seconds: the first two frames of this run (and, on the second run,
        # frames of the first one that fall in the same two seconds)
        listed = lines[1:]
        assert (len(listed) == 2 if run == 1 else len(listed) >= 2), proc.stdout
        assert all("1000 bytes, image/jpeg" in line for line in listed), proc.stdout
        assert front_count(daemon) == 3 * run


def test_readme_shows_the_examples_verbatim():
    readme = (REPO_ROOT / "README.md").read_text()
    for name in ("quickstart.sh", "quickstart.py"):
        body = (EXAMPLES / name).read_text()
        assert body in readme, f"README.md does not show examples/{name} as it is"
