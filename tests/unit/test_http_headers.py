"""Header and parameter parsing: exact upstream texts."""

import pytest
from twisted.web.http_headers import Headers

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.http.headers import announced_length, record_labels, timestamp_param
from reduct_twisted.wire import header_safe, parse_u64
from reduct_twisted.http.params import query_kwargs


def test_parse_u64_bounds():
    """Only plain decimal digits within u64 parse."""
    assert parse_u64("0") == 0
    assert parse_u64(str(2**64 - 1)) == 2**64 - 1
    for bad in ("", "-1", "+1", "1.0", " 1", str(2**64), "١٢"):
        assert parse_u64(bad) is None, bad


def test_timestamp_param_messages():
    """ts missing and ts malformed have different 422 texts."""
    with pytest.raises(UnprocessableEntity, match="'ts' parameter is required"):
        timestamp_param({})
    with pytest.raises(UnprocessableEntity, match="'ts' must be an unix timestamp in microseconds"):
        timestamp_param({b"ts": [b"x"]})
    assert timestamp_param({b"ts": [b"1", b"25"]}) == 25  # last one wins


class _Upload:
    """What ``announced_length`` reads of a request."""

    def __init__(self, malformed_length=False, **headers):
        self.malformed_length = malformed_length
        self.requestHeaders = Headers(
            {name.replace("_", "-").encode(): [value.encode()] for name, value in headers.items()}
        )


@pytest.mark.parametrize("request_, framed, expected", [
    # Content-Length: the framed length, whatever x-reduct-content-length says
    (_Upload(content_length="5"), 5, 5),
    (_Upload(content_length="5", x_reduct_content_length="abc"), 5, 5),
    (_Upload(content_length="0", x_reduct_content_length="9"), 0, 0),
    # no Content-Length: x-reduct-content-length, chunked or not framed at all
    (_Upload(x_reduct_content_length="7"), None, 7),
    (_Upload(x_reduct_content_length="0"), 0, 0),
    (_Upload(x_reduct_content_length="0012"), None, 12),
    (_Upload(x_reduct_content_length=str(2**64 - 1)), None, 2**64 - 1),
    # chunked and nothing announced: unknown
    (_Upload(), None, None),
], ids=repr)
def test_announced_length(request_, framed, expected):
    """Content-Length first, then x-reduct-content-length; a silent chunked body is unknown."""
    assert announced_length(request_, framed) == expected


@pytest.mark.parametrize("request_, framed, message", [
    (_Upload(True), None, "content-length header must be a number"),
    (_Upload(True, x_reduct_content_length="5"), None, "content-length header must be a number"),
    (_Upload(x_reduct_content_length="abc"), None, "x-reduct-content-length header must be a number"),
    (_Upload(x_reduct_content_length="-1"), 0, "x-reduct-content-length header must be a number"),
    (_Upload(x_reduct_content_length="1e3"), None, "x-reduct-content-length header must be a number"),
    (_Upload(x_reduct_content_length=str(2**64)), None,
     "x-reduct-content-length header must be a number"),
    (_Upload(x_reduct_content_length="9" * 5000), None,
     "x-reduct-content-length header must be a number"),
    (_Upload(), 0, "content-length header is required"),
], ids=repr)
def test_announced_length_refusals(request_, framed, message):
    """The three 422 texts of spec 1.20 §5.2, in upstream's order."""
    with pytest.raises(UnprocessableEntity) as info:
        announced_length(request_, framed)
    assert info.value.message == message


def test_labels_lowercased_and_last_wins():
    """Label names are lowercased; a repeated header keeps its last value."""
    raw = [(b"X-Reduct-Label-Camera", [b"a", b"b"]), (b"Content-Type", [b"x"]), (b"x-reduct-label-k", [b"v,w"])]
    assert record_labels(raw) == {"camera": "b", "k": "v,w"}


def test_header_safe_messages():
    """Messages with control characters become 'Unparsable message'."""
    assert header_safe("Bucket 'x' is not found") == b"Bucket 'x' is not found"
    assert header_safe("bad\nline") == b"Unparsable message"


def test_query_kwargs_defaults():
    """No parameters: everything unset, TTL 60 s, not continuous."""
    assert query_kwargs({}) == {
        "start": None, "stop": None, "ttl": 60, "continuous": False, "include": {}, "exclude": {},
        "limit": None, "each_n": None, "each_s": None}
    kw = query_kwargs({b"include-Foo": [b"1"], b"exclude-b": [b"2"], b"continuous": [b"true"], b"each_s": [b"0.5"]})
    assert kw["include"] == {"Foo": "1"} and kw["exclude"] == {"b": "2"}
    assert kw["continuous"] is True and kw["each_s"] == 0.5
