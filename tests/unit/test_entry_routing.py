"""
Routing of the v1 entry API on nested names (spec 1.20 §2.2), socket-free:
the route table through StubTreq, and the fast path's own parsing.
"""

import json

import pytest

from reduct_twisted.storage.testing import write_record
from tests.unit.test_http_errors import (
    API,
    API_TOKEN,
    answer,
    assert_error,
    bearer,
    open_api,  # noqa: F401  (fixture)
    token_api,  # noqa: F401  (fixture)
)


@pytest.fixture
def tree(engine):
    engine.create_bucket("b", None)
    for name, ts in (("a", 1), ("a/b", 2), ("a/b/c", 3), ("batch", 4), ("q", 5), ("rename", 6)):
        write_record(engine, "b", name, ts, name.encode())
    write_record(engine, "b", "a/$meta", 7, b"{}", labels={"key": "k"})
    return engine


@pytest.mark.parametrize("path, content, entry", [
    ("a", b"a", "a"), ("a/b?ts=2", b"a/b", "a/b"), ("a/b/c", b"a/b/c", "a/b/c"),
    ("a%2Fb%2Fc", b"a/b/c", "a/b/c"), ("batch", b"batch", "batch"), ("q", b"q", "q"),
    ("rename", b"rename", "rename"), ("a/%24meta?ts=7", b"{}", "a/$meta"),
    ("a/$meta?ts=7", b"{}", "a/$meta"),
])
def test_single_record_reads(tree, open_api, path, content, entry):
    response, body = answer(open_api, "GET", f"{API}/b/b/{path}")
    assert (response.code, body) == (200, content)
    assert response.headers.getRawHeaders("x-reduct-entry") == [entry]


def test_query_and_batch_suffixes(tree, open_api):
    response, body = answer(open_api, "GET", f"{API}/b/b/a/b/q")
    qid = json.loads(body)["id"]
    response, body = answer(open_api, "GET", f"{API}/b/b/a/b/batch?q={qid}")
    assert (response.code, body) == (200, b"a/b")
    response, body = answer(open_api, "GET", f"{API}/b/b/a/b/c/batch")
    assert_error(response, body, 422, "'q' parameter is required for batched reads")


@pytest.mark.parametrize("path", ["a", "a/b", "batch"])
def test_other_puts_are_404(tree, open_api, path):
    response, body = answer(open_api, "PUT", f"{API}/b/b/{path}", data=b"{}")
    assert_error(response, body, 404, "Not found")


def test_entry_rename_and_bucket_rename(tree, open_api):
    response, _ = answer(open_api, "PUT", f"{API}/b/b/a/b/rename", data=b'{"new_name": "x/y"}')
    assert response.code == 200
    assert sorted(tree._buckets["b"].entries) == [
        "a", "a/$meta", "batch", "q", "rename", "x", "x/y", "x/y/c"]
    response, _ = answer(open_api, "PUT", f"{API}/b/b/rename", data=b'{"new_name": "c"}')
    assert response.code == 200 and tree.has_bucket("c")


def test_meta_entry_removal_is_refused_before_the_token(tree, token_api):
    text = "Can't delete system entry 'a/$meta'; remove the parent entry instead"
    response, body = answer(token_api, "DELETE", f"{API}/b/b/a/$meta")
    assert_error(response, body, 422, text)
    response, body = answer(token_api, "DELETE", f"{API}/b/b/a")
    assert_error(response, body, 401, "No bearer token in request header")
    response, body = answer(token_api, "DELETE", f"{API}/b/b/a/$meta?ts=7",
                            headers=bearer(API_TOKEN))
    assert_error(response, body, 422, "Can't delete records from system entry 'a/$meta'; use "
                 "label update with remove=true")
    response, body = answer(token_api, "DELETE", f"{API}/b/b/a", headers=bearer(API_TOKEN))
    assert response.code == 200
    assert sorted(tree._buckets["b"].entries) == ["batch", "q", "rename"]


@pytest.fixture
def api(engine, clock):
    from reduct_twisted.http.api import ReductAPI
    from reduct_twisted.auth.policy import OpenAccess

    return ReductAPI(engine, OpenAccess(clock), clock, None, base_path="/base/")


@pytest.mark.parametrize("raw, names", [
    (b"/base/api/v1/b/bk/e", ("bk", "e")),
    (b"/base/api/v1/b/bk/a/b/c", ("bk", "a/b/c")),
    (b"/base/api/v1/b/bk/a%2Fb", ("bk", "a/b")),
    (b"/base/api/v1/b/bk/batch", ("bk", "batch")),
    (b"/base/api/v1/b/bk/a/batch", None),
    (b"/base/api/v1/b/bk/a%2Fq", None),
    (b"/base/api/v1/b/bk/a/rename", None),
    (b"/base/api/v1/b/bk/a/$meta", ("bk", "a/$meta")),
    (b"/base/api/v1/b/bk/a//b", ("bk", "a//b")),
    (b"/base/api/v1/b/b%2Fk/e", None),
    (b"/base/api/v1/b/bk", None),
    (b"/api/v1/b/bk/e", None),
])
def test_fast_path_names(api, raw, names):
    assert api._record_names(raw) == names


@pytest.mark.parametrize("raw, allowed", [
    (b"/base/api/v1/b/bk/a%2Fb", True), (b"/base/b/bk/a%2fb/c", True),
    (b"/base/api/v1/b/b%2Fk/e", False), (b"/base/api%2Fv1/b/bk/e", False),
    (b"/base/api/v1/tokens/a%2Fb", False), (b"/other/api/v1/b/bk/a%2Fb", False),
    (b"/base/api/v1/b/a%2Fb", False),
])
def test_encoded_slash_only_inside_entry_paths(api, raw, allowed):
    assert api.encoded_slash_ok(raw) is allowed
