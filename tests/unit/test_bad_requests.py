"""
Requests Twisted itself refuses (malformed framing, over-long lines) get an
answer the client can read, and nothing more is parsed after it.
"""

import json

import pytest

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.http.headers import parse_json_body
from reduct_twisted.wire import parse_u64
from tests.unit.test_timeouts import connect


def answer(transport):
    head, _, body = transport.value().partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/info\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /x HTTP/1.1\r\nX: " + b"y" * (1 << 18) + b"\r\n\r\n",
    ],
    ids=["bad-request-line", "two-lengths", "line-too-long"],
)
def test_refused_framing_is_answered_with_reduct_error_and_half_closed(request_bytes):
    clock, channel, transport = connect()
    channel.dataReceived(request_bytes + b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    head, body = answer(transport)
    assert head[0] == b"HTTP/1.1 400 Bad Request"
    assert b"x-reduct-error: Bad request" in head and b"connection: close" in head
    assert json.loads(body) == {"detail": "Bad request"}
    # one answer only: the pipelined request after it is not parsed
    assert transport.value().count(b"HTTP/1.1") == 1
    assert not transport.connected or transport.disconnecting or clock.getDelayedCalls()
    clock.advance(10)
    assert transport.disconnecting or transport.disconnected


def test_refused_head_gets_no_body():
    clock, channel, transport = connect()
    channel.dataReceived(b"HEAD /\r/ HTTP/1.1\r\nHost: a\r\n\r\n")
    head, body = answer(transport)
    assert head[0] == b"HTTP/1.1 400 Bad Request" and body == b""


def test_u64_with_thousands_of_digits_is_not_a_number():
    """Python refuses int() on > 4300 digits; the parser must say 'not a u64', not raise."""
    assert parse_u64("1" * 5000) is None
    assert parse_u64("18446744073709551615") == 2**64 - 1
    assert parse_u64("18446744073709551616") is None


def test_deeply_nested_json_is_422():
    with pytest.raises(UnprocessableEntity, match="Invalid JSON"):
        parse_json_body(b"[" * 100_000 + b"]" * 100_000)


def test_broken_chunks_after_an_early_refusal_get_no_second_answer():
    """A refused chunked request whose body then breaks the framing gets one answer only."""

    class Refusing:
        def open_body(self, request, length):
            from reduct_twisted.errors import NotFound

            raise NotFound("Not found")

        def direct_handler(self, request):
            return None

    clock, channel, transport = connect()
    transport.loseWriteConnection = lambda: None  # a TCP transport has it
    channel.site.router = Refusing()
    channel.dataReceived(
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nnull\r\n\r\n"
    )
    assert transport.value().count(b"HTTP/1.1 ") == 1
    assert transport.value().startswith(b"HTTP/1.1 404 ")


def test_content_length_beyond_u64_is_not_a_number():
    """Content-Length parses as a u64 however many digits it has; past u64 it is None."""
    from reduct_twisted.http.headers import parse_content_length

    assert parse_content_length(b"18446744073709551615") == 2**64 - 1
    assert parse_content_length(b"0" * 5000 + b"7") == 7
    for bad in (b"18446744073709551616", b"1" * 5000, b"", b"-1", b"+1", b"1 ", b"\xd9\xa1"):
        assert parse_content_length(bad) is None, bad


def test_json_integer_of_thousands_of_digits_is_out_of_range():
    """Python's int-string limit never shows: such a literal, like any integer beyond
    the f64 range, is 'number out of range'."""
    with pytest.raises(UnprocessableEntity) as info:
        parse_json_body(b'{"quota_size": ' + b"1" * 5000 + b"}")
    assert info.value.message == "Invalid JSON: number out of range"
    for literal in (b"-" + b"9" * 3000, b"2" + b"0" * 308):
        with pytest.raises(UnprocessableEntity, match="Invalid JSON: number out of range"):
            parse_json_body(b'{"each_s": ' + literal + b"}")
    assert parse_json_body(b'{"n": -1' + b"0" * 308 + b"}") == {"n": -10**308}


def test_condition_numbers_of_thousands_of_digits():
    """Label values and literals too long for int() are typed as upstream types them."""
    from reduct_twisted.storage.when import compile_condition
    from reduct_twisted.storage.when.values import parse_duration, parse_label

    assert parse_label("1" * 5000) == float("inf")
    assert parse_label("-" + "0" * 5000 + "12") == -12
    assert parse_duration("1" * 5000 + "s") is None
    assert parse_duration("0" * 5000 + "5s") == 5_000_000
    for size in ("1" * 5000 + "KB", "1" * 400 + ".5KB"):
        # Beyond u64: refused like any other out-of-range size, never a 500.
        with pytest.raises(UnprocessableEntity) as info:
            compile_condition({"#batch_size": size})
        assert "out of the 64-bit integer range" in info.value.message


@pytest.mark.parametrize(
    "literal, message",
    [(b"1e400", "number out of range"), (b"-1E+999", "number out of range"),
     (b"NaN", "NaN is not a JSON value"), (b"-Infinity", "-Infinity is not a JSON value")],
)
def test_json_numbers_no_float_holds_are_invalid(literal, message):
    """Bodies are as strict as serde_json: no NaN, no Infinity, no float overflowing to inf
    (Python accepts them; stored in a replication's 'when', they came back as invalid JSON)."""
    with pytest.raises(UnprocessableEntity) as info:
        parse_json_body(b'{"when": {"&a": {"$gt": ' + literal + b"}}}")
    assert info.value.message == "Invalid JSON: " + message
    assert parse_json_body(b"[1e308, -2.5e-320]") == [1e308, -2.5e-320]
