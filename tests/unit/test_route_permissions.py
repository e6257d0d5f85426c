"""
The permission column of the route table (``http/api.py`` ``ROUTES``) and
the layer that applies it (``http/authz.py``): every route declares who may
call it, the handlers the layer guards do not check again, the handlers
marked ``IN_HANDLER`` do, the fast path uses the table's rows, and a
wrapper applies its check in the declared order at no extra cost.  The
behaviour per token is the permission matrix of
``tests/integration/test_auth.py``.
"""

import ast
import inspect
import textwrap

import pytest

from reduct_twisted.auth.policy import Policy
from reduct_twisted.errors import Forbidden
from reduct_twisted.http import authz
from reduct_twisted.http.api import AT_BASE, ROUTES, V0, V1, ReductAPI
from reduct_twisted.http.authz import IN_HANDLER, OPEN, Permission, checked
from reduct_twisted.http.fastpath import STREAMING_ENDPOINTS


def _calls_authorize(function) -> bool:
    source = textwrap.dedent(inspect.getsource(function))
    nodes = ast.walk(ast.parse(source))
    return any(isinstance(node, ast.Name) and node.id == "authorize" for node in nodes)


def _endpoint_names(row):
    name, where = row[2].__name__, row[3]
    names = []
    if where == AT_BASE:
        return [name]
    if where != V1:
        names.append(name if where == V0 else name + "_v0")
    if where != V0:
        names.append(name)
    return names


@pytest.mark.parametrize("row", ROUTES, ids=lambda row: f"{row[1]} {row[0]}")
def test_every_route_declares_a_permission(row):
    """Every row of ROUTES ends in a Permission: a policy, OPEN or IN_HANDLER."""
    assert len(row) == 5
    permission = row[4]
    assert isinstance(permission, Permission)
    assert permission.checked_by_layer or permission in (OPEN, IN_HANDLER)


@pytest.mark.parametrize("row", ROUTES, ids=lambda row: f"{row[1]} {row[0]}")
def test_exactly_one_place_checks(row):
    """A handler calls authorize itself if and only if its row says IN_HANDLER."""
    handler, permission = row[2], row[4]
    assert _calls_authorize(handler) is (permission is IN_HANDLER)


def test_in_handler_routes():
    """The routes that check in the handler are the few whose permission a column cannot say."""
    # remove_entry: a $meta entry is refused before the token (spec 1.20 §3.1).
    # metrics: AUTHENTICATED unless the metrics_auth setting is off (issue #18).
    assert sorted(row[2].__name__ for row in ROUTES if row[4] is IN_HANDLER) == [
        "create_link", "get_bucket", "io_query", "list_buckets", "me", "metrics", "post_query",
        "remove_entry",
    ]
    # The PUT of an entry path but a rename: 404 whoever asks, as upstream's
    # router (spec 1.20 §2.2).
    # A query link's download: anonymous, the link's own token is checked
    # by the handler (spec 1.20 §6.2).
    # The web console's files and its redirects: no data in them (issue #18).
    assert [row[0] for row in ROUTES if row[4] is OPEN] == [
        "/alive", "/ready", "/b/<bucket>/<entry_path:entry>", "/links<link_path:file_name>",
        "/", "/ui", "/ui/", "/ui/<path:name>"]


@pytest.mark.parametrize("row", ROUTES, ids=lambda row: f"{row[1]} {row[0]}")
def test_registered_handler_carries_the_row_permission(row):
    """Klein's endpoints are the handlers behind their row's permission."""
    for name in _endpoint_names(row):
        registered = ReductAPI.endpoints[name]
        if row[4].checked_by_layer:
            assert registered is not row[2]
            assert registered.permission is row[4]
            assert registered.__wrapped__ is row[2]
        else:
            assert registered is row[2]


def test_bucket_permissions_name_a_route_argument():
    """READ and WRITE rows name the route argument carrying the bucket, which is in the path."""
    for path, _, _, _, permission in ROUTES:
        if permission.policy in (Policy.READ, Policy.WRITE):
            assert f"<{permission.bucket}>" in path


def test_fast_path_uses_the_table():
    """The streamed uploads and the direct record read take their permission from ROUTES."""
    rows = {row[2].__name__: row for row in ROUTES}
    assert ReductAPI._read_record is ReductAPI.endpoints["read_record"]
    assert ReductAPI._read_record.permission is rows["read_record"][4]
    assert ReductAPI._write_record_permission is rows["write_record"][4]
    for endpoint in STREAMING_ENDPOINTS:
        permission = ReductAPI.endpoints[endpoint].permission
        assert permission.when == "on open"
        assert permission.policy is Policy.WRITE


def test_wrappers_take_route_arguments_plainly():
    """A wrapper has the handler's own argument names: no *args or **kwargs to pack per call."""
    for registered in ReductAPI.endpoints.values():
        parameters = inspect.signature(registered, follow_wrapped=False).parameters.values()
        assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)


class _Request:
    def __init__(self, log, sink=None):
        self.log = log
        self.sink = sink

    def getHeader(self, name):
        self.log.append(("header", name))
        return b"Bearer x"


class _Auth:
    def __init__(self, log, refuse=False):
        self.log = log
        self.refuse = refuse

    def check(self, authorization, policy, bucket=None, request=None):
        self.log.append(("check", policy, bucket))
        if self.refuse:
            raise Forbidden("no")
        return {}


class _API:
    def __init__(self, log, refuse=False):
        self.auth = _Auth(log, refuse)


def test_check_before_handler():
    """A plain permission checks the route's bucket, then calls the handler, by name or position."""
    log = []

    def handler(api, request, bucket, entry):
        log.append(("handler", bucket, entry))
        return "answer"

    route = checked(handler, authz.READ)
    assert route(_API(log), _Request(log), bucket="b", entry="e") == "answer"
    assert route(_API(log), _Request(log), "b", "e") == "answer"
    assert log == [
        ("header", b"authorization"), ("check", Policy.READ, "b"), ("handler", "b", "e"),
    ] * 2


def test_refused_check_skips_handler():
    """A refused check raises its error and the handler is not called."""
    log = []
    route = checked(lambda api, request, name: log.append("handler"), authz.FULL)
    with pytest.raises(Forbidden):
        route(_API(log, refuse=True), _Request(log), name="n")
    assert "handler" not in log


def test_body_first():
    """A body-first permission parses the body, then checks, then hands the body to the handler."""
    log = []

    def parse(request):
        log.append("parse")
        return {"parsed": True}

    def handler(api, request, bucket, entry, body):
        log.append(("handler", bucket, entry, body))

    route = checked(handler, authz.WRITE.body_first(parse))
    route(_API(log), _Request(log), bucket="b", entry="e")
    assert log == [
        "parse", ("header", b"authorization"), ("check", Policy.WRITE, "b"),
        ("handler", "b", "e", {"parsed": True}),
    ]


def test_body_first_refuses_body_before_token():
    """A malformed body is refused before the token is looked at."""
    log = []

    def parse(request):
        raise ValueError("bad body")

    route = checked(lambda api, request, name, body: None, authz.FULL.body_first(parse))
    with pytest.raises(ValueError):
        route(_API(log), _Request(log), name="n")
    assert log == []


def test_on_open_checks_only_unopened_requests():
    """A streamed upload is checked by the layer only when no body was opened (no framing)."""
    log = []
    route = checked(lambda api, request, bucket, entry: "done", authz.WRITE.on_open())
    assert route(_API(log), _Request(log, sink=object()), "b", "e") == "done"
    assert log == []
    assert route(_API(log), _Request(log, sink=None), "b", "e") == "done"
    assert log == [("header", b"authorization"), ("check", Policy.WRITE, "b")]


def test_open_and_in_handler_are_not_wrapped():
    """OPEN and IN_HANDLER register the handler itself."""
    def handler(api, request):
        return None

    assert checked(handler, OPEN) is handler
    assert checked(handler, IN_HANDLER) is handler


def test_bucket_argument_must_exist():
    """A bucket permission on a handler without that argument is refused at registration."""
    with pytest.raises(ValueError):
        checked(lambda api, request, name: None, authz.READ)
