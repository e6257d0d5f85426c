"""
The routes the fast path (``http/fastpath.py``) calls without Klein pick
the handler Klein's own URL map would, with the same arguments, and leave
everything else to Klein.
"""

import pytest
from urllib.parse import unquote_to_bytes

from werkzeug.exceptions import HTTPException

from reduct_twisted.http.api import ReductAPI

PATHS = [
    b"/api/v1/b/bkt/e/batch", b"/api/v1/b/bkt/a/b/c/batch", b"/api/v1/b/bkt/batch",
    b"/api/v1/b/bkt/batch/batch", b"/api/v1/b/bkt/e%2Fx/batch", b"/api/v1/b/bkt/%C3%A9/batch",
    b"/api/v1/b/bkt/e/q/batch", b"/api/v1/b/bkt/e/rename/batch", b"/api/v1/b/bkt//batch",
    b"/api/v1/b/bkt/a//b/batch", b"/api/v1/b//e/batch", b"/api/v1/b/bkt/e/batch/",
    b"/api/v1/b/bkt/e", b"/api/v1/b/bkt/a/b", b"/api/v1/b/bkt/e/q",
    b"/api/v1/io/bkt/read", b"/api/v1/io/b%20k/read", b"/api/v1/io//read", b"/api/v1/io/a/b/read",
    b"/api/v1/io/a%2Fb/read", b"/api/v1/io/bkt/read/", b"/api/v1/io/bkt/write",
    b"/api/v1/io/bkt/q", b"/api/v1/io/read", b"/api/v1/b/bkt/e/batchx", b"/b/bkt/e/batch",
    b"/api/v1/io/%FF/read", b"/api/v1/b/bkt/%FF/batch",
]


class _Request:
    def __init__(self, method: bytes, path: bytes) -> None:
        self.method, self.path = method, path
        self.route = None


def _klein_choice(api, method: bytes, raw_path: bytes):
    segments = [unquote_to_bytes(s) for s in raw_path.split(b"/")[1:]]
    base = api.base_segments
    if segments[: len(base)] != base:
        return None
    path_info = "/" + "/".join(s.decode("utf-8", "replace") for s in segments[len(base):])
    try:
        rule, kwargs = api._url_adapter.match(path_info, method=method.decode(), return_rule=True)
    except HTTPException:
        return None
    return rule.endpoint, kwargs


@pytest.mark.parametrize("base_path", ["/", "/x/y/"])
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize("path", PATHS)
def test_direct_reads_are_what_klein_routes(base_path, method, path):
    api = ReductAPI(engine=None, auth=None, reactor=None, threadpool=None, base_path=base_path)
    raw = base_path.rstrip("/").encode() + path
    request = _Request(method, raw)
    handler = api.direct_handler(request)
    if handler is None:
        return  # Klein routes it, as before
    endpoint, kwargs = _klein_choice(api, method, raw)
    assert request.route == endpoint
    assert handler.func is api.endpoints[endpoint]
    assert handler.args[:2] == (api, request)
    names = {"read_record": ("bucket", "entry"), "read_batch": ("bucket", "entry"),
             "io_read": ("bucket",)}[endpoint]
    assert handler.args[2:] == tuple(kwargs[name] for name in names)


@pytest.mark.parametrize("path, endpoint", [
    (b"/api/v1/b/bkt/e/batch", "read_batch"),
    (b"/api/v1/b/bkt/a/b/c/batch", "read_batch"),
    (b"/api/v1/io/bkt/read", "io_read"),
    (b"/api/v1/b/bkt/e", "read_record"),
])
def test_batched_reads_bypass_klein(path, endpoint):
    api = ReductAPI(engine=None, auth=None, reactor=None, threadpool=None)
    request = _Request(b"GET", path)
    handler = api.direct_handler(request)
    assert handler is not None and request.route == endpoint
    assert handler.func is api.endpoints[endpoint]


POSTS = [p.replace(b"/read", b"/write") for p in PATHS if b"/io/" in p] + [
    p for p in PATHS if b"/io/" not in p]


@pytest.mark.parametrize("base_path", ["/", "/x/y/"])
@pytest.mark.parametrize("path", POSTS)
def test_plain_batched_writes_are_what_klein_routes(base_path, path):
    api = ReductAPI(engine=None, auth=None, reactor=None, threadpool=None, base_path=base_path)
    raw = base_path.rstrip("/").encode() + path
    endpoint, kwargs = api._plain_batch_post(raw)
    if endpoint is None:
        return  # the URL map decides, as before
    assert (endpoint, kwargs) == _klein_choice(api, b"POST", raw)


@pytest.mark.parametrize("path, endpoint", [
    (b"/api/v1/b/bkt/e/batch", "write_batch"),
    (b"/api/v1/b/bkt/a/b/batch", "write_batch"),
    (b"/api/v1/io/bkt/write", "io_write"),
])
def test_batched_writes_need_no_url_map(path, endpoint):
    api = ReductAPI(engine=None, auth=None, reactor=None, threadpool=None)
    assert api._plain_batch_post(path)[0] == endpoint
