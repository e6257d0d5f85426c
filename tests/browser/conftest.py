"""
Fixtures of the web console's browser tests (issue #18 item 1): Debian's
``chromium`` driven by Playwright for Python (never a downloaded browser),
one browser for the session and a fresh context (own session storage) per
test, against real ``twistd -n reduct`` daemons on 127.0.0.1, port 0, one
with authentication on and one with it off.

Without chromium or Playwright the tests skip and say why; in CI
(``.ci/run`` sets ``REDUCT_TWISTED_CI``) they fail instead.  Screenshots go
to ``tests/artifacts/`` (git-ignored), or ``$REDUCT_TWISTED_ARTIFACTS``.
"""

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.daemon import Twistd

CHROMIUM = "/usr/bin/chromium"
CI_ENV = "REDUCT_TWISTED_CI"
TOKEN = "console-test-token"
ARTIFACTS = Path(os.environ.get("REDUCT_TWISTED_ARTIFACTS") or REPO_ROOT / "tests" / "artifacts")

pytestmark = pytest.mark.slow


def _missing() -> list:
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright; the test extra has it)")
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        missing.append(f"chromium ({CHROMIUM}; apt-get install chromium)")
    return missing


@pytest.fixture(scope="session")
def browser():
    """Chromium through Playwright, launched once for the whole session."""
    missing = _missing()
    if missing:
        if os.environ.get(CI_ENV):
            pytest.fail("the browser tests need " + " and ".join(missing))
        pytest.skip("the browser tests need " + " and ".join(missing)
                    + f" (.ci/run installs both; {CI_ENV}=1 makes this a failure)")
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root (in CI containers).
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


class Daemon:
    """A running daemon for the browser: its console URL and a tiny sync client."""

    def __init__(self, port: int, token: str = ""):
        self.url = f"http://127.0.0.1:{port}"
        self.token = token

    @property
    def console(self) -> str:
        return self.url + "/ui/"

    def call(self, method: str, path: str, body=None, headers=None, token=None):
        """``(status, headers, body bytes)`` of ``{url}/api/v1{path}``."""
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        request = urllib.request.Request(self.url + "/api/v1" + path, data=data, method=method)
        token = self.token if token is None else token
        if token:
            request.add_header("Authorization", "Bearer " + token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    def json(self, method: str, path: str, body=None):
        status, _, data = self.call(method, path, body)
        assert status == 200, (status, data)
        return json.loads(data) if data else None


def _daemon(tmp_path_factory, name, environ):
    twistd = Twistd(tmp_path_factory.mktemp(name) / "data", environ=environ)
    port = twistd.start()
    try:
        yield twistd, port
    finally:
        text = twistd.stop()
        assert "Traceback" not in text, text


@pytest.fixture(scope="session")
def auth_daemon(tmp_path_factory):
    """A daemon with authentication on (``RS_API_TOKEN``)."""
    for _, port in _daemon(tmp_path_factory, "auth", {"RS_API_TOKEN": TOKEN}):
        yield Daemon(port, TOKEN)


@pytest.fixture(scope="session")
def open_daemon(tmp_path_factory):
    """A daemon with authentication off (and no ``$system`` events)."""
    for _, port in _daemon(tmp_path_factory, "open", {"RS_SYSTEM_EVENTS_ENABLED": "false"}):
        yield Daemon(port)


@pytest.fixture
def page(browser, request):
    """A page in a fresh context (its own session storage); a screenshot when the test ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Removals ask confirm(): the tests say yes (Playwright would dismiss).
    page.on("dialog", lambda dialog: dialog.accept())
    page.set_default_timeout(30000)  # a loaded 2-core box
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()
    assert errors == [], errors


def shot(page, name: str, full_page: bool = True) -> Path:
    """Save a screenshot under the artifacts directory; return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
