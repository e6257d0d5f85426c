"""
The web console's routes (issue #18 item 1; ``http/routes_console.py``,
``reduct_twisted/ui``), socket-free through StubTreq: the redirect from the
base path, the files with their content types and caching headers, the
404s, and the base path honoured.  The browser side is in tests/browser/.
"""

import hashlib
from importlib import resources

import pytest

from treq.testing import StubTreq
from twisted.internet.defer import Deferred

from reduct_twisted import ui
from tests.unit.test_http_errors import (
    answer,
    api_stub,
    assert_error,
    open_api,  # noqa: F401  (fixture)
    token_api,  # noqa: F401  (fixture)
)

ROOT = "http://localhost"
STATIC = resources.files("reduct_twisted.ui").joinpath("static")


def not_followed(stub: StubTreq, path: str):
    """``(response, body)`` of a GET whose redirect is not followed."""
    d = stub.request("GET", ROOT + path, allow_redirects=False)
    stub.flush()
    result = []
    d.addCallback(result.append)
    response = result[0]
    body: Deferred = stub.content(response)
    stub.flush()
    body.addCallback(result.append)
    return response, result[1]


def shipped(name: str) -> bytes:
    return STATIC.joinpath(name).read_bytes()


@pytest.mark.parametrize("path", ["/", "/ui"])
def test_base_and_bare_ui_redirect_to_the_console(open_api, path):
    """GET {base} is upstream's 302 to {base}ui/ (spec §1.1); {base}ui gets the slash."""
    response, body = not_followed(open_api, path)
    assert response.code == 302
    assert response.headers.getRawHeaders(b"location") == [b"/ui/"]
    assert body == b""


@pytest.mark.parametrize("path, name, content_type", [
    ("/ui/", "index.html", b"text/html; charset=utf-8"),
    ("/ui/console.css", "console.css", b"text/css; charset=utf-8"),
    ("/ui/js/main.js", "js/main.js", b"text/javascript; charset=utf-8"),
    ("/ui/js/integrity.js", "js/integrity.js", b"text/javascript; charset=utf-8"),
])
def test_files_are_served_with_type_etag_and_no_cache(open_api, path, name, content_type):
    response, body = answer(open_api, "GET", ROOT + path)
    assert response.code == 200
    assert body == shipped(name)
    headers = response.headers
    assert headers.getRawHeaders(b"content-type") == [content_type]
    assert headers.getRawHeaders(b"cache-control") == [b"no-cache"]
    etag = hashlib.sha256(body).hexdigest()[:32].encode()
    assert headers.getRawHeaders(b"etag") == [b'"' + etag + b'"']
    assert headers.getRawHeaders(b"x-content-type-options") == [b"nosniff"]
    assert b"default-src 'self'" in headers.getRawHeaders(b"content-security-policy")[0]


def test_matching_etag_is_304_without_body(open_api):
    response, _ = answer(open_api, "GET", ROOT + "/ui/js/api.js")
    etag = response.headers.getRawHeaders(b"etag")[0]
    response, body = answer(open_api, "GET", ROOT + "/ui/js/api.js",
                            headers={b"if-none-match": [b'"other", ' + etag]})
    assert (response.code, body) == (304, b"")
    response, body = answer(open_api, "GET", ROOT + "/ui/js/api.js",
                            headers={b"if-none-match": [b'"other"']})
    assert response.code == 200 and body == shipped("js/api.js")


def test_head_has_the_headers_and_no_body(open_api):
    response, body = answer(open_api, "HEAD", ROOT + "/ui/")
    assert response.code == 200 and body == b""
    assert response.headers.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]


@pytest.mark.parametrize("path", [
    "/ui/missing.js", "/ui/js/../../__init__.py", "/ui/%2e%2e/__init__.py", "/ui/js/",
    "/ui/js", "/ui/../http/api.py",
])
def test_anything_else_under_ui_is_404_not_found(open_api, path):
    """Only shipped files answer: no path is resolved, nothing escapes static/."""
    response, body = answer(open_api, "GET", ROOT + path)
    assert_error(response, body, 404, "Not found")


def test_other_methods_are_405(open_api):
    for method, path in (("POST", "/ui/"), ("DELETE", "/ui/js/main.js"), ("PUT", "/")):
        response, body = answer(open_api, method, ROOT + path, data=b"")
        assert response.code == 405, (method, path)


def test_console_is_anonymous_with_authentication_on(token_api):
    """The files hold no data: they load without a token; the API still wants one."""
    response, body = answer(token_api, "GET", ROOT + "/ui/js/main.js")
    assert response.code == 200 and body == shipped("js/main.js")
    response, _ = not_followed(token_api, "/")
    assert response.code == 302
    response, body = answer(token_api, "GET", ROOT + "/api/v1/info")
    assert_error(response, body, 401, "No bearer token in request header")


def test_base_path_is_honoured(engine, clock):
    stub = api_stub(engine, clock, api_base_path="/reduct/")
    response, _ = not_followed(stub, "/reduct/")
    assert response.code == 302
    assert response.headers.getRawHeaders(b"location") == [b"/reduct/ui/"]
    response, body = answer(stub, "GET", ROOT + "/reduct/ui/")
    assert response.code == 200 and body == shipped("index.html")
    for path in ("/ui/", "/"):
        response, body = answer(stub, "GET", ROOT + path)
        assert_error(response, body, 404, "Not found")


def test_every_shipped_file_has_a_type_and_is_served():
    """Nothing in static/ is left out by an unknown suffix, and the page's modules all exist."""
    files = ui.assets()
    names = {p.relative_to(str(STATIC)).as_posix() for p in _walk(STATIC)}
    assert set(files) == names
    assert {"index.html", "console.css", "js/main.js", "js/api.js", "js/dom.js"} <= names
    for name, asset in files.items():
        assert asset.body == shipped(name)
    # every module the console imports is shipped
    import re
    for name, asset in files.items():
        if name.endswith(".js"):
            for target in re.findall(rb'from "\./([\w.]+)"', asset.body):
                assert "js/" + target.decode() in files, (name, target)


def _walk(folder):
    from pathlib import Path
    for item in Path(str(folder)).rglob("*"):
        if item.is_file():
            yield item


def test_package_data_ships_every_console_file():
    """setup.cfg's package_data and MANIFEST.in name every file in static/, so
    ``pip install .`` (a wheel, not only this checkout) serves the console."""
    import configparser
    import fnmatch

    from tests.conftest import REPO_ROOT

    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / "setup.cfg")
    patterns = [p.strip() for p in parser["options.package_data"]["reduct_twisted.ui"].split(",")]
    for name in ui.assets():
        assert any(fnmatch.fnmatch("static/" + name, p) for p in patterns), name
    manifest = (REPO_ROOT / "MANIFEST.in").read_text().splitlines()
    assert "graft reduct_twisted/ui/static" in manifest
